//! The expression contexts of a job's steps and their evaluation, as GitHub Actions does it.
//!
//! The job's spec carries the contexts known before it starts (`github`, `inputs`, `matrix`, ...);
//! the worker adds `secrets`, `runner`, `github.workspace`, `job.status`, `env` and `steps`.
//! The job-level `env` is evaluated once, at the start; a step's `env`, `if`, `run`, `shell` and
//! `working-directory` just before the step; the job's `outputs` at its end. Everything here is
//! pure apart from `hashFiles`, which reads the workspace, so it can be tested on its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use baton_api as api;
use baton_expr::{ExpressionError, Host, JobStatus, Object, ParseOptions, Value, WORKFLOW_CONTEXT_NAMES};

use super::{env, hash_files};

/// A template or condition that could not be evaluated.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {error}")]
pub struct EvaluationError {
    /// Which value failed, for example `` the `run` template ``.
    pub what: String,
    /// Why.
    #[source]
    pub error: Box<ExpressionError>,
}

impl EvaluationError {
    fn new(what: String, error: ExpressionError) -> EvaluationError {
        EvaluationError { what, error: Box::new(error) }
    }
}

/// How a step ended, as the `steps` context spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl StepOutcome {
    /// The word GitHub uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Success => "success",
            StepOutcome::Failure => "failure",
            StepOutcome::Cancelled => "cancelled",
            StepOutcome::Skipped => "skipped",
        }
    }

    /// The conclusion of a step with this outcome: continue-on-error turns a failure into a success.
    pub fn conclusion(self, continue_on_error: bool) -> StepOutcome {
        match self {
            StepOutcome::Failure if continue_on_error => StepOutcome::Success,
            other => other,
        }
    }
}

/// The `steps.<id>` entry of a step that ran or was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Its `GITHUB_OUTPUT` values.
    pub outputs: BTreeMap<String, String>,
    /// Before continue-on-error.
    pub outcome: StepOutcome,
    /// After continue-on-error.
    pub conclusion: StepOutcome,
}

/// The runner facts of the `runner` context.
#[derive(Debug, Clone)]
pub struct RunnerFacts {
    pub name: String,
    pub workspace: PathBuf,
    pub temp: PathBuf,
}

/// A step's templates, evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInputs {
    /// The step's own `env`, evaluated.
    pub env: BTreeMap<String, String>,
    pub run: String,
    pub shell: Option<String>,
    pub working_directory: Option<String>,
}

/// The `hashFiles` and status functions of a job's expressions.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceHost<'a> {
    pub workspace: &'a Path,
    pub status: JobStatus,
}

impl Host for WorkspaceHost<'_> {
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        hash_files::hash_files(self.workspace, patterns)
    }

    fn status(&self) -> JobStatus {
        self.status
    }
}

/// The job status the status functions see: cancelled wins over failed.
pub fn job_status(failed: bool, cancelled: bool) -> JobStatus {
    if cancelled {
        JobStatus::Cancelled
    } else if failed {
        JobStatus::Failure
    } else {
        JobStatus::Success
    }
}

fn status_word(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Success => "success",
        JobStatus::Failure => "failure",
        JobStatus::Cancelled => "cancelled",
        // Not a state of a running job; reported as GitHub reports a job that did not succeed.
        JobStatus::Blocked => "failure",
    }
}

/// Options of templates outside `if:` (step `env`, `run`, `shell`, `working-directory`, job outputs).
fn template_options() -> ParseOptions {
    ParseOptions::default().status_functions(false)
}

/// Options of `if:` conditions: every context, the status functions and `hashFiles`.
fn condition_options() -> ParseOptions {
    ParseOptions::default()
}

/// Options of the job-level `env`: evaluated before any step, so without `env`, `steps` and `hashFiles`.
fn job_env_options() -> ParseOptions {
    ParseOptions::with_named_values(WORKFLOW_CONTEXT_NAMES.into_iter().filter(|name| !matches!(*name, "env" | "steps")))
        .status_functions(false)
        .hash_files(false)
}

/// Inserts `entries` into the object under `key`, keeping what is there when it is an object.
fn merge_object(contexts: &mut Object, key: &str, entries: Vec<(&str, Value)>) {
    let mut object = match contexts.get(key) {
        Some(Value::Object(existing)) => existing.clone(),
        _ => Object::new(),
    };
    for (name, value) in entries {
        object.insert(name, value);
    }
    contexts.insert(key, Value::Object(object));
}

fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(map.iter().map(|(name, value)| (name.clone(), Value::from(value.as_str()))).collect())
}

/// Every context of one job, except what changes with each step (`job.status`, `env`).
#[derive(Debug, Clone)]
pub struct JobContexts {
    /// The given contexts with `secrets`, `runner` and `github.workspace`.
    base: Object,
    /// The job-level `env`, evaluated.
    job_env: BTreeMap<String, String>,
    /// `steps`, by id, in the order the steps ran.
    steps: Vec<(String, StepRecord)>,
    workspace: PathBuf,
}

impl JobContexts {
    /// The contexts of a job from the contexts its spec carries (a JSON object; anything else is
    /// an error and nothing of it is used), its secrets and the runner.
    pub fn new(
        given: Option<&serde_json::Value>,
        secrets: &BTreeMap<String, String>,
        runner: &RunnerFacts,
    ) -> (JobContexts, Option<String>) {
        let (mut base, problem) = match given {
            None | Some(serde_json::Value::Null) => (Object::new(), None),
            Some(json @ serde_json::Value::Object(_)) => match Value::from(json) {
                Value::Object(object) => (object, None),
                _ => (Object::new(), None),
            },
            Some(_) => {
                (Object::new(), Some("the job's expression contexts are not a JSON object; they are ignored".into()))
            }
        };
        base.insert("secrets", string_map(secrets));
        let path = |path: &Path| Value::from(path.display().to_string());
        merge_object(
            &mut base,
            "runner",
            vec![
                ("name", Value::from(runner.name.as_str())),
                ("os", Value::from(env::runner_os())),
                ("arch", Value::from(env::runner_arch())),
                ("temp", path(&runner.temp)),
            ],
        );
        merge_object(&mut base, "github", vec![("workspace", path(&runner.workspace))]);
        let contexts =
            JobContexts { base, job_env: BTreeMap::new(), steps: Vec::new(), workspace: runner.workspace.clone() };
        (contexts, problem)
    }

    /// A host for the expressions of a job whose status is `status`.
    pub fn host(&self, status: JobStatus) -> WorkspaceHost<'_> {
        WorkspaceHost { workspace: &self.workspace, status }
    }

    /// The job-level `env`, evaluated.
    pub fn job_env(&self) -> &BTreeMap<String, String> {
        &self.job_env
    }

    /// The `steps` context so far.
    pub fn steps(&self) -> &[(String, StepRecord)] {
        &self.steps
    }

    /// Evaluates the job-level `env`, in key order, with the contexts known before the job (not
    /// `env` and `steps`). A value that fails is left out and its error returned.
    pub fn evaluate_job_env(&mut self, templates: &BTreeMap<String, String>) -> Vec<EvaluationError> {
        let contexts = self.object(JobStatus::Success, None, false);
        let host = self.host(JobStatus::Success);
        let options = job_env_options();
        let mut evaluated = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, template) in templates {
            match baton_expr::evaluate_template_to_string(template, &options, &contexts, &host) {
                Ok(value) => {
                    evaluated.insert(name.clone(), value);
                }
                Err(error) => errors.push(EvaluationError::new(format!("the job's `env.{name}`"), error)),
            }
        }
        self.job_env = evaluated;
        errors
    }

    /// Records a step that ran or was skipped; steps without an id are not in the context.
    pub fn record_step(&mut self, id: Option<&str>, record: StepRecord) {
        let Some(id) = id else { return };
        match self.steps.iter_mut().find(|(existing, _)| existing == id) {
            Some(slot) => slot.1 = record,
            None => self.steps.push((id.to_string(), record)),
        }
    }

    /// The contexts for an expression: the job's, `job.status`, `env` (when given) and `steps`
    /// (when asked for).
    pub fn object(&self, status: JobStatus, env: Option<&BTreeMap<String, String>>, steps: bool) -> Object {
        let mut contexts = self.base.clone();
        merge_object(&mut contexts, "job", vec![("status", Value::from(status_word(status)))]);
        if let Some(env) = env {
            contexts.insert("env", string_map(env));
        }
        if steps {
            let mut object = Object::new();
            for (id, record) in &self.steps {
                let entry: Object = [
                    ("outputs", string_map(&record.outputs)),
                    ("outcome", Value::from(record.outcome.as_str())),
                    ("conclusion", Value::from(record.conclusion.as_str())),
                ]
                .into_iter()
                .collect();
                object.insert(id.clone(), Value::Object(entry));
            }
            contexts.insert("steps", Value::Object(object));
        }
        contexts
    }

    /// The `env` context of a step before its own `env`: the job's, then `GITHUB_ENV` exports.
    fn env_before_step(&self, exported: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = self.job_env.clone();
        env.extend(exported.iter().map(|(name, value)| (name.clone(), value.clone())));
        env
    }

    /// Evaluates a step's `if:` (empty: `success()`).
    pub fn condition(
        &self,
        condition: Option<&str>,
        exported: &BTreeMap<String, String>,
        status: JobStatus,
    ) -> Result<bool, EvaluationError> {
        let env = self.env_before_step(exported);
        let contexts = self.object(status, Some(&env), true);
        baton_expr::evaluate_if_condition(condition.unwrap_or(""), &condition_options(), &contexts, &self.host(status))
            .map_err(|error| EvaluationError::new("the `if` condition".into(), error))
    }

    /// Evaluates a step's `env`, then its `run`, `shell` and `working-directory` with that `env`.
    pub fn step_inputs(
        &self,
        step: &api::StepSpec,
        exported: &BTreeMap<String, String>,
        status: JobStatus,
    ) -> Result<StepInputs, EvaluationError> {
        let options = template_options();
        let host = self.host(status);
        let mut env = self.env_before_step(exported);
        let contexts = self.object(status, Some(&env), true);
        let mut step_env = BTreeMap::new();
        for (name, template) in &step.env {
            let value = baton_expr::evaluate_template_to_string(template, &options, &contexts, &host)
                .map_err(|error| EvaluationError::new(format!("the step's `env.{name}`"), error))?;
            step_env.insert(name.clone(), value);
        }
        env.extend(step_env.iter().map(|(name, value)| (name.clone(), value.clone())));
        let contexts = self.object(status, Some(&env), true);
        let evaluate = |what: &str, template: &str| {
            baton_expr::evaluate_template_to_string(template, &options, &contexts, &host)
                .map_err(|error| EvaluationError::new(format!("the `{what}` template"), error))
        };
        let run = evaluate("run", &step.run)?;
        let shell = step.shell.as_deref().map(|shell| evaluate("shell", shell)).transpose()?;
        let working_directory =
            step.working_directory.as_deref().map(|dir| evaluate("working-directory", dir)).transpose()?;
        Ok(StepInputs { env: step_env, run, shell, working_directory })
    }

    /// Evaluates the job's `outputs:` with the final contexts. An output that fails is left out
    /// and its error returned.
    pub fn job_outputs(
        &self,
        templates: &BTreeMap<String, String>,
        exported: &BTreeMap<String, String>,
        status: JobStatus,
    ) -> (BTreeMap<String, String>, Vec<EvaluationError>) {
        let env = self.env_before_step(exported);
        let contexts = self.object(status, Some(&env), true);
        let host = self.host(status);
        let options = template_options();
        let mut outputs = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, template) in templates {
            match baton_expr::evaluate_template_to_string(template, &options, &contexts, &host) {
                Ok(value) => {
                    outputs.insert(name.clone(), value);
                }
                Err(error) => errors.push(EvaluationError::new(format!("the job output `{name}`"), error)),
            }
        }
        (outputs, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    fn job(given: serde_json::Value, secrets: &[(&str, &str)]) -> JobContexts {
        let runner = RunnerFacts {
            name: "runner-1".into(),
            workspace: PathBuf::from("/work/1/1/workspace"),
            temp: PathBuf::from("/work/1/1/temp"),
        };
        let (contexts, problem) = JobContexts::new(Some(&given), &map(secrets), &runner);
        assert_eq!(problem, None);
        contexts
    }

    fn step(run: &str, env: &[(&str, &str)]) -> api::StepSpec {
        api::StepSpec {
            id: None,
            name: None,
            run: run.into(),
            shell: None,
            env: map(env),
            working_directory: None,
            continue_on_error: false,
            timeout_minutes: None,
            condition: None,
        }
    }

    fn record(outputs: &[(&str, &str)], outcome: StepOutcome, continue_on_error: bool) -> StepRecord {
        StepRecord { outputs: map(outputs), outcome, conclusion: outcome.conclusion(continue_on_error) }
    }

    #[test]
    fn conditions_see_status_and_steps() {
        let mut contexts = job(serde_json::json!({}), &[]);
        contexts.record_step(Some("a"), record(&[("x", "1")], StepOutcome::Success, false));
        // A failure that continue-on-error let through: outcome failure, conclusion success.
        contexts.record_step(Some("flaky"), record(&[], StepOutcome::Failure, true));
        contexts.record_step(Some("skipped"), record(&[], StepOutcome::Skipped, false));
        contexts.record_step(None, record(&[("x", "2")], StepOutcome::Success, false));
        use JobStatus::{Cancelled, Failure, Success};
        let cases: &[(Option<&str>, JobStatus, bool)] = &[
            (None, Success, true),
            (None, Failure, false),
            (None, Cancelled, false),
            (Some("failure()"), Failure, true),
            (Some("failure()"), Success, false),
            (Some("failure()"), Cancelled, false),
            (Some("always()"), Cancelled, true),
            (Some("always()"), Failure, true),
            (Some("cancelled()"), Cancelled, true),
            (Some("cancelled()"), Failure, false),
            (Some("success() && steps.a.outputs.x == '1'"), Success, true),
            (Some("success() && steps.a.outputs.x == '1'"), Failure, false),
            (Some("success() && steps.a.outputs.x == '2'"), Success, false),
            (Some("${{ steps.flaky.outcome == 'failure' }}"), Success, true),
            (Some("steps.flaky.conclusion == 'success'"), Success, true),
            (Some("steps.skipped.outcome == 'skipped' && steps.skipped.conclusion == 'skipped'"), Success, true),
            // A missing step reads as null, which GitHub's `==` equates with ''.
            (Some("steps.missing.outcome == ''"), Success, true),
            (Some("steps.missing.outcome == 'success'"), Success, false),
            (Some("always() && job.status == 'failure'"), Failure, true),
            (Some("always() && job.status == 'cancelled'"), Cancelled, true),
            (Some("steps.a.outputs.x"), Success, true),
        ];
        for (condition, status, expected) in cases {
            let result = contexts.condition(*condition, &BTreeMap::new(), *status);
            assert_eq!(result.expect("evaluates"), *expected, "if: {condition:?} with {status:?}");
        }
    }

    #[test]
    fn a_condition_that_does_not_parse_is_an_error() {
        let contexts = job(serde_json::json!({}), &[]);
        for condition in ["steps.a.outputs.x ==", "nope.x", "fromJSON('{')"] {
            let error = contexts.condition(Some(condition), &BTreeMap::new(), JobStatus::Success).expect_err(condition);
            assert!(error.to_string().starts_with("the `if` condition: "), "{condition}: {error}");
        }
    }

    #[test]
    fn env_is_evaluated_in_order_job_then_exports_then_step() {
        let mut contexts =
            job(serde_json::json!({"matrix": {"os": "linux"}, "inputs": {"level": 3}, "github": {"ref": "main"}}), &[]);
        let errors = contexts.evaluate_job_env(&map(&[
            ("OS", "${{ matrix.os }}"),
            ("LEVEL", "level-${{ inputs.level }}"),
            ("PLAIN", "as written"),
            ("REF", "${{ github.ref }}@${{ github.workspace }}"),
            ("SELF", "${{ env.OS }}"),
        ]));
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].starts_with("the job's `env.SELF`: "), "{messages:?}");
        assert_eq!(
            contexts.job_env(),
            &map(&[
                ("LEVEL", "level-3"),
                ("OS", "linux"),
                ("PLAIN", "as written"),
                ("REF", "main@/work/1/1/workspace")
            ])
        );

        let exported = map(&[("EXPORTED", "from GITHUB_ENV"), ("PLAIN", "overridden")]);
        let step = step(
            "echo ${{ env.MESSAGE }} ${{ env.PLAIN }} [${{ env.SIBLING }}]",
            &[("MESSAGE", "${{ env.OS }}/${{ env.LEVEL }}/${{ env.EXPORTED }}"), ("SIBLING", "${{ env.MESSAGE }}")],
        );
        let inputs = contexts.step_inputs(&step, &exported, JobStatus::Success).expect("evaluates");
        // A step's env values see the job's env and the exports, not each other.
        assert_eq!(inputs.env, map(&[("MESSAGE", "linux/level-3/from GITHUB_ENV"), ("SIBLING", "")]));
        assert_eq!(inputs.run, "echo linux/level-3/from GITHUB_ENV overridden []");
    }

    #[test]
    fn step_templates_are_evaluated_with_github_conversions() {
        let mut contexts =
            job(serde_json::json!({"matrix": {"n": 2, "dir": "sub", "shell": "sh"}}), &[("TOKEN", "t0k")]);
        contexts.record_step(Some("a"), record(&[("x", "1")], StepOutcome::Success, false));
        let mut step = step("n=${{ matrix.n }} ok=${{ true }} x=${{ steps.a.outputs.x }} s=${{ secrets.TOKEN }}", &[]);
        step.shell = Some("${{ matrix.shell }}".into());
        step.working_directory = Some("${{ matrix.dir }}/${{ runner.os }}".into());
        let inputs = contexts.step_inputs(&step, &BTreeMap::new(), JobStatus::Success).expect("evaluates");
        assert_eq!(inputs.run, "n=2 ok=true x=1 s=t0k");
        assert_eq!(inputs.shell.as_deref(), Some("sh"));
        assert_eq!(inputs.working_directory.as_deref(), Some("sub/Linux"));

        let bad = self::step("echo ${{ matrix.n ) }}", &[]);
        let error = contexts.step_inputs(&bad, &BTreeMap::new(), JobStatus::Success).expect_err("does not parse");
        assert!(error.to_string().starts_with("the `run` template: "), "{error}");
        let bad_env = self::step("true", &[("A", "${{ unknown.context }}")]);
        let error = contexts.step_inputs(&bad_env, &BTreeMap::new(), JobStatus::Success).expect_err("unknown name");
        assert!(error.to_string().starts_with("the step's `env.A`: "), "{error}");
        let mut bad_dir = self::step("true", &[]);
        bad_dir.working_directory = Some("${{ '".into());
        let error = contexts.step_inputs(&bad_dir, &BTreeMap::new(), JobStatus::Success).expect_err("unclosed");
        assert!(error.to_string().starts_with("the `working-directory` template: "), "{error}");
    }

    #[test]
    fn runner_github_job_and_secrets_contexts() {
        let contexts = job(
            serde_json::json!({"github": {"repository": "o/r"}, "job": {"container": null}, "runner": {"tool_cache": "/t"}}),
            &[("TOKEN", "abc")],
        );
        let object = contexts.object(JobStatus::Failure, None, false);
        let json = serde_json::Value::from(&Value::Object(object));
        let expected = serde_json::json!({
            "github": {"repository": "o/r", "workspace": "/work/1/1/workspace"},
            "job": {"container": null, "status": "failure"},
            "runner": {
                "tool_cache": "/t",
                "name": "runner-1",
                "os": env::runner_os(),
                "arch": env::runner_arch(),
                "temp": "/work/1/1/temp",
            },
            "secrets": {"TOKEN": "abc"},
        });
        assert_eq!(json, expected);
        let (_, problem) = JobContexts::new(
            Some(&serde_json::json!([1])),
            &BTreeMap::new(),
            &RunnerFacts { name: "r".into(), workspace: PathBuf::new(), temp: PathBuf::new() },
        );
        assert!(problem.is_some());
    }

    #[test]
    fn job_outputs_come_from_the_final_contexts() {
        let mut contexts = job(serde_json::json!({"matrix": {"n": 2}}), &[]);
        contexts.record_step(Some("a"), record(&[("x", "1")], StepOutcome::Success, false));
        contexts.record_step(Some("b"), record(&[], StepOutcome::Failure, true));
        let templates = map(&[
            ("x", "${{ steps.a.outputs.x }}"),
            ("b", "${{ steps.b.outcome }}/${{ steps.b.conclusion }}"),
            ("n", "${{ matrix.n }}"),
            ("missing", "${{ steps.zzz.outputs.x }}"),
            ("object", "${{ steps.a.outputs }}"),
            ("bad", "${{ fromJSON('{') }}"),
        ]);
        let (outputs, errors) = contexts.job_outputs(&templates, &BTreeMap::new(), JobStatus::Success);
        assert_eq!(
            outputs,
            map(&[("b", "failure/success"), ("missing", ""), ("n", "2"), ("object", "Object"), ("x", "1")])
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().starts_with("the job output `bad`: "), "{}", errors[0]);
    }
}
