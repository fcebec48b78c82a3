//! The JSON text `toJSON` produces: exactly JavaScript's `JSON.stringify(value, null, 2)`, which is what GitHub
//! emits — two-space indentation, `"key": value`, `[]` and `{}` for empty collections, numbers in JavaScript's
//! shortest form, `NaN` and infinities as `null`, and only `"`, `\` and control characters escaped.
//!
//! The writer walks the value with an explicit stack, so arbitrarily deep values cannot overflow the call stack.

use crate::budget::{BudgetExceeded, TextSink};
use crate::number::format_number_like_javascript;
use crate::value::Object;
use crate::view::{ArrayView, View};

/// Writes `view` as pretty JSON into `sink`, telling the sink about each array element and object member so it
/// can count them as evaluation steps.
pub(crate) fn write_pretty_json(view: View<'_>, sink: &mut impl TextSink) -> Result<(), BudgetExceeded> {
    let mut open_collections: Vec<OpenCollection<'_>> = Vec::new();
    write_value_start(view, sink, &mut open_collections)?;
    loop {
        let nesting = open_collections.len();
        let Some(collection) = open_collections.last_mut() else { break };
        match collection.next_member() {
            Some((is_first, key, member)) => {
                sink.count_element()?;
                sink.push_text(if is_first { "\n" } else { ",\n" })?;
                write_indentation(nesting, sink)?;
                if let Some(key) = key {
                    write_json_string(key, sink)?;
                    sink.push_text(": ")?;
                }
                write_value_start(member, sink, &mut open_collections)?;
            }
            None => {
                let closing = collection.closing_bracket();
                open_collections.pop();
                sink.push_text("\n")?;
                write_indentation(nesting - 1, sink)?;
                sink.push_text(closing)?;
            }
        }
    }
    Ok(())
}

/// The pretty JSON of `view` without any budget, for [`crate::Value::to_json_pretty`].
pub(crate) fn to_pretty_json_unbounded(view: View<'_>) -> String {
    let mut text = String::new();
    // Writing into a plain `String` never fails and counts no steps.
    let _ = write_pretty_json(view, &mut text);
    text
}

/// An array or object whose members are being written.
enum OpenCollection<'v> {
    Array { items: ArrayView<'v>, next: usize },
    Object { object: &'v Object, next: usize },
}

impl<'v> OpenCollection<'v> {
    /// The next member to write: whether it is the first, its key (for objects) and its value.
    fn next_member(&mut self) -> Option<(bool, Option<&'v str>, View<'v>)> {
        match self {
            OpenCollection::Array { items, next } => {
                let item = items.get(*next)?;
                *next += 1;
                Some((*next == 1, None, item))
            }
            OpenCollection::Object { object, next } => {
                let (key, value) = object.entry_at(*next)?;
                *next += 1;
                Some((*next == 1, Some(key), View::of_value(value)))
            }
        }
    }

    fn closing_bracket(&self) -> &'static str {
        match self {
            OpenCollection::Array { .. } => "]",
            OpenCollection::Object { .. } => "}",
        }
    }
}

/// Writes a scalar completely, an empty collection as `[]` or `{}`, or the opening bracket of a non-empty
/// collection (whose members the caller then writes).
fn write_value_start<'v>(
    view: View<'v>,
    sink: &mut impl TextSink,
    open_collections: &mut Vec<OpenCollection<'v>>,
) -> Result<(), BudgetExceeded> {
    match view {
        View::Null => sink.push_text("null"),
        View::Bool(true) => sink.push_text("true"),
        View::Bool(false) => sink.push_text("false"),
        View::Number(number) if number.is_finite() => sink.push_text(&format_number_like_javascript(number)),
        View::Number(_) => sink.push_text("null"),
        View::String(text) => write_json_string(text, sink),
        View::Array(items) if items.len() == 0 => sink.push_text("[]"),
        View::Array(items) => {
            open_collections.push(OpenCollection::Array { items, next: 0 });
            sink.push_text("[")
        }
        View::Object(object) if object.is_empty() => sink.push_text("{}"),
        View::Object(object) => {
            open_collections.push(OpenCollection::Object { object, next: 0 });
            sink.push_text("{")
        }
    }
}

fn write_indentation(nesting: usize, sink: &mut impl TextSink) -> Result<(), BudgetExceeded> {
    for _ in 0..nesting {
        sink.push_text("  ")?;
    }
    Ok(())
}

/// Writes `text` as a JSON string literal, escaping what `JSON.stringify` escapes.
fn write_json_string(text: &str, sink: &mut impl TextSink) -> Result<(), BudgetExceeded> {
    sink.push_text("\"")?;
    let mut unescaped_start = 0;
    for (index, character) in text.char_indices() {
        let escape = match character {
            '"' => Some(Escape::Fixed("\\\"")),
            '\\' => Some(Escape::Fixed("\\\\")),
            '\u{08}' => Some(Escape::Fixed("\\b")),
            '\u{0C}' => Some(Escape::Fixed("\\f")),
            '\n' => Some(Escape::Fixed("\\n")),
            '\r' => Some(Escape::Fixed("\\r")),
            '\t' => Some(Escape::Fixed("\\t")),
            control if u32::from(control) < 0x20 => Some(Escape::Unicode(u32::from(control))),
            _ => None,
        };
        if let Some(escape) = escape {
            sink.push_text(&text[unescaped_start..index])?;
            match escape {
                Escape::Fixed(sequence) => sink.push_text(sequence)?,
                Escape::Unicode(code) => sink.push_text(&format!("\\u{code:04x}"))?,
            }
            unescaped_start = index + character.len_utf8();
        }
    }
    sink.push_text(&text[unescaped_start..])?;
    sink.push_text("\"")
}

enum Escape {
    Fixed(&'static str),
    Unicode(u32),
}

#[cfg(test)]
mod tests {
    use crate::value::Value;

    #[test]
    fn matches_json_stringify_with_two_space_indent() {
        let value =
            Value::from_json_text(r#"{"a": [1, -0, 1.5e300, "x\"y\\z\n\u0001"], "b": {}, "c": [], "d": {"e": null}}"#)
                .expect("valid JSON");
        let expected = "{\n  \"a\": [\n    1,\n    0,\n    1.5e+300,\n    \"x\\\"y\\\\z\\n\\u0001\"\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": {\n    \"e\": null\n  }\n}";
        assert_eq!(value.to_json_pretty(), expected);
        assert_eq!(Value::Number(f64::NAN).to_json_pretty(), "null");
        assert_eq!(Value::from("ü😊").to_json_pretty(), "\"ü😊\"");
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut value = Value::Null;
        for _ in 0..3_000 {
            value = Value::Array(vec![value]);
        }
        let text = value.to_json_pretty();
        assert!(text.starts_with("[\n  [\n    ["));
        // Dropping a deeply nested value recurses in Rust's drop glue, so unwind it by hand here.
        let mut current = value;
        while let Value::Array(mut items) = current {
            current = items.pop().unwrap_or(Value::Null);
        }
    }
}
