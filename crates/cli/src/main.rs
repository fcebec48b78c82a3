//! The `baton` binary: one executable, one subcommand per role.

mod connect;
mod embedded;
mod follow;
mod operator;
mod output;
mod runner;
mod scaler;
mod server;
mod webhooks;
mod workflow;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    about = "Baton: a self-hosted CI runner fleet whose runner lifecycle is correct by construction"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: the runner protocol, the operator API, events and metrics.
    Server(server::ServerArgs),
    /// Run a runner agent: take jobs from a server and run each in its own worker process.
    Runner(runner::RunnerArgs),
    /// Run the autoscaler for the pools of a TOML file (or print its audit trail: `scaler log`).
    Scaler(scaler::ScalerArgs),
    /// Run a workflow file and follow it live; without --server, on a fleet started for it.
    Run(workflow::RunArgs),
    /// Submit a workflow run and print its id.
    Submit(workflow::SubmitArgs),
    /// Show a run's jobs and their conclusions.
    Status(operator::StatusArgs),
    /// Print a run's logs.
    Logs(operator::LogsArgs),
    /// Cancel a run.
    Cancel(operator::CancelArgs),
    /// List runners.
    Runners(operator::ListArgs),
    /// List jobs.
    Jobs(operator::ListArgs),
    /// Webhook endpoints and their deliveries.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Registration tokens for runners.
    #[command(subcommand)]
    Token(operator::TokenCommand),
    /// Run one job's worker (started by `baton runner`, not by hand).
    #[command(name = "runner-worker", hide = true)]
    RunnerWorker(runner::WorkerArgs),
}

/// Threads for blocking work, at most: store transactions, which the store runs one writer at
/// a time over a few connections. Tokio's default of 512 let a burst of 10,000 long-polls start
/// hundreds of threads that only waited for the writer, each with a stack and a malloc arena.
const BLOCKING_THREADS_MAX: usize = 64;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Commands for people print their own output; the embedded fleet's logs would drown it.
    let quiet =
        !matches!(cli.command, Command::Server(_) | Command::Runner(_) | Command::Scaler(_) | Command::RunnerWorker(_));
    init_logging(if quiet { "warn" } else { "info" });
    if let Command::RunnerWorker(args) = cli.command {
        // A worker is synchronous: threads and blocking pipes, no async runtime.
        return match runner::run_worker(args) {
            Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(error) => {
                eprintln!("error: worker: {error:#}");
                std::process::ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await.map(|()| connect::EXIT_OK),
            Command::Runner(args) => runner::run(args).await.map(|()| connect::EXIT_OK),
            Command::Scaler(args) => scaler::main(args).await,
            Command::Run(args) => workflow::run(args).await,
            Command::Submit(args) => workflow::submit(args).await,
            Command::Status(args) => operator::status(args).await,
            Command::Logs(args) => operator::logs(args).await,
            Command::Cancel(args) => operator::cancel(args).await,
            Command::Runners(args) => operator::runners(args).await,
            Command::Jobs(args) => operator::jobs(args).await,
            Command::Token(command) => operator::token(command).await,
            Command::Webhooks(command) => webhooks::main(command).await,
            Command::RunnerWorker(_) => unreachable!("handled before the runtime starts"),
        }
    });
    // Nothing may keep the process alive after the command: blocking store calls of a stopped
    // embedded server are abandoned, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            if let Some(invalid) = error.downcast_ref::<connect::InvalidInput>() {
                eprintln!("error: {invalid}");
            } else {
                eprintln!("error: {error:#}");
            }
            std::process::ExitCode::from(connect::exit_code_for(&error))
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
