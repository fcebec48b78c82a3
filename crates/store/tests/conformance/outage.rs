//! Control-plane outages: `mark_alive` notices a gap of more than two ticks and moves every live
//! deadline (offers, leases, open sessions) forward by it, so runners are not all expired the
//! moment the server returns (DESIGN.md section 2).

use std::time::Duration;

use baton_core::{AttemptNo, AttemptState, EventKind, MessageId, SessionState};
use baton_store::Sweep;

use crate::harness::{Harness, T0, at, data, offers};

const TICK: Duration = Duration::from_millis(100);

pub fn the_first_mark_alive_and_normal_ticks_report_no_outage(harness: &mut Harness) {
    let before = harness.last_seq();
    assert_eq!(harness.store.mark_alive(T0, TICK).expect("first mark"), None, "nothing to compare with yet");
    assert_eq!(harness.store.mark_alive(at(100), TICK).expect("one tick"), None);
    // Exactly two ticks is still scheduling jitter.
    assert_eq!(harness.store.mark_alive(at(300), TICK).expect("two ticks"), None);
    // A clock that went backwards is no outage.
    assert_eq!(harness.store.mark_alive(at(50), TICK).expect("backwards"), None);
    assert_eq!(harness.last_seq(), before, "no outage, no event");
}

/// Two replicas tick on clocks three seconds apart: neither sees the other's ticks as an outage.
pub fn replicas_whose_clocks_differ_report_no_outage(harness: &mut Harness) {
    let before = harness.last_seq();
    for tick in 0..5u64 {
        let ahead = at(3000 + tick * 100);
        let behind = at(tick * 100 + 50);
        assert_eq!(harness.store.mark_alive(ahead, TICK).expect("the replica ahead ticks"), None, "tick {tick}");
        assert_eq!(harness.store.mark_alive(behind, TICK).expect("the replica behind ticks"), None, "tick {tick}");
    }
    assert_eq!(harness.last_seq(), before, "no outage, no event");
    // When both stop, the outage is measured from the latest tick either recorded.
    assert_eq!(harness.store.mark_alive(at(3400 + 1000), TICK).expect("back"), Some(Duration::from_millis(1000)));
}

pub fn an_outage_extends_every_live_deadline_by_its_length(harness: &mut Harness) {
    assert_eq!(harness.store.mark_alive(T0, TICK).expect("first mark"), None);
    let (runner, session) = harness.connect("runner-1", &["linux"], 2, T0);
    let running_job = harness.enqueue("job-running", &["linux"], T0);
    let offered_job = harness.enqueue("job-offered", &["linux"], T0);
    let polled = harness.poll(&runner, &session, 2, MessageId(0), at(50));
    assert_eq!(offers(&polled).len(), 2);
    let epoch = harness.attempt(running_job.id, AttemptNo(1)).epoch.expect("offered");
    harness.store.accept(runner.id, running_job.id, AttemptNo(1), epoch, at(100)).expect("accept");
    // A second runner that said goodbye: its closed session must not be extended.
    let (leaver, leaver_session) = harness.connect("runner-2", &["linux"], 1, T0);
    harness.store.goodbye(leaver.id, leaver_session.id, at(60)).expect("goodbye");
    assert_eq!(harness.store.mark_alive(at(150), TICK).expect("normal tick"), None);

    let lease_before = harness.attempt(running_job.id, AttemptNo(1)).lease_deadline.expect("lease");
    let accept_before = harness.attempt(offered_job.id, AttemptNo(1)).accept_deadline.expect("deadline");
    let session_before = harness.runner_view(runner.id).session.expect("open").expires_at;
    assert_eq!((lease_before, accept_before, session_before), (at(1_100), at(550), at(3_050)));
    let closed_session = |harness: &Harness| {
        harness.raw_read(|tx| tx.session_get(leaver_session.id)).expect("the closed session is stored")
    };
    let closed_before = closed_session(harness);
    assert_eq!(closed_before.state, SessionState::Closed);
    let before = harness.last_seq();

    // The server was away for ten seconds.
    let outage = harness.store.mark_alive(at(10_150), TICK).expect("after the outage");

    assert_eq!(outage, Some(Duration::from_secs(10)));
    assert_eq!(harness.attempt(running_job.id, AttemptNo(1)).lease_deadline, Some(at(11_100)));
    assert_eq!(harness.attempt(offered_job.id, AttemptNo(1)).accept_deadline, Some(at(10_550)));
    assert_eq!(harness.runner_view(runner.id).session.expect("open").expires_at, at(13_050));
    assert_eq!(closed_session(harness), closed_before, "a closed session is not extended");
    let events = harness.events_after(before);
    assert_eq!(events.iter().map(|event| event.kind).collect::<Vec<_>>(), vec![EventKind::ServerOutage]);
    assert_eq!(data(&events[0])["outage_ms"], 10_000);
    assert_eq!(events[0].at, at(10_150));

    // Nothing expires now that would have expired had the deadlines stayed put.
    assert_eq!(harness.store.expire_leases(at(10_200)).expect("lease sweep"), Sweep { expired: 0 });
    assert_eq!(harness.store.expire_offers(at(10_200)).expect("offer sweep"), Sweep { expired: 0 });
    assert_eq!(harness.store.expire_sessions(at(10_200)).expect("session sweep"), Sweep { expired: 0 });
    assert_eq!(harness.attempt(running_job.id, AttemptNo(1)).state, AttemptState::Running);
    assert_eq!(harness.attempt(offered_job.id, AttemptNo(1)).state, AttemptState::Offered);
    assert_eq!(harness.store.mark_alive(at(10_250), TICK).expect("normal tick"), None);
    harness.check_invariants();
}
