//! The workflow model: plain structs for the parts of a GitHub Actions workflow Baton runs, each keeping the
//! source position of the values later stages report errors about.

use baton_expr::Value;

use crate::error::Position;

/// A string value from the workflow with the position of its YAML node. It may contain `${{ }}` expressions,
/// which the parser has already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub position: Position,
}

/// An ordered list of environment variables (`env:`), names as written.
pub type Env = Vec<(String, Spanned<String>)>;

/// A parsed workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// The file name given to the parser, used in later error messages.
    pub file: String,
    pub name: Option<Spanned<String>>,
    pub on: Triggers,
    pub env: Env,
    pub defaults: RunDefaults,
    /// Jobs in the order they are written.
    pub jobs: Vec<Job>,
}

/// The `on:` section. Every trigger is accepted; only `workflow_dispatch` inputs are parsed further, and the
/// configuration of other triggers is kept as a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Triggers {
    pub events: Vec<Trigger>,
    pub position: Position,
}

/// One event of `on:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub event: String,
    pub position: Position,
    /// The event's configuration (`branches`, `types`, ...), `Null` when none is given.
    pub config: Value,
    /// For `workflow_dispatch`, its inputs in written order.
    pub inputs: Vec<DispatchInput>,
}

/// The type of a `workflow_dispatch` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    String,
    Boolean,
    Number,
    Choice,
    Environment,
}

/// One `workflow_dispatch` input.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchInput {
    pub name: String,
    pub position: Position,
    pub description: Option<String>,
    pub required: bool,
    pub input_type: InputType,
    pub default: Option<Value>,
    pub options: Vec<String>,
}

/// `defaults.run`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunDefaults {
    pub shell: Option<Spanned<String>>,
    pub working_directory: Option<Spanned<String>>,
}

/// A job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    /// The position of the job id key.
    pub position: Position,
    pub name: Option<Spanned<String>>,
    pub runs_on: RunsOn,
    pub needs: Vec<Spanned<String>>,
    pub condition: Option<Spanned<String>>,
    pub strategy: Option<Strategy>,
    pub env: Env,
    pub outputs: Vec<(String, Spanned<String>)>,
    /// A number, or an expression string evaluated later.
    pub timeout_minutes: Option<Spanned<Value>>,
    /// A boolean, or an expression string evaluated later.
    pub continue_on_error: Option<Spanned<Value>>,
    pub defaults: RunDefaults,
    pub steps: Vec<Step>,
}

/// `runs-on`: the labels a runner must have, or one expression evaluated later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsOn {
    pub labels: Vec<Spanned<String>>,
    /// The `group:` of the object form.
    pub group: Option<Spanned<String>>,
    pub position: Position,
}

/// `strategy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub matrix: Option<Matrix>,
    pub fail_fast: Option<Spanned<Value>>,
    pub max_parallel: Option<Spanned<Value>>,
    pub position: Position,
}

/// `strategy.matrix`.
#[derive(Debug, Clone, PartialEq)]
pub enum Matrix {
    /// A matrix written out in YAML.
    Literal(LiteralMatrix),
    /// A matrix that can only be expanded after evaluating expressions, kept unexpanded for later: either one
    /// `${{ }}` string (for example `${{ fromJSON(needs.setup.outputs.matrix) }}`), or a mapping in which a vector,
    /// `include` or `exclude` is such a string.
    Deferred(Spanned<Value>),
}

/// A matrix written out in YAML: its vectors in written order, and the `include` and `exclude` lists.
#[derive(Debug, Clone, PartialEq)]
pub struct LiteralMatrix {
    pub vectors: Vec<(String, Vec<Value>)>,
    pub include: Vec<baton_expr::Object>,
    pub exclude: Vec<baton_expr::Object>,
    pub position: Position,
}

/// A step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub run: Spanned<String>,
    pub shell: Option<Spanned<String>>,
    pub env: Env,
    pub condition: Option<Spanned<String>>,
    pub working_directory: Option<Spanned<String>>,
    pub continue_on_error: Option<Spanned<Value>>,
    pub timeout_minutes: Option<Spanned<Value>>,
    pub position: Position,
}
