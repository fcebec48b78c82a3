//! `baton runner` and the hidden `baton runner-worker`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_runner::listener::{self, ProcessWorkers, Registration, RunnerConfig, Signal};
use baton_runner::protocol::Escalation;
use clap::Args;

#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// The server's URL, e.g. http://127.0.0.1:8420. For several replicas of one server,
    /// separate their URLs with commas or repeat the flag: the runner moves to the next when
    /// one stops answering.
    #[arg(long, env = "BATON_SERVER", value_delimiter = ',', required = true)]
    server: Vec<String>,
    /// A registration token (`baton token create`); needed the first time only.
    #[arg(long, env = "BATON_RUNNER_TOKEN", conflicts_with = "jit")]
    token: Option<String>,
    /// A single-use JIT config, for runners created ahead by an operator or the autoscaler.
    #[arg(long, env = "BATON_RUNNER_JIT")]
    jit: Option<String>,
    /// The runner's name [default: the host name].
    #[arg(long, env = "BATON_RUNNER_NAME")]
    name: Option<String>,
    /// Labels besides the defaults (self-hosted, the OS, the architecture), comma-separated.
    #[arg(long, env = "BATON_RUNNER_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// Jobs run at once.
    #[arg(long, env = "BATON_RUNNER_CAPACITY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    capacity: u32,
    /// Run exactly one job, then leave.
    #[arg(long, env = "BATON_RUNNER_EPHEMERAL")]
    ephemeral: bool,
    /// Where jobs run: one directory per attempt below it [default: <state dir>/work].
    #[arg(long, env = "BATON_RUNNER_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Where the credentials, log spool and pending completions live [default: the user's data dir].
    #[arg(long, env = "BATON_RUNNER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Grace after SIGINT before SIGTERM, when a step is cancelled or times out.
    #[arg(long, env = "BATON_RUNNER_SIGINT_GRACE", default_value = "7500ms", value_parser = crate::server::parse_duration)]
    sigint_grace: Duration,
    /// Grace after SIGTERM before SIGKILL.
    #[arg(long, env = "BATON_RUNNER_SIGTERM_GRACE", default_value = "2500ms", value_parser = crate::server::parse_duration)]
    sigterm_grace: Duration,
    /// The longest a long-poll waits on the server.
    #[arg(long, env = "BATON_RUNNER_POLL_WAIT", default_value = "30s", value_parser = crate::server::parse_duration)]
    poll_wait: Duration,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    attempt_dir: PathBuf,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| baton_core_name_ok(name))
        .unwrap_or_else(|| "runner".to_string())
}

fn baton_core_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

pub async fn run(args: RunnerArgs) -> anyhow::Result<()> {
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => directories::ProjectDirs::from("org", "baton", "baton")
            .map(|dirs| dirs.data_dir().join("runner"))
            .context("find the user's data directory; pass --state-dir")?,
    };
    let work_dir = args.work_dir.unwrap_or_else(|| state_dir.join("work"));
    let registration = match (args.token, args.jit) {
        (Some(token), _) => Registration::Token(token),
        (None, Some(jit)) => Registration::Jit(jit),
        (None, None) => Registration::Stored,
    };
    let program = std::env::current_exe().context("find this program to start workers")?;
    let config = RunnerConfig {
        server: args.server.join(","),
        registration,
        name: args.name.unwrap_or_else(host_name),
        labels: args.labels,
        capacity: args.capacity,
        ephemeral: args.ephemeral,
        work_dir,
        state_dir,
        escalation: Escalation {
            sigint_grace_ms: u64::try_from(args.sigint_grace.as_millis()).unwrap_or(u64::MAX),
            sigterm_grace_ms: u64::try_from(args.sigterm_grace.as_millis()).unwrap_or(u64::MAX),
        },
        poll_wait: args.poll_wait,
        workers: Arc::new(ProcessWorkers {
            command: vec![program.display().to_string(), baton_runner::WORKER_SUBCOMMAND.to_string()],
        }),
        renew_on_own_thread: true,
        transport: None,
    };
    let (signals_tx, signals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(forward_signals(signals_tx));
    listener::run(config, signals).await
}

/// SIGTERM: drain, then a second SIGTERM stops; SIGINT: stop.
async fn forward_signals(signals: tokio::sync::mpsc::UnboundedSender<Signal>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("install signal handlers");
        return;
    };
    loop {
        let next = tokio::select! {
            _ = terminate.recv() => Signal::Drain,
            _ = interrupt.recv() => Signal::Stop,
        };
        if signals.send(next).is_err() {
            return;
        }
    }
}

pub fn run_worker(args: WorkerArgs) -> anyhow::Result<i32> {
    baton_runner::worker::run(&args.attempt_dir)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        runner: RunnerArgs,
    }

    #[test]
    fn the_server_list_reaches_the_listener_whole() {
        let command =
            Command::try_parse_from(["baton-runner", "--server", "http://a,http://b", "--server", "http://c"])
                .expect("valid flags");
        assert_eq!(command.runner.server.join(","), "http://a,http://b,http://c");
        assert!(Command::try_parse_from(["baton-runner"]).is_err(), "--server is required");
    }
}
