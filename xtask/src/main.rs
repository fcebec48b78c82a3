//! Project automation, in Rust so it needs nothing but cargo.
//!
//! - `cargo xtask ci`: exactly what CI runs: `cargo fmt --check`, `cargo clippy --workspace
//!   --all-targets -- -D warnings`, then every test (tidy checks included, as tests of this
//!   crate). Stops at the first failure with a non-zero exit.
//! - `cargo xtask bench [--quick] [--store sqlite] [--sqlite-synchronous normal|full]`: builds
//!   the release binaries and prints Baton's figures as one JSON object on stdout.
//! - `cargo xtask sim [--seeds N] [--first S] [--seed S] [--variant NAME] [--expect-violations]`:
//!   runs the deterministic fleet simulation (release build) and prints a JSON summary; a
//!   failing seed prints the command that replays it.

mod tidy;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy::check(&workspace_root()?),
        Some("bench") => bench(&args[1..]),
        Some("sim") => sim(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|tidy|bench|sim>\n  ci     fmt --check, clippy -D warnings, the whole test suite, the simulation budget\n  tidy   the repository's own consistency checks\n  bench  Baton's figures as JSON (--quick, --only NAME, --store sqlite|postgres)\n  sim    the fleet simulation (--seeds N, --first S, --seed S, --variant NAME)"
            );
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> anyhow::Result<std::path::PathBuf> {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(std::path::Path::to_path_buf).context("xtask lives one level below the workspace root")
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let root = workspace_root()?;
    eprintln!("==> cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(&root)
        .status()
        .with_context(|| format!("run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci() -> anyhow::Result<()> {
    tidy::check(&workspace_root()?)?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    cargo(&["test", "--workspace", "--locked", "--no-fail-fast"])?;
    sim_budget()?;
    eprintln!("==> all checks passed");
    Ok(())
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set (relative to the current
/// directory, as cargo reads it), else the workspace's `target`.
fn target_dir() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => Ok(std::path::PathBuf::from(dir)),
        None => Ok(workspace_root()?.join("target")),
    }
}

/// Runs the simulator, built with optimisations (seeds are CPU-bound) and with
/// `--cfg tokio_unstable`, which lets every simulated host's runtime take its random choices
/// (`select!` branch order) from the seed. That build has a target directory of its own, so the
/// rest of the workspace is not rebuilt with other flags.
fn sim(args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root()?;
    let target_dir = target_dir()?.join("sim");
    let flags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg tokio_unstable"),
        _ => "--cfg tokio_unstable".to_string(),
    };
    eprintln!("==> baton-sim {}", args.join(" "));
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Simulated machines keep their work and state directories in a temporary directory; in
    // memory, their many small writes and fsyncs cost the run almost nothing (it takes 40% less
    // time than on disk).
    let shm = std::path::Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
        command.env("TMPDIR", shm);
    }
    let status = command
        .args(["run", "--release", "--locked", "--quiet", "-p", "baton-sim", "--target-dir"])
        .arg(&target_dir)
        .arg("--")
        .args(args)
        .env("RUSTFLAGS", flags)
        .current_dir(&root)
        .status()
        .context("run the simulator")?;
    if !status.success() {
        bail!("the simulation failed ({status})");
    }
    Ok(())
}

/// The simulation budget CI runs: the sound system on 500 seeds with no violation (every 25th
/// replayed and compared), and every negative control on 200 other seeds, caught on at least
/// 90% of them (the runs are deterministic, so a drop means a checker or a control got weaker).
fn sim_budget() -> anyhow::Result<()> {
    sim(&["--seeds".into(), "500".into(), "--replay-every".into(), "25".into()])?;
    for variant in [
        "f1-lost-on-disconnect",
        "f2-lagging-read",
        "f4-check-then-terminate",
        "f4-deregister-then-recheck",
        "f3-shared-temp-dir",
    ] {
        sim(&[
            "--variant".into(),
            variant.into(),
            "--seeds".into(),
            "200".into(),
            "--first".into(),
            "1001".into(),
            "--replay-every".into(),
            "50".into(),
            "--min-catch-rate".into(),
            "0.9".into(),
        ])?;
    }
    Ok(())
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let mut forwarded = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--quick" => forwarded.push(arg.clone()),
            "--only" => {
                forwarded.push(arg.clone());
                forwarded.push(iter.next().context("--only takes a figure's name")?.clone());
            }
            "--store" => match iter.next().map(String::as_str) {
                Some("sqlite") => {}
                Some("postgres") => {
                    // A private cluster for the benchmark (scripts/postgres.sh installs and starts it).
                    let root = workspace_root()?;
                    let output = Command::new(root.join("scripts/postgres.sh"))
                        .arg(root.join("target/bench-postgres"))
                        .arg("55434")
                        .output()
                        .context("run scripts/postgres.sh")?;
                    if !output.status.success() {
                        bail!("PostgreSQL could not be started: {}", String::from_utf8_lossy(&output.stderr));
                    }
                    forwarded.push("--postgres".into());
                    forwarded.push(String::from_utf8_lossy(&output.stdout).trim().to_string());
                }
                other => bail!("--store takes sqlite or postgres, not {other:?}"),
            },
            "--sqlite-synchronous" => {
                forwarded.push(arg.clone());
                forwarded.push(iter.next().context("--sqlite-synchronous takes normal or full")?.clone());
            }
            other => bail!("unknown bench argument {other:?}"),
        }
    }
    cargo(&["build", "--release", "--locked", "-p", "baton-cli", "-p", "baton-bench"])?;
    let release = target_dir()?.join("release");
    let status = Command::new(release.join("baton-bench"))
        .arg("--baton")
        .arg(release.join("baton"))
        .args(&forwarded)
        .status()
        .context("run baton-bench")?;
    if !status.success() {
        bail!("the benchmark failed ({status})");
    }
    Ok(())
}
