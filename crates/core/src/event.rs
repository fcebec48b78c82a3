//! The kinds of rows in the events table.
//!
//! Every state change appends one event in the same transaction as the change. The REST API,
//! the event stream, the autoscaler and the test checkers all read this one sequence.

use crate::machine::named_enum;

named_enum! {
    pub enum EventKind {
        JobQueued = "job.queued",
        JobOffered = "job.offered",
        OfferExpired = "job.offer_expired",
        JobStarted = "job.started",
        JobCancelRequested = "job.cancel_requested",
        JobCompleted = "job.completed",
        AttemptLost = "job.attempt_lost",
        JobRequeued = "job.requeued",
        RunnerRegistered = "runner.registered",
        RunnerOnline = "runner.online",
        RunnerOffline = "runner.offline",
        RunnerDraining = "runner.draining",
        RunnerResumed = "runner.resumed",
        RunnerRetiring = "runner.retiring",
        RunnerGone = "runner.gone",
        ServerOutage = "server.outage",
        RunQueued = "run.queued",
        RunCancelRequested = "run.cancel_requested",
        RunCompleted = "run.completed",
        ScalerCreate = "scaler.create",
        ScalerRetire = "scaler.retire",
        ScalerTerminate = "scaler.terminate",
        ScalerCleanup = "scaler.cleanup",
    }
}

impl EventKind {
    /// Events after which the runner named in the event holds one more attempt.
    pub fn takes_slot(self) -> bool {
        self == EventKind::JobOffered
    }

    /// Events after which the runner named in the event holds one attempt fewer: the offer
    /// expired or was cancelled, the attempt completed, or its lease was lost.
    pub fn frees_slot(self) -> bool {
        matches!(self, EventKind::OfferExpired | EventKind::JobCompleted | EventKind::AttemptLost)
    }
}
