//! The default environment of a step, as GitHub documents it where it means something without
//! GitHub, and the runner's default labels.

use std::collections::BTreeMap;
use std::path::Path;

/// `RUNNER_OS` as GitHub names it.
pub fn runner_os() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "macOS",
        "windows" => "Windows",
        other => other,
    }
}

/// `RUNNER_ARCH` as GitHub names it.
pub fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "x86" => "X86",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        other => other,
    }
}

/// The labels every runner carries: `self-hosted`, its OS and its architecture.
pub fn default_labels() -> Vec<String> {
    vec!["self-hosted".to_string(), runner_os().to_string(), runner_arch().to_string()]
}

/// Variables a step inherits from the runner's own environment; everything else is cleared so
/// the runner's credentials and settings never leak into jobs.
const INHERITED: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL", "TERM"];

#[derive(Debug)]
pub struct Context<'a> {
    pub job_id: i64,
    pub attempt: u32,
    pub job_name: &'a str,
    pub runner_name: &'a str,
    pub workspace: &'a Path,
    pub temp: &'a Path,
}

/// The environment every step starts from, before the job's, the step's and `GITHUB_ENV`.
pub fn base(context: &Context<'_>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in INHERITED {
        if let Ok(value) = std::env::var(name) {
            env.insert((*name).to_string(), value);
        }
    }
    let path = |path: &Path| path.display().to_string();
    let pairs = [
        ("CI", "true".to_string()),
        ("GITHUB_ACTIONS", "true".to_string()),
        ("GITHUB_WORKSPACE", path(context.workspace)),
        ("RUNNER_TEMP", path(context.temp)),
        ("RUNNER_OS", runner_os().to_string()),
        ("RUNNER_ARCH", runner_arch().to_string()),
        ("RUNNER_NAME", context.runner_name.to_string()),
        ("GITHUB_RUN_ID", context.job_id.to_string()),
        ("GITHUB_RUN_NUMBER", "1".to_string()),
        ("GITHUB_RUN_ATTEMPT", context.attempt.to_string()),
        ("GITHUB_JOB", context.job_name.to_string()),
        ("GITHUB_WORKFLOW", context.job_name.to_string()),
        ("GITHUB_EVENT_NAME", "workflow_dispatch".to_string()),
    ];
    for (name, value) in pairs {
        env.insert(name.to_string(), value);
    }
    env
}
