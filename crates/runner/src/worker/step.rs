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

use super::contexts::{JobContexts, RunnerFacts, StepInputs, StepOutcome, StepRecord, job_status};
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
    /// The expression contexts: the job's, plus `env` and `steps` as the job goes on.
    contexts: JobContexts,
    /// Problems found before the first step that fail the job.
    setup_errors: Vec<String>,
    /// Set when a secret could not be registered for masking: then no step may run, so that
    /// it is never shown.
    secrets_refused: Option<String>,
}

/// How a step ended.
struct StepEnd {
    success: bool,
    /// Stopped because the job was cancelled.
    cancelled: bool,
    description: String,
}

impl StepEnd {
    fn failed(description: String) -> StepEnd {
        StepEnd { success: false, cancelled: false, description }
    }
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
        let mut secrets_refused = None;
        for (name, secret) in &spec.secrets {
            match masker.add(secret) {
                Ok(()) => masked_values.push(secret.clone()),
                Err(error) => {
                    tracing::error!(%error, secret = %name, "a secret could not be registered for masking");
                    secrets_refused.get_or_insert_with(|| format!("the secret {name} cannot be masked: {error}"));
                }
            }
        }
        let runner =
            RunnerFacts { name: spec.runner_name.clone(), workspace: dirs.workspace.clone(), temp: dirs.temp.clone() };
        let (contexts, problem) = JobContexts::new(spec.spec.contexts.as_ref(), &spec.secrets, &runner);
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
            contexts,
            setup_errors: problem.into_iter().collect(),
            secrets_refused,
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

    /// Prepares the job before its first step: refuses to run with a secret that cannot be
    /// masked, and evaluates the job-level `env`. Returns false when no step may run.
    fn prepare(&mut self) -> bool {
        if let Some(problem) = self.secrets_refused.clone() {
            self.log(&format!("##[error]{problem}; no step runs, so that it is never shown."));
            self.failed = true;
            return false;
        }
        for problem in std::mem::take(&mut self.setup_errors) {
            self.log(&format!("##[error]{problem}"));
            self.failed = true;
        }
        for error in self.contexts.evaluate_job_env(&self.spec.spec.env) {
            self.log(&format!("##[error]{error}"));
            self.failed = true;
        }
        true
    }

    /// Runs every step whose condition holds; returns the job's result.
    pub(crate) fn run_steps(&mut self) -> api::AttemptResult {
        if !self.prepare() {
            return job_result(self.failed, self.is_cancelled());
        }
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
            let status = job_status(self.failed, cancelled_when_chosen);
            match self.contexts.condition(step.condition.as_deref(), &self.exported_env, status) {
                Ok(true) => {}
                Ok(false) => {
                    self.log(&format!(
                        "Skipping step {}: {title} (if: {})",
                        index + 1,
                        step.condition.as_deref().unwrap_or("success()")
                    ));
                    self.record_step(step, BTreeMap::new(), StepOutcome::Skipped);
                    continue;
                }
                Err(error) => {
                    self.log(&format!("##[error]Step {}: {title}: {error}", index + 1));
                    self.failed = true;
                    let record = StepRecord {
                        outputs: BTreeMap::new(),
                        outcome: StepOutcome::Failure,
                        conclusion: StepOutcome::Failure,
                    };
                    self.contexts.record_step(step.id.as_deref(), record);
                    continue;
                }
            }
            self.log(&format!("##[group]{title}"));
            let mut step_outputs = BTreeMap::new();
            let mut file_commands_failed = false;
            let end = match self.contexts.step_inputs(step, &self.exported_env, status) {
                Ok(inputs) => {
                    let end = match self.run_step(index, step, &inputs, cancelled_when_chosen) {
                        Ok(end) => end,
                        Err(error) => StepEnd::failed(format!("the step could not start: {error:#}")),
                    };
                    match self.apply_file_commands(index, step) {
                        Ok(outputs) => step_outputs = outputs,
                        Err(error) => {
                            file_commands_failed = true;
                            self.log(&format!("##[error]{error}"));
                            if !step.continue_on_error {
                                self.failed = true;
                            }
                        }
                    }
                    end
                }
                Err(error) => StepEnd::failed(format!("Step {}: {title}: {error}", index + 1)),
            };
            self.log("##[endgroup]");
            if !end.success {
                self.log(&format!("##[error]{}", end.description));
                if step.continue_on_error {
                    self.log("The step failed, and continue-on-error lets the job go on.");
                } else {
                    self.failed = true;
                }
            }
            let outcome = if end.cancelled {
                StepOutcome::Cancelled
            } else if !end.success || file_commands_failed {
                StepOutcome::Failure
            } else {
                StepOutcome::Success
            };
            self.record_step(step, step_outputs, outcome);
        }
        job_result(self.failed, self.is_cancelled())
    }

    /// Adds a step to the `steps` context.
    fn record_step(&mut self, step: &api::StepSpec, outputs: BTreeMap<String, String>, outcome: StepOutcome) {
        let record = StepRecord { outputs, outcome, conclusion: outcome.conclusion(step.continue_on_error) };
        self.contexts.record_step(step.id.as_deref(), record);
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

    fn step_env(
        &self,
        index: usize,
        step: &api::StepSpec,
        step_vars: &BTreeMap<String, String>,
    ) -> std::io::Result<BTreeMap<String, String>> {
        let context = env::Context {
            job_id: self.spec.job_id,
            attempt: self.spec.attempt,
            job_name: &self.spec.spec.name,
            runner_name: &self.spec.runner_name,
            workspace: &self.dirs.workspace,
            temp: &self.dirs.temp,
        };
        let mut vars = env::base(&context);
        vars.extend(self.contexts.job_env().clone());
        vars.extend(self.exported_env.clone());
        vars.extend(step_vars.clone());
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

    /// Runs one step with its evaluated `run`, `shell`, `working-directory` and `env`.
    fn run_step(
        &mut self,
        index: usize,
        step: &api::StepSpec,
        inputs: &StepInputs,
        cancelled_before: bool,
    ) -> anyhow::Result<StepEnd> {
        let (argv, extension) = shell_argv(inputs.shell.as_deref())?;
        let script_path = self.dirs.temp.join(format!("step_{index}{extension}"));
        std::fs::write(&script_path, &inputs.run)?;
        let script = script_path.display().to_string();
        let argv: Vec<String> = argv.iter().map(|arg| arg.replace("{0}", &script)).collect();
        let working_dir = match &inputs.working_directory {
            Some(dir) => resolve_working_dir(&self.dirs.workspace, dir)?,
            None => self.dirs.workspace.clone(),
        };
        let vars = self.step_env(index, step, &inputs.env)?;
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
        let mut stopped_for_cancel = false;
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
                stopped_for_cancel = true;
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
                    stopped_for_cancel = true;
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
        Ok(StepEnd { success, cancelled: stopped_for_cancel, description })
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

    /// Applies a step's file commands; returns its `GITHUB_OUTPUT` values.
    fn apply_file_commands(&mut self, index: usize, step: &api::StepSpec) -> anyhow::Result<BTreeMap<String, String>> {
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
        for (name, value) in &outputs {
            if let Some(id) = &step.id {
                self.outputs.insert(format!("{id}.{name}"), value.clone());
            }
            self.outputs.insert(name.clone(), value.clone());
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
        Ok(outputs.into_iter().collect())
    }

    /// Ends the job: flushes masked output; returns outputs, summary and the process groups.
    pub(crate) fn finish(mut self) -> (Outputs, String, Vec<i32>) {
        let outputs = match &self.spec.spec.outputs {
            // A fenced job reports nothing: do not spend time evaluating what is never sent.
            Some(_) if self.control.is_fenced() => Outputs::new(),
            Some(templates) => {
                let status = job_status(self.failed, self.is_cancelled());
                let (outputs, errors) = self.contexts.job_outputs(templates, &self.exported_env, status);
                for error in errors {
                    self.log(&format!("##[error]{error}"));
                    self.log("The output is left empty.");
                }
                outputs
            }
            None => std::mem::take(&mut self.outputs),
        };
        let rest = self.masker.finish();
        if !rest.is_empty() {
            self.emitter.emit(&WorkerEvent::Log { text: rest });
        }
        let mut masked_outputs = BTreeMap::new();
        for (name, value) in outputs {
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
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::protocol::Escalation as EscalationSpec;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Finished {
        result: api::AttemptResult,
        outputs: Outputs,
        log: String,
    }

    fn step(id: Option<&str>, condition: Option<&str>, run: &str) -> api::StepSpec {
        api::StepSpec {
            id: id.map(str::to_string),
            name: None,
            run: run.into(),
            shell: None,
            env: BTreeMap::new(),
            working_directory: None,
            continue_on_error: false,
            timeout_minutes: None,
            condition: condition.map(str::to_string),
        }
    }

    fn job_spec(steps: Vec<api::StepSpec>) -> api::JobSpec {
        api::JobSpec {
            name: "test".into(),
            labels: Vec::new(),
            env: BTreeMap::new(),
            steps,
            timeout_minutes: None,
            max_attempts: None,
            contexts: None,
            outputs: None,
        }
    }

    /// Runs a job in a real worker loop (real shells, real file commands), cancelled from the
    /// start when `cancelled`, and returns what it reported.
    fn run_job(spec: api::JobSpec, secrets: &[(&str, &str)], cancelled: bool) -> Finished {
        let root = tempfile::tempdir().expect("temp dir");
        let dirs = AttemptDirs::new(root.path());
        dirs.create().expect("attempt dirs");
        let spec = WorkerSpec {
            job_id: 7,
            attempt: 1,
            runner_name: "test-runner".into(),
            spec,
            secrets: secrets.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
            escalation: EscalationSpec::default(),
            lease_valid_for_ms: 3_600_000,
        };
        let buffer = Buffer::default();
        let emitter = Emitter::to(Box::new(buffer.clone()));
        let (sender, receiver) = mpsc::sync_channel(256);
        let control = Arc::new(Control::new(Duration::from_secs(3600)));
        if cancelled {
            control.cancelled.store(true, Ordering::SeqCst);
        }
        let mut job = JobRun::new(&spec, &dirs, emitter, sender, receiver, control);
        let result = job.run_steps();
        let (outputs, _summary, _groups) = job.finish();
        let bytes = buffer.0.lock().expect("buffer lock").clone();
        let mut log = String::new();
        for line in String::from_utf8(bytes).expect("utf-8 events").lines() {
            if let WorkerEvent::Log { text } = serde_json::from_str(line).expect("a worker event") {
                log.push_str(&text);
            }
        }
        Finished { result, outputs, log }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn conditions_steps_context_and_job_outputs() {
        let mut flaky = step(Some("a"), None, "echo x=1 >> \"$GITHUB_OUTPUT\"; exit 3");
        flaky.continue_on_error = true;
        let mut spec = job_spec(vec![
            flaky,
            step(Some("b"), Some("steps.a.outcome == 'failure' && steps.a.conclusion == 'success'"), "echo b-ran"),
            step(Some("c"), Some("failure()"), "echo c-ran"),
            step(Some("d"), None, "echo d-ran; exit 1"),
            step(Some("e"), Some("${{ failure() }}"), "echo e-ran"),
            step(Some("f"), None, "echo f-ran"),
            step(None, Some("always() && steps.d.outcome == 'failure'"), "echo g-ran ${{ steps.a.outputs.x }}"),
            step(Some("h"), Some("steps.a.outputs.x =="), "echo h-ran"),
            step(None, Some("always()"), "echo h=${{ steps.h.outcome }} f=${{ steps.f.conclusion }}"),
        ]);
        spec.outputs = Some(map(&[
            ("x", "${{ steps.a.outputs.x }}"),
            ("c", "${{ steps.c.outcome }}"),
            ("bad", "${{ fromJSON('{') }}"),
        ]));
        let finished = run_job(spec, &[], false);
        let log = &finished.log;
        assert_eq!(finished.result, api::AttemptResult::Failure, "{log}");
        assert_eq!(finished.outputs, map(&[("c", "skipped"), ("x", "1")]), "{log}");
        for expected in [
            "\nb-ran\n",
            "Skipping step 3: Run echo c-ran (if: failure())\n",
            "\nd-ran\n",
            "\ne-ran\n",
            "Skipping step 6: Run echo f-ran (if: success())\n",
            "\ng-ran 1\n",
            "##[error]Step 8: Run echo h-ran: the `if` condition: ",
            "\nh=failure f=skipped\n",
            "##[error]the job output `bad`: ",
        ] {
            assert!(log.contains(expected), "{expected:?} missing from:\n{log}");
        }
        for unexpected in ["\nc-ran\n", "\nf-ran\n", "\nh-ran\n"] {
            assert!(!log.contains(unexpected), "{unexpected:?} in:\n{log}");
        }
    }

    #[test]
    fn a_cancelled_job_runs_only_clean_up_steps() {
        let spec = job_spec(vec![
            step(Some("build"), None, "echo build-ran"),
            step(None, Some("cancelled()"), "echo cleanup-ran ${{ job.status }} ${{ steps.build.outcome }}"),
            step(None, Some("failure()"), "echo failure-ran"),
            step(None, Some("always()"), "echo always-ran"),
        ]);
        let finished = run_job(spec, &[], true);
        let log = &finished.log;
        assert_eq!(finished.result, api::AttemptResult::Cancelled, "{log}");
        assert!(log.contains("Skipping step 1: Run echo build-ran (if: success())"), "{log}");
        assert!(log.contains("\ncleanup-ran cancelled skipped\n"), "{log}");
        assert!(log.contains("Skipping step 3: Run echo failure-ran (if: failure())"), "{log}");
        assert!(log.contains("\nalways-ran\n"), "{log}");
        // Without outputs templates, the steps' GITHUB_OUTPUT values are reported as before.
        assert_eq!(finished.outputs, Outputs::new());
    }

    #[test]
    fn env_templates_working_directory_and_hash_files() {
        let mut spec = job_spec(vec![
            step(None, None, "mkdir linux && printf abc > linux/f.txt && echo EXPORTED=from-step-1 >> \"$GITHUB_ENV\""),
            {
                let mut second = step(None, None, "echo \"msg=$MESSAGE tmpl=${{ env.MESSAGE }} os=$OS\"");
                second.env = map(&[("MESSAGE", "${{ env.OS }}/${{ env.LEVEL }}/${{ env.EXPORTED }}")]);
                second
            },
            {
                let mut third = step(None, None, "echo \"dir=$(basename \"$PWD\")\"");
                third.working_directory = Some("${{ matrix.os }}".into());
                third.shell = Some("${{ 'sh' }}".into());
                third
            },
            step(None, None, "echo \"hash=${{ hashFiles('linux/*.txt') }} none=${{ hashFiles('nothing/**') }}.\""),
            step(None, None, "echo ${{ hashFiles('../*') }}"),
            step(None, Some("always()"), "echo ${{ nope.value }}"),
        ]);
        spec.env = map(&[("OS", "${{ matrix.os }}"), ("LEVEL", "l${{ inputs.level }}")]);
        spec.contexts = Some(serde_json::json!({"matrix": {"os": "linux"}, "inputs": {"level": 3}}));
        let finished = run_job(spec, &[], false);
        let log = &finished.log;
        let hash = hex::encode(Sha256::digest(Sha256::digest(b"abc")));
        for expected in [
            "\nmsg=linux/l3/from-step-1 tmpl=linux/l3/from-step-1 os=linux\n".to_string(),
            "\ndir=linux\n".to_string(),
            format!("\nhash={hash} none=.\n"),
            "##[error]Step 5: Run echo ${{ hashFiles('../*') }}: the `run` template: ".to_string(),
            "##[error]Step 6: Run echo ${{ nope.value }}: the `run` template: ".to_string(),
        ] {
            assert!(log.contains(&expected), "{expected:?} missing from:\n{log}");
        }
        assert_eq!(finished.result, api::AttemptResult::Failure, "{log}");
    }

    #[test]
    fn a_secret_that_cannot_be_masked_stops_the_job_before_any_step() {
        let secrets: Vec<(String, String)> =
            (0..=super::super::mask::SECRETS_MAX).map(|n| (format!("S{n:04}"), format!("value-{n:04}"))).collect();
        let secrets: Vec<(&str, &str)> = secrets.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let spec = job_spec(vec![step(None, Some("always()"), "echo ran")]);
        let finished = run_job(spec, &secrets, false);
        assert_eq!(finished.result, api::AttemptResult::Failure);
        assert!(finished.log.starts_with("##[error]the secret S1024 cannot be masked: "), "{}", finished.log);
        assert!(!finished.log.contains("\nran\n"), "{}", finished.log);
    }

    #[test]
    fn secrets_from_expressions_are_masked() {
        let mut echo = step(
            Some("leak"),
            None,
            "echo \"run=${{ secrets.TOKEN }}\"; echo \"env=$FROM_ENV\"; echo \"out=${{ secrets.TOKEN }}\" >> \"$GITHUB_OUTPUT\"",
        );
        echo.env = map(&[("FROM_ENV", "${{ secrets.TOKEN }}")]);
        let mut spec = job_spec(vec![echo, step(None, Some("${{ secrets.TOKEN == 's3cr3t-value' }}"), "echo equal")]);
        spec.outputs = Some(map(&[("token", "${{ secrets.TOKEN }}"), ("out", "${{ steps.leak.outputs.out }}")]));
        let finished = run_job(spec, &[("TOKEN", "s3cr3t-value")], false);
        let log = &finished.log;
        assert_eq!(finished.result, api::AttemptResult::Success, "{log}");
        assert!(log.contains("\nrun=***\n"), "{log}");
        assert!(log.contains("\nenv=***\n"), "{log}");
        assert!(log.contains("\nequal\n"), "{log}");
        assert!(!log.contains("s3cr3t"), "{log}");
        assert_eq!(finished.outputs, map(&[("out", "***"), ("token", "***")]));
    }

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
