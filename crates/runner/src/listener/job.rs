//! One job on this runner, from accept to acknowledged completion.
//!
//! The supervisor starts the worker (through the runner's [`Workers`] launcher), holds the
//! lease, streams the worker's log to the uploader, and relays cancellation. When the worker
//! exits it makes sure nothing of the job is left running (its process groups are empty) and
//! removes the attempt directory: only then is the slot free (F3). The completion is written
//! to disk before it is sent and sent until the server acknowledges it or says the lease is
//! stale, also after a listener restart.
//!
//! If the lease is lost, the job's steps are killed at once, the worker is told to stop, and
//! nothing more is reported (fencing).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_api as api;
use baton_client::{Backoff, Client};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::logs::{LogSink, Upload};
use super::renewer::{LeaseState, Renewer};
use super::workers::{Control, WORKER_PID_FILE, Worker, WorkerStart, Workers};
use crate::protocol::{Escalation, WorkerEvent, WorkerSpec};
use crate::worker::AttemptDirs;
use crate::worker::process;

/// A completion on disk until the server acknowledged it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCompletion {
    pub job_id: i64,
    pub attempt: u32,
    pub fence: api::FencedRequest,
    pub result: api::AttemptResult,
    pub outputs: std::collections::BTreeMap<String, String>,
    pub summary: String,
}

/// Everything a supervisor needs from its listener.
#[derive(Debug, Clone)]
pub struct Environment {
    pub client: Client,
    pub renewer: Renewer,
    pub work_dir: PathBuf,
    pub state_dir: PathBuf,
    pub runner_name: String,
    pub escalation: Escalation,
    /// Starts each job's worker.
    pub workers: Arc<dyn Workers>,
}

/// What the supervisor tells the listener.
#[derive(Debug)]
pub enum Report {
    /// The worker is gone, its processes too, and its directory removed: the slot is free.
    SlotFree { attempt: AttemptKey },
    /// The attempt is finished as far as this runner is concerned.
    Done { attempt: AttemptKey },
}

/// One attempt on this runner. Slots and handles are per attempt: an old attempt of a job that
/// finishes late must never free the slot of the job's newer attempt.
pub type AttemptKey = (i64, u32);

/// Controls a running job.
#[derive(Debug)]
pub struct JobHandle {
    cancel: Option<oneshot::Sender<()>>,
}

impl JobHandle {
    pub fn cancel(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
    }
}

pub fn attempt_dir(work_dir: &Path, job_id: i64, attempt: u32) -> PathBuf {
    work_dir.join(job_id.to_string()).join(attempt.to_string())
}

fn pending_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pending")
}

fn spool_path(state_dir: &Path, job_id: i64, attempt: u32) -> PathBuf {
    state_dir.join("spool").join(format!("{job_id}-{attempt}.jsonl"))
}

/// Starts supervising an accepted offer.
pub fn start(
    env: Environment,
    offer: api::JobOffer,
    lease_ttl: Duration,
    accepted_at: tokio::time::Instant,
    reports: mpsc::UnboundedSender<Report>,
) -> JobHandle {
    let (cancel_tx, cancel_rx) = oneshot::channel();
    tokio::spawn(async move {
        let key = (offer.job_id, offer.attempt);
        let mut slot_freed = false;
        if let Err(error) = supervise(&env, offer, lease_ttl, accepted_at, cancel_rx, &reports, &mut slot_freed).await {
            tracing::error!(job_id = key.0, attempt = key.1, error = format!("{error:#}"), "job supervision failed");
        }
        if !slot_freed {
            let _ = reports.send(Report::SlotFree { attempt: key });
        }
        let _ = reports.send(Report::Done { attempt: key });
    });
    JobHandle { cancel: Some(cancel_tx) }
}

async fn supervise(
    env: &Environment,
    offer: api::JobOffer,
    lease_ttl: Duration,
    accepted_at: tokio::time::Instant,
    mut cancel: oneshot::Receiver<()>,
    reports: &mpsc::UnboundedSender<Report>,
    slot_freed: &mut bool,
) -> anyhow::Result<()> {
    let (job_id, attempt) = (offer.job_id, offer.attempt);
    let fence = api::FencedRequest { epoch: offer.epoch, token: offer.token.clone() };
    let mut lease = env.renewer.hold(job_id, attempt, fence.clone(), lease_ttl, accepted_at);
    let dirs = AttemptDirs::new(&attempt_dir(&env.work_dir, job_id, attempt));
    dirs.create().with_context(|| format!("create {}", dirs.root.display()))?;
    let spec = WorkerSpec {
        job_id,
        attempt,
        runner_name: env.runner_name.clone(),
        spec: offer.spec.clone(),
        secrets: offer.secrets.clone(),
        escalation: env.escalation,
        lease_valid_for_ms: millis(lease.valid_until.borrow().saturating_duration_since(tokio::time::Instant::now())),
    };
    write_private(&dirs.spec_path(), &serde_json::to_vec(&spec)?)
        .with_context(|| format!("write {}", dirs.spec_path().display()))?;
    let logs =
        LogSink::start(env.client.clone(), job_id, attempt, fence.clone(), spool_path(&env.state_dir, job_id, attempt));

    let mut worker = env.workers.start(WorkerStart { job_id, attempt, dirs: &dirs, spec: &spec })?;
    let mut result: Option<(api::AttemptResult, std::collections::BTreeMap<String, String>, String)> = None;
    let mut fenced = false;
    let mut cancel_sent = false;

    // Relay until the worker closes its output (it exits right after its result). The branches
    // are polled in order: a lost lease is acted on before anything else the worker says, and
    // a cancel or a renewed lease reaches the worker before its next line is read.
    loop {
        tokio::select! {
            biased;
            changed = lease.state.changed() => {
                let state = if changed.is_ok() { *lease.state.borrow_and_update() } else { LeaseState::Fenced };
                match state {
                    LeaseState::Fenced => {
                        // Kill first, then stop talking about this attempt: the steps' groups
                        // now; closing the control channel (below) makes the worker sweep
                        // whatever escaped them (it is their subreaper, so it must not be
                        // killed before that).
                        fenced = true;
                        worker.kill_steps();
                        // What the worker said before the kill still counts: a result it had
                        // already sent when the fence came (found by the fleet simulator, seed
                        // 3175: the job ended at the fence's instant, the fence was read first,
                        // and a finished job's result was dropped). The server decides by the
                        // lease's token whether it still takes it.
                        for event in ready_events(worker.as_mut(), READY_EVENTS_MAX) {
                            match event {
                                WorkerEvent::Log { text } => logs.push(text),
                                WorkerEvent::Result { result: outcome, outputs, summary } => {
                                    result = Some((outcome, outputs, summary));
                                }
                                WorkerEvent::ProcessGroup { .. } => {}
                            }
                        }
                        break;
                    }
                    LeaseState::CancelRequested if !cancel_sent => {
                        cancel_sent = true;
                        worker.send_control(Control::Cancel).await;
                    }
                    _ => {}
                }
            },
            _ = &mut cancel, if !cancel_sent => {
                cancel_sent = true;
                worker.send_control(Control::Cancel).await;
            },
            valid = lease.valid_until.changed() => {
                if valid.is_ok() {
                    let left = lease.valid_until.borrow_and_update().saturating_duration_since(tokio::time::Instant::now());
                    worker.send_control(Control::LeaseLeft { valid_for_ms: millis(left) }).await;
                }
            },
            event = worker.next_event() => match event {
                Some(WorkerEvent::Log { text }) => logs.push(text),
                Some(WorkerEvent::Result { result: outcome, outputs, summary }) => result = Some((outcome, outputs, summary)),
                // The launcher keeps the job's process groups: it kills and waits for them.
                Some(WorkerEvent::ProcessGroup { .. }) => {}
                None => break,
            },
        }
    }
    worker.close_control();
    let status = worker.reap(WORKER_EXIT_GRACE).await?;
    // The job's slot is free only once nothing of it is left: worker reaped, every process
    // group it reported empty, its directory gone.
    worker.wait_job_gone().await;
    drop(worker);
    remove_tree(&dirs.root);
    let job_dir = env.work_dir.join(job_id.to_string());
    let _ = std::fs::remove_dir(&job_dir);
    let _ = reports.send(Report::SlotFree { attempt: (job_id, attempt) });
    *slot_freed = true;

    if fenced && result.is_none() {
        logs.abort();
        let _ = std::fs::remove_file(spool_path(&env.state_dir, job_id, attempt));
        tracing::warn!(job_id, attempt, "job fenced: its lease was lost; nothing is reported for it");
        return Ok(());
    }
    if fenced {
        tracing::warn!(job_id, attempt, "the job finished as its lease was fenced; reporting its result");
    }
    let (result, outputs, summary) = result.unwrap_or_else(|| {
        tracing::error!(job_id, ?status, "the worker exited without a result");
        (api::AttemptResult::Failure, Default::default(), String::new())
    });
    let pending = PendingCompletion { job_id, attempt, fence, result, outputs, summary };
    // Order matters for a crash at any point: the whole log is in the spool before the
    // completion is on disk, and both are on disk before anything is sent.
    let mut logs = logs;
    logs.close().await;
    if let Err(error) = persist(&env.state_dir, &pending) {
        // Without the file a listener crash would lose the result; without the result the
        // job would be lost now. Deliver from memory.
        tracing::error!(job_id, %error, "persist the completion; delivering it from memory");
    }
    // The log goes first, whole, so a completed job's log is never missing its end.
    match logs.finish().await {
        Ok(Upload::Fenced) => {
            forget(&env.state_dir, job_id, attempt);
            return Ok(());
        }
        Ok(Upload::Complete) => {}
        Err(error) => tracing::error!(job_id, error = format!("{error:#}"), "log upload failed; completing anyway"),
    }
    deliver(&env.client, &env.state_dir, &pending).await;
    drop(lease);
    Ok(())
}

/// Most events read in one go after a fence: a worker that keeps talking cannot hold it up.
const READY_EVENTS_MAX: usize = 1024;

/// The worker's events that are ready now, read without waiting for more (at most `limit`).
fn ready_events(worker: &mut dyn Worker, limit: usize) -> Vec<WorkerEvent> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let mut events = Vec::new();
    while events.len() < limit {
        // `next_event` is cancel-safe: a future dropped while pending loses nothing.
        match worker.next_event().as_mut().poll(&mut context) {
            std::task::Poll::Ready(Some(event)) => events.push(event),
            std::task::Poll::Ready(None) | std::task::Poll::Pending => break,
        }
    }
    events
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How long a restarted listener keeps trying to renew the lease of a completion it replays.
const REPLAY_RENEW_PATIENCE: Duration = Duration::from_secs(120);

/// How long a worker whose control pipe closed may take to sweep and exit before it is killed.
const WORKER_EXIT_GRACE: Duration = Duration::from_secs(3);

fn remove_tree(path: &Path) {
    let first = std::fs::remove_dir_all(path);
    if let Err(error) = &first
        && error.kind() == std::io::ErrorKind::PermissionDenied
    {
        // A job may leave read-only directories (Go's module cache does); make them writable.
        make_writable(path);
    }
    if first.is_err()
        && let Err(error) = std::fs::remove_dir_all(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(path = %path.display(), %error, "remove the attempt directory");
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return };
    if metadata.is_dir() {
        let mut permissions = metadata.permissions();
        permissions.set_mode(permissions.mode() | 0o700);
        let _ = std::fs::set_permissions(path, permissions);
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}

/// Writes a file only its owner may read: the worker spec holds the run's secrets.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // The mode above applies only to a new file; a leftover one keeps its own, so set it too,
    // before any secret is written.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

fn pending_path(state_dir: &Path, job_id: i64, attempt: u32) -> PathBuf {
    pending_dir(state_dir).join(format!("{job_id}-{attempt}.json"))
}

fn persist(state_dir: &Path, pending: &PendingCompletion) -> anyhow::Result<()> {
    let dir = pending_dir(state_dir);
    std::fs::create_dir_all(&dir)?;
    let path = pending_path(state_dir, pending.job_id, pending.attempt);
    let temp = path.with_extension("tmp");
    let file = std::fs::File::create(&temp)?;
    serde_json::to_writer(&file, pending)?;
    file.sync_all()?;
    std::fs::rename(&temp, &path)?;
    Ok(())
}

fn forget(state_dir: &Path, job_id: i64, attempt: u32) {
    let _ = std::fs::remove_file(pending_path(state_dir, job_id, attempt));
}

/// Sends a completion until the server acknowledges it or says the lease is stale.
pub async fn deliver(client: &Client, state_dir: &Path, pending: &PendingCompletion) {
    let mut request = api::CompleteRequest {
        epoch: pending.fence.epoch,
        token: pending.fence.token.clone(),
        result: pending.result,
        outputs: pending.outputs.clone(),
        summary: (!pending.summary.is_empty()).then(|| pending.summary.clone()),
    };
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(10));
    let mut fell_back = false;
    loop {
        match client.complete(pending.job_id, pending.attempt, &request).await {
            Ok(_) => break,
            Err(error) if error.is_retryable() => {
                tracing::debug!(%error, "completion not acknowledged yet; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error)
                if !fell_back && matches!(error.status().map(|status| status.as_u16()), Some(400 | 413 | 422)) =>
            {
                fell_back = true;
                // The server refused what the job produced (too large, say). Losing the result
                // would rerun the job; report a failure that says why instead.
                tracing::warn!(job_id = pending.job_id, %error, "completion refused; reporting a failure without outputs");
                request.result = api::AttemptResult::Failure;
                request.outputs.clear();
                request.summary = Some(format!("The job's result could not be stored: {error}"));
            }
            Err(error) => {
                tracing::warn!(job_id = pending.job_id, %error, "completion refused; dropping it");
                break;
            }
        }
    }
    forget(state_dir, pending.job_id, pending.attempt);
}

/// Delivers a completion an earlier run of the listener persisted: its spooled log first, then
/// the completion itself.
pub async fn replay(client: &Client, renewer: &Renewer, state_dir: &Path, pending: &PendingCompletion) {
    // The lease has not been renewed since the earlier run stopped: renew it first, and keep
    // renewing while a large spool uploads, so the completion still finds it. A server that is
    // away now (restarting too, say) extends live leases by its outage when it is back, so the
    // first renewal is retried, briefly spaced, until it is answered: giving up on it would
    // leave the lease unrenewed while the completion waits out a long backoff, and lose a
    // finished job's result (found by the fleet simulator, seed 251).
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let give_up = tokio::time::Instant::now() + REPLAY_RENEW_PATIENCE;
    let _lease = loop {
        let sent = tokio::time::Instant::now();
        match client.renew(pending.job_id, pending.attempt, &pending.fence).await {
            Ok(lease) => {
                break Some(renewer.hold(
                    pending.job_id,
                    pending.attempt,
                    pending.fence.clone(),
                    Duration::from_millis(lease.lease_ttl_ms),
                    sent,
                ));
            }
            Err(error) if error.is_stale_lease() => {
                tracing::warn!(job_id = pending.job_id, "the lease of a replayed completion is gone; dropping it");
                forget(state_dir, pending.job_id, pending.attempt);
                let _ = std::fs::remove_file(spool_path(state_dir, pending.job_id, pending.attempt));
                return;
            }
            Err(error) if error.is_retryable() && tokio::time::Instant::now() < give_up => {
                tracing::debug!(job_id = pending.job_id, %error, "renewing a replayed completion's lease; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => {
                tracing::warn!(job_id = pending.job_id, %error, "could not renew the lease of a replayed completion; trying anyway");
                break None;
            }
        }
    };
    let spool = spool_path(state_dir, pending.job_id, pending.attempt);
    match super::logs::replay(client, pending.job_id, pending.attempt, &pending.fence, &spool).await {
        Ok(Upload::Complete) => deliver(client, state_dir, pending).await,
        Ok(Upload::Fenced) => {
            tracing::warn!(job_id = pending.job_id, "the lease of a replayed completion is gone; dropping it");
            forget(state_dir, pending.job_id, pending.attempt);
        }
        Err(error) => {
            // The result matters more than the log: deliver it anyway.
            tracing::error!(
                job_id = pending.job_id,
                error = format!("{error:#}"),
                "replay the log spool; completing anyway"
            );
            deliver(client, state_dir, pending).await;
        }
    }
}

/// Completions a previous run of the listener persisted but did not deliver.
pub fn pending_completions(state_dir: &Path) -> Vec<PendingCompletion> {
    let Ok(entries) = std::fs::read_dir(pending_dir(state_dir)) else { return Vec::new() };
    let mut out: Vec<PendingCompletion> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|extension| extension == "json") {
            match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
            {
                Ok(pending) => out.push(pending),
                Err(error) => {
                    tracing::error!(path = %path.display(), error = format!("{error:#}"), "unreadable pending completion")
                }
            }
        }
    }
    // In attempt order, not the directory's, so that a restart replays them the same way
    // every time.
    out.sort_by_key(|pending| (pending.job_id, pending.attempt));
    out
}

/// Removes attempt directories a crashed earlier run left behind, after killing any worker
/// of theirs that is still alive.
pub fn collect_garbage(work_dir: &Path) {
    let Ok(jobs) = std::fs::read_dir(work_dir) else { return };
    for job in jobs.flatten() {
        let Ok(attempts) = std::fs::read_dir(job.path()) else { continue };
        for attempt in attempts.flatten() {
            let dir = attempt.path();
            if let Some(pgid) =
                std::fs::read_to_string(dir.join(WORKER_PID_FILE)).ok().and_then(|text| text.trim().parse::<i32>().ok())
                && pgid > 1
                && is_worker(pgid)
            {
                process::signal_group(pgid, Signal::SIGKILL);
            }
            tracing::info!(dir = %dir.display(), "removing an attempt directory left by an earlier run");
            remove_tree(&dir);
        }
        let _ = std::fs::remove_dir(job.path());
    }
}

/// True when `pid` is still one of our workers (and not a recycled pid).
fn is_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| cmdline.split(|byte| *byte == 0).any(|arg| arg == crate::WORKER_SUBCOMMAND.as_bytes()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::ExitStatus;
    use std::sync::Mutex;

    use expect_test::expect;

    use super::*;
    use crate::listener::workers::{BoxFuture, Worker};

    /// Workers the test drives: their events come from the test, and what the supervisor does
    /// to them is written down.
    #[derive(Debug)]
    struct FakeWorkers {
        events: Mutex<Option<mpsc::UnboundedReceiver<WorkerEvent>>>,
        controls: mpsc::UnboundedSender<Control>,
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl Workers for FakeWorkers {
        fn start(&self, start: WorkerStart<'_>) -> anyhow::Result<Box<dyn Worker>> {
            let events = self.events.lock().expect("not poisoned").take().context("one worker per test")?;
            let spec_written = start.dirs.spec_path().exists();
            self.calls.lock().expect("not poisoned").push(format!(
                "start {}/{} spec_written={spec_written} spec_job_id={}",
                start.job_id, start.attempt, start.spec.job_id
            ));
            Ok(Box::new(FakeWorker {
                events,
                controls: self.controls.clone(),
                calls: self.calls.clone(),
                root: start.dirs.root.clone(),
            }))
        }
    }

    #[derive(Debug)]
    struct FakeWorker {
        events: mpsc::UnboundedReceiver<WorkerEvent>,
        controls: mpsc::UnboundedSender<Control>,
        calls: Arc<Mutex<Vec<String>>>,
        root: PathBuf,
    }

    impl FakeWorker {
        fn record(&self, call: String) {
            self.calls.lock().expect("not poisoned").push(call);
        }
    }

    impl Worker for FakeWorker {
        fn next_event(&mut self) -> BoxFuture<'_, Option<WorkerEvent>> {
            Box::pin(self.events.recv())
        }

        fn send_control(&mut self, control: Control) -> BoxFuture<'_, ()> {
            self.record(format!("control {}", control.line()));
            let _ = self.controls.send(control);
            Box::pin(std::future::ready(()))
        }

        fn close_control(&mut self) {
            self.record("close_control".to_string());
        }

        fn kill_steps(&mut self) {
            self.record("kill_steps".to_string());
        }

        fn reap(&mut self, grace: Duration) -> BoxFuture<'_, anyhow::Result<ExitStatus>> {
            use std::os::unix::process::ExitStatusExt;
            self.record(format!("reap grace={grace:?}"));
            Box::pin(std::future::ready(Ok(ExitStatus::from_raw(0))))
        }

        fn wait_job_gone(&mut self) -> BoxFuture<'_, ()> {
            self.record(format!("wait_job_gone dir_exists={}", self.root.exists()));
            Box::pin(std::future::ready(()))
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        env: Environment,
        events: mpsc::UnboundedSender<WorkerEvent>,
        controls: mpsc::UnboundedReceiver<Control>,
        calls: Arc<Mutex<Vec<String>>>,
    }

    /// A supervisor environment whose server never answers: renewals and uploads fail and are
    /// retried, so the lease is fenced once its deadline passes.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (controls_tx, controls_rx) = mpsc::unbounded_channel();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let workers = FakeWorkers { events: Mutex::new(Some(events_rx)), controls: controls_tx, calls: calls.clone() };
        // Port 1 on the loopback interface refuses connections.
        let client = Client::new("http://127.0.0.1:1", Some("runner-token".to_string())).expect("client");
        let env = Environment {
            client: client.clone(),
            renewer: Renewer::on_current_runtime(client),
            work_dir: dir.path().join("work"),
            state_dir: dir.path().join("state"),
            runner_name: "runner-1".to_string(),
            escalation: Escalation::default(),
            workers: Arc::new(workers),
        };
        Fixture { _dir: dir, env, events: events_tx, controls: controls_rx, calls }
    }

    fn offer(job_id: i64, attempt: u32) -> api::JobOffer {
        api::JobOffer {
            job_id,
            attempt,
            epoch: 1,
            token: "job-token".to_string(),
            spec: api::JobSpec {
                name: "build".to_string(),
                labels: Vec::new(),
                env: Default::default(),
                steps: Vec::new(),
                timeout_minutes: None,
                max_attempts: None,
                contexts: None,
                outputs: None,
            },
            secrets: Default::default(),
        }
    }

    fn joined(calls: &Mutex<Vec<String>>) -> String {
        calls.lock().expect("not poisoned").join("\n")
    }

    #[tokio::test]
    async fn a_fake_workers_events_reach_the_log_spool_and_the_completion() {
        let Fixture { _dir, env, events, mut controls, calls } = fixture();
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let lease_ttl = Duration::from_secs(3600);
        let mut handle = start(env.clone(), offer(7, 1), lease_ttl, tokio::time::Instant::now(), reports_tx);

        events.send(WorkerEvent::Log { text: "hello\n".to_string() }).expect("worker running");
        handle.cancel();
        assert_eq!(controls.recv().await, Some(Control::Cancel));
        events.send(WorkerEvent::ProcessGroup { pgid: 4242 }).expect("worker running");
        let outputs = std::collections::BTreeMap::from([("answer".to_string(), "42".to_string())]);
        let result = WorkerEvent::Result { result: api::AttemptResult::Cancelled, outputs, summary: String::new() };
        events.send(result).expect("worker running");
        drop(events);

        // The slot is free only after the worker was reaped, nothing of the job is left and
        // its directory is gone.
        assert!(matches!(reports.recv().await, Some(Report::SlotFree { attempt: (7, 1) })));
        assert!(!attempt_dir(&env.work_dir, 7, 1).exists());
        expect![[r#"
            start 7/1 spec_written=true spec_job_id=7
            control cancel
            close_control
            reap grace=3s
            wait_job_gone dir_exists=true"#]]
        .assert_eq(&joined(&calls));

        // The server never answers, so the completion stays on disk, after the whole log.
        let pending = pending_path(&env.state_dir, 7, 1);
        for _ in 0..500 {
            if pending.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let completions = pending_completions(&env.state_dir);
        assert_eq!(completions.len(), 1);
        assert_eq!(completions[0].result, api::AttemptResult::Cancelled);
        expect![[r#"{"answer": "42"}"#]].assert_eq(&format!("{:?}", completions[0].outputs));
        let spool = std::fs::read_to_string(spool_path(&env.state_dir, 7, 1)).expect("read the spool");
        expect![[r#"
            {"seq":1,"data":"hello\n"}
        "#]]
        .assert_eq(&spool);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_cannot_be_renewed_fences_the_fake_worker() {
        let Fixture { _dir, env, events, controls: _, calls } = fixture();
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let lease_ttl = Duration::from_secs(45);
        let accepted_at = tokio::time::Instant::now();
        let _handle = start(env.clone(), offer(8, 2), lease_ttl, accepted_at, reports_tx);
        events.send(WorkerEvent::Log { text: "working\n".to_string() }).expect("worker running");

        assert!(matches!(reports.recv().await, Some(Report::SlotFree { attempt: (8, 2) })));
        // No renewal succeeded: the job is fenced at the deadline minus a fifth of the ttl.
        let fenced_after = accepted_at.elapsed();
        assert!(fenced_after >= Duration::from_secs(36), "fenced after {fenced_after:?}");
        assert!(fenced_after < Duration::from_secs(45), "fenced after {fenced_after:?}");
        expect![[r#"
            start 8/2 spec_written=true spec_job_id=8
            kill_steps
            close_control
            reap grace=3s
            wait_job_gone dir_exists=true"#]]
        .assert_eq(&joined(&calls));
        assert!(matches!(reports.recv().await, Some(Report::Done { attempt: (8, 2) })));
        // A fenced attempt reports nothing: no completion, no log.
        assert!(pending_completions(&env.state_dir).is_empty());
        assert!(!spool_path(&env.state_dir, 8, 2).exists());
        assert!(!attempt_dir(&env.work_dir, 8, 2).exists());
    }

    #[tokio::test(start_paused = true)]
    async fn a_result_sent_before_the_fence_is_still_reported() {
        let Fixture { _dir, env, events, controls: _, calls } = fixture();
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let lease_ttl = Duration::from_secs(45);
        let _handle = start(env.clone(), offer(9, 1), lease_ttl, tokio::time::Instant::now(), reports_tx);
        // The worker reports its result but has not exited yet when the fence comes.
        events.send(WorkerEvent::Log { text: "done\n".to_string() }).expect("worker running");
        let result = WorkerEvent::Result {
            result: api::AttemptResult::Success,
            outputs: Default::default(),
            summary: String::new(),
        };
        events.send(result).expect("worker running");

        assert!(matches!(reports.recv().await, Some(Report::SlotFree { attempt: (9, 1) })));
        assert!(joined(&calls).contains("kill_steps"), "the fence still stops the worker");
        // The result stands: it is persisted for delivery (the server never answers here),
        // after the whole log.
        let pending = pending_path(&env.state_dir, 9, 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !pending.exists() {
            assert!(tokio::time::Instant::now() < deadline, "the completion was never persisted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let completions = pending_completions(&env.state_dir);
        assert_eq!(completions.len(), 1);
        assert_eq!(completions[0].result, api::AttemptResult::Success);
        let spool = std::fs::read_to_string(spool_path(&env.state_dir, 9, 1)).expect("read the spool");
        assert!(spool.contains("done"), "{spool}");
        drop(events);
    }

    #[test]
    fn the_spec_file_is_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spec.json");
        std::fs::write(&path, b"old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&path, b"{\"secrets\":{}}").expect("write");
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"secrets\":{}}");
        let fresh = dir.path().join("fresh.json");
        write_private(&fresh, b"x").expect("write");
        assert_eq!(std::fs::metadata(&fresh).expect("metadata").permissions().mode() & 0o777, 0o600);
    }
}
