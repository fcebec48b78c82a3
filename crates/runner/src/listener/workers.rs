//! How a job's worker is started, talked to and reaped: the supervisor's one seam to it.
//!
//! The supervisor (`job.rs`) decides when to cancel, fence, reap and free the slot; a [`Workers`]
//! launcher owns how. [`ProcessWorkers`] is the production launcher: one OS process per job
//! (`baton runner-worker`), control words on its stdin, [`WorkerEvent`]s as JSON lines on its
//! stdout, each step in a process group of its own. The simulator plugs in workers that live
//! on its runtime instead, so it runs the real supervisor.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::protocol::{CONTROL_CANCEL, CONTROL_LEASE, WorkerEvent, WorkerSpec};
use crate::worker::AttemptDirs;
use crate::worker::process;

/// A boxed future that may move between threads (the same type as `futures_util`'s).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The file in an attempt directory that holds the worker's pid (its process group id), so a
/// listener that crashed can kill a worker it left behind.
pub const WORKER_PID_FILE: &str = "worker.pid";

/// Starts the worker of each job this runner accepts.
pub trait Workers: Send + Sync + Debug {
    /// Starts the worker of one attempt. Its directories exist and its spec file is written.
    fn start(&self, start: WorkerStart<'_>) -> anyhow::Result<Box<dyn Worker>>;
}

/// What a launcher knows about the attempt whose worker it starts.
#[derive(Debug, Clone, Copy)]
pub struct WorkerStart<'a> {
    pub job_id: i64,
    pub attempt: u32,
    /// The attempt's directories; the spec file (`dirs.spec_path()`) is already written.
    pub dirs: &'a AttemptDirs,
    /// What the spec file holds, secrets included, so a launcher need not read it back.
    pub spec: &'a WorkerSpec,
}

/// What the supervisor tells a running worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Cancel the job, with the escalation in its spec.
    Cancel,
    /// The lease was renewed: the job may run this much longer without hearing from the
    /// listener again.
    LeaseLeft { valid_for_ms: u64 },
}

impl Control {
    /// The control line, without its newline, as a worker process reads it on stdin.
    pub fn line(self) -> String {
        match self {
            Control::Cancel => CONTROL_CANCEL.to_string(),
            Control::LeaseLeft { valid_for_ms } => format!("{CONTROL_LEASE} {valid_for_ms}"),
        }
    }
}

/// One started worker, as its supervisor sees it. The supervisor calls these in this order:
/// `next_event` (with `send_control`, and on fencing `kill_steps`) until it returns `None` or
/// the job is fenced, then `close_control`, `reap` and `wait_job_gone`.
pub trait Worker: Send + Debug {
    /// The worker's next event; `None` once it closed its output (it does so right after its
    /// result). Must be cancel-safe: the supervisor drops it whenever something else happens
    /// first, and no event may be lost then.
    fn next_event(&mut self) -> BoxFuture<'_, Option<WorkerEvent>>;

    /// Tells the worker something; does nothing once the control channel is closed or the
    /// worker stopped listening.
    fn send_control(&mut self, control: Control) -> BoxFuture<'_, ()>;

    /// Closes the control channel: the worker then stops the job, sweeps whatever is left of
    /// it and exits.
    fn close_control(&mut self);

    /// Kills every step of the job at once, but not the worker itself, which still has to
    /// sweep what escaped the steps (fencing).
    fn kill_steps(&mut self);

    /// Waits until the worker exited, closing the control channel first if it is still open.
    /// A worker that has not exited after `grace` is killed.
    fn reap(&mut self, grace: Duration) -> BoxFuture<'_, anyhow::Result<ExitStatus>>;

    /// Waits until nothing of the job is left running, killing stragglers after a while.
    fn wait_job_gone(&mut self) -> BoxFuture<'_, ()>;
}

/// The production launcher: each worker is a child process in a process group of its own.
#[derive(Debug, Clone)]
pub struct ProcessWorkers {
    /// The program and leading arguments that start a worker (`baton runner-worker`); the
    /// launcher adds `--attempt-dir <dir>`.
    pub command: Vec<String>,
}

impl Workers for ProcessWorkers {
    fn start(&self, start: WorkerStart<'_>) -> anyhow::Result<Box<dyn Worker>> {
        let (program, arguments) = self.command.split_first().context("the worker command is empty")?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(arguments)
            .arg("--attempt-dir")
            .arg(&start.dirs.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            // Dropping the child must not SIGKILL the worker: that would orphan what it reaps.
            // If the listener goes away, the worker's stdin closes and it stops the job itself.
            .kill_on_drop(false);
        let mut child = command.spawn().context("start the worker process")?;
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok()).context("the worker has a pid")?;
        let pid_path: PathBuf = start.dirs.root.join(WORKER_PID_FILE);
        std::fs::write(&pid_path, pgid.to_string()).with_context(|| format!("write {}", pid_path.display()))?;
        let control = child.stdin.take();
        let stdout = child.stdout.take().context("the worker's stdout")?;
        Ok(Box::new(ProcessWorker {
            job_id: start.job_id,
            child,
            pgid,
            control,
            lines: BufReader::new(stdout).lines(),
            groups: vec![pgid],
        }))
    }
}

/// A worker process.
#[derive(Debug)]
struct ProcessWorker {
    job_id: i64,
    child: Child,
    /// The worker's pid, which is also its process group id.
    pgid: i32,
    /// The worker's stdin; `None` once closed.
    control: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// The worker's own process group first, then each step's group it reported.
    groups: Vec<i32>,
}

impl Worker for ProcessWorker {
    fn next_event(&mut self) -> BoxFuture<'_, Option<WorkerEvent>> {
        Box::pin(async move {
            loop {
                // `next_line` is cancel-safe, and nothing below awaits: so is this.
                let line = match self.lines.next_line().await {
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => return None,
                };
                match serde_json::from_str::<WorkerEvent>(&line) {
                    // Process groups are this launcher's business: it kills and waits for them.
                    // A group id of 0 or 1 would signal the listener's own group or every process.
                    Ok(WorkerEvent::ProcessGroup { pgid }) if pgid > 1 => self.groups.push(pgid),
                    Ok(WorkerEvent::ProcessGroup { pgid }) => {
                        tracing::warn!(job_id = self.job_id, pgid, "ignoring an invalid process group id")
                    }
                    Ok(event) => return Some(event),
                    Err(error) => tracing::warn!(job_id = self.job_id, %error, "unreadable line from the worker"),
                }
            }
        })
    }

    fn send_control(&mut self, control: Control) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(pipe) = self.control.as_mut() {
                let _ = pipe.write_all(format!("{}\n", control.line()).as_bytes()).await;
                let _ = pipe.flush().await;
            }
        })
    }

    fn close_control(&mut self) {
        self.control = None;
    }

    fn kill_steps(&mut self) {
        for &pgid in &self.groups[1..] {
            process::signal_group(pgid, Signal::SIGKILL);
        }
    }

    fn reap(&mut self, grace: Duration) -> BoxFuture<'_, anyhow::Result<ExitStatus>> {
        Box::pin(async move {
            self.control = None;
            match tokio::time::timeout(grace, self.child.wait()).await {
                Ok(status) => status.context("wait for the worker"),
                Err(_) => {
                    tracing::warn!(
                        job_id = self.job_id,
                        "the worker did not stop after its control pipe closed; killing it"
                    );
                    process::signal_group(self.pgid, Signal::SIGKILL);
                    self.child.wait().await.context("wait for the killed worker")
                }
            }
        })
    }

    fn wait_job_gone(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(wait_groups_empty(&self.groups))
    }
}

/// Waits until every process group is empty, killing stragglers after a while.
async fn wait_groups_empty(groups: &[i32]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut delay = Duration::from_millis(1);
    while groups.iter().any(|&pgid| process::group_alive(pgid)) {
        if tokio::time::Instant::now() >= deadline {
            for &pgid in groups {
                process::signal_group(pgid, Signal::SIGKILL);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
