//! What the CLI prints: colours on a terminal (unless `NO_COLOR`), plain text otherwise, tables,
//! and the JSON shape of a run.

use std::io::{IsTerminal, Write};

use baton_api as api;
use serde::Serialize;

/// Where text goes and whether it may be coloured.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

const PALETTE: [&str; 6] = ["36", "35", "34", "33", "32", "96"];

impl Style {
    /// Colours when stdout is a terminal and `NO_COLOR` is not set.
    pub fn detect() -> Style {
        let color =
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        Style { color }
    }

    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn yellow(&self, text: &str) -> String {
        self.paint("33", text)
    }

    /// The colour of the `index`th leg's prefix.
    pub fn leg(&self, index: usize, text: &str) -> String {
        self.paint(PALETTE[index % PALETTE.len()], text)
    }

    /// A conclusion word, coloured by what it means.
    pub fn conclusion(&self, conclusion: &str) -> String {
        match conclusion {
            "success" => self.green(conclusion),
            "failure" => self.red(conclusion),
            "cancelled" => self.yellow(conclusion),
            other => self.dim(other),
        }
    }

    pub fn mark(&self, conclusion: Option<&str>) -> String {
        match conclusion {
            Some("success") => self.green(if self.color { "✓" } else { "ok" }),
            Some("failure") => self.red(if self.color { "✗" } else { "FAIL" }),
            Some("cancelled") => self.yellow(if self.color { "⊘" } else { "cancelled" }),
            Some("skipped") => self.dim(if self.color { "○" } else { "skipped" }),
            _ => self.dim("…"),
        }
    }
}

/// Prints one line to stdout; a closed stdout (`baton run ... | head`) is not an error worth
/// more than stopping the output.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Prints rows as aligned columns; the first row is the header.
pub fn table(style: &Style, rows: &[Vec<String>]) {
    let Some(header) = rows.first() else { return };
    let mut widths = vec![0; header.len()];
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    for (number, row) in rows.iter().enumerate() {
        let mut text = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        let text = text.trim_end().to_string();
        line(&if number == 0 { style.bold(&text) } else { text });
    }
}

/// The JSON printed by `baton run --output json` and `baton status --output json`.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub run_id: i64,
    pub status: String,
    pub conclusion: Option<String>,
    pub jobs: Vec<LegSummary>,
}

/// One entry per leg; a job that never ran (skipped, failed before starting) has one entry
/// without a matrix.
#[derive(Debug, Serialize)]
pub struct LegSummary {
    pub id: String,
    pub name: String,
    pub matrix: Option<serde_json::Value>,
    pub conclusion: Option<String>,
    pub outputs: std::collections::BTreeMap<String, String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// The Baton job that ran the leg, for `baton logs` and the jobs API.
    pub job_id: Option<i64>,
}

pub fn run_summary(run: &api::Run) -> RunSummary {
    let mut jobs = Vec::new();
    for job in &run.jobs {
        if job.legs.is_empty() {
            jobs.push(LegSummary {
                id: job.id.clone(),
                name: job.name.clone(),
                matrix: None,
                conclusion: job.conclusion.clone(),
                outputs: job.outputs.clone(),
                started_at: None,
                completed_at: None,
                job_id: None,
            });
        }
        for leg in &job.legs {
            jobs.push(LegSummary {
                id: job.id.clone(),
                name: leg.name.clone(),
                matrix: leg.matrix.clone(),
                conclusion: leg.conclusion.clone(),
                outputs: leg.outputs.clone(),
                started_at: leg.started_at.clone(),
                completed_at: leg.completed_at.clone(),
                job_id: leg.job_id,
            });
        }
    }
    RunSummary { run_id: run.id, status: run.status.clone(), conclusion: run.conclusion.clone(), jobs }
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Seconds between two RFC 3339 times, for durations in tables.
pub fn duration_between(start: Option<&str>, end: Option<&str>) -> Option<f64> {
    let start: jiff::Timestamp = start?.parse().ok()?;
    let end: jiff::Timestamp = end?.parse().ok()?;
    Some(end.duration_since(start).as_secs_f64())
}

/// `1.23s`, `2m05s`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.2}s")
    } else {
        let whole = seconds.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// The status table of a run: one row per leg, and one per job that did not run.
pub fn run_table(style: &Style, run: &api::Run) {
    let mut rows = vec![vec!["JOB".to_string(), "STATUS".into(), "CONCLUSION".into(), "DURATION".into(), "ID".into()]];
    for job in &run.jobs {
        if job.legs.is_empty() {
            let note = job.message.clone().unwrap_or_default();
            rows.push(vec![
                format!("{} {}", style.mark(job.conclusion.as_deref()), job.name),
                job.status.clone(),
                job.conclusion.as_deref().map(|c| style.conclusion(c)).unwrap_or_else(|| "-".into()),
                "-".into(),
                note,
            ]);
        }
        for leg in &job.legs {
            let duration = duration_between(leg.started_at.as_deref(), leg.completed_at.as_deref())
                .map(format_seconds)
                .unwrap_or_else(|| "-".into());
            rows.push(vec![
                format!("{} {}", style.mark(leg.conclusion.as_deref()), leg.name),
                leg.status.clone(),
                leg.conclusion.as_deref().map(|c| style.conclusion(c)).unwrap_or_else(|| "-".into()),
                duration,
                leg.job_id.map(|id| format!("job {id}")).unwrap_or_default(),
            ]);
        }
    }
    table(style, &rows);
}
