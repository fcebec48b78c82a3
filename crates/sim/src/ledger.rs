//! The ground truth, kept outside the system under test.
//!
//! Simulated workers, the simulated provider and the driver write here what really happened:
//! which machine executed which attempt over which interval of simulated time and in which
//! directory, which machines were terminated or crashed when, which webhook messages the
//! receiver got. The checkers judge the system by this record, never by what the system says
//! about itself.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Simulated time since the simulation started.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The worker ran its job to the end and reported this result.
    Finished(baton_api::AttemptResult),
    /// The worker stopped on a cancel request.
    Cancelled,
    /// The runner killed it (its lease was lost).
    Killed,
    /// The worker process crashed without a result.
    WorkerCrashed,
    /// Its machine crashed or was terminated under it.
    MachineDown,
}

/// One worker executing one attempt.
#[derive(Debug, Clone)]
pub struct Execution {
    pub machine: String,
    pub job_id: i64,
    pub attempt: u32,
    pub dir: PathBuf,
    pub start: Duration,
    pub end: Option<(Duration, Ending)>,
}

/// A machine the provider terminated, with what the store held for its runner at that instant.
#[derive(Debug, Clone)]
pub struct Termination {
    pub machine: String,
    pub at: Duration,
    /// Offered or running attempts referencing the machine's runner, read from the store at the
    /// instant of termination.
    pub held: Vec<(i64, u32)>,
}

/// A webhook message as the receiver got it (every copy: repeats are allowed).
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Duration,
    pub message_id: String,
    pub job_id: Option<i64>,
    /// `workflow_job`'s action: queued, in_progress, completed.
    pub action: String,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub executions: Vec<Execution>,
    pub terminations: Vec<Termination>,
    /// Machines that went down (restarted or terminated), and when.
    pub downs: Vec<(String, Duration)>,
    /// Problems seen directly as they happened (a job's files removed under it, say).
    pub observed: Vec<String>,
    /// Webhook messages the receiver got, in order.
    pub webhooks: Vec<Received>,
    /// Deterministic one-line records of what happened, in order: compared across replays.
    pub trace: Vec<String>,
}

impl Ledger {
    /// True when the receiver got a `completed` message for the job.
    pub fn completion_announced(&self, job_id: i64) -> bool {
        self.webhooks.iter().any(|received| received.job_id == Some(job_id) && received.action == "completed")
    }
}

#[derive(Debug, Clone, Default)]
pub struct SharedLedger(Arc<Mutex<Ledger>>);

impl SharedLedger {
    pub fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a line of the trace at `at` (the driver's clock; hosts use [`now`]).
    pub fn trace_at(&self, at: Duration, line: impl Into<String>) {
        let line = line.into();
        self.lock().trace.push(format!("{:>9.3} {line}", at.as_secs_f64()));
    }

    /// Records the start of an execution; answers its index.
    pub fn started(&self, machine: &str, job_id: i64, attempt: u32, dir: PathBuf) -> usize {
        let start = now();
        let mut ledger = self.lock();
        ledger.trace.push(format!("{:>9.3} exec-start {machine} job {job_id}/{attempt}", start.as_secs_f64()));
        ledger.executions.push(Execution { machine: machine.into(), job_id, attempt, dir, start, end: None });
        ledger.executions.len() - 1
    }

    pub fn ended(&self, index: usize, ending: Ending) {
        let at = now();
        let mut ledger = self.lock();
        if let Some(execution) = ledger.executions.get_mut(index)
            && execution.end.is_none()
        {
            execution.end = Some((at, ending));
            let line = format!(
                "{:>9.3} exec-end {} job {}/{} {ending:?}",
                at.as_secs_f64(),
                execution.machine,
                execution.job_id,
                execution.attempt
            );
            ledger.trace.push(line);
        }
    }

    /// The machine crashed or was terminated: whatever its workers executed ends now.
    pub fn machine_down(&self, machine: &str, at: Duration) {
        let mut ledger = self.lock();
        ledger.downs.push((machine.to_string(), at));
        let mut lines = Vec::new();
        for execution in ledger.executions.iter_mut().filter(|execution| execution.machine == machine) {
            if execution.end.is_none() {
                execution.end = Some((at, Ending::MachineDown));
                lines.push(format!(
                    "{:>9.3} exec-end {machine} job {}/{} MachineDown",
                    at.as_secs_f64(),
                    execution.job_id,
                    execution.attempt
                ));
            }
        }
        ledger.trace.extend(lines);
    }

    pub fn webhook_received(&self, message_id: String, job_id: Option<i64>, action: String) {
        let at = now();
        let mut ledger = self.lock();
        ledger.trace.push(format!("{:>9.3} webhook {message_id} job {job_id:?} {action}", at.as_secs_f64()));
        ledger.webhooks.push(Received { at, message_id, job_id, action });
    }

    /// True when the receiver got a `completed` message for every job in `job_ids`.
    pub fn completions_announced(&self, job_ids: &[i64]) -> bool {
        let ledger = self.lock();
        job_ids.iter().all(|id| ledger.completion_announced(*id))
    }

    pub fn observe(&self, problem: String) {
        self.lock().observed.push(format!("at {:.3}s: {problem}", now().as_secs_f64()));
    }
}
