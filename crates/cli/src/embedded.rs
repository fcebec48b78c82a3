//! The fleet `baton run` starts when no server is given: a server on a loopback port over
//! SQLite (in `--data-dir` or a temporary directory) and the autoscaler with one `process`
//! pool, which keeps one local runner with a slot per core; all stopped when the run is over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_client::Client;
use baton_scaler::{Config, Defaults, PoolConfig, ProviderConfig, Scaler};
use baton_server::{Config as ServerConfig, Database, Server};
use baton_store::sqlite::Durability;
use tokio::sync::watch;

/// A running embedded fleet.
#[derive(Debug)]
pub struct Embedded {
    server: Server,
    scaler: Arc<Scaler>,
    scaler_task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    pub client: Client,
    /// Removed when the fleet is dropped, unless the user chose the directory.
    _temp: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub data_dir: Option<PathBuf>,
    pub capacity: u32,
    /// The local runner's labels; empty: it takes the jobs submitted with `any_runner`.
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
        let mut config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("a loopback address parses"),
            Database::Sqlite { path: dir.join("baton.db"), durability: Durability::Normal },
        );
        config.admin_token = Some(admin_token.clone());
        let server = Server::start(config).await.context("start the embedded server")?;
        let client = Client::new(&server.url(), Some(admin_token))?;
        let pool = PoolConfig {
            name: "local".into(),
            labels: options.labels,
            min_idle: 1,
            max_runners: 1,
            idle_timeout: Duration::from_secs(24 * 3600),
            ephemeral: false,
            register_timeout: Duration::from_secs(60),
            scale_up_batch: 1,
            capacity: options.capacity,
            provider: ProviderConfig::Process { work_dir: None, program: None },
        };
        let scaler_config = Config { reconcile_interval: Duration::from_secs(1), pools: vec![pool] };
        let defaults = Defaults {
            program: std::env::current_exe().context("find this program to start runners")?,
            work_dir: dir.join("runners"),
        };
        let scaler = Arc::new(Scaler::new(client.clone(), server.url(), &scaler_config, &defaults));
        let (stop, stopped) = watch::channel(false);
        let scaler_task = tokio::spawn(scaler.clone().run(stopped));
        Ok(Embedded { server, scaler, scaler_task, stop, client, _temp: temp })
    }

    /// Stops the scaler, retires and stops the local runner, then the server.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let _ = self.scaler_task.await;
        let busy = self.scaler.retire_all().await;
        if busy > 0 {
            tracing::warn!(busy, "local runners were still busy at shutdown");
        }
        self.server.shutdown().await
    }
}
