//! The scaler's loop: follow the server's events, reconcile every pool when something relevant
//! happens (and on a timer as a safety net), and carry out the plan's decisions, recording each
//! in the audit trail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_api as api;
use baton_client::{Backoff, Client};
use tokio::sync::{Notify, watch};

use crate::config::{Config, PoolConfig, ProviderConfig};
use crate::exec::ExecProvider;
use crate::metrics::Metrics;
use crate::plan::{Decision, PoolView, RetireReason, plan};
use crate::process::ProcessProvider;
use crate::provider::{CreateRequest, Provider};

/// Events after which a pool may need to change.
fn is_relevant(kind: &str) -> bool {
    kind.starts_with("runner.")
        || matches!(kind, "job.queued" | "job.requeued" | "job.completed" | "job.attempt_lost" | "job.offer_expired")
}

/// Consecutive failed creations of a pool and when creating may be tried again.
#[derive(Debug, Default)]
struct CreateBackoff {
    failures: u32,
    until: Option<tokio::time::Instant>,
}

impl CreateBackoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(60);

    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let delay = Self::FIRST.saturating_mul(1 << self.failures.min(12)).min(Self::MAX);
        self.until = Some(tokio::time::Instant::now() + delay);
    }

    fn succeeded(&mut self) {
        *self = CreateBackoff::default();
    }

    fn waiting(&self) -> bool {
        self.until.is_some_and(|until| tokio::time::Instant::now() < until)
    }
}

/// A pool with its provider and what is in flight for it.
#[derive(Debug)]
struct Pool {
    config: PoolConfig,
    provider: Arc<dyn Provider>,
    /// Names being created, with when: from before the JIT config is made until a snapshot
    /// shows the runner (or the creation failed, or `register_timeout` passed), so a machine
    /// is never taken for an orphan meanwhile. The time bound matters: an ephemeral runner can
    /// register, run its job and be gone between two snapshots, and a name that never showed
    /// would otherwise count as supply for ever.
    creating: Arc<Mutex<BTreeMap<String, tokio::time::Instant>>>,
    /// Machines a clean-up is under way for.
    terminating: Arc<Mutex<BTreeSet<String>>>,
    /// After failed creations, no new ones before this instant (exponential backoff).
    create_backoff: Arc<Mutex<CreateBackoff>>,
    /// Runners a retire is under way for.
    retiring: Arc<Mutex<BTreeSet<i64>>>,
}

/// A running scaler.
#[derive(Debug)]
pub struct Scaler {
    client: Client,
    /// The URL runners are told to reach the server at: one, or several replicas' separated by
    /// commas, handed to every runner whole.
    server_url: String,
    pools: Vec<Pool>,
    interval: Duration,
    pub metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

/// Where the `process` provider keeps its runners when the configuration does not say.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub program: std::path::PathBuf,
    pub work_dir: std::path::PathBuf,
}

impl Scaler {
    pub fn new(client: Client, server_url: String, config: &Config, defaults: &Defaults) -> Scaler {
        let pools = config
            .pools
            .iter()
            .map(|pool| {
                let provider: Arc<dyn Provider> = match &pool.provider {
                    ProviderConfig::Process { work_dir, program } => Arc::new(ProcessProvider::new(
                        program.clone().unwrap_or_else(|| defaults.program.clone()),
                        work_dir.clone().unwrap_or_else(|| defaults.work_dir.join(&pool.name)),
                    )),
                    ProviderConfig::Exec { command, timeout } => {
                        let timeout = timeout
                            .as_deref()
                            .and_then(|text| crate::config::parse_duration(text).ok())
                            .unwrap_or(Duration::from_secs(60));
                        Arc::new(ExecProvider::new(command.clone(), timeout))
                    }
                    ProviderConfig::Docker { image, network, docker_host } => Arc::new(
                        crate::docker::DockerProvider::new(image.clone(), network.clone(), docker_host.clone()),
                    ),
                };
                (pool.clone(), provider)
            })
            .collect();
        Scaler::with_providers(client, server_url, pools, config.reconcile_interval)
    }

    /// A scaler over pools whose providers the caller made (the simulator's simulated machines).
    pub fn with_providers(
        client: Client,
        server_url: String,
        pools: Vec<(PoolConfig, Arc<dyn Provider>)>,
        interval: Duration,
    ) -> Scaler {
        let pools = pools
            .into_iter()
            .map(|(config, provider)| Pool {
                config,
                provider,
                creating: Arc::default(),
                retiring: Arc::default(),
                terminating: Arc::default(),
                create_backoff: Arc::default(),
            })
            .collect();
        Scaler {
            client,
            server_url,
            pools,
            interval,
            metrics: Arc::new(Metrics::default()),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The provider of a pool, for tests and diagnostics.
    pub fn provider(&self, pool: &str) -> Option<Arc<dyn Provider>> {
        self.pools.iter().find(|candidate| candidate.config.name == pool).map(|pool| pool.provider.clone())
    }

    /// Runs until `stop` turns true: follows events, reconciles, and on stop terminates nothing
    /// (machines keep running their jobs; a restarted scaler adopts them through `list`).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let follower = tokio::spawn(self.clone().follow_events(stop.clone()));
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                _ = ticker.tick() => {}
                _ = self.wake.notified() => {}
            }
            self.reconcile_all().await;
        }
        follower.abort();
    }

    /// Reads the events stream (resuming after the last seen event) and wakes the reconciler
    /// on every relevant one.
    async fn follow_events(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut after = None;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        while !*stop.borrow() {
            let start = match after {
                Some(seq) => seq,
                None => match self.current_event_seq().await {
                    Some(seq) => seq,
                    None => {
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                },
            };
            after = Some(start);
            let mut stream = match self.client.events(start).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "the scaler could not follow events; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            // The stream resumed after `start`: anything missed while away is caught up now.
            self.wake.notify_one();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        after = Some(event.seq);
                        if is_relevant(&event.kind) {
                            self.wake.notify_one();
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the events stream broke; resuming");
                        break;
                    }
                }
            }
        }
    }

    async fn current_event_seq(&self) -> Option<i64> {
        let pool = self.pools.first()?;
        self.client.pool_snapshot(&pool.config.name).await.ok().map(|snapshot| snapshot.as_of_event)
    }

    /// One reconcile of every pool.
    pub async fn reconcile_all(&self) {
        for pool in &self.pools {
            if let Err(error) = self.reconcile(pool).await {
                tracing::warn!(pool = %pool.config.name, error = %format!("{error:#}"), "reconcile failed");
                self.metrics.errors.get_or_create(&crate::metrics::PoolLabel { pool: pool.config.name.clone() }).inc();
            }
        }
    }

    async fn reconcile(&self, pool: &Pool) -> anyhow::Result<()> {
        let snapshot = self.client.pool_snapshot(&pool.config.name).await?;
        let instances = pool.provider.list(&pool.config.name).await?;
        self.metrics.observe_runners(&pool.config.name, &snapshot);
        // Read after the list: a listed machine's creation began before, so it is here unless a
        // snapshot already showed its runner.
        let creating = {
            let mut creating = pool.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let view: BTreeSet<String> = creating.keys().cloned().collect();
            let now = tokio::time::Instant::now();
            creating.retain(|name, started| {
                !snapshot.runners.iter().any(|runner| &runner.name == name)
                    && now.saturating_duration_since(*started) < pool.config.register_timeout
            });
            view
        };
        let retiring = pool.retiring.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let decisions = plan(&PoolView {
            pool: &pool.config,
            snapshot: &snapshot,
            instances: &instances,
            creating: &creating,
            retiring: &retiring,
        });
        for decision in decisions {
            match decision {
                Decision::Create { count, readings } => {
                    if pool.create_backoff.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).waiting() {
                        tracing::debug!(pool = %pool.config.name, "creations are backing off after failures");
                        continue;
                    }
                    for _ in 0..count {
                        self.create(pool, &snapshot, readings.clone());
                    }
                }
                Decision::Retire { runner_id, name, instance, reason, readings } => {
                    self.retire(pool, runner_id, name, instance, reason, readings);
                }
                Decision::TerminateOrphan { instance, name, readings } => {
                    self.terminate_orphan(pool, instance, name, readings);
                }
            }
        }
        Ok(())
    }

    /// Creates one runner in the background: a JIT config, then a machine that starts it.
    fn create(&self, pool: &Pool, snapshot: &api::PoolSnapshot, readings: serde_json::Value) {
        let name = format!("{}-{:08x}", pool.config.name, baton_client::entropy::next_u64() as u32);
        pool.creating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.clone(), tokio::time::Instant::now());
        let client = self.client.clone();
        let provider = pool.provider.clone();
        let config = pool.config.clone();
        let creating = pool.creating.clone();
        let backoff = pool.create_backoff.clone();
        let metrics = self.metrics.clone();
        let server = self.server_url.clone();
        let oldest_queued = snapshot
            .queued
            .iter()
            .find(|queued| queued.labels.iter().all(|label| config.labels.contains(label)))
            .and_then(|queued| queued.queued_at.parse::<jiff::Timestamp>().ok());
        tokio::spawn(async move {
            let outcome = create_runner(&client, provider.as_ref(), &config, &name, &server, readings).await;
            match outcome {
                Ok(()) => {
                    backoff.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).succeeded();
                    metrics.action(&config.name, "create");
                    if let Some(queued_at) = oldest_queued {
                        let waited = jiff::Timestamp::now().duration_since(queued_at).as_secs_f64().max(0.0);
                        metrics.queued_to_create.observe(waited);
                    }
                }
                Err(error) => {
                    tracing::warn!(pool = %config.name, %name, error = %format!("{error:#}"), "creating a runner failed");
                    metrics.action(&config.name, "create_failed");
                    backoff.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).failed();
                    creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&name);
                }
            }
        });
    }

    /// Retires a runner in the background; only on `retired` is its machine terminated and its
    /// registration removed.
    fn retire(
        &self,
        pool: &Pool,
        runner_id: i64,
        name: String,
        instance: Option<String>,
        reason: RetireReason,
        readings: serde_json::Value,
    ) {
        if !pool.retiring.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(runner_id) {
            return;
        }
        let client = self.client.clone();
        let provider = pool.provider.clone();
        let retiring = pool.retiring.clone();
        let metrics = self.metrics.clone();
        let pool_name = pool.config.name.clone();
        tokio::spawn(async move {
            let request = api::ScalerRetireRequest { readings };
            match client.scaler_retire(runner_id, &request).await {
                Ok(api::RetireResponse::Retired) => {
                    metrics.action(&pool_name, "retire");
                    let terminated = match &instance {
                        Some(id) => provider.terminate(id).await.map_err(|error| error.to_string()),
                        None => Ok(()),
                    };
                    match terminated {
                        Ok(()) => {
                            let data = serde_json::json!({ "pool": pool_name, "name": name, "instance": instance, "reason": reason.as_str() });
                            let _ = client
                                .scaler_event(&api::ScalerEventRequest {
                                    action: "terminate".into(),
                                    runner_id: Some(runner_id),
                                    data,
                                })
                                .await;
                            if let Err(error) = client.remove_runner(runner_id).await {
                                tracing::warn!(%error, runner_id, "removing a retired runner failed; the next reconcile retries");
                            }
                            metrics.action(&pool_name, "terminate");
                        }
                        Err(error) => {
                            tracing::warn!(%error, runner_id, "terminating a retired runner's machine failed; the next reconcile retries")
                        }
                    }
                }
                Ok(api::RetireResponse::Busy { job_id, .. }) => {
                    tracing::info!(pool = %pool_name, runner_id, job_id, "retire refused: the runner is busy; it keeps running");
                    metrics.retire_refusals.get_or_create(&crate::metrics::PoolLabel { pool: pool_name.clone() }).inc();
                }
                Err(error) => tracing::warn!(%error, runner_id, "retire failed; the next reconcile retries"),
            }
            retiring.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&runner_id);
        });
    }

    /// Terminates a machine that had no runner record in the snapshot, in the background, but
    /// only after the server's retire-by-name answered `retired` (the snapshot may be stale).
    fn terminate_orphan(&self, pool: &Pool, instance: String, name: String, readings: serde_json::Value) {
        if !pool.terminating.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(instance.clone()) {
            return;
        }
        let client = self.client.clone();
        let provider = pool.provider.clone();
        let terminating = pool.terminating.clone();
        let metrics = self.metrics.clone();
        let pool_name = pool.config.name.clone();
        tokio::spawn(async move {
            let request = api::ScalerRetireRequest { readings: readings.clone() };
            match client.scaler_retire_name(&name, &request).await {
                Ok(api::RetireResponse::Retired) => match provider.terminate(&instance).await {
                    Ok(()) => {
                        let mut data = readings;
                        if let Some(object) = data.as_object_mut() {
                            object.insert("instance".into(), instance.clone().into());
                            object.insert("name".into(), name.into());
                        }
                        let _ = client
                            .scaler_event(&api::ScalerEventRequest { action: "cleanup".into(), runner_id: None, data })
                            .await;
                        metrics.action(&pool_name, "cleanup");
                    }
                    Err(error) => {
                        tracing::warn!(%error, %instance, "terminating an orphaned machine failed; the next reconcile retries")
                    }
                },
                Ok(api::RetireResponse::Busy { job_id, .. }) => {
                    tracing::info!(pool = %pool_name, %name, job_id, "clean-up refused: the machine's runner is busy");
                    metrics.retire_refusals.get_or_create(&crate::metrics::PoolLabel { pool: pool_name.clone() }).inc();
                }
                Err(error) => tracing::warn!(%error, %name, "retire by name failed; the next reconcile retries"),
            }
            terminating.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&instance);
        });
    }

    /// Retires every runner of every pool and, for each the server answered `retired`,
    /// terminates its machine and removes it: how an embedded fleet stops once its work is done.
    /// Busy runners are left alone. Answers how many runners were left because they were busy.
    pub async fn retire_all(&self) -> usize {
        let mut busy = 0;
        for pool in &self.pools {
            let Ok(snapshot) = self.client.pool_snapshot(&pool.config.name).await else { continue };
            let instances = pool.provider.list(&pool.config.name).await.unwrap_or_default();
            for runner in &snapshot.runners {
                let readings = serde_json::json!({ "pool": pool.config.name, "reason": "shutdown" });
                match self.client.scaler_retire(runner.id, &api::ScalerRetireRequest { readings }).await {
                    Ok(api::RetireResponse::Retired) => {
                        if let Some(instance) = instances.iter().find(|instance| instance.name == runner.name) {
                            let _ = pool.provider.terminate(&instance.id).await;
                        }
                        let _ = self.client.remove_runner(runner.id).await;
                    }
                    Ok(api::RetireResponse::Busy { .. }) => busy += 1,
                    Err(error) => tracing::warn!(%error, runner_id = runner.id, "retiring at shutdown failed"),
                }
            }
        }
        busy
    }

    /// Wakes the reconciler now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

async fn create_runner(
    client: &Client,
    provider: &dyn Provider,
    config: &PoolConfig,
    name: &str,
    server: &str,
    readings: serde_json::Value,
) -> anyhow::Result<()> {
    let jit = client
        .create_jit_config(&api::CreateJitConfigRequest {
            name: name.to_string(),
            labels: config.labels.clone(),
            pool: Some(config.name.clone()),
            capacity: if config.ephemeral { 1 } else { config.capacity },
            ephemeral: config.ephemeral,
            ttl_secs: Some(config.register_timeout.as_secs().max(1)),
        })
        .await?;
    let mut data = readings;
    if let Some(object) = data.as_object_mut() {
        object.insert("name".into(), name.into());
    }
    client
        .scaler_event(&api::ScalerEventRequest { action: "create".into(), runner_id: Some(jit.runner.id), data })
        .await?;
    let request = CreateRequest {
        name: name.to_string(),
        pool: config.name.clone(),
        labels: config.labels.clone(),
        server: server.to_string(),
        jit_config: jit.jit_config,
        ephemeral: config.ephemeral,
        capacity: config.capacity,
    };
    if let Err(error) = provider.create(&request).await {
        // The machine never started: its registration goes through the normal retire path.
        let readings =
            serde_json::json!({ "pool": config.name, "reason": "create_failed", "error": error.to_string() });
        if matches!(
            client.scaler_retire(jit.runner.id, &api::ScalerRetireRequest { readings }).await,
            Ok(api::RetireResponse::Retired)
        ) {
            let _ = client.remove_runner(jit.runner.id).await;
        }
        return Err(error.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_creations_back_off_exponentially_up_to_a_minute() {
        let mut backoff = CreateBackoff::default();
        assert!(!backoff.waiting());
        backoff.failed();
        assert!(backoff.waiting());
        let first = backoff.until.expect("set") - tokio::time::Instant::now();
        assert!(first <= Duration::from_millis(400) && first > Duration::from_millis(300), "{first:?}");
        for _ in 0..20 {
            backoff.failed();
        }
        let last = backoff.until.expect("set") - tokio::time::Instant::now();
        assert!(last <= CreateBackoff::MAX && last > Duration::from_secs(59), "{last:?}");
        backoff.succeeded();
        assert!(!backoff.waiting());
    }
}
