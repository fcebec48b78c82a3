//! Webhooks: nothing lost while the receiver is down, every signature verifiable by a verifier
//! written independently of the server's signing code, each message processed once, replays
//! refused by the reference verifier, secrets rotated without a gap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use baton_api as api;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::common::{PATIENCE, TestServer, eventually, fast_timeouts};

/// 32 known bytes, so the test can verify without asking the server.
pub(crate) const SECRET: &str = "whsec_dGhpcyBpcyB0aGUgdGVzdCdzIG93biBzZWNyZXQhIQ==";

/// What the receiver saw.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// webhook-id -> (event header, body, timestamp, signature header), first delivery only.
    pub(crate) processed: BTreeMap<String, (String, Bytes, String, String)>,
    /// Processed ids in the order they arrived.
    pub(crate) arrival: Vec<String>,
    /// Deliveries of an id already processed (recognised and not processed again).
    pub(crate) duplicates: usize,
    /// Deliveries whose signature did not verify.
    pub(crate) bad_signatures: usize,
}

/// The test's own verifier: HMAC-SHA256 over `id.timestamp.body` with the base64-decoded
/// secret, compared with each `v1,` signature of the header.
fn independently_verified(secret: &str, id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    let engine = base64::engine::general_purpose::STANDARD;
    let Some(key) = secret.strip_prefix("whsec_").and_then(|encoded| engine.decode(encoded).ok()) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = engine.encode(mac.finalize().into_bytes());
    signatures.split(' ').any(|signature| signature == format!("v1,{expected}"))
}

pub(crate) async fn start_receiver(listener: tokio::net::TcpListener, secret: &'static str) -> Arc<Mutex<Received>> {
    let received: Arc<Mutex<Received>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |headers: HeaderMap, body: Bytes| {
                let received = received.clone();
                async move {
                    let header =
                        |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
                    let (id, timestamp, signatures) =
                        (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
                    let mut seen = received.lock().expect("lock");
                    if !independently_verified(secret, &id, &timestamp, &signatures, &body) {
                        seen.bad_signatures += 1;
                        return StatusCode::UNAUTHORIZED;
                    }
                    match seen.processed.entry(id.clone()) {
                        std::collections::btree_map::Entry::Occupied(_) => seen.duplicates += 1,
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert((header("x-baton-event"), body, timestamp, signatures));
                            seen.arrival.push(id);
                        }
                    }
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    received
}

pub(crate) async fn cancelled_jobs(server: &TestServer, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for index in 0..count {
        let job = server.enqueue(&format!("hooked-{index}"), &["nowhere"]).await;
        server.admin.cancel_job(job.id).await.expect("cancel");
        ids.push(job.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30_s_gets_every_event_once_signed() {
    let server = TestServer::start(fast_timeouts()).await;
    // Reserve a port, then leave it closed: the receiver is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let created = server
        .admin
        .create_webhook(&api::CreateWebhookRequest {
            url: format!("http://127.0.0.1:{port}/hook"),
            events: vec!["workflow_job".into()],
            secret: Some(SECRET.into()),
            ordered: false,
        })
        .await
        .expect("create the webhook");
    assert_eq!(created.secret, SECRET);
    let jobs = cancelled_jobs(&server, 5).await;

    // Down for 30 s: deliveries fail and wait for their retries; nothing is dropped.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let log = server.admin.webhook_deliveries(created.webhook.id, 0, 100).await.expect("deliveries");
    assert_eq!(log.deliveries.len(), 10, "queued + completed for each job: {log:?}");
    assert!(log.deliveries.iter().all(|delivery| delivery.status == "pending" && delivery.attempts >= 1), "{log:?}");
    assert!(log.deliveries.iter().all(|delivery| delivery.error.as_deref().is_some_and(|error| !error.is_empty())));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the reserved port is free again");
    let received = start_receiver(listener, SECRET).await;
    eventually("every message delivered", || async {
        (received.lock().expect("lock").processed.len() == 10).then_some(())
    })
    .await;
    let log = eventually("the delivery log shows them delivered", || async {
        let log = server.admin.webhook_deliveries(created.webhook.id, 0, 100).await.expect("deliveries");
        log.deliveries.iter().all(|delivery| delivery.status == "delivered").then_some(log)
    })
    .await;
    assert!(log.deliveries.iter().all(|delivery| delivery.response_code == Some(204)));

    let seen: Vec<(String, Bytes)> = {
        let received = received.lock().expect("lock");
        assert_eq!(received.bad_signatures, 0);
        received.processed.values().map(|(event, body, ..)| (event.clone(), body.clone())).collect()
    };
    let mut completed = Vec::new();
    for (event, body) in &seen {
        assert_eq!(event, "workflow_job");
        let body: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
        if body["action"] == "completed" {
            assert_eq!(body["workflow_job"]["conclusion"], "cancelled");
            completed.push(body["workflow_job"]["id"].as_i64().expect("id"));
        }
    }
    completed.sort_unstable();
    assert_eq!(completed, jobs);

    // A redelivery keeps its webhook-id: the receiver recognises it and does not process it twice.
    let first = &log.deliveries[0];
    server.admin.redeliver(first.id).await.expect("redeliver");
    eventually("the redelivery arrives", || async { (received.lock().expect("lock").duplicates == 1).then_some(()) })
        .await;
    assert_eq!(received.lock().expect("lock").processed.len(), 10, "each webhook-id processed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_refused_and_rotation_signs_with_both_secrets() {
    let server = TestServer::start(fast_timeouts()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let created = server
        .admin
        .create_webhook(&api::CreateWebhookRequest {
            url: format!("http://127.0.0.1:{port}/hook"),
            events: vec![],
            secret: Some(SECRET.into()),
            ordered: true,
        })
        .await
        .expect("create the webhook");
    let received = start_receiver(listener, SECRET).await;
    cancelled_jobs(&server, 1).await;
    let (id, body, timestamp, signatures) = eventually("a delivery", || async {
        received.lock().expect("lock").processed.iter().next().map(|(id, (_, body, timestamp, signatures))| {
            (id.clone(), body.clone(), timestamp.clone(), signatures.clone())
        })
    })
    .await;
    let sent: i64 = timestamp.parse().expect("seconds");
    let tolerance = Duration::from_secs(300);
    let verify = |now: i64| baton_client::webhook::verify(SECRET, &id, &timestamp, &signatures, &body, now, tolerance);
    assert_eq!(verify(sent + 10), Ok(()));
    assert!(matches!(verify(sent + 3600), Err(baton_client::webhook::VerifyError::OutsideTolerance(3600))));
    let tampered = baton_client::webhook::verify(SECRET, &id, &timestamp, &signatures, b"{}", sent, tolerance);
    assert_eq!(tampered, Err(baton_client::webhook::VerifyError::NoMatch));

    // Rotation: the next deliveries carry a signature for the new and for the old secret.
    let rotated = server
        .admin
        .rotate_webhook(created.webhook.id, &api::RotateWebhookRequest { overlap_secs: Some(3600) })
        .await
        .expect("rotate");
    assert_eq!(rotated.webhook.active_secrets, 2);
    let fresh = cancelled_jobs(&server, 1).await[0];
    let (id, body, timestamp, signatures) = eventually("a delivery about the job made after the rotation", || async {
        let seen = received.lock().expect("lock");
        seen.arrival.iter().rev().find_map(|id| {
            let (_, body, timestamp, signatures) = seen.processed[id].clone();
            let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
            (value["workflow_job"]["id"] == fresh).then(|| (id.clone(), body, timestamp, signatures))
        })
    })
    .await;
    let now: i64 = timestamp.parse().expect("seconds");
    for secret in [SECRET, rotated.secret.as_str()] {
        assert_eq!(baton_client::webhook::verify(secret, &id, &timestamp, &signatures, &body, now, tolerance), Ok(()));
    }

    // The fleet in /metrics: queue depth by labels, runners by state, dispatch and job
    // durations, webhook deliveries.
    server.enqueue("waiting", &["gpu", "linux"]).await;
    let _runner = server.runner("metered", &["x"], 1, false).await;
    let text = server.admin.metrics_text().await.expect("metrics");
    for expected in [
        "baton_queue_depth{labels=\"gpu,linux\"} 1",
        "baton_runners{state=\"active\"} 1",
        "baton_job_duration_seconds_count 2",
        "baton_webhook_delivery_attempts_total{outcome=\"delivered\"}",
        "baton_dispatch_latency_seconds_count",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let _ = PATIENCE;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_need_an_explicit_allowance_and_bad_input_is_refused() {
    let server = TestServer::start(fast_timeouts()).await;
    // 127.0.0.2 is loopback but not in the test server's allow list: never delivered.
    let created = server
        .admin
        .create_webhook(&api::CreateWebhookRequest {
            url: "http://127.0.0.2:9/hook".into(),
            events: vec![],
            secret: None,
            ordered: false,
        })
        .await
        .expect("create");
    assert!(created.secret.starts_with("whsec_"));
    cancelled_jobs(&server, 1).await;
    let delivery = eventually("an attempt", || async {
        let log = server.admin.webhook_deliveries(created.webhook.id, 0, 10).await.expect("log");
        log.deliveries.into_iter().find(|delivery| delivery.attempts >= 1)
    })
    .await;
    let error = delivery.error.unwrap_or_default();
    assert!(error.contains("loopback, link-local or metadata"), "{error}");
    assert_eq!(delivery.response_code, None);

    for (request, expected) in [
        (api::CreateWebhookRequest { url: "ftp://x".into(), ..Default::default() }, "url:"),
        (
            api::CreateWebhookRequest {
                url: "https://x.example".into(),
                events: vec!["push".into()],
                ..Default::default()
            },
            "unknown event",
        ),
        (
            api::CreateWebhookRequest {
                url: "https://x.example".into(),
                secret: Some("hunter2".into()),
                ..Default::default()
            },
            "secret:",
        ),
    ] {
        let error = server.admin.create_webhook(&request).await.expect_err("refused");
        assert_eq!(error.status().map(|status| status.as_u16()), Some(422), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
    assert_eq!(server.admin.list_webhooks().await.expect("list").webhooks.len(), 1);
}
