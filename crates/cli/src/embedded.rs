//! The fleet `baton run` starts when no server is given: a server on a loopback port over
//! SQLite (in `--data-dir` or a temporary directory) and one local runner with a slot per core,
//! both stopped when the run is over.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use baton_api as api;
use baton_client::Client;
use baton_runner::listener::{self, Registration, RunnerConfig, Signal};
use baton_runner::protocol::Escalation;
use baton_server::{Config, Database, Server};
use baton_store::sqlite::Durability;
use tokio::sync::mpsc;

/// How long a stopping runner may take to say goodbye.
const RUNNER_STOP_GRACE: Duration = Duration::from_secs(15);

/// A running embedded fleet.
#[derive(Debug)]
pub struct Embedded {
    server: Server,
    runner: tokio::task::JoinHandle<anyhow::Result<()>>,
    signals: mpsc::UnboundedSender<Signal>,
    pub client: Client,
    /// Removed when the fleet is dropped, unless the user chose the directory.
    _temp: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub data_dir: Option<PathBuf>,
    pub capacity: u32,
    /// Extra runner labels (with `--strict-labels`, jobs must match them).
    pub labels: Vec<String>,
}

impl Embedded {
    pub async fn start(options: EmbeddedOptions) -> anyhow::Result<Embedded> {
        let (temp, dir) = match options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
                (None, dir)
            }
            None => {
                let temp =
                    tempfile::Builder::new().prefix("baton-run-").tempdir().context("create a temporary directory")?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let admin_token = baton_server::auth::generate(baton_server::auth::ADMIN_PREFIX);
        let mut config = Config::new(
            "127.0.0.1:0".parse().expect("a loopback address parses"),
            Database::Sqlite { path: dir.join("baton.db"), durability: Durability::Normal },
        );
        config.admin_token = Some(admin_token.clone());
        let server = Server::start(config).await.context("start the embedded server")?;
        let client = Client::new(&server.url(), Some(admin_token))?;
        let token = client
            .create_registration_token(&api::CreateRegistrationTokenRequest {
                labels: Vec::new(),
                pool: None,
                ttl_secs: Some(600),
                max_uses: Some(1),
            })
            .await
            .context("create the local runner's registration token")?;
        let program = std::env::current_exe().context("find this program to start workers")?;
        let runner_dir = dir.join("runner");
        let config = RunnerConfig {
            server: server.url(),
            registration: Registration::Token(token.token),
            name: "local".into(),
            labels: options.labels,
            capacity: options.capacity,
            ephemeral: false,
            work_dir: runner_dir.join("work"),
            state_dir: runner_dir,
            escalation: Escalation::default(),
            poll_wait: Duration::from_secs(30),
            worker_command: vec![program.display().to_string(), baton_runner::WORKER_SUBCOMMAND.to_string()],
        };
        let (signals, receiver) = mpsc::unbounded_channel();
        let runner = tokio::spawn(listener::run(config, receiver));
        Ok(Embedded { server, runner, signals, client, _temp: temp })
    }

    /// Stops the runner (cancelling anything still running) and the server.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.signals.send(Signal::Stop);
        match tokio::time::timeout(RUNNER_STOP_GRACE, self.runner).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => {
                tracing::warn!(error = %format!("{error:#}"), "the local runner stopped with an error")
            }
            Ok(Err(error)) => tracing::warn!(%error, "the local runner task failed"),
            Err(_) => tracing::warn!("the local runner did not stop in time"),
        }
        self.server.shutdown().await
    }
}
