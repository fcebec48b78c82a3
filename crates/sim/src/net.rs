//! HTTP over the simulated network.
//!
//! The server listens on a turmoil socket; clients reach it through [`SimTransport`], which
//! speaks HTTP/1.1 over turmoil's TCP with one connection per request. Turmoil adds latency,
//! partitions and crashes; the transport adds what a proxy in between would: a request
//! delivered twice, and an answer lost after the server acted on the request.

use std::net::SocketAddr;
use std::time::Duration;

use baton_client::transport::{ResponseBody, Transport, TransportError};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// The port the simulated server listens on.
pub const SERVER_PORT: u16 = 8080;

/// Message faults the transport adds, as probabilities per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetFaults {
    /// A write request is delivered twice (the first copy's answer is dropped).
    pub duplicate: f64,
    /// The answer to a request is lost after the server acted on it.
    pub lose_answer: f64,
}

#[derive(Debug, Clone, Default)]
pub struct SimTransport {
    pub faults: NetFaults,
}

/// True with `probability`, drawn from the seeded entropy.
pub(crate) fn chance(probability: f64) -> bool {
    probability > 0.0 && (baton_client::entropy::below(1_000_000) as f64) < probability * 1_000_000.0
}

impl Transport for SimTransport {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, TransportError>> {
        let faults = self.faults;
        Box::pin(async move {
            let deadline = timeout.map(|timeout| Instant::now() + timeout);
            if request.method() != http::Method::GET && chance(faults.duplicate) {
                let copy = clone_request(&request);
                tokio::spawn(async move {
                    if let Ok(response) = exchange(copy, None).await {
                        let _ = response.into_body().bytes().await;
                    }
                });
            }
            let lose = chance(faults.lose_answer);
            tracing::trace!(method = %request.method(), uri = %request.uri(), ?timeout, "send");
            let exchanged = exchange(request, deadline);
            let response = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, exchanged)
                    .await
                    .map_err(|_| TransportError::timed_out("simulated request timed out"))??,
                None => exchanged.await?,
            };
            if lose {
                // The server acted; its answer never arrives.
                let _ = response.into_body().bytes().await;
                return Err(TransportError::new("simulated: the answer was lost on the way"));
            }
            Ok(response)
        })
    }
}

fn clone_request(request: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

async fn exchange(
    request: http::Request<Vec<u8>>,
    deadline: Option<Instant>,
) -> Result<http::Response<ResponseBody>, TransportError> {
    let (mut parts, body) = request.into_parts();
    let host = parts.uri.host().unwrap_or("server").to_string();
    let port = parts.uri.port_u16().unwrap_or(80);
    let path = parts.uri.path_and_query().map(|path| path.as_str().to_string()).unwrap_or_else(|| "/".into());
    parts.uri = path.parse().map_err(TransportError::new)?;
    parts.headers.insert(
        http::header::HOST,
        http::HeaderValue::from_str(&format!("{host}:{port}")).map_err(TransportError::new)?,
    );
    let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await.map_err(TransportError::new)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(TransportError::new)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let response = sender.send_request(request).await.map_err(TransportError::new)?;
    let (parts, body) = response.into_parts();
    let frames = body.into_data_stream().map(|chunk| chunk.map_err(TransportError::new));
    let bounded = futures_util::stream::unfold((Box::pin(frames), deadline), |(mut frames, deadline)| async move {
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(next) => next,
                Err(_) => Some(Err(TransportError::timed_out("simulated response body timed out"))),
            },
            None => frames.next().await,
        };
        next.map(|item| (item, (frames, deadline)))
    });
    Ok(http::Response::from_parts(parts, ResponseBody::from_stream(bounded)))
}

/// A turmoil listener as axum's [`Listener`](axum::serve::Listener).
pub struct SimListener(pub turmoil::net::TcpListener);

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SimListener").field(&self.0.local_addr().ok()).finish()
    }
}

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => {
                    tracing::debug!(%error, "simulated accept failed");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
