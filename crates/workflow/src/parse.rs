//! Turning the positioned YAML tree into the [`Workflow`] model: key validation with "did you mean" hints,
//! "not supported yet" errors for GitHub features Baton does not run, value type checks, and checking every
//! `${{ }}` expression with the contexts GitHub allows at its place. Errors are collected, not stopped at.
//!
//! Keys accepted and ignored because they change nothing about how Baton runs a job: `run-name` (display only,
//! its expressions are still checked) and `description` at the workflow level, and unknown keys under
//! `workflow_dispatch` and inside its inputs (GitHub ignores them too). Keys GitHub supports that Baton does not
//! run yet are rejected with a "not supported yet" error naming the key: `permissions` and `concurrency` at the
//! workflow level; `permissions`, `concurrency`, `services`, `container`, `environment`, `uses`, `with`,
//! `secrets`, `snapshot` and `cancel-timeout-minutes` on jobs; `uses`, `with` and `background` on steps; and
//! `strategy` written as one expression.

use baton_expr::{Expression, Object, ParseOptions, TemplateSegment, Value, parse_if_condition, split_template};

use crate::error::{ErrorKind, Position, WorkflowError};
use crate::model::{
    DispatchInput, Env, InputType, Job, LiteralMatrix, Matrix, RunDefaults, RunsOn, Spanned, Step, Strategy, Trigger,
    Triggers, Workflow,
};
use crate::yaml::{Node, NodeData};

type Entries = [(String, Position, Node)];

/// Which expressions a value may contain, following GitHub's context availability table.
#[derive(Debug, Clone, Copy)]
enum Contexts {
    /// No `${{ }}` at all.
    None,
    /// Expressions using these context names; `hash_files` says whether `hashFiles()` is available.
    Names { names: &'static [&'static str], hash_files: bool },
}

const WORKFLOW_ENV: Contexts = Contexts::Names { names: &["github", "secrets", "inputs", "vars"], hash_files: false };
const RUN_NAME: Contexts = Contexts::Names { names: &["github", "inputs", "vars"], hash_files: false };
const JOB_IF: Contexts = Contexts::Names { names: &["github", "needs", "vars", "inputs"], hash_files: false };
const STRATEGY: Contexts = Contexts::Names { names: &["github", "needs", "vars", "inputs"], hash_files: false };
const JOB_SETTINGS: Contexts =
    Contexts::Names { names: &["github", "needs", "strategy", "matrix", "vars", "inputs"], hash_files: false };
const JOB_ENV: Contexts = Contexts::Names {
    names: &["github", "needs", "strategy", "matrix", "vars", "secrets", "inputs"],
    hash_files: false,
};
const JOB_DEFAULTS: Contexts =
    Contexts::Names { names: &["github", "needs", "strategy", "matrix", "env", "vars", "inputs"], hash_files: false };
const JOB_OUTPUTS: Contexts = Contexts::Names {
    names: &["github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets", "steps", "inputs"],
    hash_files: false,
};
const STEP: Contexts = Contexts::Names {
    names: &["github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets", "steps", "inputs"],
    hash_files: true,
};
const STEP_IF: Contexts = Contexts::Names {
    names: &["github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "steps", "inputs"],
    hash_files: true,
};

const WORKFLOW_KEYS: &[&str] = &["name", "on", "env", "defaults", "jobs"];
const WORKFLOW_IGNORED: &[&str] = &["run-name", "description"];
const WORKFLOW_UNSUPPORTED: &[&str] = &["permissions", "concurrency"];
const JOB_KEYS: &[&str] = &[
    "name",
    "runs-on",
    "needs",
    "if",
    "strategy",
    "env",
    "outputs",
    "timeout-minutes",
    "continue-on-error",
    "defaults",
    "steps",
];
const JOB_UNSUPPORTED: &[&str] = &[
    "permissions",
    "concurrency",
    "services",
    "container",
    "environment",
    "uses",
    "with",
    "secrets",
    "snapshot",
    "cancel-timeout-minutes",
];
const STEP_KEYS: &[&str] =
    &["id", "name", "run", "shell", "env", "if", "working-directory", "continue-on-error", "timeout-minutes"];
const STEP_UNSUPPORTED: &[&str] = &["uses", "with", "background"];
const STRATEGY_KEYS: &[&str] = &["matrix", "fail-fast", "max-parallel"];
const DEFAULTS_KEYS: &[&str] = &["run"];
const RUN_DEFAULTS_KEYS: &[&str] = &["shell", "working-directory"];
const RUNS_ON_KEYS: &[&str] = &["group", "labels"];

/// Collects errors while building the model.
struct Parser<'f> {
    file: &'f str,
    /// The lines of the source text, to place expression errors exactly inside plain scalars.
    lines: Vec<&'f str>,
    errors: Vec<WorkflowError>,
}

/// Builds the workflow model from the YAML tree, or returns every error found.
pub fn build_workflow(file: &str, text: &str, root: &Node) -> Result<Workflow, Vec<WorkflowError>> {
    let mut parser = Parser { file, lines: text.lines().collect(), errors: Vec::new() };
    let workflow = parser.workflow(root);
    match workflow {
        Some(workflow) if parser.errors.is_empty() => Ok(workflow),
        _ => Err(parser.errors),
    }
}

impl Parser<'_> {
    fn error(&mut self, position: Position, kind: ErrorKind, message: impl Into<String>, hint: impl Into<String>) {
        self.errors.push(WorkflowError::at(self.file, position, kind, message, hint));
    }

    fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n Entries> {
        match &node.data {
            NodeData::Mapping(entries) => Some(entries),
            _ => {
                self.error(
                    node.position,
                    ErrorKind::InvalidValue,
                    format!("{what} must be a mapping, not {}", node.type_name()),
                    format!("write {what} as `key: value` lines"),
                );
                None
            }
        }
    }

    /// Reports keys that are not valid here: "not supported yet" for GitHub keys Baton does not run, and
    /// "unknown key" with the closest valid key otherwise.
    fn check_keys(&mut self, entries: &Entries, place: &str, valid: &[&str], ignored: &[&str], unsupported: &[&str]) {
        for (key, position, _) in entries {
            let key = key.as_str();
            if valid.contains(&key) || ignored.contains(&key) {
                continue;
            }
            if unsupported.contains(&key) {
                self.error(
                    *position,
                    ErrorKind::NotSupported,
                    format!("`{key}:` in {place} is not supported yet"),
                    format!("remove `{key}:`; Baton does not run it yet"),
                );
                continue;
            }
            let hint = match did_you_mean(key, valid.iter().chain(ignored).chain(unsupported).copied()) {
                Some(suggestion) => format!("did you mean `{suggestion}`?"),
                None => format!("the keys allowed here are: {}", valid.join(", ")),
            };
            self.error(*position, ErrorKind::UnknownKey, format!("unknown key `{key}` in {place}"), hint);
        }
    }

    /// A scalar as text, checking its expressions; `None` (after an error) for collections.
    fn string(&mut self, node: &Node, what: &str, contexts: Contexts) -> Option<Spanned<String>> {
        let text = match &node.data {
            NodeData::Null => String::new(),
            NodeData::Sequence(_) | NodeData::Mapping(_) => {
                self.error(
                    node.position,
                    ErrorKind::InvalidValue,
                    format!("{what} must be a string, not {}", node.type_name()),
                    format!("write {what} as a single string"),
                );
                return None;
            }
            _ => node.scalar_text().unwrap_or_default(),
        };
        self.check_template(&text, node.position, what, contexts);
        Some(Spanned { value: text, position: node.position })
    }

    /// Checks every `${{ }}` of a template string, reporting problems at the YAML node's position.
    fn check_template(&mut self, text: &str, position: Position, what: &str, contexts: Contexts) {
        if !text.contains("${{") {
            return;
        }
        let Contexts::Names { names, hash_files } = contexts else {
            self.error(
                position,
                ErrorKind::Expression,
                format!("{what} cannot contain a `${{{{ }}}}` expression"),
                "write a literal value; `${{ }}` is not evaluated at this place",
            );
            return;
        };
        // GitHub turns a template with text around its expressions into one `format(...)` expression, so the whole
        // value counts against the expression length limit.
        let limit = baton_expr::Limits::GITHUB.max_expression_length;
        if text.chars().count() > limit {
            self.error(
                position,
                ErrorKind::Expression,
                format!("{what} exceeds the maximum expression length of {limit} characters"),
                "move the long text into a script file, or split the value",
            );
            return;
        }
        let segments = match split_template(text) {
            Ok(segments) => segments,
            Err(error) => {
                let byte_offset = match &error {
                    baton_expr::ExpressionError::Template { byte_offset, .. } => *byte_offset,
                    _ => 0,
                };
                let at = self.position_in_value(text, position, byte_offset);
                self.expression_error(at, what, &error);
                return;
            }
        };
        let options =
            ParseOptions::with_named_values(names.iter().copied()).status_functions(false).hash_files(hash_files);
        for segment in segments {
            if let TemplateSegment::Expression { source, byte_offset } = segment
                && let Err(error) = Expression::parse(source, &options)
            {
                let inside = error.position().map_or(0, |at| source.get(..at.byte_offset).map_or(0, str::len));
                let at = self.position_in_value(text, position, byte_offset + inside);
                self.expression_error(at, what, &error);
            }
        }
    }

    /// The file position of byte `offset` of a scalar's value. This is exact when the value is written plainly on
    /// the node's line (the source there starts with the value); quoting, escapes and block scalars change the
    /// text, so the node's own position is used for them.
    fn position_in_value(&self, value: &str, node: Position, offset: usize) -> Position {
        let source_line = node.line.checked_sub(1).and_then(|index| self.lines.get(index));
        let written = source_line.and_then(|line| {
            let start = line.char_indices().nth(node.column.saturating_sub(1)).map(|(byte, _)| byte)?;
            line.get(start..)
        });
        match (written, value.get(..offset)) {
            (Some(written), Some(before)) if written.starts_with(value) => {
                Position { line: node.line, column: node.column + before.chars().count() }
            }
            _ => node,
        }
    }

    fn condition(&mut self, node: &Node, what: &str, contexts: Contexts) -> Option<Spanned<String>> {
        let text = match &node.data {
            NodeData::Sequence(_) | NodeData::Mapping(_) => {
                self.error(
                    node.position,
                    ErrorKind::InvalidValue,
                    format!("{what} must be a condition string, not {}", node.type_name()),
                    "write a condition such as `github.ref == 'refs/heads/main'`",
                );
                return None;
            }
            _ => node.scalar_text().unwrap_or_default(),
        };
        if let Contexts::Names { names, hash_files } = contexts {
            let options = ParseOptions::with_named_values(names.iter().copied()).hash_files(hash_files);
            if let Err(error) = parse_if_condition(&text, &options) {
                self.expression_error(node.position, what, &error);
            }
        }
        Some(Spanned { value: text, position: node.position })
    }

    fn expression_error(&mut self, position: Position, what: &str, error: &baton_expr::ExpressionError) {
        let rendered = error.to_string();
        let (message, hint) = match rendered.split_once("\n  help: ") {
            Some((message, hint)) => (message.to_owned(), hint.to_owned()),
            None => (rendered, "fix the expression".to_owned()),
        };
        let location = error.position().map(|at| format!(" (column {} of the expression)", at.column));
        self.error(
            position,
            ErrorKind::Expression,
            format!("invalid expression in {what}{}: {message}", location.unwrap_or_default()),
            hint,
        );
    }

    /// A boolean, or an expression string evaluated later.
    fn bool_or_expression(&mut self, node: &Node, what: &str, contexts: Contexts) -> Option<Spanned<Value>> {
        self.typed_or_expression(node, what, contexts, matches!(node.data, NodeData::Bool(_)), "true or false")
    }

    /// A number, or an expression string evaluated later.
    fn number_or_expression(&mut self, node: &Node, what: &str, contexts: Contexts) -> Option<Spanned<Value>> {
        let is_number = matches!(node.data, NodeData::Integer(_) | NodeData::Float(_));
        self.typed_or_expression(node, what, contexts, is_number, "a number of minutes such as 30")
    }

    fn typed_or_expression(
        &mut self,
        node: &Node,
        what: &str,
        contexts: Contexts,
        has_type: bool,
        expected: &str,
    ) -> Option<Spanned<Value>> {
        if has_type {
            return Some(Spanned { value: node.to_value(), position: node.position });
        }
        if let NodeData::String(text) = &node.data
            && is_single_expression(text)
        {
            self.check_template(text, node.position, what, contexts);
            return Some(Spanned { value: Value::String(text.clone()), position: node.position });
        }
        self.error(
            node.position,
            ErrorKind::InvalidValue,
            format!("{what} must be {expected} or a `${{{{ }}}}` expression, not {}", node.type_name()),
            format!("write {expected}"),
        );
        None
    }

    fn env(&mut self, node: &Node, what: &str, contexts: Contexts) -> Env {
        let Some(entries) = self.mapping(node, what) else {
            return Vec::new();
        };
        let mut env = Vec::new();
        for (key, position, value) in entries {
            self.check_template(key, *position, &format!("the variable name `{key}` in {what}"), Contexts::None);
            if let Some(value) = self.string(value, &format!("`{key}` in {what}"), contexts) {
                env.push((key.clone(), value));
            }
        }
        env
    }

    fn defaults(&mut self, node: &Node, what: &str, contexts: Contexts) -> RunDefaults {
        let mut defaults = RunDefaults::default();
        let Some(entries) = self.mapping(node, what) else {
            return defaults;
        };
        self.check_keys(entries, what, DEFAULTS_KEYS, &[], &[]);
        for (key, _, value) in entries {
            if key != "run" {
                continue;
            }
            let place = format!("{what}.run");
            let Some(run_entries) = self.mapping(value, &place) else {
                continue;
            };
            self.check_keys(run_entries, &place, RUN_DEFAULTS_KEYS, &[], &[]);
            for (run_key, _, run_value) in run_entries {
                match run_key.as_str() {
                    "shell" => defaults.shell = self.string(run_value, &format!("{place}.shell"), contexts),
                    "working-directory" => {
                        defaults.working_directory =
                            self.string(run_value, &format!("{place}.working-directory"), contexts);
                    }
                    _ => {}
                }
            }
        }
        defaults
    }

    fn workflow(&mut self, root: &Node) -> Option<Workflow> {
        let entries = self.mapping(root, "the workflow")?;
        self.check_keys(entries, "the workflow", WORKFLOW_KEYS, WORKFLOW_IGNORED, WORKFLOW_UNSUPPORTED);
        let mut workflow = Workflow {
            file: self.file.to_owned(),
            name: None,
            on: Triggers { events: Vec::new(), position: root.position },
            env: Vec::new(),
            defaults: RunDefaults::default(),
            jobs: Vec::new(),
        };
        let mut saw_on = false;
        let mut saw_jobs = false;
        for (key, _, value) in entries {
            match key.as_str() {
                "name" => workflow.name = self.string(value, "the workflow `name`", Contexts::None),
                "run-name" => {
                    self.string(value, "`run-name`", RUN_NAME);
                }
                "on" => {
                    saw_on = true;
                    workflow.on = self.triggers(value);
                }
                "env" => workflow.env = self.env(value, "the workflow `env`", WORKFLOW_ENV),
                "defaults" => workflow.defaults = self.defaults(value, "the workflow `defaults`", Contexts::None),
                "jobs" => {
                    saw_jobs = true;
                    workflow.jobs = self.jobs(value);
                }
                _ => {}
            }
        }
        if !saw_on {
            self.error(
                root.position,
                ErrorKind::MissingKey,
                "the workflow has no `on:`",
                "add `on: push` or another trigger",
            );
        }
        if !saw_jobs {
            self.error(
                root.position,
                ErrorKind::MissingKey,
                "the workflow has no `jobs:`",
                "add `jobs:` with at least one job",
            );
        }
        Some(workflow)
    }

    fn triggers(&mut self, node: &Node) -> Triggers {
        let mut events = Vec::new();
        match &node.data {
            NodeData::Sequence(items) => {
                for item in items {
                    if let Some(event) = self.string(item, "an event name in `on`", Contexts::None) {
                        events.push(Trigger {
                            event: event.value,
                            position: item.position,
                            config: Value::Null,
                            inputs: Vec::new(),
                        });
                    }
                }
            }
            NodeData::Mapping(entries) => {
                for (event, position, config) in entries {
                    self.check_template(event, *position, "an event name in `on`", Contexts::None);
                    self.check_literal(config, &format!("the `{event}` trigger"));
                    let inputs = if event == "workflow_dispatch" { self.dispatch_inputs(config) } else { Vec::new() };
                    events.push(Trigger {
                        event: event.clone(),
                        position: *position,
                        config: config.to_value(),
                        inputs,
                    });
                }
            }
            NodeData::Null => {
                self.error(
                    node.position,
                    ErrorKind::InvalidValue,
                    "`on` is empty",
                    "name at least one event, e.g. `on: push`",
                );
            }
            _ => {
                if let Some(event) = self.string(node, "the event name in `on`", Contexts::None) {
                    events.push(Trigger {
                        event: event.value,
                        position: node.position,
                        config: Value::Null,
                        inputs: Vec::new(),
                    });
                }
            }
        }
        Triggers { events, position: node.position }
    }

    fn dispatch_inputs(&mut self, config: &Node) -> Vec<DispatchInput> {
        let mut inputs = Vec::new();
        let NodeData::Mapping(entries) = &config.data else {
            if !matches!(config.data, NodeData::Null) {
                self.mapping(config, "`workflow_dispatch`");
            }
            return inputs;
        };
        // GitHub ignores unknown keys under `workflow_dispatch` (conformance case
        // on-workflow_dispatch-unknown-keys-ignored), so Baton does too.
        let Some((_, _, inputs_node)) = entries.iter().find(|(key, _, _)| key == "inputs") else {
            return inputs;
        };
        if matches!(inputs_node.data, NodeData::Null) {
            return inputs;
        }
        let Some(input_entries) = self.mapping(inputs_node, "`workflow_dispatch.inputs`") else {
            return inputs;
        };
        for (name, position, definition) in input_entries {
            let place = format!("the `workflow_dispatch` input `{name}`");
            let mut input = DispatchInput {
                name: name.clone(),
                position: *position,
                description: None,
                required: false,
                input_type: InputType::String,
                default: None,
                options: Vec::new(),
            };
            if let NodeData::Mapping(fields) = &definition.data {
                for (field, field_position, value) in fields {
                    match field.as_str() {
                        "description" => input.description = value.scalar_text(),
                        "required" => match value.data {
                            NodeData::Bool(required) => input.required = required,
                            _ => self.error(
                                value.position,
                                ErrorKind::InvalidValue,
                                format!("`required` of {place} must be true or false"),
                                "write `required: true` or `required: false`",
                            ),
                        },
                        "default" => input.default = Some(value.to_value()),
                        "type" => {
                            input.input_type = match value.scalar_text().as_deref() {
                                Some("string") => InputType::String,
                                Some("boolean") => InputType::Boolean,
                                Some("number") => InputType::Number,
                                Some("choice") => InputType::Choice,
                                Some("environment") => InputType::Environment,
                                _ => {
                                    self.error(
                                        value.position,
                                        ErrorKind::InvalidValue,
                                        format!("unknown `type` of {place}"),
                                        "write one of: string, boolean, number, choice, environment",
                                    );
                                    InputType::String
                                }
                            };
                        }
                        "options" => match &value.data {
                            NodeData::Sequence(items) => {
                                input.options = items.iter().filter_map(Node::scalar_text).collect();
                            }
                            _ => self.error(
                                *field_position,
                                ErrorKind::InvalidValue,
                                format!("`options` of {place} must be a list"),
                                "write the choices as a YAML list",
                            ),
                        },
                        // GitHub ignores other keys of a dispatch input, so Baton does too.
                        _ => {}
                    }
                }
            } else if !matches!(definition.data, NodeData::Null) {
                self.mapping(definition, &place);
            }
            if input.input_type == InputType::Choice && input.options.is_empty() {
                self.error(
                    *position,
                    ErrorKind::MissingKey,
                    format!("{place} has `type: choice` but no `options`"),
                    "list the choices under `options:`",
                );
            }
            inputs.push(input);
        }
        inputs
    }

    fn jobs(&mut self, node: &Node) -> Vec<Job> {
        let Some(entries) = self.mapping(node, "`jobs`") else {
            return Vec::new();
        };
        if entries.is_empty() {
            self.error(node.position, ErrorKind::MissingKey, "`jobs` has no jobs", "define at least one job");
        }
        let mut jobs: Vec<Job> = Vec::new();
        for (id, position, definition) in entries {
            if let Some(first) = jobs.iter().find(|job| job.id.eq_ignore_ascii_case(id)) {
                self.error(
                    *position,
                    ErrorKind::DuplicateKey,
                    format!("the job id `{id}` is already used by job `{}`", first.id),
                    "job ids are compared without regard to case; rename one of the jobs",
                );
            }
            if id.starts_with("__") {
                self.error(
                    *position,
                    ErrorKind::InvalidValue,
                    format!("the job id `{id}` is reserved"),
                    "job ids starting with `__` are reserved by GitHub; use a single leading `_` or a letter",
                );
            } else if !is_valid_job_id(id) {
                self.error(
                    *position,
                    ErrorKind::InvalidValue,
                    format!("the job id `{id}` is invalid"),
                    "job ids may contain only letters, digits, `-` and `_`, must start with a letter or `_`, and must \
                     be shorter than 100 characters",
                );
            }
            if let Some(job) = self.job(id, *position, definition) {
                jobs.push(job);
            }
        }
        jobs
    }

    fn job(&mut self, id: &str, position: Position, node: &Node) -> Option<Job> {
        let place = format!("job `{id}`");
        let entries = self.mapping(node, &place)?;
        self.check_keys(entries, &place, JOB_KEYS, &[], JOB_UNSUPPORTED);
        let mut job = Job {
            id: id.to_owned(),
            position,
            name: None,
            runs_on: RunsOn { labels: Vec::new(), group: None, position },
            needs: Vec::new(),
            condition: None,
            strategy: None,
            env: Vec::new(),
            outputs: Vec::new(),
            timeout_minutes: None,
            continue_on_error: None,
            defaults: RunDefaults::default(),
            steps: Vec::new(),
        };
        let mut saw_runs_on = false;
        let mut saw_steps = false;
        let is_reusable_call = entries.iter().any(|(key, _, _)| key == "uses");
        for (key, _, value) in entries {
            match key.as_str() {
                "name" => job.name = self.string(value, &format!("`name` of {place}"), JOB_SETTINGS),
                "runs-on" => {
                    saw_runs_on = true;
                    job.runs_on = self.runs_on(value, &place);
                }
                "needs" => job.needs = self.needs(value, &place),
                "if" => job.condition = self.condition(value, &format!("`if` of {place}"), JOB_IF),
                "strategy" => job.strategy = self.strategy(value, &place),
                "env" => job.env = self.env(value, &format!("`env` of {place}"), JOB_ENV),
                "outputs" => {
                    if let Some(outputs) = self.mapping(value, &format!("`outputs` of {place}")) {
                        for (name, _, output) in outputs {
                            let what = format!("output `{name}` of {place}");
                            if let Some(output) = self.string(output, &what, JOB_OUTPUTS) {
                                job.outputs.push((name.clone(), output));
                            }
                        }
                    }
                }
                "timeout-minutes" => {
                    job.timeout_minutes =
                        self.number_or_expression(value, &format!("`timeout-minutes` of {place}"), JOB_SETTINGS);
                }
                "continue-on-error" => {
                    job.continue_on_error =
                        self.bool_or_expression(value, &format!("`continue-on-error` of {place}"), JOB_SETTINGS);
                }
                "defaults" => job.defaults = self.defaults(value, &format!("`defaults` of {place}"), JOB_DEFAULTS),
                "steps" => {
                    saw_steps = true;
                    job.steps = self.steps(value, id);
                }
                _ => {}
            }
        }
        // A job calling a reusable workflow has already been reported as not supported; asking it for
        // `runs-on` and `steps` as well would only add noise.
        if !is_reusable_call {
            if !saw_runs_on {
                self.error(
                    position,
                    ErrorKind::MissingKey,
                    format!("{place} has no `runs-on`"),
                    "add `runs-on: <label>`",
                );
            }
            if !saw_steps {
                self.error(
                    position,
                    ErrorKind::MissingKey,
                    format!("{place} has no `steps`"),
                    "add `steps:` with at least one `run:` step",
                );
            }
        }
        Some(job)
    }

    fn runs_on(&mut self, node: &Node, place: &str) -> RunsOn {
        let what = format!("`runs-on` of {place}");
        let mut runs_on = RunsOn { labels: Vec::new(), group: None, position: node.position };
        match &node.data {
            NodeData::Mapping(entries) => {
                self.check_keys(entries, &what, RUNS_ON_KEYS, &[], &[]);
                for (key, _, value) in entries {
                    match key.as_str() {
                        "group" => {
                            runs_on.group = self.string(value, &format!("{what}.group"), JOB_SETTINGS);
                            if let Some(group) = &runs_on.group {
                                self.check_runner_group(group, &what);
                            }
                        }
                        "labels" => runs_on.labels = self.labels(value, &what),
                        _ => {}
                    }
                }
                if runs_on.group.is_none() && runs_on.labels.is_empty() {
                    self.error(
                        node.position,
                        ErrorKind::MissingKey,
                        format!("{what} names no group or labels"),
                        "add `labels:` or `group:`",
                    );
                }
            }
            _ => runs_on.labels = self.labels(node, &what),
        }
        runs_on
    }

    /// A group name with a `/` must be `organization/<name>` or `enterprise/<name>` (or the short `org/` and
    /// `ent/`), with a name that has no further `/`, as GitHub requires.
    fn check_runner_group(&mut self, group: &Spanned<String>, what: &str) {
        let Some((prefix, name)) = group.value.split_once('/') else {
            return;
        };
        if group.value.contains("${{") {
            return;
        }
        if !matches!(prefix, "organization" | "org" | "enterprise" | "ent") || name.is_empty() || name.contains('/') {
            self.error(
                group.position,
                ErrorKind::InvalidValue,
                format!("invalid runner group name `{}` in {what}", group.value),
                "write `organization/<group>` or `enterprise/<group>` to target a single runner group",
            );
        }
    }

    fn labels(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        let labels: Vec<Spanned<String>> = match &node.data {
            NodeData::Sequence(items) => {
                items.iter().filter_map(|item| self.string(item, what, JOB_SETTINGS)).collect()
            }
            _ => self.string(node, what, JOB_SETTINGS).into_iter().collect(),
        };
        if labels.iter().any(|label| label.value.trim().is_empty()) || labels.is_empty() {
            self.error(
                node.position,
                ErrorKind::InvalidValue,
                format!("{what} has an empty label"),
                "write a runner label such as `ubuntu-latest`",
            );
        }
        labels
    }

    fn needs(&mut self, node: &Node, place: &str) -> Vec<Spanned<String>> {
        let what = format!("`needs` of {place}");
        match &node.data {
            NodeData::Sequence(items) => {
                items.iter().filter_map(|item| self.string(item, &what, Contexts::None)).collect()
            }
            _ => self.string(node, &what, Contexts::None).into_iter().collect(),
        }
    }

    fn strategy(&mut self, node: &Node, place: &str) -> Option<Strategy> {
        let what = format!("`strategy` of {place}");
        if let NodeData::String(text) = &node.data
            && is_single_expression(text)
        {
            self.error(
                node.position,
                ErrorKind::NotSupported,
                format!("{what} given as one expression is not supported yet"),
                "write `strategy:` as a mapping; `matrix:` itself may be an expression",
            );
            return None;
        }
        let entries = self.mapping(node, &what)?;
        self.check_keys(entries, &what, STRATEGY_KEYS, &[], &[]);
        let mut strategy = Strategy { matrix: None, fail_fast: None, max_parallel: None, position: node.position };
        for (key, _, value) in entries {
            match key.as_str() {
                "matrix" => strategy.matrix = self.matrix(value, &what),
                "fail-fast" => {
                    strategy.fail_fast = self.bool_or_expression(value, &format!("{what}.fail-fast"), STRATEGY)
                }
                "max-parallel" => {
                    strategy.max_parallel = self.number_or_expression(value, &format!("{what}.max-parallel"), STRATEGY);
                }
                _ => {}
            }
        }
        Some(strategy)
    }

    fn matrix(&mut self, node: &Node, strategy: &str) -> Option<Matrix> {
        let what = format!("{strategy}.matrix");
        if let NodeData::String(text) = &node.data
            && is_single_expression(text)
        {
            self.check_template(text, node.position, &what, STRATEGY);
            return Some(Matrix::Deferred(Spanned { value: Value::String(text.clone()), position: node.position }));
        }
        let entries = self.mapping(node, &what)?;
        let mut matrix =
            LiteralMatrix { vectors: Vec::new(), include: Vec::new(), exclude: Vec::new(), position: node.position };
        let mut deferred = false;
        for (key, position, value) in entries {
            if let NodeData::String(text) = &value.data
                && is_single_expression(text)
            {
                // A vector, `include` or `exclude` computed by an expression can only be expanded once it is
                // evaluated, so the whole matrix is kept for later.
                self.check_template(text, value.position, &format!("`{key}` of {what}"), STRATEGY);
                deferred = true;
                continue;
            }
            match key.as_str() {
                "include" | "exclude" => {
                    let list = self.matrix_rules(value, &format!("`{key}` of {what}"));
                    if key == "include" {
                        matrix.include = list;
                    } else {
                        matrix.exclude = list;
                    }
                }
                _ => {
                    self.check_template(key, *position, &format!("a key of {what}"), Contexts::None);
                    match &value.data {
                        NodeData::Sequence(items) if !items.is_empty() => {
                            self.check_values(value, &format!("`{key}` of {what}"));
                            matrix.vectors.push((key.clone(), items.iter().map(Node::to_value).collect()));
                        }
                        NodeData::Sequence(_) => self.error(
                            value.position,
                            ErrorKind::Matrix,
                            format!("the matrix vector `{key}` of {strategy} is empty"),
                            "list at least one value, or remove the vector",
                        ),
                        _ => self.error(
                            value.position,
                            ErrorKind::Matrix,
                            format!(
                                "the matrix vector `{key}` of {strategy} must be a list, not {}",
                                value.type_name()
                            ),
                            format!("write `{key}: [value1, value2]`"),
                        ),
                    }
                }
            }
        }
        if deferred {
            return Some(Matrix::Deferred(Spanned { value: node.to_value(), position: node.position }));
        }
        Some(Matrix::Literal(matrix))
    }

    fn matrix_rules(&mut self, node: &Node, what: &str) -> Vec<Object> {
        let NodeData::Sequence(items) = &node.data else {
            self.error(
                node.position,
                ErrorKind::Matrix,
                format!("{what} must be a list of mappings"),
                "write `- key: value` entries",
            );
            return Vec::new();
        };
        let mut rules = Vec::new();
        for item in items {
            match item.to_value() {
                Value::Object(object) if matches!(item.data, NodeData::Mapping(_)) => {
                    self.check_values(item, what);
                    rules.push(object);
                }
                _ => self.error(
                    item.position,
                    ErrorKind::Matrix,
                    format!("an entry of {what} must be a mapping"),
                    "write `- key: value`",
                ),
            }
        }
        rules
    }

    /// Reports `${{ }}` anywhere inside a value where GitHub evaluates no expressions, such as trigger
    /// configurations, which are read before any context exists.
    fn check_literal(&mut self, node: &Node, what: &str) {
        match &node.data {
            NodeData::String(text) => self.check_template(text, node.position, what, Contexts::None),
            NodeData::Sequence(items) => items.iter().for_each(|item| self.check_literal(item, what)),
            NodeData::Mapping(entries) => entries.iter().for_each(|(key, position, value)| {
                self.check_template(key, *position, what, Contexts::None);
                self.check_literal(value, what);
            }),
            _ => {}
        }
    }

    /// Checks the expressions inside matrix values, which GitHub evaluates with the strategy contexts.
    fn check_values(&mut self, node: &Node, what: &str) {
        match &node.data {
            NodeData::String(text) => self.check_template(text, node.position, what, STRATEGY),
            NodeData::Sequence(items) => items.iter().for_each(|item| self.check_values(item, what)),
            NodeData::Mapping(entries) => entries.iter().for_each(|(_, _, value)| self.check_values(value, what)),
            _ => {}
        }
    }

    fn steps(&mut self, node: &Node, job_id: &str) -> Vec<Step> {
        let NodeData::Sequence(items) = &node.data else {
            self.error(
                node.position,
                ErrorKind::InvalidValue,
                format!("`steps` of job `{job_id}` must be a list"),
                "write each step as `- run: ...`",
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.error(
                node.position,
                ErrorKind::MissingKey,
                format!("job `{job_id}` has no steps"),
                "add at least one `- run: ...` step",
            );
        }
        let mut steps = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(step) = self.step(item, index + 1, job_id) {
                steps.push(step);
            }
        }
        steps
    }

    fn step(&mut self, node: &Node, number: usize, job_id: &str) -> Option<Step> {
        let entries = self.mapping(node, &format!("step {number} of job `{job_id}`"))?;
        let named = entries
            .iter()
            .find(|(key, _, _)| key == "name" || key == "id")
            .and_then(|(_, _, value)| value.scalar_text())
            .map(|name| format!(" (`{name}`)"))
            .unwrap_or_default();
        let place = format!("step {number}{named} of job `{job_id}`");
        for (key, position, _) in entries {
            if key == "uses" {
                self.error(
                    *position,
                    ErrorKind::NotSupported,
                    format!("{place}: `uses:` (actions) is not supported yet"),
                    "use `run:` with the equivalent shell commands",
                );
            }
        }
        let other_keys: Vec<_> = entries.iter().filter(|(key, _, _)| key != "uses").cloned().collect();
        self.check_keys(&other_keys, &place, STEP_KEYS, &[], STEP_UNSUPPORTED);
        let mut run = None;
        let mut step = Step {
            id: None,
            name: None,
            run: Spanned { value: String::new(), position: node.position },
            shell: None,
            env: Vec::new(),
            condition: None,
            working_directory: None,
            continue_on_error: None,
            timeout_minutes: None,
            position: node.position,
        };
        for (key, _, value) in entries {
            let what = format!("`{key}` of {place}");
            match key.as_str() {
                "id" => {
                    step.id = self.string(value, &what, Contexts::None);
                    if let Some(id) = &step.id
                        && !is_valid_job_id(&id.value)
                    {
                        self.error(value.position, ErrorKind::InvalidValue, format!("the step id `{}` is invalid", id.value), "step ids may contain only letters, digits, `-` and `_`, and must start with a letter or `_`");
                    }
                }
                "name" => step.name = self.string(value, &what, STEP),
                "run" => run = self.string(value, &what, STEP),
                "shell" => step.shell = self.string(value, &what, STEP),
                "env" => step.env = self.env(value, &what, STEP),
                "if" => step.condition = self.condition(value, &what, STEP_IF),
                "working-directory" => step.working_directory = self.string(value, &what, STEP),
                "continue-on-error" => step.continue_on_error = self.bool_or_expression(value, &what, STEP),
                "timeout-minutes" => step.timeout_minutes = self.number_or_expression(value, &what, STEP),
                _ => {}
            }
        }
        let uses_action = entries.iter().any(|(key, _, _)| key == "uses");
        match run {
            Some(run) => step.run = run,
            None if uses_action => {}
            None => self.error(
                node.position,
                ErrorKind::MissingKey,
                format!("{place} has no `run:`"),
                "add `run:` with the commands to execute",
            ),
        }
        Some(step)
    }
}

/// Whether a string is exactly one `${{ }}` expression.
fn is_single_expression(text: &str) -> bool {
    matches!(split_template(text).as_deref(), Ok([TemplateSegment::Expression { .. }]))
}

/// GitHub's rule for job ids: letters, digits, `-` and `_`, starting with a letter or `_`, under 100 characters.
pub fn is_valid_job_id(id: &str) -> bool {
    let mut characters = id.chars();
    let starts_well = characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    starts_well
        && id.len() < 100
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '-' || character == '_')
}

/// The closest candidate to `key` by edit distance, when it is close enough to be a likely typo.
pub fn did_you_mean<'c>(key: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let lowered = key.to_ascii_lowercase();
    // A third of the key's length allows one typo in short keys and more in long ones; a distance as large as
    // the key itself would suggest an unrelated word.
    let length = key.chars().count();
    let limit = (length / 3).max(1);
    candidates
        .map(|candidate| (edit_distance(&lowered, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit && *distance < length)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The Levenshtein distance in characters.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (row, left_char) in left.chars().enumerate() {
        let mut current = vec![row + 1; right.len() + 1];
        for (column, right_char) in right.iter().enumerate() {
            let substitution = previous[column] + usize::from(left_char != *right_char);
            current[column + 1] = substitution.min(previous[column + 1] + 1).min(current[column] + 1);
        }
        previous = current;
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_keys_only() {
        let keys = ["runs-on", "steps", "if", "needs", "timeout-minutes"];
        let cases = [
            ("runs_on", Some("runs-on")),
            ("Steps", Some("steps")),
            ("iff", Some("if")),
            ("timeout-minute", Some("timeout-minutes")),
            ("x", None),
            ("container", None),
        ];
        for (key, expected) in cases {
            assert_eq!(did_you_mean(key, keys.iter().copied()), expected, "{key}");
        }
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("ü", "u"), 1);
    }

    #[test]
    fn job_ids_follow_githubs_rule() {
        for valid in ["build", "_x", "a-b_c", "B2"] {
            assert!(is_valid_job_id(valid), "{valid}");
        }
        let too_long = "a".repeat(100);
        for invalid in ["", "1a", "-a", "a.b", "a b", too_long.as_str()] {
            assert!(!is_valid_job_id(invalid), "{invalid}");
        }
    }
}
