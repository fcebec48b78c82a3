//! The outside world an expression may ask about: file hashes for `hashFiles` and the job status for
//! `success()`, `failure()`, `cancelled()` and `always()`. Keeping these behind a trait keeps the engine pure;
//! the runner provides the real implementation, tests a fake one.

/// The status of the job (or of the steps so far) that status functions report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JobStatus {
    /// Nothing has failed and the run was not cancelled: `success()` is true.
    #[default]
    Success,
    /// Something earlier failed: `failure()` is true.
    Failure,
    /// The run was cancelled: `cancelled()` is true.
    Cancelled,
    /// A job this one needs was skipped or cancelled while nothing failed: `success()`, `failure()` and
    /// `cancelled()` are all false, so only `always()` (or a condition without status functions negated) runs it.
    Blocked,
}

/// What the evaluator needs from its surroundings.
pub trait Host {
    /// Hashes the files matching `patterns` (glob patterns relative to the workspace) as GitHub's `hashFiles`
    /// does: a SHA-256 over the SHA-256 of each matching file, or the empty string when nothing matches. An error
    /// message is reported to the user as an evaluation error.
    fn hash_files(&self, patterns: &[String]) -> Result<String, String>;

    /// The current job status.
    fn status(&self) -> JobStatus;
}

/// A host for places without files or job status: `hashFiles` fails with an explanation, and the status is
/// [`JobStatus::Success`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl Host for NoHost {
    fn hash_files(&self, _patterns: &[String]) -> Result<String, String> {
        Err("hashFiles() needs the job's workspace, which is not available where this expression is evaluated"
            .to_owned())
    }

    fn status(&self) -> JobStatus {
        JobStatus::Success
    }
}
