//! Baton's control plane.
//!
//! An imperative shell around the store: HTTP handlers authenticate the caller, validate the
//! input, run ONE store transaction script on a blocking thread, and render the answer.
//! Long-polls and the event stream wait on in-process notifications raised after each commit;
//! sweepers expire offers, leases and sessions on a tick.
//!
//! Entry point: [`Server::start`], used by `baton server` and by the integration tests.

pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod state;
pub mod sweeper;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, Database};
pub use state::AppState;

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    /// Set when the admin token was generated at this start; shown to the operator once.
    generated_admin_token: Option<String>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    state: Arc<AppState>,
}

impl Server {
    /// Opens the store, binds the listener and starts serving and sweeping.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.timeouts.validate().context("check timeouts")?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("bind {}", config.listen))?;
        Server::start_on(config, listener).await
    }

    /// Like [`Server::start`], on a listener the caller bound.
    pub async fn start_on(config: Config, listener: TcpListener) -> anyhow::Result<Server> {
        // Small request/response exchanges must not wait for Nagle's algorithm: without
        // TCP_NODELAY a response split across segments stalls on the client's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::warn!(%error, "set TCP_NODELAY");
            }
        });
        Server::serve(config, listener).await
    }

    /// Like [`Server::start`], on any listener: the simulator's simulated sockets.
    pub async fn serve<L>(config: Config, listener: L) -> anyhow::Result<Server>
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let addr = listener.local_addr().context("read the listener's address")?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (state, generated_admin_token) = AppState::open(&config, shutdown_rx.clone()).await?;
        // Record liveness (extending deadlines after an outage) before the first request.
        sweeper::sweep_once(&state, config.sweep_interval).await;
        let app = http::router(state.clone());
        sweeper::spawn(state.clone(), config.sweep_interval, shutdown_rx.clone());
        webhooks::spawn(state.clone(), config.webhooks.clone(), shutdown_rx.clone());
        let mut wait_for_shutdown = shutdown_rx;
        let task = tokio::spawn(async move {
            serve_http(listener, app, async move {
                let _ = wait_for_shutdown.wait_for(|stop| *stop).await;
            })
            .await
        });
        tracing::info!(%addr, "baton server listening");
        Ok(Server { addr, generated_admin_token, shutdown, task, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn generated_admin_token(&self) -> Option<&str> {
        self.generated_admin_token.as_deref()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting requests, ends long-polls and event streams, and waits for the server
    /// task to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("join the server task")
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then lets each open connection
/// finish the request it is answering and waits for all of them to close.
///
/// hyper's HTTP/1.1 connections directly, rather than `axum::serve`: its connections first
/// read a few bytes on their own to tell HTTP/1.1 from HTTP/2, after which hyper's read buffer
/// grew from 8 to 16 KiB. A parked long-poll keeps its connection's buffers for as long as it
/// waits: with 1,000 runners waiting, the server's heap peaked at 33.1 MB that way and at
/// 25.4 MB this way.
async fn serve_http<L>(mut listener: L, app: axum::Router, shutdown: impl std::future::Future<Output = ()>)
where
    L: axum::serve::Listener,
{
    let builder = hyper::server::conn::http1::Builder::new();
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = connections.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}
