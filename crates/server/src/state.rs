//! What every handler shares: the store, the clock, credentials, wake-ups and metrics.

use std::sync::Arc;

use anyhow::Context;
use baton_core::Timestamp;
use baton_store::Store;
use tokio::sync::watch;

use crate::auth::{self, JobTokens};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Database, Execution};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::notify::Hub;

const META_ADMIN_TOKEN_HASH: &str = "auth.admin_token_hash";
const META_JOB_TOKEN_KEY: &str = "auth.job_token_key";

#[derive(Debug)]
pub struct AppState {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    admin_token_hash: String,
    pub job_tokens: JobTokens,
    pub credentials: Arc<crate::auth::CredentialCache>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
    execution: Execution,
}

impl AppState {
    /// Opens the store and loads (or creates) the admin token hash and the job-token key.
    /// Returns the admin token when it was generated now, so it can be shown once.
    pub async fn open(
        config: &Config,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<(Arc<AppState>, Option<String>)> {
        let metrics = Arc::new(Metrics::new());
        let credentials = Arc::new(crate::auth::CredentialCache::default());
        let hub = Arc::new(Hub::new(metrics.clone(), credentials.clone()));
        let database = config.database.clone();
        let timeouts = config.timeouts;
        let execution = config.execution;
        let observer = hub.clone();
        let store = execute(execution, move || -> anyhow::Result<Store> {
            let mut store = open_store(database, timeouts)?;
            // Set here, off the async runtime: on PostgreSQL this connects to listen for the
            // other replicas' commits.
            store.set_observer(observer);
            Ok(store)
        })
        .await
        .context("join the store opener")??;
        let store = Arc::new(store);

        let admin_token = config.admin_token.clone();
        let (admin_token_hash, generated, job_token_key) = {
            let store = store.clone();
            execute(execution, move || -> anyhow::Result<(String, Option<String>, String)> {
                let (hash, generated) = match admin_token {
                    Some(token) => {
                        let hash = auth::hash(&token);
                        store.meta_set(META_ADMIN_TOKEN_HASH, &hash)?;
                        (hash, None)
                    }
                    None => match store.meta_get(META_ADMIN_TOKEN_HASH)? {
                        Some(hash) => (hash, None),
                        None => {
                            let token = auth::generate(auth::ADMIN_PREFIX);
                            let hash = store.meta_get_or_insert(META_ADMIN_TOKEN_HASH, &auth::hash(&token))?;
                            let generated = (hash == auth::hash(&token)).then_some(token);
                            (hash, generated)
                        }
                    },
                };
                let key = store.meta_get_or_insert(META_JOB_TOKEN_KEY, &hex::encode(random_key()))?;
                Ok((hash, generated, key))
            })
            .await
            .context("join the credential loader")?
            .context("load credentials")?
        };
        let key = hex::decode(&job_token_key).context("the stored job-token key is not hex")?;
        let state = AppState {
            store,
            clock: Arc::new(match config.clock_origin {
                Some(origin) => SystemClock::starting_at(origin),
                None => SystemClock::new(),
            }),
            admin_token_hash,
            job_tokens: JobTokens::new(key),
            credentials,
            hub,
            metrics,
            shutdown,
            execution,
        };
        Ok((Arc::new(state), generated))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn admin_token_hash(&self) -> &str {
        &self.admin_token_hash
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs a store script on a blocking thread (transactions are synchronous), or inline when
    /// the configuration says so.
    pub async fn run<T, F>(&self, script: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, baton_store::Error> + Send + 'static,
    {
        let store = self.store.clone();
        match execute(self.execution, move || script(&store)).await {
            Ok(outcome) => outcome.map_err(ApiError::from),
            Err(error) => Err(ApiError::internal("store task", error)),
        }
    }

    /// Runs a short store script (one that touches a handful of rows, as the runner protocol's
    /// do) on the calling task when the store would run it at once, which saves two thread
    /// hops per request; otherwise like [`AppState::run`].
    pub async fn run_short<T, F>(&self, script: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, baton_store::Error> + Send + 'static,
    {
        if self.execution == Execution::Blocking && self.store.writes_at_once() {
            return script(&self.store).map_err(ApiError::from);
        }
        self.run(script).await
    }

    /// Runs synchronous work (a store script, parsing a workflow) where the configuration says.
    pub async fn execute<T, F>(&self, work: F) -> Result<T, tokio::task::JoinError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        execute(self.execution, work).await
    }
}

async fn execute<T, F>(execution: Execution, work: F) -> Result<T, tokio::task::JoinError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match execution {
        Execution::Blocking => tokio::task::spawn_blocking(work).await,
        Execution::Inline => Ok(work()),
    }
}

/// Opens (or creates) the store `database` names.
fn open_store(database: Database, timeouts: baton_core::Timeouts) -> anyhow::Result<Store> {
    match database {
        Database::Sqlite { path, durability } => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
            }
            Store::open_sqlite(&path, durability, timeouts).with_context(|| format!("open {}", path.display()))
        }
        Database::Memory => Ok(Store::open_memory(timeouts)),
        Database::Postgres { url } => Store::open_postgres(&url, timeouts).context("open the PostgreSQL database"),
        Database::SharedMemory(backend) => Ok(Store::new(Box::new(backend), timeouts)),
    }
}

fn random_key() -> [u8; 32] {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}
