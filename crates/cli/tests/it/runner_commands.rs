//! File commands and workflow commands, end to end through a real runner: what one step writes
//! reaches the next step, the job's outputs, its summary and its log, and masked values never
//! reach the log.

use std::time::Duration;

use baton_api as api;

use crate::common::{TestServer, timeouts};

fn step(id: &str, run: &str) -> api::StepSpec {
    api::StepSpec { id: Some(id.into()), ..crate::common::spec("x", &[run]).steps[0].clone() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_workflow_commands_end_to_end() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let _runner = server.start_runner("commands").await;
    let spec = api::JobSpec {
        steps: vec![
            step(
                "write",
                "echo 'PLAIN=one' >> \"$GITHUB_ENV\"\n\
                 printf 'MULTI<<EOF\\nline1\\nline2\\nEOF\\n' >> \"$GITHUB_ENV\"\n\
                 mkdir -p \"$RUNNER_TEMP/bin\" && printf '#!/bin/sh\\necho from-path\\n' > \"$RUNNER_TEMP/bin/baton-probe\" && chmod +x \"$RUNNER_TEMP/bin/baton-probe\"\n\
                 echo \"$RUNNER_TEMP/bin\" >> \"$GITHUB_PATH\"\n\
                 echo 'answer=42' >> \"$GITHUB_OUTPUT\"\n\
                 echo '### Summary line' >> \"$GITHUB_STEP_SUMMARY\"\n\
                 echo '::add-mask::hunter2secret'\n\
                 echo 'the password is hunter2secret'\n\
                 echo '::group::A group'\n\
                 echo 'inside'\n\
                 echo '::endgroup::'\n\
                 echo '::error file=app.rs,line=7::broken thing'\n\
                 echo '::stop-commands::pause123'\n\
                 echo '::error::not a command while stopped'\n\
                 echo '::pause123::'\n\
                 echo '::warning::a command again'",
            ),
            step(
                "read",
                "echo \"plain=$PLAIN\"\n\
                 echo \"multi=$(echo \"$MULTI\" | tr '\\n' '+')\"\n\
                 baton-probe\n\
                 echo \"ci=$CI actions=$GITHUB_ACTIONS os=$RUNNER_OS arch=$RUNNER_ARCH name=$RUNNER_NAME\"\n\
                 test -n \"$GITHUB_WORKSPACE\" && test \"$(pwd)\" = \"$GITHUB_WORKSPACE\" && echo in-workspace",
            ),
            step("inject", "printf 'SAFE<<EOF\\nok\\nEOF\\nINJECTED=1\\nEOF\\n' >> \"$GITHUB_ENV\""),
            api::StepSpec {
                condition: Some("failure()".into()),
                ..step("after-failure", "echo \"cleanup ran; injected=${INJECTED:-unset}\"")
            },
            api::StepSpec { condition: Some("always()".into()), ..step("always", "echo always-ran") },
            step("skipped", "echo should-not-run"),
        ],
        ..crate::common::spec("commands", &[])
    };
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    let done = server.wait_completed(job.id).await;
    let log = server.log_text(job.id, 1).await;
    assert_eq!(done.conclusion.as_deref(), Some("failure"), "the injection step fails the job: {log}");
    let attempt = &done.attempts[0];
    assert_eq!(attempt.outputs.get("answer").map(String::as_str), Some("42"));
    assert_eq!(attempt.outputs.get("write.answer").map(String::as_str), Some("42"));
    assert_eq!(attempt.summary.as_deref(), Some("### Summary line\n"));

    for expected in [
        "plain=one",
        "multi=line1+line2+",
        "from-path",
        "ci=true actions=true os=Linux",
        "name=commands",
        "in-workspace",
        "the password is ***",
        "##[group]A group",
        "##[endgroup]",
        "##[error]app.rs:7: broken thing",
        "::error::not a command while stopped",
        "##[warning]a command again",
        "cleanup ran; injected=unset",
        "always-ran",
    ] {
        assert!(log.contains(expected), "the log has {expected:?}:\n{log}");
    }
    assert!(!log.contains("hunter2secret"), "a masked value reached the log:\n{log}");
    assert!(!log.lines().any(|line| line == "should-not-run"), "a step after the failure ran:\n{log}");
    assert!(log.contains("Skipping step 6"), "the skipped step is named:\n{log}");
    assert!(log.contains("GITHUB_ENV"), "the rejected file command is named in the log:\n{log}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_too_large_to_report_fail_the_job_instead_of_losing_it() {
    let mut server = TestServer::start(timeouts(Duration::from_secs(6))).await;
    let _runner = server.start_runner("big").await;
    let spec = crate::common::spec(
        "big-output",
        &["printf 'big=%s\\n' \"$(head -c 1000000 /dev/zero | tr '\\0' a)\" >> \"$GITHUB_OUTPUT\"; echo wrote"],
    );
    let job = server.admin.enqueue_job(&spec).await.expect("enqueue");
    let done = server.wait_completed(job.id).await;
    assert_eq!(done.conclusion.as_deref(), Some("failure"), "{:?}", done.attempts);
    assert_eq!(done.attempts.len(), 1, "completed on its first attempt, not lost and retried");
    assert!(done.attempts[0].outputs.is_empty());
    let log = server.log_text(job.id, 1).await;
    assert!(log.contains("too large to report"), "the log says why: {log}");
    server.stop().await;
}
