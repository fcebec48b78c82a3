//! The built-in functions: `contains`, `startsWith`, `endsWith`, `format`, `join`, `toJSON`, `fromJSON`,
//! `case`, `hashFiles` and the status functions. Arguments are evaluated left to right before the call; the
//! parser has already checked names and argument counts.

use std::borrow::Cow;

use crate::ast::{Function, Node};
use crate::budget::{CostedString, TextSink};
use crate::error::ExpressionError;
use crate::evaluator::{ErrorSite, Evaluator, Produced};
use crate::host::JobStatus;
use crate::json_text::write_pretty_json;
use crate::text::{
    contains_ignoring_case, ends_with_ignoring_case, starts_with_ignoring_case, trim_javascript_whitespace,
};
use crate::value::{Kind, Value};
use crate::view::{Evaluated, View, loosely_equals};

/// Evaluates the arguments of a call and then the call itself.
///
/// Only the argument loop is on the stack while arguments are evaluated; the function bodies live in
/// [`apply`], so nested calls use little stack per level.
pub(crate) fn call<'a>(
    evaluator: &mut Evaluator<'a>,
    function: Function,
    argument_nodes: &'a [Node],
    node: &'a Node,
) -> Result<Produced<'a>, ExpressionError> {
    let mut arguments = Vec::with_capacity(argument_nodes.len());
    for argument_node in argument_nodes {
        arguments.push(evaluator.evaluate(argument_node)?);
    }
    apply(evaluator, function, arguments, node)
}

/// Applies `function` to evaluated arguments.
fn apply<'a>(
    evaluator: &mut Evaluator<'a>,
    function: Function,
    arguments: Vec<Produced<'a>>,
    node: &'a Node,
) -> Result<Produced<'a>, ExpressionError> {
    let arguments_cost = arguments.iter().fold(0_usize, |total, argument| total.saturating_add(argument.cost));
    let site = evaluator.site(node);

    // Each arm yields the result and the bytes already charged while building it (strings are charged as they
    // grow, so that oversized results are refused early).
    let (result, prepaid_bytes): (Evaluated<'a>, usize) = match function {
        Function::Contains => {
            let found = contains(evaluator, view_of(&arguments, 0), view_of(&arguments, 1), node)?;
            (Evaluated::Owned(Value::Bool(found)), 0)
        }
        Function::StartsWith | Function::EndsWith => {
            let (text, affix) = (view_of(&arguments, 0), view_of(&arguments, 1));
            let matches = text.is_primitive() && affix.is_primitive() && {
                let (text, affix) = (text.to_display_string(), affix.to_display_string());
                if function == Function::StartsWith {
                    starts_with_ignoring_case(&text, &affix)
                } else {
                    ends_with_ignoring_case(&text, &affix)
                }
            };
            (Evaluated::Owned(Value::Bool(matches)), 0)
        }
        Function::Format => {
            let (text, prepaid) = format(evaluator, &arguments, site)?;
            (Evaluated::Owned(Value::String(text)), prepaid)
        }
        Function::Join => {
            let (text, prepaid) = join(evaluator, &arguments, site)?;
            (Evaluated::Owned(Value::String(text)), prepaid)
        }
        Function::ToJson => {
            let mut output =
                CostedString::new(&mut evaluator.budget).map_err(|exceeded| site.budget_error(exceeded))?;
            write_pretty_json(view_of(&arguments, 0), &mut output).map_err(|exceeded| site.budget_error(exceeded))?;
            let (text, prepaid) = output.finish();
            (Evaluated::Owned(Value::String(text)), prepaid)
        }
        Function::FromJson => (Evaluated::Owned(from_json(view_of(&arguments, 0), site)?), 0),
        Function::Case => (choose_case(arguments, site)?, 0),
        Function::HashFiles => {
            let patterns: Vec<String> =
                arguments.iter().map(|argument| argument.value.view().to_display_string().into_owned()).collect();
            let hash = evaluator.host.hash_files(&patterns).map_err(|message| {
                let quoted: Vec<String> = patterns.iter().map(|pattern| format!("'{pattern}'")).collect();
                site.error(
                    format!("hashFiles({}) failed: {message}", quoted.join(", ")),
                    Some("check that the patterns are relative to the workspace and the files are readable".to_owned()),
                )
            })?;
            (Evaluated::Owned(Value::String(hash)), 0)
        }
        Function::Success | Function::Failure | Function::Cancelled | Function::Always => {
            let status = evaluator.host.status();
            let result = match function {
                Function::Success => status == JobStatus::Success,
                Function::Failure => status == JobStatus::Failure,
                Function::Cancelled => status == JobStatus::Cancelled,
                _ => true,
            };
            (Evaluated::Owned(Value::Bool(result)), 0)
        }
    };
    evaluator.produce(result, arguments_cost.saturating_add(prepaid_bytes), node)
}

/// The view of argument `index`; `null` for a missing argument (the parser rules that out for required ones).
fn view_of<'v>(arguments: &'v [Produced<'_>], index: usize) -> View<'v> {
    arguments.get(index).map_or(View::Null, |argument| argument.value.view())
}

/// `contains(search, item)`: for a string, whether it contains `item` as a substring (both converted to strings,
/// without regard to case); for an array, whether any element equals `item` by `==`; otherwise false.
fn contains(
    evaluator: &mut Evaluator<'_>,
    search: View<'_>,
    item: View<'_>,
    node: &Node,
) -> Result<bool, ExpressionError> {
    match search {
        View::Array(elements) => {
            evaluator.step(elements.len(), node)?;
            Ok(elements.iter().any(|element| loosely_equals(element, item)))
        }
        View::Object(_) => Ok(false),
        _ if item.is_primitive() => Ok(contains_ignoring_case(&search.to_display_string(), &item.to_display_string())),
        _ => Ok(false),
    }
}

/// `join(array, separator)`: the elements converted to strings, separated by `separator` (`,` when it is
/// missing or not a primitive); a primitive first argument is simply converted to a string, an object gives `''`.
fn join(
    evaluator: &mut Evaluator<'_>,
    arguments: &[Produced<'_>],
    site: ErrorSite<'_>,
) -> Result<(String, usize), ExpressionError> {
    let to_error = |exceeded| site.budget_error(exceeded);
    let mut output = CostedString::new(&mut evaluator.budget).map_err(to_error)?;
    match view_of(arguments, 0) {
        View::Array(elements) => {
            let separator: Cow<'_, str> = match arguments.get(1).map(|argument| argument.value.view()) {
                Some(separator) if separator.is_primitive() => separator.to_display_string(),
                _ => Cow::Borrowed(","),
            };
            for (position, element) in elements.iter().enumerate() {
                output.budget().step(1).map_err(to_error)?;
                if position > 0 {
                    output.push_text(&separator).map_err(to_error)?;
                }
                output.push_text(&element.to_display_string()).map_err(to_error)?;
            }
        }
        View::Object(_) => {}
        primitive => output.push_text(&primitive.to_display_string()).map_err(to_error)?,
    }
    Ok(output.finish())
}

/// `format(text, arguments...)`: replaces `{N}` with argument N converted to a string; `{{` and `}}` stand for
/// literal braces. The rules are those of GitHub's runner: N has at most three digits and is below 256, a
/// `{N:specifiers}` form is recognised but rejected, and any other lone brace makes the format string invalid.
fn format(
    evaluator: &mut Evaluator<'_>,
    arguments: &[Produced<'_>],
    site: ErrorSite<'_>,
) -> Result<(String, usize), ExpressionError> {
    let format_text = view_of(arguments, 0).to_display_string();
    let replacements = &arguments[1.min(arguments.len())..];
    let invalid = || {
        site.error(
            format!("The following format string is invalid: {format_text}"),
            Some("placeholders are written {0}, {1}, ...; write {{ and }} for literal braces".to_owned()),
        )
    };
    let to_error = |exceeded| site.budget_error(exceeded);
    let mut output = CostedString::new(&mut evaluator.budget).map_err(to_error)?;
    let text: &str = &format_text;
    let mut index = 0;
    while index < text.len() {
        let left_brace = text[index..].find('{').map(|offset| index + offset);
        let right_brace = text[index..].find('}').map(|offset| index + offset);
        match (left_brace, right_brace) {
            (Some(left), right) if right.is_none_or(|right| right > left) => {
                if text[left + 1..].starts_with('{') {
                    output.push_text(&text[index..=left]).map_err(to_error)?;
                    index = left + 2;
                    continue;
                }
                let Some(placeholder) = read_placeholder(text, left) else {
                    return Err(invalid());
                };
                if !placeholder.specifiers.is_empty() {
                    let kind = replacements
                        .get(placeholder.argument)
                        .map_or(Kind::Null, |argument| argument.value.view().kind());
                    return Err(site.error(
                        format!(
                            "The format specifiers '{}' are not valid for objects of type '{kind}'",
                            placeholder.specifiers
                        ),
                        Some("write the placeholder without specifiers, e.g. {0}".to_owned()),
                    ));
                }
                let Some(replacement) = replacements.get(placeholder.argument) else {
                    return Err(site.error(
                        format!(
                            "The following format string references more arguments than were supplied: {format_text}"
                        ),
                        Some(format!(
                            "{} argument(s) follow the format string, so placeholders go from {{0}} to {{{}}}",
                            replacements.len(),
                            replacements.len().saturating_sub(1)
                        )),
                    ));
                };
                output.push_text(&text[index..left]).map_err(to_error)?;
                output.push_text(&replacement.value.view().to_display_string()).map_err(to_error)?;
                index = placeholder.closing_brace + 1;
            }
            (_, Some(right)) => {
                if !text[right + 1..].starts_with('}') {
                    return Err(invalid());
                }
                output.push_text(&text[index..=right]).map_err(to_error)?;
                index = right + 2;
            }
            (_, None) => {
                output.push_text(&text[index..]).map_err(to_error)?;
                break;
            }
        }
    }
    Ok(output.finish())
}

/// A `{N}` or `{N:specifiers}` placeholder.
struct Placeholder {
    argument: usize,
    specifiers: String,
    closing_brace: usize,
}

/// Reads the placeholder whose `{` is at `left_brace`; `None` when it is not a valid one.
fn read_placeholder(text: &str, left_brace: usize) -> Option<Placeholder> {
    let digits_start = left_brace + 1;
    let digits_length = text[digits_start..].bytes().take_while(u8::is_ascii_digit).count();
    if digits_length == 0 {
        return None;
    }
    let digits_end = digits_start + digits_length;
    let argument: u8 = text[digits_start..digits_end].parse().ok()?;
    let rest = &text[digits_end..];
    if rest.starts_with('}') {
        return Some(Placeholder {
            argument: usize::from(argument),
            specifiers: String::new(),
            closing_brace: digits_end,
        });
    }
    let specifier_text = rest.strip_prefix(':')?;
    let mut specifiers = String::new();
    let mut characters = specifier_text.char_indices().peekable();
    while let Some((offset, character)) = characters.next() {
        if character != '}' {
            specifiers.push(character);
            continue;
        }
        if characters.peek().is_some_and(|(_, next)| *next == '}') {
            characters.next();
            specifiers.push('}');
            continue;
        }
        return Some(Placeholder {
            argument: usize::from(argument),
            specifiers,
            closing_brace: digits_end + 1 + offset,
        });
    }
    None
}

/// `fromJSON(text)`: the value the JSON text describes.
fn from_json(argument: View<'_>, site: ErrorSite<'_>) -> Result<Value, ExpressionError> {
    let text = argument.to_display_string();
    if trim_javascript_whitespace(&text).is_empty() {
        return Err(site.error(
            "Error parsing fromJson: empty input",
            Some(
                "fromJSON needs JSON text such as '{\"key\": \"value\"}', '[1, 2]' or 'true'; check that the value \
                  passed in is set"
                    .to_owned(),
            ),
        ));
    }
    Value::from_json_text(&text).map_err(|error| {
        site.error(
            format!("Error parsing fromJson: {error}"),
            Some("fromJSON needs valid JSON text: double-quoted keys and strings, no trailing commas".to_owned()),
        )
    })
}

/// `case(predicate1, value1, predicate2, value2, ..., default)`: the value after the first predicate that is
/// `true`, or the default. Every predicate looked at must be a boolean.
fn choose_case<'a>(arguments: Vec<Produced<'a>>, site: ErrorSite<'_>) -> Result<Evaluated<'a>, ExpressionError> {
    let mut chosen = arguments.len().saturating_sub(1);
    for pair_start in (0..arguments.len().saturating_sub(1)).step_by(2) {
        match arguments[pair_start].value.view() {
            View::Bool(true) => {
                chosen = pair_start + 1;
                break;
            }
            View::Bool(false) => {}
            _ => {
                return Err(site.error(
                    "case predicate must evaluate to a boolean value",
                    Some(
                        "compare explicitly, e.g. case(github.ref == 'refs/heads/main', 'production', 'staging')"
                            .to_owned(),
                    ),
                ));
            }
        }
    }
    Ok(arguments.into_iter().nth(chosen).map_or(Evaluated::Owned(Value::Null), |argument| argument.value))
}
