//! What a pool should do now, as a pure function of one snapshot of the server, the provider's
//! machines and the scaler's own creations in flight.
//!
//! **Invariant:** no decision terminates a machine by itself. A machine with a runner is retired
//! (`Retire`, by runner id); a machine without one in the snapshot (`TerminateOrphan`) is retired
//! by name, because the snapshot may be stale. The executor terminates only when the server's
//! atomic retire-if-idle answered `retired`; a `busy` answer ends the attempt, nothing overrides it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use baton_api as api;
use jiff::Timestamp;
use serde_json::json;

use crate::config::PoolConfig;
use crate::provider::Instance;

/// Why a runner is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireReason {
    /// Idle past `idle_timeout`, above `min_idle`, with no demand.
    Idle,
    /// Its machine is gone (crashed, killed, deleted outside Baton).
    InstanceGone,
    /// Its machine did not connect within `register_timeout`.
    NeverRegistered,
    /// Offline (its session expired), holding nothing, and not seen for `register_timeout`: its
    /// machine is there but its runner is not coming back (crashed, or restarted with a spent
    /// JIT config). Without this, dead runners would count against `max_runners` for ever.
    Unreachable,
    /// Draining and holding nothing: it will never take a job again (an ephemeral runner after
    /// its job, say, even one whose process restarted and reconnected).
    Drained,
}

impl RetireReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetireReason::Idle => "idle",
            RetireReason::InstanceGone => "instance_gone",
            RetireReason::NeverRegistered => "never_registered",
            RetireReason::Unreachable => "unreachable",
            RetireReason::Drained => "drained",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Create `count` runners (JIT config, then a machine).
    Create { count: u32, readings: serde_json::Value },
    /// Retire-if-idle the runner; on `retired`, terminate its machine (if any) and remove it.
    Retire { runner_id: i64, name: String, instance: Option<String>, reason: RetireReason, readings: serde_json::Value },
    /// A machine that has no runner record in the snapshot: retire by name, then terminate.
    TerminateOrphan { instance: String, name: String, readings: serde_json::Value },
}

/// Inputs of one pool's reconcile.
#[derive(Debug)]
pub struct PoolView<'a> {
    pub pool: &'a PoolConfig,
    pub snapshot: &'a api::PoolSnapshot,
    pub instances: &'a [Instance],
    /// Names the scaler is creating right now (JIT config made, machine maybe not yet listed).
    pub creating: &'a BTreeSet<String>,
    /// Runners a retire is already under way for.
    pub retiring: &'a BTreeSet<i64>,
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    now.duration_since(since).try_into().unwrap_or(Duration::ZERO)
}

/// The pool's decisions. `now` is the snapshot's server time.
pub fn plan(view: &PoolView<'_>) -> Vec<Decision> {
    let pool = view.pool;
    let snapshot = view.snapshot;
    let Some(now) = parse_time(&snapshot.now) else { return Vec::new() };
    let instances: BTreeMap<&str, &Instance> =
        view.instances.iter().map(|instance| (instance.name.as_str(), instance)).collect();
    let runners: BTreeMap<&str, &api::PoolRunner> =
        snapshot.runners.iter().map(|runner| (runner.name.as_str(), runner)).collect();
    let demand =
        snapshot.queued.iter().filter(|queued| queued.labels.iter().all(|label| pool.labels.contains(label))).count();
    let mut decisions = Vec::new();
    let mut retired = BTreeSet::new();
    let base_readings = |extra: serde_json::Value| {
        let mut readings = json!({
            "pool": pool.name,
            "queued_matching": demand,
            "runners": snapshot.runners.len(),
            "instances": view.instances.len(),
            "as_of_event": snapshot.as_of_event,
        });
        if let (Some(target), serde_json::Value::Object(extra)) = (readings.as_object_mut(), extra) {
            target.extend(extra);
        }
        readings
    };

    // Runners whose machine is gone, or whose machine never connected in time.
    for runner in &snapshot.runners {
        if view.retiring.contains(&runner.id) || view.creating.contains(&runner.name) {
            continue;
        }
        let instance = instances.get(runner.name.as_str());
        let age = parse_time(&runner.created_at).map_or(Duration::ZERO, |created| elapsed(created, now));
        let reason = match instance {
            // A runner shows as soon as its JIT config exists, before the provider has made (or
            // listed) its machine: it is not taken for one whose machine is gone until it had
            // `register_timeout` to connect.
            None if runner.state == "registered" && age < pool.register_timeout => None,
            None => Some(RetireReason::InstanceGone),
            Some(_) if runner.state == "registered" && age >= pool.register_timeout => {
                Some(RetireReason::NeverRegistered)
            }
            Some(_)
                if !runner.online
                    && runner.state != "registered"
                    && runner.held == 0
                    && parse_time(&runner.last_seen_at).map_or(age, |seen| elapsed(seen, now))
                        >= pool.register_timeout =>
            {
                Some(RetireReason::Unreachable)
            }
            Some(_) if runner.state == "draining" && runner.held == 0 => Some(RetireReason::Drained),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            retired.insert(runner.id);
            decisions.push(Decision::Retire {
                runner_id: runner.id,
                name: runner.name.clone(),
                instance: instance.map(|instance| instance.id.clone()),
                reason,
                readings: base_readings(json!({ "reason": reason.as_str(), "state": runner.state, "age_ms": age.as_millis() as u64, "held": runner.held })),
            });
        }
    }
    // Machines without a runner record (its registration was removed): nothing runs there.
    for instance in view.instances {
        if !runners.contains_key(instance.name.as_str()) && !view.creating.contains(&instance.name) {
            decisions.push(Decision::TerminateOrphan {
                instance: instance.id.clone(),
                name: instance.name.clone(),
                readings: base_readings(json!({ "reason": "no_runner" })),
            });
        }
    }

    // Idle runners: ready for work now, and those past the idle timeout.
    let ready = |runner: &&api::PoolRunner| {
        runner.held == 0
            && runner.state == "active"
            && runner.online
            && !retired.contains(&runner.id)
            && !view.retiring.contains(&runner.id)
    };
    let mut idle: Vec<(&api::PoolRunner, Duration)> = snapshot
        .runners
        .iter()
        .filter(ready)
        .map(|runner| {
            let since = runner.idle_since.as_deref().and_then(parse_time).unwrap_or(now);
            (runner, elapsed(since, now))
        })
        .collect();
    // The longest idle go first; the freshest stay as the `min_idle` reserve.
    idle.sort_by_key(|(_, idle_for)| std::cmp::Reverse(*idle_for));
    let mut idle_count = idle.len();
    if demand == 0 {
        for (runner, idle_for) in &idle {
            if idle_count <= pool.min_idle as usize || *idle_for < pool.idle_timeout {
                continue;
            }
            idle_count -= 1;
            retired.insert(runner.id);
            decisions.push(Decision::Retire {
                runner_id: runner.id,
                name: runner.name.clone(),
                instance: instances.get(runner.name.as_str()).map(|instance| instance.id.clone()),
                reason: RetireReason::Idle,
                readings: base_readings(json!({
                    "reason": "idle",
                    "idle_since": runner.idle_since,
                    "idle_for_ms": idle_for.as_millis() as u64,
                    "idle_timeout_ms": pool.idle_timeout.as_millis() as u64,
                    "idle_runners": idle.len(),
                    "min_idle": pool.min_idle,
                })),
            });
        }
    }

    // Scale up: supply is the idle runners, the runners still connecting, and creations in flight.
    let slots = |runner: &api::PoolRunner| if runner.ephemeral { 1 } else { pool.capacity as usize };
    let idle_slots: usize =
        idle.iter().filter(|(runner, _)| !retired.contains(&runner.id)).map(|(runner, _)| slots(runner)).sum();
    let starting: usize = snapshot
        .runners
        .iter()
        .filter(|runner| runner.state == "registered" && !retired.contains(&runner.id))
        .map(slots)
        .sum();
    let in_flight = view.creating.iter().filter(|name| !runners.contains_key(name.as_str())).count();
    let per_runner = if pool.ephemeral { 1 } else { pool.capacity as usize };
    let supply = idle_slots + starting + in_flight * per_runner;
    let wanted_slots = demand + pool.min_idle as usize * per_runner;
    let live = snapshot.runners.iter().filter(|runner| !retired.contains(&runner.id)).count() + in_flight;
    let room = (pool.max_runners as usize).saturating_sub(live);
    if wanted_slots > supply && room > 0 {
        let missing = (wanted_slots - supply).div_ceil(per_runner);
        let count = missing.min(room).min(pool.scale_up_batch as usize);
        decisions.push(Decision::Create {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            readings: base_readings(json!({
                "reason": if demand > 0 { "demand" } else { "min_idle" },
                "idle_slots": idle_slots,
                "starting_slots": starting,
                "in_flight": in_flight,
                "max_runners": pool.max_runners,
                "oldest_queued_at": snapshot.queued.iter().find(|queued| queued.labels.iter().all(|label| pool.labels.contains(label))).map(|queued| queued.queued_at.clone()),
            })),
        });
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;

    fn pool() -> PoolConfig {
        PoolConfig {
            name: "p".into(),
            labels: vec!["linux".into(), "self-hosted".into()],
            min_idle: 0,
            max_runners: 5,
            idle_timeout: Duration::from_secs(60),
            ephemeral: true,
            register_timeout: Duration::from_secs(120),
            scale_up_batch: 3,
            capacity: 1,
            provider: ProviderConfig::Process { work_dir: None, program: None },
        }
    }

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn runner(id: i64, state: &str, held: u32, idle_since: Option<&str>, created_at: &str) -> api::PoolRunner {
        api::PoolRunner {
            id,
            name: format!("p-{id}"),
            labels: vec![],
            state: state.into(),
            ephemeral: true,
            online: state == "active",
            held,
            attempts: 0,
            idle_since: idle_since.map(str::to_string),
            created_at: created_at.into(),
            last_seen_at: created_at.into(),
        }
    }

    fn queued(labels: &[&str]) -> api::QueuedAttempt {
        api::QueuedAttempt {
            job_id: 1,
            attempt: 1,
            labels: labels.iter().map(|label| label.to_string()).collect(),
            queued_at: "2026-01-01T00:09:59Z".into(),
        }
    }

    fn snapshot(queued: Vec<api::QueuedAttempt>, runners: Vec<api::PoolRunner>) -> api::PoolSnapshot {
        api::PoolSnapshot { as_of_event: 9, now: NOW.into(), queued, runners }
    }

    fn instances(ids: &[i64]) -> Vec<Instance> {
        ids.iter().map(|id| Instance { id: format!("i-{id}"), name: format!("p-{id}"), pool: "p".into() }).collect()
    }

    fn decide(
        pool: &PoolConfig,
        snapshot: &api::PoolSnapshot,
        instances: &[Instance],
        creating: &[&str],
    ) -> Vec<Decision> {
        let creating: BTreeSet<String> = creating.iter().map(|name| name.to_string()).collect();
        plan(&PoolView { pool, snapshot, instances, creating: &creating, retiring: &BTreeSet::new() })
    }

    fn summary(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .map(|decision| match decision {
                Decision::Create { count, .. } => format!("create {count}"),
                Decision::Retire { runner_id, reason, instance, .. } => {
                    format!("retire {runner_id} {} {}", reason.as_str(), instance.as_deref().unwrap_or("-"))
                }
                Decision::TerminateOrphan { instance, .. } => format!("terminate {instance}"),
            })
            .collect()
    }

    #[test]
    fn demand_creates_runners_within_the_batch_and_the_maximum() {
        let pool = pool();
        let demand = snapshot(vec![queued(&["linux"]); 4], vec![]);
        assert_eq!(summary(&decide(&pool, &demand, &[], &[])), ["create 3"]);
        // Jobs asking for labels the pool lacks are not its demand.
        let foreign = snapshot(vec![queued(&["gpu"])], vec![]);
        assert!(decide(&pool, &foreign, &[], &[]).is_empty());
        // Creations in flight and runners still connecting count as supply.
        let connecting = snapshot(vec![queued(&["linux"]); 2], vec![runner(1, "registered", 0, None, NOW)]);
        assert_eq!(summary(&decide(&pool, &connecting, &instances(&[1]), &["p-9"])), Vec::<String>::new());
        // Never more than max_runners.
        let full: Vec<_> = (1..=5).map(|id| runner(id, "active", 1, None, NOW)).collect();
        assert!(decide(&pool, &snapshot(vec![queued(&[]); 3], full), &instances(&[1, 2, 3, 4, 5]), &[]).is_empty());
    }

    #[test]
    fn idle_runners_retire_after_the_timeout_above_min_idle_and_only_without_demand() {
        let mut pool = pool();
        pool.min_idle = 1;
        let runners = vec![
            runner(1, "active", 0, Some("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z"),
            runner(2, "active", 0, Some("2026-01-01T00:05:00Z"), "2026-01-01T00:00:00Z"),
            runner(3, "active", 0, Some("2026-01-01T00:09:30Z"), "2026-01-01T00:00:00Z"),
            runner(4, "active", 1, None, "2026-01-01T00:00:00Z"),
        ];
        let idle = snapshot(vec![], runners.clone());
        assert_eq!(
            summary(&decide(&pool, &idle, &instances(&[1, 2, 3, 4]), &[])),
            ["retire 1 idle i-1", "retire 2 idle i-2"]
        );
        let busy = snapshot(vec![queued(&["linux"])], runners);
        assert!(decide(&pool, &busy, &instances(&[1, 2, 3, 4]), &[]).is_empty(), "demand keeps idle runners");
    }

    #[test]
    fn runners_offline_for_the_register_timeout_are_retired_so_the_pool_can_replace_them() {
        // Found by the fleet simulator (seed 15): two runners whose machines lived on but whose
        // runners never came back filled `max_runners`, and queued jobs waited for ever.
        let mut pool = pool();
        pool.max_runners = 2;
        let mut dead = runner(1, "draining", 0, Some("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z");
        dead.last_seen_at = "2026-01-01T00:05:00Z".into();
        let mut lately = runner(2, "active", 0, Some("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z");
        lately.online = false;
        lately.last_seen_at = "2026-01-01T00:09:30Z".into();
        let mut holding = runner(3, "active", 1, None, "2026-01-01T00:00:00Z");
        holding.online = false;
        let queued_jobs = snapshot(vec![queued(&["linux"])], vec![dead, lately, holding]);
        assert_eq!(
            summary(&decide(&pool, &queued_jobs, &instances(&[1, 2, 3]), &[])),
            ["retire 1 unreachable i-1"],
            "only the runner unseen for register_timeout and holding nothing is retired"
        );
        // A draining runner that reconnected (an ephemeral one restarted after its job) holds
        // its slot for ever unless it is retired once it holds nothing.
        let mut drained = runner(4, "draining", 0, Some("2026-01-01T00:09:59Z"), "2026-01-01T00:00:00Z");
        drained.online = true;
        let mut finishing = runner(5, "draining", 1, None, "2026-01-01T00:00:00Z");
        finishing.online = true;
        let draining = snapshot(vec![], vec![drained, finishing]);
        assert_eq!(summary(&decide(&pool, &draining, &instances(&[4, 5]), &[])), ["retire 4 drained i-4"]);
    }

    #[test]
    fn orphans_on_either_side_are_cleaned_up_through_retire() {
        let pool = pool();
        let runners = vec![
            runner(1, "active", 1, None, "2026-01-01T00:00:00Z"),
            runner(2, "registered", 0, None, "2026-01-01T00:00:00Z"),
            runner(3, "registered", 0, None, "2026-01-01T00:09:00Z"),
        ];
        // Runner 1's machine vanished (it may still hold a job: retire answers busy then), runner
        // 2 never connected within the register timeout, machine 7 has no runner at all.
        let mut machines = instances(&[2, 3]);
        machines.push(Instance { id: "i-7".into(), name: "p-7".into(), pool: "p".into() });
        let decisions = decide(&pool, &snapshot(vec![], runners), &machines, &[]);
        assert_eq!(summary(&decisions), ["retire 1 instance_gone -", "retire 2 never_registered i-2", "terminate i-7"]);
        // A machine being created has no runner record yet only for a moment: left alone.
        let decisions = decide(&pool, &snapshot(vec![], vec![]), &instances(&[8]), &["p-8"]);
        assert!(decisions.is_empty(), "{decisions:?}");
    }
}
