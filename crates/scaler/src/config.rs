//! The scaler's configuration: pools in a TOML file.
//!
//! ```toml
//! reconcile_interval = "10s"
//!
//! [[pool]]
//! name = "linux"
//! labels = ["self-hosted", "linux", "x64"]
//! min_idle = 0
//! max_runners = 10
//! idle_timeout = "5m"
//! ephemeral = true
//! register_timeout = "2m"
//! scale_up_batch = 10
//! provider = { kind = "process" }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Largest configuration file read.
const CONFIG_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is over 1 MiB")]
    TooLarge { path: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    reconcile_interval: Option<String>,
    #[serde(default)]
    pool: Vec<RawPool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    min_idle: u32,
    max_runners: u32,
    #[serde(default)]
    idle_timeout: Option<String>,
    #[serde(default)]
    ephemeral: Option<bool>,
    #[serde(default)]
    register_timeout: Option<String>,
    #[serde(default)]
    scale_up_batch: Option<u32>,
    #[serde(default)]
    capacity: Option<u32>,
    provider: ProviderConfig,
}

/// How a pool's machines are made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// Local child processes of `baton runner`.
    Process {
        /// Where each runner's work and state directories go [default: a temporary directory].
        #[serde(default)]
        work_dir: Option<PathBuf>,
        /// The `baton` program to start [default: this program].
        #[serde(default)]
        program: Option<PathBuf>,
    },
    /// A user's executable answering `create`, `terminate ID` and `list POOL`.
    Exec {
        command: PathBuf,
        /// How long one call may take [default: 60s].
        #[serde(default)]
        timeout: Option<String>,
    },
    /// Containers on a Docker Engine, from an image that contains the `baton` binary.
    Docker {
        /// The image each runner's container is made from; it must be on the engine already.
        image: String,
        /// The container's network mode, e.g. `host` so a runner reaches a server on the
        /// host's loopback [default: the engine's default bridge].
        #[serde(default)]
        network: Option<String>,
        /// The engine: `unix:///PATH`, `tcp://HOST:PORT` or `http://HOST:PORT` [default:
        /// `DOCKER_HOST`, else the local socket].
        #[serde(default)]
        docker_host: Option<String>,
    },
}

/// The scaler's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Full reconciles run this often besides the event-driven ones.
    pub reconcile_interval: Duration,
    pub pools: Vec<PoolConfig>,
}

/// One pool of identical runners.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    /// What its runners carry; a queued job is demand for the pool when the pool has every label
    /// the job asks for.
    pub labels: Vec<String>,
    /// Idle runners kept ready.
    pub min_idle: u32,
    /// Runners (and machines being created) at most.
    pub max_runners: u32,
    /// An idle runner above `min_idle` is retired after this long.
    pub idle_timeout: Duration,
    /// Each runner runs one job.
    pub ephemeral: bool,
    /// A machine whose runner has not connected by then is retired and terminated.
    pub register_timeout: Duration,
    /// Machines created in one reconcile, at most.
    pub scale_up_batch: u32,
    /// Jobs a persistent runner runs at once.
    pub capacity: u32,
    pub provider: ProviderConfig,
}

pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_REGISTER_TIMEOUT: Duration = Duration::from_secs(120);

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let metadata = std::fs::metadata(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        if metadata.len() > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        Config::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: shown, message },
            ConfigError::Invalid(message) => ConfigError::Invalid(format!("{shown}: {message}")),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|error| ConfigError::Parse { path: String::new(), message: error.to_string() })?;
        let reconcile_interval =
            duration("reconcile_interval", raw.reconcile_interval.as_deref(), DEFAULT_RECONCILE_INTERVAL)?;
        if reconcile_interval < Duration::from_millis(10) {
            return Err(ConfigError::Invalid("reconcile_interval must be at least 10ms".into()));
        }
        if raw.pool.is_empty() {
            return Err(ConfigError::Invalid("no pools: add at least one [[pool]]".into()));
        }
        let mut pools = Vec::new();
        for pool in raw.pool {
            let name = pool.name.clone();
            let valid_name = !name.is_empty()
                && name.len() <= 40
                && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'));
            if !valid_name {
                return Err(ConfigError::Invalid(format!(
                    "pool name {name:?}: 1 to 40 ASCII letters, digits, '_' or '-'"
                )));
            }
            if pools.iter().any(|other: &PoolConfig| other.name == name) {
                return Err(ConfigError::Invalid(format!("pool {name:?} is defined twice")));
            }
            let field = |key: &str| format!("pool {name}: {key}");
            if pool.max_runners == 0 || pool.max_runners > 10_000 {
                return Err(ConfigError::Invalid(format!("{} must be 1 to 10000", field("max_runners"))));
            }
            if pool.min_idle > pool.max_runners {
                return Err(ConfigError::Invalid(format!("{} may not exceed max_runners", field("min_idle"))));
            }
            let capacity = pool.capacity.unwrap_or(1);
            if capacity == 0 || capacity > 256 {
                return Err(ConfigError::Invalid(format!("{} must be 1 to 256", field("capacity"))));
            }
            let scale_up_batch = pool.scale_up_batch.unwrap_or(10);
            if scale_up_batch == 0 || scale_up_batch > 1000 {
                return Err(ConfigError::Invalid(format!("{} must be 1 to 1000", field("scale_up_batch"))));
            }
            if let ProviderConfig::Exec { timeout, .. } = &pool.provider {
                duration(&field("provider.timeout"), timeout.as_deref(), Duration::from_secs(60))?;
            }
            if let ProviderConfig::Docker { image, network, docker_host } = &pool.provider {
                if image.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!("{} may not be empty", field("provider.image"))));
                }
                if network.as_deref().is_some_and(|network| network.trim().is_empty()) {
                    return Err(ConfigError::Invalid(format!("{} may not be empty", field("provider.network"))));
                }
                let known_scheme =
                    |host: &str| ["unix://", "tcp://", "http://"].iter().any(|scheme| host.starts_with(scheme));
                if docker_host.as_deref().is_some_and(|host| !known_scheme(host)) {
                    return Err(ConfigError::Invalid(format!(
                        "{} must be unix:///PATH, tcp://HOST:PORT or http://HOST:PORT",
                        field("provider.docker_host")
                    )));
                }
            }
            let labels: Vec<String> = pool.labels.iter().map(|label| label.trim().to_lowercase()).collect();
            if labels.iter().any(|label| label.is_empty() || label.len() > 64) || labels.len() > 32 {
                return Err(ConfigError::Invalid(format!(
                    "{}: at most 32 labels of 1 to 64 characters",
                    field("labels")
                )));
            }
            pools.push(PoolConfig {
                idle_timeout: duration(&field("idle_timeout"), pool.idle_timeout.as_deref(), DEFAULT_IDLE_TIMEOUT)?,
                register_timeout: duration(
                    &field("register_timeout"),
                    pool.register_timeout.as_deref(),
                    DEFAULT_REGISTER_TIMEOUT,
                )?,
                name,
                labels,
                min_idle: pool.min_idle,
                max_runners: pool.max_runners,
                ephemeral: pool.ephemeral.unwrap_or(true),
                scale_up_batch,
                capacity,
                provider: pool.provider,
            });
        }
        Ok(Config { reconcile_interval, pools })
    }
}

/// A duration written as `500ms`, `30s`, `5m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 30s, 5m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" | "" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        other => return Err(format!("{text:?}: unknown unit {other:?}; use ms, s, m or h")),
    };
    if duration > Duration::from_secs(30 * 24 * 3600) {
        return Err(format!("{text:?} is longer than 30 days"));
    }
    Ok(duration)
}

fn duration(field: &str, text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|message| ConfigError::Invalid(format!("{field}: {message}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_with_defaults() {
        let config = Config::parse(
            "[[pool]]\nname = \"linux\"\nlabels = [\"Linux\"]\nmax_runners = 3\nprovider = { kind = \"process\" }\n",
        )
        .expect("valid");
        let pool = &config.pools[0];
        assert_eq!(config.reconcile_interval, Duration::from_secs(10));
        assert_eq!(pool.labels, ["linux"]);
        assert!(pool.ephemeral);
        assert_eq!(pool.idle_timeout, Duration::from_secs(300));
        assert_eq!(pool.register_timeout, Duration::from_secs(120));
        assert_eq!(pool.scale_up_batch, 10);
        assert_eq!(pool.provider, ProviderConfig::Process { work_dir: None, program: None });
    }

    #[test]
    fn a_docker_pool() {
        let config = Config::parse(
            "[[pool]]\nname = \"c\"\nmax_runners = 2\n\
             provider = { kind = \"docker\", image = \"example/baton:1\", network = \"host\" }\n",
        )
        .expect("valid");
        assert_eq!(
            config.pools[0].provider,
            ProviderConfig::Docker { image: "example/baton:1".into(), network: Some("host".into()), docker_host: None }
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "[[pool]]\nname = \"a\"\nmax_runners = 0\nprovider = { kind = \"process\" }\n",
                "max_runners must be 1 to 10000",
            ),
            ("[[pool]]\nname = \"a b\"\nmax_runners = 1\nprovider = { kind = \"process\" }\n", "pool name \"a b\""),
            (
                "[[pool]]\nname = \"a\"\nmax_runners = 1\nidle_timeout = \"soon\"\nprovider = { kind = \"process\" }\n",
                "idle_timeout",
            ),
            ("[[pool]]\nname = \"a\"\nmax_runners = 1\nprovider = { kind = \"cloud\" }\n", "unknown variant"),
            (
                "[[pool]]\nname = \"a\"\nmax_runners = 1\nmin_idle = 2\nprovider = { kind = \"process\" }\n",
                "min_idle may not exceed",
            ),
            ("", "no pools"),
            (
                "[[pool]]\nname = \"a\"\nmax_runners = 1\nprovider = { kind = \"docker\", image = \" \" }\n",
                "pool a: provider.image may not be empty",
            ),
            ("[[pool]]\nname = \"a\"\nmax_runners = 1\nprovider = { kind = \"docker\" }\n", "missing field `image`"),
            (
                "[[pool]]\nname = \"a\"\nmax_runners = 1\nprovider = { kind = \"docker\", image = \"i\", docker_host = \"ssh://h\" }\n",
                "provider.docker_host must be",
            ),
            ("[[pool]]\nname = \"a\"\nmax_runners = 1\nprovder = 1\n", "unknown field"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
