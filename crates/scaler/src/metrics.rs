//! The scaler's metrics: runners per pool and state, scale actions, retire refusals, errors and
//! the time from a job being queued to the machine for it being created.

use std::sync::Mutex;

use baton_api as api;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolState {
    pub pool: String,
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolAction {
    pub pool: String,
    pub action: String,
}

#[derive(Debug)]
pub struct Metrics {
    pub runners: Family<PoolState, Gauge>,
    pub actions: Family<PoolAction, Counter>,
    pub retire_refusals: Family<PoolLabel, Counter>,
    pub errors: Family<PoolLabel, Counter>,
    pub queued_to_create: Histogram,
    registry: Mutex<Option<Registry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runners: Family::default(),
            actions: Family::default(),
            retire_refusals: Family::default(),
            errors: Family::default(),
            queued_to_create: Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
            registry: Mutex::new(None),
        }
    }
}

impl Metrics {
    pub fn action(&self, pool: &str, action: &str) {
        self.actions.get_or_create(&PoolAction { pool: pool.to_string(), action: action.to_string() }).inc();
    }

    /// Sets the runners-per-state gauges of a pool from a snapshot.
    pub fn observe_runners(&self, pool: &str, snapshot: &api::PoolSnapshot) {
        for state in ["registered", "active", "draining", "retiring", "offline"] {
            let count = snapshot.runners.iter().filter(|runner| runner.state == state).count();
            self.runners
                .get_or_create(&PoolState { pool: pool.to_string(), state: state.to_string() })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The retire refusals counted so far in a pool.
    pub fn refusals(&self, pool: &str) -> u64 {
        self.retire_refusals.get_or_create(&PoolLabel { pool: pool.to_string() }).get()
    }

    /// Prometheus text of every metric.
    pub fn encode(&self) -> String {
        let mut guard = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let registry = guard.get_or_insert_with(|| {
            let mut registry = Registry::with_prefix("baton_scaler");
            registry.register("runners", "Runners per pool and state", self.runners.clone());
            registry.register("actions", "Scale actions per pool", self.actions.clone());
            registry.register("retire_refusals", "Retire-if-idle answers of busy", self.retire_refusals.clone());
            registry.register("errors", "Failed reconciles", self.errors.clone());
            registry.register(
                "queued_to_create_seconds",
                "From the oldest matching queued job to its machine being created",
                self.queued_to_create.clone(),
            );
            registry
        });
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, registry);
        text
    }
}
