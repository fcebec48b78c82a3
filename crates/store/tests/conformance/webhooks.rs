//! Webhook deliveries: claimed before they are sent, so that dispatchers on several server
//! replicas never send one twice.

use std::time::Duration;

use baton_store::webhooks::{AttemptOutcome, NewWebhook};

use crate::harness::{Harness, T0, at};

const SECRET: &str = "whsec_dGhpcyBpcyB0aGUgdGVzdCdzIG93biBzZWNyZXQhIQ==";

fn webhook(harness: &Harness, ordered: bool) -> i64 {
    let new = NewWebhook {
        url: "https://hooks.example.com/baton".into(),
        events: vec!["workflow_job".into()],
        secret: SECRET.into(),
        ordered,
    };
    harness.store.add_webhook(&new, T0).expect("add a webhook").id
}

/// Three jobs queued: three pending deliveries (`workflow_job` queued).
fn three_deliveries(harness: &Harness, webhook_id: i64) {
    for name in ["a", "b", "c"] {
        harness.enqueue(name, &["linux"], T0);
    }
    harness.store.materialize_deliveries(webhook_id, T0).expect("materialize");
}

pub fn a_claimed_delivery_is_not_due_elsewhere_until_its_hold_ends(harness: &mut Harness) {
    let webhook_id = webhook(harness, false);
    three_deliveries(harness, webhook_id);
    let hold = Duration::from_millis(1_000);

    let (_, first) = harness.store.claim_due_deliveries(webhook_id, at(10), 2, hold).expect("claim");
    assert_eq!(first.len(), 2, "at most the limit");
    // A second dispatcher at the same instant gets only what the first left.
    let (_, second) = harness.store.claim_due_deliveries(webhook_id, at(10), 32, hold).expect("claim");
    assert_eq!(second.len(), 1);
    assert!(second.iter().all(|delivery| first.iter().all(|other| other.id != delivery.id)));
    let (_, third) = harness.store.claim_due_deliveries(webhook_id, at(20), 32, hold).expect("claim");
    assert!(third.is_empty(), "every delivery is claimed: {third:?}");
    // The batch is sent one by one: each place in it holds one more attempt's time.
    let (_, due, next) = harness.store.due_deliveries(webhook_id, at(20), 0).expect("read");
    assert!(due.is_empty());
    assert_eq!(next, Some(at(1_010)));
    let held: Vec<_> = first.iter().map(|delivery| harness.store.delivery(delivery.id).expect("read")).collect();
    assert_eq!(held[0].next_attempt_at, at(1_010));
    assert_eq!(held[1].next_attempt_at, at(2_010));
    assert!(held.iter().all(|delivery| delivery.status == "pending" && delivery.attempts == 0));

    // The first dispatcher delivers its first one; its second is never recorded (the
    // dispatcher died): once its hold ends it is due again, for anyone.
    let delivered =
        AttemptOutcome { delivered: true, response_code: Some(204), error: None, latency_ms: 3, retry_at: None };
    harness.store.record_delivery_attempt(first[0].id, &delivered, at(30)).expect("record");
    harness.store.record_delivery_attempt(second[0].id, &delivered, at(30)).expect("record");
    let (_, early) = harness.store.claim_due_deliveries(webhook_id, at(2_009), 32, hold).expect("claim");
    assert!(early.is_empty(), "{early:?}");
    let (_, again) = harness.store.claim_due_deliveries(webhook_id, at(2_010), 32, hold).expect("claim");
    assert_eq!(again.iter().map(|delivery| delivery.id).collect::<Vec<_>>(), [first[1].id]);
}

pub fn an_ordered_endpoints_claimed_head_holds_back_the_rest(harness: &mut Harness) {
    let webhook_id = webhook(harness, true);
    three_deliveries(harness, webhook_id);
    let hold = Duration::from_millis(1_000);

    let (_, head) = harness.store.claim_due_deliveries(webhook_id, at(10), 32, hold).expect("claim");
    assert_eq!(head.len(), 1, "one at a time");
    let (_, other) = harness.store.claim_due_deliveries(webhook_id, at(10), 32, hold).expect("claim");
    assert!(other.is_empty(), "the rest wait behind the claimed head: {other:?}");

    // A failed attempt sets the real retry time; the head still holds back the rest.
    let failed = AttemptOutcome {
        delivered: false,
        response_code: Some(503),
        error: Some("the receiver answered 503".into()),
        latency_ms: 3,
        retry_at: Some(at(500)),
    };
    harness.store.record_delivery_attempt(head[0].id, &failed, at(20)).expect("record");
    let (_, before) = harness.store.claim_due_deliveries(webhook_id, at(499), 32, hold).expect("claim");
    assert!(before.is_empty());
    let (_, retried) = harness.store.claim_due_deliveries(webhook_id, at(500), 32, hold).expect("claim");
    assert_eq!(retried.iter().map(|delivery| delivery.id).collect::<Vec<_>>(), [head[0].id]);
    assert_eq!(retried[0].attempts, 1);
}
