//! Sessions, polls and the assign step: who is offered what, and when.
//!
//! Only an active runner with a live session, a free slot and every label a job asks for is
//! offered that job; the offer is written with a new fencing epoch and delivered at least once
//! until acknowledged; no runner is offered more than its free slots (F3).

use baton_core::{
    AttemptNo, AttemptState, EventKind, JobState, LeaseEpoch, Message, MessageId, RunnerState, SessionState,
};

use baton_store::NewJob;

use crate::harness::{Harness, T0, assert_conflict, assert_invalid, at, data, offers};

pub fn opening_a_session_activates_the_runner(harness: &mut Harness) {
    let runner = harness.register("runner-1", &["linux"], 1, T0);
    let before = harness.last_seq();

    let session = harness.store.open_session(runner.id, at(10)).expect("a registered runner opens a session");

    assert_eq!(session.runner_id, runner.id);
    assert_eq!(session.state, SessionState::Open);
    assert_eq!(session.opened_at, at(10));
    assert_eq!(session.expires_at, at(3_010), "a session lives session_ttl after its last touch");
    let view = harness.runner_view(runner.id);
    assert_eq!(view.runner.state, RunnerState::Active);
    assert_eq!(view.runner.session_id, Some(session.id));
    assert_eq!(view.runner.reported_free_slots, 0, "nothing is offered before the first poll");
    assert_eq!(view.session, Some(session.clone()));
    let events = harness.events_after(before);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::RunnerOnline);
    assert_eq!(events[0].runner_id, Some(runner.id));
    assert_eq!(data(&events[0])["session_id"], session.id.0);
}

pub fn a_poll_offers_a_queued_job_with_epoch_one(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], at(10));
    assert_eq!(
        harness.job_view(job.id).attempts[0].state,
        AttemptState::Queued,
        "the runner has not reported free slots yet"
    );
    let before = harness.last_seq();

    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(20));

    assert_eq!(polled.messages.len(), 1, "{polled:?}");
    assert_eq!(polled.messages[0].1, Message::JobOffer { job_id: job.id, attempt: AttemptNo(1), epoch: LeaseEpoch(1) });
    let view = harness.job_view(job.id);
    assert_eq!(view.job.state, JobState::Queued, "an offered job is still queued until accepted");
    assert_eq!(view.job.epoch, LeaseEpoch(1));
    let attempt = &view.attempts[0];
    assert_eq!(attempt.state, AttemptState::Offered);
    assert_eq!(attempt.runner_id, Some(runner.id));
    assert_eq!(attempt.epoch, Some(LeaseEpoch(1)));
    assert_eq!(attempt.offered_at, Some(at(20)));
    assert_eq!(attempt.accept_deadline, Some(at(520)));
    let events = harness.events_after(before);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::JobOffered);
    assert_eq!(events[0].job_id, Some(job.id));
    assert_eq!(events[0].attempt, Some(AttemptNo(1)));
    assert_eq!(events[0].runner_id, Some(runner.id));
    assert_eq!(data(&events[0])["epoch"], 1);
    // The poll kept the session alive.
    assert_eq!(harness.runner_view(runner.id).session.expect("open").expires_at, at(3_020));
    harness.check_invariants();
}

pub fn an_offer_is_redelivered_until_acknowledged(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], T0);
    let first = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    assert_eq!(offers(&first).len(), 1);
    let after_first = harness.last_seq();

    // The answer to the first poll was lost on the wire; the next poll delivers it again.
    let second = harness.poll(&runner, &session, 1, MessageId(0), at(20));
    assert_eq!(second, first, "the same message, with the same id");
    assert_eq!(harness.last_seq(), after_first, "redelivery is not a new offer");
    assert_eq!(harness.job(job.id).epoch, LeaseEpoch(1));

    let acknowledged = first.messages[0].0;
    let third = harness.poll(&runner, &session, 1, acknowledged, at(30));
    assert!(third.messages.is_empty(), "an acknowledged message is not delivered again: {third:?}");
    assert!(harness.queued_messages(runner.id).is_empty());
    assert_eq!(
        harness.job_view(job.id).attempts[0].state,
        AttemptState::Offered,
        "acknowledging the message is not accepting the offer"
    );
}

pub fn enqueue_offers_at_once_to_a_runner_that_reported_free_slots(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let idle = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    assert!(idle.messages.is_empty());
    let before = harness.last_seq();

    let job = harness.enqueue("job-1", &["linux"], at(20));

    // The offer is written in the enqueue transaction itself, before any further poll.
    let attempt = &harness.job_view(job.id).attempts[0];
    assert_eq!(attempt.state, AttemptState::Offered);
    assert_eq!(attempt.runner_id, Some(runner.id));
    assert_eq!(attempt.epoch, Some(LeaseEpoch(1)));
    assert_eq!(attempt.offered_at, Some(at(20)));
    let events = harness.events_after(before);
    let kinds: Vec<_> = events.iter().map(|event| event.kind).collect();
    assert_eq!(kinds, vec![EventKind::JobQueued, EventKind::JobOffered]);
    assert!(events.iter().all(|event| event.at == at(20)));
    let queued = harness.queued_messages(runner.id);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].1, Message::JobOffer { job_id: job.id, attempt: AttemptNo(1), epoch: LeaseEpoch(1) });
    let polled = harness.poll(&runner, &session, 0, MessageId(0), at(30));
    assert_eq!(offers(&polled).len(), 1);
    assert_eq!(offers(&polled)[0].1, job.id);
    harness.check_invariants();
}

pub fn a_job_whose_labels_the_runner_lacks_is_not_offered(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    harness.poll(&runner, &session, 1, MessageId(0), T0);

    let gpu_job = harness.enqueue("job-gpu", &["linux", "gpu"], at(10));
    assert_eq!(harness.job_view(gpu_job.id).attempts[0].state, AttemptState::Queued);
    assert_eq!(harness.count_job_events(EventKind::JobOffered, gpu_job.id), 0);
    assert!(harness.poll(&runner, &session, 1, MessageId(0), at(20)).messages.is_empty());
    assert_eq!(harness.store.dispatch(at(30)).expect("dispatch"), 0);

    // Labels compare case-insensitively; a job the runner can run is offered past the other.
    let linux_job = harness.enqueue("job-linux", &["Linux"], at(40));
    assert_eq!(harness.job_view(linux_job.id).attempts[0].state, AttemptState::Offered);
    assert_eq!(harness.job_view(gpu_job.id).attempts[0].state, AttemptState::Queued);
}

pub fn a_runner_reporting_no_free_slots_is_not_offered(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 2, T0);
    let job = harness.enqueue("job-1", &["linux"], T0);

    let polled = harness.poll(&runner, &session, 0, MessageId(0), at(10));
    assert!(polled.messages.is_empty(), "{polled:?}");
    assert_eq!(harness.job_view(job.id).attempts[0].state, AttemptState::Queued);
    assert_eq!(harness.store.dispatch(at(20)).expect("dispatch"), 0);
    assert_eq!(harness.count_job_events(EventKind::JobOffered, job.id), 0);

    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(30));
    assert_eq!(offers(&polled).len(), 1, "a freed slot is filled at once");
}

pub fn a_runner_is_never_offered_more_than_its_capacity(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 2, T0);
    let jobs: Vec<_> = (1..=3).map(|index| harness.enqueue(&format!("job-{index}"), &["linux"], at(index))).collect();

    // A report above capacity is capped at capacity.
    let polled = harness.poll(&runner, &session, 10, MessageId(0), at(10));
    let offered: Vec<_> = offers(&polled).iter().map(|offer| offer.1).collect();
    assert_eq!(offered, vec![jobs[0].id, jobs[1].id], "two slots, two offers, oldest first");
    assert_eq!(harness.runner(runner.id).reported_free_slots, 0, "each offer used one reported slot");

    // The runner claims two free slots again without accepting anything: it still holds two.
    let polled = harness.poll(&runner, &session, 2, MessageId(0), at(20));
    assert_eq!(offers(&polled).len(), 2, "only the two earlier offers, redelivered");
    assert_eq!(harness.store.dispatch(at(30)).expect("dispatch"), 0);
    assert_eq!(harness.job_view(jobs[2].id).attempts[0].state, AttemptState::Queued);
    assert_eq!(harness.runner_view(runner.id).held.len(), 2);
    harness.check_invariants();

    // Finishing one job frees one slot, which the third job takes on the next poll.
    let (_, job_id, attempt, epoch) = offers(&polled)[0];
    harness.store.accept(runner.id, job_id, attempt, epoch, at(40)).expect("accept");
    harness
        .store
        .complete(
            runner.id,
            job_id,
            attempt,
            epoch,
            baton_core::AttemptResult::Success,
            &Default::default(),
            "",
            at(50),
        )
        .expect("complete");
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(60));
    let offered: Vec<_> = offers(&polled).iter().map(|offer| offer.1).collect();
    assert_eq!(offered, vec![jobs[1].id, jobs[2].id]);
    assert_eq!(harness.runner_view(runner.id).held.len(), 2);
    harness.check_invariants();
}

pub fn the_oldest_queued_job_is_offered_first(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let older = harness.enqueue("job-older", &["linux"], at(10));
    let newer = harness.enqueue("job-newer", &["linux"], at(20));
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(30));
    assert_eq!(offers(&polled).iter().map(|offer| offer.1).collect::<Vec<_>>(), vec![older.id]);
    assert_eq!(harness.job_view(newer.id).attempts[0].state, AttemptState::Queued);
}

pub fn a_draining_runner_is_not_offered_until_resumed(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let before = harness.last_seq();
    let drained = harness.store.drain(runner.id, at(10)).expect("an active runner drains");
    assert_eq!(drained.state, RunnerState::Draining);
    assert_eq!(harness.kinds_after(before), vec![EventKind::RunnerDraining]);

    let job = harness.enqueue("job-1", &["linux"], at(20));
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(30));
    assert_eq!(polled.messages.iter().map(|(_, message)| *message).collect::<Vec<_>>(), vec![Message::Drain]);
    assert_eq!(harness.job_view(job.id).attempts[0].state, AttemptState::Queued);

    let resumed = harness.store.resume(runner.id, at(40)).expect("a draining runner resumes");
    assert_eq!(resumed.state, RunnerState::Active);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(50));
    assert_eq!(offers(&polled).len(), 1);
}

pub fn bad_jobs_are_invalid_and_write_nothing(harness: &mut Harness) {
    let cases = [
        ("name", "", vec!["linux".to_string()], 1),
        ("name", "has space", vec!["linux".to_string()], 1),
        ("labels", "job-1", vec!["a,b".to_string()], 1),
        ("max_attempts", "job-1", vec!["linux".to_string()], 0),
        ("max_attempts", "job-1", vec!["linux".to_string()], 11),
    ];
    for (field, name, labels, max_attempts) in cases {
        let new = NewJob { name: name.to_string(), labels, spec: "{}".to_string(), max_attempts };
        let error = harness.fails_without_writing(&format!("enqueue {new:?}"), || harness.store.enqueue(&new, T0));
        assert_invalid(&error, field);
    }
    let widest = NewJob { name: "job-1".into(), labels: Vec::new(), spec: "{}".into(), max_attempts: 10 };
    let job = harness.store.enqueue(&widest, T0).expect("ten attempts and no labels are allowed").job;
    assert_eq!(job.max_attempts, 10);
    assert!(job.labels.is_empty(), "a job without labels runs on any runner");
}

pub fn an_ephemeral_runner_that_ran_its_job_cannot_be_resumed(harness: &mut Harness) {
    let runner = harness.register_ephemeral("ephemeral-1", &["linux"], T0);
    let session = harness.store.open_session(runner.id, T0).expect("the session opens");
    let job = harness.enqueue("job-1", &["linux"], at(10));
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(20));
    let [(_, job_id, attempt, epoch)] = offers(&polled)[..] else { panic!("one offer expected: {polled:?}") };
    assert_eq!(job_id, job.id);
    harness.store.accept(runner.id, job_id, attempt, epoch, at(30)).expect("accept");
    assert_eq!(harness.runner(runner.id).state, RunnerState::Draining, "it drains after its one job");

    let error = harness.fails_without_writing("resume an ephemeral runner", || harness.store.resume(runner.id, at(40)));
    assert_conflict(&error, "ephemeral_runner");
    harness.enqueue("job-2", &["linux"], at(50));
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(60));
    assert!(offers(&polled).iter().all(|(_, offered, _, _)| *offered == job_id), "no second job: {polled:?}");
}

pub fn a_matching_job_behind_many_unmatched_ones_is_found(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    // More non-matching jobs than one dispatch page, then one the runner can take.
    for index in 0..70 {
        harness.enqueue(&format!("gpu-{index}"), &["gpu"], at(1 + index));
    }
    let wanted = harness.enqueue("linux-job", &["linux"], at(100));
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(200));
    let offered: Vec<_> = offers(&polled).into_iter().map(|(_, job_id, _, _)| job_id).collect();
    assert_eq!(offered, vec![wanted.id], "the matching job deep in the queue is offered");
}
