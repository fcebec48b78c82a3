//! Fencing: a runner that lost its lease or its offer can never change state again, and a
//! runner can never act on another runner's job.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_api as api;

use crate::common::{TestRunner, TestServer, eventually, fast_timeouts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_lease_calls_get_409_and_change_nothing() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let mut old = server.runner("old", &["linux"], 1, false).await;
    let job = server.enqueue("stale", &["linux"]).await;
    let first = old.next_offer().await;
    old.accept(&first).await.expect("accept");

    // The old runner stops renewing; its lease expires and the job is queued again.
    let admin = server.admin.clone();
    let job_id = job.id;
    eventually("attempt 1 is lost and attempt 2 queued", || {
        let admin = admin.clone();
        async move {
            let job = admin.get_job(job_id).await.expect("get job");
            (job.attempts.len() == 2 && job.attempts[0].state == "lost").then_some(())
        }
    })
    .await;
    let mut new = server.runner("new", &["linux"], 1, false).await;
    let second = new.next_offer().await;
    assert_eq!((second.job_id, second.attempt), (job.id, 2));
    assert!(second.epoch > first.epoch, "the new offer has a newer epoch");
    new.accept(&second).await.expect("the new runner accepts");

    let before_job = server.admin.get_job(job.id).await.expect("get job");
    let before_events = server.all_events().await.len();

    let renew = old.client.renew(first.job_id, first.attempt, &TestRunner::fence(&first)).await;
    let log = old
        .client
        .upload_log(
            first.job_id,
            first.attempt,
            &api::LogUploadRequest { epoch: first.epoch, token: first.token.clone(), seq: 1, data: "late\n".into() },
        )
        .await;
    let complete = old.complete(&first, api::AttemptResult::Success).await;
    for (call, outcome) in [("renew", renew.err()), ("log", log.err()), ("complete", complete.err())] {
        let error = outcome.unwrap_or_else(|| panic!("stale {call} succeeded"));
        assert_eq!(error.status().map(|status| status.as_u16()), Some(409), "{call}: {error}");
        assert!(error.is_stale_lease(), "{call}: {error}");
    }

    let after_job = server.admin.get_job(job.id).await.expect("get job");
    assert_eq!(after_job.state, before_job.state);
    assert_eq!(after_job.attempts[0].state, "lost");
    assert_eq!(after_job.attempts[1].state, "running");
    assert!(server.admin.job_logs(job.id, 1, 0).await.expect("logs").chunks.is_empty());
    assert_eq!(server.all_events().await.len(), before_events, "stale calls appended no event");

    let metrics = server.admin.metrics_text().await.expect("metrics");
    let stale_line =
        metrics.lines().find(|line| line.starts_with("baton_stale_lease_rejections_total")).expect("stale counter");
    assert!(stale_line.ends_with(" 3"), "{stale_line}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_offer_is_reoffered_and_the_late_accept_starts_nothing() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let mut runner = server.runner("dropper", &["linux"], 1, false).await;
    let job = server.enqueue("dropped", &["linux"]).await;

    // The offer reaches the runner's poll, but the runner never sees it (the answer was lost
    // on the wire), so it never accepts.
    let lost_offer = runner.next_offer().await;
    assert_eq!(lost_offer.epoch, 1);

    // After the accept timeout the same job is offered again with a new epoch.
    let again = runner.next_offer().await;
    assert_eq!(again.job_id, job.id);
    assert_eq!(again.attempt, lost_offer.attempt);
    assert!(again.epoch > lost_offer.epoch, "re-offered with a newer epoch");
    let events = server.all_events().await;
    assert!(events.iter().any(|event| event.kind == "job.offer_expired" && event.job_id == Some(job.id)));

    // The late accept of the revoked offer is refused and starts nothing.
    let late = runner.accept(&lost_offer).await.expect_err("a late accept of a revoked offer");
    assert!(late.is_stale_lease(), "{late}");
    let view = server.admin.get_job(job.id).await.expect("get job");
    assert_eq!(view.state, "queued", "nothing started");
    assert_eq!(view.attempts[0].state, "offered");
    assert_eq!(view.attempts[0].epoch, Some(again.epoch));

    // The current offer works.
    runner.accept(&again).await.expect("accept the current offer");
    runner.complete(&again, api::AttemptResult::Success).await.expect("complete");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_cannot_touch_another_runners_job() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let mut owner = server.runner("owner", &["gpu"], 1, false).await;
    let intruder = server.runner("intruder", &["cpu"], 1, false).await;
    server.enqueue("private", &["gpu"]).await;
    let offer = owner.next_offer().await;

    // The intruder presents the owner's job token with its own credential.
    let stolen = intruder.accept(&offer).await.expect_err("accepting another runner's offer");
    assert_eq!(stolen.status().map(|status| status.as_u16()), Some(403), "{stolen}");

    // A forged token is unknown.
    let forged = api::FencedRequest { epoch: offer.epoch, token: "bat_job_0000".into() };
    let error = owner.client.accept(offer.job_id, offer.attempt, &forged).await.expect_err("a forged token");
    assert_eq!(error.status().map(|status| status.as_u16()), Some(401), "{error}");

    // Another runner's session is not the intruder's to poll or close.
    let error =
        intruder.client.poll(owner.session_id, Duration::ZERO, 1, 0).await.expect_err("poll of another session");
    assert_eq!(error.status().map(|status| status.as_u16()), Some(403), "{error}");
    let error = intruder.client.goodbye(owner.session_id).await.expect_err("goodbye of another session");
    assert_eq!(error.status().map(|status| status.as_u16()), Some(403), "{error}");

    // A runner credential is not an admin token, and the admin token is not a runner.
    let error = owner.client.list_jobs(0, 10).await.expect_err("runner on an operator endpoint");
    assert_eq!(error.status().map(|status| status.as_u16()), Some(403), "{error}");
    let error = server.admin.open_session().await.expect_err("admin opening a runner session");
    assert_eq!(error.status().map(|status| status.as_u16()), Some(403), "{error}");

    owner.accept(&offer).await.expect("the owner accepts");
    let done = owner
        .client
        .complete(
            offer.job_id,
            offer.attempt,
            &api::CompleteRequest {
                epoch: offer.epoch,
                token: offer.token.clone(),
                result: api::AttemptResult::Success,
                outputs: BTreeMap::from([("x".into(), "1".into())]),
                summary: Some("## done".into()),
            },
        )
        .await
        .expect("complete");
    assert_eq!(done.attempts[0].outputs.get("x").map(String::as_str), Some("1"));
    assert_eq!(done.attempts[0].summary.as_deref(), Some("## done"));
    server.stop().await;
}
