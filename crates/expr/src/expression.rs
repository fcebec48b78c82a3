//! A parsed expression and the entry points that parse and evaluate one.

use crate::ast::Node;
use crate::error::ExpressionError;
use crate::evaluator::Evaluator;
use crate::host::Host;
use crate::lexer::tokenize;
use crate::options::{Limits, ParseOptions};
use crate::parser::parse_tokens;
use crate::value::{Object, Value};

/// A parsed expression, ready to be evaluated any number of times.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    source: String,
    /// `None` for an empty expression, which evaluates to `null`.
    root: Option<Node>,
    limits: Limits,
}

impl Expression {
    /// Parses `source` (the text between `${{` and `}}`, or a bare `if:` condition).
    pub fn parse(source: &str, options: &ParseOptions) -> Result<Expression, ExpressionError> {
        let length = source.chars().count();
        if length > options.limits.max_expression_length {
            return Err(ExpressionError::MaxLengthExceeded { limit: options.limits.max_expression_length, length });
        }
        let tokens = tokenize(source)?;
        let root = parse_tokens(source, tokens, options)?;
        Ok(Expression { source: source.to_owned(), root, limits: options.limits })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The syntax tree; `None` for an empty expression.
    pub fn root(&self) -> Option<&Node> {
        self.root.as_ref()
    }

    /// Whether the expression calls `success()`, `failure()`, `cancelled()` or `always()` anywhere.
    pub fn calls_status_function(&self) -> bool {
        self.root.as_ref().is_some_and(Node::calls_status_function)
    }

    /// Evaluates the expression. `contexts` maps context names (`github`, `env`, ...) to their values; a name the
    /// parse options allowed but `contexts` lacks reads as `null`.
    pub fn evaluate(&self, contexts: &Object, host: &dyn Host) -> Result<Value, ExpressionError> {
        let Some(root) = &self.root else {
            return Ok(Value::Null);
        };
        let mut evaluator = Evaluator::new(&self.source, contexts, host, self.limits);
        let result = evaluator.evaluate(root)?;
        Ok(result.value.into_value())
    }
}

/// Parses and evaluates `source` in one go, allowing exactly the context names present in `contexts`, every
/// function and GitHub's limits.
pub fn evaluate_expression(source: &str, contexts: &Object, host: &dyn Host) -> Result<Value, ExpressionError> {
    let options = ParseOptions::with_named_values(contexts.keys());
    Expression::parse(source, &options)?.evaluate(contexts, host)
}
