//! Running the steps of one job.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use baton_api as api;
use nix::sys::signal::Signal;

use super::file_commands::{self, FILE_COMMAND_BYTES_MAX};
use super::mask::Masker;
use super::process::{self, Escalation};
use super::workflow_commands::{Command as WorkflowCommand, CommandProcessor, Level, Outcome};
use super::{AttemptDirs, Control, Emitter, Input, Outputs, env, job_result, step_deadline};
use crate::protocol::{WorkerEvent, WorkerSpec};

/// Longest piece of output without a newline that is logged as one line.
const LINE_BYTES_MAX: usize = 64 * 1024;
/// How long after a step's shell exits its output pipes may stay open (a background child
/// holding them) before the worker moves on.
const PIPE_DRAIN_GRACE: Duration = Duration::from_millis(200);
/// Largest step summary kept for the job.
const SUMMARY_BYTES_MAX: usize = 1024 * 1024;

pub(crate) struct JobRun<'a> {
    spec: &'a WorkerSpec,
    dirs: &'a AttemptDirs,
    emitter: Emitter,
    sender: mpsc::SyncSender<Input>,
    receiver: mpsc::Receiver<Input>,
    control: Arc<Control>,
    masker: Masker,
    /// Every value masked so far, to mask outputs and the summary as whole values.
    masked_values: Vec<String>,
    commands: CommandProcessor,
    /// Variables set through `GITHUB_ENV`, for the steps after.
    exported_env: BTreeMap<String, String>,
    /// Directories added through `GITHUB_PATH`, newest first.
    path_additions: Vec<String>,
    outputs: Outputs,
    summary: String,
    groups: Vec<i32>,
    failed: bool,
    /// Partial lines per (step, stream).
    partial: BTreeMap<(usize, usize), Vec<u8>>,
    job_deadline: Option<Instant>,
}

/// How a step ended.
struct StepEnd {
    success: bool,
    description: String,
}

impl<'a> JobRun<'a> {
    pub(crate) fn new(
        spec: &'a WorkerSpec,
        dirs: &'a AttemptDirs,
        emitter: Emitter,
        sender: mpsc::SyncSender<Input>,
        receiver: mpsc::Receiver<Input>,
        control: Arc<Control>,
    ) -> JobRun<'a> {
        let mut masker = Masker::new();
        let mut masked_values = Vec::new();
        for secret in &spec.secrets {
            match masker.add(secret) {
                Ok(()) => masked_values.push(secret.clone()),
                Err(error) => tracing::error!(%error, "a secret could not be registered for masking"),
            }
        }
        JobRun {
            spec,
            dirs,
            emitter,
            sender,
            receiver,
            control,
            masker,
            masked_values,
            commands: CommandProcessor::new(),
            exported_env: BTreeMap::new(),
            path_additions: Vec::new(),
            outputs: BTreeMap::new(),
            summary: String::new(),
            groups: Vec::new(),
            failed: false,
            partial: BTreeMap::new(),
            job_deadline: step_deadline(Instant::now(), spec.spec.timeout_minutes),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.control.is_cancelled()
    }

    /// Logs a line of the runner's own (not step output), masked like everything else.
    fn log(&mut self, line: &str) {
        let text = self.masker.push(&format!("{line}\n"));
        if !text.is_empty() {
            self.emitter.emit(&WorkerEvent::Log { text });
        }
    }

    /// Runs every step whose condition holds; returns the job's result.
    pub(crate) fn run_steps(&mut self) -> api::AttemptResult {
        let steps = self.spec.spec.steps.clone();
        for (index, step) in steps.iter().enumerate() {
            if self.control.is_fenced() {
                // The lease is gone: not even always() steps may run any more.
                break;
            }
            let title =
                step.name.clone().unwrap_or_else(|| format!("Run {}", step.run.lines().next().unwrap_or_default()));
            // Whether the job was already cancelled when this step was chosen: then it is a
            // clean-up step and runs to its end; otherwise a cancel stops it.
            let cancelled_when_chosen = self.is_cancelled();
            if !self.should_run(step.condition.as_deref(), cancelled_when_chosen) {
                self.log(&format!(
                    "Skipping step {}: {title} (if: {})",
                    index + 1,
                    step.condition.as_deref().unwrap_or("success()")
                ));
                continue;
            }
            self.log(&format!("##[group]{title}"));
            let end = match self.run_step(index, step, cancelled_when_chosen) {
                Ok(end) => end,
                Err(error) => StepEnd { success: false, description: format!("the step could not start: {error:#}") },
            };
            if let Err(error) = self.apply_file_commands(index, step) {
                self.log(&format!("##[error]{error}"));
                if !step.continue_on_error {
                    self.failed = true;
                }
            }
            self.log("##[endgroup]");
            if !end.success {
                self.log(&format!("##[error]{}", end.description));
                if step.continue_on_error {
                    self.log("The step failed, and continue-on-error lets the job go on.");
                } else {
                    self.failed = true;
                }
            }
        }
        job_result(self.failed, self.is_cancelled())
    }

    fn should_run(&self, condition: Option<&str>, cancelled: bool) -> bool {
        match condition.map(str::trim) {
            None | Some("success()") => !self.failed && !cancelled,
            Some("failure()") => self.failed && !cancelled,
            Some("always()") => true,
            Some("cancelled()") => cancelled,
            // The server validated conditions; anything else means the workflow engine will
            // decide, so be safe and run only on success.
            Some(_) => !self.failed && !cancelled,
        }
    }

    fn file_command_paths(&self, index: usize) -> [(&'static str, PathBuf); 5] {
        let dir = &self.dirs.file_commands;
        [
            ("GITHUB_ENV", dir.join(format!("set_env_{index}"))),
            ("GITHUB_OUTPUT", dir.join(format!("set_output_{index}"))),
            ("GITHUB_PATH", dir.join(format!("add_path_{index}"))),
            ("GITHUB_STEP_SUMMARY", dir.join(format!("step_summary_{index}"))),
            ("GITHUB_STATE", dir.join(format!("save_state_{index}"))),
        ]
    }

    fn step_env(&self, index: usize, step: &api::StepSpec) -> std::io::Result<BTreeMap<String, String>> {
        let context = env::Context {
            job_id: self.spec.job_id,
            attempt: self.spec.attempt,
            job_name: &self.spec.spec.name,
            runner_name: &self.spec.runner_name,
            workspace: &self.dirs.workspace,
            temp: &self.dirs.temp,
        };
        let mut vars = env::base(&context);
        vars.extend(self.spec.spec.env.clone());
        vars.extend(self.exported_env.clone());
        vars.extend(step.env.clone());
        vars.insert("GITHUB_ACTION".into(), step.id.clone().unwrap_or_else(|| format!("__run_{index}")));
        if !self.path_additions.is_empty() {
            let base = vars.get("PATH").cloned().unwrap_or_default();
            let mut path = self.path_additions.join(":");
            if !base.is_empty() {
                path.push(':');
                path.push_str(&base);
            }
            vars.insert("PATH".into(), path);
        }
        for (name, path) in self.file_command_paths(index) {
            std::fs::write(&path, b"")?;
            vars.insert(name.into(), path.display().to_string());
        }
        Ok(vars)
    }

    fn run_step(&mut self, index: usize, step: &api::StepSpec, cancelled_before: bool) -> anyhow::Result<StepEnd> {
        let (argv, extension) = shell_argv(step.shell.as_deref())?;
        let script_path = self.dirs.temp.join(format!("step_{index}{extension}"));
        std::fs::write(&script_path, &step.run)?;
        let script = script_path.display().to_string();
        let argv: Vec<String> = argv.iter().map(|arg| arg.replace("{0}", &script)).collect();
        let working_dir = match &step.working_directory {
            Some(dir) => resolve_working_dir(&self.dirs.workspace, dir)?,
            None => self.dirs.workspace.clone(),
        };
        let vars = self.step_env(index, step)?;
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&working_dir)
            .env_clear()
            .envs(&vars)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().map_err(|error| anyhow::anyhow!("start {:?}: {error}", argv[0]))?;
        let pgid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        self.groups.push(pgid);
        self.emitter.emit(&WorkerEvent::ProcessGroup { pgid });

        for (stream, pipe) in [
            (0usize, child.stdout.take().map(|out| Box::new(out) as Box<dyn Read + Send>)),
            (1, child.stderr.take().map(|err| Box::new(err) as Box<dyn Read + Send>)),
        ] {
            if let Some(mut pipe) = pipe {
                let sender = self.sender.clone();
                std::thread::spawn(move || {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        match pipe.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if sender
                                    .send(Input::Chunk { step: index, stream, bytes: buffer[..n].to_vec() })
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = sender.send(Input::StreamClosed { step: index });
                });
            }
        }
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            let (code, signal) = match status {
                Ok(status) => (status.code(), status.signal()),
                Err(_) => (None, None),
            };
            let _ = sender.send(Input::Exited { step: index, code, signal });
        });

        let started = Instant::now();
        let step_deadline = step_deadline(started, step.timeout_minutes);
        let deadline = match (step_deadline, self.job_deadline) {
            (Some(step), Some(job)) => Some(step.min(job)),
            (step, job) => step.or(job),
        };
        let grace = Duration::from_millis(self.spec.escalation.sigint_grace_ms);
        let term_grace = Duration::from_millis(self.spec.escalation.sigterm_grace_ms);
        let mut escalation: Option<Escalation> = None;
        let mut timed_out = false;
        let mut exit: Option<(Option<i32>, Option<i32>)> = None;
        let mut exited_at: Option<Instant> = None;
        let mut open_streams = 2;
        // A step chosen after the cancel is a clean-up step (`always()`, `cancelled()`): it
        // runs; only a cancel that arrives after a step was chosen stops that step.
        loop {
            if exit.is_some() && (open_streams == 0 || exited_at.is_some_and(|at| at.elapsed() >= PIPE_DRAIN_GRACE)) {
                break;
            }
            let now = Instant::now();
            if self.control.is_fenced() {
                // The lease is gone: kill the step now, and do not wait for its pipes.
                process::signal_group(pgid, Signal::SIGKILL);
                break;
            }
            // Checked on every pass, so a step that floods its output cannot starve its own
            // time limit or a cancel behind the queued output.
            if exit.is_none() && escalation.is_none() {
                if deadline.is_some_and(|deadline| now >= deadline) {
                    timed_out = true;
                    self.log("##[error]The step exceeded its time limit: stopping it.");
                    escalation = Some(Escalation::start(pgid, grace, term_grace));
                } else if self.is_cancelled() && !cancelled_before {
                    self.log(
                        "##[warning]The job was cancelled: stopping the step (SIGINT, then SIGTERM, then SIGKILL).",
                    );
                    escalation = Some(Escalation::start(pgid, grace, term_grace));
                }
            }
            let mut wake = now + Duration::from_secs(3600);
            match escalation.as_mut() {
                Some(escalation) => wake = wake.min(escalation.tick(now)),
                None => {
                    if let Some(deadline) = deadline {
                        wake = wake.min(deadline);
                    }
                }
            }
            if let Some(at) = exited_at {
                wake = wake.min(at + PIPE_DRAIN_GRACE);
            }
            wake = wake.min(self.control.lease_deadline());
            match self.receiver.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Input::Chunk { step: from, stream, bytes }) => self.take_output(from, stream, &bytes),
                Ok(Input::StreamClosed { step: from }) => {
                    self.flush_partial(from);
                    if from == index {
                        open_streams -= 1;
                    }
                }
                Ok(Input::Exited { step: from, code, signal }) if from == index => {
                    exit = Some((code, signal));
                    exited_at = Some(Instant::now());
                }
                Ok(Input::Exited { .. }) => {}
                // Cancels and deadlines are acted on at the top of the loop.
                Ok(Input::Cancel) => {}
                Ok(Input::ControlClosed) => {
                    // The listener is gone or fenced this job: stop at once (the loop breaks
                    // on the fence at its top).
                    process::signal_group(pgid, Signal::SIGKILL);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush_partial(index);
        let (code, signal) = exit.unwrap_or((None, None));
        let success = code == Some(0) && !timed_out;
        let description = match (code, signal) {
            _ if timed_out => format!("the step timed out after {:?}", started.elapsed()),
            (Some(code), _) => format!("the step's process exited with code {code}"),
            (None, Some(signal)) => format!("the step's process was killed by signal {signal}"),
            (None, None) => "the step's process vanished".to_string(),
        };
        Ok(StepEnd { success, description })
    }

    /// Takes a chunk of step output; complete lines go through command processing and masking.
    fn take_output(&mut self, step: usize, stream: usize, bytes: &[u8]) {
        let mut pending = self.partial.remove(&(step, stream)).unwrap_or_default();
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|byte| *byte == b'\n') {
            let line = String::from_utf8_lossy(&pending[start..start + offset]).into_owned();
            self.take_line(line.trim_end_matches('\r'));
            start += offset + 1;
        }
        let mut rest = pending.split_off(start);
        while rest.len() >= LINE_BYTES_MAX {
            let tail = rest.split_off(LINE_BYTES_MAX);
            let line = String::from_utf8_lossy(&rest).into_owned();
            self.take_line(&line);
            rest = tail;
        }
        if !rest.is_empty() {
            self.partial.insert((step, stream), rest);
        }
    }

    fn flush_partial(&mut self, step: usize) {
        for stream in 0..2 {
            if let Some(rest) = self.partial.remove(&(step, stream)) {
                let line = String::from_utf8_lossy(&rest).into_owned();
                self.take_line(&line);
            }
        }
    }

    fn take_line(&mut self, line: &str) {
        match self.commands.process_line(line) {
            Outcome::Output(text) => self.log(&text),
            Outcome::Command(command) => self.apply_command(command),
            Outcome::Ignored => {}
        }
    }

    fn apply_command(&mut self, command: WorkflowCommand) {
        match command {
            WorkflowCommand::AddMask(value) => match self.masker.add(&value) {
                Ok(()) => self.masked_values.push(value),
                Err(error) => {
                    // An unmasked secret must not reach the log: fail the job loudly instead.
                    self.failed = true;
                    self.log(&format!(
                        "##[error]add-mask refused: {error}; the job fails so that the value is never shown"
                    ));
                }
            },
            WorkflowCommand::Group(title) => self.log(&format!("##[group]{title}")),
            WorkflowCommand::EndGroup => self.log("##[endgroup]"),
            WorkflowCommand::Annotation { level, message, file, line, title, .. } => {
                let level = match level {
                    Level::Error => "error",
                    Level::Warning => "warning",
                    Level::Notice => "notice",
                };
                let location = match (file, line) {
                    (Some(file), Some(line)) => format!("{file}:{line}: "),
                    (Some(file), None) => format!("{file}: "),
                    _ => String::new(),
                };
                let title = title.map(|title| format!("{title}: ")).unwrap_or_default();
                self.log(&format!("##[{level}]{location}{title}{message}"));
            }
            WorkflowCommand::Debug(message) => self.log(&format!("##[debug]{message}")),
            WorkflowCommand::StopCommands => {
                // The token would resume command processing if shown; keep it out of the log.
                if let Some(token) = self.commands.stop_token().map(str::to_string)
                    && self.masker.add(&token).is_ok()
                {
                    self.masked_values.push(token);
                }
            }
            WorkflowCommand::ResumeCommands => {}
        }
    }

    fn apply_file_commands(&mut self, index: usize, step: &api::StepSpec) -> anyhow::Result<()> {
        let paths = self.file_command_paths(index);
        let read = |path: &Path| -> anyhow::Result<String> {
            let size = std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0);
            anyhow::ensure!(size as usize <= FILE_COMMAND_BYTES_MAX, "{} is over 1 MiB", path.display());
            Ok(std::fs::read_to_string(path).unwrap_or_default())
        };
        let env_text = read(&paths[0].1)?;
        let exported =
            file_commands::parse_key_value_file(&env_text).map_err(|error| anyhow::anyhow!("GITHUB_ENV: {error}"))?;
        for (name, value) in exported {
            self.exported_env.insert(name, value);
        }
        let output_text = read(&paths[1].1)?;
        let outputs = file_commands::parse_key_value_file(&output_text)
            .map_err(|error| anyhow::anyhow!("GITHUB_OUTPUT: {error}"))?;
        for (name, value) in outputs {
            if let Some(id) = &step.id {
                self.outputs.insert(format!("{id}.{name}"), value.clone());
            }
            self.outputs.insert(name, value);
        }
        let path_text = read(&paths[2].1)?;
        for dir in file_commands::parse_path_file(&path_text).into_iter().rev() {
            self.path_additions.insert(0, dir);
        }
        let summary = read(&paths[3].1)?;
        if self.summary.len() + summary.len() <= SUMMARY_BYTES_MAX {
            self.summary.push_str(&summary);
        } else {
            self.log("##[warning]The step summary is over 1 MiB in total; the rest was dropped.");
        }
        let state_text = read(&paths[4].1)?;
        file_commands::parse_key_value_file(&state_text).map_err(|error| anyhow::anyhow!("GITHUB_STATE: {error}"))?;
        Ok(())
    }

    /// Ends the job: flushes masked output; returns outputs, summary and the process groups.
    pub(crate) fn finish(mut self) -> (Outputs, String, Vec<i32>) {
        let rest = self.masker.finish();
        if !rest.is_empty() {
            self.emitter.emit(&WorkerEvent::Log { text: rest });
        }
        let mut masked_outputs = BTreeMap::new();
        for (name, value) in std::mem::take(&mut self.outputs) {
            masked_outputs.insert(name, mask_whole(&self.masked_values, &value));
        }
        let summary = mask_whole(&self.masked_values, &self.summary);
        (masked_outputs, summary, self.groups)
    }
}

/// Masks one complete value with every masked value of the job.
fn mask_whole(masked_values: &[String], value: &str) -> String {
    let mut masker = Masker::new();
    for secret in masked_values {
        // These values were all accepted once, so they fit the limits again.
        let _ = masker.add(secret);
    }
    let mut out = masker.push(value);
    out.push_str(&masker.finish());
    out
}

/// The argv template of a `shell:` value and the script file extension.
fn shell_argv(shell: Option<&str>) -> anyhow::Result<(Vec<String>, &'static str)> {
    let words = |text: &str| text.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    Ok(match shell.map(str::trim) {
        None | Some("bash") => (words("bash --noprofile --norc -eo pipefail {0}"), ".sh"),
        Some("sh") => (words("sh -e {0}"), ".sh"),
        Some("python") => (words("python3 {0}"), ".py"),
        Some(template) if template.contains("{0}") => (words(template), ""),
        Some(other) => {
            anyhow::bail!("unknown shell {other:?}: use bash, sh, python, or a command template containing {{0}}")
        }
    })
}

/// A step's working directory, relative to the workspace; it may not leave it.
fn resolve_working_dir(workspace: &Path, dir: &str) -> anyhow::Result<PathBuf> {
    let relative = Path::new(dir);
    anyhow::ensure!(
        !relative.is_absolute()
            && relative
                .components()
                .all(|part| matches!(part, std::path::Component::Normal(_) | std::path::Component::CurDir)),
        "working-directory {dir:?} must be a relative path inside the workspace"
    );
    let path = workspace.join(relative);
    anyhow::ensure!(path.is_dir(), "working-directory {dir:?} does not exist in the workspace");
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells() {
        assert_eq!(shell_argv(None).expect("bash").0, ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"]);
        assert_eq!(shell_argv(Some("sh")).expect("sh").0, ["sh", "-e", "{0}"]);
        assert_eq!(shell_argv(Some("python")).expect("python").1, ".py");
        assert_eq!(shell_argv(Some("perl {0}")).expect("template").0, ["perl", "{0}"]);
        assert!(shell_argv(Some("fish")).is_err());
    }

    #[test]
    fn working_directory_stays_inside_the_workspace() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        assert!(resolve_working_dir(dir.path(), "sub").is_ok());
        assert!(resolve_working_dir(dir.path(), "../etc").is_err());
        assert!(resolve_working_dir(dir.path(), "/etc").is_err());
        assert!(resolve_working_dir(dir.path(), "missing").is_err());
    }
}
