//! Matrix expansion as GitHub documents it ("Running variations of jobs in a workflow"): the cross product of the
//! vectors, then `exclude`, then `include`, with a limit on the number of combinations.

use baton_expr::{Object, Value};

use crate::error::{ErrorKind, WorkflowError};
use crate::model::{LiteralMatrix, Matrix};

/// The most combinations one job's matrix may produce. GitHub's limit is 256 jobs per matrix.
pub const MAX_COMBINATIONS: usize = 256;

/// Expands a matrix into its combinations, in GitHub's order.
///
/// 1. The cross product of the vectors, the first vector varying slowest.
/// 2. `exclude`: each entry removes every combination whose values match all of the entry's keys (a partial match
///    is enough).
/// 3. `include`: each entry is added to every original combination none of whose original (vector) values it
///    would overwrite; keys added by earlier includes may be overwritten. An entry that fits no original
///    combination becomes a new combination. New combinations are never extended by later entries.
///
/// A [`Matrix::Deferred`] matrix cannot be expanded before its expressions are evaluated, which is an error here.
pub fn expand_matrix(matrix: &Matrix) -> Result<Vec<Object>, WorkflowError> {
    match matrix {
        Matrix::Literal(literal) => expand_literal(literal),
        Matrix::Deferred(deferred) => Err(WorkflowError {
            file: String::new(),
            line: deferred.position.line,
            column: deferred.position.column,
            kind: ErrorKind::Matrix,
            message: "the matrix is computed by an expression and cannot be expanded before it is evaluated".to_owned(),
            hint: "evaluate the matrix expression first, then expand the resulting matrix".to_owned(),
        }),
    }
}

fn limit_error(matrix: &LiteralMatrix, count: usize) -> WorkflowError {
    WorkflowError {
        file: String::new(),
        line: matrix.position.line,
        column: matrix.position.column,
        kind: ErrorKind::Matrix,
        message: format!("the matrix has {count} or more combinations, more than the limit of {MAX_COMBINATIONS}"),
        hint: "remove values from the vectors, or exclude combinations".to_owned(),
    }
}

fn expand_literal(matrix: &LiteralMatrix) -> Result<Vec<Object>, WorkflowError> {
    for rule in &matrix.exclude {
        if let Some(key) =
            rule.keys().find(|key| !matrix.vectors.iter().any(|(name, _)| name.eq_ignore_ascii_case(key)))
        {
            return Err(WorkflowError {
                file: String::new(),
                line: matrix.position.line,
                column: matrix.position.column,
                kind: ErrorKind::Matrix,
                message: format!("the matrix `exclude` key `{key}` does not match any key of the matrix"),
                hint: "exclude only by keys that are matrix vectors".to_owned(),
            });
        }
    }
    let mut combinations: Vec<Object> = Vec::new();
    if !matrix.vectors.is_empty() {
        combinations.push(Object::new());
        for (key, values) in &matrix.vectors {
            // The running product is checked before it is built, so a huge matrix is refused without allocating it.
            let next_count = combinations.len().saturating_mul(values.len());
            if next_count > MAX_COMBINATIONS {
                return Err(limit_error(matrix, next_count));
            }
            let mut next = Vec::with_capacity(next_count);
            for combination in &combinations {
                for value in values {
                    let mut extended = combination.clone();
                    extended.insert(key.clone(), value.clone());
                    next.push(extended);
                }
            }
            combinations = next;
        }
    }
    combinations.retain(|combination| !matrix.exclude.iter().any(|rule| matches_all(rule, combination)));
    let original_count = combinations.len();
    let is_vector_key = |key: &str| matrix.vectors.iter().any(|(name, _)| name.eq_ignore_ascii_case(key));
    let mut added: Vec<Object> = Vec::new();
    for rule in &matrix.include {
        let mut matched = false;
        for combination in combinations.iter_mut().take(original_count) {
            let fits = rule.iter().all(|(key, value)| !is_vector_key(key) || combination.get(key) == Some(value));
            if fits {
                matched = true;
                for (key, value) in rule.iter() {
                    if !is_vector_key(key) {
                        combination.insert(key.to_owned(), value.clone());
                    }
                }
            }
        }
        if !matched {
            added.push(rule.clone());
        }
    }
    combinations.extend(added);
    if combinations.len() > MAX_COMBINATIONS {
        return Err(limit_error(matrix, combinations.len()));
    }
    Ok(combinations)
}

/// Whether every key of `rule` has the same value in `combination`.
fn matches_all(rule: &Object, combination: &Object) -> bool {
    rule.iter().all(|(key, value)| combination.get(key).is_some_and(|actual| values_equal(actual, value)))
}

/// Deep equality of matrix values; an exclude entry given as a partial object matches a larger object value
/// only if they are equal, as GitHub compares values whole.
fn values_equal(left: &Value, right: &Value) -> bool {
    left == right
}
