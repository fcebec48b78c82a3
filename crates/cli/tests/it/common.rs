//! Harness: an in-process server on 127.0.0.1, `baton runner` child processes, and a TCP
//! proxy that can cut the runner off from the server.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_api as api;
use baton_client::Client;
use baton_core::Timeouts;
use baton_server::{Config, Database, Server};
use baton_store::sqlite::Durability;

pub const ADMIN_TOKEN: &str = "bat_admin_cli-integration-tests";
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct TestServer {
    pub server: Option<Server>,
    pub admin: Client,
    pub url: String,
    pub dir: tempfile::TempDir,
}

pub fn timeouts(lease_ttl: Duration) -> Timeouts {
    Timeouts {
        lease_ttl,
        accept_timeout: Duration::from_secs(2),
        session_ttl: Duration::from_secs(4),
        long_poll_max: Duration::from_secs(2),
    }
}

impl TestServer {
    pub async fn start(timeouts: Timeouts) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database: Database::Sqlite { path: dir.path().join("baton.db"), durability: Durability::Normal },
            timeouts,
            sweep_interval: Duration::from_millis(25),
            admin_token: Some(ADMIN_TOKEN.into()),
            webhooks: baton_server::webhooks::WebhookSettings {
                allow: vec!["127.0.0.1".parse().expect("address")],
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_secs(1),
                ..Default::default()
            },
            execution: Default::default(),
            clock_origin: None,
        };
        let server = Server::start(config).await.expect("start the server");
        let url = server.url();
        let admin = Client::new(&url, Some(ADMIN_TOKEN.into())).expect("client");
        TestServer { server: Some(server), admin, url, dir }
    }

    pub async fn token(&self) -> String {
        self.admin
            .create_registration_token(&api::CreateRegistrationTokenRequest::default())
            .await
            .expect("token")
            .token
    }

    /// Starts a `baton runner` process with one slot, registered with a fresh token.
    pub async fn start_runner(&self, name: &str) -> RunnerProcess {
        let token = self.token().await;
        RunnerProcess::start(
            &self.url,
            &token,
            self.dir.path(),
            RunnerOptions { name, capacity: 1, ephemeral: false, extra: &[] },
        )
    }

    pub async fn enqueue(&self, name: &str, steps: &[&str]) -> api::Job {
        self.admin.enqueue_job(&spec(name, steps)).await.expect("enqueue")
    }

    pub async fn wait_job(&self, job_id: i64, what: &str, done: impl Fn(&api::Job) -> bool) -> api::Job {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let job = self.admin.get_job(job_id).await.expect("get job");
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "timed out waiting for job {job_id}: {what}; last seen {job:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_completed(&self, job_id: i64) -> api::Job {
        self.wait_job(job_id, "completed", |job| job.state == "completed").await
    }

    pub async fn log_text(&self, job_id: i64, attempt: u32) -> String {
        let page = self.admin.job_logs(job_id, attempt, 0).await.expect("logs");
        page.chunks.into_iter().map(|chunk| chunk.data).collect()
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("shutdown");
        }
    }
}

pub fn spec(name: &str, steps: &[&str]) -> api::JobSpec {
    api::JobSpec {
        name: name.into(),
        labels: vec![],
        env: BTreeMap::new(),
        steps: steps
            .iter()
            .map(|run| api::StepSpec {
                id: None,
                name: None,
                run: run.to_string(),
                shell: None,
                env: BTreeMap::new(),
                working_directory: None,
                continue_on_error: false,
                timeout_minutes: None,
                condition: None,
            })
            .collect(),
        timeout_minutes: None,
        max_attempts: None,
        contexts: None,
        outputs: None,
    }
}

/// A `baton runner` child process; killed when dropped.
pub struct RunnerProcess {
    pub child: Child,
}

pub struct RunnerOptions<'a> {
    pub name: &'a str,
    pub capacity: u32,
    pub ephemeral: bool,
    pub extra: &'a [&'a str],
}

impl RunnerProcess {
    pub fn start(server_url: &str, token: &str, root: &Path, options: RunnerOptions<'_>) -> RunnerProcess {
        let state_dir = root.join(options.name).join("state");
        let work_dir = root.join(options.name).join("work");
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
        command
            .args(["runner", "--server", server_url, "--token", token, "--name", options.name])
            .args(["--capacity", &options.capacity.to_string()])
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--work-dir")
            .arg(&work_dir)
            .args(["--sigint-grace", "300ms", "--sigterm-grace", "300ms", "--poll-wait", "2s"])
            .args(options.extra)
            .env("BATON_LOG", std::env::var("BATON_TEST_RUNNER_LOG").unwrap_or_else(|_| "error".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if options.ephemeral {
            command.arg("--ephemeral");
        }
        let child = command.spawn().expect("start baton runner");
        RunnerProcess { child }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    /// Waits for the process to exit, up to the patience.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the runner did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1 that forwards to `target` until told to cut the line; while cut it
/// refuses new connections and drops every open one.
pub struct Proxy {
    pub url: String,
    cut: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let accept_cut = cut.clone();
        let accept_generation = generation.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if accept_cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut_signal = accept_generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_signal.changed() => {}
                    }
                });
            }
        });
        Proxy { url, cut, generation }
    }

    /// Cuts the line: open connections drop, new ones are refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Polls `check` until it returns `Some`, or panics after the patience.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Processes whose environment carries `marker` (every process a job starts inherits it).
pub fn processes_with_env(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ"))
            && environ.split(|byte| *byte == 0).any(|pair| pair == marker.as_bytes())
        {
            // A zombie has no environment left; a live process with the marker counts.
            found.push(pid);
        }
    }
    found
}

/// Processes whose command line has `argument` as one of its arguments.
pub fn processes_with_args(argument: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && cmdline.split(|byte| *byte == 0).any(|arg| arg == argument.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}
