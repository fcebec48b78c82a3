//! What the listener and a worker say to each other.
//!
//! **Invariant:** only the listener talks to the server. A worker talks only to its listener:
//! it reads its spec from the attempt directory and control words (`cancel`) from stdin, and
//! writes [`WorkerEvent`]s as JSON lines on stdout. Job steps never see the runner credential.

use std::collections::BTreeMap;

use baton_api as api;
use serde::{Deserialize, Serialize};

/// The worker's input, written by the listener to `<attempt dir>/spec.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub job_id: i64,
    pub attempt: u32,
    pub runner_name: String,
    pub spec: api::JobSpec,
    /// The run's secrets by name: the `secrets` context of the job's expressions, and values
    /// redacted from every log line. The spec file holding them is readable by its owner only.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    pub escalation: Escalation,
    /// How long the worker may run from its start without hearing that the lease was renewed.
    /// Each `lease <ms>` control line moves this deadline; when it passes, the worker kills
    /// the job and exits on its own, so the job stops in time even if its listener is stopped.
    pub lease_valid_for_ms: u64,
}

/// How a cancelled or timed-out step is stopped: SIGINT, then SIGTERM after `sigint_grace_ms`,
/// then SIGKILL after a further `sigterm_grace_ms`, each to the step's whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub sigint_grace_ms: u64,
    pub sigterm_grace_ms: u64,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation { sigint_grace_ms: 7_500, sigterm_grace_ms: 2_500 }
    }
}

/// One line a worker writes on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Log text, already masked; ends with a newline.
    Log { text: String },
    /// A step's process group, so the listener can kill it directly when it must fence.
    ProcessGroup { pgid: i32 },
    /// The job's result; the last event.
    Result { result: api::AttemptResult, outputs: BTreeMap<String, String>, summary: String },
}

/// Control words the listener writes on the worker's stdin, one per line.
pub const CONTROL_CANCEL: &str = "cancel";
/// `lease <ms>`: the lease is good for that many more milliseconds.
pub const CONTROL_LEASE: &str = "lease";
