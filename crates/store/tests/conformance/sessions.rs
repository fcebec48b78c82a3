//! Sessions: expiry, goodbye, and polls on sessions that are over.
//!
//! A session that runs out takes its runner offline without touching any attempt (a vanished
//! runner never changes a job; only the attempt's own lease can end it). A goodbye makes an
//! ephemeral runner gone and a persistent one offline, and may be repeated. A poll on a session
//! that is over is a 409 `session_closed`.

use baton_core::{AttemptState, EventKind, MessageId, RunnerState, SessionId, SessionState};
use baton_store::{Error, Sweep};

use crate::harness::{Harness, T0, assert_conflict, assert_forbidden, at, data};

pub fn an_expired_session_takes_the_runner_offline_and_leaves_attempts_alone(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let runner_id = running.runner.id;
    let session = harness.runner_view(runner_id).session.expect("open");
    assert_eq!(session.expires_at, at(3_000));
    let attempt_before = harness.attempt(running.job.id, running.attempt);

    let at_expiry = harness.succeeds_without_writing("expire sessions at the expiry instant itself", || {
        harness.store.expire_sessions(at(3_000))
    });
    assert_eq!(at_expiry, Sweep { expired: 0 });

    let before = harness.last_seq();
    assert_eq!(harness.store.expire_sessions(at(3_001)).expect("sweep"), Sweep { expired: 1 });
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::RunnerOffline]);
    assert_eq!(events[0].runner_id, Some(runner_id));
    assert_eq!(data(&events[0])["reason"], "session expired");
    let view = harness.runner_view(runner_id);
    assert_eq!(view.runner.state, RunnerState::Offline);
    assert_eq!(view.runner.session_id, None);
    assert_eq!(view.session, None);
    assert_eq!(
        harness.attempt(running.job.id, running.attempt),
        attempt_before,
        "the session sweep leaves the attempt exactly as it was, even past its lease deadline"
    );
    assert_eq!(attempt_before.state, AttemptState::Running);
    assert!(view.busy(), "the runner still holds its running attempt");

    let again = harness.succeeds_without_writing("sweep sessions again", || harness.store.expire_sessions(at(4_000)));
    assert_eq!(again, Sweep { expired: 0 });
    let error = harness.fails_without_writing("poll on the expired session", || {
        harness.store.poll(runner_id, running.session.id, 1, MessageId(0), at(4_000))
    });
    assert_conflict(&error, "session_closed");

    // The runner comes back with a new session.
    let reopened = harness.store.open_session(runner_id, at(4_100)).expect("an offline runner reconnects");
    assert_ne!(reopened.id, running.session.id);
    assert_eq!(harness.runner(runner_id).state, RunnerState::Active);
    harness.check_invariants();
}

pub fn goodbye_of_an_ephemeral_runner_makes_it_gone(harness: &mut Harness) {
    let runner = harness.register_ephemeral("runner-eph", &["linux"], T0);
    let session = harness.store.open_session(runner.id, T0).expect("session");
    let before = harness.last_seq();

    let gone = harness.store.goodbye(runner.id, session.id, at(10)).expect("goodbye");

    assert_eq!(gone.state, RunnerState::Gone);
    assert_eq!(gone.session_id, None);
    assert_eq!(harness.runner(runner.id), gone);
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::RunnerGone]);
    assert_eq!(data(&events[0])["reason"], "goodbye");

    let repeated =
        harness.succeeds_without_writing("say goodbye again", || harness.store.goodbye(runner.id, session.id, at(20)));
    assert_eq!(repeated.state, RunnerState::Gone);
    let error = harness.fails_without_writing("poll after goodbye", || {
        harness.store.poll(runner.id, session.id, 1, MessageId(0), at(30))
    });
    assert_conflict(&error, "session_closed");
    let error = harness.fails_without_writing("reopen a gone runner", || harness.store.open_session(runner.id, at(40)));
    assert_conflict(&error, "runner_retired");
}

pub fn goodbye_of_a_persistent_runner_makes_it_offline(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let before = harness.last_seq();

    let offline = harness.store.goodbye(runner.id, session.id, at(10)).expect("goodbye");

    assert_eq!(offline.state, RunnerState::Offline);
    assert_eq!(offline.session_id, None);
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::RunnerOffline]);
    assert_eq!(data(&events[0])["reason"], "goodbye");

    let repeated =
        harness.succeeds_without_writing("say goodbye again", || harness.store.goodbye(runner.id, session.id, at(20)));
    assert_eq!(repeated.state, RunnerState::Offline);
    let error = harness.fails_without_writing("poll after goodbye", || {
        harness.store.poll(runner.id, session.id, 1, MessageId(0), at(30))
    });
    assert_conflict(&error, "session_closed");
    let error = harness.fails_without_writing("say goodbye with an unknown session", || {
        harness.store.goodbye(runner.id, SessionId(9_999), at(30))
    });
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");

    let reopened = harness.store.open_session(runner.id, at(40)).expect("a persistent runner comes back");
    assert_eq!(reopened.state, SessionState::Open);
    assert_eq!(harness.runner(runner.id).state, RunnerState::Active);
}

pub fn a_poll_on_a_closed_expired_or_replaced_session_is_session_closed(harness: &mut Harness) {
    let (runner, first) = harness.connect("runner-1", &["linux"], 1, T0);
    let (other, other_session) = harness.connect("runner-2", &["linux"], 1, T0);

    // Past its expiry the session is over even before any sweep marks it.
    let error = harness.fails_without_writing("poll after the session ran out", || {
        harness.store.poll(runner.id, first.id, 1, MessageId(0), at(3_001))
    });
    assert_conflict(&error, "session_closed");

    // A new session replaces the old one, which is closed for good.
    let before = harness.last_seq();
    let second = harness.store.open_session(runner.id, at(3_100)).expect("reconnect");
    assert_eq!(harness.kinds_after(before), vec![EventKind::RunnerOnline]);
    let error = harness.fails_without_writing("poll on the replaced session", || {
        harness.store.poll(runner.id, first.id, 1, MessageId(0), at(3_200))
    });
    assert_conflict(&error, "session_closed");
    harness.poll(&runner, &second, 1, MessageId(0), at(3_200));

    let error = harness.fails_without_writing("poll on another runner's session", || {
        harness.store.poll(runner.id, other_session.id, 1, MessageId(0), at(3_300))
    });
    assert_forbidden(&error);
    let error = harness.fails_without_writing("say goodbye on another runner's session", || {
        harness.store.goodbye(other.id, second.id, at(3_300))
    });
    assert_forbidden(&error);
    let error = harness.fails_without_writing("poll on an unknown session", || {
        harness.store.poll(runner.id, SessionId(9_999), 1, MessageId(0), at(3_300))
    });
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
}
