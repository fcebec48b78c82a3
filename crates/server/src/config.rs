//! Server configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use baton_core::Timeouts;
use baton_store::sqlite::Durability;

/// Where the one truth lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file (the embedded default).
    Sqlite { path: PathBuf, durability: Durability },
    /// In memory: gone when the process exits. For tests and throwaway runs.
    Memory,
    /// A PostgreSQL database (`postgres://user:password@host:port/db`).
    Postgres { url: String },
    /// In memory, owned by the caller, who may open another server over it after this one
    /// stopped or crashed: the simulator's restarts.
    SharedMemory(std::sync::Arc<baton_store::mem::MemBackend>),
}

/// Where store transactions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Execution {
    /// On tokio's blocking threads: transactions are synchronous and may wait on disk.
    #[default]
    Blocking,
    /// On the calling task. Only for an in-memory store on a single-threaded runtime (the
    /// simulator), where it keeps every schedule reproducible; a slow transaction stalls the
    /// runtime.
    Inline,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: Database,
    pub timeouts: Timeouts,
    /// How often the sweepers run and the server records itself alive.
    pub sweep_interval: Duration,
    /// The admin token; when absent one is generated at first start and only its hash kept.
    pub admin_token: Option<String>,
    /// Webhook delivery: retries and the addresses deliveries may reach.
    pub webhooks: crate::webhooks::WebhookSettings,
    pub execution: Execution,
    /// The wall time the server's clock starts at; the system time when absent. The clock then
    /// advances with tokio's monotonic clock (virtual under a paused runtime).
    pub clock_origin: Option<baton_core::Timestamp>,
}

impl Config {
    /// A server on `listen` with the default timeouts over `database`.
    pub fn new(listen: SocketAddr, database: Database) -> Config {
        Config {
            listen,
            database,
            timeouts: Timeouts::DEFAULT,
            sweep_interval: Duration::from_secs(1),
            admin_token: None,
            webhooks: crate::webhooks::WebhookSettings::default(),
            execution: Execution::Blocking,
            clock_origin: None,
        }
    }
}
