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
        }
    }
}
