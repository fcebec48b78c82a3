//! `baton-sim`: runs seeds of the fleet simulation and reports violations as JSON.
//!
//! `cargo xtask sim` builds and runs this. Every seed runs in a process of its own: tokio numbers
//! tasks with a process-wide counter and shards a runtime's task list by that number, so the
//! order in which a crashed host's tasks are dropped (and so the order of the messages they
//! send) depends on how many tasks earlier simulations in the process created. A fresh process
//! per seed makes a seed's run depend on the seed alone.
//!
//! Exit status 1 when a seed of the sound system broke an invariant, a replay differed, or a
//! negative control was caught too rarely; each failure names the command that replays it.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use baton_sim::{Options, Variant};
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "Deterministic simulation of a Baton fleet")]
struct Args {
    /// How many seeds to run, starting at --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Run only this seed, twice, and check both runs are identical; prints its trace.
    #[arg(long)]
    seed: Option<u64>,
    /// `sound` (default) or a negative control: f1-lost-on-disconnect, f2-lagging-read,
    /// f4-check-then-terminate, f4-deregister-then-recheck, f3-shared-temp-dir.
    #[arg(long, default_value = "sound")]
    variant: String,
    /// Seeds run in parallel, each in its own process.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Also run every Nth seed a second time and check the replay is identical (0: never).
    #[arg(long, default_value_t = 10)]
    replay_every: u64,
    /// For a negative control: fail unless at least this share of seeds broke an invariant
    /// (violations are expected then, and do not fail the run by themselves).
    #[arg(long)]
    min_catch_rate: Option<f64>,
    /// Internal: run one seed in this process and print its outcome as JSON.
    #[arg(long, hide = true)]
    one: Option<u64>,
    /// Internal, with --one: include the trace.
    #[arg(long, hide = true)]
    trace: bool,
}

/// Seeds that once found a bug, run with every multi-seed run of the sound system.
const REGRESSIONS: &[(u64, &str)] = &[
    (5, "retire-by-name terminated a machine whose gone runner still held a running attempt"),
    (15, "runners that never came back filled max_runners; queued jobs waited for ever"),
    (1, "a runner shown by a snapshot before its machine existed was retired as instance-gone"),
    (251, "a restarted runner gave up renewing a replayed completion's lease while the server was away"),
    (260, "the same, another schedule"),
    (397, "the same, another schedule"),
    (
        7046,
        "a lease fenced locally after its job finished was no longer renewed; the log upload's backoff outlasted it",
    ),
    (2500, "the same, another schedule"),
    (3365, "the same, another schedule"),
    (3379, "the same, another schedule"),
    (6296, "the same, another schedule"),
    (9296, "the same, another schedule"),
    (3557, "the lease check ignored that a restarted server extends leases by its outage"),
    (3175, "a job that finished at its fence's instant had its result dropped: the fence was read first"),
];

/// One seed's outcome as the child process reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    seed: u64,
    variant: String,
    violations: Vec<String>,
    digest: String,
    jobs: usize,
    machines: usize,
    simulated_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<Vec<String>>,
}

/// Log lines carry simulated time, so two runs of a seed can be compared line by line.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, writer: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(elapsed) => write!(writer, "{:>10.3}", elapsed.as_secs_f64()),
            None => write!(writer, "{:>10}", "-"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATON_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .with_timer(SimTime)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    anyhow::ensure!(args.seeds <= 1_000_000, "--seeds: at most 1,000,000");
    anyhow::ensure!((1..=64).contains(&args.threads), "--threads: 1 to 64");
    if let Some(minimum) = args.min_catch_rate {
        anyhow::ensure!((0.0..=1.0).contains(&minimum), "--min-catch-rate: a share from 0 to 1");
    }
    let Some(variant) = Variant::parse(&args.variant) else {
        let names: Vec<&str> = Variant::ALL.iter().map(|variant| variant.name()).collect();
        bail!("unknown --variant {:?}; one of: {}", args.variant, names.join(", "));
    };
    if let Some(seed) = args.one {
        return run_one(seed, variant, args.trace);
    }
    if let Some(seed) = args.seed {
        return replay(seed, variant);
    }
    run_many(&args, variant)
}

/// Runs one seed in this process and prints its report.
fn run_one(seed: u64, variant: Variant, trace: bool) -> anyhow::Result<()> {
    let outcome = baton_sim::run(&Options { seed, variant, keep_trace: trace, root: None })?;
    let report = Report {
        seed,
        variant: variant.name().into(),
        violations: outcome.violations.iter().map(ToString::to_string).collect(),
        digest: format!("{:016x}", outcome.digest),
        jobs: outcome.jobs,
        machines: outcome.machines,
        simulated_s: outcome.simulated.as_secs_f64(),
        trace: outcome.trace,
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &report).context("write the report")?;
    writeln!(stdout).context("write the report")?;
    Ok(())
}

/// Runs one seed in a child process.
fn child(seed: u64, variant: Variant, trace: bool) -> anyhow::Result<Report> {
    let program = std::env::current_exe().context("find this program")?;
    let mut command = Command::new(program);
    command.args(["--one", &seed.to_string(), "--variant", variant.name()]);
    if trace {
        command.arg("--trace");
    }
    let output = command.stderr(std::process::Stdio::inherit()).output().context("run a seed")?;
    if !output.status.success() {
        bail!("seed {seed} ({variant}) crashed the simulator ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).with_context(|| format!("read the report of seed {seed}"))
}

fn run_many(args: &Args, variant: Variant) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut seeds: Vec<u64> = (args.first..args.first.saturating_add(args.seeds)).collect();
    if variant == Variant::Sound {
        for (seed, _) in REGRESSIONS {
            if !seeds.contains(seed) {
                seeds.push(*seed);
            }
        }
    }
    let replay_every = args.replay_every;
    let chunks: Vec<Vec<u64>> =
        (0..args.threads).map(|thread| seeds.iter().copied().skip(thread).step_by(args.threads).collect()).collect();
    let results: Vec<anyhow::Result<Vec<(Report, bool)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || -> anyhow::Result<Vec<(Report, bool)>> {
                    let mut reports = Vec::new();
                    for seed in chunk {
                        let report = child(seed, variant, false)?;
                        let replayed = replay_every > 0 && seed % replay_every == 0;
                        let identical = !replayed || child(seed, variant, false)?.digest == report.digest;
                        let mut line = serde_json::to_value(&report).context("render a report")?;
                        if replayed && let Some(object) = line.as_object_mut() {
                            object.insert("replay_identical".into(), identical.into());
                        }
                        eprintln!("{line}");
                        reports.push((report, identical));
                    }
                    Ok(reports)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a thread panicked"))))
            .collect()
    });
    let mut reports = Vec::new();
    for result in results {
        reports.extend(result?);
    }
    reports.sort_by_key(|(report, _)| report.seed);
    let caught = reports.iter().filter(|(report, _)| !report.violations.is_empty()).count();
    let rate = if reports.is_empty() { 0.0 } else { caught as f64 / reports.len() as f64 };
    let diverged: Vec<u64> =
        reports.iter().filter(|(_, identical)| !identical).map(|(report, _)| report.seed).collect();
    let mut by_invariant = std::collections::BTreeMap::<String, usize>::new();
    for (report, _) in &reports {
        let seen: std::collections::BTreeSet<String> =
            report.violations.iter().filter_map(|violation| violation.split(':').next().map(str::to_string)).collect();
        for invariant in seen {
            *by_invariant.entry(invariant).or_default() += 1;
        }
    }
    let summary = serde_json::json!({
        "variant": variant.name(),
        "seeds": reports.len(),
        "first": args.first,
        "seeds_with_violations": caught,
        "catch_rate": rate,
        "seeds_by_invariant": by_invariant,
        "replays_checked": reports.iter().filter(|(report, _)| replay_every > 0 && report.seed % replay_every == 0).count(),
        "replays_diverged": diverged,
        "wall_s": started.elapsed().as_secs_f64(),
        "simulated_s": reports.iter().map(|(report, _)| report.simulated_s).sum::<f64>(),
    });
    writeln!(std::io::stdout().lock(), "{summary}").context("write the summary")?;
    if !diverged.is_empty() {
        bail!("{} seed(s) did not replay identically: {diverged:?}", diverged.len());
    }
    if let Some(minimum) = args.min_catch_rate {
        anyhow::ensure!(variant != Variant::Sound, "--min-catch-rate is for negative controls");
        if rate < minimum {
            bail!("{variant} was caught on {caught} of {} seeds ({rate:.2}), below {minimum}", reports.len());
        }
        return Ok(());
    }
    if caught > 0 {
        for (report, _) in reports.iter().filter(|(report, _)| !report.violations.is_empty()) {
            eprintln!("seed {} broke: {}", report.seed, report.violations[0]);
            eprintln!("  replay: cargo xtask sim --seed {} --variant {}", report.seed, variant);
        }
        bail!("{caught} of {} seeds broke an invariant", reports.len());
    }
    Ok(())
}

/// Runs one seed twice, each in a fresh process, prints its trace and violations, and checks
/// both runs are identical.
fn replay(seed: u64, variant: Variant) -> anyhow::Result<()> {
    let first = child(seed, variant, true)?;
    let second = child(seed, variant, false)?;
    let mut stdout = std::io::stdout().lock();
    for line in first.trace.iter().flatten() {
        writeln!(stdout, "{line}")?;
    }
    for violation in &first.violations {
        writeln!(stdout, "VIOLATION {violation}")?;
    }
    writeln!(
        stdout,
        "seed {seed} variant {variant}: {} violation(s), {} jobs, {} machines, {:.1}s simulated, trace digest {}",
        first.violations.len(),
        first.jobs,
        first.machines,
        first.simulated_s,
        first.digest
    )?;
    if first.digest != second.digest {
        bail!("seed {seed}: the replay differed from the first run (digest {} vs {})", first.digest, second.digest);
    }
    writeln!(stdout, "replayed: identical")?;
    if variant == Variant::Sound && !first.violations.is_empty() {
        bail!("seed {seed} broke an invariant");
    }
    Ok(())
}
