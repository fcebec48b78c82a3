//! In-process wake-ups after commits.
//!
//! The store tells the [`Hub`] which runners got messages and which events were appended; the
//! hub wakes the long-polls of those runners and every event stream, and revokes the cached
//! credentials of runners that became gone. Nobody polls the store on a timer to find out.
//! Replicas on one PostgreSQL database hear each other's commits through the store
//! ([`CommitObserver::committed_elsewhere`]) and wake their own waiters the same way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use baton_core::RunnerId;
use baton_store::{CommitObserver, Effects, Wake};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

#[derive(Debug)]
pub struct Hub {
    runners: Mutex<BTreeMap<RunnerId, Arc<Notify>>>,
    /// Bumped after every commit that appended events.
    events: watch::Sender<u64>,
    /// Bumped when this process added a webhook endpoint.
    webhooks: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    credentials: Arc<crate::auth::CredentialCache>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>, credentials: Arc<crate::auth::CredentialCache>) -> Hub {
        Hub {
            runners: Mutex::new(BTreeMap::new()),
            events: watch::channel(0).0,
            webhooks: watch::channel(0).0,
            metrics,
            credentials,
        }
    }

    /// The notification a runner's long-polls wait on.
    pub fn runner(&self, runner_id: RunnerId) -> Arc<Notify> {
        let mut runners = self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        runners.entry(runner_id).or_default().clone()
    }

    /// Drops the notification of a runner nobody waits on any more.
    pub fn forget_idle(&self, runner_id: RunnerId) {
        let mut runners = self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if runners.get(&runner_id).is_some_and(|notify| Arc::strong_count(notify) == 1) {
            runners.remove(&runner_id);
        }
    }

    /// Wakes whoever waits on events without an event: the webhook dispatcher, after a
    /// redelivery was queued.
    pub fn wake_events(&self) {
        bump(&self.events);
    }

    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// Wakes the webhook dispatcher after an endpoint was added here.
    pub fn webhook_added(&self) {
        bump(&self.webhooks);
    }

    pub fn subscribe_webhooks(&self) -> watch::Receiver<u64> {
        self.webhooks.subscribe()
    }
}

impl CommitObserver for Hub {
    fn committed(&self, effects: &Effects) {
        if !effects.gone.is_empty() {
            self.credentials.revoke(&effects.gone);
        }
        for kind in &effects.events {
            self.metrics.record_event(*kind);
        }
        for wait in &effects.dispatch_waits {
            self.metrics.dispatch_latency.observe(wait.as_secs_f64());
        }
        for took in &effects.job_durations {
            self.metrics.job_duration.observe(took.as_secs_f64());
        }
        if !effects.messaged.is_empty() {
            let runners = self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for runner_id in &effects.messaged {
                if let Some(notify) = runners.get(runner_id) {
                    // Every poll registers (`enable`) before its store read, so waking all
                    // registered polls never misses one, and a stale half-open poll of the same
                    // runner cannot swallow the wake-up meant for the live one.
                    notify.notify_waiters();
                }
            }
        }
        if !effects.events.is_empty() {
            bump(&self.events);
        }
    }

    fn committed_elsewhere(&self, wake: &Wake) {
        if wake.everything {
            self.credentials.clear();
        } else if !wake.gone.is_empty() {
            self.credentials.revoke(&wake.gone);
        }
        {
            let runners = self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if wake.everything {
                runners.values().for_each(|notify| notify.notify_waiters());
            } else {
                wake.messaged.iter().filter_map(|runner_id| runners.get(runner_id)).for_each(|notify| {
                    notify.notify_waiters();
                });
            }
        }
        if wake.events || wake.everything {
            bump(&self.events);
        }
    }
}

/// Moves a generation on, which wakes everyone who watches it.
fn bump(generation: &watch::Sender<u64>) {
    generation.send_modify(|value| *value = value.wrapping_add(1));
}
