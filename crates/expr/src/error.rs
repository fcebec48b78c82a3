//! Everything that can go wrong with an expression, from lexing to evaluation, as one error type.
//!
//! Each message starts with the sentence GitHub itself reports (for example `Unexpected symbol: '='. Located at
//! position 3 within expression: 1 = 2`), so users who search for it find GitHub's documentation, and continues
//! on a `help:` line that says what to write instead.

use std::fmt;

/// Where in an expression something is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourcePosition {
    /// The byte offset from the start of the expression.
    pub byte_offset: usize,
    /// The 1-based position counted in characters from the start of the expression (not from the start of its
    /// line), which is the number GitHub prints after "Located at position".
    pub column: usize,
}

impl SourcePosition {
    /// The position of `byte_offset` within `expression`.
    pub(crate) fn at(expression: &str, byte_offset: usize) -> Self {
        let clamped_offset = byte_offset.min(expression.len());
        let preceding = expression.get(..clamped_offset).unwrap_or(expression);
        Self { byte_offset: clamped_offset, column: preceding.chars().count() + 1 }
    }
}

/// The stage an error belongs to, as GitHub's conformance data classifies errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    Lexing,
    Parsing,
    Evaluation,
}

/// Why a function call has the wrong number of arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgumentCountProblem {
    TooFew,
    TooMany,
    /// `case` takes predicate/value pairs plus a default, so its argument count must be odd.
    EvenCount,
}

impl ArgumentCountProblem {
    fn github_description(self) -> &'static str {
        match self {
            ArgumentCountProblem::TooFew => "Too few parameters supplied",
            ArgumentCountProblem::TooMany => "Too many parameters supplied",
            ArgumentCountProblem::EvenCount => {
                "Even number of parameters supplied, requires an odd number of parameters"
            }
        }
    }
}

/// An error from lexing, parsing or evaluating an expression, or from splitting a template string.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpressionError {
    /// The lexer met text that is not a token: a malformed number, an illegal identifier, a single `=`, `&` or
    /// `|`, or an unterminated string.
    #[error(
        "Unexpected symbol: '{symbol}'. Located at position {} within expression: {expression}\n  help: {hint}",
        position.column
    )]
    InvalidToken { symbol: String, position: SourcePosition, expression: String, hint: String },

    /// The parser met a token where it cannot be.
    #[error(
        "Unexpected symbol: '{symbol}'. Located at position {} within expression: {expression}\n  help: {hint}",
        position.column
    )]
    UnexpectedSymbol { symbol: String, position: SourcePosition, expression: String, hint: String },

    /// The expression ends where more is needed; `last_symbol` is the last token before the end.
    #[error(
        "Unexpected end of expression: '{last_symbol}'. Located at position {} within expression: {expression}\n  \
         help: {hint}",
        position.column
    )]
    UnexpectedEnd { last_symbol: String, position: SourcePosition, expression: String, hint: String },

    /// A name that is neither a function call nor an allowed context (named-value).
    #[error(
        "Unrecognized named-value: '{name}'. Located at position {} within expression: {expression}\n  help: {}",
        position.column,
        named_value_hint(name, allowed_names)
    )]
    UnrecognizedNamedValue { name: String, position: SourcePosition, expression: String, allowed_names: Vec<String> },

    /// A call to a function that does not exist or is not available here.
    #[error(
        "Unrecognized function: '{name}'. Located at position {} within expression: {expression}\n  help: {}",
        position.column,
        function_hint(available_functions)
    )]
    UnrecognizedFunction {
        name: String,
        position: SourcePosition,
        expression: String,
        available_functions: Vec<String>,
    },

    /// A function called with a number of arguments it does not accept.
    #[error(
        "{}: '{function}'. Located at position {} within expression: {expression}\n  help: {function}() takes \
         {accepted}; {supplied} supplied",
        problem.github_description(),
        position.column
    )]
    WrongArgumentCount {
        function: String,
        problem: ArgumentCountProblem,
        supplied: usize,
        accepted: String,
        position: SourcePosition,
        expression: String,
    },

    /// Operators, groups, property accesses and calls are nested more deeply than allowed.
    #[error(
        "Exceeded max expression depth {limit}. Located at position {} within expression: {expression}\n  help: \
         simplify the expression; at most {limit} levels of nested parentheses, function calls, `!`, `&&`/`||` \
         chains and property or index accesses are allowed",
        position.column
    )]
    MaxDepthExceeded { limit: usize, position: SourcePosition, expression: String },

    /// The expression is longer than allowed.
    #[error(
        "Exceeded max expression length {limit}: the expression has {length} characters\n  help: shorten the \
         expression, for example by moving logic into a script step"
    )]
    MaxLengthExceeded { limit: usize, length: usize },

    /// Evaluation failed: an invalid `format` string, invalid JSON in `fromJSON`, a non-boolean `case` predicate,
    /// or a failure reported by the host (`hashFiles`).
    #[error(
        "{message}. Located at position {} within expression: {expression}{}",
        position.column,
        optional_hint(hint.as_deref())
    )]
    Evaluation { message: String, position: SourcePosition, expression: String, hint: Option<String> },

    /// Intermediate results needed more memory than allowed.
    #[error(
        "The maximum allowed memory size was exceeded while evaluating the following expression: {expression}. \
         Located at position {}\n  help: the intermediate results need more than {limit_bytes} bytes; apply \
         toJSON, format or join to the part of the data you need, e.g. toJSON(github.event.pull_request) instead \
         of toJSON(github)",
        position.column
    )]
    MemoryLimitExceeded { limit_bytes: usize, position: SourcePosition, expression: String },

    /// Evaluation took more steps than allowed.
    #[error(
        "The maximum allowed number of evaluation steps ({limit}) was exceeded while evaluating the following \
         expression: {expression}. Located at position {}\n  help: filter (`*`) or search (contains, join) \
         smaller parts of the data",
        position.column
    )]
    StepLimitExceeded { limit: usize, position: SourcePosition, expression: String },

    /// A template string (text with `${{ }}` segments) is malformed.
    #[error("{message}. Located at byte {byte_offset} of: {template}\n  help: {hint}")]
    Template { message: String, byte_offset: usize, template: String, hint: String },
}

impl ExpressionError {
    /// The stage the error belongs to.
    pub fn category(&self) -> ErrorCategory {
        match self {
            ExpressionError::InvalidToken { .. } => ErrorCategory::Lexing,
            ExpressionError::UnexpectedSymbol { .. }
            | ExpressionError::UnexpectedEnd { .. }
            | ExpressionError::UnrecognizedNamedValue { .. }
            | ExpressionError::UnrecognizedFunction { .. }
            | ExpressionError::WrongArgumentCount { .. }
            | ExpressionError::MaxDepthExceeded { .. }
            | ExpressionError::MaxLengthExceeded { .. }
            | ExpressionError::Template { .. } => ErrorCategory::Parsing,
            ExpressionError::Evaluation { .. }
            | ExpressionError::MemoryLimitExceeded { .. }
            | ExpressionError::StepLimitExceeded { .. } => ErrorCategory::Evaluation,
        }
    }

    /// Where in the expression the error is, when it has a place.
    pub fn position(&self) -> Option<SourcePosition> {
        match self {
            ExpressionError::InvalidToken { position, .. }
            | ExpressionError::UnexpectedSymbol { position, .. }
            | ExpressionError::UnexpectedEnd { position, .. }
            | ExpressionError::UnrecognizedNamedValue { position, .. }
            | ExpressionError::UnrecognizedFunction { position, .. }
            | ExpressionError::WrongArgumentCount { position, .. }
            | ExpressionError::MaxDepthExceeded { position, .. }
            | ExpressionError::Evaluation { position, .. }
            | ExpressionError::MemoryLimitExceeded { position, .. }
            | ExpressionError::StepLimitExceeded { position, .. } => Some(*position),
            ExpressionError::MaxLengthExceeded { .. } | ExpressionError::Template { .. } => None,
        }
    }
}

fn named_value_hint(name: &str, allowed_names: &[String]) -> String {
    if let Some(function) = crate::ast::Function::from_name(name) {
        let arguments = if function.argument_range().1 == 0 { "" } else { "..." };
        return format!("'{name}' is a function; call it with parentheses: {}({arguments})", function.name());
    }
    if allowed_names.is_empty() {
        return "no contexts are available here; use a literal such as 'text', 42, true or null, or call a function \
                such as format('...')"
            .to_owned();
    }
    format!(
        "the contexts available here are: {}; a string needs quotes ('text'), a function call needs parentheses",
        allowed_names.join(", ")
    )
}

fn function_hint(available_functions: &[String]) -> String {
    format!("the functions available here are: {}", available_functions.join(", "))
}

fn optional_hint(hint: Option<&str>) -> OptionalHint<'_> {
    OptionalHint(hint)
}

/// Displays `\n  help: ...` when there is a hint and nothing otherwise.
struct OptionalHint<'h>(Option<&'h str>);

impl fmt::Display for OptionalHint<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(hint) => write!(formatter, "\n  help: {hint}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_the_start_of_the_expression() {
        let expression = "a\n😊 b";
        assert_eq!(SourcePosition::at(expression, 0), SourcePosition { byte_offset: 0, column: 1 });
        // The emoji is four bytes but one character; the newline does not restart the count.
        assert_eq!(SourcePosition::at(expression, 7), SourcePosition { byte_offset: 7, column: 5 });
        assert_eq!(SourcePosition::at(expression, 99).column, 6);
    }

    #[test]
    fn messages_start_with_githubs_sentence_and_end_with_help() {
        let error = ExpressionError::WrongArgumentCount {
            function: "join".to_owned(),
            problem: ArgumentCountProblem::TooFew,
            supplied: 0,
            accepted: "1 or 2 arguments".to_owned(),
            position: SourcePosition { byte_offset: 0, column: 1 },
            expression: "join()".to_owned(),
        };
        expect_test::expect![[r#"
            Too few parameters supplied: 'join'. Located at position 1 within expression: join()
              help: join() takes 1 or 2 arguments; 0 supplied"#]]
        .assert_eq(&error.to_string());
        assert_eq!(error.category(), ErrorCategory::Parsing);
    }
}
