//! The expiry sweeps for offers and leases, and what they must never do.
//!
//! An offer not accepted within the accept timeout is revoked and the attempt queued again (its
//! next offer takes a new epoch, so a late accept is stale); a running attempt whose lease passed
//! is lost and the job gets a new attempt or fails as `infrastructure_failure`; a completed
//! attempt is never touched by any sweep (F1).

use std::collections::BTreeMap;

use baton_core::{
    AttemptNo, AttemptResult, AttemptState, EventKind, JobConclusion, JobState, LeaseEpoch, Message, MessageId,
};
use baton_store::Sweep;

use crate::harness::{Harness, T0, assert_conflict, assert_stale, at, data, offers};

pub fn an_unaccepted_offer_is_reoffered_with_a_new_epoch(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), T0);
    let (_, job_id, attempt, first_epoch) = offers(&polled)[0];
    assert_eq!(harness.attempt(job_id, attempt).accept_deadline, Some(at(500)));

    let at_deadline = harness.succeeds_without_writing("expire offers at the accept deadline itself", || {
        harness.store.expire_offers(at(500))
    });
    assert_eq!(at_deadline, Sweep { expired: 0 });

    let before = harness.last_seq();
    let sweep = harness.store.expire_offers(at(501)).expect("sweep");
    assert_eq!(sweep, Sweep { expired: 1 });

    // The runner's session is live and the revoked offer gave its slot back, so the same
    // transaction offers the attempt again, under a new epoch.
    let events = harness.events_after(before);
    assert_eq!(
        events.iter().map(|event| event.kind).collect::<Vec<_>>(),
        vec![EventKind::OfferExpired, EventKind::JobOffered]
    );
    assert_eq!(data(&events[0])["epoch"], 1);
    assert_eq!(events[0].runner_id, Some(runner.id));
    assert_eq!(data(&events[1])["epoch"], 2);
    let view = harness.job_view(job.id);
    assert_eq!(view.attempts.len(), 1, "an offer timeout is not a new attempt");
    assert_eq!(view.attempts[0].state, AttemptState::Offered);
    assert_eq!(view.attempts[0].epoch, Some(LeaseEpoch(2)));
    assert_eq!(view.attempts[0].accept_deadline, Some(at(1_001)));
    assert_eq!(view.job.epoch, LeaseEpoch(2));

    // Only the live offer is delivered; the revoked one is dropped.
    let polled = harness.poll(&runner, &session, 0, MessageId(0), at(510));
    let delivered: Vec<_> = polled.messages.iter().map(|(_, message)| *message).collect();
    assert_eq!(delivered, vec![Message::JobOffer { job_id, attempt, epoch: LeaseEpoch(2) }]);

    let error = harness.fails_without_writing("accept the revoked offer late", || {
        harness.store.accept(runner.id, job_id, attempt, first_epoch, at(520))
    });
    assert_stale(&error, job_id, attempt, first_epoch);
    harness.store.accept(runner.id, job_id, attempt, LeaseEpoch(2), at(530)).expect("the new offer is accepted");
    harness.check_invariants();
}

pub fn an_expired_offer_with_no_live_runner_waits_queued(harness: &mut Harness) {
    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    let job = harness.enqueue("job-1", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), T0);
    let (_, job_id, attempt, first_epoch) = offers(&polled)[0];

    // By now the runner's session (3 s) has run out too, so nobody can take the job.
    let before = harness.last_seq();
    assert_eq!(harness.store.expire_offers(at(5_000)).expect("sweep"), Sweep { expired: 1 });
    assert_eq!(harness.kinds_after(before), vec![EventKind::OfferExpired]);
    let view = harness.job_view(job.id);
    assert_eq!(view.job.state, JobState::Queued);
    let queued = &view.attempts[0];
    assert_eq!(queued.state, AttemptState::Queued);
    assert_eq!(queued.runner_id, None);
    assert_eq!(queued.epoch, None, "the revoked offer's epoch is gone with it");
    assert_eq!(queued.accept_deadline, None);
    assert!(!harness.runner_view(runner.id).busy());
    harness.check_invariants();

    let error = harness.fails_without_writing("accept the revoked offer late", || {
        harness.store.accept(runner.id, job_id, attempt, first_epoch, at(5_010))
    });
    assert_stale(&error, job_id, attempt, first_epoch);

    let (other, other_session) = harness.connect("runner-2", &["linux"], 1, at(5_020));
    let polled = harness.poll(&other, &other_session, 1, MessageId(0), at(5_030));
    assert_eq!(
        offers(&polled).iter().map(|offer| (offer.1, offer.3)).collect::<Vec<_>>(),
        vec![(job_id, LeaseEpoch(2))]
    );
    harness.check_invariants();
}

pub fn an_expired_lease_loses_the_attempt_and_requeues_the_job(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let (runner_id, job_id, first, epoch) = (running.runner.id, running.job.id, running.attempt, running.epoch);
    assert_eq!(running.lease.deadline, at(1_100));

    let at_deadline = harness.succeeds_without_writing("expire leases at the lease deadline itself", || {
        harness.store.expire_leases(at(1_100))
    });
    assert_eq!(at_deadline, Sweep { expired: 0 });

    let before = harness.last_seq();
    assert_eq!(harness.store.expire_leases(at(1_101)).expect("sweep"), Sweep { expired: 1 });

    let events = harness.events_after(before);
    assert_eq!(
        events.iter().map(|event| event.kind).collect::<Vec<_>>(),
        vec![EventKind::AttemptLost, EventKind::JobRequeued]
    );
    assert_eq!(events[0].attempt, Some(first));
    assert_eq!(events[0].runner_id, Some(runner_id));
    assert_eq!(events[1].attempt, Some(AttemptNo(2)));
    let view = harness.job_view(job_id);
    assert_eq!(view.job.state, JobState::Queued);
    assert_eq!(view.job.attempt, AttemptNo(2));
    assert_eq!(view.job.conclusion, None);
    assert_eq!(view.attempts.len(), 2);
    let lost = &view.attempts[0];
    assert_eq!(lost.state, AttemptState::Lost);
    assert_eq!(lost.ended_at, Some(at(1_101)));
    assert!(lost.reason.as_deref().is_some_and(|reason| reason.contains("lease")), "{lost:?}");
    assert_eq!(view.attempts[1].state, AttemptState::Queued);
    assert_eq!(view.attempts[1].number, AttemptNo(2));
    assert!(!harness.runner_view(runner_id).busy());
    harness.check_invariants();

    // The runner that lost the lease can no longer act on the attempt.
    let error = harness.fails_without_writing("renew a lost lease", || {
        harness.store.renew(runner_id, job_id, first, epoch, at(1_200))
    });
    assert_stale(&error, job_id, first, epoch);
    let error = harness.fails_without_writing("complete a lost attempt", || {
        harness.store.complete(runner_id, job_id, first, epoch, AttemptResult::Success, &BTreeMap::new(), "", at(1_200))
    });
    assert_stale(&error, job_id, first, epoch);

    // The second attempt is offered under the next epoch.
    let polled = harness.poll(&running.runner, &running.session, 1, MessageId(0), at(1_300));
    assert_eq!(
        offers(&polled).iter().map(|offer| (offer.2, offer.3)).collect::<Vec<_>>(),
        vec![(AttemptNo(2), LeaseEpoch(2))]
    );
}

pub fn a_job_that_loses_every_attempt_fails_as_infrastructure_failure(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 2, T0);
    let (runner, session, job_id) = (running.runner.clone(), running.session.clone(), running.job.id);
    harness.store.expire_leases(at(1_101)).expect("first attempt lost");

    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(1_200));
    let (_, _, second, epoch) = offers(&polled)[0];
    assert_eq!(second, AttemptNo(2));
    harness.store.accept(runner.id, job_id, second, epoch, at(1_300)).expect("accept the second attempt");
    let before = harness.last_seq();
    assert_eq!(harness.store.expire_leases(at(2_301)).expect("sweep"), Sweep { expired: 1 });

    let events = harness.events_after(before);
    assert_eq!(
        events.iter().map(|event| event.kind).collect::<Vec<_>>(),
        vec![EventKind::AttemptLost, EventKind::JobCompleted]
    );
    assert_eq!(data(&events[1])["conclusion"], "infrastructure_failure");
    let view = harness.job_view(job_id);
    assert_eq!(view.job.state, JobState::Completed);
    assert_eq!(view.job.conclusion, Some(JobConclusion::InfrastructureFailure));
    assert_eq!(view.job.completed_at, Some(at(2_301)));
    let reason = view.job.reason.clone().expect("an infrastructure failure says why");
    assert!(reason.contains("infrastructure"), "{reason}");
    assert_eq!(view.attempts.len(), 2, "no third attempt beyond max_attempts");
    assert!(view.attempts.iter().all(|attempt| attempt.state == AttemptState::Lost));
    assert_eq!(harness.count_job_events(EventKind::JobCompleted, job_id), 1);
    assert_eq!(harness.count_job_events(EventKind::AttemptLost, job_id), 2);
    assert_eq!(harness.count_job_events(EventKind::JobRequeued, job_id), 1);

    let later = harness.succeeds_without_writing("sweep again", || harness.store.expire_leases(at(9_000)));
    assert_eq!(later, Sweep { expired: 0 });
    let error = harness.fails_without_writing("cancel a failed job", || harness.store.cancel_job(job_id, at(9_000)));
    assert_conflict(&error, "job_completed");
    harness.check_invariants();
}

pub fn completed_attempts_are_never_touched_by_the_sweeps(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let (runner_id, job_id) = (running.runner.id, running.job.id);
    harness
        .store
        .complete(
            runner_id,
            job_id,
            running.attempt,
            running.epoch,
            AttemptResult::Success,
            &BTreeMap::new(),
            "",
            at(200),
        )
        .expect("complete");
    let job_before = harness.job_view(job_id);

    // Far past every deadline the attempt ever had, and past the runner's session.
    let far = at(1_000_000);
    assert_eq!(harness.store.expire_leases(far).expect("lease sweep"), Sweep { expired: 0 });
    assert_eq!(harness.store.expire_offers(far).expect("offer sweep"), Sweep { expired: 0 });
    assert_eq!(harness.store.expire_sessions(far).expect("session sweep"), Sweep { expired: 1 });
    assert_eq!(harness.store.mark_alive(far, std::time::Duration::from_secs(1)).expect("mark alive"), None);

    assert_eq!(harness.job_view(job_id), job_before, "the finished job is exactly as it was");
    assert_eq!(harness.count_job_events(EventKind::AttemptLost, job_id), 0);
    assert_eq!(harness.count_job_events(EventKind::JobCompleted, job_id), 1);
    let completed = harness.events().into_iter().find(|event| event.kind == EventKind::JobCompleted).expect("event");
    assert_eq!(data(&completed)["conclusion"], "success");
    harness.check_invariants();
}
