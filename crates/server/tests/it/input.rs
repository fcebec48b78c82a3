//! Bad input gets a clear 4xx and changes nothing (DESIGN §9, invariant 7).

use std::time::Duration;

use baton_api as api;

use crate::common::{TestServer, fast_timeouts};

fn status(error: &baton_client::Error) -> u16 {
    error.status().map(|status| status.as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jit_config_works_once() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let jit = server
        .admin
        .create_jit_config(&api::CreateJitConfigRequest {
            name: "jit-1".into(),
            labels: vec!["linux".into()],
            pool: None,
            capacity: 1,
            ephemeral: true,
            ttl_secs: None,
        })
        .await
        .expect("create a JIT config");
    assert_eq!(jit.runner.state, "registered");
    let first = server
        .anonymous()
        .register_jit(&api::RegisterJitRequest { jit_config: jit.jit_config.clone() })
        .await
        .expect("first use");
    assert_eq!(first.runner.id, jit.runner.id);
    let second = server
        .anonymous()
        .register_jit(&api::RegisterJitRequest { jit_config: jit.jit_config.clone() })
        .await
        .expect_err("second use");
    assert_eq!(status(&second), 401, "{second}");
    assert_eq!(second.code(), Some("unauthorized"));
    // The first credential still works; the second call started nothing.
    let runner = server.anonymous().with_token(first.credential);
    runner.open_session().await.expect("the registered runner opens a session");
    let runners = server.admin.list_runners(0, 100).await.expect("list");
    assert_eq!(runners.runners.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_registration_token_is_refused_with_a_hint() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let token = server
        .admin
        .create_registration_token(&api::CreateRegistrationTokenRequest { ttl_secs: Some(1), ..Default::default() })
        .await
        .expect("token");
    let expires_at: jiff::Timestamp = token.expires_at.parse().expect("RFC 3339 expiry");
    // Wait until the token's own expiry has passed: the condition under test is the passage
    // of time itself.
    let remaining = expires_at.duration_since(jiff::Timestamp::now());
    let remaining = Duration::try_from(remaining).unwrap_or(Duration::ZERO) + Duration::from_millis(50);
    tokio::time::sleep(remaining).await;
    let error = server
        .anonymous()
        .register(&api::RegisterRequest {
            token: token.token,
            name: "late".into(),
            labels: vec![],
            capacity: 1,
            ephemeral: false,
        })
        .await
        .expect_err("expired token");
    assert_eq!(status(&error), 401, "{error}");
    let baton_client::Error::Api { body, .. } = &error else { panic!("an API error: {error}") };
    assert!(body.message.contains("expired"), "{}", body.message);
    assert!(body.hint.as_deref().is_some_and(|hint| hint.contains("baton token create")), "{:?}", body.hint);
    assert!(server.admin.list_runners(0, 10).await.expect("list").runners.is_empty(), "nothing registered");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_bodies_are_refused() {
    let mut server = TestServer::start(fast_timeouts()).await;

    let huge = vec![b' '; baton_core::limits::REQUEST_BODY_BYTES_MAX + 1];
    let error = server.admin.post_raw("/api/v1/jobs", huge).await.expect_err("oversized body");
    assert_eq!(status(&error), 413, "{error}");
    assert_eq!(error.code(), Some("body_too_large"));

    let error = server
        .admin
        .post_raw("/api/v1/jobs", b"{\"name\": \"x\", \"steps\": 7}".to_vec())
        .await
        .expect_err("wrong type");
    assert_eq!(status(&error), 400, "{error}");
    assert_eq!(error.code(), Some("invalid_json"));
    assert!(error.to_string().contains("steps"), "the error names the field: {error}");

    let error = server.admin.post_raw("/api/v1/jobs", b"{\"name\": \"x\"}".to_vec()).await.expect_err("missing field");
    assert!(error.to_string().contains("steps"), "the error names the missing field: {error}");

    let error = server
        .admin
        .post_raw("/api/v1/jobs", b"{\"name\": \"x\", \"steps\": [], \"colour\": 1}".to_vec())
        .await
        .expect_err("unknown field");
    assert!(error.to_string().contains("colour"), "the error names the unknown field: {error}");

    let error = server.admin.post_raw("/api/v1/jobs", b"{not json".to_vec()).await.expect_err("not JSON");
    assert_eq!(status(&error), 400, "{error}");

    let mut spec = crate::common::job_spec("bad name!", &[]);
    let error = server.admin.enqueue_job(&spec).await.expect_err("invalid name");
    assert_eq!(status(&error), 422, "{error}");
    spec.name = "ok".into();
    spec.steps.clear();
    let error = server.admin.enqueue_job(&spec).await.expect_err("no steps");
    assert_eq!(status(&error), 422, "{error}");

    let error = server.anonymous().list_jobs(0, 10).await.expect_err("no credential");
    assert_eq!(status(&error), 401, "{error}");
    assert!(matches!(&error, baton_client::Error::Api { body, .. } if body.hint.is_some()), "401 carries a hint");

    let error = server.admin.with_token("bat_admin_wrong").list_jobs(0, 10).await.expect_err("wrong token");
    assert_eq!(status(&error), 401, "{error}");

    let error = server.admin.get_job(999).await.expect_err("unknown job");
    assert_eq!(status(&error), 404, "{error}");

    assert!(server.admin.list_jobs(0, 10).await.expect("list").jobs.is_empty(), "no bad request created a job");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wait_is_bounded_and_wakes_on_a_commit() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let runner = server.runner("waiter", &["linux"], 1, false).await;
    let error =
        runner.client.poll(runner.session_id, Duration::from_secs(3600), 1, 0).await.expect_err("a one-hour wait");
    assert_eq!(status(&error), 400, "{error}");

    // A poll waiting for work returns as soon as a job is enqueued, well before its wait ends.
    let client = runner.client.clone();
    let session_id = runner.session_id;
    let started = std::time::Instant::now();
    let waiting = tokio::spawn(async move { client.poll(session_id, Duration::from_secs(2), 1, 0).await });
    // Wait until the poll is parked on the server before enqueuing.
    let admin = server.admin.clone();
    crate::common::eventually("the long-poll is waiting", || {
        let admin = admin.clone();
        async move {
            let metrics = admin.metrics_text().await.expect("metrics");
            metrics.lines().any(|line| line == "baton_long_polls_waiting 1").then_some(())
        }
    })
    .await;
    server.enqueue("wake", &["linux"]).await;
    let messages = waiting.await.expect("poll task").expect("poll").messages;
    assert!(
        matches!(messages.first().map(|message| &message.body), Some(api::MessageBody::JobOffer(_))),
        "{messages:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "woken by the commit, not by the end of the wait");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_runners_credential_is_refused_at_once() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let mut runner = server.runner("short-lived", &["linux"], 1, false).await;
    // The credential has been used (and remembered) for a few calls.
    runner.poll(Duration::ZERO, 1).await;
    runner.poll(Duration::ZERO, 1).await;
    assert_eq!(server.admin.retire_runner(runner.id).await.expect("retire"), api::RetireResponse::Retired);
    assert_eq!(server.admin.remove_runner(runner.id).await.expect("remove").state, "gone");
    let error = runner.client.open_session().await.expect_err("a gone runner's credential");
    assert_eq!(status(&error), 401, "{error}");
    server.stop().await;
}
