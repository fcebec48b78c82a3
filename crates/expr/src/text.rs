//! Case-insensitive string comparison as GitHub does it: each character is mapped to its single-character upper
//! case (so `ς`, `σ` and `Σ` are equal, `ü` equals `Ü`), except the dotless `ı`, which GitHub deliberately leaves
//! alone so that `ı` and `I` stay different. Ordering compares UTF-16 code units, as JavaScript and .NET do.

use std::borrow::Cow;
use std::cmp::Ordering;

/// The dotless small i, which GitHub's comparison does not upper-case (`toUpperSpecial` in its implementation).
const DOTLESS_SMALL_I: char = '\u{0131}';

/// Maps one character to the form used for comparison.
///
/// Only single-character upper-case mappings are applied (`ß` stays `ß` rather than becoming `SS`), which keeps
/// comparisons character-for-character like .NET's ordinal-ignore-case comparison in GitHub's runner.
pub(crate) fn fold_character(character: char) -> char {
    if character.is_ascii() {
        return character.to_ascii_uppercase();
    }
    if character == DOTLESS_SMALL_I {
        return character;
    }
    let mut upper = character.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(single), None) => single,
        _ => character,
    }
}

/// The folded form of a whole string, borrowing when nothing changes.
pub(crate) fn fold_case(text: &str) -> Cow<'_, str> {
    if text.chars().all(|character| fold_character(character) == character) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(fold_character).collect())
}

/// The key under which an object stores a property name; the same folding as string comparison, so property
/// lookup and `==` agree about which spellings are equal.
pub(crate) fn fold_key(key: &str) -> Cow<'_, str> {
    fold_case(key)
}

/// Whether two strings are equal without regard to case.
pub(crate) fn equals_ignoring_case(left: &str, right: &str) -> bool {
    left.chars().map(fold_character).eq(right.chars().map(fold_character))
}

/// Orders two strings without regard to case, by UTF-16 code units of their folded forms.
pub(crate) fn compare_ignoring_case(left: &str, right: &str) -> Ordering {
    let left_units = left.chars().map(fold_character).map(utf16_sort_key);
    let right_units = right.chars().map(fold_character).map(utf16_sort_key);
    left_units.cmp(right_units)
}

/// Whether `text` starts with `prefix`, without regard to case.
pub(crate) fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    let mut text_characters = text.chars().map(fold_character);
    prefix.chars().map(fold_character).all(|expected| text_characters.next() == Some(expected))
}

/// Whether `text` ends with `suffix`, without regard to case.
pub(crate) fn ends_with_ignoring_case(text: &str, suffix: &str) -> bool {
    let mut text_characters = text.chars().rev().map(fold_character);
    suffix.chars().rev().map(fold_character).all(|expected| text_characters.next() == Some(expected))
}

/// Whether `text` contains `needle`, without regard to case.
pub(crate) fn contains_ignoring_case(text: &str, needle: &str) -> bool {
    fold_case(text).contains(fold_case(needle).as_ref())
}

/// A character's UTF-16 code units as a comparable pair: characters outside the Basic Multilingual Plane sort by
/// their surrogates, which puts them before U+E000..U+FFFF exactly as a UTF-16 comparison does.
fn utf16_sort_key(character: char) -> (u16, u16) {
    let mut units = [0_u16; 2];
    match character.encode_utf16(&mut units) {
        [single] => (*single, 0),
        [high, low] => (*high, *low),
        _ => (0, 0),
    }
}

/// Whitespace as JavaScript's `String.prototype.trim` and `Number(text)` understand it; GitHub's lexer uses the
/// same set to end identifiers and numbers.
pub(crate) fn is_javascript_whitespace(character: char) -> bool {
    matches!(
        character,
        '\t' | '\n' | '\u{000B}' | '\u{000C}' | '\r' | ' ' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// `text` without leading and trailing JavaScript whitespace.
pub(crate) fn trim_javascript_whitespace(text: &str) -> &str {
    text.trim_matches(is_javascript_whitespace)
}

/// The number of UTF-16 code units in `text`, which is what GitHub's memory accounting measures strings in.
pub(crate) fn utf16_length(text: &str) -> usize {
    if text.is_ascii() {
        return text.len();
    }
    text.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_matches_the_conformance_special_cases() {
        let cases: &[(&str, &str, Ordering)] = &[
            ("abc", "ABC", Ordering::Equal),
            ("ς", "Σ", Ordering::Equal),
            ("ς", "σ", Ordering::Equal),
            ("ü", "Ü", Ordering::Equal),
            ("i", "İ", Ordering::Less),
            ("ı", "I", Ordering::Greater),
            ("a", "[", Ordering::Less),
            ("ß", "SS", Ordering::Greater),
            // U+FF21 (fullwidth A) sorts after an astral character in UTF-16 but before it by code point.
            ("\u{FF21}", "\u{1F600}", Ordering::Greater),
        ];
        for (left, right, expected) in cases {
            assert_eq!(compare_ignoring_case(left, right), *expected, "{left} vs {right}");
            assert_eq!(equals_ignoring_case(left, right), *expected == Ordering::Equal, "{left} vs {right}");
        }
    }

    #[test]
    fn prefix_suffix_and_substring_ignore_case() {
        assert!(starts_with_ignoring_case("Σ_asdf", "σ"));
        assert!(!starts_with_ignoring_case("ab", "abc"));
        assert!(ends_with_ignoring_case("asdf_АБВ", "абв"));
        assert!(!ends_with_ignoring_case("asdf_i", "İ"));
        assert!(contains_ignoring_case("abCdEf", "cDe"));
        assert!(contains_ignoring_case("abc", ""));
    }

    #[test]
    fn javascript_whitespace_is_trimmed() {
        assert_eq!(trim_javascript_whitespace("\u{FEFF}\u{00A0} 1 \n\t"), "1");
        assert_eq!(utf16_length("a😊"), 3);
    }
}
