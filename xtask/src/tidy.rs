//! Tidy checks: the repository keeps itself consistent.
//!
//! - every Rust source file opens with a `//!` comment that says what it owns;
//! - no `dbg!(` or `todo!(` is left in source;
//! - ARCHITECTURE.md names every crate under `crates/`.
//!
//! Each failure says which file and how to fix it.

use std::path::{Path, PathBuf};

use anyhow::bail;

pub fn check(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        collect_rust_files(&root.join(dir), &mut files)?;
    }
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let relative = file.strip_prefix(root).unwrap_or(file).display().to_string();
        let is_module_root = !relative.contains("/tests/") || relative.ends_with("main.rs");
        if is_module_root && !text.trim_start().starts_with("//!") {
            problems.push(format!("{relative}: add a `//!` comment at the top saying what this module owns"));
        }
        for (forbidden, what) in [("dbg!(", "dbg!"), ("todo!(", "todo!")] {
            if text.contains(forbidden) && !relative.ends_with("tidy.rs") {
                problems.push(format!("{relative}: remove the leftover {what}"));
            }
        }
    }
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_default();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let entry = entry?;
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let name = text
            .lines()
            .find_map(|line| line.strip_prefix("name = \""))
            .map(|rest| rest.trim_end_matches('"').to_string());
        if let Some(name) = name
            && !architecture.contains(&format!("`{name}`"))
        {
            problems.push(format!("ARCHITECTURE.md: describe the crate `{name}` in the code map"));
        }
    }
    if !problems.is_empty() {
        bail!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    eprintln!("==> tidy: {} Rust files checked", files.len());
    Ok(())
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            collect_rust_files(&path, out)?;
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repository_is_tidy() {
        let root = super::super::workspace_root().expect("workspace root");
        super::check(&root).expect("tidy checks pass");
    }
}
