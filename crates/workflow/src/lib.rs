//! GitHub Actions workflow files for Baton: parsing YAML with positions and resource limits into a plain model,
//! validating keys, values, expressions and `needs`, and expanding matrices.
//!
//! ```
//! let workflow = baton_workflow::parse_workflow(
//!     "ci.yml",
//!     "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n",
//! )
//! .map_err(|errors| errors[0].to_string())?;
//! assert_eq!(workflow.topological_order(), ["build"]);
//! # Ok::<(), String>(())
//! ```

mod error;
mod matrix;
mod model;
mod needs;
mod parse;
mod yaml;

pub use error::{ErrorKind, Position, WorkflowError};
pub use matrix::{MAX_COMBINATIONS, expand_matrix};
pub use model::{
    DispatchInput, Env, InputType, Job, LiteralMatrix, Matrix, RunDefaults, RunsOn, Spanned, Step, Strategy, Trigger,
    Triggers, Workflow,
};
pub use parse::is_valid_job_id;
pub use yaml::{MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES};

/// Parses a workflow file. `file_name` is used in error messages, which render as
/// `file:line:col: what is wrong; what to write instead`. Every error found is returned, not just the first.
pub fn parse_workflow(file_name: &str, text: &str) -> Result<Workflow, Vec<WorkflowError>> {
    let root = yaml::load(file_name, text).map_err(|error| vec![error])?;
    let workflow = parse::build_workflow(file_name, text, &root).map_err(sorted)?;
    let mut errors = needs::validate_needs(&workflow);
    // Matrices are expanded here only to report impossible ones early; the runner expands them again.
    for job in &workflow.jobs {
        if let Some(strategy) = &job.strategy
            && let Some(matrix @ Matrix::Literal(_)) = &strategy.matrix
            && let Err(mut error) = expand_matrix(matrix)
        {
            error.file = file_name.to_owned();
            error.message = format!("job `{}`: {}", job.id, error.message);
            errors.push(error);
        }
    }
    if errors.is_empty() { Ok(workflow) } else { Err(sorted(errors)) }
}

/// Orders errors by position so they read top to bottom like the file; the sort is stable, so errors at the
/// same place keep the order they were found in.
fn sorted(mut errors: Vec<WorkflowError>) -> Vec<WorkflowError> {
    errors.sort_by_key(|error| (error.line, error.column));
    errors
}
