//! The runner's own lifecycle: SIGTERM drains, SIGINT stops, goodbye on every clean exit, and
//! a completion survives a SIGKILL of the listener.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{Proxy, RunnerOptions, RunnerProcess, TestServer, eventually, timeouts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_sigint_stops() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let token = server.token().await;
    let mut drainer = RunnerProcess::start(
        &server.url,
        &token,
        server.dir.path(),
        RunnerOptions { name: "drainer", capacity: 1, ephemeral: false, extra: &["--labels", "drain"] },
    );
    let mut spec = crate::common::spec("finishes", &["sleep 0.5; echo finished"]);
    spec.labels = vec!["drain".into()];
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    server.wait_job(job.id, "running", |job| job.state == "running").await;
    drainer.signal(Signal::SIGTERM);
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("success"), "a drained runner finishes its job");
    assert!(drainer.wait_exit().success(), "a drained runner exits cleanly");
    let runner_id = done.attempts[0].runner_id.expect("runner");
    let info = server.admin.get_runner(runner_id).await.expect("runner");
    assert_eq!(info.state, "offline", "it said goodbye");
    assert!(!info.online);

    let token = server.token().await;
    let mut stopper = RunnerProcess::start(
        &server.url,
        &token,
        server.dir.path(),
        RunnerOptions { name: "stopper", capacity: 1, ephemeral: false, extra: &["--labels", "stop"] },
    );
    let mut spec = crate::common::spec("endless", &["sleep 600"]);
    spec.labels = vec!["stop".into()];
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    server.wait_job(job.id, "running", |job| job.state == "running").await;
    stopper.signal(Signal::SIGINT);
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("cancelled"), "SIGINT cancels running jobs");
    assert!(stopper.wait_exit().success());
    let info = server.admin.get_runner(done.attempts[0].runner_id.expect("runner")).await.expect("runner");
    assert_eq!(info.state, "offline", "it said goodbye");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_survives_a_sigkill_of_the_listener() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(8))).await;
    let proxy = Proxy::start(&server.url).await;
    let token = server.token().await;
    let mut runner = RunnerProcess::start(
        &proxy.url,
        &token,
        server.dir.path(),
        RunnerOptions { name: "phoenix", capacity: 1, ephemeral: false, extra: &[] },
    );
    let job = server.enqueue("survivor", &["echo before; sleep 0.3; echo after"]).await;
    server.wait_job(job.id, "running", |job| job.state == "running").await;
    // Cut the runner off while the job runs: its log and completion cannot get through.
    proxy.cut();
    let pending = server.dir.path().join("phoenix/state/pending");
    eventually("the completion is persisted", || {
        // The file is written to a temporary name and renamed: only the final name counts.
        let found = std::fs::read_dir(&pending)
            .map(|entries| {
                entries.flatten().any(|entry| entry.path().extension().is_some_and(|extension| extension == "json"))
            })
            .unwrap_or(false);
        async move { found.then_some(()) }
    })
    .await;
    runner.signal(Signal::SIGKILL);
    runner.wait_exit();
    assert_eq!(server.admin.get_job(job.id).await.expect("job").state, "running", "the server has not heard yet");

    // A crash in the middle of a spool append leaves a torn last line; replay must survive it.
    let spool_dir = server.dir.path().join("phoenix/state/spool");
    let spool = std::fs::read_dir(&spool_dir).expect("the spool dir").flatten().next().expect("a spool file").path();
    let mut file = std::fs::OpenOptions::new().append(true).open(&spool).expect("open the spool");
    std::io::Write::write_all(&mut file, b"{\"seq\": 99, \"da").expect("append a torn line");
    drop(file);

    // The listener comes back with the same state dir and delivers what it owed.
    proxy.restore();
    let _again = RunnerProcess::start(
        &proxy.url,
        &token,
        server.dir.path(),
        RunnerOptions { name: "phoenix", capacity: 1, ephemeral: false, extra: &[] },
    );
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("success"));
    assert_eq!(done.attempts.len(), 1, "the same attempt completed, no retry");
    let log = server.log_text(job.id, 1).await;
    let lines: Vec<&str> = log.lines().filter(|line| *line == "before" || *line == "after").collect();
    assert_eq!(lines, ["before", "after"], "the whole log, once: {log}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_removes_attempt_directories_of_a_crashed_run() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let token = server.token().await;
    // What a crashed run leaves: an attempt tree with files in it, and no worker.
    let leftover = server.dir.path().join("collector/work/4242/1");
    std::fs::create_dir_all(leftover.join("workspace")).expect("create the leftover tree");
    std::fs::write(leftover.join("workspace/artifact"), b"stale").expect("write a stale file");
    std::fs::write(leftover.join("worker.pid"), b"999999999").expect("write a dead worker's pid");
    let _runner = RunnerProcess::start(
        &server.url,
        &token,
        server.dir.path(),
        RunnerOptions { name: "collector", capacity: 1, ephemeral: false, extra: &[] },
    );
    let job_dir = leftover.parent().expect("job dir").to_path_buf();
    eventually("the leftover attempt directory is removed", || {
        let gone = !job_dir.exists();
        async move { gone.then_some(()) }
    })
    .await;
    // And the runner still works.
    let job = server.enqueue("after-gc", &["echo ok"]).await;
    assert_eq!(server.wait_completed(job.id).await.conclusion.as_deref(), Some("success"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_steps_run_after_a_cancel() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let _runner = server.start_runner("tidy").await;
    let mut spec = crate::common::spec("with-clean-up", &["echo working; sleep 600"]);
    let step = |condition: &str, run: &str| baton_api::StepSpec {
        condition: Some(condition.into()),
        ..crate::common::spec("x", &[run]).steps[0].clone()
    };
    spec.steps.push(step("always()", "sleep 0.2; echo always-after-cancel"));
    spec.steps.push(step("cancelled()", "echo cancelled-after-cancel"));
    spec.steps.push(step("success()", "echo success-after-cancel"));
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    server.wait_job(job.id, "running", |job| job.state == "running").await;
    eventually("the first step runs", || {
        let admin = server.admin.clone();
        let job_id = job.id;
        async move {
            let page = admin.job_logs(job_id, 1, 0).await.expect("logs");
            page.chunks.iter().any(|chunk| chunk.data.contains("working")).then_some(())
        }
    })
    .await;
    server.admin.cancel_job(job.id).await.expect("cancel");
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("cancelled"));
    let log = server.log_text(job.id, 1).await;
    assert!(log.contains("The job was cancelled: stopping the step"), "the stopped step says why: {log}");
    assert!(log.lines().any(|line| line == "always-after-cancel"), "an always() step ran to its end: {log}");
    assert!(log.lines().any(|line| line == "cancelled-after-cancel"), "a cancelled() step ran: {log}");
    assert!(!log.lines().any(|line| line == "success-after-cancel"), "a success() step did not run: {log}");
    server.stop().await;
}
