//! Intermediate results of evaluation and GitHub's coercion rules on them.
//!
//! An [`Evaluated`] value either borrows from the contexts or the expression (no copying of large contexts such
//! as `github.event`), owns what a function produced, or is a filtered array made by `*`. A [`View`] is a cheap,
//! uniform look at any of them; truthiness, string and number conversion, loose equality (`==`) and ordering
//! (`<`, `>`) are defined on views, following the coercion table in GitHub's documentation.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::number::{format_number_for_display, parse_number_like_javascript};
use crate::text::{compare_ignoring_case, equals_ignoring_case};
use crate::value::{Kind, Object, Value};

/// A result of evaluating a node.
#[derive(Debug)]
pub(crate) enum Evaluated<'a> {
    /// A value inside the contexts or a literal inside the expression.
    Borrowed(&'a Value),
    /// A value produced during evaluation (by a function, a comparison, `!`, ...).
    Owned(Value),
    /// The array produced by an object filter (`a.*`, `a[*]`). It behaves like an array, except that property and
    /// index access on it apply to each element and collect the results, which is what makes `a.*.b` work.
    Filtered(Vec<Evaluated<'a>>),
}

impl<'a> Evaluated<'a> {
    /// A uniform view of this result.
    pub(crate) fn view(&self) -> View<'_> {
        match self {
            Evaluated::Borrowed(value) => View::of_value(value),
            Evaluated::Owned(value) => View::of_value(value),
            Evaluated::Filtered(items) => View::Array(ArrayView::Filtered(items)),
        }
    }

    /// Converts the result into a standalone value, copying borrowed parts.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Evaluated::Borrowed(value) => value.clone(),
            Evaluated::Owned(value) => value,
            Evaluated::Filtered(items) => Value::Array(items.into_iter().map(Evaluated::into_value).collect()),
        }
    }
}

/// A borrowed look at a value or an intermediate result.
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'v> {
    Null,
    Bool(bool),
    Number(f64),
    String(&'v str),
    Array(ArrayView<'v>),
    Object(&'v Object),
}

/// The two shapes an array can have during evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ArrayView<'v> {
    /// An array from the contexts, a literal or a function result. The reference points at the `Vec` itself, so
    /// its address identifies the array even when it is empty.
    Plain(&'v Vec<Value>),
    /// A filtered array made by `*`.
    Filtered(&'v Vec<Evaluated<'v>>),
}

impl<'v> ArrayView<'v> {
    /// The number of elements.
    pub(crate) fn len(self) -> usize {
        match self {
            ArrayView::Plain(items) => items.len(),
            ArrayView::Filtered(items) => items.len(),
        }
    }

    /// The element at `index`, if any.
    pub(crate) fn get(self, index: usize) -> Option<View<'v>> {
        match self {
            ArrayView::Plain(items) => items.get(index).map(View::of_value),
            ArrayView::Filtered(items) => items.get(index).map(Evaluated::view),
        }
    }

    /// The elements in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = View<'v>> {
        (0..self.len()).filter_map(move |index| self.get(index))
    }

    /// Whether both views are the very same array; arrays compare by identity in GitHub's `==`.
    fn is_same_array_as(self, other: ArrayView<'_>) -> bool {
        match (self, other) {
            (ArrayView::Plain(left), ArrayView::Plain(right)) => std::ptr::addr_eq(left, right),
            (ArrayView::Filtered(left), ArrayView::Filtered(right)) => std::ptr::addr_eq(left, right),
            _ => false,
        }
    }
}

impl<'v> View<'v> {
    /// A view of a plain value.
    pub(crate) fn of_value(value: &'v Value) -> View<'v> {
        match value {
            Value::Null => View::Null,
            Value::Bool(boolean) => View::Bool(*boolean),
            Value::Number(number) => View::Number(*number),
            Value::String(text) => View::String(text),
            Value::Array(items) => View::Array(ArrayView::Plain(items)),
            Value::Object(object) => View::Object(object),
        }
    }

    /// The kind of the viewed value; filtered arrays are arrays.
    pub(crate) fn kind(self) -> Kind {
        match self {
            View::Null => Kind::Null,
            View::Bool(_) => Kind::Boolean,
            View::Number(_) => Kind::Number,
            View::String(_) => Kind::String,
            View::Array(_) => Kind::Array,
            View::Object(_) => Kind::Object,
        }
    }

    /// Whether the value is a primitive (null, boolean, number or string); functions such as `contains` and
    /// `join` treat primitives and collections differently.
    pub(crate) fn is_primitive(self) -> bool {
        !matches!(self, View::Array(_) | View::Object(_))
    }

    /// Truthiness: `null`, `false`, `0`, `-0`, `NaN` and `''` are false; everything else, including empty arrays
    /// and objects, is true.
    pub(crate) fn is_truthy(self) -> bool {
        match self {
            View::Null => false,
            View::Bool(boolean) => boolean,
            View::Number(number) => number != 0.0 && !number.is_nan(),
            View::String(text) => !text.is_empty(),
            View::Array(_) | View::Object(_) => true,
        }
    }

    /// Conversion to a number: `null` → 0, `true` → 1, `false` → 0, strings parsed like JavaScript's
    /// `Number(text)`, arrays and objects → `NaN`.
    pub(crate) fn to_number(self) -> f64 {
        match self {
            View::Null => 0.0,
            View::Bool(boolean) => f64::from(u8::from(boolean)),
            View::Number(number) => number,
            View::String(text) => parse_number_like_javascript(text),
            View::Array(_) | View::Object(_) => f64::NAN,
        }
    }

    /// Conversion to a string: `null` → `''`, booleans → `true`/`false`, numbers in GitHub's display form, arrays
    /// and objects → `Array`/`Object`.
    pub(crate) fn to_display_string(self) -> Cow<'v, str> {
        match self {
            View::Null => Cow::Borrowed(""),
            View::Bool(true) => Cow::Borrowed("true"),
            View::Bool(false) => Cow::Borrowed("false"),
            View::Number(number) => Cow::Owned(format_number_for_display(number)),
            View::String(text) => Cow::Borrowed(text),
            View::Array(_) => Cow::Borrowed("Array"),
            View::Object(_) => Cow::Borrowed("Object"),
        }
    }
}

/// Brings two operands of `==`, `<` or `>` to a common kind, as GitHub does: a number meeting a string turns the
/// string into a number, and `null` or a boolean meeting anything of another kind turns into a number (then the
/// rule applies again). Arrays and objects are never converted.
fn coerce_to_common_kind<'v>(left: View<'v>, right: View<'v>) -> (View<'v>, View<'v>) {
    if left.kind() == right.kind() {
        return (left, right);
    }
    match (left, right) {
        (View::Number(_), View::String(_)) => return (left, View::Number(right.to_number())),
        (View::String(_), View::Number(_)) => return (View::Number(left.to_number()), right),
        (View::Null | View::Bool(_), _) => return coerce_to_common_kind(View::Number(left.to_number()), right),
        _ => {}
    }
    if matches!(right, View::Null | View::Bool(_)) {
        return coerce_to_common_kind(left, View::Number(right.to_number()));
    }
    (left, right)
}

/// GitHub's loose equality (`==`): operands are coerced to a common kind first; `NaN` equals nothing; strings
/// compare without regard to case; arrays and objects are equal only to themselves.
pub(crate) fn loosely_equals(left: View<'_>, right: View<'_>) -> bool {
    match coerce_to_common_kind(left, right) {
        (View::Null, View::Null) => true,
        (View::Bool(left), View::Bool(right)) => left == right,
        (View::Number(left), View::Number(right)) => left == right,
        (View::String(left), View::String(right)) => equals_ignoring_case(left, right),
        (View::Array(left), View::Array(right)) => left.is_same_array_as(right),
        (View::Object(left), View::Object(right)) => std::ptr::eq(left, right),
        _ => false,
    }
}

/// How two operands order after coercion; `None` when they do not order at all (different kinds after coercion,
/// `NaN`, nulls, arrays, objects), in which case every ordering operator is false.
pub(crate) fn order(left: View<'_>, right: View<'_>) -> Option<Ordering> {
    match coerce_to_common_kind(left, right) {
        (View::Number(left), View::Number(right)) => left.partial_cmp(&right),
        (View::String(left), View::String(right)) => Some(compare_ignoring_case(left, right)),
        (View::Bool(left), View::Bool(right)) => Some(left.cmp(&right)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coercion table from GitHub's documentation ("Operators" → loose equality), checked through `==`.
    #[test]
    fn documented_coercion_table() {
        let array = Value::Array(vec![]);
        let object = Value::Object(Object::new());
        let cases: &[(View<'_>, View<'_>, bool)] = &[
            // Null → Number 0.
            (View::Null, View::Number(0.0), true),
            // Boolean → Number: true is 1, false is 0.
            (View::Bool(true), View::Number(1.0), true),
            (View::Bool(false), View::Number(0.0), true),
            // String → Number: parsed from any legal JSON number format, the empty string is 0, otherwise NaN.
            (View::String("  12.5 "), View::Number(12.5), true),
            (View::String(""), View::Number(0.0), true),
            (View::String("abc"), View::Number(f64::NAN), false),
            // Array and Object → NaN: never equal to a number.
            (View::of_value(&array), View::Number(0.0), false),
            (View::of_value(&object), View::Number(f64::NAN), false),
            // Strings compare without regard to case.
            (View::String("Push"), View::String("PUSH"), true),
            // Null and a string: both become numbers.
            (View::Null, View::String("0"), true),
            (View::Null, View::String("null"), false),
            // Objects and arrays compare by identity.
            (View::of_value(&object), View::of_value(&object), true),
            (View::of_value(&array), View::of_value(&array), true),
        ];
        for (left, right, expected) in cases {
            assert_eq!(loosely_equals(*left, *right), *expected, "{left:?} == {right:?}");
        }
        let other_empty_array = Value::Array(vec![]);
        assert!(!loosely_equals(View::of_value(&array), View::of_value(&other_empty_array)));
    }

    #[test]
    fn ordering_is_undefined_for_nan_and_collections() {
        assert_eq!(order(View::Number(f64::NAN), View::Number(1.0)), None);
        assert_eq!(order(View::Null, View::Null), None);
        assert_eq!(order(View::Bool(true), View::Null), Some(Ordering::Greater));
        assert_eq!(order(View::String("a"), View::String("B")), Some(Ordering::Less));
    }
}
