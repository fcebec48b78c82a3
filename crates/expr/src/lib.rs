//! The GitHub Actions expression language (`${{ ... }}`) as a pure library: lexer, Pratt parser, evaluator,
//! template strings and `if:` conditions, following GitHub's semantics and passing GitHub's published
//! conformance data.
//!
//! ```
//! use baton_expr::{evaluate_expression, NoHost, Object, Value};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let github = Value::from_json_text(r#"{"ref": "refs/heads/main"}"#)?;
//! let contexts: Object = [("github", github)].into_iter().collect();
//! let result = evaluate_expression("github.REF == 'REFS/heads/main' && 'yes'", &contexts, &NoHost)?;
//! assert_eq!(result, Value::from("yes"));
//! # Ok(())
//! # }
//! ```
//!
//! The crate owns no I/O: `hashFiles` and the status functions ask a [`Host`].

mod ast;
mod budget;
mod error;
mod evaluator;
mod expression;
mod functions;
mod host;
mod json_text;
mod lexer;
mod number;
mod options;
mod parser;
mod template;
mod text;
mod value;
mod view;

pub use ast::{ComparisonOperator, Function, Node, NodeKind};
pub use error::{ArgumentCountProblem, ErrorCategory, ExpressionError, SourcePosition};
pub use expression::{Expression, evaluate_expression};
pub use host::{Host, JobStatus, NoHost};
pub use options::{Limits, ParseOptions, WORKFLOW_CONTEXT_NAMES};
pub use template::{
    TemplateSegment, evaluate_if_condition, evaluate_template, evaluate_template_to_string, if_condition_source,
    parse_if_condition, split_template,
};
pub use value::{Kind, Object, Value};
