//! The planner: given a run's state and what just happened, which legs start, which stop, and
//! how jobs and the run conclude.
//!
//! Every method is a pure function of the workflow, the run's context and the state it is given;
//! it changes the state and returns the [`Action`]s the store must carry out in the same
//! transaction. Enqueued legs are bound to their Baton job with [`RunState::bind`].

use std::collections::{BTreeMap, BTreeSet};

use baton_api as api;
use baton_expr::{Host, JobStatus, Object, ParseOptions, Value};
use baton_workflow::{Job, Matrix, Workflow};

use crate::matrix;
use crate::state::{Leg, Outcome, Phase, RunState, WorkflowJob};

/// Default job time limit, as GitHub's: 360 minutes.
pub const DEFAULT_TIMEOUT_MINUTES: u32 = 360;

/// What a run needs besides its state: the workflow, its typed inputs, and options.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    pub run_id: i64,
    pub workflow: &'a Workflow,
    /// The `inputs` context, from [`crate::typed_inputs`].
    pub inputs: &'a Object,
    /// Ignore `runs-on`: any runner may take the run's jobs.
    pub any_runner: bool,
}

/// What the store must do after the planner changed a run's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Enqueue a Baton job for leg `leg` of workflow job `key`, then bind it.
    Enqueue { key: String, leg: usize, spec: Box<api::JobSpec> },
    /// Cancel Baton job `job_id`; when it ends, report it with [`Planner::leg_finished`].
    Cancel { job_id: i64 },
}

/// Errors starting a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the workflow has no job `{0}`; its jobs are: {1}")]
    UnknownJob(String, String),
}

/// Plans one run. Cheap to build; holds only references.
#[derive(Debug, Clone, Copy)]
pub struct Planner<'a> {
    context: RunContext<'a>,
}

/// Contexts available to job-level expressions evaluated on the server.
const JOB_IF_CONTEXTS: [&str; 4] = ["github", "needs", "vars", "inputs"];
const LEG_CONTEXTS: [&str; 6] = ["github", "needs", "strategy", "matrix", "vars", "inputs"];

impl<'a> Planner<'a> {
    pub fn new(context: RunContext<'a>) -> Planner<'a> {
        Planner { context }
    }

    /// The state of a new run: every job waiting, or only `only` and the jobs it needs,
    /// directly or not. Call [`Planner::advance`] next to start the first jobs.
    pub fn start(&self, only: Option<&str>) -> Result<RunState, PlanError> {
        let workflow = self.context.workflow;
        let selected: BTreeSet<&str> = match only {
            None => workflow.jobs.iter().map(|job| job.id.as_str()).collect(),
            Some(key) => {
                if !workflow.jobs.iter().any(|job| job.id == key) {
                    let keys: Vec<&str> = workflow.jobs.iter().map(|job| job.id.as_str()).collect();
                    return Err(PlanError::UnknownJob(key.to_owned(), keys.join(", ")));
                }
                let mut selected = BTreeSet::new();
                let mut pending = vec![key];
                while let Some(key) = pending.pop() {
                    if selected.insert(key)
                        && let Some(job) = workflow.jobs.iter().find(|job| job.id == key)
                    {
                        pending.extend(job.needs.iter().map(|need| need.value.as_str()));
                    }
                }
                selected
            }
        };
        let jobs = workflow
            .jobs
            .iter()
            .filter(|job| selected.contains(job.id.as_str()))
            .map(|job| WorkflowJob {
                key: job.id.clone(),
                name: job.name.as_ref().map(|name| name.value.clone()).unwrap_or_else(|| job.id.clone()),
                needs: job.needs.iter().map(|need| need.value.clone()).collect(),
                phase: Phase::Waiting,
                result: None,
                outputs: BTreeMap::new(),
                legs: Vec::new(),
                fail_fast: true,
                max_parallel: None,
                stopping: false,
                message: None,
            })
            .collect();
        Ok(RunState { cancelled: false, jobs })
    }

    /// Starts every job whose needs are done, starts legs up to `max-parallel`, and completes
    /// jobs whose legs all ended, until nothing changes.
    pub fn advance(&self, state: &mut RunState) -> Vec<Action> {
        let mut actions = Vec::new();
        loop {
            let mut changed = false;
            for index in 0..state.jobs.len() {
                match state.jobs[index].phase {
                    Phase::Waiting => {
                        let ready = state.jobs[index]
                            .needs
                            .iter()
                            .all(|need| state.jobs.iter().any(|job| &job.key == need && job.phase == Phase::Completed));
                        if ready {
                            self.start_job(state, index, &mut actions);
                            changed = true;
                        }
                    }
                    Phase::Running => {
                        changed |= self.fill_legs(state, index, &mut actions);
                        if state.jobs[index].legs.iter().all(|leg| leg.phase == Phase::Completed) {
                            finish_job(&mut state.jobs[index]);
                            changed = true;
                        }
                    }
                    Phase::Completed => {}
                }
            }
            if !changed {
                return actions;
            }
        }
    }

    /// Records that Baton job `job_id` ended with `outcome` and `outputs`; applies fail-fast and
    /// advances the run. A job that is not a leg of this run, or already recorded, changes nothing.
    pub fn leg_finished(
        &self,
        state: &mut RunState,
        job_id: i64,
        outcome: Outcome,
        outputs: &BTreeMap<String, String>,
    ) -> Vec<Action> {
        let Some((job_index, leg_index)) = state.leg_of(job_id) else { return Vec::new() };
        let job = &mut state.jobs[job_index];
        if job.legs[leg_index].phase == Phase::Completed {
            return Vec::new();
        }
        let leg = &mut job.legs[leg_index];
        leg.phase = Phase::Completed;
        leg.result = Some(outcome);
        let continue_on_error = leg.continue_on_error;
        for (name, value) in outputs {
            if !value.is_empty() {
                job.outputs.insert(name.clone(), value.clone());
            }
        }
        let mut actions = Vec::new();
        if outcome == Outcome::Failure && !continue_on_error && job.fail_fast && !job.stopping {
            job.stopping = true;
            job.message =
                Some(format!("fail-fast: {} failed, so the other legs were cancelled", job.legs[leg_index].name));
            for leg in &job.legs {
                if leg.phase == Phase::Running
                    && let Some(job_id) = leg.job_id
                {
                    actions.push(Action::Cancel { job_id });
                }
            }
        }
        actions.extend(self.advance(state));
        actions
    }

    /// Cancels the run: running legs are told to stop, legs not started never start, and waiting
    /// jobs see `cancelled()` (so only `always()` and `cancelled()` jobs still run). Cancelling a
    /// cancelled run changes nothing.
    pub fn cancel(&self, state: &mut RunState) -> Vec<Action> {
        if state.cancelled {
            return Vec::new();
        }
        state.cancelled = true;
        let mut actions = Vec::new();
        for job in &mut state.jobs {
            if job.phase != Phase::Running {
                continue;
            }
            job.stopping = true;
            for leg in &job.legs {
                if leg.phase == Phase::Running
                    && let Some(job_id) = leg.job_id
                {
                    actions.push(Action::Cancel { job_id });
                }
            }
        }
        actions.extend(self.advance(state));
        actions
    }

    fn workflow_job(&self, key: &str) -> Option<&'a Job> {
        self.context.workflow.jobs.iter().find(|job| job.id == key)
    }

    /// Evaluates the job's `if` and strategy; creates its legs, or completes it as skipped or failed.
    fn start_job(&self, state: &mut RunState, index: usize, actions: &mut Vec<Action>) {
        let key = state.jobs[index].key.clone();
        let Some(job) = self.workflow_job(&key) else {
            complete(&mut state.jobs[index], Outcome::Failure, "the job is not in the run's workflow".into());
            return;
        };
        let status = status_for(state, index);
        let mut contexts = self.base_contexts(state, index);
        let options = ParseOptions::with_named_values(JOB_IF_CONTEXTS).hash_files(false);
        let condition = job.condition.as_ref().map(|condition| condition.value.as_str()).unwrap_or("");
        match baton_expr::evaluate_if_condition(condition, &options, &contexts, &StatusHost(status)) {
            Ok(true) => {}
            Ok(false) => {
                let shown = if condition.is_empty() { "success()" } else { condition };
                complete(&mut state.jobs[index], Outcome::Skipped, format!("skipped: `if: {shown}` was false"));
                return;
            }
            Err(error) => {
                complete(&mut state.jobs[index], Outcome::Failure, format!("the job's `if` failed: {error}"));
                return;
            }
        }
        contexts.insert("matrix", Value::Object(Object::new()));
        let strategy = match self.strategy(job, &contexts) {
            Ok(strategy) => strategy,
            Err(message) => {
                complete(&mut state.jobs[index], Outcome::Failure, message);
                return;
            }
        };
        let record = &mut state.jobs[index];
        record.fail_fast = strategy.fail_fast;
        record.max_parallel = strategy.max_parallel;
        record.phase = Phase::Running;
        record.legs = strategy
            .combinations
            .iter()
            .map(|combination| Leg {
                name: leg_name(job, combination.as_ref()),
                matrix: combination.as_ref().map(|matrix| serde_json::Value::from(&Value::Object(matrix.clone()))),
                job_id: None,
                phase: Phase::Waiting,
                result: None,
                continue_on_error: false,
                message: None,
            })
            .collect();
        self.fill_legs(state, index, actions);
    }

    /// Starts waiting legs while fewer than `max-parallel` run; ends them unstarted when the job
    /// is stopping. True when a leg changed.
    fn fill_legs(&self, state: &mut RunState, index: usize, actions: &mut Vec<Action>) -> bool {
        let mut changed = false;
        let limit = state.jobs[index].max_parallel.map_or(usize::MAX, |limit| limit.max(1) as usize);
        for leg_index in 0..state.jobs[index].legs.len() {
            let job = &state.jobs[index];
            if job.legs[leg_index].phase != Phase::Waiting {
                continue;
            }
            if job.stopping {
                let leg = &mut state.jobs[index].legs[leg_index];
                leg.phase = Phase::Completed;
                leg.result = Some(Outcome::Cancelled);
                changed = true;
                continue;
            }
            if job.legs.iter().filter(|leg| leg.phase == Phase::Running).count() >= limit {
                break;
            }
            changed = true;
            match self.leg_spec(state, index, leg_index) {
                Ok((spec, continue_on_error)) => {
                    let leg = &mut state.jobs[index].legs[leg_index];
                    leg.phase = Phase::Running;
                    leg.continue_on_error = continue_on_error;
                    actions.push(Action::Enqueue { key: state.jobs[index].key.clone(), leg: leg_index, spec });
                }
                Err(message) => {
                    let job = &mut state.jobs[index];
                    let leg = &mut job.legs[leg_index];
                    leg.phase = Phase::Completed;
                    leg.result = Some(Outcome::Failure);
                    leg.message = Some(message);
                    if job.fail_fast {
                        job.stopping = true;
                        for leg in &job.legs {
                            if leg.phase == Phase::Running
                                && let Some(job_id) = leg.job_id
                            {
                                actions.push(Action::Cancel { job_id });
                            }
                        }
                    }
                }
            }
        }
        changed
    }

    /// `github`, `inputs`, `vars` and `needs` for job `index`.
    fn base_contexts(&self, state: &RunState, index: usize) -> Object {
        let workflow = self.context.workflow;
        let key = &state.jobs[index].key;
        let run_id = Value::String(self.context.run_id.to_string());
        let mut event = Object::new();
        event.insert("inputs", Value::Object(self.context.inputs.clone()));
        let mut github = Object::new();
        github.insert("event_name", Value::from("workflow_dispatch"));
        github.insert("event", Value::Object(event));
        github.insert("run_id", run_id.clone());
        github.insert("run_number", run_id);
        github.insert("run_attempt", Value::from("1"));
        github.insert(
            "workflow",
            Value::String(
                workflow.name.as_ref().map(|name| name.value.clone()).unwrap_or_else(|| workflow.file.clone()),
            ),
        );
        github.insert("job", Value::String(key.clone()));
        github.insert("actor", Value::from("baton"));
        for empty in ["repository", "ref", "sha", "server_url", "api_url"] {
            github.insert(empty, Value::from(""));
        }
        let mut needs = Object::new();
        for need in &state.jobs[index].needs {
            if let Some(done) = state.jobs.iter().find(|job| &job.key == need) {
                let mut entry = Object::new();
                entry.insert("result", Value::from(done.result.map_or("", Outcome::as_str)));
                let outputs: Object =
                    done.outputs.iter().map(|(name, value)| (name.clone(), Value::String(value.clone()))).collect();
                entry.insert("outputs", Value::Object(outputs));
                needs.insert(need.clone(), Value::Object(entry));
            }
        }
        let mut contexts = Object::new();
        contexts.insert("github", Value::Object(github));
        contexts.insert("inputs", Value::Object(self.context.inputs.clone()));
        contexts.insert("vars", Value::Object(Object::new()));
        contexts.insert("needs", Value::Object(needs));
        contexts
    }

    fn strategy(&self, job: &Job, contexts: &Object) -> Result<Strategy, String> {
        let options = ParseOptions::with_named_values(JOB_IF_CONTEXTS).status_functions(false).hash_files(false);
        let Some(strategy) = &job.strategy else {
            return Ok(Strategy { fail_fast: true, max_parallel: None, combinations: vec![None] });
        };
        let fail_fast = match &strategy.fail_fast {
            None => true,
            Some(value) => evaluate_value(&value.value, &options, contexts)
                .map_err(|error| format!("strategy.fail-fast: {error}"))?
                .is_truthy(),
        };
        let max_parallel = match &strategy.max_parallel {
            None => None,
            Some(value) => {
                let value = evaluate_value(&value.value, &options, contexts)
                    .map_err(|error| format!("strategy.max-parallel: {error}"))?;
                Some(positive_integer(&value).ok_or_else(|| {
                    format!("strategy.max-parallel must be a positive whole number, not {}", value.to_display_string())
                })?)
            }
        };
        let combinations = match &strategy.matrix {
            None => vec![None],
            Some(literal @ Matrix::Literal(_)) => baton_workflow::expand_matrix(literal)
                .map_err(|error| format!("strategy.matrix: {}; {}", error.message, error.hint))?
                .into_iter()
                .map(Some)
                .collect(),
            Some(Matrix::Deferred(value)) => {
                matrix::evaluate(&value.value, &options, contexts)?.into_iter().map(Some).collect()
            }
        };
        Ok(Strategy { fail_fast, max_parallel, combinations })
    }

    /// The Baton job spec of one leg and its `continue-on-error`.
    fn leg_spec(&self, state: &RunState, index: usize, leg_index: usize) -> Result<(Box<api::JobSpec>, bool), String> {
        let record = &state.jobs[index];
        let job = self.workflow_job(&record.key).ok_or("the job is not in the run's workflow")?;
        let workflow = self.context.workflow;
        let leg = &record.legs[leg_index];
        let mut contexts = self.base_contexts(state, index);
        let matrix = match &leg.matrix {
            Some(matrix) => Value::from(matrix),
            None => Value::Object(Object::new()),
        };
        contexts.insert("matrix", matrix);
        let mut strategy = Object::new();
        strategy.insert("fail-fast", Value::Bool(record.fail_fast));
        strategy.insert("job-index", Value::Number(leg_index as f64));
        strategy.insert("job-total", Value::Number(record.legs.len() as f64));
        strategy.insert(
            "max-parallel",
            Value::Number(record.max_parallel.map_or(record.legs.len(), |n| n as usize) as f64),
        );
        contexts.insert("strategy", Value::Object(strategy));
        let options = ParseOptions::with_named_values(LEG_CONTEXTS).status_functions(false).hash_files(false);
        let evaluate = |what: &str, value: &Value| {
            evaluate_value(value, &options, &contexts).map_err(|error| format!("{what}: {error}"))
        };

        let mut labels = Vec::new();
        if !self.context.any_runner {
            for label in &job.runs_on.labels {
                match evaluate("runs-on", &Value::String(label.value.clone()))? {
                    Value::Array(items) => labels.extend(items.iter().map(Value::to_display_string)),
                    other => labels.push(other.to_display_string()),
                }
            }
        }
        let timeout_minutes = match &job.timeout_minutes {
            None => DEFAULT_TIMEOUT_MINUTES,
            Some(value) => {
                let value = evaluate("timeout-minutes", &value.value)?;
                positive_integer(&value).ok_or_else(|| {
                    format!("timeout-minutes must be a positive whole number, not {}", value.to_display_string())
                })?
            }
        };
        let continue_on_error = match &job.continue_on_error {
            None => false,
            Some(value) => evaluate("continue-on-error", &value.value)?.is_truthy(),
        };
        let mut env = BTreeMap::new();
        for (name, value) in workflow.env.iter().chain(job.env.iter()) {
            env.insert(name.clone(), value.value.clone());
        }
        let default_shell = job.defaults.shell.as_ref().or(workflow.defaults.shell.as_ref());
        let default_dir = job.defaults.working_directory.as_ref().or(workflow.defaults.working_directory.as_ref());
        let mut steps = Vec::with_capacity(job.steps.len());
        for (number, step) in job.steps.iter().enumerate() {
            let label = match &step.id {
                Some(id) => format!("step `{}`", id.value),
                None => format!("step {}", number + 1),
            };
            let name = step.name.as_ref().map(|name| {
                // A name may use contexts only the runner has; then it is shown as written.
                match evaluate("name", &Value::String(name.value.clone())) {
                    Ok(value) => value.to_display_string(),
                    Err(_) => name.value.clone(),
                }
            });
            let continue_on_error = match &step.continue_on_error {
                None => false,
                Some(value) => evaluate(&format!("{label} continue-on-error"), &value.value)?.is_truthy(),
            };
            let timeout_minutes = match &step.timeout_minutes {
                None => None,
                Some(value) => {
                    let value = evaluate(&format!("{label} timeout-minutes"), &value.value)?;
                    Some(positive_integer(&value).ok_or_else(|| {
                        format!(
                            "{label} timeout-minutes must be a positive whole number, not {}",
                            value.to_display_string()
                        )
                    })?)
                }
            };
            steps.push(api::StepSpec {
                id: step.id.as_ref().map(|id| id.value.clone()),
                name,
                run: step.run.value.clone(),
                shell: step.shell.as_ref().or(default_shell).map(|shell| shell.value.clone()),
                env: step.env.iter().map(|(name, value)| (name.clone(), value.value.clone())).collect(),
                working_directory: step.working_directory.as_ref().or(default_dir).map(|dir| dir.value.clone()),
                continue_on_error,
                timeout_minutes,
                condition: step.condition.as_ref().map(|condition| condition.value.clone()),
            });
        }
        let mut job_context = Object::new();
        job_context.insert("status", Value::from("success"));
        contexts.insert("job", Value::Object(job_context));
        let spec = api::JobSpec {
            name: leg.name.clone(),
            labels,
            env,
            steps,
            timeout_minutes: Some(timeout_minutes),
            max_attempts: None,
            contexts: Some(serde_json::Value::from(&Value::Object(contexts))),
            outputs: Some(job.outputs.iter().map(|(name, value)| (name.clone(), value.value.clone())).collect()),
        };
        Ok((Box::new(spec), continue_on_error))
    }
}

struct Strategy {
    fail_fast: bool,
    max_parallel: Option<u32>,
    combinations: Vec<Option<Object>>,
}

/// The status the status functions of job `index`'s `if` report: cancelled once the run is;
/// failure when a job it needs, directly or not, failed; success when every job it needs
/// succeeded; otherwise blocked (a needed job was skipped or cancelled).
fn status_for(state: &RunState, index: usize) -> JobStatus {
    if state.cancelled {
        return JobStatus::Cancelled;
    }
    let mut ancestors = BTreeSet::new();
    let mut pending: Vec<&str> = state.jobs[index].needs.iter().map(String::as_str).collect();
    while let Some(key) = pending.pop() {
        if ancestors.insert(key)
            && let Some(job) = state.jobs.iter().find(|job| job.key == key)
        {
            pending.extend(job.needs.iter().map(String::as_str));
        }
    }
    let result_of = |key: &str| state.jobs.iter().find(|job| job.key == key).and_then(|job| job.result);
    if ancestors.iter().any(|key| result_of(key) == Some(Outcome::Failure)) {
        JobStatus::Failure
    } else if state.jobs[index].needs.iter().all(|key| result_of(key) == Some(Outcome::Success)) {
        JobStatus::Success
    } else {
        JobStatus::Blocked
    }
}

/// Completes a job that ran no leg.
fn complete(job: &mut WorkflowJob, outcome: Outcome, message: String) {
    job.phase = Phase::Completed;
    job.result = Some(outcome);
    job.message = Some(message);
}

/// Completes a job whose legs all ended: failure if a leg failed without `continue-on-error`,
/// else cancelled if a leg was cancelled, else success.
fn finish_job(job: &mut WorkflowJob) {
    let failed = job.legs.iter().any(|leg| leg.result == Some(Outcome::Failure) && !leg.continue_on_error);
    let cancelled = job.legs.iter().any(|leg| leg.result == Some(Outcome::Cancelled));
    job.phase = Phase::Completed;
    job.result = Some(if failed {
        Outcome::Failure
    } else if cancelled {
        Outcome::Cancelled
    } else {
        Outcome::Success
    });
    if job.message.is_none()
        && let Some(leg) = job.legs.iter().find(|leg| leg.message.is_some())
    {
        job.message = leg.message.clone();
    }
}

/// The display name of a leg: the job's name (evaluated when it uses the matrix), or the job's
/// name followed by the matrix values, as GitHub shows them.
fn leg_name(job: &Job, matrix: Option<&Object>) -> String {
    let base = job.name.as_ref().map(|name| name.value.as_str()).unwrap_or(&job.id);
    let Some(matrix) = matrix else { return base.to_owned() };
    if base.contains("${{") {
        let mut contexts = Object::new();
        contexts.insert("matrix", Value::Object(matrix.clone()));
        let options = ParseOptions::with_named_values(["matrix"]).status_functions(false).hash_files(false);
        if let Ok(name) = baton_expr::evaluate_template_to_string(base, &options, &contexts, &baton_expr::NoHost) {
            return name;
        }
        return base.to_owned();
    }
    let values: Vec<String> = matrix
        .values()
        .map(|value| match value {
            Value::Object(_) | Value::Array(_) => serde_json::Value::from(value).to_string(),
            scalar => scalar.to_display_string(),
        })
        .collect();
    format!("{base} ({})", values.join(", "))
}

/// Evaluates a workflow value: strings are templates; other values are taken as they are.
fn evaluate_value(value: &Value, options: &ParseOptions, contexts: &Object) -> Result<Value, String> {
    match value {
        Value::String(text) if text.contains("${{") => {
            baton_expr::evaluate_template(text, options, contexts, &baton_expr::NoHost)
                .map_err(|error| error.to_string())
        }
        other => Ok(other.clone()),
    }
}

fn positive_integer(value: &Value) -> Option<u32> {
    let number = match value {
        Value::Number(number) => *number,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (number >= 1.0 && number.fract() == 0.0 && number <= f64::from(u32::MAX)).then_some(number as u32)
}

/// Answers status functions with a fixed status; `hashFiles` is not available on the server.
struct StatusHost(JobStatus);

impl Host for StatusHost {
    fn hash_files(&self, _patterns: &[String]) -> Result<String, String> {
        Err("hashFiles() runs on the runner, in the job's workspace; it cannot be used here".into())
    }

    fn status(&self) -> JobStatus {
        self.0
    }
}
