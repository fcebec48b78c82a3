//! `baton server`: configuration from flags, `BATON_*` variables and an optional TOML file, in
//! that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use baton_server::{Config, Database, Server};
use baton_store::sqlite::Durability;
use clap::{Args, ValueEnum};
use serde::Deserialize;

const DEFAULT_LISTEN: &str = "127.0.0.1:8420";
/// Largest configuration file read.
const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:8420].
    #[arg(long, env = "BATON_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the SQLite database [default: the user's data directory, e.g. ~/.local/share/baton].
    #[arg(long, env = "BATON_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory: nothing survives a restart. For trials and tests.
    #[arg(long, env = "BATON_MEMORY", conflicts_with = "data_dir")]
    memory: bool,
    /// A PostgreSQL database instead of SQLite: postgres://user:password@host:port/db. TLS when
    /// the URL asks: ?sslmode=verify-full&sslrootcert=/path/to/ca.pem (also prefer, require,
    /// verify-ca; sslcert and sslkey for a client certificate).
    #[arg(long, env = "BATON_DB", conflicts_with_all = ["data_dir", "memory"], hide_env_values = true)]
    db: Option<String>,
    /// A TOML file with any of: listen, data_dir, sqlite_synchronous, lease_ttl, accept_timeout,
    /// session_ttl, long_poll_max, sweep_interval (durations like "60s", "500ms", "2m").
    #[arg(long, env = "BATON_CONFIG")]
    config: Option<PathBuf>,
    /// SQLite durability: `normal` survives a crash of the process; `full` also survives power
    /// loss, at the cost of an fsync per commit [default: normal].
    #[arg(long, env = "BATON_SQLITE_SYNCHRONOUS", value_enum)]
    sqlite_synchronous: Option<Synchronous>,
    /// How long a lease lasts after an accept or renewal [default: 60s].
    #[arg(long, env = "BATON_LEASE_TTL", value_parser = parse_duration)]
    lease_ttl: Option<Duration>,
    /// How long an offer waits for its accept before it is re-offered [default: 15s].
    #[arg(long, env = "BATON_ACCEPT_TIMEOUT", value_parser = parse_duration)]
    accept_timeout: Option<Duration>,
    /// How long a runner session lives after its last poll [default: 90s].
    #[arg(long, env = "BATON_SESSION_TTL", value_parser = parse_duration)]
    session_ttl: Option<Duration>,
    /// The longest long-poll wait a runner may ask for [default: 60s].
    #[arg(long, env = "BATON_LONG_POLL_MAX", value_parser = parse_duration)]
    long_poll_max: Option<Duration>,
    /// How often the expiry sweepers run [default: 1s].
    #[arg(long, env = "BATON_SWEEP_INTERVAL", value_parser = parse_duration)]
    sweep_interval: Option<Duration>,
    /// Addresses webhooks may reach although they are loopback or link-local, comma-separated
    /// (e.g. 127.0.0.1 for a receiver on this machine).
    #[arg(long, env = "BATON_WEBHOOK_ALLOW", value_delimiter = ',')]
    webhook_allow: Vec<std::net::IpAddr>,
    /// The longest wait between two attempts of a failing webhook delivery.
    #[arg(long, env = "BATON_WEBHOOK_RETRY_MAX", value_parser = parse_duration)]
    webhook_retry_max: Option<Duration>,
    /// How long a failing webhook delivery is retried before it fails for good.
    #[arg(long, env = "BATON_WEBHOOK_HORIZON", value_parser = parse_duration)]
    webhook_horizon: Option<Duration>,
    /// Run the autoscaler in this process for the pools of this TOML file (needs BATON_ADMIN_TOKEN).
    #[arg(long, env = "BATON_SCALER_CONFIG")]
    scaler_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Synchronous {
    Normal,
    Full,
}

/// The TOML file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    sqlite_synchronous: Option<Synchronous>,
    lease_ttl: Option<String>,
    accept_timeout: Option<String>,
    session_ttl: Option<String>,
    long_poll_max: Option<String>,
    sweep_interval: Option<String>,
}

/// Parses `500ms`, `60s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 =
        digits.parse().map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 60s, 2m or 1h"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "" | "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    if duration > Duration::from_secs(7 * 24 * 3600) {
        return Err(format!("{text:?} is longer than a week"));
    }
    Ok(duration)
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let metadata = std::fs::metadata(path).with_context(|| format!("read config file {}", path.display()))?;
    if metadata.len() > CONFIG_FILE_BYTES_MAX {
        bail!("config file {} is over 1 MiB", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parse config file {}", path.display()))
}

fn file_duration(field: &str, value: Option<&String>) -> anyhow::Result<Option<Duration>> {
    value
        .map(|text| parse_duration(text).map_err(|message| anyhow::anyhow!("config file: {field}: {message}")))
        .transpose()
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("org", "baton", "baton")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .context("find the user's data directory; pass --data-dir")
}

pub fn build_config(args: &ServerArgs) -> anyhow::Result<Config> {
    let file = match &args.config {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    let listen =
        args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default address parses"));
    let durability = match args.sqlite_synchronous.or(file.sqlite_synchronous) {
        Some(Synchronous::Full) => Durability::Full,
        Some(Synchronous::Normal) | None => Durability::Normal,
    };
    let database = if let Some(url) = &args.db {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("--db must be a postgres:// URL (for SQLite, use --data-dir)");
        }
        Database::Postgres { url: url.clone() }
    } else if args.memory {
        Database::Memory
    } else {
        let dir = match args.data_dir.clone().or(file.data_dir) {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        Database::Sqlite { path: dir.join("baton.db"), durability }
    };
    let mut config = Config::new(listen, database);
    let pick = |flag: Option<Duration>, field: &str, value: Option<&String>| -> anyhow::Result<Option<Duration>> {
        Ok(flag.or(file_duration(field, value)?))
    };
    if let Some(ttl) = pick(args.lease_ttl, "lease_ttl", file.lease_ttl.as_ref())? {
        config.timeouts.lease_ttl = ttl;
    }
    if let Some(timeout) = pick(args.accept_timeout, "accept_timeout", file.accept_timeout.as_ref())? {
        config.timeouts.accept_timeout = timeout;
    }
    if let Some(ttl) = pick(args.session_ttl, "session_ttl", file.session_ttl.as_ref())? {
        config.timeouts.session_ttl = ttl;
    }
    if let Some(max) = pick(args.long_poll_max, "long_poll_max", file.long_poll_max.as_ref())? {
        config.timeouts.long_poll_max = max;
    }
    if let Some(interval) = pick(args.sweep_interval, "sweep_interval", file.sweep_interval.as_ref())? {
        if interval < Duration::from_millis(10) {
            bail!("sweep interval must be at least 10ms");
        }
        config.sweep_interval = interval;
    }
    config.timeouts.validate().context("check the timeouts")?;
    config.admin_token = std::env::var("BATON_ADMIN_TOKEN").ok().filter(|token| !token.is_empty());
    config.webhooks.allow = args.webhook_allow.clone();
    if let Some(max) = args.webhook_retry_max {
        if max < Duration::from_millis(10) {
            bail!("--webhook-retry-max must be at least 10ms");
        }
        config.webhooks.retry_max = max;
        config.webhooks.retry_initial = config.webhooks.retry_initial.min(max);
    }
    if let Some(horizon) = args.webhook_horizon {
        config.webhooks.horizon = horizon;
    }
    Ok(config)
}

/// Raises the soft open-file limit to the hard one: every runner long-polling holds a socket.
fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(%error, soft, hard, "could not raise the open-file limit");
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    raise_file_limit();
    let config = build_config(&args)?;
    let scaler_config = match &args.scaler_config {
        Some(path) => Some(baton_scaler::Config::load(path).context("read the scaler's pools")?),
        None => None,
    };
    let configured_token = config.admin_token.clone();
    let data_dir = match &config.database {
        Database::Sqlite { path, .. } => path.parent().map(Path::to_path_buf),
        Database::Memory | Database::SharedMemory(_) | Database::Postgres { .. } => None,
    };
    let server = Server::start(config).await.context("start the server")?;
    if let Some(token) = server.generated_admin_token() {
        // Shown once: only its hash is stored.
        println!("Admin token (shown once, keep it safe; set BATON_ADMIN_TOKEN to choose your own):\n  {token}");
    }
    println!("baton server listening on {}", server.url());
    let scaler = match scaler_config {
        Some(scaler_config) => {
            let token = configured_token
                .or_else(|| server.generated_admin_token().map(str::to_string))
                .context("--scaler-config needs the admin token: set BATON_ADMIN_TOKEN")?;
            let client = baton_client::Client::new(&server.url(), Some(token))?;
            let work_dir = match data_dir {
                Some(dir) => dir.join("scaler"),
                None => std::env::temp_dir().join(format!("baton-scaler-{}", std::process::id())),
            };
            let defaults =
                baton_scaler::Defaults { program: std::env::current_exe().context("find this program")?, work_dir };
            let scaler =
                std::sync::Arc::new(baton_scaler::Scaler::new(client, server.url(), &scaler_config, &defaults));
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(scaler.run(stopped));
            println!("autoscaler running for {} pool(s)", scaler_config.pools.len());
            Some((stop, task))
        }
        None => None,
    };
    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some((stop, task)) = scaler {
        let _ = stop.send(true);
        let _ = task.await;
    }
    server.shutdown().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "install the SIGTERM handler");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("9999h").is_err());
    }
}
