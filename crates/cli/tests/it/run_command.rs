//! `baton run` and the operator commands, as a user types them: the examples on the embedded
//! fleet, invalid input, and a remote server with a runner process.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ADMIN_TOKEN, PATIENCE, TestServer, timeouts};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn baton(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
    command.args(args).env_remove("BATON_SERVER").env_remove("BATON_TOKEN").env("NO_COLOR", "1");
    command.stdin(Stdio::null());
    command
}

/// Runs the command to its end, failing the test if it outlives `PATIENCE`.
fn finish(mut command: Command) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start baton");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("baton ran"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("baton did not finish within {PATIENCE:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_example(name: &str, extra: &[&str]) -> Output {
    let path = examples().join(name);
    let mut args = vec!["run", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    finish(baton(&args))
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("stdout is one JSON document ({error}):\n{}\nstderr:\n{}", text(&output.stdout), text(&output.stderr))
    })
}

#[test]
fn hello_runs_on_the_embedded_fleet_and_shows_its_steps() {
    let output = run_example("hello.yml", &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&output.stderr));
    assert!(stdout.contains("greet | == Say hello"), "{stdout}");
    assert!(stdout.contains("greet | Hello from Baton, run 1 on Linux"), "{stdout}");
    assert!(stdout.contains("runner: local-"), "{stdout}");
    assert!(stdout.contains("Run 1 success"), "{stdout}");
}

#[test]
fn outputs_written_by_one_job_reach_the_jobs_that_need_it() {
    let output = run_example("outputs.yml", &["--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{}", text(&output.stderr));
    let run = json(&output);
    assert_eq!(run["conclusion"], "success");
    let jobs = run["jobs"].as_array().expect("jobs");
    let names: Vec<&str> = jobs.iter().map(|job| job["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["version", "build (linux)", "build (freebsd)", "release"]);
    assert_eq!(jobs[0]["outputs"]["version"], "1.4.42");
    assert_eq!(jobs[1]["matrix"], serde_json::json!({ "platform": "linux" }));
    // `release` read `needs.version.outputs.version`, which `version` wrote through GITHUB_OUTPUT.
    assert_eq!(jobs[3]["outputs"]["tag"], "v1.4.42");
    for job in jobs {
        assert_eq!(job["conclusion"], "success", "{job}");
        assert!(job["started_at"].is_string() && job["completed_at"].is_string(), "{job}");
    }
}

#[test]
fn the_matrix_example_expands_include_and_exclude_as_github_does() {
    let output = run_example("matrix.yml", &["--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{}", text(&output.stderr));
    let run = json(&output);
    let matrices: Vec<serde_json::Value> =
        run["jobs"].as_array().expect("jobs").iter().map(|job| job["matrix"].clone()).collect();
    assert_eq!(
        matrices,
        [
            serde_json::json!({ "target": "x86_64", "profile": "debug" }),
            serde_json::json!({ "target": "x86_64", "profile": "release", "lto": true }),
            serde_json::json!({ "target": "arm64", "profile": "release" }),
            serde_json::json!({ "target": "riscv64", "profile": "release", "experimental": true }),
        ]
    );
    assert_eq!(run["jobs"][1]["name"], "build x86_64 release");
}

#[test]
fn a_failing_step_fails_the_run_after_its_clean_up() {
    let output = run_example("failure.yml", &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("flaky outcome=failure conclusion=success"), "{stdout}");
    assert!(stdout.contains("error: src/lib.rs:12: assertion failed"), "{stdout}");
    assert!(!stdout.contains("not reached"), "{stdout}");
    assert!(stdout.contains("collecting diagnostics after the failure"), "{stdout}");
    assert!(stdout.contains("cleaning up"), "{stdout}");
    assert!(stdout.contains("test failed (result=failure); sending a notification"), "{stdout}");
    assert!(stdout.contains("Run 1 failure"), "{stdout}");
}

#[test]
fn the_step_summary_is_shown_after_the_run() {
    let output = run_example("summary.yml", &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Summary of report"), "{stdout}");
    assert!(stdout.contains("| unit  | 128 passed |"), "{stdout}");
}

#[test]
fn secrets_reach_steps_and_never_the_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("secret.yml");
    std::fs::write(
        &file,
        "on: push\njobs:\n  use:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          \
         echo \"token is ${{ secrets.DEPLOY_TOKEN }}\"\n          test \"${{ secrets.DEPLOY_TOKEN }}\" = \"$EXPECTED\"\n        \
         env:\n          EXPECTED: hunter2-very-secret\n",
    )
    .expect("write");
    let mut command = baton(&["run", file.to_str().expect("utf-8"), "--secret", "DEPLOY_TOKEN"]);
    command.env("DEPLOY_TOKEN", "hunter2-very-secret");
    let output = finish(command);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains("token is ***"), "{stdout}");
    assert!(!stdout.contains("hunter2-very-secret"), "{stdout}");
}

#[test]
fn invalid_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    };
    let bad = write("bad.yml", "on: push\njobs:\n  a:\n    runs-on: x\n    stepz:\n      - run: echo\n");
    let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10u8 {
        let (name, previous) = ((b'a' + level) as char, (b'a' + level - 1) as char);
        let refs = vec![format!("*{previous}"); 9].join(", ");
        laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    laughs.push_str("on: push\njobs: {}\n");
    let laughs = write("laughs.yml", &laughs);
    let big = write("big.yml", &format!("# {}\n", "x".repeat(10 * 1024 * 1024)));
    let hello = examples().join("hello.yml").display().to_string();
    let cases: [(Vec<&str>, &str); 6] = [
        (vec!["run", &bad], "bad.yml:5:5: unknown key `stepz` in job `a`; did you mean `steps`?"),
        (vec!["run", &laughs], "YAML aliases expand to too many nodes"),
        (vec!["run", &big], "a workflow file may be at most 512 KiB"),
        (vec!["run", &hello, "--input", "nope=1"], "unknown input `nope`"),
        (
            vec!["run", &hello, "--secret", "BATON_TEST_UNSET_SECRET"],
            "set the environment variable BATON_TEST_UNSET_SECRET",
        ),
        (vec!["run", &hello, "--job", "missing"], "--job missing: the workflow has no such job; its jobs are greet"),
    ];
    for (args, expected) in cases {
        let started = Instant::now();
        let output = finish(baton(&args));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in:\n{stderr}");
        // A hang guard, not a benchmark: refusals are measured in the benchmark notes.
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_follow_status_and_cancel_against_a_server() {
    let server = TestServer::start(timeouts(Duration::from_secs(10))).await;
    let _runner = server.start_runner("remote").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("slow.yml");
    std::fs::write(
        &file,
        "on: push\njobs:\n  quick:\n    runs-on: self-hosted\n    steps:\n      - run: echo quick done\n  \
         slow:\n    needs: quick\n    runs-on: self-hosted\n    steps:\n      - run: echo started; sleep 600\n      \
         - if: cancelled()\n        run: echo cleaning after cancel\n",
    )
    .expect("write");
    let url = server.url.clone();
    let remote = move |args: &[&str]| {
        let mut command = baton(args);
        command.env("BATON_SERVER", &url).env("BATON_TOKEN", ADMIN_TOKEN);
        command
    };
    let submitted = tokio::task::spawn_blocking({
        let remote = remote.clone();
        let file = file.display().to_string();
        move || finish(remote(&["submit", &file]))
    })
    .await
    .expect("join");
    assert_eq!(submitted.status.code(), Some(0), "{}", text(&submitted.stderr));
    let run_id: i64 = text(&submitted.stdout).trim().parse().expect("submit prints the run id");

    // Cancel once the slow job has started, then follow the run to its end.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let run = server.admin.get_run(run_id).await.expect("run");
        if run.jobs[1].legs.first().is_some_and(|leg| leg.status == "running") {
            let logs = server.log_text(run.jobs[1].legs[0].job_id.expect("job"), 1).await;
            if logs.contains("started") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the slow job never started: {run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cancelled, followed, status, runners, token) = tokio::task::spawn_blocking({
        let run = run_id.to_string();
        move || {
            let cancelled = finish(remote(&["cancel", &run]));
            let followed = finish(remote(&["logs", &run, "--follow"]));
            let status = finish(remote(&["status", &run, "--output", "json"]));
            let runners = finish(remote(&["runners", "--output", "json"]));
            let token = finish(remote(&["token", "create", "--labels", "gpu", "--ttl", "10m"]));
            (cancelled, followed, status, runners, token)
        }
    })
    .await
    .expect("join");
    assert_eq!(cancelled.status.code(), Some(0), "{}", text(&cancelled.stderr));
    let logs = text(&followed.stdout);
    assert_eq!(followed.status.code(), Some(1), "a cancelled run exits 1:\n{logs}");
    assert!(logs.contains("quick | quick done"), "{logs}");
    assert!(logs.contains("slow | cleaning after cancel"), "{logs}");
    let status = json(&status);
    assert_eq!(status["conclusion"], "cancelled");
    assert_eq!(status["jobs"][0]["conclusion"], "success");
    assert_eq!(status["jobs"][1]["conclusion"], "cancelled");
    let runners = json(&runners);
    assert_eq!(runners["runners"][0]["name"], "remote");
    assert!(text(&token.stdout).starts_with("bat_reg_"), "{}", text(&token.stdout));
}
