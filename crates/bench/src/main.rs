//! `baton-bench`: Baton's figures, measured the same way every time.
//!
//! Started by `cargo xtask bench`, which builds the release binaries first. Everything runs on
//! loopback against a real `baton server` process (SQLite in a temp dir, shipped durability
//! unless told otherwise) and, where a figure needs one, real `baton runner` processes. Every
//! loop is bounded in count and time. Progress goes to stderr; stdout gets ONE JSON object. A
//! figure the code cannot measure yet is `null`, never made up.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton_api as api;
use baton_client::Client;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "bat_admin_benchmark";

#[derive(Debug, Clone)]
struct Args {
    baton: PathBuf,
    quick: bool,
    synchronous: String,
    /// Measure only this figure (for profiling one of them).
    only: Option<String>,
    /// A PostgreSQL server's URL: each benchmark server gets a fresh database on it.
    postgres: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut baton = None;
    let mut quick = false;
    let mut synchronous = "normal".to_string();
    let mut only = None;
    let mut postgres = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--baton" => baton = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--postgres" => postgres = Some(args.next().context("--postgres needs a postgres:// URL")?),
            "--sqlite-synchronous" => synchronous = args.next().context("--sqlite-synchronous needs normal or full")?,
            "--only" => {
                only =
                    Some(args.next().context(
                        "--only needs dispatch, runner, throughput, workflows, scaler, webhooks or sessions",
                    )?)
            }
            other => bail!(
                "unknown argument {other:?}; usage: baton-bench --baton PATH [--quick] [--sqlite-synchronous normal|full]"
            ),
        }
    }
    let baton = baton.context("--baton PATH (the release `baton` binary) is required")?;
    anyhow::ensure!(matches!(synchronous.as_str(), "normal" | "full"), "--sqlite-synchronous is normal or full");
    if let Some(name) = &only {
        anyhow::ensure!(
            matches!(
                name.as_str(),
                "dispatch" | "runner" | "throughput" | "workflows" | "scaler" | "webhooks" | "sessions"
            ),
            "--only takes dispatch, runner, throughput, workflows, scaler, webhooks or sessions"
        );
    }
    Ok(Args { baton, quick, synchronous, only, postgres })
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// Raises the open-file limit to the hard limit: 10,000 idle sessions need 10,000 sockets on
/// each side.
fn raise_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) => {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
            getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft).unwrap_or(0)
        }
        Err(_) => 0,
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

fn summary(histogram: &Histogram<u64>) -> Value {
    // Recorded in microseconds, reported in milliseconds.
    let ms = |micros: u64| (micros as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({ "n": histogram.len(), "p50": ms(histogram.value_at_quantile(0.5)), "p99": ms(histogram.value_at_quantile(0.99)) })
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A child process of the benchmark with its own temp dir; killed when dropped.
struct Spawned {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct ServerProcess {
    process: Spawned,
    url: String,
    admin: Client,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn start_server(args: &Args) -> anyhow::Result<ServerProcess> {
    start_server_with(args, &[]).await
}

/// A fresh database on the benchmark's PostgreSQL server, for one benchmark server.
fn fresh_postgres_database(url: &str) -> anyhow::Result<String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!("bench_{}_{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let status = Command::new("psql")
        .args([url, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .stdout(Stdio::null())
        .status()
        .context("run psql to create a benchmark database")?;
    anyhow::ensure!(status.success(), "psql could not create database {name}");
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

async fn start_server_with(args: &Args, extra: &[&str]) -> anyhow::Result<ServerProcess> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut command = Command::new(&args.baton);
    command.args(["server", "--listen", &format!("127.0.0.1:{port}")]);
    match &args.postgres {
        Some(url) => {
            command.args(["--db", &fresh_postgres_database(url)?]);
        }
        None => {
            command.arg("--data-dir").arg(dir.path()).args(["--sqlite-synchronous", &args.synchronous]);
        }
    }
    let child = command
        .args(extra)
        .env("BATON_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BATON_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start baton server")?;
    let url = format!("http://127.0.0.1:{port}");
    let admin = Client::new(&url, Some(ADMIN_TOKEN.into()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin.health().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(ServerProcess { process: Spawned { child, _dir: dir }, url, admin })
}

fn job_spec(name: &str, run: &str) -> api::JobSpec {
    api::JobSpec {
        name: name.into(),
        labels: vec![],
        env: Default::default(),
        steps: vec![api::StepSpec {
            id: None,
            name: None,
            run: run.into(),
            shell: None,
            env: Default::default(),
            working_directory: None,
            continue_on_error: false,
            timeout_minutes: None,
            condition: None,
        }],
        timeout_minutes: None,
        max_attempts: None,
        contexts: None,
        outputs: None,
    }
}

/// A runner that speaks the protocol from this process: no worker, no steps.
struct SyntheticRunner {
    client: Client,
    session_id: i64,
    ack: i64,
}

async fn synthetic_runner(server: &ServerProcess, token: &str, name: &str) -> anyhow::Result<SyntheticRunner> {
    let anonymous = Client::new(&server.url, None)?;
    let registered = anonymous
        .register(&api::RegisterRequest {
            token: token.into(),
            name: name.into(),
            labels: vec![],
            capacity: 1,
            ephemeral: false,
        })
        .await?;
    let client = anonymous.with_token(registered.credential);
    let session = client.open_session().await?;
    Ok(SyntheticRunner { client, session_id: session.session_id, ack: 0 })
}

async fn registration_token(server: &ServerProcess) -> anyhow::Result<String> {
    Ok(server.admin.create_registration_token(&api::CreateRegistrationTokenRequest::default()).await?.token)
}

async fn long_polls_waiting(admin: &Client) -> anyhow::Result<u64> {
    let text = admin.metrics_text().await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("baton_long_polls_waiting "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0))
}

/// Job enqueued -> accept committed, with the runner already long-polling.
async fn dispatch_latency(args: &Args, samples: usize) -> anyhow::Result<Value> {
    let server = start_server(args).await?;
    let token = registration_token(&server).await?;
    let mut runner = synthetic_runner(&server, &token, "dispatch").await?;
    let mut histogram = new_histogram();
    // Where the time goes, each from the same start: the enqueue answered, the offer in the
    // runner's hands, the accept answered (the total).
    let (mut enqueued, mut offered) = (new_histogram(), new_histogram());
    let spec = job_spec("dispatch", "true");
    for _ in 0..samples {
        let poller = runner.client.clone();
        let (session, ack) = (runner.session_id, runner.ack);
        let poll = tokio::spawn(async move { poller.poll(session, Duration::from_secs(10), 1, ack).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while long_polls_waiting(&server.admin).await? < 1 {
            anyhow::ensure!(Instant::now() < deadline, "the long-poll never parked");
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        server.admin.enqueue_job(&spec).await?;
        enqueued.record(started.elapsed().as_micros() as u64)?;
        let messages = poll.await??.messages;
        offered.record(started.elapsed().as_micros() as u64)?;
        let offer = messages
            .iter()
            .find_map(|message| match &message.body {
                api::MessageBody::JobOffer(offer) => Some(offer.clone()),
                _ => None,
            })
            .context("the poll returned no offer")?;
        let fence = api::FencedRequest { epoch: offer.epoch, token: offer.token.clone() };
        runner.client.accept(offer.job_id, offer.attempt, &fence).await?;
        histogram.record(started.elapsed().as_micros() as u64)?;
        runner.ack = messages.last().map(|message| message.id).unwrap_or(runner.ack);
        runner
            .client
            .complete(
                offer.job_id,
                offer.attempt,
                &api::CompleteRequest {
                    epoch: offer.epoch,
                    token: offer.token,
                    result: api::AttemptResult::Success,
                    outputs: Default::default(),
                    summary: None,
                },
            )
            .await?;
    }
    let mut figures = summary(&histogram);
    figures["stages"] = json!({ "enqueue_answered": summary(&enqueued), "offer_received": summary(&offered) });
    Ok(figures)
}

async fn start_runner(args: &Args, server: &ServerProcess, name: &str) -> anyhow::Result<Spawned> {
    let dir = tempfile::tempdir()?;
    let token = registration_token(server).await?;
    let child = Command::new(&args.baton)
        .args(["runner", "--server", &server.url, "--token", &token, "--name", name])
        .arg("--state-dir")
        .arg(dir.path())
        .env("BATON_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start baton runner")?;
    // Wait until it is online and idle, with its first long-poll parked.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runners = server.admin.list_runners(0, 100).await?;
        if runners.runners.iter().any(|runner| runner.name == name && runner.status == "idle")
            && long_polls_waiting(&server.admin).await? >= 1
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the runner never came online");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Spawned { child, _dir: dir })
}

/// Waits for `job.completed` of `job_id` on the event stream.
async fn wait_completed(events: &mut baton_client::EventStream, job_id: i64) -> anyhow::Result<api::Event> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("no event within 30 s")?
            .context("the event stream ended")??;
        if event.kind == "job.completed" && event.job_id == Some(job_id) {
            return Ok(event);
        }
    }
}

/// Submit -> completed for a one-step `echo hi` job on a real runner, and the runner's idle
/// memory, and offer -> first step started.
async fn with_real_runner(args: &Args, samples: usize) -> anyhow::Result<(Value, Option<f64>, Value)> {
    let server = start_server(args).await?;
    let runner = start_runner(args, &server, "bench-runner").await?;
    // Let the idle listener settle before reading its memory.
    let idle_rss = rss_mib(runner.child.id());
    let mut events = server.admin.events(0).await?;
    let mut e2e = new_histogram();
    let spec = job_spec("e2e", "echo hi");
    for _ in 0..samples {
        let started = Instant::now();
        let job = server.admin.enqueue_job(&spec).await?;
        wait_completed(&mut events, job.id).await?;
        e2e.record(started.elapsed().as_micros() as u64)?;
    }
    // Offer -> first step: the step prints its own start time in nanoseconds; the offer's time
    // is the job.offered event's (millisecond precision, same clock).
    let mut to_step = new_histogram();
    let probe = job_spec("probe", "date +%s%N");
    for _ in 0..samples.min(200) {
        let job = server.admin.enqueue_job(&probe).await?;
        let mut offered_at = None;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), events.next())
                .await
                .context("no event")?
                .context("stream ended")??;
            if event.job_id == Some(job.id) && event.kind == "job.offered" {
                offered_at = Some(event.at.clone());
            }
            if event.job_id == Some(job.id) && event.kind == "job.completed" {
                break;
            }
        }
        let offered: jiff::Timestamp = offered_at.context("no job.offered event")?.parse()?;
        let log: String =
            server.admin.job_logs(job.id, 1, 0).await?.chunks.into_iter().map(|chunk| chunk.data).collect();
        let step_ns: i128 =
            log.lines().find_map(|line| line.trim().parse::<i128>().ok()).context("the probe printed no time")?;
        let delta_us = (step_ns - offered.as_nanosecond()) / 1000;
        to_step.record(u64::try_from(delta_us.max(1)).unwrap_or(1))?;
    }
    drop(runner);
    Ok((summary(&e2e), idle_rss, summary(&to_step)))
}

/// Jobs per second through the full protocol, driven by 16 synthetic runners.
async fn throughput(args: &Args, window: Duration) -> anyhow::Result<f64> {
    const RUNNERS: usize = 16;
    const ENQUEUERS: usize = 4;
    const BACKLOG_MAX: u64 = 256;
    let server = start_server(args).await?;
    let token = registration_token(&server).await?;
    let enqueued = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + window + Duration::from_secs(1);
    let mut tasks = Vec::new();
    for index in 0..RUNNERS {
        let mut runner = synthetic_runner(&server, &token, &format!("swarm-{index}")).await?;
        let completed = completed.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(response) = runner.client.poll(runner.session_id, Duration::from_secs(1), 1, runner.ack).await
                else {
                    continue;
                };
                for message in response.messages {
                    runner.ack = message.id;
                    if let api::MessageBody::JobOffer(offer) = message.body {
                        let fence = api::FencedRequest { epoch: offer.epoch, token: offer.token.clone() };
                        if runner.client.accept(offer.job_id, offer.attempt, &fence).await.is_ok() {
                            let request = api::CompleteRequest {
                                epoch: offer.epoch,
                                token: offer.token,
                                result: api::AttemptResult::Success,
                                outputs: Default::default(),
                                summary: None,
                            };
                            if runner.client.complete(offer.job_id, offer.attempt, &request).await.is_ok() {
                                completed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }));
    }
    let spec = job_spec("swarm", "true");
    let measure_start = Instant::now();
    let baseline = completed.load(Ordering::Relaxed);
    for _ in 0..ENQUEUERS {
        let admin = server.admin.clone();
        let spec = spec.clone();
        let (enqueued, completed) = (enqueued.clone(), completed.clone());
        tasks.push(tokio::spawn(async move {
            while measure_start.elapsed() < window {
                if enqueued.load(Ordering::Relaxed).saturating_sub(completed.load(Ordering::Relaxed)) >= BACKLOG_MAX {
                    tokio::task::yield_now().await;
                    continue;
                }
                if admin.enqueue_job(&spec).await.is_ok() {
                    enqueued.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(window).await;
    let done = completed.load(Ordering::Relaxed) - baseline;
    let elapsed = measure_start.elapsed().as_secs_f64();
    for task in tasks {
        task.abort();
    }
    Ok((done as f64 / elapsed).round())
}

/// Server memory with `n` runners long-polling at once.
async fn idle_sessions(args: &Args, n: usize) -> anyhow::Result<Value> {
    let server = start_server(args).await?;
    let pid = server.process.child.id();
    // The server's RSS after each stage, so the figure's parts show: the idle server, the
    // runners' registrations (store and caches), their sessions, their parked long-polls
    // (connections and waiting requests).
    let started = rss_mib(pid);
    let token = registration_token(&server).await?;
    let anonymous = Client::new(&server.url, None)?;
    let mut runners = Vec::with_capacity(n);
    let batch = 64;
    for start in (0..n).step_by(batch) {
        let mut pending = Vec::new();
        for index in start..(start + batch).min(n) {
            let anonymous = anonymous.clone();
            let token = token.clone();
            pending.push(tokio::spawn(async move {
                let registered = anonymous
                    .register(&api::RegisterRequest {
                        token,
                        name: format!("idle-{index}"),
                        labels: vec![],
                        capacity: 1,
                        ephemeral: false,
                    })
                    .await?;
                let client = anonymous.with_token(registered.credential);
                let session = client.open_session().await?;
                anyhow::Ok((client, session.session_id))
            }));
        }
        for task in pending {
            runners.push(task.await??);
        }
    }
    let registered = rss_mib(pid);
    progress(&format!("idle sessions: {n} runners registered; parking their long-polls"));
    let mut polls = Vec::with_capacity(n);
    for (client, session_id) in runners {
        polls.push(tokio::spawn(async move { client.poll(session_id, Duration::from_secs(50), 1, 0).await }));
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let waiting = long_polls_waiting(&server.admin).await?;
        if waiting as usize >= n {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {waiting} of {n} long-polls parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = rss_mib(pid);
    for poll in polls {
        poll.abort();
    }
    Ok(json!({
        "n": n,
        "server_rss_mib": rss,
        "server_rss_mib_by_stage": { "started": started, "sessions_open": registered, "polls_parked": rss },
    }))
}

/// A runner completes a job -> the `workflow_job` `completed` webhook reaches a receiver on
/// loopback. Measured from just before the completion request to the receiver's handler.
async fn webhook_latency(args: &Args, samples: usize) -> anyhow::Result<Value> {
    let server = start_server_with(args, &["--webhook-allow", "127.0.0.1"]).await?;
    let (sender, mut receipts) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sender = sender.clone();
            async move {
                let at = Instant::now();
                if let Ok(value) = serde_json::from_slice::<Value>(&body)
                    && value["action"] == "completed"
                    && let Some(job_id) = value["workflow_job"]["id"].as_i64()
                {
                    let _ = sender.send((job_id, at));
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    server
        .admin
        .create_webhook(&api::CreateWebhookRequest {
            url,
            events: vec!["workflow_job".into()],
            secret: None,
            ordered: false,
        })
        .await?;
    let token = registration_token(&server).await?;
    let mut runner = synthetic_runner(&server, &token, "webhooks").await?;
    let spec = job_spec("hooked", "true");
    let mut histogram = new_histogram();
    for _ in 0..samples {
        server.admin.enqueue_job(&spec).await?;
        let polled = runner.client.poll(runner.session_id, Duration::from_secs(10), 1, runner.ack).await?;
        runner.ack = polled.messages.last().map(|message| message.id).unwrap_or(runner.ack);
        let offer = polled
            .messages
            .iter()
            .find_map(|message| match &message.body {
                api::MessageBody::JobOffer(offer) => Some(offer.clone()),
                _ => None,
            })
            .context("the poll returned no offer")?;
        let fence = api::FencedRequest { epoch: offer.epoch, token: offer.token.clone() };
        runner.client.accept(offer.job_id, offer.attempt, &fence).await?;
        let started = Instant::now();
        let request = api::CompleteRequest {
            epoch: offer.epoch,
            token: offer.token,
            result: api::AttemptResult::Success,
            outputs: Default::default(),
            summary: None,
        };
        runner.client.complete(offer.job_id, offer.attempt, &request).await?;
        loop {
            let (job_id, at) = tokio::time::timeout(Duration::from_secs(10), receipts.recv())
                .await
                .context("no webhook within 10 s")?
                .context("the receiver stopped")?;
            if job_id == offer.job_id {
                histogram
                    .record(u64::try_from(at.saturating_duration_since(started).as_micros()).unwrap_or(u64::MAX))?;
                break;
            }
        }
    }
    Ok(summary(&histogram))
}

fn event_time(event: &api::Event) -> anyhow::Result<jiff::Timestamp> {
    event.at.parse().with_context(|| format!("event time {:?}", event.at))
}

/// With a cold pool (ephemeral process runners, none idle): job queued -> `scaler.create`
/// recorded (the machine is being started), and job queued -> job started on the new runner.
/// Both from the server's event times, one job at a time.
async fn scaler_latency(args: &Args, samples: usize) -> anyhow::Result<(Value, Value)> {
    let server = start_server(args).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("scaler.toml");
    std::fs::write(
        &config,
        "reconcile_interval = \"60s\"\n[[pool]]\nname = \"bench\"\nlabels = [\"bench\"]\nmax_runners = 4\n\
         idle_timeout = \"60s\"\nephemeral = true\nregister_timeout = \"60s\"\nprovider = { kind = \"process\" }\n",
    )?;
    let child = Command::new(&args.baton)
        .args(["scaler", "--server", &server.url, "--token", ADMIN_TOKEN])
        .arg("--config")
        .arg(&config)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .env("BATON_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start baton scaler")?;
    let _scaler = Spawned { child, _dir: dir };
    let mut events = server.admin.events(0).await?;
    let (mut to_create, mut to_started) = (new_histogram(), new_histogram());
    // The first job also waits for the scaler to come up; it is not counted.
    for sample in 0..=samples {
        let mut spec = job_spec(&format!("cold-{sample}"), "true");
        spec.labels = vec!["bench".into()];
        let job = server.admin.enqueue_job(&spec).await?;
        let (mut queued, mut created, mut started) = (None, None, None);
        while started.is_none() || created.is_none() || queued.is_none() {
            let event = tokio::time::timeout(Duration::from_secs(30), events.next())
                .await
                .context("no event within 30 s")?
                .context("the event stream ended")??;
            match event.kind.as_str() {
                "job.queued" if event.job_id == Some(job.id) => queued = Some(event_time(&event)?),
                "job.started" if event.job_id == Some(job.id) => started = Some(event_time(&event)?),
                "scaler.create" if queued.is_some() && created.is_none() => created = Some(event_time(&event)?),
                _ => {}
            }
        }
        wait_completed(&mut events, job.id).await?;
        if sample == 0 {
            continue;
        }
        let micros = |from: jiff::Timestamp, to: jiff::Timestamp| {
            u64::try_from(to.duration_since(from).as_micros()).unwrap_or(0).max(1)
        };
        let (queued, created, started) =
            (queued.unwrap_or_default(), created.unwrap_or_default(), started.unwrap_or_default());
        to_create.record(micros(queued, created))?;
        to_started.record(micros(queued, started))?;
    }
    Ok((summary(&to_create), summary(&to_started)))
}

/// Wall time of `baton run FILE` on its embedded fleet, from start to exit, `runs` times.
fn baton_run_wall(args: &Args, file: &std::path::Path, runs: usize) -> anyhow::Result<Value> {
    let mut histogram = new_histogram();
    for _ in 0..runs {
        let started = Instant::now();
        let status = std::process::Command::new(&args.baton)
            .arg("run")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("run {}", args.baton.display()))?;
        anyhow::ensure!(status.success(), "baton run {} failed: {status}", file.display());
        histogram.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))?;
    }
    Ok(summary(&histogram))
}

/// `baton run` of the hello example and of a 20-job matrix of `echo` steps.
fn workflow_runs(args: &Args, runs: usize) -> anyhow::Result<(Value, Value)> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let hello = baton_run_wall(args, &examples.join("hello.yml"), runs)?;
    let dir = tempfile::tempdir()?;
    let matrix = dir.path().join("matrix20.yml");
    let legs: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    std::fs::write(
        &matrix,
        format!(
            "on: push\njobs:\n  echo:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        n: [{}]\n    \
             steps:\n      - run: echo \"leg ${{{{ matrix.n }}}}\"\n",
            legs.join(", ")
        ),
    )?;
    let matrix = baton_run_wall(args, &matrix, runs)?;
    Ok((hello, matrix))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let file_limit = raise_file_limit();
    let samples = if args.quick { 200 } else { 1000 };
    let sessions = if args.quick { 1000 } else { 10_000 };
    // The bench and the server are separate processes, each holding one socket per session.
    if args.only.as_deref().is_none_or(|only| only == "sessions") {
        anyhow::ensure!(
            file_limit as usize > sessions + 1000,
            "the open-file limit is {file_limit}; {sessions} idle sessions need more: raise the hard limit (ulimit -Hn)"
        );
    }
    let window = if args.quick { Duration::from_secs(3) } else { Duration::from_secs(10) };
    let started = Instant::now();

    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    let mut dispatch = Value::Null;
    if wanted("dispatch") {
        progress(&format!("dispatch latency ({samples} samples)"));
        dispatch = dispatch_latency(&args, samples).await?;
    }
    let (mut e2e, mut runner_rss, mut offer_to_step) = (Value::Null, None, Value::Null);
    if wanted("runner") {
        progress(&format!("end-to-end trivial job on a real runner ({samples} samples)"));
        (e2e, runner_rss, offer_to_step) = with_real_runner(&args, samples).await?;
    }
    let mut jobs_per_s = Value::Null;
    if wanted("throughput") {
        progress(&format!("throughput over {window:?}"));
        jobs_per_s = json!(throughput(&args, window).await?);
    }
    let (mut run_hello, mut run_matrix) = (Value::Null, Value::Null);
    if wanted("workflows") {
        progress("baton run: hello and a 20-job matrix");
        (run_hello, run_matrix) = workflow_runs(&args, if args.quick { 5 } else { 20 })?;
    }
    let mut webhook = Value::Null;
    if wanted("webhooks") {
        progress(&format!("completion to webhook ({samples} samples)"));
        webhook = webhook_latency(&args, samples).await?;
    }
    let (mut queued_to_create, mut cold_queued_to_started) = (Value::Null, Value::Null);
    if wanted("scaler") {
        let samples = if args.quick { 10 } else { 50 };
        progress(&format!("autoscaler with a cold process pool ({samples} jobs)"));
        (queued_to_create, cold_queued_to_started) = scaler_latency(&args, samples).await?;
    }
    let mut idle = Value::Null;
    if wanted("sessions") {
        progress(&format!("{sessions} idle sessions"));
        idle = idle_sessions(&args, sessions).await?;
    }

    let figures = json!({
        "store": if args.postgres.is_some() { "postgres" } else { "sqlite" },
        "sqlite_synchronous": args.synchronous,
        "quick": args.quick,
        "dispatch_latency_ms": dispatch,
        "e2e_trivial_job_ms": e2e,
        "offer_to_first_step_ms": offer_to_step,
        "throughput_jobs_per_s": jobs_per_s,
        "idle_sessions": idle,
        "runner_idle_rss_mib": runner_rss,
        "completion_to_webhook_ms": webhook,
        "scaler_queued_to_create_ms": queued_to_create,
        "scaler_cold_queued_to_started_ms": cold_queued_to_started,
        "run_hello_wall_ms": run_hello,
        "run_matrix20_echo_wall_ms": run_matrix,
        "wall_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
