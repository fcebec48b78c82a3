//! Cancelling jobs in every state of their current attempt.
//!
//! A queued or offered attempt ends at once (an offered one's runner then gets a stale lease on
//! a late accept, and its slot back); a running attempt stays running until its runner reports
//! the cancelled result, having been told through a `cancel` message and its renewals.

use std::collections::BTreeMap;

use baton_core::{
    AttemptNo, AttemptResult, AttemptState, EventKind, JobConclusion, JobId, JobState, LeaseEpoch, Message, MessageId,
};
use baton_store::{Error, Sweep};

use crate::harness::{Harness, T0, assert_conflict, assert_stale, at, data, offers};

pub fn cancelling_a_queued_job_completes_it_as_cancelled(harness: &mut Harness) {
    let job = harness.enqueue("job-1", &["linux"], T0);
    let before = harness.last_seq();

    let cancelled = harness.store.cancel_job(job.id, at(10)).expect("cancel");

    assert_eq!(cancelled.state, JobState::Completed);
    assert_eq!(cancelled.conclusion, Some(JobConclusion::Cancelled));
    assert!(cancelled.cancel_requested);
    assert_eq!(cancelled.completed_at, Some(at(10)));
    let view = harness.job_view(job.id);
    assert_eq!(view.job, cancelled);
    let attempt = &view.attempts[0];
    assert_eq!(attempt.state, AttemptState::Completed);
    assert_eq!(attempt.result, Some(AttemptResult::Cancelled));
    assert_eq!(attempt.runner_id, None);
    assert_eq!(attempt.ended_at, Some(at(10)));
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::JobCompleted]);
    assert_eq!(events[0].runner_id, None);
    assert_eq!(data(&events[0])["conclusion"], "cancelled");

    let again = harness.succeeds_without_writing("cancel again", || harness.store.cancel_job(job.id, at(20)));
    assert_eq!(again, cancelled);

    // A runner that comes along later is not offered the cancelled job.
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, at(30));
    assert!(harness.poll(&runner, &session, 1, MessageId(0), at(40)).messages.is_empty());
    harness.check_invariants();
}

pub fn cancelling_an_offered_job_revokes_the_offer(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let (_, job_id, attempt, epoch) = offers(&polled)[0];
    assert_eq!(harness.runner(runner.id).reported_free_slots, 0);
    let before = harness.last_seq();

    let cancelled = harness.store.cancel_job(job.id, at(20)).expect("cancel");

    assert_eq!(cancelled.state, JobState::Completed);
    assert_eq!(cancelled.conclusion, Some(JobConclusion::Cancelled));
    let ended = harness.attempt(job_id, attempt);
    assert_eq!(ended.state, AttemptState::Completed);
    assert_eq!(ended.result, Some(AttemptResult::Cancelled));
    assert_eq!(ended.epoch, Some(LeaseEpoch(1)), "the ended attempt keeps the epoch of its last offer");
    assert_eq!(ended.runner_id, Some(runner.id));
    assert_eq!(ended.accept_deadline, None);
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::JobCompleted]);
    assert_eq!(events[0].runner_id, Some(runner.id), "the event names the runner whose slot it frees");
    assert_eq!(data(&events[0])["epoch"], 1);
    let view = harness.runner_view(runner.id);
    assert!(!view.busy());
    assert_eq!(view.runner.reported_free_slots, 1, "the unaccepted offer's slot is given back");

    // The revoked offer is not delivered any more.
    let polled = harness.poll(&runner, &session, 0, MessageId(0), at(30));
    assert!(polled.messages.is_empty(), "{polled:?}");

    // The runner accepts late, with the epoch it was offered: the attempt is over, so the lease
    // is stale even though the epoch still matches.
    let error = harness.fails_without_writing("accept a cancelled offer", || {
        harness.store.accept(runner.id, job_id, attempt, epoch, at(40))
    });
    assert_stale(&error, job_id, attempt, epoch);
    let error = harness.fails_without_writing("renew a cancelled offer", || {
        harness.store.renew(runner.id, job_id, attempt, epoch, at(40))
    });
    assert_stale(&error, job_id, attempt, epoch);
    // Completing it with any other result than the one it ended with is a conflict.
    let error = harness.fails_without_writing("complete a cancelled offer as a success", || {
        harness.store.complete(runner.id, job_id, attempt, epoch, AttemptResult::Success, &BTreeMap::new(), "", at(40))
    });
    assert_conflict(&error, "already_completed");

    let sweep = harness.succeeds_without_writing("expire offers later", || harness.store.expire_offers(at(10_000)));
    assert_eq!(sweep, Sweep { expired: 0 });
    assert_eq!(harness.count_job_events(EventKind::JobCompleted, job.id), 1);
    harness.check_invariants();
}

pub fn cancelling_a_running_job_asks_its_runner_to_stop(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let (runner, job_id, attempt, epoch) = (running.runner.clone(), running.job.id, running.attempt, running.epoch);
    let before = harness.last_seq();

    let requested = harness.store.cancel_job(job_id, at(200)).expect("cancel");

    assert_eq!(requested.state, JobState::Running, "a running job ends when its runner says so");
    assert!(requested.cancel_requested);
    assert_eq!(requested.conclusion, None);
    assert_eq!(harness.attempt(job_id, attempt).state, AttemptState::Running);
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::JobCancelRequested]);
    assert_eq!(events[0].runner_id, Some(runner.id));
    let polled = harness.poll(&runner, &running.session, 0, MessageId(0), at(210));
    let delivered: Vec<_> = polled.messages.iter().map(|(_, message)| *message).collect();
    assert!(delivered.contains(&Message::Cancel { job_id, attempt, epoch }), "{delivered:?}");

    let again = harness.succeeds_without_writing("cancel again", || harness.store.cancel_job(job_id, at(220)));
    assert!(again.cancel_requested);

    let renewed = harness.store.renew(runner.id, job_id, attempt, epoch, at(300)).expect("renew");
    assert!(renewed.cancel_requested, "the renewal tells the runner to stop");
    let accepted = harness.store.accept(runner.id, job_id, attempt, epoch, at(310)).expect("a retried accept");
    assert!(accepted.cancel_requested);

    harness
        .store
        .complete(runner.id, job_id, attempt, epoch, AttemptResult::Cancelled, &BTreeMap::new(), "", at(400))
        .expect("the runner reports the cancelled result");
    let job = harness.job(job_id);
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.conclusion, Some(JobConclusion::Cancelled));
    assert_eq!(harness.count_job_events(EventKind::JobCompleted, job_id), 1);
    assert!(!harness.runner_view(runner.id).busy());
    harness.check_invariants();
}

pub fn a_cancelled_job_whose_runner_vanishes_concludes_cancelled(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let job_id = running.job.id;
    harness.store.cancel_job(job_id, at(200)).expect("cancel");
    let before = harness.last_seq();

    // The runner never confirms and stops renewing.
    assert_eq!(harness.store.expire_leases(at(1_101)).expect("sweep"), Sweep { expired: 1 });

    let events = harness.events_after(before);
    assert_eq!(
        events.iter().map(|event| event.kind).collect::<Vec<_>>(),
        vec![EventKind::AttemptLost, EventKind::JobCompleted]
    );
    assert_eq!(data(&events[1])["conclusion"], "cancelled");
    let view = harness.job_view(job_id);
    assert_eq!(view.job.state, JobState::Completed);
    assert_eq!(view.job.conclusion, Some(JobConclusion::Cancelled), "a cancelled job is not retried");
    assert_eq!(view.attempts.len(), 1);
    assert_eq!(view.attempts[0].state, AttemptState::Lost);
    assert!(view.job.reason.is_some());
    harness.check_invariants();
}

pub fn cancelling_a_completed_job_conflicts(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let job_id = running.job.id;
    harness
        .store
        .complete(
            running.runner.id,
            job_id,
            running.attempt,
            running.epoch,
            AttemptResult::Success,
            &BTreeMap::new(),
            "",
            at(200),
        )
        .expect("complete");

    let error = harness.fails_without_writing("cancel a finished job", || harness.store.cancel_job(job_id, at(300)));
    assert_conflict(&error, "job_completed");
    assert_eq!(harness.job(job_id).conclusion, Some(JobConclusion::Success));
    assert_eq!(harness.attempt(job_id, AttemptNo(1)).result, Some(AttemptResult::Success));

    let error =
        harness.fails_without_writing("cancel an unknown job", || harness.store.cancel_job(JobId(9_999), at(300)));
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
}
