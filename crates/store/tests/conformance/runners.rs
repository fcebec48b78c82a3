//! Retire-if-idle and the derived `busy` flag.
//!
//! Retire-if-idle is one transaction: an idle runner becomes `retiring` and is never offered a
//! job again; a busy one answers `busy` with the job it holds and nothing changes (F4). `busy`
//! equals "an offered or running attempt references the runner" at every step (invariant 2),
//! and the event stream accounts for exactly those attempts (F2).

use std::collections::BTreeMap;

use baton_core::{AttemptNo, AttemptResult, AttemptState, EventKind, Message, MessageId, RunnerState};
use baton_store::RetireOutcome;

use crate::harness::{Harness, T0, assert_conflict, at, held_according_to_events, offers};

pub fn retire_if_idle_retires_an_idle_runner_for_good(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let before = harness.last_seq();

    let outcome = harness.store.retire_if_idle(runner.id, at(20)).expect("retire");

    assert_eq!(outcome, RetireOutcome::Retired);
    assert_eq!(harness.runner(runner.id).state, RunnerState::Retiring);
    assert_eq!(harness.kinds_after(before), vec![EventKind::RunnerRetiring]);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(30));
    assert_eq!(polled.messages.iter().map(|(_, message)| *message).collect::<Vec<_>>(), vec![Message::Retire]);

    // From now on no assign can pick it, however many slots it reports.
    let job = harness.enqueue("job-1", &["linux"], at(40));
    assert_eq!(harness.job_view(job.id).attempts[0].state, AttemptState::Queued);
    let polled = harness.poll(&runner, &session, 1, polled.messages[0].0, at(50));
    assert!(polled.messages.is_empty(), "{polled:?}");
    assert_eq!(harness.store.dispatch(at(60)).expect("dispatch"), 0);
    assert_eq!(harness.count_job_events(EventKind::JobOffered, job.id), 0);
    let error = harness
        .fails_without_writing("open a session on a retiring runner", || harness.store.open_session(runner.id, at(70)));
    assert_conflict(&error, "runner_retired");

    let repeated = harness.succeeds_without_writing("retire again", || harness.store.retire_if_idle(runner.id, at(80)));
    assert_eq!(repeated, RetireOutcome::Retired);

    // The retiring runner leaves; retiring a gone runner still answers retired.
    let gone = harness.store.goodbye(runner.id, session.id, at(90)).expect("goodbye");
    assert_eq!(gone.state, RunnerState::Gone);
    let after_gone =
        harness.succeeds_without_writing("retire a gone runner", || harness.store.retire_if_idle(runner.id, at(100)));
    assert_eq!(after_gone, RetireOutcome::Retired);
    harness.check_invariants();
}

pub fn retire_if_idle_on_a_busy_runner_answers_busy_and_changes_nothing(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let (_, job_id, attempt, epoch) = offers(&polled)[0];
    let busy = RetireOutcome::Busy { job_id: job.id, attempt: AttemptNo(1) };

    let offered = harness.succeeds_without_writing("retire a runner holding an offer", || {
        harness.store.retire_if_idle(runner.id, at(20))
    });
    assert_eq!(offered, busy);

    harness.store.accept(runner.id, job_id, attempt, epoch, at(30)).expect("accept");
    let running = harness
        .succeeds_without_writing("retire a runner running a job", || harness.store.retire_if_idle(runner.id, at(40)));
    assert_eq!(running, busy);
    assert_eq!(harness.runner(runner.id).state, RunnerState::Active);

    harness
        .store
        .complete(runner.id, job_id, attempt, epoch, AttemptResult::Success, &BTreeMap::new(), "", at(50))
        .expect("complete");
    assert_eq!(harness.store.retire_if_idle(runner.id, at(60)).expect("retire"), RetireOutcome::Retired);
    assert_eq!(harness.runner(runner.id).state, RunnerState::Retiring);
    harness.check_invariants();
}

/// Asserts `busy` for the runner through every read path, and that the events agree.
fn assert_busy(harness: &Harness, runner_id: baton_core::RunnerId, expected: bool, step: &str) {
    let view = harness.runner_view(runner_id);
    assert_eq!(view.busy(), expected, "[{}] after {step}: busy", harness.backend_name);
    assert_eq!(view.busy(), !view.held.is_empty());
    assert_eq!(view.as_of, harness.last_seq(), "the view was read as of the newest event");
    let listed = harness
        .store
        .runners(baton_core::RunnerId(0), 100)
        .expect("list")
        .into_iter()
        .find(|listed| listed.runner.id == runner_id)
        .expect("the runner is listed");
    assert_eq!(listed.busy(), expected, "[{}] after {step}: busy in the list", harness.backend_name);
    assert_eq!(
        held_according_to_events(&harness.events(), runner_id),
        i64::from(expected),
        "[{}] after {step}: the events disagree",
        harness.backend_name
    );
    harness.check_invariants();
}

pub fn busy_follows_offered_and_running_attempts_through_the_lifecycle(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    assert_busy(harness, runner.id, false, "connect");

    // Offered, running, completed.
    harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let first = harness.enqueue("job-1", &["linux"], at(20));
    assert_busy(harness, runner.id, true, "offer");
    let epoch = harness.attempt(first.id, AttemptNo(1)).epoch.expect("offered");
    harness.store.accept(runner.id, first.id, AttemptNo(1), epoch, at(30)).expect("accept");
    assert_busy(harness, runner.id, true, "accept");
    harness
        .store
        .complete(runner.id, first.id, AttemptNo(1), epoch, AttemptResult::Success, &BTreeMap::new(), "", at(40))
        .expect("complete");
    assert_busy(harness, runner.id, false, "complete");

    // Offered, then the offer expires while nobody can take it again.
    let second = harness.enqueue("job-2", &["linux"], at(50));
    harness.poll(&runner, &session, 1, MessageId(0), at(60));
    assert_busy(harness, runner.id, true, "second offer");
    harness.store.expire_offers(at(3_100)).expect("offer sweep");
    assert_eq!(harness.attempt(second.id, AttemptNo(1)).state, AttemptState::Queued);
    assert_busy(harness, runner.id, false, "offer expiry");

    // Offered again on a new session, running, then lost.
    let session = harness.store.open_session(runner.id, at(3_200)).expect("reconnect");
    harness.poll(&runner, &session, 1, MessageId(0), at(3_210));
    assert_busy(harness, runner.id, true, "re-offer");
    let epoch = harness.attempt(second.id, AttemptNo(1)).epoch.expect("offered");
    harness.store.accept(runner.id, second.id, AttemptNo(1), epoch, at(3_220)).expect("accept");
    assert_busy(harness, runner.id, true, "second accept");
    harness.store.expire_leases(at(4_221)).expect("lease sweep");
    assert_eq!(harness.attempt(second.id, AttemptNo(1)).state, AttemptState::Lost);
    assert_busy(harness, runner.id, false, "lease loss");

    // Offered and cancelled.
    harness.poll(&runner, &session, 1, MessageId(0), at(4_300));
    assert_busy(harness, runner.id, true, "offer of the second attempt");
    harness.store.cancel_job(second.id, at(4_310)).expect("cancel");
    assert_busy(harness, runner.id, false, "cancel of an offered job");
}

pub fn remove_runner_makes_a_retired_runner_gone(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);

    // Only a retiring runner's machine may be removed.
    let error =
        harness.fails_without_writing("remove an active runner", || harness.store.remove_runner(runner.id, at(10)));
    assert!(matches!(error, baton_store::Error::InvalidTransition(_)), "{error:?}");

    assert_eq!(harness.store.retire_if_idle(runner.id, at(20)).expect("retire"), RetireOutcome::Retired);
    let before = harness.last_seq();
    let removed = harness.store.remove_runner(runner.id, at(30)).expect("remove");

    assert_eq!(removed.state, RunnerState::Gone);
    assert_eq!(removed.session_id, None);
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::RunnerGone]);
    let error = harness.fails_without_writing("poll after removal", || {
        harness.store.poll(runner.id, session.id, 1, MessageId(0), at(40))
    });
    assert_conflict(&error, "session_closed");
    let again = harness.succeeds_without_writing("remove again", || harness.store.remove_runner(runner.id, at(50)));
    assert_eq!(again.state, RunnerState::Gone);
    harness.check_invariants();
}

/// Found by the fleet simulator (seed 5): an ephemeral runner fenced its job during a server
/// outage and said goodbye, so it was gone while its attempt was still running until the lease
/// ran out. Retire-by-name must not call its machine idle then.
pub fn retire_by_name_waits_for_a_gone_runners_running_attempt(harness: &mut Harness) {
    let runner = harness.register_ephemeral("runner-eph", &["linux"], T0);
    let session = harness.store.open_session(runner.id, T0).expect("session");
    let job = harness.enqueue("job-1", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), T0);
    let (_, job_id, attempt, epoch) = crate::harness::offers(&polled)[0];
    assert_eq!(job_id, job.id);
    harness.store.accept(runner.id, job.id, attempt, epoch, at(10)).expect("accept");
    let gone = harness.store.goodbye(runner.id, session.id, at(20)).expect("goodbye");
    assert_eq!(gone.state, RunnerState::Gone);

    let readings = serde_json::json!({});
    let answer = harness.store.scaler_retire_name("runner-eph", &readings, at(30)).expect("retire by name");
    assert_eq!(answer, RetireOutcome::Busy { job_id: job.id, attempt });

    // Once the lease has expired, nothing references the machine any more.
    harness.store.expire_leases(at(5_000)).expect("expire leases");
    assert_eq!(harness.attempt(job.id, attempt).state, AttemptState::Lost);
    let answer = harness.store.scaler_retire_name("runner-eph", &readings, at(5_010)).expect("retire by name");
    assert_eq!(answer, RetireOutcome::Retired);
    harness.check_invariants();
}
