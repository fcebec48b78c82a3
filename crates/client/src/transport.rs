//! The seam between [`Client`](crate::Client) and the network.
//!
//! A [`Transport`] carries one finished request (method, full URL, headers, body) and answers
//! with the response's head and a [`ResponseBody`]. [`Client::new`](crate::Client::new) uses
//! `ReqwestTransport`, which keeps reqwest's connection pool; the deterministic simulation
//! plugs in its own transport through [`Client::with_transport`](crate::Client::with_transport),
//! so the same client code, retry policy included, runs on virtual time.
//!
//! Everything above the seam (URLs, tokens, JSON, error bodies) stays in `lib.rs`; nothing here
//! knows the API.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, Stream};

/// Carries requests to a Baton server and brings back its answers.
///
/// A transport is shared by every clone of a [`Client`](crate::Client), and by clients made
/// from them with [`Client::with_token`](crate::Client::with_token), so it must be cheap to use
/// from many tasks at once.
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends `request` and resolves once the answer's status and headers have arrived.
    ///
    /// The request's URI is absolute (the server's base URL joined with the API path). It
    /// carries `authorization: Bearer …` when the client has a token and
    /// `content-type: application/json` when it has a body; an empty body means none.
    ///
    /// `timeout` bounds the whole exchange, reading the body included: when it passes, the
    /// future or the next body read fails with a [`TransportError::timed_out`]. `None` leaves
    /// the exchange unbounded; only the event stream asks for that.
    ///
    /// Any answer the server gave, 4xx and 5xx included, is `Ok`. `Err` means there was no
    /// complete answer: the client treats it as retryable.
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, TransportError>>;
}

/// No answer to a request: the connection failed, was reset, or the timeout passed.
///
/// It displays as its cause and hands on the cause's own source, so an error chain printed with
/// `{:#}` reads the same whichever transport produced it.
#[derive(Debug)]
pub struct TransportError {
    cause: Box<dyn std::error::Error + Send + Sync>,
    is_timeout: bool,
}

impl TransportError {
    /// A failure other than a timeout, e.g. `TransportError::new("connection refused")`.
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TransportError {
        TransportError { cause: cause.into(), is_timeout: false }
    }

    /// The exchange's timeout passed before the answer was complete.
    pub fn timed_out(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TransportError {
        TransportError { cause: cause.into(), is_timeout: true }
    }

    /// True when the request gave up because its timeout passed.
    pub fn is_timeout(&self) -> bool {
        self.is_timeout
    }

    fn from_reqwest(error: reqwest::Error) -> TransportError {
        let is_timeout = error.is_timeout();
        TransportError { cause: Box::new(error), is_timeout }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.cause, f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

/// The body of an answer, read whole or chunk by chunk (the event stream never ends).
pub struct ResponseBody {
    inner: BodyInner,
}

enum BodyInner {
    /// All of it at once; `None` once read.
    Full(Option<Bytes>),
    Stream(BoxStream<'static, Result<Bytes, TransportError>>),
    /// Read with reqwest's own methods, so its errors (and the URL they carry) stay as they were.
    Reqwest(reqwest::Response),
}

impl ResponseBody {
    /// A body that arrives in chunks, e.g. a simulated event stream that stays open.
    pub fn from_stream(stream: impl Stream<Item = Result<Bytes, TransportError>> + Send + 'static) -> ResponseBody {
        ResponseBody { inner: BodyInner::Stream(stream.boxed()) }
    }

    /// The next chunk; `None` when the body has ended.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        match &mut self.inner {
            BodyInner::Full(bytes) => Ok(bytes.take()),
            BodyInner::Stream(stream) => stream.next().await.transpose(),
            BodyInner::Reqwest(response) => response.chunk().await.map_err(TransportError::from_reqwest),
        }
    }

    /// The rest of the body, waiting for its end.
    pub async fn bytes(self) -> Result<Bytes, TransportError> {
        match self.inner {
            BodyInner::Full(bytes) => Ok(bytes.unwrap_or_default()),
            BodyInner::Stream(mut stream) => {
                let mut all = BytesMut::new();
                while let Some(chunk) = stream.next().await {
                    all.extend_from_slice(&chunk?);
                }
                Ok(all.freeze())
            }
            BodyInner::Reqwest(response) => response.bytes().await.map_err(TransportError::from_reqwest),
        }
    }

    /// The URL the answer came from after redirects, when the transport follows them.
    pub(crate) fn final_url(&self) -> Option<&str> {
        match &self.inner {
            BodyInner::Reqwest(response) => Some(response.url().as_str()),
            BodyInner::Full(_) | BodyInner::Stream(_) => None,
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            BodyInner::Full(bytes) => f.debug_tuple("Full").field(&bytes.as_ref().map(Bytes::len)).finish(),
            BodyInner::Stream(_) => f.write_str("Stream"),
            BodyInner::Reqwest(response) => f.debug_tuple("Reqwest").field(response).finish(),
        }
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> ResponseBody {
        ResponseBody { inner: BodyInner::Full(Some(bytes)) }
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(bytes: Vec<u8>) -> ResponseBody {
        ResponseBody::from(Bytes::from(bytes))
    }
}

impl From<String> for ResponseBody {
    fn from(text: String) -> ResponseBody {
        ResponseBody::from(Bytes::from(text))
    }
}

impl From<&'static str> for ResponseBody {
    fn from(text: &'static str) -> ResponseBody {
        ResponseBody::from(Bytes::from_static(text.as_bytes()))
    }
}

/// The production transport: one pooled reqwest client, shared by every clone.
#[derive(Debug, Clone)]
pub(crate) struct ReqwestTransport {
    http: reqwest::Client,
}

impl ReqwestTransport {
    pub(crate) fn new() -> reqwest::Result<ReqwestTransport> {
        // One TLS provider for the whole process; a second install is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(ReqwestTransport { http })
    }
}

impl Transport for ReqwestTransport {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, TransportError>> {
        let mut request = match reqwest::Request::try_from(request) {
            Ok(request) => request,
            Err(error) => return Box::pin(std::future::ready(Err(TransportError::from_reqwest(error)))),
        };
        // reqwest's total timeout, which also covers reading the body.
        *request.timeout_mut() = timeout;
        let pending = self.http.execute(request);
        Box::pin(async move {
            let response = pending.await.map_err(TransportError::from_reqwest)?;
            let mut head = http::Response::new(());
            *head.status_mut() = response.status();
            *head.version_mut() = response.version();
            *head.headers_mut() = response.headers().clone();
            Ok(head.map(|()| ResponseBody { inner: BodyInner::Reqwest(response) }))
        })
    }
}
