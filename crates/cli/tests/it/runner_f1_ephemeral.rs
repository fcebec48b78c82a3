//! F1 (seeds/000): an ephemeral runner finished its job, dropped its connection at once, and the
//! finished job was reported lost. Here 200 ephemeral runners each run one job and exit, some
//! killed with SIGKILL right after their completion was committed: every job ends `success`,
//! none is ever lost, and every runner ends gone (after goodbye, or through retire-if-idle when
//! it was killed before it could say goodbye).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{RunnerOptions, RunnerProcess, TestServer, eventually, timeouts};

const RUNS: usize = 200;
const PARALLEL: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ephemeral_runners_never_lose_a_finished_job() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let root = server.dir.path().to_path_buf();
    let mut seed: u64 = 0x005e_edf1;
    let mut random = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut killed = 0;
    for batch in 0..RUNS / PARALLEL {
        let mut runs = Vec::new();
        for index in 0..PARALLEL {
            let run = batch * PARALLEL + index;
            let token = server.token().await;
            let name = format!("eph-{run}");
            let sleep_ms = random() % 50;
            let kill_after_ack = random() % 3 == 0;
            killed += usize::from(kill_after_ack);
            let runner = RunnerProcess::start(
                &server.url,
                &token,
                &root,
                RunnerOptions { name: &name, capacity: 1, ephemeral: true, extra: &["--labels", &name] },
            );
            // The job is for this runner alone: its name is its label.
            let mut spec = crate::common::spec(&name, &[&format!("sleep 0.0{sleep_ms:02}; echo done")]);
            spec.labels = vec![name.clone()];
            let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
            runs.push((runner, job, kill_after_ack, name));
        }
        for (mut runner, job, kill_after_ack, name) in runs {
            let done = server.wait_completed(job.id).await;
            if kill_after_ack {
                runner.signal(Signal::SIGKILL);
            }
            runner.wait_exit();
            assert_eq!(done.conclusion.as_deref(), Some("success"), "{name}: {done:?}");
            assert_eq!(done.attempts.len(), 1, "{name}: no second attempt");
            let runner_id = done.attempts[0].runner_id.expect("ran on a runner");
            if kill_after_ack {
                // Killed, perhaps before its goodbye: the runner is idle, so the autoscaler's
                // retire path succeeds and the machine may go.
                let answer = server.admin.retire_runner(runner_id).await.expect("retire");
                assert_eq!(answer, baton_api::RetireResponse::Retired, "{name}: an idle runner retires");
                assert_eq!(server.admin.remove_runner(runner_id).await.expect("remove").state, "gone");
            } else {
                let admin = server.admin.clone();
                eventually("the runner says goodbye and is gone", || {
                    let admin = admin.clone();
                    async move { (admin.get_runner(runner_id).await.expect("get runner").state == "gone").then_some(()) }
                })
                .await;
            }
            let after = server.admin.get_job(job.id).await.expect("get job");
            assert_eq!(after.conclusion.as_deref(), Some("success"), "{name}: still success after the runner left");
            assert_eq!(after.attempts[0].state, "completed", "{name}: never lost");
        }
    }
    let events = server.admin.list_jobs(0, 1000).await.expect("jobs");
    assert_eq!(events.jobs.len(), RUNS);
    assert!(events.jobs.iter().all(|job| job.conclusion.as_deref() == Some("success") && job.attempts.len() == 1));
    assert!(killed > 0, "some runners were killed right after their completion");
    eprintln!("f1: {RUNS} ephemeral runs, {killed} killed with SIGKILL after completion, 0 lost");
    server.stop().await;
}
