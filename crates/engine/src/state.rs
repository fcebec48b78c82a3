//! The state of one workflow run: every workflow job with its phase, result, outputs and matrix legs.
//!
//! The store keeps a [`RunState`] as JSON in the run's row. It changes only inside the transaction
//! that changes the run's jobs, so it is always the truth about which legs exist and how they ended.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a workflow job or a leg is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A job waits for its `needs`; a leg waits for its turn (`max-parallel`).
    Waiting,
    /// A job has legs that are not finished; a leg is a queued or running Baton job.
    Running,
    Completed,
}

/// How a workflow job or a leg ended, as `needs.<job>.result` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped => "skipped",
        }
    }

    /// The outcome of a leg whose Baton job concluded with `conclusion` (`success`, `failure`,
    /// `cancelled`, `infrastructure_failure`).
    pub fn from_conclusion(conclusion: &str) -> Outcome {
        match conclusion {
            "success" => Outcome::Success,
            "cancelled" => Outcome::Cancelled,
            _ => Outcome::Failure,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A run: its workflow jobs in the order the workflow writes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The run was cancelled: running legs were told to stop and waiting jobs see `cancelled()`.
    #[serde(default)]
    pub cancelled: bool,
    pub jobs: Vec<WorkflowJob>,
}

/// One job of the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowJob {
    /// The job's id in the workflow (`jobs.<key>`).
    pub key: String,
    pub name: String,
    pub needs: Vec<String>,
    pub phase: Phase,
    #[serde(default)]
    pub result: Option<Outcome>,
    /// `needs.<key>.outputs`: the legs' outputs, later legs winning.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// One leg per matrix combination (one leg without a matrix); empty until the job starts.
    #[serde(default)]
    pub legs: Vec<Leg>,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// No more legs start: a leg failed under fail-fast, or the run was cancelled.
    #[serde(default)]
    pub stopping: bool,
    /// Why the job was skipped or failed without running, when that is not obvious.
    #[serde(default)]
    pub message: Option<String>,
}

/// One matrix combination of a workflow job: one Baton job once it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    pub name: String,
    /// The combination, `None` for a job without a matrix.
    #[serde(default)]
    pub matrix: Option<serde_json::Value>,
    /// The Baton job running this leg, once enqueued.
    #[serde(default)]
    pub job_id: Option<i64>,
    pub phase: Phase,
    #[serde(default)]
    pub result: Option<Outcome>,
    /// The job's `continue-on-error` for this leg: its failure does not fail the workflow job.
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(default)]
    pub message: Option<String>,
}

impl RunState {
    /// The run's conclusion once every job completed: failure if a job failed, else cancelled
    /// if the run or a job was cancelled, else success (skipped jobs do not fail a run).
    pub fn conclusion(&self) -> Option<Outcome> {
        if self.jobs.iter().any(|job| job.phase != Phase::Completed) {
            return None;
        }
        let results = || self.jobs.iter().filter_map(|job| job.result);
        Some(if results().any(|result| result == Outcome::Failure) {
            Outcome::Failure
        } else if self.cancelled || results().any(|result| result == Outcome::Cancelled) {
            Outcome::Cancelled
        } else {
            Outcome::Success
        })
    }

    /// The (job, leg) indices of the leg that Baton job `job_id` runs.
    pub fn leg_of(&self, job_id: i64) -> Option<(usize, usize)> {
        self.jobs.iter().enumerate().find_map(|(job_index, job)| {
            job.legs.iter().position(|leg| leg.job_id == Some(job_id)).map(|leg_index| (job_index, leg_index))
        })
    }

    /// Records that leg `leg` of job `key` runs as Baton job `job_id`.
    pub fn bind(&mut self, key: &str, leg: usize, job_id: i64) {
        if let Some(leg) = self.jobs.iter_mut().find(|job| job.key == key).and_then(|job| job.legs.get_mut(leg)) {
            leg.job_id = Some(job_id);
        }
    }

    /// Every Baton job of the run, with its workflow job and leg.
    pub fn baton_jobs(&self) -> impl Iterator<Item = (&WorkflowJob, &Leg, i64)> {
        self.jobs.iter().flat_map(|job| job.legs.iter().filter_map(move |leg| Some((job, leg, leg.job_id?))))
    }
}
