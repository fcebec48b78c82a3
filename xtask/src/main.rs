//! Project automation, in Rust so it needs nothing but cargo.
//!
//! - `cargo xtask ci`: exactly what CI runs: `cargo fmt --check`, `cargo clippy --workspace
//!   --all-targets -- -D warnings`, then every test (tidy checks included, as tests of this
//!   crate). Stops at the first failure with a non-zero exit.
//! - `cargo xtask bench [--quick] [--store sqlite] [--sqlite-synchronous normal|full]`: builds
//!   the release binaries and prints Baton's figures as one JSON object on stdout.

mod tidy;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy::check(&workspace_root()?),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|tidy>\n  ci    fmt --check, clippy -D warnings, the whole test suite\n  tidy  the repository's own consistency checks"
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
    eprintln!("==> all checks passed");
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
    let root = workspace_root()?;
    let status = Command::new(root.join("target/release/baton-bench"))
        .arg("--baton")
        .arg(root.join("target/release/baton"))
        .args(&forwarded)
        .status()
        .context("run baton-bench")?;
    if !status.success() {
        bail!("the benchmark failed ({status})");
    }
    Ok(())
}
