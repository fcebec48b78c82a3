//! Template strings — YAML values with `${{ expr }}` segments embedded in text — and `if:` conditions.
//!
//! The rules follow GitHub's workflow parser:
//!
//! - an expression ends at the first `}}` outside a single-quoted string literal (`${{ '}}' }}` is one
//!   expression); a `${{` without a closing `}}` and an empty `${{ }}` are errors;
//! - a value that is exactly one `${{ expr }}` evaluates to the expression's value, of any kind; a value with
//!   surrounding text evaluates to a string, each expression converted to a string as `format` converts it;
//! - an `if:` condition may be written with or without `${{ }}`; when it calls none of `success()`, `failure()`,
//!   `cancelled()` and `always()` it is evaluated as `success() && (condition)`, and an empty condition is
//!   `success()`. A condition with text around its `${{ }}` becomes a `format(...)` call, exactly as GitHub
//!   rewrites it, so `if: ${{ false }} && true` is the non-empty string `'false && true'` and therefore true.

use crate::error::ExpressionError;
use crate::expression::Expression;
use crate::host::Host;
use crate::options::ParseOptions;
use crate::text::{is_javascript_whitespace, trim_javascript_whitespace};
use crate::value::{Object, Value};

const OPEN_EXPRESSION: &str = "${{";
const CLOSE_EXPRESSION: &str = "}}";

/// A piece of a template string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSegment<'t> {
    /// Literal text, kept as written.
    Text(&'t str),
    /// The text inside `${{ }}` with surrounding whitespace removed, and its byte offset in the template.
    Expression { source: &'t str, byte_offset: usize },
}

/// Splits a template string into text and expression segments.
pub fn split_template(template: &str) -> Result<Vec<TemplateSegment<'_>>, ExpressionError> {
    let bytes = template.as_bytes();
    let mut segments = Vec::new();
    let mut cursor = 0;
    while let Some(relative_start) = template[cursor..].find(OPEN_EXPRESSION) {
        let start = cursor + relative_start;
        if start > cursor {
            segments.push(TemplateSegment::Text(&template[cursor..start]));
        }
        let inner_start = start + OPEN_EXPRESSION.len();
        // Find the `}}` that closes the expression, skipping over string literals. Toggling on every quote also
        // handles the escaped quote `''` correctly.
        let mut in_string = false;
        let mut closing_brace = None;
        for index in inner_start..bytes.len() {
            match bytes[index] {
                b'\'' => in_string = !in_string,
                b'}' if !in_string && index > inner_start && bytes[index - 1] == b'}' => {
                    closing_brace = Some(index);
                    break;
                }
                _ => {}
            }
        }
        let Some(closing_brace) = closing_brace else {
            return Err(ExpressionError::Template {
                message: "The expression is not closed. An unescaped ${{ sequence was found, but the closing }} \
                          sequence was not found"
                    .to_owned(),
                byte_offset: start,
                template: template.to_owned(),
                hint: "end the expression with }}; to write a literal ${{, use ${{ '${{' }}".to_owned(),
            });
        };
        let raw_inner = &template[inner_start..closing_brace + 1 - CLOSE_EXPRESSION.len()];
        let source = trim_javascript_whitespace(raw_inner);
        if source.is_empty() {
            return Err(ExpressionError::Template {
                message: "An expression was expected".to_owned(),
                byte_offset: start,
                template: template.to_owned(),
                hint: "write an expression between ${{ and }}, e.g. ${{ github.ref }}".to_owned(),
            });
        }
        let leading_whitespace = raw_inner.len() - raw_inner.trim_start_matches(is_javascript_whitespace).len();
        let byte_offset = inner_start + leading_whitespace;
        segments.push(TemplateSegment::Expression { source, byte_offset });
        cursor = closing_brace + 1;
    }
    if cursor < template.len() {
        segments.push(TemplateSegment::Text(&template[cursor..]));
    }
    Ok(segments)
}

/// Evaluates a template string. A template that is exactly one `${{ expr }}` yields the expression's value
/// itself (an object stays an object); otherwise the result is a string.
pub fn evaluate_template(
    template: &str,
    options: &ParseOptions,
    contexts: &Object,
    host: &dyn Host,
) -> Result<Value, ExpressionError> {
    let segments = split_template(template)?;
    if let [TemplateSegment::Expression { source, .. }] = segments.as_slice() {
        return Expression::parse(source, options)?.evaluate(contexts, host);
    }
    let mut text = String::with_capacity(template.len());
    for segment in segments {
        match segment {
            TemplateSegment::Text(literal) => text.push_str(literal),
            TemplateSegment::Expression { source, .. } => {
                let value = Expression::parse(source, options)?.evaluate(contexts, host)?;
                text.push_str(&value.to_display_string());
            }
        }
    }
    Ok(Value::String(text))
}

/// Evaluates a template string to a string; a template that is one expression yielding a non-string converts
/// that value as `format` does (`1` → `"1"`, objects → `"Object"`).
pub fn evaluate_template_to_string(
    template: &str,
    options: &ParseOptions,
    contexts: &Object,
    host: &dyn Host,
) -> Result<String, ExpressionError> {
    match evaluate_template(template, options, contexts, host)? {
        Value::String(text) => Ok(text),
        other => Ok(other.to_display_string()),
    }
}

/// The expression GitHub evaluates for an `if:` condition, as text: the condition without `${{ }}` (or, with
/// text around the `${{ }}`, the equivalent `format(...)` call), wrapped as `success() && (...)` unless it calls
/// a status function; `success()` when the condition is empty.
pub fn if_condition_source(condition: &str, options: &ParseOptions) -> Result<String, ExpressionError> {
    let options = options.clone().status_functions(true);
    let unwrapped = unwrap_condition(condition)?;
    if unwrapped.is_empty() {
        return Ok("success()".to_owned());
    }
    let parsed = Expression::parse(&unwrapped, &options)?;
    if parsed.calls_status_function() {
        return Ok(unwrapped);
    }
    Ok(format!("success() && ({unwrapped})"))
}

/// Parses an `if:` condition as GitHub does (see [`if_condition_source`]). Status functions are always available
/// in conditions, whatever `options` says.
pub fn parse_if_condition(condition: &str, options: &ParseOptions) -> Result<Expression, ExpressionError> {
    let source = if_condition_source(condition, options)?;
    Expression::parse(&source, &options.clone().status_functions(true))
}

/// Evaluates an `if:` condition to whether the job or step should run.
pub fn evaluate_if_condition(
    condition: &str,
    options: &ParseOptions,
    contexts: &Object,
    host: &dyn Host,
) -> Result<bool, ExpressionError> {
    Ok(parse_if_condition(condition, options)?.evaluate(contexts, host)?.is_truthy())
}

/// The condition as an expression: the inside of a lone `${{ }}`, a `format(...)` call for text mixed with
/// `${{ }}`, or the trimmed condition itself.
fn unwrap_condition(condition: &str) -> Result<String, ExpressionError> {
    if !condition.contains(OPEN_EXPRESSION) {
        return Ok(trim_javascript_whitespace(condition).to_owned());
    }
    let segments = split_template(condition)?;
    if let [TemplateSegment::Expression { source, .. }] = segments.as_slice() {
        return Ok((*source).to_owned());
    }
    let mut format_string = String::new();
    let mut arguments = String::new();
    let mut argument_count = 0;
    for segment in segments {
        match segment {
            TemplateSegment::Text(literal) => {
                format_string.push_str(&literal.replace('\'', "''").replace('{', "{{").replace('}', "}}"));
            }
            TemplateSegment::Expression { source, .. } => {
                format_string.push_str(&format!("{{{argument_count}}}"));
                arguments.push_str(", ");
                arguments.push_str(source);
                argument_count += 1;
            }
        }
    }
    Ok(format!("format('{format_string}'{arguments})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{JobStatus, NoHost};

    #[test]
    fn splits_text_and_expressions() {
        let segments = split_template("a ${{ x }} b ${{ '}}' }}").expect("valid template");
        assert_eq!(
            segments,
            vec![
                TemplateSegment::Text("a "),
                TemplateSegment::Expression { source: "x", byte_offset: 6 },
                TemplateSegment::Text(" b "),
                TemplateSegment::Expression { source: "'}}'", byte_offset: 17 },
            ]
        );
    }

    #[test]
    fn reports_unclosed_and_empty_expressions() {
        for (template, message) in [("${{ x", "is not closed"), ("a ${{ }} b", "An expression was expected")] {
            let error = split_template(template).expect_err("invalid template");
            assert!(error.to_string().contains(message), "{template}: {error}");
        }
    }

    #[test]
    fn condition_sources_follow_githubs_rewriting() {
        let options = ParseOptions::default();
        let cases = [
            ("", "success()"),
            ("   ", "success()"),
            ("github.ref == 'x'", "success() && (github.ref == 'x')"),
            ("${{ github.ref == 'x' }}", "success() && (github.ref == 'x')"),
            ("always()", "always()"),
            ("${{ failure() || env.X }}", "failure() || env.X"),
            ("contains(format('{0}', cancelled()), 'x')", "contains(format('{0}', cancelled()), 'x')"),
            ("'success()' == 'x'", "success() && ('success()' == 'x')"),
            ("${{ false }} && true", "success() && (format('{0} && true', false))"),
            ("it's ${{ env.A }} {x}", "success() && (format('it''s {0} {{x}}', env.A))"),
        ];
        for (condition, expected) in cases {
            assert_eq!(if_condition_source(condition, &options).expect("valid condition"), expected, "{condition}");
        }
    }

    struct StatusHost(JobStatus);

    impl Host for StatusHost {
        fn hash_files(&self, _patterns: &[String]) -> Result<String, String> {
            Err("no files".to_owned())
        }

        fn status(&self) -> JobStatus {
            self.0
        }
    }

    #[test]
    fn conditions_evaluate_with_the_implicit_success_check() {
        let options = ParseOptions::default();
        let contexts = Object::new();
        let cases: &[(&str, JobStatus, bool)] = &[
            ("true", JobStatus::Success, true),
            ("true", JobStatus::Failure, false),
            ("${{ true }}", JobStatus::Cancelled, false),
            ("always()", JobStatus::Failure, true),
            ("failure()", JobStatus::Failure, true),
            ("failure()", JobStatus::Success, false),
            ("cancelled()", JobStatus::Cancelled, true),
            ("", JobStatus::Success, true),
            ("", JobStatus::Failure, false),
            ("false", JobStatus::Success, false),
            ("${{ false }} && true", JobStatus::Success, true),
            ("${{ false }}", JobStatus::Success, false),
            ("!cancelled() && 0", JobStatus::Success, false),
        ];
        for (condition, status, expected) in cases {
            let result = evaluate_if_condition(condition, &options, &contexts, &StatusHost(*status));
            assert_eq!(result.expect("evaluates"), *expected, "if: {condition} with {status:?}");
        }
    }

    #[test]
    fn templates_keep_single_values_and_join_mixed_text() {
        let options = ParseOptions::with_named_values(["matrix"]);
        let contexts: Object =
            [("matrix", Value::Object([("os", Value::from("linux")), ("n", Value::from(2))].into_iter().collect()))]
                .into_iter()
                .collect();
        let whole = evaluate_template("${{ matrix }}", &options, &contexts, &NoHost).expect("evaluates");
        assert_eq!(whole.get("OS"), Some(&Value::from("linux")));
        let mixed =
            evaluate_template("build-${{ matrix.os }}-${{ matrix.n }} ${{ matrix }}", &options, &contexts, &NoHost);
        assert_eq!(mixed.expect("evaluates"), Value::from("build-linux-2 Object"));
        let plain = evaluate_template_to_string("no expressions", &options, &contexts, &NoHost);
        assert_eq!(plain.expect("evaluates"), "no expressions");
        let number = evaluate_template_to_string("${{ matrix.n }}", &options, &contexts, &NoHost);
        assert_eq!(number.expect("evaluates"), "2");
    }
}
