//! Operator commands: `status`, `logs`, `cancel`, `runners`, `jobs`, `token create`.

use std::time::Duration;

use baton_api as api;
use clap::{Args, Subcommand};

use crate::connect::{ConnectArgs, EXIT_OK, InvalidInput, OutputFormat};
use crate::follow::{FollowOptions, Follower, print_log_line};
use crate::output::{self, Style};
use crate::workflow::exit_code;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run's id.
    pub run: i64,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `baton status RUN`: the run's jobs and legs. Exits 0 for a run that succeeded or is still
/// going, 1 for one that failed or was cancelled.
pub async fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let client = args.connect.connect().await?;
    let run = client.get_run(args.run).await?;
    match args.output {
        OutputFormat::Json => output::print_json(&output::run_summary(&run))?,
        OutputFormat::Text => {
            let style = Style::detect();
            let state = match (&run.conclusion, run.cancel_requested) {
                (Some(conclusion), _) => style.conclusion(conclusion),
                (None, true) => style.yellow("cancelling"),
                (None, false) => "in progress".to_string(),
            };
            output::line(&format!("Run {} {} ({}): {state}", run.id, style.bold(&run.name), run.file_name));
            output::run_table(&style, &run);
        }
    }
    Ok(match run.conclusion.as_deref() {
        None => EXIT_OK,
        conclusion => exit_code(conclusion),
    })
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run's id.
    pub run: i64,
    /// Only this workflow job's legs.
    #[arg(long = "job", value_name = "ID")]
    pub job: Option<String>,
    /// Keep printing new lines until the run completes.
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `baton logs RUN`: every log line of the run's legs, grouped by leg.
pub async fn logs(args: LogsArgs) -> anyhow::Result<u8> {
    let client = args.connect.connect().await?;
    let style = Style::detect();
    if args.follow {
        let mut follower =
            Follower::new(&client, style, FollowOptions { logs: true, transitions: true, job: args.job.clone() });
        let run = follower.follow(args.run, || false).await?;
        return Ok(run.map_or(EXIT_OK, |run| exit_code(run.conclusion.as_deref())));
    }
    let run = client.get_run(args.run).await?;
    if let Some(job) = &args.job
        && !run.jobs.iter().any(|candidate| &candidate.id == job)
    {
        return Err(InvalidInput(format!("--job {job}: run {} has no such job", run.id)).into());
    }
    for (index, leg) in run
        .jobs
        .iter()
        .filter(|job| args.job.as_ref().is_none_or(|only| only == &job.id))
        .flat_map(|job| job.legs.iter())
        .enumerate()
    {
        let (Some(job_id), Some(attempt)) = (leg.job_id, leg.attempt) else { continue };
        let prefix = style.leg(index, &leg.name);
        let mut after = 0;
        let mut text = String::new();
        loop {
            let page = client.job_logs(job_id, attempt, after).await?;
            let Some(last) = page.chunks.last() else { break };
            after = last.seq;
            for chunk in &page.chunks {
                text.push_str(&chunk.data);
            }
            if page.chunks.len() < baton_core::limits::PAGE_SIZE_MAX {
                break;
            }
        }
        for line in text.lines() {
            print_log_line(&style, &prefix, line);
        }
    }
    Ok(EXIT_OK)
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run's id.
    pub run: i64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `baton cancel RUN`: asks the run to stop; prints where it stands.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<u8> {
    let client = args.connect.connect().await?;
    let run = client.cancel_run(args.run).await?;
    let state = match &run.conclusion {
        Some(conclusion) => format!("completed ({conclusion})"),
        None => "cancelling: running jobs are being stopped".to_string(),
    };
    output::line(&format!("Run {}: {state}", run.id));
    Ok(EXIT_OK)
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// List entries with ids above this one.
    #[arg(long, default_value_t = 0)]
    pub after: i64,
    /// Entries listed at most.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
}

/// `baton runners`.
pub async fn runners(args: ListArgs) -> anyhow::Result<u8> {
    let client = args.connect.connect().await?;
    let list = client.list_runners(args.after, usize::from(args.limit)).await?;
    match args.output {
        OutputFormat::Json => output::print_json(&list)?,
        OutputFormat::Text => {
            let mut rows = vec![vec![
                "ID".to_string(),
                "NAME".into(),
                "STATUS".into(),
                "BUSY".into(),
                "CAPACITY".into(),
                "LABELS".into(),
            ]];
            for runner in &list.runners {
                rows.push(vec![
                    runner.id.to_string(),
                    runner.name.clone(),
                    runner.status.clone(),
                    if runner.busy { "yes" } else { "no" }.into(),
                    runner.capacity.to_string(),
                    runner.labels.join(","),
                ]);
            }
            output::table(&Style::detect(), &rows);
        }
    }
    Ok(EXIT_OK)
}

/// `baton jobs`.
pub async fn jobs(args: ListArgs) -> anyhow::Result<u8> {
    let client = args.connect.connect().await?;
    let list = client.list_jobs(args.after, usize::from(args.limit)).await?;
    match args.output {
        OutputFormat::Json => output::print_json(&list)?,
        OutputFormat::Text => {
            let mut rows = vec![vec![
                "ID".to_string(),
                "NAME".into(),
                "STATE".into(),
                "CONCLUSION".into(),
                "RUN".into(),
                "CREATED".into(),
            ]];
            for job in &list.jobs {
                rows.push(vec![
                    job.id.to_string(),
                    job.spec.name.clone(),
                    job.state.clone(),
                    job.conclusion.clone().unwrap_or_else(|| "-".into()),
                    job.run_id.map(|id| id.to_string()).unwrap_or_else(|| "-".into()),
                    job.created_at.clone(),
                ]);
            }
            output::table(&Style::detect(), &rows);
        }
    }
    Ok(EXIT_OK)
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a registration token for runners.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Labels every runner registering with it gets, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// How long the token works, e.g. 1h or 30m (at most 30 days).
    #[arg(long, default_value = "1h", value_parser = crate::server::parse_duration)]
    pub ttl: Duration,
    /// How many runners may register with it [default: unlimited].
    #[arg(long)]
    pub max_uses: Option<u32>,
    /// The pool its runners belong to.
    #[arg(long)]
    pub pool: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `baton token create`: prints the token (it is shown only this once).
pub async fn token(command: TokenCommand) -> anyhow::Result<u8> {
    let TokenCommand::Create(args) = command;
    let client = args.connect.connect().await?;
    let response = client
        .create_registration_token(&api::CreateRegistrationTokenRequest {
            labels: args.labels,
            pool: args.pool,
            ttl_secs: Some(args.ttl.as_secs().max(1)),
            max_uses: args.max_uses,
        })
        .await?;
    match args.output {
        OutputFormat::Json => output::print_json(&response)?,
        OutputFormat::Text => {
            output::line(&response.token);
            eprintln!("expires at {}", response.expires_at);
        }
    }
    Ok(EXIT_OK)
}
