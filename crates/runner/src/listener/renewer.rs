//! Lease renewal, on a thread of its own.
//!
//! Renewals run on a dedicated OS thread with its own single-threaded runtime and its own HTTP
//! connection pool, so neither the listener's log uploads nor a busy runtime can delay them.
//! Each lease renews every third of its ttl. The runner fences itself: when no renewal has
//! succeeded by the lease's deadline minus a margin (measured from when the last successful
//! renewal was *sent*, which is never later than when the server measured it), the lease's
//! job is fenced: its worker is killed before the server can expire the lease and re-offer the
//! job, so two machines never run one attempt at once. Renewals go on after the fence until the
//! guard is dropped or the server says the lease is gone: a job that finished before its fence
//! still delivers its result if the server kept the lease.
//!
//! The simulator runs renewals on the listener's runtime instead
//! ([`Renewer::on_current_runtime`]), so that every task of a simulated runner lives on one
//! runtime under its virtual clock, and dies with it when the simulated machine crashes.

use std::time::Duration;

use baton_api as api;
use baton_client::Client;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a lease's watcher learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Held,
    /// The server asked for the job to be cancelled.
    CancelRequested,
    /// The lease is lost (server said stale, or no renewal in time): stop the worker now.
    Fenced,
}

/// Where renewals run: the renewal thread's runtime, or the listener's own.
#[derive(Debug, Clone)]
pub struct Renewer {
    handle: tokio::runtime::Handle,
    client: Client,
}

/// A lease being renewed; dropping it stops the renewals.
#[derive(Debug)]
pub struct LeaseGuard {
    pub state: watch::Receiver<LeaseState>,
    /// Until when the job may run without another successful renewal (the fence deadline).
    pub valid_until: watch::Receiver<Instant>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Renewer {
    /// Starts the renewal thread with its own client (and so its own connections).
    pub fn start(client: Client) -> std::io::Result<Renewer> {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("baton-renewer".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            };
            let _ = sender.send(Ok(runtime.handle().clone()));
            // Runs until the process exits.
            runtime.block_on(std::future::pending::<()>());
        })?;
        let handle = receiver.recv().map_err(|_| std::io::Error::other("the renewer thread died"))??;
        Ok(Renewer { handle, client })
    }

    /// Renews on the runtime this is called on, with its own client. Renewals then compete
    /// with everything else on that runtime: for tests and the simulator, not for production.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn on_current_runtime(client: Client) -> Renewer {
        Renewer { handle: tokio::runtime::Handle::current(), client }
    }

    /// Renews a lease accepted at `accepted_at` (when the accept was sent) with `ttl`, until
    /// the guard is dropped.
    pub fn hold(
        &self,
        job_id: i64,
        attempt: u32,
        fence: api::FencedRequest,
        ttl: Duration,
        accepted_at: Instant,
    ) -> LeaseGuard {
        let (state_tx, state_rx) = watch::channel(LeaseState::Held);
        let (valid_tx, valid_rx) = watch::channel(accepted_at + ttl - fence_margin(ttl));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let client = self.client.clone();
        self.handle.spawn(async move {
            tokio::select! {
                // A dropped guard stops the renewals before another one is sent.
                biased;
                _ = stop_rx => {}
                _ = renew_loop(client, job_id, attempt, fence, ttl, accepted_at, state_tx, valid_tx) => {}
            }
        });
        LeaseGuard { state: state_rx, valid_until: valid_rx, stop: Some(stop_tx) }
    }
}

/// The margin before the lease deadline at which the runner fences itself.
pub fn fence_margin(ttl: Duration) -> Duration {
    ttl / 5
}

#[expect(clippy::too_many_arguments, reason = "one lease's identity, timing and its two reporting channels")]
async fn renew_loop(
    client: Client,
    job_id: i64,
    attempt: u32,
    fence: api::FencedRequest,
    ttl: Duration,
    accepted_at: Instant,
    state: watch::Sender<LeaseState>,
    valid_until: watch::Sender<Instant>,
) {
    let interval = ttl / 3;
    let retry = (ttl / 12).max(Duration::from_millis(20));
    let margin = fence_margin(ttl);
    let mut last_ok_sent = accepted_at;
    let mut next = accepted_at + interval;
    let mut fenced = false;
    loop {
        let fence_at = last_ok_sent + ttl - margin;
        tokio::select! {
            // When both are due the fence wins: a renewal sent at the fence deadline would come
            // too late to keep the job from running past it.
            biased;
            _ = tokio::time::sleep_until(fence_at), if !fenced => {
                tracing::warn!(job_id, attempt, "no lease renewal succeeded in time: fencing the job");
                let _ = state.send(LeaseState::Fenced);
                // Renewals go on. A worker still running is being killed and its attempt
                // reports nothing, but one that had already finished holds a result: a server
                // that was away extends live leases by its outage, and the result is delivered
                // only if the lease is still renewed once the server is back (found by the
                // fleet simulator, seed 7046: the lease ran out while the log upload waited
                // out its backoff, and a finished job's result was dropped).
                fenced = true;
                continue;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        // Past the fence deadline a renewal is no longer racing it; give it a third of the ttl.
        let patience = if fenced { interval } else { fence_at.saturating_duration_since(sent) };
        let outcome = tokio::time::timeout(patience, client.renew(job_id, attempt, &fence)).await;
        match outcome {
            Ok(Ok(lease)) => {
                last_ok_sent = sent;
                next = sent + interval;
                let _ = valid_until.send(last_ok_sent + ttl - margin);
                if lease.cancel_requested {
                    state.send_if_modified(|current| {
                        let change = *current == LeaseState::Held;
                        if change {
                            *current = LeaseState::CancelRequested;
                        }
                        change
                    });
                }
            }
            Ok(Err(error))
                if error.is_stale_lease()
                    || matches!(error.status().map(|status| status.as_u16()), Some(401 | 403 | 404)) =>
            {
                tracing::warn!(job_id, attempt, %error, "the lease is gone: fencing the job");
                let _ = state.send(LeaseState::Fenced);
                return;
            }
            Ok(Err(error)) => {
                tracing::debug!(job_id, attempt, %error, "renewal failed; retrying");
                next = Instant::now() + retry;
            }
            Err(_) if fenced => {
                next = Instant::now() + retry;
            }
            Err(_) => {
                next = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use axum::http::StatusCode;

    use super::*;

    /// A server that answers renewals with 503 while `away`, and grants them otherwise.
    struct FakeServer {
        away: AtomicBool,
        granted: AtomicUsize,
    }

    async fn serve(fake: Arc<FakeServer>) -> String {
        let router = axum::Router::new().route(
            "/api/v1/jobs/{job}/attempts/{attempt}/renew",
            axum::routing::post(move || {
                let fake = fake.clone();
                async move {
                    if fake.away.load(Ordering::SeqCst) {
                        return Err(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    fake.granted.fetch_add(1, Ordering::SeqCst);
                    Ok(axum::Json(api::LeaseResponse {
                        lease_deadline: "2026-01-01T00:00:00Z".to_string(),
                        lease_ttl_ms: 600,
                        cancel_requested: false,
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}")
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn renewals_go_on_after_the_fence_so_a_finished_job_can_still_deliver() {
        let fake = Arc::new(FakeServer { away: AtomicBool::new(true), granted: AtomicUsize::new(0) });
        let url = serve(fake.clone()).await;
        let client = Client::new(&url, Some("runner-token".to_string())).expect("client");
        let fence = api::FencedRequest { epoch: 1, token: "job-token".to_string() };
        let ttl = Duration::from_millis(600);
        let accepted_at = Instant::now();
        let mut guard = Renewer::on_current_runtime(client).hold(3, 1, fence, ttl, accepted_at);
        let first_deadline = *guard.valid_until.borrow();

        // The server is away: no renewal succeeds, and the job is fenced at its deadline.
        guard.state.changed().await.expect("the renewer reports");
        assert_eq!(*guard.state.borrow_and_update(), LeaseState::Fenced);
        assert!(accepted_at.elapsed() >= ttl - fence_margin(ttl));
        assert_eq!(fake.granted.load(Ordering::SeqCst), 0);

        // The server is back (it extended the lease by its outage): renewals reach it, so the
        // lease stays held while a finished job's log and completion go out.
        fake.away.store(false, Ordering::SeqCst);
        wait_for("a renewal after the fence", || fake.granted.load(Ordering::SeqCst) >= 2).await;
        wait_for("a later deadline", || *guard.valid_until.borrow() > first_deadline).await;
        // The fence stands: a renewal after it never tells a killed worker to go on.
        assert_eq!(*guard.state.borrow(), LeaseState::Fenced);
    }
}
