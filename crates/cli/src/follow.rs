//! Following a run: live logs grouped by job and step, a line when a leg waits, starts or ends,
//! until the run completes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use baton_api as api;
use baton_client::Client;

use crate::output::{self, Style};

/// How often a followed run and its logs are read.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// After this long queued, a leg is reported as waiting for a runner.
const WAITING_NOTICE_AFTER: Duration = Duration::from_secs(3);
/// Transport errors tolerated in a row before following gives up.
const ERRORS_IN_A_ROW_MAX: u32 = 40;

/// What to show while following.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Print log lines (off for `--output json`).
    pub logs: bool,
    /// Print a line when a leg waits, starts or ends.
    pub transitions: bool,
    /// Only this workflow job's legs.
    pub job: Option<String>,
}

#[derive(Debug, Default)]
struct LegLog {
    attempt: u32,
    after: u64,
    partial: String,
    color: usize,
    started: bool,
    finished: bool,
    waiting_noticed: bool,
    first_seen: Option<Instant>,
}

/// Prints a run's progress and logs as they come.
#[derive(Debug)]
pub struct Follower<'a> {
    client: &'a Client,
    style: Style,
    options: FollowOptions,
    legs: BTreeMap<i64, LegLog>,
    jobs_reported: BTreeSet<String>,
    next_color: usize,
}

impl<'a> Follower<'a> {
    pub fn new(client: &'a Client, style: Style, options: FollowOptions) -> Follower<'a> {
        Follower { client, style, options, legs: BTreeMap::new(), jobs_reported: BTreeSet::new(), next_color: 0 }
    }

    /// Reads the run and prints what is new. Answers the run as read.
    pub async fn step(&mut self, run_id: i64) -> anyhow::Result<api::Run> {
        let run = self.client.get_run(run_id).await?;
        for job in &run.jobs {
            if self.options.job.as_ref().is_some_and(|only| only != &job.id) {
                continue;
            }
            if job.legs.is_empty() && job.status == "completed" && self.jobs_reported.insert(job.id.clone()) {
                self.report_job_without_legs(job);
            }
            for leg in &job.legs {
                self.update_leg(leg).await?;
            }
        }
        Ok(run)
    }

    /// Follows until the run completes and every log line is printed; `stop` ends it early
    /// (and answers `None`).
    pub async fn follow(&mut self, run_id: i64, mut stop: impl FnMut() -> bool) -> anyhow::Result<Option<api::Run>> {
        let mut errors_in_a_row = 0;
        loop {
            if stop() {
                return Ok(None);
            }
            match self.step(run_id).await {
                Ok(run) if run.status == "completed" => return Ok(Some(run)),
                Ok(_) => errors_in_a_row = 0,
                Err(error) => {
                    let retryable =
                        error.downcast_ref::<baton_client::Error>().is_some_and(baton_client::Error::is_retryable);
                    errors_in_a_row += 1;
                    if !retryable || errors_in_a_row > ERRORS_IN_A_ROW_MAX {
                        return Err(error);
                    }
                    tracing::warn!(%error, "reading the run failed; retrying");
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn report_job_without_legs(&self, job: &api::RunJob) {
        if !self.options.transitions {
            return;
        }
        let conclusion = job.conclusion.as_deref().unwrap_or("completed");
        let why = job.message.as_deref().map(|message| format!(": {message}")).unwrap_or_default();
        output::line(&format!(
            "{} {} {}{}",
            self.style.mark(Some(conclusion)),
            self.style.bold(&job.name),
            self.style.conclusion(conclusion),
            self.style.dim(&why)
        ));
    }

    async fn update_leg(&mut self, leg: &api::RunLeg) -> anyhow::Result<()> {
        let Some(job_id) = leg.job_id else { return Ok(()) };
        let color = self.next_color;
        let state = self.legs.entry(job_id).or_insert_with(|| LegLog { color, ..LegLog::default() });
        if state.color == color {
            self.next_color += 1;
        }
        let first_seen = *state.first_seen.get_or_insert_with(Instant::now);
        let style = self.style;
        let prefix = style.leg(state.color, &leg.name);
        if self.options.transitions {
            if leg.status == "queued"
                && !state.started
                && !state.waiting_noticed
                && first_seen.elapsed() >= WAITING_NOTICE_AFTER
            {
                state.waiting_noticed = true;
                output::line(&format!("{} {prefix} is waiting for a runner", style.dim("…")));
            }
            if matches!(leg.status.as_str(), "running" | "completed") && !state.started {
                state.started = true;
                output::line(&format!("{} {}", style.bold(if style.color { "▶" } else { ">>" }), style.bold(&prefix)));
            }
        }
        if let Some(attempt) = leg.attempt
            && leg.status != "queued"
        {
            if attempt != state.attempt {
                if state.attempt != 0 {
                    output::line(&format!(
                        "{prefix} | {}",
                        style.yellow(&format!("attempt {attempt} (the earlier one lost its runner)"))
                    ));
                }
                state.attempt = attempt;
                state.after = 0;
                state.partial.clear();
            }
            if self.options.logs {
                self.fetch_logs(job_id, &prefix).await?;
            }
        }
        let state = self.legs.get_mut(&job_id).expect("the leg was inserted above");
        if leg.status == "completed" && !state.finished {
            state.finished = true;
            if !state.partial.is_empty() && self.options.logs {
                let rest = std::mem::take(&mut state.partial);
                print_log_line(&style, &prefix, &rest);
            }
            if self.options.transitions {
                let conclusion = leg.conclusion.as_deref().unwrap_or("completed");
                let took = output::duration_between(leg.started_at.as_deref(), leg.completed_at.as_deref())
                    .map(|seconds| format!(" in {}", output::format_seconds(seconds)))
                    .unwrap_or_default();
                let why = match (&leg.message, conclusion) {
                    (Some(message), "failure" | "cancelled") => format!(": {message}"),
                    _ => String::new(),
                };
                output::line(&format!(
                    "{} {} {}{took}{}",
                    style.mark(Some(conclusion)),
                    style.bold(&prefix),
                    style.conclusion(conclusion),
                    style.dim(&why)
                ));
            }
        }
        Ok(())
    }

    async fn fetch_logs(&mut self, job_id: i64, prefix: &str) -> anyhow::Result<()> {
        let style = self.style;
        loop {
            let state = self.legs.get(&job_id).expect("the leg is known");
            let page = self.client.job_logs(job_id, state.attempt, state.after).await?;
            let state = self.legs.get_mut(&job_id).expect("the leg is known");
            let Some(last) = page.chunks.last() else { return Ok(()) };
            state.after = last.seq;
            for chunk in &page.chunks {
                state.partial.push_str(&chunk.data);
                while let Some(end) = state.partial.find('\n') {
                    let line: String = state.partial.drain(..=end).collect();
                    print_log_line(&style, prefix, line.trim_end_matches(['\n', '\r']));
                }
            }
            if page.chunks.len() < baton_core::limits::PAGE_SIZE_MAX {
                return Ok(());
            }
        }
    }
}

/// Prints one log line of a leg, rendering the runner's markers: `##[group]` as a step
/// heading, `##[error]` and `##[warning]` in colour, `##[endgroup]` and `##[debug]` not at all.
pub fn print_log_line(style: &Style, prefix: &str, line: &str) {
    if let Some(title) = line.strip_prefix("##[group]") {
        output::line(&format!(
            "{prefix} | {}",
            style.bold(&format!("{} {title}", if style.color { "▸" } else { "==" }))
        ));
    } else if line.starts_with("##[endgroup]") || line.starts_with("##[debug]") {
    } else if let Some(message) = line.strip_prefix("##[error]") {
        output::line(&format!("{prefix} | {}", style.red(&format!("error: {message}"))));
    } else if let Some(message) = line.strip_prefix("##[warning]") {
        output::line(&format!("{prefix} | {}", style.yellow(&format!("warning: {message}"))));
    } else if let Some(message) = line.strip_prefix("##[notice]") {
        output::line(&format!("{prefix} | notice: {message}"));
    } else {
        output::line(&format!("{prefix} | {line}"));
    }
}
