//! The negative controls: deliberately broken parts the checkers must catch. They exist only
//! here, in the simulator; nothing of them is in the product.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use baton_client::Client;
use baton_scaler::provider::Provider;
use tokio::time::Instant;

/// Which system the simulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// Baton as shipped.
    Sound,
    /// F1: a server that marks an attempt lost as soon as its runner's connection drops.
    LostOnDisconnect,
    /// F2+F4: a scaler that terminates machines a lagging copy of the API says are idle.
    LaggingRead,
    /// F4: a scaler that checks "idle", then terminates, with no atomic step between.
    CheckThenTerminate,
    /// F4, the seed's proposed fix: deregister (drain), re-check "idle" (through a lagging
    /// read), then terminate.
    DeregisterThenRecheck,
    /// F3: a runner that runs every job in one shared temporary directory and starts the next
    /// worker before the previous one has exited and cleaned up.
    SharedTempDir,
}

impl Variant {
    pub const ALL: [Variant; 6] = [
        Variant::Sound,
        Variant::LostOnDisconnect,
        Variant::LaggingRead,
        Variant::CheckThenTerminate,
        Variant::DeregisterThenRecheck,
        Variant::SharedTempDir,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Sound => "sound",
            Variant::LostOnDisconnect => "f1-lost-on-disconnect",
            Variant::LaggingRead => "f2-lagging-read",
            Variant::CheckThenTerminate => "f4-check-then-terminate",
            Variant::DeregisterThenRecheck => "f4-deregister-then-recheck",
            Variant::SharedTempDir => "f3-shared-temp-dir",
        }
    }

    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|variant| variant.name() == name)
    }

    /// The broken scale-down replaces the real scaler's (which then only scales up).
    pub fn has_broken_reaper(self) -> bool {
        matches!(self, Variant::LaggingRead | Variant::CheckThenTerminate | Variant::DeregisterThenRecheck)
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Snapshots of a pool as the API served them, kept to be served again late: a read replica
/// or cache that lags behind the truth.
struct LaggingCopy {
    history: VecDeque<(Instant, baton_api::PoolSnapshot)>,
    lag: Duration,
}

impl LaggingCopy {
    fn record(&mut self, snapshot: baton_api::PoolSnapshot) {
        self.history.push_back((Instant::now(), snapshot));
        while self.history.len() > 1 && self.history[1].0 + self.lag <= Instant::now() {
            self.history.pop_front();
        }
    }

    fn lagging(&self) -> Option<&baton_api::PoolSnapshot> {
        self.history.front().map(|(_, snapshot)| snapshot)
    }
}

/// The broken scale-down loops of the scaler variants.
pub async fn broken_reaper(
    variant: Variant,
    client: Client,
    provider: Arc<dyn Provider>,
    pool: String,
    lag: Duration,
    think: Duration,
) {
    let mut copy = LaggingCopy { history: VecDeque::new(), lag };
    let mut terminated: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(fresh) = client.pool_snapshot(&pool).await else { continue };
        copy.record(fresh.clone());
        let idle: Vec<(i64, String)> = match variant {
            Variant::LaggingRead | Variant::DeregisterThenRecheck => copy
                .lagging()
                .map(|snapshot| {
                    snapshot
                        .runners
                        .iter()
                        .filter(|runner| runner.held == 0 && runner.online)
                        .map(|runner| (runner.id, runner.name.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            _ => fresh
                .runners
                .iter()
                .filter(|runner| runner.held == 0 && runner.online)
                .map(|runner| (runner.id, runner.name.clone()))
                .collect(),
        };
        for (runner_id, name) in idle {
            if terminated.contains(&name) {
                continue;
            }
            match variant {
                Variant::CheckThenTerminate => {
                    // The scaler's own work between its check and its act.
                    tokio::time::sleep(think).await;
                }
                Variant::DeregisterThenRecheck => {
                    if client.drain_runner(runner_id).await.is_err() {
                        continue;
                    }
                    tokio::time::sleep(think).await;
                    // The re-check reads the same lagging copy the first check did.
                    let still_idle = copy
                        .lagging()
                        .and_then(|snapshot| snapshot.runners.iter().find(|runner| runner.id == runner_id))
                        .is_none_or(|runner| runner.held == 0);
                    if !still_idle {
                        let _ = client.resume_runner(runner_id).await;
                        continue;
                    }
                }
                _ => {}
            }
            terminated.insert(name.clone());
            let _ = provider.terminate(&name).await;
            let _ = client.remove_runner(runner_id).await;
        }
    }
}
