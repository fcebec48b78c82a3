//! Project automation, in Rust so it needs nothing but cargo.
//!
//! - `cargo xtask ci`: exactly what CI runs: `cargo fmt --check`, `cargo clippy --workspace
//!   --all-targets -- -D warnings`, then every test (tidy checks included, as tests of this
//!   crate). Stops at the first failure with a non-zero exit.

mod tidy;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy::check(&workspace_root()?),
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
