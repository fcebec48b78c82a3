//! Numbers as GitHub reads and writes them: parsing text like JavaScript's `Number(text)` (used for numeric
//! literals and for string-to-number coercion), the string form used when a number must become a string (at most
//! 15 decimals, `-0` written as `0`), and JavaScript's shortest round-trip form used by `toJSON`.

use crate::text::trim_javascript_whitespace;

/// Parses `text` as JavaScript's `Number(text)` does: surrounding whitespace is ignored, the empty string is 0,
/// `0x`/`0o`/`0b` prefixes select a radix (without a sign), `Infinity` may carry a sign, and anything that is not
/// entirely a number is `NaN`.
pub(crate) fn parse_number_like_javascript(text: &str) -> f64 {
    let trimmed = trim_javascript_whitespace(text);
    if trimmed.is_empty() {
        return 0.0;
    }
    if let Some(value) = parse_radix_prefixed_integer(trimmed) {
        return value;
    }
    parse_decimal(trimmed).unwrap_or(f64::NAN)
}

/// Parses `0x1F`, `0o17` and `0b101`; returns `None` when the text has none of these prefixes and `NaN` when it
/// has one but the digits are missing or invalid.
fn parse_radix_prefixed_integer(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'0' {
        return None;
    }
    let radix = match bytes[1] {
        b'x' | b'X' => 16,
        b'o' | b'O' => 8,
        b'b' | b'B' => 2,
        _ => return None,
    };
    let digits = &text[2..];
    if digits.is_empty() {
        return Some(f64::NAN);
    }
    // Accumulating in a wide integer keeps every value up to 2^128 exact before the single rounding to a double;
    // beyond that, accumulating in floating point is close enough for numbers nobody writes by hand.
    let mut exact: Option<u128> = Some(0);
    let mut approximate = 0.0_f64;
    for digit_character in digits.chars() {
        let Some(digit) = digit_character.to_digit(radix) else {
            return Some(f64::NAN);
        };
        exact = exact
            .and_then(|value| value.checked_mul(u128::from(radix)))
            .and_then(|value| value.checked_add(u128::from(digit)));
        approximate = approximate * f64::from(radix) + f64::from(digit);
    }
    Some(exact.map_or(approximate, |value| value as f64))
}

/// Parses an optionally signed decimal number (`1`, `-1.5`, `.5`, `5.`, `1e-3`, `Infinity`); `None` for anything
/// else, including the `inf`, `nan` and `1_000` spellings Rust would otherwise accept or that JavaScript rejects.
fn parse_decimal(text: &str) -> Option<f64> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned == "Infinity" {
        return Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if !is_decimal_literal(unsigned) {
        return None;
    }
    let magnitude: f64 = unsigned.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Whether `text` is `digits [. digits] [exponent]` with at least one digit in the mantissa.
fn is_decimal_literal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    let mut mantissa_digits = 0;
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        index += 1;
        mantissa_digits += 1;
    }
    if index < bytes.len() && bytes[index] == b'.' {
        index += 1;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
            mantissa_digits += 1;
        }
    }
    if mantissa_digits == 0 {
        return false;
    }
    if index < bytes.len() && (bytes[index] == b'e' || bytes[index] == b'E') {
        index += 1;
        if index < bytes.len() && (bytes[index] == b'+' || bytes[index] == b'-') {
            index += 1;
        }
        let exponent_start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        if index == exponent_start {
            return false;
        }
    }
    index == bytes.len()
}

/// The string a number becomes when GitHub converts it to a string (in `format`, `join`, string comparison with
/// `contains`, object keys in `a[1.5]`, template strings).
///
/// GitHub rounds to 15 decimals first (`+value.toFixed(15)`) so that `0.1 + 0.2`-style noise never shows, then
/// writes the result the way JavaScript writes numbers; zero is always `0`, never `-0`.
pub(crate) fn format_number_for_display(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    if !value.is_finite() || value.abs() >= 1e21 {
        // JavaScript's toFixed falls back to the ordinary string form for these, so rounding changes nothing.
        return format_number_like_javascript(value);
    }
    let rounded_text = to_fixed_fifteen(value);
    let rounded: f64 = rounded_text.parse().unwrap_or(value);
    format_number_like_javascript(rounded)
}

/// How many decimals GitHub keeps when converting a number to a string.
const DISPLAY_DECIMALS: usize = 15;

/// JavaScript's `value.toFixed(15)` for finite values below 1e21: the exact decimal value rounded to 15
/// decimals, with exact ties rounded away from zero.
fn to_fixed_fifteen(value: f64) -> String {
    let magnitude = value.abs();
    let sign = if value < 0.0 { "-" } else { "" };
    // A tie at the 16th decimal means the value is exactly k / 2^16 for an odd k (see the module tests); Rust's
    // formatter rounds such ties to even, JavaScript rounds them up, so they are handled separately.
    let scaled = magnitude * 65_536.0;
    let is_exact_tie = scaled.fract() == 0.0 && scaled % 2.0 == 1.0;
    if !is_exact_tie {
        return format!("{sign}{magnitude:.DISPLAY_DECIMALS$}");
    }
    let exact_with_one_more_decimal = format!("{magnitude:.16}");
    let without_last_digit = &exact_with_one_more_decimal[..exact_with_one_more_decimal.len() - 1];
    format!("{sign}{}", increment_last_decimal_digit(without_last_digit))
}

/// Adds one unit in the last place to a decimal string such as `12.999`, carrying as far as needed (`13.000`).
fn increment_last_decimal_digit(decimal: &str) -> String {
    let mut digits: Vec<u8> = decimal.bytes().collect();
    let mut position = digits.len();
    loop {
        if position == 0 {
            digits.insert(0, b'1');
            break;
        }
        position -= 1;
        match digits[position] {
            b'.' => continue,
            b'9' => digits[position] = b'0',
            digit => {
                digits[position] = digit + 1;
                break;
            }
        }
    }
    String::from_utf8(digits).unwrap_or_else(|_| decimal.to_owned())
}

/// JavaScript's `Number.prototype.toString()`: the shortest digits that read back as the same double, in plain
/// notation for magnitudes from 1e-7 up to 1e21 and in exponent notation (`1e+21`, `1.5e-7`) outside.
pub(crate) fn format_number_like_javascript(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let sign = if value < 0.0 { "-" } else { "" };
    // Rust's `{:e}` writes the shortest round-trip digits, for example `1.2345e-7`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent_text) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let exponent: i64 = exponent_text.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digit_count = digits.len() as i64;
    // In the terms of the ECMAScript specification: the value is 0.DIGITS × 10^point_position.
    let point_position = exponent + 1;

    let body = if digit_count <= point_position && point_position <= 21 {
        format!("{digits}{}", "0".repeat((point_position - digit_count) as usize))
    } else if 0 < point_position && point_position <= 21 {
        let (integer_part, fraction_part) = digits.split_at(point_position as usize);
        format!("{integer_part}.{fraction_part}")
    } else if -6 < point_position && point_position <= 0 {
        format!("0.{}{digits}", "0".repeat((-point_position) as usize))
    } else {
        let exponent_sign = if point_position > 0 { "+" } else { "-" };
        let exponent_magnitude = (point_position - 1).abs();
        let (first_digit, other_digits) = digits.split_at(1);
        if other_digits.is_empty() {
            format!("{first_digit}e{exponent_sign}{exponent_magnitude}")
        } else {
            format!("{first_digit}.{other_digits}e{exponent_sign}{exponent_magnitude}")
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_javascript_number() {
        let cases: &[(&str, f64)] = &[
            ("", 0.0),
            ("  ", 0.0),
            (" 123456.789 ", 123456.789),
            (" +1.2e2 ", 120.0),
            ("-1.2E+2", -120.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            (" 0xff ", 255.0),
            ("0XfF", 255.0),
            ("0o10", 8.0),
            ("0b101", 5.0),
            ("Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("007", 7.0),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_number_like_javascript(text), *expected, "Number({text:?})");
        }
        for text in ["abc", ".", "1e", "e5", "-0xff", "0x", "0xfz", "inf", "NaN", "-Inf", "1_000", "1 2", "0x01p2"] {
            assert!(parse_number_like_javascript(text).is_nan(), "Number({text:?}) should be NaN");
        }
    }

    #[test]
    fn display_form_rounds_to_fifteen_decimals() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (-2.0, "-2"),
            (123456.789, "123456.789"),
            (0.845_512_408_225_570_1, "0.84551240822557"),
            (0.1 + 0.2, "0.3"),
            (1.2e-2, "0.012"),
            (1e-7, "1e-7"),
            (1e-16, "0"),
            (-1e-16, "0"),
            (1e15, "1000000000000000"),
            (1e21, "1e+21"),
            (123_456_789_012_345_680_000.0, "123456789012345680000"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            // 2^-16 is exactly 0.0000152587890625: a tie at the 16th decimal, which JavaScript rounds up.
            (1.0 / 65_536.0, "0.000015258789063"),
            (-1.0 / 65_536.0, "-0.000015258789063"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_number_for_display(*value), *expected, "display form of {value:e}");
        }
    }

    #[test]
    fn javascript_form_is_shortest_round_trip() {
        let cases: &[(f64, &str)] = &[
            (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (123e-20, "1.23e-18"),
            (0.000001, "0.000001"),
            (-1234.5, "-1234.5"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_number_like_javascript(*value), *expected);
        }
    }

    #[test]
    fn increments_decimal_strings_with_carry() {
        assert_eq!(increment_last_decimal_digit("0.129"), "0.130");
        assert_eq!(increment_last_decimal_digit("9.99"), "10.00");
    }
}
