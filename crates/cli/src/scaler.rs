//! `baton scaler`: run the autoscaler for the pools of a TOML file; `baton scaler log`: its
//! audit trail from the events stream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use baton_scaler::{Config, Defaults, Scaler};
use clap::{Args, Subcommand};

use crate::connect::{ConnectArgs, EXIT_OK, InvalidInput, OutputFormat};
use crate::output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ScalerArgs {
    #[command(subcommand)]
    command: Option<ScalerCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum ScalerCommand {
    /// Print the scaler's decisions (create, retire and the server's answer, terminate,
    /// clean-up) with the readings behind each.
    Log(LogArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The pools (TOML).
    #[arg(long, env = "BATON_SCALER_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
    /// The URL runners reach the server at [default: --server]. Several (comma-separated, or the
    /// flag repeated) are handed to every runner as its `--server` list.
    #[arg(long, env = "BATON_SCALER_RUNNER_SERVER", value_delimiter = ',')]
    runner_server: Vec<String>,
    /// Serve the scaler's Prometheus metrics on this address (`/metrics`).
    #[arg(long, env = "BATON_SCALER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Where `process` pools keep their runners [default: the user's data dir].
    #[arg(long, env = "BATON_SCALER_WORK_DIR")]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LogArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Keep printing new decisions.
    #[arg(long, short = 'f')]
    follow: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn main(args: ScalerArgs) -> anyhow::Result<u8> {
    match args.command {
        Some(ScalerCommand::Log(log)) => print_log(log).await,
        None => run(args.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let Some(path) = &args.config else {
        return Err(InvalidInput("no pools given: pass --config scaler.toml (see README: Autoscaling)".into()).into());
    };
    let config = Config::load(path).map_err(|error| InvalidInput(error.to_string()))?;
    // No probe of the servers: the scaler's loops retry, and so reach the next server.
    let client = args.connect.client()?;
    let server = runner_servers(&args, &client)?;
    let work_dir = match args.work_dir {
        Some(dir) => dir,
        None => directories::ProjectDirs::from("org", "baton", "baton")
            .map(|dirs| dirs.data_dir().join("scaler"))
            .context("find the user's data directory; pass --work-dir")?,
    };
    let defaults = Defaults { program: std::env::current_exe().context("find this program")?, work_dir };
    let scaler = Arc::new(Scaler::new(client, server, &config, &defaults));
    if let Some(address) = args.metrics_listen {
        let metrics = scaler.metrics.clone();
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("listen on {address}"))?;
        let app = axum::Router::new().route("/metrics", axum::routing::get(move || async move { metrics.encode() }));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(scaler.clone().run(stopped));
    tracing::info!(pools = config.pools.len(), "scaler running");
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop.send(true);
    let _ = task.await;
    Ok(EXIT_OK)
}

/// The servers runners are told to reach, as their `--server` takes them: `--runner-server`, or
/// the scaler's own. Checked and normalised here, so a bad URL stops the scaler rather than
/// every runner it starts.
fn runner_servers(args: &RunArgs, client: &baton_client::Client) -> anyhow::Result<String> {
    if args.runner_server.is_empty() {
        return Ok(client.server_urls().join(","));
    }
    let servers = baton_client::parse_server_urls(&args.runner_server.join(","))
        .map_err(|error| InvalidInput(format!("--runner-server: {error}")))?;
    Ok(servers.join(","))
}

async fn print_log(args: LogArgs) -> anyhow::Result<u8> {
    let client = args.connect.connect().await?;
    // Without --follow, stop at the newest event as of now (any pool's snapshot names it).
    let last = if args.follow { None } else { Some(client.pool_snapshot("default").await?.as_of_event) };
    if last == Some(0) {
        return Ok(EXIT_OK);
    }
    let mut stream = client.events(0).await?;
    while let Some(event) = stream.next().await {
        let event = event?;
        if event.kind.starts_with("scaler.") {
            match args.output {
                OutputFormat::Json => output::line(&serde_json::to_string(&event)?),
                OutputFormat::Text => output::line(&format!(
                    "{} {:<17} runner={} {}",
                    event.at,
                    event.kind,
                    event.runner_id.map(|id| id.to_string()).unwrap_or_else(|| "-".into()),
                    event.data
                )),
            }
        }
        if last.is_some_and(|last| event.seq >= last) {
            break;
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        run: RunArgs,
    }

    fn runner_servers_of(args: &[&str]) -> anyhow::Result<String> {
        let command = Command::try_parse_from([&["baton-scaler", "--token", "bat_admin"], args].concat())?;
        let client = command.run.connect.client()?;
        runner_servers(&command.run, &client)
    }

    #[test]
    fn runners_get_the_whole_server_list() {
        let servers = runner_servers_of(&["--server", "http://a:8420/, http://b:8420", "--server", "http://c:8420"]);
        assert_eq!(servers.expect("valid servers"), "http://a:8420,http://b:8420,http://c:8420");
        let servers =
            runner_servers_of(&["--server", "http://a:8420", "--runner-server", "http://10.0.0.1,http://10.0.0.2"]);
        assert_eq!(servers.expect("valid servers"), "http://10.0.0.1,http://10.0.0.2");
        let error = runner_servers_of(&["--server", "http://a:8420", "--runner-server", "http://10.0.0.1,10.0.0.2"])
            .expect_err("a URL without a scheme");
        assert_eq!(
            error.to_string(),
            r#"--runner-server: invalid server URL "10.0.0.2": must start with http:// or https://"#
        );
    }
}
