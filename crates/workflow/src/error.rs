//! The error type of the workflow parser: where in which file something is wrong, what is wrong, and what to
//! write instead.

use std::fmt;

/// What kind of problem a [`WorkflowError`] reports, so callers and tests can tell them apart without matching
/// on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The text is not valid YAML, or uses YAML features workflows do not allow (tags).
    Yaml,
    /// A resource limit was exceeded: file size, nesting depth, alias expansion or node count.
    Limit,
    /// A key that is not valid at its place.
    UnknownKey,
    /// A key that appears twice in one mapping.
    DuplicateKey,
    /// A required key is missing.
    MissingKey,
    /// A value of the wrong type or form.
    InvalidValue,
    /// A feature GitHub supports that Baton does not run yet.
    NotSupported,
    /// A `${{ }}` expression that does not parse, or an expression where none is allowed.
    Expression,
    /// A `needs:` entry naming an unknown job, or a dependency cycle.
    Needs,
    /// A matrix that cannot be expanded.
    Matrix,
}

/// One problem in a workflow file, rendered as `file:line:col: what is wrong; what to write instead`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkflowError {
    /// The file name given to [`crate::parse_workflow`].
    pub file: String,
    /// The 1-based line, or 0 when the problem concerns the whole file.
    pub line: usize,
    /// The 1-based column in characters, or 0 when the problem concerns the whole file.
    pub column: usize,
    /// What kind of problem this is.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub hint: String,
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Errors from `expand_matrix` have no file name, since a matrix does not know its file; they render as
        // `line:col: ...` so the caller can prefix the file.
        match (self.file.is_empty(), self.line == 0) {
            (_, true) => write!(formatter, "{}: {}; {}", self.file, self.message, self.hint),
            (true, false) => write!(formatter, "{}:{}: {}; {}", self.line, self.column, self.message, self.hint),
            (false, false) => {
                write!(formatter, "{}:{}:{}: {}; {}", self.file, self.line, self.column, self.message, self.hint)
            }
        }
    }
}

/// A 1-based line and column in the workflow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl WorkflowError {
    /// An error at `position` of `file`.
    pub(crate) fn at(
        file: &str,
        position: Position,
        kind: ErrorKind,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line: position.line,
            column: position.column,
            kind,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The position of the error.
    pub fn position(&self) -> Position {
        Position { line: self.line, column: self.column }
    }
}
