//! The `baton` binary: one executable, one subcommand per role.

mod runner;
mod server;

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
    /// Run one job's worker (started by `baton runner`, not by hand).
    #[command(name = "runner-worker", hide = true)]
    RunnerWorker(runner::WorkerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Runner(args) => runner::run(args).await,
            Command::RunnerWorker(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
