//! The listener: the runner's one session with the server.
//!
//! It registers once (credentials persist in the state dir), opens a session and long-polls
//! for messages, reporting as free only the slots whose previous worker has been reaped and
//! whose attempt directory is gone. It accepts offers only for free slots, starts a
//! supervisor per job, relays cancellations, and says goodbye on every clean exit.
//!
//! Signals: the first SIGTERM drains (no new offers, running jobs finish, then goodbye); a
//! second SIGTERM or a SIGINT cancels running jobs with the normal escalation, then goodbye.

pub mod credentials;
pub mod job;
pub mod logs;
pub mod renewer;
pub mod workers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use baton_api as api;
use baton_client::{Backoff, Client};
use tokio::sync::mpsc;

use crate::protocol::Escalation;
use job::{JobHandle, Report};
pub use workers::{Control, ProcessWorkers, Worker, WorkerStart, Workers};

/// How the runner identifies itself the first time.
#[derive(Debug, Clone)]
pub enum Registration {
    /// A registration token: registers under `name` with `labels`.
    Token(String),
    /// A single-use JIT config, bound to a runner created ahead.
    Jit(String),
    /// Use the stored credentials only.
    Stored,
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The server's base URL, or several replicas' separated by commas: requests go to one
    /// until it is found unavailable, then to the next (see `baton_client`).
    pub server: String,
    pub registration: Registration,
    pub name: String,
    /// Labels besides the defaults (`self-hosted`, OS, architecture).
    pub labels: Vec<String>,
    pub capacity: u32,
    pub ephemeral: bool,
    pub work_dir: PathBuf,
    pub state_dir: PathBuf,
    pub escalation: Escalation,
    /// The longest a poll waits on the server.
    pub poll_wait: Duration,
    /// Starts each job's worker: [`ProcessWorkers`] (`baton runner-worker` processes), or
    /// the simulator's.
    pub workers: Arc<dyn Workers>,
    /// Renew leases on a thread and runtime of their own (production), or on the runtime the
    /// listener runs on (the simulator, whose runner must leave nothing behind when it crashes).
    pub renew_on_own_thread: bool,
    /// How requests reach the server; reqwest over TCP when absent (the simulator plugs in its
    /// simulated network).
    pub transport: Option<std::sync::Arc<dyn baton_client::Transport>>,
}

/// Signals from the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Finish running jobs, take no new ones, leave.
    Drain,
    /// Cancel running jobs, then leave.
    Stop,
}

/// Runs the listener until it leaves: drained, retired, or its one ephemeral job done.
pub async fn run(mut config: RunnerConfig, mut signals: mpsc::UnboundedReceiver<Signal>) -> anyhow::Result<()> {
    anyhow::ensure!(config.capacity >= 1, "capacity must be at least 1");
    std::fs::create_dir_all(&config.work_dir).with_context(|| format!("create {}", config.work_dir.display()))?;
    std::fs::create_dir_all(&config.state_dir).with_context(|| format!("create {}", config.state_dir.display()))?;
    // Steps run in their own working directories: every path handed to them must be absolute.
    config.work_dir =
        std::fs::canonicalize(&config.work_dir).with_context(|| format!("resolve {}", config.work_dir.display()))?;
    config.state_dir =
        std::fs::canonicalize(&config.state_dir).with_context(|| format!("resolve {}", config.state_dir.display()))?;
    let anonymous = server_client(&config).context("configure the server URL")?;
    let credentials = obtain_credentials(&config, &anonymous).await?;
    let client = anonymous.with_token(credentials.credential.clone());
    // The renewer's own client: in production its own connection pool, so log uploads cannot
    // delay renewals. It shares the current server with `client`, so a server either of them
    // found unavailable is left by both.
    let renewer_client = match &config.transport {
        Some(_) => client.clone(),
        None => client.with_own_connections()?,
    };
    let renewer = if config.renew_on_own_thread {
        renewer::Renewer::start(renewer_client).context("start the renewal thread")?
    } else {
        renewer::Renewer::on_current_runtime(renewer_client)
    };

    // Nothing of an earlier run may linger: its attempt directories go, its undelivered
    // completions are delivered.
    job::collect_garbage(&config.work_dir);
    for pending in job::pending_completions(&config.state_dir) {
        tracing::info!(
            job_id = pending.job_id,
            attempt = pending.attempt,
            "delivering a completion from an earlier run"
        );
        job::replay(&client, &renewer, &config.state_dir, &pending).await;
    }

    let env = job::Environment {
        client: client.clone(),
        renewer,
        work_dir: config.work_dir.clone(),
        state_dir: config.state_dir.clone(),
        runner_name: credentials.name.clone(),
        escalation: config.escalation,
        workers: config.workers.clone(),
    };
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut session = open_session(&client).await?;
    let capacity = if config.ephemeral { 1 } else { config.capacity };
    let mut jobs: BTreeMap<job::AttemptKey, JobHandle> = BTreeMap::new();
    let mut busy_slots: std::collections::BTreeSet<job::AttemptKey> = Default::default();
    let mut terminations = 0u32;
    let mut ack = 0i64;
    let mut draining = false;
    let mut retired = false;
    let mut took_job = false;
    let mut stopping = false;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    tracing::info!(runner_id = credentials.runner_id, name = %credentials.name, capacity, "runner listening");

    loop {
        let done_taking = draining || (config.ephemeral && took_job);
        if done_taking && jobs.is_empty() {
            break;
        }
        let free =
            if done_taking { 0 } else { capacity.saturating_sub(u32::try_from(busy_slots.len()).unwrap_or(u32::MAX)) };
        let wait = config
            .poll_wait
            .min(Duration::from_secs(session.timeouts.long_poll_max_ms / 1000).max(Duration::from_secs(1)));
        let poll = client.poll(session.session_id, wait, free, ack);
        // Signals first, then reports, then the poll: a stop or a freed slot changes what the
        // next poll says, and a poll dropped for them is simply sent again (its messages are
        // acknowledged only by the next one, so none is lost).
        tokio::select! {
            biased;
            Some(signal) = signals.recv() => {
                // The first SIGTERM drains, even when the server already asked for a drain; a
                // second one, or SIGINT, stops.
                let stop = match signal {
                    Signal::Drain => {
                        terminations += 1;
                        terminations > 1
                    }
                    Signal::Stop => true,
                };
                draining = true;
                if stop {
                    tracing::info!("stopping: cancelling running jobs");
                    stopping = true;
                    for handle in jobs.values_mut() {
                        handle.cancel();
                    }
                } else {
                    tracing::info!("draining: finishing running jobs, taking no new ones");
                }
            },
            Some(report) = reports.recv() => {
                // A slot freed up or a job ended: poll again with the new count at once.
                match report {
                    Report::SlotFree { attempt } => { busy_slots.remove(&attempt); }
                    Report::Done { attempt } => { busy_slots.remove(&attempt); jobs.remove(&attempt); }
                }
            }
            outcome = poll => match outcome {
                Ok(response) => {
                    backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
                    let mut free = free;
                    for message in response.messages {
                        ack = ack.max(message.id);
                        match message.body {
                            api::MessageBody::JobOffer(offer) => {
                                if free == 0 || done_taking {
                                    tracing::info!(job_id = offer.job_id, "offer without a free slot; letting it time out");
                                    continue;
                                }
                                let sent = tokio::time::Instant::now();
                                match accept(&client, &offer).await {
                                    Ok(lease) => {
                                        free -= 1;
                                        took_job = true;
                                        busy_slots.insert((offer.job_id, offer.attempt));
                                        let ttl = Duration::from_millis(lease.lease_ttl_ms);
                                        tracing::info!(job_id = offer.job_id, attempt = offer.attempt, "job accepted");
                                        let handle = job::start(env.clone(), offer.clone(), ttl, sent, reports_tx.clone());
                                        jobs.insert((offer.job_id, offer.attempt), handle);
                                        if stopping && let Some(handle) = jobs.get_mut(&(offer.job_id, offer.attempt)) {
                                            handle.cancel();
                                        }
                                    }
                                    Err(error) => tracing::info!(job_id = offer.job_id, %error, "offer not accepted"),
                                }
                            }
                            api::MessageBody::Cancel { job_id, attempt, .. } => {
                                if let Some(handle) = jobs.get_mut(&(job_id, attempt)) {
                                    tracing::info!(job_id, "cancel requested");
                                    handle.cancel();
                                }
                            }
                            api::MessageBody::Drain => draining = true,
                            api::MessageBody::Retire => {
                                draining = true;
                                retired = true;
                            }
                        }
                    }
                }
                Err(error) if error.code() == Some("session_closed") => {
                    tracing::info!("session closed by the server; opening a new one");
                    session = open_session(&client).await?;
                }
                Err(error) if error.code() == Some("runner_retired") => {
                    retired = true;
                    draining = true;
                }
                Err(error) if error.status().is_some_and(|status| status.as_u16() == 401) => {
                    bail!("the server no longer accepts this runner's credential: {error}");
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "poll failed");
                    tokio::time::sleep(delay).await;
                }
            },
        }
    }
    match client.goodbye(session.session_id).await {
        Ok(info) => tracing::info!(state = %info.state, "said goodbye"),
        Err(error) => tracing::warn!(%error, "goodbye failed; the session will expire on its own"),
    }
    if retired || config.ephemeral {
        credentials::remove(&config.state_dir)?;
    }
    Ok(())
}

/// A client of the configured servers, with no token yet.
fn server_client(config: &RunnerConfig) -> anyhow::Result<Client> {
    Ok(match &config.transport {
        Some(transport) => Client::with_transport(&config.server, None, transport.clone())?,
        None => Client::new(&config.server, None)?,
    })
}

/// Accepts an offer, retrying an answer lost on the way: the server treats a repeated accept of
/// the same offer as success, and giving up would waste the attempt.
async fn accept(client: &Client, offer: &api::JobOffer) -> Result<api::LeaseResponse, baton_client::Error> {
    let fence = api::FencedRequest { epoch: offer.epoch, token: offer.token.clone() };
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match client.accept(offer.job_id, offer.attempt, &fence).await {
            Err(error) if error.is_retryable() && tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            outcome => return outcome,
        }
    }
}

async fn open_session(client: &Client) -> anyhow::Result<api::SessionResponse> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match client.open_session().await {
            Ok(session) => return Ok(session),
            Err(error) if error.is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "open session failed");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error).context("open a session"),
        }
    }
}

async fn obtain_credentials(config: &RunnerConfig, anonymous: &Client) -> anyhow::Result<credentials::Credentials> {
    if let Some(stored) = credentials::load(&config.state_dir)? {
        if stored.is_for_servers(anonymous.server_urls()) {
            tracing::info!(runner_id = stored.runner_id, "using stored credentials");
            return Ok(stored);
        }
        tracing::warn!(stored = %stored.server, "stored credentials are for another server; registering anew");
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let registered = loop {
        let outcome = match &config.registration {
            Registration::Token(token) => {
                let mut labels = crate::worker::env::default_labels();
                labels.extend(config.labels.iter().cloned());
                anonymous
                    .register(&api::RegisterRequest {
                        token: token.clone(),
                        name: config.name.clone(),
                        labels,
                        capacity: config.capacity,
                        ephemeral: config.ephemeral,
                    })
                    .await
            }
            Registration::Jit(jit_config) => {
                anonymous.register_jit(&api::RegisterJitRequest { jit_config: jit_config.clone() }).await
            }
            Registration::Stored => bail!(
                "no stored credentials in {}; register with --token or --jit",
                credentials::path(&config.state_dir).display()
            ),
        };
        match outcome {
            Ok(registered) => break registered,
            Err(error) if error.is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, "registration failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error).context("register the runner"),
        }
    };
    let stored = credentials::Credentials {
        server: anonymous.server_urls().join(","),
        runner_id: registered.runner.id,
        name: registered.runner.name.clone(),
        credential: registered.credential,
    };
    credentials::store(&config.state_dir, &stored)?;
    Ok(stored)
}
