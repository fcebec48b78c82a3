//! The job state machine.
//!
//! A job is what a user submitted; it runs as one or more attempts. Its state summarises its
//! current attempt: `queued` (waiting, possibly offered), `running` (an attempt accepted), and
//! `completed` with a conclusion. A lost attempt sends the job back to `queued` with a new
//! attempt, or to `completed` with the `infrastructure_failure` conclusion once `max_attempts`
//! attempts were lost.

use crate::machine::{self, InvalidTransition, Transition, named_enum};

named_enum! {
    pub enum JobState {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
    }
}

named_enum! {
    pub enum JobEvent {
        /// An attempt was accepted by a runner.
        Start = "start",
        /// The running attempt completed.
        Finish = "finish",
        /// The running attempt was lost and another attempt is queued.
        Requeue = "requeue",
        /// The running attempt was lost and no attempts are left.
        GiveUp = "give_up",
        /// Cancelled before any attempt was running.
        Cancel = "cancel",
    }
}

named_enum! {
    /// How a completed job ended.
    pub enum JobConclusion {
        Success = "success",
        Failure = "failure",
        Cancelled = "cancelled",
        /// Every attempt was lost to runner or network faults; the job itself never failed.
        InfrastructureFailure = "infrastructure_failure",
    }
}

use JobEvent as E;
use JobState as S;

pub const TRANSITIONS: &[Transition<JobState, JobEvent>] = &[
    Transition { from: S::Queued, event: E::Start, to: S::Running },
    Transition { from: S::Queued, event: E::Cancel, to: S::Completed },
    Transition { from: S::Running, event: E::Finish, to: S::Completed },
    Transition { from: S::Running, event: E::Requeue, to: S::Queued },
    Transition { from: S::Running, event: E::GiveUp, to: S::Completed },
];

impl JobState {
    pub fn on(self, event: JobEvent) -> Result<JobState, InvalidTransition> {
        machine::step("job", TRANSITIONS, self, event)
    }
}

impl JobConclusion {
    /// The conclusion of a job whose running attempt completed with `result`.
    pub fn from_result(result: crate::AttemptResult) -> JobConclusion {
        match result {
            crate::AttemptResult::Success => JobConclusion::Success,
            crate::AttemptResult::Failure => JobConclusion::Failure,
            crate::AttemptResult::Cancelled => JobConclusion::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn every_pair_has_a_reviewed_outcome() {
        let rendered = machine::render_outcomes("job", TRANSITIONS, JobState::ALL, JobEvent::ALL);
        expect![[r#"
            queued     --start         --> running
            queued     --finish        --> invalid
            queued     --requeue       --> invalid
            queued     --give_up       --> invalid
            queued     --cancel        --> completed
            running    --start         --> invalid
            running    --finish        --> completed
            running    --requeue       --> queued
            running    --give_up       --> completed
            running    --cancel        --> invalid
            completed  --start         --> invalid
            completed  --finish        --> invalid
            completed  --requeue       --> invalid
            completed  --give_up       --> invalid
            completed  --cancel        --> invalid
        "#]]
        .assert_eq(&rendered);
    }

    #[test]
    fn names_round_trip() {
        for &state in JobState::ALL {
            assert_eq!(JobState::parse(&state.to_string()), Some(state));
        }
        for &conclusion in JobConclusion::ALL {
            assert_eq!(JobConclusion::parse(&conclusion.to_string()), Some(conclusion));
        }
    }
}
