//! `baton run` and `baton submit`: read a workflow file, check it here (so mistakes are found
//! before anything starts), submit it, and for `run` follow it to its end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use baton_api as api;
use clap::Args;

use crate::connect::{ConnectArgs, EXIT_FAILED, EXIT_OK, InvalidInput, OutputFormat};
use crate::embedded::{Embedded, EmbeddedOptions};
use crate::follow::{FollowOptions, Follower};
use crate::output::{self, Style};

#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// The workflow file (GitHub Actions YAML).
    pub file: PathBuf,
    /// Run only this job and the jobs it needs.
    #[arg(long = "job", value_name = "ID")]
    pub job: Option<String>,
    /// A workflow_dispatch input, NAME=VALUE; repeat for more.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// A secret for `${{ secrets.NAME }}`, read from the environment variable NAME; repeat for more.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// `text` (live logs and a summary) or `json` (one JSON object at the end).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Without --server: keep the embedded server's database here instead of a temporary directory.
    #[arg(long, env = "BATON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Without --server: jobs the local runner runs at once [default: the number of cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub capacity: Option<u32>,
    /// Without --server: only run jobs whose `runs-on` labels the local runner has
    /// (self-hosted, linux, the architecture, and --label values).
    #[arg(long)]
    pub strict_labels: bool,
    /// Without --server and with --strict-labels: an extra label of the local runner; repeat for more.
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Ignore `runs-on`: any runner may take the run's jobs.
    #[arg(long)]
    pub any_runner: bool,
}

/// A workflow read and checked here, ready to submit.
struct Prepared {
    request: api::SubmitRunRequest,
}

/// Reads the file (refusing one over the size limit before reading it), parses and validates
/// it, types the inputs and collects the secrets. Every problem is invalid input (exit 2).
fn prepare(args: &WorkflowArgs) -> anyhow::Result<Prepared> {
    let path = &args.file;
    let shown = path.display().to_string();
    let size = std::fs::metadata(path).map_err(|error| InvalidInput(format!("{shown}: {error}")))?.len();
    let limit = baton_workflow::MAX_FILE_BYTES as u64;
    if size > limit {
        return Err(InvalidInput(format!(
            "{shown}: the file is {} bytes; a workflow file may be at most {} KiB",
            size,
            limit / 1024
        ))
        .into());
    }
    let text = read_text(path)?;
    let workflow = baton_workflow::parse_workflow(&shown, &text)
        .map_err(|errors| InvalidInput(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
    let mut inputs = BTreeMap::new();
    for pair in &args.inputs {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(InvalidInput(format!("--input {pair:?}: write NAME=VALUE")).into());
        };
        inputs.insert(name.trim().to_string(), value.to_string());
    }
    baton_engine::typed_inputs(&workflow, &inputs).map_err(|problems| InvalidInput(problems.join("\n")))?;
    if let Some(job) = &args.job
        && !workflow.jobs.iter().any(|candidate| &candidate.id == job)
    {
        let ids: Vec<&str> = workflow.jobs.iter().map(|job| job.id.as_str()).collect();
        return Err(InvalidInput(format!(
            "--job {job}: the workflow has no such job; its jobs are {}",
            ids.join(", ")
        ))
        .into());
    }
    let mut secrets = BTreeMap::new();
    for name in &args.secrets {
        let value = std::env::var(name).map_err(|_| {
            InvalidInput(format!(
                "--secret {name}: set the environment variable {name} to the secret's value (it is sent to the server, never shown)"
            ))
        })?;
        secrets.insert(name.clone(), value);
    }
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| shown.clone());
    Ok(Prepared {
        request: api::SubmitRunRequest {
            workflow: text,
            file_name: Some(file_name),
            inputs,
            secrets,
            job: args.job.clone(),
            any_runner: false,
        },
    })
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|error| InvalidInput(format!("{}: {error}", path.display())))?;
    String::from_utf8(bytes).map_err(|_| InvalidInput(format!("{}: the file is not UTF-8 text", path.display())).into())
}

/// `baton submit`: prints the new run's id.
pub async fn submit(args: SubmitArgs) -> anyhow::Result<u8> {
    let mut prepared = prepare(&args.workflow)?;
    prepared.request.any_runner = args.any_runner;
    let client = args.connect.connect().await?;
    let run = client.submit_run(&prepared.request).await?;
    output::line(&run.id.to_string());
    Ok(EXIT_OK)
}

/// `baton run`: submits and follows; with no server given, on an embedded fleet.
pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut prepared = prepare(&args.workflow)?;
    let style = Style::detect();
    let embedded = if args.connect.server.is_empty() {
        let capacity = match args.capacity {
            Some(capacity) => capacity,
            None => std::thread::available_parallelism().map_or(1, |cores| u32::try_from(cores.get()).unwrap_or(1)),
        };
        prepared.request.any_runner = !args.strict_labels;
        let mut labels = baton_runner::worker::env::default_labels();
        labels.extend(args.labels.iter().cloned());
        let options = EmbeddedOptions { data_dir: args.data_dir.clone(), capacity, labels };
        Some(Embedded::start(options).await?)
    } else {
        None
    };
    let client = match &embedded {
        Some(fleet) => fleet.client.clone(),
        None => args.connect.connect().await?,
    };
    let outcome = submit_and_follow(&client, &prepared.request, args.output, style, started).await;
    if let Some(fleet) = embedded {
        fleet.stop().await?;
    }
    outcome
}

async fn submit_and_follow(
    client: &baton_client::Client,
    request: &api::SubmitRunRequest,
    format: OutputFormat,
    style: Style,
    started: Instant,
) -> anyhow::Result<u8> {
    let run = client.submit_run(request).await?;
    let text = format == OutputFormat::Text;
    if text {
        output::line(&style.dim(&format!("Run {} of {} started", run.id, run.name)));
    }
    // The first Ctrl-C cancels the run and keeps following it to its end (clean-up steps and
    // `if: cancelled()` jobs still run); the second stops waiting.
    let interrupts = Arc::new(AtomicU32::new(0));
    let watcher = tokio::spawn({
        let interrupts = interrupts.clone();
        let client = client.clone();
        let run_id = run.id;
        async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if interrupts.fetch_add(1, Ordering::SeqCst) == 0 {
                    eprintln!("Cancelling run {run_id}; press Ctrl-C again to stop waiting for it.");
                    if let Err(error) = client.cancel_run(run_id).await {
                        eprintln!("error: cancel run {run_id}: {error}");
                    }
                }
            }
        }
    });
    let mut follower = Follower::new(client, style, FollowOptions { logs: text, transitions: text, job: None });
    let followed = follower.follow(run.id, || interrupts.load(Ordering::SeqCst) >= 2).await;
    watcher.abort();
    let Some(finished) = followed? else {
        return Ok(EXIT_FAILED);
    };
    match format {
        OutputFormat::Json => output::print_json(&output::run_summary(&finished))?,
        OutputFormat::Text => print_summary(&style, &finished, started),
    }
    Ok(exit_code(finished.conclusion.as_deref()))
}

fn print_summary(style: &Style, run: &api::Run, started: Instant) {
    output::line("");
    for job in &run.jobs {
        for leg in &job.legs {
            if let Some(summary) = leg.summary.as_deref().filter(|summary| !summary.trim().is_empty()) {
                output::line(&style.bold(&format!("Summary of {}", leg.name)));
                for line in summary.lines() {
                    output::line(&format!("  {line}"));
                }
                output::line("");
            }
        }
    }
    output::run_table(style, run);
    let conclusion = run.conclusion.as_deref().unwrap_or("unknown");
    output::line(&format!(
        "\nRun {} {} in {}",
        run.id,
        style.conclusion(conclusion),
        output::format_seconds(started.elapsed().as_secs_f64())
    ));
}

/// Exit code for a run's conclusion.
pub fn exit_code(conclusion: Option<&str>) -> u8 {
    match conclusion {
        Some("success") => EXIT_OK,
        _ => EXIT_FAILED,
    }
}
