//! Workflow runs: submit, advance when a leg ends, cancel, read.
//!
//! A run's planner state (see `baton-engine`) lives in its row and changes only in the same
//! transaction as the Baton jobs it describes: a leg's completion, the dependents it unblocks,
//! fail-fast cancels and the run's conclusion commit together or not at all.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use baton_core::{
    Attempt, AttemptNo, EventKind, Job, JobConclusion, JobId, JobState, Run, RunId, Timestamp, dispatch, limits,
};
use baton_engine::{Action, Outcome, Planner, RunContext, RunState};
use baton_expr::{Object, Value};
use baton_workflow::Workflow;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops::{Effects, JobView, Store, assign, cancel_in_tx, emit, get_job, not_found};
use crate::tx::Tx;

/// Secrets one run may carry, at most.
pub const RUN_SECRETS_MAX: usize = 100;
/// Largest secret value, in bytes (GitHub's limit is 48 KiB).
pub const SECRET_BYTES_MAX: usize = 48 * 1024;
/// Runs listed per page, at most.
pub const RUNS_PAGE_MAX: usize = 100;
/// Parsed workflows kept in memory.
const WORKFLOW_CACHE_MAX: usize = 256;

/// A workflow run to submit. The caller parsed and validated the workflow and typed the inputs.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub file_name: String,
    pub text: String,
    pub workflow: Arc<Workflow>,
    /// The `inputs` context, from `baton_engine::typed_inputs`.
    pub inputs: Object,
    pub secrets: BTreeMap<String, String>,
    /// Run only this job and the jobs it needs.
    pub only: Option<String>,
    /// Ignore `runs-on`: any runner may take the run's jobs.
    pub any_runner: bool,
}

/// A run with its planner state and the Baton jobs of its legs, read in one snapshot.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: Run,
    pub state: RunState,
    pub jobs: BTreeMap<JobId, JobView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RunOptions {
    #[serde(default)]
    only: Option<String>,
    #[serde(default)]
    any_runner: bool,
}

/// Parsed workflows by run. The workflow text of a run never changes, so an entry never goes
/// stale; it only saves parsing the text again.
#[derive(Debug, Default)]
pub struct WorkflowCache {
    entries: Mutex<HashMap<RunId, Arc<Workflow>>>,
}

impl WorkflowCache {
    fn get(&self, run: &Run) -> Result<Arc<Workflow>> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(workflow) = entries.get(&run.id) {
            return Ok(workflow.clone());
        }
        let workflow = baton_workflow::parse_workflow(&run.file_name, &run.workflow).map_err(|errors| {
            crate::StoreError::Corrupt(format!(
                "run {}: its stored workflow no longer parses: {}",
                run.id,
                errors.first().map(ToString::to_string).unwrap_or_default()
            ))
        })?;
        let workflow = Arc::new(workflow);
        self.put(run.id, workflow.clone(), &mut entries);
        Ok(workflow)
    }

    fn insert(&self, id: RunId, workflow: Arc<Workflow>) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.put(id, workflow, &mut entries);
    }

    fn put(&self, id: RunId, workflow: Arc<Workflow>, entries: &mut HashMap<RunId, Arc<Workflow>>) {
        if entries.len() >= WORKFLOW_CACHE_MAX {
            // Dropping everything is simple and rare; entries are rebuilt from the stored text.
            entries.clear();
        }
        entries.insert(id, workflow);
    }
}

impl Store {
    /// Submits a run: stores it, starts the jobs that need nothing, and offers them at once if
    /// runners can take them.
    pub fn submit_run(&self, new: &NewRun, now: Timestamp) -> Result<RunView> {
        check_secrets(&new.secrets)?;
        let options = RunOptions { only: new.only.clone(), any_runner: new.any_runner };
        let name = new.workflow.name.as_ref().map(|name| name.value.clone()).unwrap_or_else(|| new.file_name.clone());
        let inputs_json = serde_json::to_string(&Value::Object(new.inputs.clone())).map_err(json_error)?;
        let view = self.write(|tx, fx| {
            let mut run = Run {
                id: RunId(0),
                name: name.clone(),
                file_name: new.file_name.clone(),
                workflow: new.text.clone(),
                inputs: inputs_json.clone(),
                secrets: Some(serde_json::to_string(&new.secrets).map_err(json_error)?),
                options: serde_json::to_string(&options).map_err(json_error)?,
                state: String::new(),
                cancel_requested: false,
                conclusion: None,
                created_at: now,
                completed_at: None,
            };
            run.id = tx.run_insert(&run)?;
            let planner = Planner::new(RunContext {
                run_id: run.id.0,
                workflow: &new.workflow,
                inputs: &new.inputs,
                any_runner: new.any_runner,
            });
            let mut state = planner
                .start(new.only.as_deref())
                .map_err(|error| Error::Invalid { field: "job", message: error.to_string() })?;
            emit(tx, fx, now, EventKind::RunQueued, None, None, None, serde_json::json!({ "run_id": run.id.0 }))?;
            let actions = planner.advance(&mut state);
            drive(self, tx, fx, &planner, &mut run, &mut state, actions, now)?;
            read_view(tx, run.id)
        })?;
        self.workflows.insert(view.run.id, new.workflow.clone());
        Ok(view)
    }

    /// Cancels a run: its running legs are told to stop, its waiting jobs see `cancelled()`.
    /// Cancelling a completed or cancelled run changes nothing.
    pub fn cancel_run(&self, run_id: RunId, now: Timestamp) -> Result<RunView> {
        self.write(|tx, fx| {
            let mut run = tx.run_get(run_id)?.ok_or_else(|| not_found("run", run_id))?;
            if run.completed_at.is_some() || run.cancel_requested {
                return read_view(tx, run_id);
            }
            run.cancel_requested = true;
            let stored = StoredRun::load(self, &run)?;
            let planner = stored.planner(&run);
            let mut state = parse_state(&run)?;
            emit(
                tx,
                fx,
                now,
                EventKind::RunCancelRequested,
                None,
                None,
                None,
                serde_json::json!({ "run_id": run_id.0 }),
            )?;
            let actions = planner.cancel(&mut state);
            drive(self, tx, fx, &planner, &mut run, &mut state, actions, now)?;
            read_view(tx, run_id)
        })
    }

    pub fn run_view(&self, run_id: RunId) -> Result<RunView> {
        self.read(|tx| read_view(tx, run_id))
    }

    /// Runs with id below `before`, newest first.
    pub fn runs(&self, before: RunId, limit: usize) -> Result<Vec<RunView>> {
        self.read(|tx| {
            let runs = tx.runs_page(before, limit.min(RUNS_PAGE_MAX))?;
            runs.into_iter().map(|run| read_view(tx, run.id)).collect()
        })
    }
}

/// Tells job `job`'s run, if it has one, that the job ended: records the leg's result and
/// outputs, and starts, cancels or concludes whatever follows, in the caller's transaction.
pub(crate) fn after_job_finished(
    store: &Store,
    tx: &mut dyn Tx,
    fx: &mut Effects,
    job: &Job,
    outputs: &BTreeMap<String, String>,
    now: Timestamp,
) -> Result<()> {
    let Some(run_id) = job.run_id else { return Ok(()) };
    let Some(mut run) = tx.run_get(run_id)? else { return Ok(()) };
    if run.completed_at.is_some() {
        return Ok(());
    }
    let stored = StoredRun::load(store, &run)?;
    let planner = stored.planner(&run);
    let mut state = parse_state(&run)?;
    let outcome =
        Outcome::from_conclusion(&job.conclusion.map(|conclusion| conclusion.to_string()).unwrap_or_default());
    let actions = planner.leg_finished(&mut state, job.id.0, outcome, outputs);
    drive(store, tx, fx, &planner, &mut run, &mut state, actions, now)
}

/// The secrets of run `run_id`; none once the run completed.
pub(crate) fn secrets_of(tx: &mut dyn Tx, run_id: RunId) -> Result<BTreeMap<String, String>> {
    let Some(run) = tx.run_get(run_id)? else { return Ok(BTreeMap::new()) };
    match run.secrets {
        Some(text) => serde_json::from_str(&text).map_err(json_error),
        None => Ok(BTreeMap::new()),
    }
}

/// `text` with every secret of run `run_id` replaced by `***`, as the runner masks them: each
/// value, and each line of a multi-line value, longest first. A job outside a run, or a run
/// that completed (its secrets are gone), keeps its text.
pub(crate) fn redact(tx: &mut dyn Tx, run_id: Option<RunId>, text: &str) -> Result<String> {
    let Some(run_id) = run_id else { return Ok(text.to_owned()) };
    let secrets = secrets_of(tx, run_id)?;
    if secrets.is_empty() {
        return Ok(text.to_owned());
    }
    let mut values: Vec<&str> = Vec::new();
    for value in secrets.values() {
        if !value.trim().is_empty() {
            values.push(value);
        }
        if value.contains(['\r', '\n']) {
            values.extend(value.split(['\r', '\n']).map(str::trim).filter(|line| !line.is_empty()));
        }
    }
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    values.dedup();
    let mut out = text.to_owned();
    for value in values {
        if out.contains(value) {
            out = out.replace(value, "***");
        }
    }
    Ok(out)
}

/// Carries out the planner's actions, feeding back the legs that end at once (a cancelled
/// queued leg, a leg that cannot be enqueued), then stores the state and concludes the run.
#[allow(clippy::too_many_arguments)]
fn drive(
    store: &Store,
    tx: &mut dyn Tx,
    fx: &mut Effects,
    planner: &Planner<'_>,
    run: &mut Run,
    state: &mut RunState,
    actions: Vec<Action>,
    now: Timestamp,
) -> Result<()> {
    let mut queue: VecDeque<Action> = actions.into();
    let mut enqueued = false;
    while let Some(action) = queue.pop_front() {
        match action {
            Action::Enqueue { key, leg, spec } => {
                let name = leg_job_name(&key, leg, state);
                let (job_id, refused) = insert_leg(tx, fx, run.id, &name, &spec, now)?;
                state.bind(&key, leg, job_id.0);
                match refused {
                    None => enqueued = true,
                    Some(_) => queue.extend(planner.leg_finished(state, job_id.0, Outcome::Failure, &BTreeMap::new())),
                }
            }
            Action::Cancel { job_id } => match cancel_in_tx(tx, fx, JobId(job_id), now) {
                Ok(job) if job.state == JobState::Completed => {
                    let outcome = Outcome::from_conclusion(
                        &job.conclusion.map(|conclusion| conclusion.to_string()).unwrap_or_default(),
                    );
                    queue.extend(planner.leg_finished(state, job_id, outcome, &BTreeMap::new()));
                }
                Ok(_) => {}
                // Already completed another way: its own completion told the run.
                Err(Error::Conflict { .. }) => {}
                Err(error) => return Err(error),
            },
        }
    }
    if enqueued {
        assign(tx, fx, store.timeouts(), None, now)?;
    }
    if run.completed_at.is_none()
        && let Some(conclusion) = state.conclusion()
    {
        run.conclusion = Some(conclusion.to_string());
        run.completed_at = Some(now);
        // Secrets are kept only for the run's lifetime.
        run.secrets = None;
        emit(
            tx,
            fx,
            now,
            EventKind::RunCompleted,
            None,
            None,
            None,
            serde_json::json!({ "run_id": run.id.0, "conclusion": conclusion.to_string() }),
        )?;
    }
    run.state = serde_json::to_string(state).map_err(json_error)?;
    tx.run_update(run)?;
    Ok(())
}

/// Inserts the Baton job of a leg, queued. A leg whose spec breaks a limit (a label too long,
/// too many labels) is inserted as failed instead, with the reason, so the run goes on.
fn insert_leg(
    tx: &mut dyn Tx,
    fx: &mut Effects,
    run_id: RunId,
    name: &str,
    spec: &baton_api::JobSpec,
    now: Timestamp,
) -> Result<(JobId, Option<String>)> {
    let name = name.to_owned();
    let labels = dispatch::normalize_labels(&spec.labels);
    let refused = crate::ops::check_labels(&labels).err().map(|error| error.to_string());
    let spec_json = serde_json::to_string(spec).map_err(json_error)?;
    let mut job = Job::queued(name, labels.clone(), spec_json, limits::MAX_ATTEMPTS_DEFAULT, Some(run_id), now);
    job.id = tx.job_insert(&job)?;
    let mut attempt = Attempt::queued(job.id, AttemptNo::FIRST, now);
    if let Some(reason) = &refused {
        attempt.state = attempt.state.on(baton_core::AttemptEvent::Cancel)?;
        attempt.result = Some(baton_core::AttemptResult::Failure);
        attempt.reason = Some(reason.clone());
        attempt.ended_at = Some(now);
    }
    attempt.check_invariants();
    tx.attempt_insert(&attempt)?;
    emit(
        tx,
        fx,
        now,
        EventKind::JobQueued,
        Some(job.id),
        Some(AttemptNo::FIRST),
        None,
        serde_json::json!({ "labels": labels, "run_id": run_id.0 }),
    )?;
    if let Some(reason) = &refused {
        job.state = job.state.on(baton_core::JobEvent::Cancel)?;
        job.conclusion = Some(JobConclusion::Failure);
        job.reason = Some(reason.clone());
        job.completed_at = Some(now);
        tx.job_update(&job)?;
        emit(
            tx,
            fx,
            now,
            EventKind::JobCompleted,
            Some(job.id),
            Some(AttemptNo::FIRST),
            None,
            serde_json::json!({ "conclusion": "failure", "reason": reason }),
        )?;
    }
    Ok((job.id, refused))
}

/// The Baton job name of a leg: the workflow job's id, with the leg's number when it has a
/// matrix, within the characters and length job names allow. The display name with the matrix
/// values is the spec's `name`.
fn leg_job_name(key: &str, leg: usize, state: &RunState) -> String {
    let legs = state.jobs.iter().find(|job| job.key == key).map_or(1, |job| job.legs.len());
    let suffix = if legs > 1 { format!("-{}", leg + 1) } else { String::new() };
    let base: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(limits::NAME_LEN_MAX - suffix.len())
        .collect();
    format!("{base}{suffix}")
}

fn read_view(tx: &mut dyn Tx, run_id: RunId) -> Result<RunView> {
    let run = tx.run_get(run_id)?.ok_or_else(|| not_found("run", run_id))?;
    let state = parse_state(&run)?;
    let mut jobs = BTreeMap::new();
    for (_, _, job_id) in state.baton_jobs() {
        let job = get_job(tx, JobId(job_id))?;
        let attempts = tx.attempts_of_job(job.id)?;
        jobs.insert(job.id, JobView { job, attempts });
    }
    Ok(RunView { run, state, jobs })
}

/// What the planner needs of a stored run besides its state: the parsed workflow (cached),
/// the typed inputs and the options.
struct StoredRun {
    workflow: Arc<Workflow>,
    inputs: Object,
    any_runner: bool,
}

impl StoredRun {
    fn load(store: &Store, run: &Run) -> Result<StoredRun> {
        Ok(StoredRun {
            workflow: store.workflows.get(run)?,
            inputs: parse_inputs(run)?,
            any_runner: parse_options(run)?.any_runner,
        })
    }

    fn planner(&self, run: &Run) -> Planner<'_> {
        Planner::new(RunContext {
            run_id: run.id.0,
            workflow: &self.workflow,
            inputs: &self.inputs,
            any_runner: self.any_runner,
        })
    }
}

fn parse_state(run: &Run) -> Result<RunState> {
    serde_json::from_str(&run.state).map_err(json_error)
}

fn parse_inputs(run: &Run) -> Result<Object> {
    match serde_json::from_str::<Value>(&run.inputs).map_err(json_error)? {
        Value::Object(inputs) => Ok(inputs),
        _ => Ok(Object::new()),
    }
}

fn parse_options(run: &Run) -> Result<RunOptions> {
    serde_json::from_str(&run.options).map_err(json_error)
}

fn json_error(error: serde_json::Error) -> Error {
    Error::Store(crate::StoreError::Corrupt(format!("run data: {error}")))
}

fn check_secrets(secrets: &BTreeMap<String, String>) -> Result<()> {
    if secrets.len() > RUN_SECRETS_MAX {
        return Err(Error::Invalid { field: "secrets", message: format!("at most {RUN_SECRETS_MAX} secrets per run") });
    }
    for (name, value) in secrets {
        let valid_name = name.len() <= 256
            && name.chars().next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.to_ascii_uppercase().starts_with("GITHUB_");
        if !valid_name {
            return Err(Error::Invalid {
                field: "secrets",
                message: format!(
                    "secret name {name:?} is not valid: use letters, digits and `_`, not starting with a digit or GITHUB_"
                ),
            });
        }
        if value.len() > SECRET_BYTES_MAX {
            return Err(Error::Invalid {
                field: "secrets",
                message: format!("secret {name} is over {SECRET_BYTES_MAX} bytes"),
            });
        }
    }
    Ok(())
}
