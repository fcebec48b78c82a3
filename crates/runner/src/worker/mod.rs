//! The worker: one OS process per job.
//!
//! `baton runner` re-executes itself as `baton runner-worker --attempt-dir DIR` for each job.
//! The worker runs the steps in `DIR/workspace`, each in its own process group, applies file
//! and workflow commands, masks secrets, and reports log lines and the result to its listener
//! as JSON lines on stdout. A separate process means a crashing step cannot take the listener
//! down, and the listener knows exactly when the job's teardown is over: when this process has
//! exited and its process groups are empty.

pub mod contexts;
pub mod env;
pub mod file_commands;
pub mod hash_files;
pub mod mask;
pub mod process;
mod step;
pub mod workflow_commands;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use baton_api as api;

use crate::protocol::{CONTROL_CANCEL, CONTROL_LEASE, WorkerEvent, WorkerSpec};

/// Largest spec file a worker reads.
const SPEC_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The directories of one attempt: `work/<job>/<attempt>/{workspace,temp,file_commands}`.
#[derive(Debug, Clone)]
pub struct AttemptDirs {
    pub root: PathBuf,
    pub workspace: PathBuf,
    pub temp: PathBuf,
    pub file_commands: PathBuf,
}

impl AttemptDirs {
    pub fn new(root: &Path) -> AttemptDirs {
        AttemptDirs {
            root: root.to_path_buf(),
            workspace: root.join("workspace"),
            temp: root.join("temp"),
            file_commands: root.join("file_commands"),
        }
    }

    pub fn create(&self) -> std::io::Result<()> {
        for dir in [&self.workspace, &self.temp, &self.file_commands] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    pub fn spec_path(&self) -> PathBuf {
        self.root.join("spec.json")
    }
}

/// What reaches the worker's main loop: step output, step exits, and control words.
#[derive(Debug)]
pub(crate) enum Input {
    Chunk { step: usize, stream: usize, bytes: Vec<u8> },
    StreamClosed { step: usize },
    Exited { step: usize, code: Option<i32>, signal: Option<i32> },
    Cancel,
    ControlClosed,
}

/// Writes [`WorkerEvent`]s to stdout (or, in tests, a buffer), one JSON object per line.
#[derive(Clone)]
pub(crate) struct Emitter {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Emitter {
    fn new() -> Emitter {
        Emitter::to(Box::new(std::io::stdout()))
    }

    /// An emitter writing to `out`.
    pub(crate) fn to(out: Box<dyn Write + Send>) -> Emitter {
        Emitter { out: Arc::new(Mutex::new(out)) }
    }

    pub(crate) fn emit(&self, event: &WorkerEvent) {
        let line = serde_json::to_string(event).expect("worker events serialize");
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A closed stdout means the listener is gone; the control thread notices it too.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The worker's entry point. Returns the process exit code.
pub fn run(attempt_dir: &Path) -> anyhow::Result<i32> {
    process::become_subreaper().context("become a child subreaper")?;
    let dirs = AttemptDirs::new(attempt_dir);
    let spec_path = dirs.spec_path();
    let size = std::fs::metadata(&spec_path).with_context(|| format!("read {}", spec_path.display()))?.len();
    anyhow::ensure!(size <= SPEC_BYTES_MAX, "{} is over 16 MiB", spec_path.display());
    let text = std::fs::read_to_string(&spec_path).with_context(|| format!("read {}", spec_path.display()))?;
    let spec: WorkerSpec = serde_json::from_str(&text).with_context(|| format!("parse {}", spec_path.display()))?;

    let emitter = Emitter::new();
    // Bounded: a step that writes faster than the worker forwards is slowed down through its
    // own pipe instead of growing this process's memory.
    let (sender, receiver) = mpsc::sync_channel(INPUT_QUEUE_MAX);
    let control = Arc::new(Control::new(Duration::from_millis(spec.lease_valid_for_ms)));
    spawn_control_reader(sender.clone(), control.clone());

    let mut job = step::JobRun::new(&spec, &dirs, emitter.clone(), sender, receiver, control.clone());
    let result = job.run_steps();
    let (outputs, summary, groups) = job.finish();
    // Nothing of the job may outlive it: its process groups, and anything that escaped them
    // and was re-parented to this subreaper.
    process::sweep(&groups, Duration::from_secs(5));
    if control.is_fenced() {
        // The lease is gone (or the listener is): the job was killed, and nothing about it may
        // be reported any more.
        return Ok(0);
    }
    let (result, outputs, summary) = within_limits(result, outputs, summary, &emitter);
    emitter.emit(&WorkerEvent::Result { result, outputs, summary });
    Ok(0)
}

/// Chunks of step output, exits and control words queued for the worker's main loop.
const INPUT_QUEUE_MAX: usize = 256;
/// Outputs a job may report; the server refuses more.
const OUTPUTS_MAX: usize = 256;
/// Bytes of outputs and summary together, as JSON, that fit a completion request with room
/// to spare under the server's 1 MiB body limit.
const RESULT_BYTES_MAX: usize = 900 * 1024;

/// Fails the job, keeping what fits, when its outputs or summary would not fit a completion:
/// a refused completion would otherwise lose the result and rerun the job.
fn within_limits(
    result: api::AttemptResult,
    outputs: Outputs,
    summary: String,
    emitter: &Emitter,
) -> (api::AttemptResult, Outputs, String) {
    let size = serde_json::to_string(&(&outputs, &summary)).map(|text| text.len()).unwrap_or(usize::MAX);
    if outputs.len() <= OUTPUTS_MAX && size <= RESULT_BYTES_MAX {
        return (result, outputs, summary);
    }
    let message = format!(
        "##[error]The job's outputs and summary are too large to report ({} outputs, {size} bytes; at most {OUTPUTS_MAX} outputs and {RESULT_BYTES_MAX} bytes): they are dropped and the job fails.\n",
        outputs.len()
    );
    emitter.emit(&WorkerEvent::Log { text: message });
    let result = if result == api::AttemptResult::Cancelled { result } else { api::AttemptResult::Failure };
    (result, Outputs::new(), String::new())
}

/// What the listener has told the worker, shared between the control thread and the steps.
#[derive(Debug)]
pub(crate) struct Control {
    cancelled: AtomicBool,
    fenced: AtomicBool,
    lease_deadline: Mutex<Instant>,
}

impl Control {
    fn new(lease_valid_for: Duration) -> Control {
        Control {
            cancelled: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            lease_deadline: Mutex::new(Instant::now() + lease_valid_for),
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// True once the lease is lost: the listener closed the control pipe, or no renewal notice
    /// came before the lease deadline. The job must stop at once and report nothing.
    pub(crate) fn is_fenced(&self) -> bool {
        if !self.fenced.load(Ordering::SeqCst) && Instant::now() >= self.lease_deadline() {
            self.fence();
        }
        self.fenced.load(Ordering::SeqCst)
    }

    pub(crate) fn lease_deadline(&self) -> Instant {
        *self.lease_deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

fn spawn_control_reader(sender: mpsc::SyncSender<Input>, control: Arc<Control>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            match (words.next(), words.next().and_then(|ms| ms.parse::<u64>().ok())) {
                (Some(CONTROL_CANCEL), _) => {
                    control.cancelled.store(true, Ordering::SeqCst);
                    if sender.send(Input::Cancel).is_err() {
                        return;
                    }
                }
                (Some(CONTROL_LEASE), Some(millis)) => {
                    let deadline = Instant::now() + Duration::from_millis(millis);
                    *control.lease_deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = deadline;
                }
                _ => {}
            }
        }
        // The listener closed our stdin: it fenced the job, or it is gone. Stop everything now.
        control.fence();
        let _ = sender.send(Input::ControlClosed);
    });
}

/// The result of a job whose steps ended with these flags.
pub(crate) fn job_result(failed: bool, cancelled: bool) -> api::AttemptResult {
    if cancelled {
        api::AttemptResult::Cancelled
    } else if failed {
        api::AttemptResult::Failure
    } else {
        api::AttemptResult::Success
    }
}

/// Outputs reported for the job: its `outputs:` templates evaluated, or without them every
/// step's `GITHUB_OUTPUT` values by name (and `id.name`), later steps winning.
pub(crate) type Outputs = BTreeMap<String, String>;

/// The time a step may run.
pub(crate) fn step_deadline(start: Instant, timeout_minutes: Option<u32>) -> Option<Instant> {
    timeout_minutes.map(|minutes| start + Duration::from_secs(u64::from(minutes) * 60))
}
