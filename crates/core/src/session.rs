//! The session state machine.
//!
//! A session is one connection lifetime of a runner. It is opened by the runner, kept alive by
//! its polls and renewals, and closed by an explicit goodbye or by expiry. A closed or expired
//! session never comes back: the runner opens a new one.

use crate::machine::{self, InvalidTransition, Transition, named_enum};

named_enum! {
    pub enum SessionState {
        Open = "open",
        Closed = "closed",
        Expired = "expired",
    }
}

named_enum! {
    pub enum SessionEvent {
        /// A poll or a renewal arrived on the session.
        Touch = "touch",
        /// The runner said goodbye (`DELETE` of the session).
        Goodbye = "goodbye",
        /// The session ttl passed with no touch.
        Expire = "expire",
        /// The runner opened a newer session, which replaces this one.
        Replace = "replace",
    }
}

use SessionEvent as E;
use SessionState as S;

pub const TRANSITIONS: &[Transition<SessionState, SessionEvent>] = &[
    Transition { from: S::Open, event: E::Touch, to: S::Open },
    Transition { from: S::Open, event: E::Goodbye, to: S::Closed },
    Transition { from: S::Open, event: E::Expire, to: S::Expired },
    Transition { from: S::Open, event: E::Replace, to: S::Closed },
];

impl SessionState {
    pub fn on(self, event: SessionEvent) -> Result<SessionState, InvalidTransition> {
        machine::step("session", TRANSITIONS, self, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn every_pair_has_a_reviewed_outcome() {
        let rendered = machine::render_outcomes("session", TRANSITIONS, SessionState::ALL, SessionEvent::ALL);
        expect![[r#"
            open       --touch         --> open
            open       --goodbye       --> closed
            open       --expire        --> expired
            open       --replace       --> closed
            closed     --touch         --> invalid
            closed     --goodbye       --> invalid
            closed     --expire        --> invalid
            closed     --replace       --> invalid
            expired    --touch         --> invalid
            expired    --goodbye       --> invalid
            expired    --expire        --> invalid
            expired    --replace       --> invalid
        "#]]
        .assert_eq(&rendered);
    }
}
