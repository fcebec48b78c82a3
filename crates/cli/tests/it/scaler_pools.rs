//! The autoscaler with real runner processes on loopback: F4 (scale-down racing assignment never
//! kills a job), F2 (stale reads cannot make it terminate anything), and orphan clean-up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_api as api;
use baton_client::Client;
use baton_scaler::{Config, Defaults, Scaler};

use crate::common::{PATIENCE, TestServer, spec, timeouts};

/// A scaler running in this process against `client`, stopped when dropped.
struct RunningScaler {
    scaler: Arc<Scaler>,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Drop for RunningScaler {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn start_scaler(client: Client, runner_server: &str, pool_toml: &str) -> RunningScaler {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("reconcile_interval = \"250ms\"\n{pool_toml}");
    let config = Config::parse(&text).expect("valid scaler config");
    let defaults = Defaults { program: env!("CARGO_BIN_EXE_baton").into(), work_dir: dir.path().to_path_buf() };
    let scaler = Arc::new(Scaler::new(client, runner_server.to_string(), &config, &defaults));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(scaler.clone().run(stopped));
    RunningScaler { scaler, stop, _dir: dir }
}

fn labelled(name: &str, label: &str, run: &str) -> api::JobSpec {
    let mut job = spec(name, &[run]);
    job.labels = vec![label.to_string()];
    job
}

async fn all_events(client: &Client) -> Vec<api::Event> {
    let last = client.pool_snapshot("any").await.expect("snapshot").as_of_event;
    let mut stream = client.events(0).await.expect("events");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.expect("event");
        let seq = event.seq;
        events.push(event);
        if seq >= last {
            break;
        }
    }
    events
}

/// Every `scaler.terminate` follows a `scaler.retire` of the same runner that the server
/// answered `retired`: termination has no other path.
fn assert_terminations_follow_retired(events: &[api::Event]) {
    let mut retired = BTreeSet::new();
    for event in events {
        match event.kind.as_str() {
            "scaler.retire" if event.data["result"]["answer"] == "retired" => {
                retired.insert(event.runner_id);
            }
            "scaler.terminate" => {
                assert!(retired.contains(&event.runner_id), "terminated without a retired answer: {event:?}");
            }
            _ => {}
        }
    }
}

async fn wait_jobs(server: &TestServer, ids: &[i64], patience: Duration) -> Vec<api::Job> {
    let deadline = Instant::now() + patience;
    let mut done = BTreeMap::new();
    while done.len() < ids.len() {
        for id in ids {
            if done.contains_key(id) {
                continue;
            }
            let job = server.admin.get_job(*id).await.expect("job");
            if job.state == "completed" {
                done.insert(*id, job);
            }
        }
        assert!(Instant::now() < deadline, "only {} of {} jobs completed in time", done.len(), ids.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.into_values().collect()
}

fn jobs_to_run() -> usize {
    std::env::var("BATON_TEST_F4_JOBS").ok().and_then(|text| text.parse().ok()).unwrap_or(1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f4_scale_down_racing_assignment_never_kills_a_job() {
    let server = TestServer::start(timeouts(Duration::from_secs(10))).await;
    let idle_timeout_ms = rand::random_range(0..=50u64);
    let scaler = start_scaler(
        server.admin.clone(),
        &server.url,
        &format!(
            "[[pool]]\nname = \"f4\"\nlabels = [\"f4\"]\nmax_runners = 4\nidle_timeout = \"{idle_timeout_ms}ms\"\n\
             ephemeral = false\nregister_timeout = \"60s\"\nscale_up_batch = 4\nprovider = {{ kind = \"process\" }}\n"
        ),
    );
    let count = jobs_to_run();
    let mut ids = Vec::with_capacity(count);
    for index in 0..count {
        let job = server.admin.enqueue_job(&labelled(&format!("f4-{index}"), "f4", "true")).await.expect("enqueue");
        ids.push(job.id);
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..=100u64))).await;
    }
    let jobs = wait_jobs(&server, &ids, PATIENCE * 4).await;
    let killed: Vec<&api::Job> =
        jobs.iter().filter(|job| job.conclusion.as_deref() != Some("success") || job.attempts.len() != 1).collect();
    assert!(killed.is_empty(), "{} jobs were disturbed, first: {:?}", killed.len(), killed.first());

    let events = all_events(&server.admin).await;
    assert_terminations_follow_retired(&events);
    let refusals =
        events.iter().filter(|event| event.kind == "scaler.retire" && event.data["result"]["answer"] == "busy").count();
    let retired = events
        .iter()
        .filter(|event| event.kind == "scaler.retire" && event.data["result"]["answer"] == "retired")
        .count();
    let created = events.iter().filter(|event| event.kind == "scaler.create").count();
    eprintln!(
        "f4: {count} jobs, idle_timeout {idle_timeout_ms} ms: {created} runners created, {retired} retired, {refusals} retire refusals"
    );
    assert!(refusals > 0, "the race was never exercised: no retire was refused ({retired} retired)");
    assert_eq!(scaler.scaler.metrics.refusals("f4") as usize, refusals);
}

/// Waits until `check` holds for the pool's snapshot.
async fn wait_snapshot(
    client: &Client,
    pool: &str,
    what: &str,
    check: impl Fn(&api::PoolSnapshot) -> bool,
) -> api::PoolSnapshot {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let snapshot = client.pool_snapshot(pool).await.expect("snapshot");
        if check(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {snapshot:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_is_cleaned_up_and_a_silent_machine_is_terminated() {
    let server = TestServer::start(timeouts(Duration::from_secs(10))).await;
    let work = tempfile::tempdir().expect("temp dir");
    // A provider whose machines never start a runner: `create` starts `sleep`.
    let script = work.path().join("silent-provider.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\nstate={dir}\nmkdir -p \"$state\"\ncase \"$1\" in\n  \
             create) cat > /dev/null; sleep 600 > /dev/null 2>&1 < /dev/null & echo $! > \"$state/$BATON_INSTANCE_NAME\"; printf '{{\"id\": \"%s\"}}\\n' \"$BATON_INSTANCE_NAME\" ;;\n  \
             terminate) if [ -f \"$state/$2\" ]; then kill \"$(cat \"$state/$2\")\" 2>/dev/null || true; rm -f \"$state/$2\"; fi ;;\n  \
             list) printf '['; sep=''; for f in \"$state\"/*; do [ -f \"$f\" ] || continue; n=$(basename \"$f\"); printf '%s{{\"id\": \"%s\", \"name\": \"%s\", \"pool\": \"%s\"}}' \"$sep\" \"$n\" \"$n\" \"$2\"; sep=','; done; printf ']\\n' ;;\n  \
             *) echo \"unknown verb $1\" >&2; exit 2 ;;\nesac\n",
            dir = work.path().join("instances").display()
        ),
    )
    .expect("write the provider");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let _scaler = start_scaler(
        server.admin.clone(),
        &server.url,
        &format!(
            "[[pool]]\nname = \"live\"\nlabels = [\"live\"]\nmax_runners = 2\nmin_idle = 1\nidle_timeout = \"1h\"\n\
             ephemeral = false\nregister_timeout = \"30s\"\nprovider = {{ kind = \"process\" }}\n\
             [[pool]]\nname = \"silent\"\nlabels = [\"silent\"]\nmax_runners = 1\nmin_idle = 1\nidle_timeout = \"1h\"\n\
             register_timeout = \"1s\"\nprovider = {{ kind = \"exec\", command = \"{}\" }}\n",
            script.display()
        ),
    );

    // min_idle = 1: one live runner connects. SIGKILL it: within two reconcile periods of the
    // runner's process being gone, its registration is retired and removed, and a new one comes.
    let first = wait_snapshot(&server.admin, "live", "an idle live runner", |snapshot| {
        snapshot.runners.iter().any(|runner| runner.state == "active" && runner.online)
    })
    .await;
    let victim = first.runners.iter().find(|runner| runner.state == "active").expect("active").clone();
    let pid = crate::common::processes_with_args(&victim.name).into_iter().next().expect("the runner's process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let killed_at = Instant::now();
    wait_snapshot(&server.admin, "live", "the killed runner's registration removed", |snapshot| {
        !snapshot.runners.iter().any(|runner| runner.id == victim.id)
    })
    .await;
    let cleaned_in = killed_at.elapsed();
    assert!(cleaned_in < Duration::from_millis(2 * 250 + 1000), "cleaned after {cleaned_in:?}");
    wait_snapshot(&server.admin, "live", "a replacement runner", |snapshot| {
        snapshot.runners.iter().any(|runner| runner.state == "active" && runner.online && runner.id != victim.id)
    })
    .await;

    // The silent pool's machine never registers: after register_timeout it is retired and
    // terminated (its `sleep` process is gone), and the registration removed.
    let deadline = Instant::now() + PATIENCE;
    let events = loop {
        let events = all_events(&server.admin).await;
        let terminated = events.iter().any(|event| {
            event.kind == "scaler.terminate"
                && event.data["pool"] == "silent"
                && event.data["reason"] == "never_registered"
        });
        if terminated {
            break events;
        }
        assert!(Instant::now() < deadline, "the silent machine was never terminated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_terminations_follow_retired(&events);
    let gone = events.iter().any(|event| {
        event.kind == "scaler.terminate" && event.data["pool"] == "live" && event.data["reason"] == "instance_gone"
    });
    assert!(gone, "the killed runner's clean-up is in the audit trail");
}
