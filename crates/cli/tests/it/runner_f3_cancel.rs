//! F3 (seeds/002): a cancelled job's worker was still tearing down when the next job's worker
//! started, and its cleanup deleted the new job's file-command files in the shared temp dir.
//! Baton gives every attempt its own tree and reports a slot free only after the previous
//! worker has been reaped, its process group is empty and its directory is gone.

use std::time::Duration;

use baton_api as api;

use crate::common::{TestServer, eventually, timeouts};

fn read_nanos(path: &std::path::Path) -> Vec<u128> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|line| line.trim().parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_job_never_overlaps_or_touches_the_next_one() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let shared = tempfile::tempdir().expect("shared dir");
    let shared_path = shared.path().display().to_string();
    let _runner = server.start_runner("f3").await;

    // Job A ignores SIGINT and SIGTERM and keeps writing into its temp dir until killed.
    let job_a = server
        .enqueue(
            "a",
            &[&format!(
                "trap '' INT TERM\n\
                 echo $PPID > {shared_path}/a_worker_pid\n\
                 echo \"$RUNNER_TEMP\" > {shared_path}/a_temp\n\
                 while true; do date +%s%N >> {shared_path}/a_alive; echo x >> \"$RUNNER_TEMP/a_file\"; sleep 0.01; done"
            )],
        )
        .await;
    let a_pid_file = shared.path().join("a_worker_pid");
    eventually("job A is running", || {
        let exists = a_pid_file.exists() && shared.path().join("a_alive").exists();
        async move { exists.then_some(()) }
    })
    .await;

    // Job B waits behind A; A is cancelled.
    let job_b = server
        .admin
        .enqueue_job(&api::JobSpec {
            steps: vec![api::StepSpec {
                id: Some("b".into()),
                run: format!(
                    "date +%s%N > {shared_path}/b_start\n\
                     if kill -0 $(cat {shared_path}/a_worker_pid) 2>/dev/null; then echo alive > {shared_path}/b_saw_a_worker; fi\n\
                     echo \"$RUNNER_TEMP\" > {shared_path}/b_temp\n\
                     sleep 0.5\n\
                     echo result=intact >> \"$GITHUB_OUTPUT\"\n\
                     echo '## B summary' >> \"$GITHUB_STEP_SUMMARY\"\n\
                     test -f \"$GITHUB_OUTPUT\" && test -f \"$GITHUB_STEP_SUMMARY\""
                ),
                ..crate::common::spec("b", &["true"]).steps[0].clone()
            }],
            ..crate::common::spec("b", &[])
        })
        .await
        .expect("enqueue B");
    server.admin.cancel_job(job_a.id).await.expect("cancel A");

    let a = server.wait_completed(job_a.id).await;
    assert_eq!(a.conclusion.as_deref(), Some("cancelled"));
    let b = server.wait_completed(job_b.id).await;
    assert_eq!(b.conclusion.as_deref(), Some("success"), "B succeeded: {b:?}");
    assert_eq!(b.attempts[0].outputs.get("result").map(String::as_str), Some("intact"), "B's outputs survived");
    assert_eq!(b.attempts[0].summary.as_deref(), Some("## B summary\n"), "B's summary survived");

    // The lifetimes never overlapped: A's last sign of life came before B started, and B saw
    // no worker of A's.
    let a_last = read_nanos(&shared.path().join("a_alive")).into_iter().max().expect("A wrote");
    let b_start = read_nanos(&shared.path().join("b_start")).into_iter().next().expect("B wrote");
    assert!(a_last < b_start, "A was alive at {a_last} after B started at {b_start}");
    assert!(!shared.path().join("b_saw_a_worker").exists(), "A's worker was still alive when B started");
    // Each had its own temp dir, and A's is gone.
    let a_temp = std::fs::read_to_string(shared.path().join("a_temp")).expect("a_temp");
    let b_temp = std::fs::read_to_string(shared.path().join("b_temp")).expect("b_temp");
    assert_ne!(a_temp, b_temp);
    assert!(!std::path::Path::new(a_temp.trim()).exists(), "A's attempt directory was removed");
    let log = server.log_text(job_a.id, 1).await;
    assert!(log.contains("cancelled"), "A's log says it was cancelled: {log}");
    server.stop().await;
}
