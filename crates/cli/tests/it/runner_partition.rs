//! Partitions between a runner and the server, made with a TCP proxy that drops every
//! connection and refuses new ones.
//!
//! Shorter than the lease: the job completes and its log arrives whole, in order, once.
//! Longer than the lease: the runner kills its job before the server can expire the lease; the
//! next attempt runs on another runner; nothing the old runner does afterwards changes it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{Proxy, RunnerOptions, RunnerProcess, TestServer, eventually, processes_with_env, timeouts};

const LINES: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_shorter_than_the_lease_loses_nothing() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let proxy = Proxy::start(&server.url).await;
    let token = server.token().await;
    let _runner = RunnerProcess::start(
        &proxy.url,
        &token,
        server.dir.path(),
        RunnerOptions { name: "short", capacity: 1, ephemeral: false, extra: &[] },
    );
    let job =
        server.enqueue("chatty", &[&format!("for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.05; done")]).await;
    server.wait_job(job.id, "running", |job| job.state == "running").await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the partition itself: 1.5 s of a 6 s lease
    proxy.restore();
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("success"), "{done:?}");
    assert_eq!(done.attempts.len(), 1, "the lease held through the partition");
    let log = server.log_text(job.id, 1).await;
    let lines: Vec<&str> = log.lines().filter(|line| line.starts_with("line-")).collect();
    let expected: Vec<String> = (1..=LINES).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, expected, "every line once, in order");
    server.stop().await;
}

fn now_millis() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis()
}

/// Waits until no process carrying `marker` is left, and checks that this happened before the
/// server marked attempt 1 lost: the job stopped before its lease could be given to another.
async fn job_stops_before_its_lease_expires(server: &TestServer, job_id: i64, marker: &str, lease: Duration) {
    let started = Instant::now();
    let vanished_at = loop {
        if processes_with_env(marker).is_empty() {
            break now_millis();
        }
        assert!(started.elapsed() < lease * 3, "the job outlived its lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let lost = server
        .wait_job(job_id, "attempt 1 lost", |job| job.attempts.first().is_some_and(|attempt| attempt.state == "lost"))
        .await;
    let lost_at: jiff::Timestamp = lost.attempts[0].ended_at.as_deref().expect("ended").parse().expect("RFC 3339");
    let lost_at_ms = u128::try_from(lost_at.as_millisecond()).expect("after 1970");
    assert!(
        vanished_at <= lost_at_ms,
        "the job stopped ({vanished_at}) before the server expired its lease ({lost_at_ms})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_longer_than_the_lease_fences_the_runner() {
    let lease = Duration::from_secs(3);
    let mut server = TestServer::start(timeouts(lease)).await;
    let proxy = Proxy::start(&server.url).await;
    let token = server.token().await;
    let mut isolated = RunnerProcess::start(
        &proxy.url,
        &token,
        server.dir.path(),
        RunnerOptions { name: "isolated", capacity: 1, ephemeral: false, extra: &[] },
    );
    let marker = format!("BATON_TEST_MARKER=fence-{}", std::process::id());
    let mut spec = crate::common::spec("long", &["echo started; sleep 600"]);
    spec.env.insert("BATON_TEST_MARKER".into(), marker.trim_start_matches("BATON_TEST_MARKER=").into());
    spec.steps.push(crate::common::spec("x", &["echo second step"]).steps[0].clone());
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    server.wait_job(job.id, "running", |job| job.state == "running").await;
    eventually("the job's processes run", || {
        let found = !processes_with_env(&marker).is_empty();
        async move { found.then_some(()) }
    })
    .await;

    proxy.cut();
    // The runner must kill the job on its own, before the server re-offers it.
    job_stops_before_its_lease_expires(&server, job.id, &marker, lease).await;

    let _rescuer = server.start_runner("rescuer").await;
    // The second attempt would sleep forever too; cancel it once it runs elsewhere.
    let running = server
        .wait_job(job.id, "attempt 2 running", |job| {
            job.attempts.get(1).is_some_and(|attempt| attempt.state == "running")
        })
        .await;
    assert_ne!(running.attempts[1].runner_id, running.attempts[0].runner_id, "the next attempt runs elsewhere");

    // The partition heals; the isolated runner comes back and changes nothing.
    proxy.restore();
    server.admin.cancel_job(job.id).await.expect("cancel");
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.attempts[0].state, "lost");
    assert_eq!(done.attempts[1].state, "completed");
    assert_eq!(done.conclusion.as_deref(), Some("cancelled"));
    let log = server.log_text(job.id, 1).await;
    assert!(!log.contains("second step"), "the fenced attempt never ran on: {log}");
    assert!(isolated.child.try_wait().expect("try_wait").is_none(), "the isolated runner survives its partition");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_listener_cannot_keep_its_job_running() {
    let lease = Duration::from_secs(3);
    let mut server = TestServer::start(timeouts(lease)).await;
    let frozen = server.start_runner("frozen").await;
    let marker = format!("BATON_TEST_MARKER=sigstop-{}", std::process::id());
    let mut spec = crate::common::spec("frozen-job", &["(setsid sleep 600 &); sleep 600"]);
    spec.env.insert("BATON_TEST_MARKER".into(), marker.trim_start_matches("BATON_TEST_MARKER=").into());
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    server.wait_job(job.id, "running", |job| job.state == "running").await;
    eventually("the job's processes run", || {
        let count = processes_with_env(&marker).len();
        async move { (count >= 2).then_some(()) }
    })
    .await;

    // Freeze the listener (not its worker): nothing renews the lease any more, and nothing in
    // the listener can kill the job. The worker must stop it on its own, in time.
    frozen.signal(nix::sys::signal::Signal::SIGSTOP);
    job_stops_before_its_lease_expires(&server, job.id, &marker, lease).await;
    frozen.signal(nix::sys::signal::Signal::SIGCONT);
    server.admin.cancel_job(job.id).await.expect("cancel the requeued job");
    server.stop().await;
}
