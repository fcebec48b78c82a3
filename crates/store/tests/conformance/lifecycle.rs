//! The life of one attempt under its lease: accept, renew, complete, and the fence that every
//! job call passes through.
//!
//! A completed job yields its `job.completed` event exactly once however often the runner
//! retries (invariant 1), and a call with a stale epoch or from the wrong runner changes
//! nothing (invariant 4).

use std::collections::BTreeMap;

use baton_core::{AttemptResult, AttemptState, EventKind, JobConclusion, JobState, LeaseEpoch, MessageId, RunnerState};
use baton_store::{Lease, LogAppend};

use crate::harness::{Harness, T0, TIMEOUTS, assert_conflict, assert_forbidden, assert_stale, at, data, offers};

pub fn accept_renew_complete_emits_each_event_once(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], at(10));
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(20));
    let (_, job_id, attempt, epoch) = offers(&polled)[0];
    assert_eq!(epoch, LeaseEpoch(1));

    let lease = harness.store.accept(runner.id, job_id, attempt, epoch, at(100)).expect("accept within the timeout");
    assert_eq!(lease, Lease { deadline: at(1_100), ttl: TIMEOUTS.lease_ttl, cancel_requested: false });
    let view = harness.job_view(job.id);
    assert_eq!(view.job.state, JobState::Running);
    assert_eq!(view.attempts[0].state, AttemptState::Running);
    assert_eq!(view.attempts[0].started_at, Some(at(100)));
    assert_eq!(view.attempts[0].accept_deadline, None);
    assert_eq!(view.attempts[0].lease_deadline, Some(at(1_100)));
    harness.check_invariants();

    let before_renew = harness.last_seq();
    let renewed = harness.store.renew(runner.id, job_id, attempt, epoch, at(600)).expect("renew a live lease");
    assert_eq!(renewed, Lease { deadline: at(1_600), ttl: TIMEOUTS.lease_ttl, cancel_requested: false });
    assert_eq!(harness.attempt(job.id, attempt).lease_deadline, Some(at(1_600)));
    assert_eq!(
        harness.runner_view(runner.id).session.expect("open").expires_at,
        at(3_600),
        "a renewal keeps the runner's session alive"
    );
    assert_eq!(harness.last_seq(), before_renew, "a renewal is not an event");

    let outputs = BTreeMap::from([("answer".to_string(), "42".to_string())]);
    let completed = harness
        .store
        .complete(runner.id, job_id, attempt, epoch, AttemptResult::Success, &outputs, "", at(700))
        .expect("complete a running attempt");
    let completed =
        completed.attempts.into_iter().find(|found| found.number == attempt).expect("the completed attempt");
    assert_eq!(completed.state, AttemptState::Completed);
    assert_eq!(completed.result, Some(AttemptResult::Success));
    assert_eq!(completed.outputs, outputs);
    assert_eq!(completed.ended_at, Some(at(700)));
    assert_eq!(harness.attempt(job.id, attempt), completed);
    let job_after = harness.job(job.id);
    assert_eq!(job_after.state, JobState::Completed);
    assert_eq!(job_after.conclusion, Some(JobConclusion::Success));
    assert_eq!(job_after.completed_at, Some(at(700)));
    assert!(!harness.runner_view(runner.id).busy());

    let job_events: Vec<_> = harness.events().into_iter().filter(|event| event.job_id == Some(job.id)).collect();
    let kinds: Vec<_> = job_events.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::JobQueued, EventKind::JobOffered, EventKind::JobStarted, EventKind::JobCompleted]
    );
    let completed_event = &job_events[3];
    assert_eq!(completed_event.runner_id, Some(runner.id));
    assert_eq!(completed_event.attempt, Some(attempt));
    assert_eq!(completed_event.at, at(700));
    assert_eq!(data(completed_event)["conclusion"], "success");
    assert_eq!(data(&job_events[2])["epoch"], 1);
    harness.check_invariants();
}

pub fn accept_is_idempotent(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    // The accept's answer was lost; the runner retries it.
    let again = harness.succeeds_without_writing("accept the same offer again", || {
        harness.store.accept(running.runner.id, running.job.id, running.attempt, running.epoch, at(300))
    });
    assert_eq!(again, running.lease, "the retry reports the lease the first accept granted");
    assert_eq!(harness.count_job_events(EventKind::JobStarted, running.job.id), 1);
}

pub fn complete_is_idempotent_and_a_different_result_conflicts(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let (runner_id, job_id, attempt, epoch) = (running.runner.id, running.job.id, running.attempt, running.epoch);
    let outputs = BTreeMap::new();
    let first = harness
        .store
        .complete(runner_id, job_id, attempt, epoch, AttemptResult::Failure, &outputs, "", at(500))
        .expect("complete");

    // The completion's answer was lost; the runner retries until acknowledged.
    let retried = harness.succeeds_without_writing("complete again with the same result", || {
        harness.store.complete(runner_id, job_id, attempt, epoch, AttemptResult::Failure, &outputs, "", at(900))
    });
    assert_eq!(retried, first);
    assert_eq!(harness.count_job_events(EventKind::JobCompleted, job_id), 1);

    let error = harness.fails_without_writing("complete with another result", || {
        harness.store.complete(runner_id, job_id, attempt, epoch, AttemptResult::Success, &outputs, "", at(1_000))
    });
    assert_conflict(&error, "already_completed");
    assert_eq!(harness.job(job_id).conclusion, Some(JobConclusion::Failure));
    assert_eq!(harness.count_job_events(EventKind::JobCompleted, job_id), 1);

    // The lease ended with the attempt.
    let error = harness.fails_without_writing("renew a completed attempt", || {
        harness.store.renew(runner_id, job_id, attempt, epoch, at(1_000))
    });
    assert_stale(&error, job_id, attempt, epoch);
}

pub fn an_ephemeral_runner_runs_one_job_and_then_leaves(harness: &mut Harness) {
    let runner = harness.register_ephemeral("runner-eph", &["linux"], T0);
    let session = harness.store.open_session(runner.id, T0).expect("session");
    let first = harness.enqueue("job-1", &["linux"], T0);
    let second = harness.enqueue("job-2", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let (_, job_id, attempt, epoch) = offers(&polled)[0];
    assert_eq!(job_id, first.id);

    let before = harness.last_seq();
    harness.store.accept(runner.id, job_id, attempt, epoch, at(20)).expect("accept");
    let events = harness.events_after(before);
    assert_eq!(
        events.iter().map(|event| event.kind).collect::<Vec<_>>(),
        vec![EventKind::JobStarted, EventKind::RunnerDraining]
    );
    assert_eq!(data(&events[1])["reason"], "ephemeral");
    assert_eq!(harness.runner(runner.id).state, RunnerState::Draining);

    harness
        .store
        .complete(runner.id, job_id, attempt, epoch, AttemptResult::Success, &BTreeMap::new(), "", at(30))
        .expect("complete");
    // Even a report of a free slot gets the runner nothing more: it has had its one job.
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(40));
    assert!(offers(&polled).is_empty(), "{polled:?}");
    assert_eq!(harness.job_view(second.id).attempts[0].state, AttemptState::Queued);

    let gone = harness.store.goodbye(runner.id, session.id, at(50)).expect("goodbye");
    assert_eq!(gone.state, RunnerState::Gone);
    assert_eq!(harness.job(first.id).conclusion, Some(JobConclusion::Success), "leaving never changes a finished job");
    harness.check_invariants();
}

pub fn calls_with_a_stale_epoch_are_stale_lease_and_change_nothing(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let (_, job_id, attempt, epoch) = offers(&polled)[0];
    let wrong_epochs = [LeaseEpoch(0), epoch.next()];

    for wrong in wrong_epochs {
        let error = harness.fails_without_writing("accept an offer with a wrong epoch", || {
            harness.store.accept(runner.id, job_id, attempt, wrong, at(20))
        });
        assert_stale(&error, job_id, attempt, wrong);
    }
    assert_eq!(harness.attempt(job.id, attempt).state, AttemptState::Offered);

    harness.store.accept(runner.id, job_id, attempt, epoch, at(30)).expect("accept with the right epoch");
    for wrong in wrong_epochs {
        let error = harness.fails_without_writing("renew with a wrong epoch", || {
            harness.store.renew(runner.id, job_id, attempt, wrong, at(40))
        });
        assert_stale(&error, job_id, attempt, wrong);
        let error = harness.fails_without_writing("append a log chunk with a wrong epoch", || {
            harness.store.append_log(runner.id, job_id, attempt, wrong, 1, "output\n", at(40))
        });
        assert_stale(&error, job_id, attempt, wrong);
        let error = harness.fails_without_writing("complete with a wrong epoch", || {
            harness.store.complete(
                runner.id,
                job_id,
                attempt,
                wrong,
                AttemptResult::Success,
                &BTreeMap::new(),
                "",
                at(40),
            )
        });
        assert_stale(&error, job_id, attempt, wrong);
        let error = harness.fails_without_writing("accept again with a wrong epoch", || {
            harness.store.accept(runner.id, job_id, attempt, wrong, at(40))
        });
        assert_stale(&error, job_id, attempt, wrong);
    }
    let attempt_after = harness.attempt(job.id, attempt);
    assert_eq!(attempt_after.state, AttemptState::Running);
    assert_eq!(attempt_after.lease_deadline, Some(at(1_030)), "no stale renewal moved the lease");
    assert!(harness.store.logs(job.id, attempt, 0, 100).expect("logs").is_empty());
}

pub fn calls_from_another_runner_are_forbidden_and_change_nothing(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let (intruder, _) = harness.connect("runner-2", &["linux"], 1, T0);
    let (job_id, attempt, epoch) = (running.job.id, running.attempt, running.epoch);

    let error = harness.fails_without_writing("accept another runner's attempt", || {
        harness.store.accept(intruder.id, job_id, attempt, epoch, at(200))
    });
    assert_forbidden(&error);
    let error = harness.fails_without_writing("renew another runner's lease", || {
        harness.store.renew(intruder.id, job_id, attempt, epoch, at(200))
    });
    assert_forbidden(&error);
    let error = harness.fails_without_writing("append to another runner's log", || {
        harness.store.append_log(intruder.id, job_id, attempt, epoch, 1, "forged\n", at(200))
    });
    assert_forbidden(&error);
    let error = harness.fails_without_writing("complete another runner's attempt", || {
        harness.store.complete(
            intruder.id,
            job_id,
            attempt,
            epoch,
            AttemptResult::Success,
            &BTreeMap::new(),
            "",
            at(200),
        )
    });
    assert_forbidden(&error);

    // The owner's calls still work.
    let renewed = harness.store.renew(running.runner.id, job_id, attempt, epoch, at(300)).expect("owner renews");
    assert_eq!(renewed.deadline, at(1_300));
    assert_eq!(
        harness.store.append_log(running.runner.id, job_id, attempt, epoch, 1, "real\n", at(300)).expect("log"),
        LogAppend::Appended
    );
}
