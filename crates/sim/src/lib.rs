//! Deterministic simulation of a whole Baton fleet.
//!
//! One seed drives everything: the workload, the pool's settings, the network's latency and
//! faults, crashes and restarts. The real server (router, store scripts over the in-memory
//! store, sweepers), real runner listeners (with simulated workers) and the real scaler (with
//! a simulated provider) run as turmoil hosts on simulated time and a simulated network, on one
//! thread, with a webhook receiver that records every message the server's dispatcher sends
//! it. The same seed gives the same run, event for event: [`Outcome::digest`] proves it.
//!
//! The [`ledger`] records the ground truth; [`check`] judges it; [`variants`] holds the broken
//! negative controls the checkers must catch.

pub mod check;
pub mod ledger;
pub mod machines;
pub mod net;
pub mod variants;
pub mod worker;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use baton_api as api;
use baton_client::Client;
use baton_core::{AttemptState, JobState, Timeouts, Timestamp};
use baton_scaler::{PoolConfig, ProviderConfig, Scaler};
use baton_server::{Config, Database, Server};
use baton_store::mem::MemBackend;
use baton_store::{Backend, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use check::Violation;
use check::{Evidence, Outage};
use ledger::{SharedLedger, Termination};
use machines::{MachineSpec, SharedMachines, SimProvider};
use net::{NetFaults, SERVER_PORT, SimListener, SimTransport};
pub use variants::Variant;
use worker::{Behaviour, SimWorkers};

pub(crate) const SERVER: &str = "server";
const SERVER_URL: &str = "http://server:8080";
const ADMIN_TOKEN: &str = "baton_admin_simulation";
const POOL: &str = "sim";
/// The host that receives the fleet's webhooks.
const RECEIVER: &str = "hooks";
const RECEIVER_PORT: u16 = 9000;
const WEBHOOK_URL: &str = "http://hooks:9000/hook";
/// Wall time at the start of every simulation (2026-01-01T00:00:00Z).
pub(crate) const EPOCH_MS: u64 = 1_767_225_600_000;
/// After the faults stop, every job must conclude within this much simulated time, plus twice
/// the work left for the pool (the jobs' durations over its runners: machines are made and
/// removed around every ephemeral job).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(30);

/// The protocol timeouts the simulated fleet runs with: short, so faults outlast leases.
pub const TIMEOUTS: Timeouts = Timeouts {
    lease_ttl: Duration::from_secs(3),
    accept_timeout: Duration::from_secs(1),
    session_ttl: Duration::from_secs(6),
    long_poll_max: Duration::from_secs(2),
};

/// What one simulated run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub variant: Variant,
    pub violations: Vec<Violation>,
    /// A digest of the whole trace: equal for two runs of one seed.
    pub digest: u64,
    pub trace_lines: usize,
    pub jobs: usize,
    pub machines: usize,
    pub simulated: Duration,
    /// The trace itself, when asked for.
    pub trace: Option<Vec<String>>,
}

impl Outcome {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!("cargo xtask sim --seed {} --variant {}", self.seed, self.variant)
    }
}

/// One job of the workload.
#[derive(Debug, Clone)]
struct PlannedJob {
    gap: Duration,
    duration: Duration,
    behaviour: Behaviour,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Cut a machine off the server for a while.
    Partition { machine: u64, length: Duration },
    /// Hold a machine's messages to and from the server for a while, then deliver them.
    Hold { machine: u64, length: Duration },
    /// Crash a machine's runner (and its workers) and start it again.
    RestartMachine { machine: u64 },
    /// Crash the server and start it again after a while.
    CrashServer { down: Duration },
}

#[derive(Debug, Clone, Copy)]
enum Repair {
    Partition { machine: usize },
    Hold { machine: usize },
    Server,
}

/// Everything a seed decides before the run starts.
#[derive(Debug, Clone)]
struct Plan {
    jobs: Vec<PlannedJob>,
    pool: PoolConfig,
    net: NetFaults,
    min_latency: Duration,
    max_latency: Duration,
    faults: Vec<(Duration, Fault)>,
    faults_end: Duration,
    reaper_lag: Duration,
    reaper_think: Duration,
    exit_lag: Duration,
    /// Webhooks delivered one at a time in event order, or not.
    webhooks_ordered: bool,
    /// How often the webhook receiver answers 503.
    receiver_failure: f64,
}

fn plan(seed: u64, variant: Variant) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut webhook_rng = StdRng::seed_from_u64(seed ^ 0x5745_4248_4f4f_4b53);
    // The broken scalers race assignments: they get a steady stream of work to race.
    // Jobs come in waves, so runners sit idle while new work arrives.
    let (job_count, max_gap) =
        if variant.has_broken_reaper() { (rng.random_range(25..=40), 600) } else { (rng.random_range(10..=40), 300) };
    let jobs: Vec<PlannedJob> = (0..job_count)
        .map(|_| PlannedJob {
            gap: Duration::from_millis(rng.random_range(0..max_gap)),
            duration: Duration::from_millis(rng.random_range(20..3000)),
            behaviour: match rng.random_range(0..100) {
                0..85 => Behaviour::Succeed,
                85..95 => Behaviour::Fail,
                _ => Behaviour::Crash,
            },
        })
        .collect();
    let submit_time: Duration = jobs.iter().map(|job| job.gap).sum();
    let ephemeral = match variant {
        // The shared directory outlives one job only on a runner that takes the next one.
        Variant::SharedTempDir => false,
        _ => rng.random_bool(0.5),
    };
    let idle_timeout = if variant.has_broken_reaper() {
        Duration::from_secs(3600)
    } else {
        Duration::from_millis(rng.random_range(0..1000))
    };
    let min_idle = match variant {
        // A lost attempt is re-run at once only when another runner is ready.
        Variant::LostOnDisconnect => rng.random_range(1..=2),
        // The broken scalers race assignments to fresh idle runners: keep some coming.
        variant if variant.has_broken_reaper() => rng.random_range(0..=2) + 1,
        _ => rng.random_range(0..=2),
    };
    let pool = PoolConfig {
        name: POOL.into(),
        labels: vec![POOL.into()],
        min_idle,
        max_runners: rng.random_range(2..=5),
        idle_timeout,
        ephemeral,
        register_timeout: Duration::from_secs(5),
        scale_up_batch: 2,
        capacity: if ephemeral { 1 } else { rng.random_range(1..=2) },
        provider: ProviderConfig::Exec { command: "simulated".into(), timeout: None },
    };
    let faults_end = submit_time + Duration::from_secs(5);
    let fault_count = match variant {
        Variant::LostOnDisconnect => rng.random_range(6..=12),
        _ => rng.random_range(0..=8),
    };
    let mut faults: Vec<(Duration, Fault)> = (0..fault_count)
        .map(|_| {
            let at = Duration::from_millis(rng.random_range(500..=faults_end.as_millis().max(501) as u64));
            let machine = rng.random();
            let fault = match (variant, rng.random_range(0..10)) {
                (Variant::LostOnDisconnect, 0..7) | (_, 0..3) => {
                    Fault::Partition { machine, length: Duration::from_millis(rng.random_range(100..5000)) }
                }
                (_, 3..5) => Fault::Hold { machine, length: Duration::from_millis(rng.random_range(50..1500)) },
                (_, 5..8) => Fault::RestartMachine { machine },
                _ => Fault::CrashServer { down: Duration::from_millis(rng.random_range(100..3000)) },
            };
            (at, fault)
        })
        .collect();
    faults.sort_by_key(|(at, _)| *at);
    Plan {
        jobs,
        pool,
        net: if std::env::var_os("BATON_SIM_NO_NET_FAULTS").is_some() {
            NetFaults::default()
        } else {
            NetFaults { duplicate: rng.random_range(0.0..0.05), lose_answer: rng.random_range(0.0..0.05) }
        },
        min_latency: Duration::from_millis(rng.random_range(0..2)),
        max_latency: Duration::from_millis(rng.random_range(2..30)),
        faults,
        faults_end,
        reaper_lag: Duration::from_millis(rng.random_range(300..2000)),
        // A cloud API call or two: the check-then-terminate scaler's check and act are 0.1-1.5 s
        // apart. (The deregistering scaler's race window is its read's lag; a long pause after
        // its deregistration would only let the raced job finish before the termination.)
        reaper_think: Duration::from_millis(
            rng.random_range(20..300) * if variant == Variant::CheckThenTerminate { 5 } else { 1 },
        ),
        exit_lag: Duration::from_millis(rng.random_range(50..500)),
        // Drawn apart from the rest, so that the jobs and faults a seed plans stay as they were.
        webhooks_ordered: webhook_rng.random_bool(0.5),
        receiver_failure: webhook_rng.random_range(0.0..0.3),
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub variant: Variant,
    /// Keep the whole trace in the outcome.
    pub keep_trace: bool,
    /// Where machines keep their work and state directories; a fresh temporary directory when
    /// absent.
    pub root: Option<PathBuf>,
}

/// Runs one seed.
pub fn run(options: &Options) -> anyhow::Result<Outcome> {
    let temp;
    let root = match &options.root {
        Some(root) => root.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("baton-sim-").tempdir().context("create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    baton_client::entropy::seed_thread(options.seed);
    let outcome = simulate(options, &root);
    baton_client::entropy::unseed_thread();
    outcome
}

fn simulate(options: &Options, root: &Path) -> anyhow::Result<Outcome> {
    let (seed, variant) = (options.seed, options.variant);
    let plan = plan(seed, variant);
    let ledger = SharedLedger::default();
    let backend = Arc::new(MemBackend::new());
    let machines = SharedMachines::default();
    let finished_in_time = Arc::new(Mutex::new(false));
    let work: Duration = plan.jobs.iter().map(|job| job.duration).sum();
    let horizon = plan.faults_end + LIVENESS_BOUND + work * 2 / plan.pool.max_runners.max(1);

    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(horizon + Duration::from_secs(30))
        .min_message_latency(plan.min_latency)
        .max_message_latency(plan.max_latency)
        .build();

    sim.host(SERVER, {
        let backend = backend.clone();
        let net = plan.net;
        move || server(backend.clone(), net)
    });
    sim.host(RECEIVER, {
        let ledger = ledger.clone();
        let failure = plan.receiver_failure;
        move || receiver(ledger.clone(), failure)
    });
    sim.host("scaler", {
        let machines = machines.clone();
        let plan = plan.clone();
        move || scaler(variant, plan.clone(), machines.clone())
    });
    sim.client("workload", workload(plan.clone(), horizon, finished_in_time.clone(), ledger.clone()));

    let mut faults = plan.faults.iter().copied().peekable();
    let mut repairs: Vec<(Duration, Repair)> = Vec::new();
    let mut started: Vec<String> = Vec::new();
    let mut outages: Vec<Outage> = Vec::new();
    let mut open_outages: BTreeMap<usize, Duration> = BTreeMap::new();
    let mut server_down: Option<Duration> = None;
    let reader = Store::new(Box::new(backend.clone()), TIMEOUTS);
    let mut steps: u64 = 0;
    let mut busy_violations = Vec::new();
    let mut cut_short = false;
    let end = loop {
        let now = sim.elapsed();
        // Machines the provider made or terminated since the last step.
        let (pending, doomed) = {
            let mut shared = machines.lock();
            (std::mem::take(&mut shared.pending), std::mem::take(&mut shared.doomed))
        };
        for spec in pending {
            ledger.trace_at(now, format!("machine-create {}", spec.name));
            started.push(spec.name.clone());
            let (name, ledger, root) = (spec.name.clone(), ledger.clone(), root.to_path_buf());
            let net = plan.net;
            let exit_lag = plan.exit_lag;
            sim.host(name.as_str(), move || {
                machine(spec.clone(), ledger.clone(), root.clone(), net, variant, exit_lag)
            });
        }
        for name in doomed {
            let held = held_by(&reader, &name);
            ledger.trace_at(now, format!("machine-terminate {name} held {held:?}"));
            ledger.lock().terminations.push(Termination { machine: name.clone(), at: now, held });
            ledger.machine_down(&name, now);
            sim.crash(name.as_str());
        }
        // Repairs that are due.
        repairs.sort_by_key(|(at, _)| *at);
        while let Some(&(at, repair)) = repairs.first() {
            if at > now {
                break;
            }
            repairs.remove(0);
            match repair {
                Repair::Partition { machine } => {
                    sim.repair(started[machine].as_str(), SERVER);
                    if let Some(from) = open_outages.remove(&machine) {
                        outages.push(Outage { machine: started[machine].clone(), from, to: now });
                    }
                    ledger.trace_at(now, format!("repair {}", started[machine]));
                }
                Repair::Hold { machine } => {
                    sim.release(started[machine].as_str(), SERVER);
                    if let Some(from) = open_outages.remove(&machine) {
                        outages.push(Outage { machine: started[machine].clone(), from, to: now });
                    }
                    ledger.trace_at(now, format!("release {}", started[machine]));
                }
                Repair::Server => {
                    ledger.trace_at(now, "server-restart");
                    if let Some(from) = server_down.take() {
                        outages.push(Outage { machine: SERVER.into(), from, to: now });
                    }
                    sim.bounce(SERVER);
                }
            }
        }
        // Faults that are due.
        while let Some(&(at, fault)) = faults.peek() {
            if at > now {
                break;
            }
            faults.next();
            let alive: Vec<usize> =
                (0..started.len()).filter(|index| machines.lock().existing.contains(&started[*index])).collect();
            // F1's faults land on machines that run a job when there are any: a dropped
            // connection under an idle runner breaks nothing, even on the broken server.
            let busy: Vec<usize> = if variant == Variant::LostOnDisconnect {
                alive.iter().copied().filter(|index| runs_a_job(&reader, &started[*index])).collect()
            } else {
                Vec::new()
            };
            let pick = |choice: u64| {
                let among = if busy.is_empty() { &alive } else { &busy };
                (!among.is_empty()).then(|| among[(choice % among.len() as u64) as usize])
            };
            match fault {
                Fault::Partition { machine, length } => {
                    if let Some(index) = pick(machine)
                        && !open_outages.contains_key(&index)
                    {
                        ledger.trace_at(now, format!("partition {} for {length:?}", started[index]));
                        sim.partition(started[index].as_str(), SERVER);
                        open_outages.insert(index, now);
                        repairs.push((now + length, Repair::Partition { machine: index }));
                        if variant == Variant::LostOnDisconnect {
                            lose_on_disconnect(&backend, &reader, &started[index], &ledger, now);
                        }
                    }
                }
                Fault::Hold { machine, length } => {
                    if let Some(index) = pick(machine)
                        && !open_outages.contains_key(&index)
                    {
                        ledger.trace_at(now, format!("hold {} for {length:?}", started[index]));
                        sim.hold(started[index].as_str(), SERVER);
                        open_outages.insert(index, now);
                        repairs.push((now + length, Repair::Hold { machine: index }));
                        if variant == Variant::LostOnDisconnect {
                            // To a health check, a link that carries nothing is a dropped one.
                            lose_on_disconnect(&backend, &reader, &started[index], &ledger, now);
                        }
                    }
                }
                Fault::RestartMachine { machine } => {
                    if let Some(index) = pick(machine) {
                        let name = started[index].clone();
                        ledger.trace_at(now, format!("machine-restart {name}"));
                        ledger.machine_down(&name, now);
                        sim.bounce(name.as_str());
                        if variant == Variant::LostOnDisconnect {
                            lose_on_disconnect(&backend, &reader, &name, &ledger, now);
                        }
                    }
                }
                Fault::CrashServer { down } => {
                    if !repairs.iter().any(|(_, repair)| matches!(repair, Repair::Server)) {
                        ledger.trace_at(now, format!("server-crash for {down:?}"));
                        sim.crash(SERVER);
                        server_down = Some(now);
                        repairs.push((now + down, Repair::Server));
                    }
                }
            }
        }
        // A negative control's run stops once the rest of it could only cost time: a machine
        // went down under a job, a worker saw its files vanish, or (F1) every fault is over
        // and the leases of that time have run out.
        if variant != Variant::Sound {
            let caught = {
                let ledger = ledger.lock();
                ledger.terminations.iter().any(|termination| !termination.held.is_empty())
                    || !ledger.observed.is_empty()
            };
            let settled = variant == Variant::LostOnDisconnect
                && now > plan.faults_end + TIMEOUTS.lease_ttl + Duration::from_secs(1)
                && repairs.is_empty();
            if caught || settled {
                ledger.trace_at(now, "the negative control's run stops here");
                cut_short = true;
                break now;
            }
        }
        steps += 1;
        if steps.is_multiple_of(250) {
            busy_violations.extend(check::busy_matches_truth(&reader));
        }
        match sim.step() {
            Ok(true) => break sim.elapsed(),
            Ok(false) => {}
            Err(error) => {
                return Ok(failed_outcome(options, &ledger, format!("the simulation failed: {error}")));
            }
        }
    };
    for (machine, from) in open_outages {
        outages.push(Outage { machine: started[machine].clone(), from, to: end });
    }
    if let Some(from) = server_down {
        outages.push(Outage { machine: SERVER.into(), from, to: end });
    }

    let all_finished_in_time = *finished_in_time.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ledger_view = ledger.lock();
    let mut violations = check::check(&Evidence {
        ledger: &ledger_view,
        store: &reader,
        outages: &outages,
        end,
        lease_ttl: TIMEOUTS.lease_ttl,
        all_finished_in_time,
        cut_short,
    });
    violations.extend(busy_violations);
    let mut trace = ledger_view.trace.clone();
    drop(ledger_view);
    trace.extend(store_trace(&reader));
    trace.extend(final_runners(&reader));
    let mut hasher = std::hash::DefaultHasher::new();
    trace.hash(&mut hasher);
    let jobs = reader.jobs(baton_core::JobId(0), 10_000).map(|jobs| jobs.len()).unwrap_or(0);
    Ok(Outcome {
        seed,
        variant,
        violations,
        digest: hasher.finish(),
        trace_lines: trace.len(),
        jobs,
        machines: started.len(),
        simulated: end,
        trace: options.keep_trace.then_some(trace),
    })
}

fn failed_outcome(options: &Options, ledger: &SharedLedger, message: String) -> Outcome {
    let trace = ledger.lock().trace.clone();
    Outcome {
        seed: options.seed,
        variant: options.variant,
        violations: vec![Violation { invariant: 0, detail: message }],
        digest: 0,
        trace_lines: trace.len(),
        jobs: 0,
        machines: 0,
        simulated: Duration::ZERO,
        trace: options.keep_trace.then_some(trace),
    }
}

/// The store's event log, rendered without anything random (tokens, ids of credentials).
fn store_trace(store: &Store) -> Vec<String> {
    let mut lines = Vec::new();
    let mut after = baton_core::EventSeq(0);
    while let Ok(page) = store.events_after(after, 1000) {
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in page {
            lines.push(format!(
                "event {} {} {} job {:?} attempt {:?} runner {:?}",
                event.seq.0,
                event.at.0,
                event.kind,
                event.job_id.map(|id| id.0),
                event.attempt.map(|number| number.0),
                event.runner_id.map(|id| id.0)
            ));
        }
    }
    lines
}

/// The runners as the run left them: what a stuck pool is stuck on.
fn final_runners(store: &Store) -> Vec<String> {
    check::all_runners(store)
        .into_iter()
        .filter(|view| view.runner.state != baton_core::RunnerState::Gone)
        .map(|view| {
            format!(
                "final runner {} {} {} online={} held={}",
                view.runner.id.0,
                view.runner.name,
                view.runner.state,
                view.session.is_some(),
                view.held.len()
            )
        })
        .collect()
}

/// Offered and running attempts that reference the runner named `machine`, from the store.
fn held_by(store: &Store, machine: &str) -> Vec<(i64, u32)> {
    check::all_runners(store)
        .iter()
        .filter(|view| view.runner.name == machine)
        .flat_map(|view| view.held.iter().map(|attempt| (attempt.job_id.0, attempt.number.0)))
        .collect()
}

/// True when the store has an attempt running on the runner named `machine`.
fn runs_a_job(store: &Store, machine: &str) -> bool {
    check::all_runners(store)
        .iter()
        .filter(|view| view.runner.name == machine)
        .any(|view| view.held.iter().any(|attempt| attempt.state == AttemptState::Running))
}

/// The F1 negative control's server: the runner's connection dropped, so its running attempts
/// are declared lost now. (Their leases are cut short to this instant and the lease sweep runs.)
fn lose_on_disconnect(backend: &MemBackend, store: &Store, machine: &str, ledger: &SharedLedger, now: Duration) {
    let instant = Timestamp(EPOCH_MS).plus(now);
    let cut = backend.write(&mut |tx| {
        let mut cut = false;
        for runner in tx.runners_named(machine)? {
            for mut attempt in tx.attempts_held(runner.id)? {
                if attempt.state == AttemptState::Running {
                    attempt.lease_deadline = Some(Timestamp(instant.0.saturating_sub(1)));
                    tx.attempt_update(&attempt)?;
                    cut = true;
                }
            }
        }
        Ok(cut)
    });
    if cut.is_ok() {
        let expired = store.expire_leases(instant).map(|sweep| sweep.expired).unwrap_or(0);
        ledger.trace_at(now, format!("broken server: {machine} disconnected; {expired} lease(s) expired"));
    }
}

async fn server(backend: Arc<MemBackend>, net: NetFaults) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", SERVER_PORT)).await?;
    let addr = listener.local_addr()?;
    let mut config = Config::new(addr, Database::SharedMemory(backend));
    config.execution = baton_server::config::Execution::Inline;
    config.timeouts = TIMEOUTS;
    config.sweep_interval = Duration::from_millis(100);
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.webhooks = baton_server::webhooks::WebhookSettings {
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        transport: Some(Arc::new(SimTransport { faults: net })),
        ..Default::default()
    };
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    config.clock_origin = Some(Timestamp(EPOCH_MS).plus(elapsed));
    let server = Server::serve(config, SimListener(listener)).await.map_err(|error| format!("{error:#}"))?;
    std::future::pending::<()>().await;
    drop(server);
    Ok(())
}

fn client(token: Option<String>, net: NetFaults) -> Result<Client, Box<baton_client::Error>> {
    Client::with_transport(SERVER_URL, token, Arc::new(SimTransport { faults: net })).map_err(Box::new)
}

async fn scaler(variant: Variant, plan: Plan, machines: SharedMachines) -> turmoil::Result {
    let client = client(Some(ADMIN_TOKEN.into()), plan.net)?;
    let provider: Arc<dyn baton_scaler::provider::Provider> =
        Arc::new(SimProvider { machines: machines.clone(), pool: POOL.into() });
    let scaler = Arc::new(Scaler::with_providers(
        client.clone(),
        SERVER_URL.into(),
        vec![(plan.pool.clone(), provider.clone())],
        Duration::from_millis(500),
    ));
    if variant.has_broken_reaper() {
        tokio::spawn(variants::broken_reaper(
            variant,
            client,
            provider,
            POOL.into(),
            plan.reaper_lag,
            plan.reaper_think,
        ));
    }
    let (_stop, stop) = tokio::sync::watch::channel(false);
    scaler.run(stop).await;
    Ok(())
}

async fn machine(
    spec: MachineSpec,
    ledger: SharedLedger,
    root: PathBuf,
    net: NetFaults,
    variant: Variant,
    exit_lag: Duration,
) -> turmoil::Result {
    let home = root.join(&spec.name);
    let workers = SimWorkers {
        machine: spec.name.clone(),
        ledger,
        shared_dir: (variant == Variant::SharedTempDir).then(|| home.join("work").join("_temp")),
        exit_lag,
    };
    let config = baton_runner::listener::RunnerConfig {
        server: SERVER_URL.into(),
        registration: baton_runner::listener::Registration::Jit(spec.jit_config.clone()),
        name: spec.name.clone(),
        labels: vec![POOL.into()],
        capacity: spec.capacity,
        ephemeral: spec.ephemeral,
        work_dir: home.join("work"),
        state_dir: home.join("state"),
        escalation: Default::default(),
        poll_wait: TIMEOUTS.long_poll_max,
        workers: Arc::new(workers),
        renew_on_own_thread: false,
        transport: Some(Arc::new(SimTransport { faults: net })),
    };
    let (_signals, signals) = tokio::sync::mpsc::unbounded_channel();
    if let Err(error) = baton_runner::listener::run(config, signals).await {
        // A runner that cannot go on (its registration was removed, say) leaves the machine idle.
        tracing::info!(machine = %spec.name, error = %format!("{error:#}"), "the runner stopped");
    }
    Ok(())
}

/// Records every webhook message; answers 503 to a share of them (they are sent again).
async fn receiver(ledger: SharedLedger, failure: f64) -> turmoil::Result {
    use axum::http::StatusCode;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", RECEIVER_PORT)).await?;
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let ledger = ledger.clone();
            async move {
                if net::chance(failure) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers.get("webhook-id").and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let action = body["action"].as_str().unwrap_or("").to_string();
                ledger.webhook_received(id, body["workflow_job"]["id"].as_i64(), action);
                StatusCode::NO_CONTENT
            }
        }),
    );
    axum::serve(SimListener(listener), router).await?;
    Ok(())
}

async fn workload(
    plan: Plan,
    horizon: Duration,
    finished_in_time: Arc<Mutex<bool>>,
    ledger: SharedLedger,
) -> turmoil::Result {
    let client = client(Some(ADMIN_TOKEN.into()), plan.net)?;
    // The receiver takes workflow_job messages. A lost answer may make a second webhook: its
    // messages arrive too, which at least once allows.
    let webhook = api::CreateWebhookRequest {
        url: WEBHOOK_URL.into(),
        events: vec!["workflow_job".into()],
        secret: None,
        ordered: plan.webhooks_ordered,
    };
    loop {
        match client.create_webhook(&webhook).await {
            Ok(_) => break,
            Err(error) if error.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(error) => return Err(format!("create the webhook: {error}").into()),
        }
    }
    for (index, job) in plan.jobs.iter().enumerate() {
        tokio::time::sleep(job.gap).await;
        let spec = api::JobSpec {
            name: format!("job-{index}"),
            labels: vec![POOL.into()],
            env: BTreeMap::from([
                (worker::DURATION_VAR.to_string(), job.duration.as_millis().to_string()),
                (worker::OUTCOME_VAR.to_string(), job.behaviour.as_str().to_string()),
            ]),
            steps: vec![api::StepSpec {
                id: None,
                name: Some("work".into()),
                run: "true".into(),
                shell: None,
                env: BTreeMap::new(),
                working_directory: None,
                continue_on_error: false,
                timeout_minutes: None,
                condition: None,
            }],
            timeout_minutes: None,
            max_attempts: Some(10),
            contexts: None,
            outputs: None,
        };
        // Retried until the server answers; a lost answer may enqueue the job twice, and both
        // must then conclude.
        loop {
            match client.enqueue_job(&spec).await {
                Ok(_) => break,
                Err(error) if error.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(error) => return Err(format!("enqueue: {error}").into()),
            }
        }
    }
    loop {
        if turmoil::sim_elapsed().unwrap_or_default() > horizon {
            return Ok(());
        }
        if let Ok(list) = client.list_jobs(0, 1000).await
            && list.jobs.iter().all(|job| job.state == JobState::Completed.to_string())
        {
            *finished_in_time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
            // The run ends once the receiver has every completion (or at the horizon, and the
            // checker reports what is missing).
            let ids: Vec<i64> = list.jobs.iter().map(|job| job.id).collect();
            while !ledger.completions_announced(&ids) {
                if turmoil::sim_elapsed().unwrap_or_default() > horizon {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
