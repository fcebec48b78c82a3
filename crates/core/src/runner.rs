//! The runner state machine.
//!
//! ```text
//! registered -> active (session open) -> draining | retiring -> gone
//! active -> offline      (session expired, or a persistent runner said goodbye)
//! ```
//! Only an `active` runner receives offers. `draining` is sticky across reconnects until an
//! operator resumes the runner; `retiring` is final: the runner will never be offered a job
//! again, and it becomes `gone` when it says goodbye or its machine is removed.
//!
//! Whether a runner is busy is not a state: it is derived from the attempts that reference it
//! (see [`crate::dispatch::is_busy`]), so it can never lag behind them.

use crate::machine::{self, InvalidTransition, Transition, named_enum};

named_enum! {
    pub enum RunnerState {
        /// Registered (or pre-created by a JIT config) but no session opened yet.
        Registered = "registered",
        /// Has a session and takes offers.
        Active = "active",
        /// Finishes what it runs, takes no new offers. Ephemeral runners drain after they
        /// accept their one job.
        Draining = "draining",
        /// Retired while idle: never offered anything again; waiting to leave or be removed.
        Retiring = "retiring",
        /// Its session expired, or it said goodbye; it may come back with a new session.
        Offline = "offline",
        /// Left for good. Terminal.
        Gone = "gone",
    }
}

named_enum! {
    pub enum RunnerEvent {
        /// The runner opened a session.
        SessionOpen = "session_open",
        /// A persistent runner closed its session and may come back.
        Goodbye = "goodbye",
        /// The runner closed its session for good: an ephemeral runner after its job, or a
        /// retiring runner.
        Leave = "leave",
        /// The runner's session expired without a goodbye.
        SessionExpire = "session_expire",
        /// An operator (or the runner's one-job limit) stopped new offers.
        Drain = "drain",
        /// An operator lifted a drain.
        Resume = "resume",
        /// Retire-if-idle found no offered or running attempt on the runner.
        Retire = "retire",
        /// The machine of a retiring runner was terminated.
        Remove = "remove",
    }
}

use RunnerEvent as E;
use RunnerState as S;

pub const TRANSITIONS: &[Transition<RunnerState, RunnerEvent>] = &[
    Transition { from: S::Registered, event: E::SessionOpen, to: S::Active },
    Transition { from: S::Registered, event: E::Retire, to: S::Retiring },
    Transition { from: S::Active, event: E::SessionOpen, to: S::Active },
    Transition { from: S::Active, event: E::Goodbye, to: S::Offline },
    Transition { from: S::Active, event: E::Leave, to: S::Gone },
    Transition { from: S::Active, event: E::SessionExpire, to: S::Offline },
    Transition { from: S::Active, event: E::Drain, to: S::Draining },
    Transition { from: S::Active, event: E::Retire, to: S::Retiring },
    Transition { from: S::Draining, event: E::SessionOpen, to: S::Draining },
    Transition { from: S::Draining, event: E::Goodbye, to: S::Draining },
    Transition { from: S::Draining, event: E::Leave, to: S::Gone },
    Transition { from: S::Draining, event: E::SessionExpire, to: S::Draining },
    Transition { from: S::Draining, event: E::Drain, to: S::Draining },
    Transition { from: S::Draining, event: E::Resume, to: S::Active },
    Transition { from: S::Draining, event: E::Retire, to: S::Retiring },
    Transition { from: S::Retiring, event: E::Goodbye, to: S::Gone },
    Transition { from: S::Retiring, event: E::Leave, to: S::Gone },
    Transition { from: S::Retiring, event: E::SessionExpire, to: S::Retiring },
    Transition { from: S::Retiring, event: E::Retire, to: S::Retiring },
    Transition { from: S::Retiring, event: E::Remove, to: S::Gone },
    Transition { from: S::Offline, event: E::SessionOpen, to: S::Active },
    Transition { from: S::Offline, event: E::Retire, to: S::Retiring },
];

impl RunnerState {
    pub fn on(self, event: RunnerEvent) -> Result<RunnerState, InvalidTransition> {
        machine::step("runner", TRANSITIONS, self, event)
    }

    /// Only an active runner is offered jobs.
    pub fn takes_offers(self) -> bool {
        self == S::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn every_pair_has_a_reviewed_outcome() {
        let rendered = machine::render_outcomes("runner", TRANSITIONS, RunnerState::ALL, RunnerEvent::ALL);
        expect![[r#"
            registered --session_open  --> active
            registered --goodbye       --> invalid
            registered --leave         --> invalid
            registered --session_expire--> invalid
            registered --drain         --> invalid
            registered --resume        --> invalid
            registered --retire        --> retiring
            registered --remove        --> invalid
            active     --session_open  --> active
            active     --goodbye       --> offline
            active     --leave         --> gone
            active     --session_expire--> offline
            active     --drain         --> draining
            active     --resume        --> invalid
            active     --retire        --> retiring
            active     --remove        --> invalid
            draining   --session_open  --> draining
            draining   --goodbye       --> draining
            draining   --leave         --> gone
            draining   --session_expire--> draining
            draining   --drain         --> draining
            draining   --resume        --> active
            draining   --retire        --> retiring
            draining   --remove        --> invalid
            retiring   --session_open  --> invalid
            retiring   --goodbye       --> gone
            retiring   --leave         --> gone
            retiring   --session_expire--> retiring
            retiring   --drain         --> invalid
            retiring   --resume        --> invalid
            retiring   --retire        --> retiring
            retiring   --remove        --> gone
            offline    --session_open  --> active
            offline    --goodbye       --> invalid
            offline    --leave         --> invalid
            offline    --session_expire--> invalid
            offline    --drain         --> invalid
            offline    --resume        --> invalid
            offline    --retire        --> retiring
            offline    --remove        --> invalid
            gone       --session_open  --> invalid
            gone       --goodbye       --> invalid
            gone       --leave         --> invalid
            gone       --session_expire--> invalid
            gone       --drain         --> invalid
            gone       --resume        --> invalid
            gone       --retire        --> invalid
            gone       --remove        --> invalid
        "#]]
        .assert_eq(&rendered);
    }

    #[test]
    fn retiring_and_gone_never_take_offers_again() {
        // F4: once retire-if-idle succeeded, no event leads back to a state that takes offers.
        for from in [S::Retiring, S::Gone] {
            for &event in RunnerEvent::ALL {
                if let Ok(to) = from.on(event) {
                    assert!(!to.takes_offers(), "{from} --{event}--> {to} takes offers");
                    assert!(matches!(to, S::Retiring | S::Gone));
                }
            }
        }
    }

    #[test]
    fn gone_is_terminal() {
        for &event in RunnerEvent::ALL {
            assert!(S::Gone.on(event).is_err());
        }
    }
}
