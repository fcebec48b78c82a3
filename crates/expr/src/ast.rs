//! The syntax tree of a parsed expression, with source positions, and the table of built-in functions.
//!
//! Chains of `&&`, of `||` and of comparison operators are stored flat (one node with a list of operands)
//! rather than as a deep left-leaning tree. Besides matching GitHub's own tree for `&&`/`||`, this keeps the
//! evaluator's recursion bounded by the depth limit: GitHub does not count `==` chains toward its depth limit, so
//! `1 == 1 == 1 == ...` may be thousands of operators long.

use std::fmt;

use crate::error::SourcePosition;
use crate::value::Value;

/// A node of the syntax tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    /// Where the node is: its first token for literals, names and calls; its operator for operations; the `.` or
    /// `[` for property, index and filter accesses.
    pub position: SourcePosition,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `null`, `true`, `false`, a number or a string.
    Literal(Value),
    /// A context name such as `github`, spelled as written.
    NamedValue(String),
    /// `target.name`.
    Property { target: Box<Node>, name: String },
    /// `target[index]`.
    Index { target: Box<Node>, index: Box<Node> },
    /// `target.*` or `target[*]`: the object filter.
    Filter { target: Box<Node> },
    /// A function call; `name` is spelled as written, `function` identifies it.
    Call { function: Function, name: String, arguments: Vec<Node> },
    /// `!operand`.
    Not(Box<Node>),
    /// `first op1 second op2 third ...` where all operators have the same precedence (all of `==`/`!=`, or all
    /// of `<`/`<=`/`>`/`>=`), evaluated left to right: `3 < 2 < 1` is `(3 < 2) < 1`.
    Comparison { first: Box<Node>, rest: Vec<(ComparisonOperator, Node)> },
    /// `a && b && ...`: the first falsy operand, or the last one.
    And(Vec<Node>),
    /// `a || b || ...`: the first truthy operand, or the last one.
    Or(Vec<Node>),
}

/// The comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComparisonOperator {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl ComparisonOperator {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            ComparisonOperator::Equal => "==",
            ComparisonOperator::NotEqual => "!=",
            ComparisonOperator::Less => "<",
            ComparisonOperator::LessOrEqual => "<=",
            ComparisonOperator::Greater => ">",
            ComparisonOperator::GreaterOrEqual => ">=",
        }
    }

    /// Whether this is `==` or `!=` (which bind more loosely than `<`, `<=`, `>`, `>=`).
    pub fn is_equality(self) -> bool {
        matches!(self, ComparisonOperator::Equal | ComparisonOperator::NotEqual)
    }
}

impl fmt::Display for ComparisonOperator {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.symbol())
    }
}

/// The built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    Case,
    HashFiles,
    Success,
    Failure,
    Cancelled,
    Always,
}

/// No upper bound on the argument count (`case`).
const UNLIMITED: usize = usize::MAX;

impl Function {
    /// Every function, in the order error messages list them.
    pub const ALL: [Function; 13] = [
        Function::Contains,
        Function::StartsWith,
        Function::EndsWith,
        Function::Format,
        Function::Join,
        Function::ToJson,
        Function::FromJson,
        Function::Case,
        Function::HashFiles,
        Function::Success,
        Function::Failure,
        Function::Cancelled,
        Function::Always,
    ];

    /// Finds a function by name, without regard to case as in GitHub (`toJSON`, `tojson` and `ToJson` are the
    /// same function).
    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|function| function.name().eq_ignore_ascii_case(name))
    }

    /// The name as GitHub's documentation spells it.
    pub fn name(self) -> &'static str {
        match self {
            Function::Contains => "contains",
            Function::StartsWith => "startsWith",
            Function::EndsWith => "endsWith",
            Function::Format => "format",
            Function::Join => "join",
            Function::ToJson => "toJSON",
            Function::FromJson => "fromJSON",
            Function::Case => "case",
            Function::HashFiles => "hashFiles",
            Function::Success => "success",
            Function::Failure => "failure",
            Function::Cancelled => "cancelled",
            Function::Always => "always",
        }
    }

    /// The fewest and most arguments the function accepts (GitHub's table).
    pub fn argument_range(self) -> (usize, usize) {
        match self {
            Function::Contains | Function::StartsWith | Function::EndsWith => (2, 2),
            Function::Format => (1, 255),
            Function::Join => (1, 2),
            Function::ToJson | Function::FromJson => (1, 1),
            Function::Case => (3, UNLIMITED),
            Function::HashFiles => (1, 255),
            Function::Success | Function::Failure | Function::Cancelled | Function::Always => (0, 0),
        }
    }

    /// The accepted argument counts in words, for error messages.
    pub fn accepted_arguments(self) -> String {
        match (self, self.argument_range()) {
            (Function::Case, _) => "an odd number of arguments, at least 3 (predicate, value, ..., default)".to_owned(),
            (_, (0, 0)) => "no arguments".to_owned(),
            (_, (1, 1)) => "exactly 1 argument".to_owned(),
            (_, (minimum, maximum)) if minimum == maximum => format!("exactly {minimum} arguments"),
            (_, (minimum, maximum)) if maximum == minimum + 1 => format!("{minimum} or {maximum} arguments"),
            (_, (minimum, maximum)) => format!("{minimum} to {maximum} arguments"),
        }
    }

    /// Whether this is one of the job-status functions `success`, `failure`, `cancelled` and `always`, whose
    /// presence stops GitHub from adding `success() &&` to an `if:` condition.
    pub fn is_status_function(self) -> bool {
        matches!(self, Function::Success | Function::Failure | Function::Cancelled | Function::Always)
    }
}

impl Node {
    /// Whether the tree calls a status function anywhere (including inside arguments and index expressions).
    pub fn calls_status_function(&self) -> bool {
        match &self.kind {
            NodeKind::Literal(_) | NodeKind::NamedValue(_) => false,
            NodeKind::Property { target, .. } | NodeKind::Filter { target } => target.calls_status_function(),
            NodeKind::Index { target, index } => target.calls_status_function() || index.calls_status_function(),
            NodeKind::Call { function, arguments, .. } => {
                function.is_status_function() || arguments.iter().any(Node::calls_status_function)
            }
            NodeKind::Not(operand) => operand.calls_status_function(),
            NodeKind::Comparison { first, rest } => {
                first.calls_status_function() || rest.iter().any(|(_, operand)| operand.calls_status_function())
            }
            NodeKind::And(operands) | NodeKind::Or(operands) => operands.iter().any(Node::calls_status_function),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_are_case_insensitive() {
        assert_eq!(Function::from_name("TOJSON"), Some(Function::ToJson));
        assert_eq!(Function::from_name("startswith"), Some(Function::StartsWith));
        assert_eq!(Function::from_name("length"), None);
    }

    #[test]
    fn accepted_argument_descriptions() {
        assert_eq!(Function::Join.accepted_arguments(), "1 or 2 arguments");
        assert_eq!(Function::Contains.accepted_arguments(), "exactly 2 arguments");
        assert_eq!(Function::Format.accepted_arguments(), "1 to 255 arguments");
        assert_eq!(Function::Always.accepted_arguments(), "no arguments");
    }
}
