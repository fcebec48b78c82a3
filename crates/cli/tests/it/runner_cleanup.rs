//! No process of a job survives the job: not a background child, not a double-forked daemon
//! that left the step's process group and session. Checked in /proc, by an environment marker
//! every process of the job inherits.

use std::time::Duration;

use crate::common::{TestServer, eventually, processes_with_env, timeouts};

fn job_with_marker(name: &str, marker: &str, script: &str) -> baton_api::JobSpec {
    let mut spec = crate::common::spec(name, &[script]);
    spec.env.insert("BATON_TEST_MARKER".into(), marker.into());
    spec
}

const ESCAPEES: &str = "sleep 1000 &\n\
                        (setsid sh -c 'sleep 1000 & sleep 1000' > /dev/null 2>&1 &)\n\
                        nohup sleep 1000 > /dev/null 2>&1 &\n\
                        echo spawned";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_job_leaves_no_process_behind() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let _runner = server.start_runner("cleaner").await;
    let marker = format!("cancel-{}", std::process::id());
    let needle = format!("BATON_TEST_MARKER={marker}");
    let job = server
        .admin
        .enqueue_job(&job_with_marker("daemons", &marker, &format!("{ESCAPEES}\nsleep 1000")))
        .await
        .expect("enqueue");
    // Wait for the step and all its escapees: the background sleep, the daemon's two sleeps,
    // nohup's sleep, and the step's own sleep.
    eventually("the job's processes are all running", || {
        let count = processes_with_env(&needle).len();
        async move { (count >= 5).then_some(()) }
    })
    .await;
    server.admin.cancel_job(job.id).await.expect("cancel");
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("cancelled"));
    let left = processes_with_env(&needle);
    assert!(left.is_empty(), "processes of the cancelled job survived it: {left:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_job_leaves_no_process_behind() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let _runner = server.start_runner("finisher").await;
    let marker = format!("finish-{}", std::process::id());
    let needle = format!("BATON_TEST_MARKER={marker}");
    // The step exits at once, leaving its escapees behind; a later step still sees them (GitHub
    // keeps background processes alive until the job ends).
    let mut spec = job_with_marker("leaver", &marker, ESCAPEES);
    spec.steps
        .push(crate::common::spec("x", &["pgrep -f 'sleep 1000' > /dev/null && echo still-running"]).steps[0].clone());
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("success"), "{done:?}");
    let log = server.log_text(job.id, 1).await;
    assert!(log.contains("still-running"), "background processes live until the job ends: {log}");
    let left = processes_with_env(&needle);
    assert!(left.is_empty(), "processes of the finished job survived it: {left:?}");
    server.stop().await;
}
