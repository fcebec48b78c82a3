//! F1 (seeds/000): a runner finishes its job, drops its long-poll at once and never says
//! goodbye. The finished job must stay finished: the runner going away is a runner fault that
//! never changes a completed attempt.

use std::time::Duration;

use baton_api as api;

use crate::common::{TestServer, count_kind, eventually, fast_timeouts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_attempt_survives_a_dropped_poll_and_no_goodbye() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let mut runner = server.runner("ephemeral-1", &["linux"], 1, true).await;
    let job = server.enqueue("build", &["linux"]).await;

    let offer = runner.next_offer().await;
    assert_eq!(offer.job_id, job.id);
    runner.accept(&offer).await.expect("accept");
    let completed = runner.complete(&offer, api::AttemptResult::Success).await.expect("complete");
    assert_eq!(completed.conclusion.as_deref(), Some("success"));

    // The runner starts its next long-poll and drops it mid-flight, like a process that exits
    // right after its job; it never says goodbye.
    let dropped = runner.client.poll(runner.session_id, Duration::from_secs(2), 0, runner.ack);
    let cut = tokio::time::timeout(Duration::from_millis(50), dropped).await;
    assert!(cut.is_err(), "the long-poll was cut before it returned");

    // The session expires: the runner is marked offline (an event of its own) ...
    let runner_id = runner.id;
    eventually("the runner's session expires", || {
        let server = &server;
        async move {
            let events = server.all_events().await;
            events
                .iter()
                .any(|event| event.kind == "runner.offline" && event.runner_id == Some(runner_id))
                .then_some(())
        }
    })
    .await;
    let info = server.admin.get_runner(runner_id).await.expect("get runner");
    assert!(!info.online, "no live session");
    assert!(!info.busy, "the finished job does not keep it busy");

    // ... and the job it finished is untouched.
    let job = server.admin.get_job(job.id).await.expect("get job");
    assert_eq!(job.state, "completed");
    assert_eq!(job.conclusion.as_deref(), Some("success"));
    assert_eq!(job.attempts.len(), 1, "no second attempt was queued");
    assert_eq!(job.attempts[0].state, "completed");
    assert_eq!(job.attempts[0].result, Some(api::AttemptResult::Success));

    let events = server.all_events().await;
    let completions: Vec<_> =
        events.iter().filter(|event| event.kind == "job.completed" && event.job_id == Some(job.id)).collect();
    assert_eq!(completions.len(), 1, "exactly one job.completed event: {completions:?}");
    assert_eq!(count_kind(&events, "job.attempt_lost"), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_after_last_event_id() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let _runner = server.runner("resumer", &["linux"], 1, false).await;
    for index in 0..3 {
        server.enqueue(&format!("job-{index}"), &["nothing-matches"]).await;
    }
    let events = server.all_events().await;
    assert!(events.len() >= 4, "registration, session and three queued jobs: {events:?}");
    for pair in events.windows(2) {
        assert!(pair[0].seq < pair[1].seq, "sequences increase");
    }
    let resume_after = events[1].seq;
    let mut stream = server.admin.events(resume_after).await.expect("reopen the stream");
    let next = stream.next().await.expect("an event").expect("readable");
    assert_eq!(next.seq, events[2].seq, "the stream resumes right after the given sequence");
    server.stop().await;
}
