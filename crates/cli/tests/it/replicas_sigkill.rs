//! Three `baton server` replicas on one PostgreSQL database; one is SIGKILLed in the middle of
//! a run of 500 jobs. Every job concludes, the runners that were talking to the killed replica
//! move on to the others, and no job ever runs twice at once (each step appends its start and
//! end to a ledger the test reads).
//!
//! Needs `BATON_TEST_POSTGRES_URL` (`scripts/test.sh` sets it); without it the test is
//! skipped, except under `CI=true`, where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_api as api;
use baton_client::Client;

use crate::common::{ADMIN_TOKEN, RunnerOptions, RunnerProcess, spec};

const JOBS: usize = 500;
const RUNNERS: usize = 6;
const PATIENCE: Duration = Duration::from_secs(300);

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// The URL of a fresh schema in the test database, or `None` (skip) when there is none.
async fn scratch_schema() -> Option<String> {
    let Some(url) = std::env::var("BATON_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but BATON_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL"
        );
        eprintln!("skipped: set BATON_TEST_POSTGRES_URL (scripts/test.sh does) to run the replica tests");
        return None;
    };
    let schema = format!("sigkill_{}_{}", std::process::id(), free_port());
    let create = format!("CREATE SCHEMA {schema}");
    let admin_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut admin =
            postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect to BATON_TEST_POSTGRES_URL");
        admin.batch_execute(&create).expect("create a scratch schema");
    })
    .await
    .expect("join the schema creation");
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}options=-c%20search_path%3D{schema}"))
}

async fn start_replica(db: &str, port: u16) -> ServerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--db", db])
        .args(["--lease-ttl", "10s", "--accept-timeout", "5s", "--session-ttl", "20s"])
        .args(["--long-poll-max", "5s", "--sweep-interval", "250ms"])
        .env("BATON_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BATON_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start baton server");
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None).expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.health().await.is_err() {
        assert!(Instant::now() < deadline, "replica on port {port} did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ServerProcess(child)
}

/// Retries `call` while its error is retryable (the client moves on to the next replica).
async fn retrying<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, baton_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(error) if error.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_of_three_replicas_during_a_run_of_500_jobs() {
    let Some(db) = scratch_schema().await else { return };
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut replicas = Vec::new();
    for port in &ports {
        replicas.push(Some(start_replica(&db, *port).await));
    }
    let urls: Vec<String> = ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect();
    // Each client starts on another replica: list `urls` rotated by `first`.
    let rotated = |first: usize| (0..3).map(|index| urls[(first + index) % 3].clone()).collect::<Vec<_>>().join(",");
    let admin = Client::new(&rotated(1), Some(ADMIN_TOKEN.into())).expect("admin client");

    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = dir.path().join("ledger");
    let mut runners = Vec::new();
    let request = api::CreateRegistrationTokenRequest::default();
    for index in 0..RUNNERS {
        let token = retrying("create a token", || admin.create_registration_token(&request)).await.token;
        let name = format!("runner-{index}");
        runners.push(RunnerProcess::start(
            &rotated(index % 3),
            &token,
            dir.path(),
            RunnerOptions { name: &name, capacity: 2, ephemeral: false, extra: &[] },
        ));
    }

    let step = format!(
        "printf 'start %s %s\\n' \"$MARK\" \"$(date +%s%N)\" >> {ledger}; sleep 0.02; printf 'end %s %s\\n' \"$MARK\" \"$(date +%s%N)\" >> {ledger}",
        ledger = ledger.display()
    );
    let mut job_ids = Vec::new();
    let mut after_kill = BTreeSet::new();
    for index in 0..JOBS {
        if index == JOBS / 2 {
            // Replica 0 dies without a word: its runners' long-polls and renewals break.
            let mut killed = replicas[0].take().expect("replica 0 runs");
            killed.0.kill().expect("SIGKILL replica 0");
            let _ = killed.0.wait();
        }
        let mut job = spec(&format!("job-{index}"), &[step.as_str()]);
        job.env.insert("MARK".into(), format!("job-{index}"));
        let enqueued = retrying("enqueue", || admin.enqueue_job(&job)).await;
        if index >= JOBS / 2 {
            after_kill.insert(enqueued.id);
        }
        job_ids.push(enqueued.id);
    }

    // Every job concludes, successfully.
    let deadline = Instant::now() + PATIENCE;
    let mut jobs: BTreeMap<i64, api::Job> = BTreeMap::new();
    loop {
        let mut after = 0;
        jobs.clear();
        loop {
            let page = retrying("list jobs", || admin.list_jobs(after, 200)).await;
            let Some(last) = page.jobs.last() else { break };
            after = last.id;
            jobs.extend(page.jobs.into_iter().map(|job| (job.id, job)));
        }
        let open = jobs.values().filter(|job| job.state != "completed").count();
        if open == 0 && jobs.len() == JOBS {
            break;
        }
        assert!(Instant::now() < deadline, "{open} of {} jobs still open after {PATIENCE:?}", jobs.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &job_ids {
        let job = retrying("get a job", || admin.get_job(*id)).await;
        assert_eq!(job.conclusion.as_deref(), Some("success"), "job {id} concluded {job:?}");
    }

    // The runners that started on the killed replica moved on: every runner ran jobs enqueued
    // after the kill.
    let mut ran_after_kill: BTreeSet<i64> = BTreeSet::new();
    for id in &after_kill {
        let job = retrying("get a job", || admin.get_job(*id)).await;
        ran_after_kill.extend(job.attempts.iter().filter_map(|attempt| attempt.runner_id));
    }
    assert_eq!(ran_after_kill.len(), RUNNERS, "every runner ran jobs after the kill: {ran_after_kill:?}");

    // No job ran twice at once: per job, starts and ends alternate in time.
    let text = std::fs::read_to_string(&ledger).expect("read the ledger");
    let mut marks: BTreeMap<String, Vec<(u128, bool)>> = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(kind), Some(mark), Some(at)) = (fields.next(), fields.next(), fields.next()) else {
            panic!("a torn ledger line: {line:?}");
        };
        let at: u128 = at.parse().expect("a timestamp");
        marks.entry(mark.to_string()).or_default().push((at, kind == "start"));
    }
    assert_eq!(marks.len(), JOBS, "every job's step ran");
    for (mark, mut entries) in marks {
        entries.sort();
        let mut running = 0;
        for (_, start) in &entries {
            running += if *start { 1 } else { -1 };
            assert!((0..=1).contains(&running), "{mark} ran twice at once: {entries:?}");
        }
    }
    eprintln!("replicas: {JOBS} jobs concluded; {} runners ran jobs after the kill", ran_after_kill.len());
    drop(runners);
    drop(replicas);
}
