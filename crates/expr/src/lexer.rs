//! The lexer: turns expression text into tokens, following GitHub's rules exactly, including the odd ones that
//! its conformance data pins down:
//!
//! - a `.` is a property dot only after an identifier, `]`, `)` or `*`; anywhere else it starts a number (`.5`);
//! - `-` and `+` always start a number, and a number runs until a delimiter, so `-0xFF` and `1e` are errors;
//! - `true`, `false`, `null`, `NaN` and `Infinity` are keywords except right after a dot (`foo.null` is a
//!   property);
//! - a lone `=`, `&` or `|` swallows the following characters up to a delimiter and is reported as one symbol.

use crate::error::{ExpressionError, SourcePosition};
use crate::number::parse_number_like_javascript;
use crate::text::is_javascript_whitespace;

/// The kinds of tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    LeftParenthesis,
    RightParenthesis,
    LeftBracket,
    RightBracket,
    Comma,
    Dot,
    Bang,
    BangEqual,
    EqualEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    And,
    Or,
    Star,
    Number(f64),
    /// A string literal with its quotes removed and `''` unescaped.
    String(String),
    Identifier,
    True,
    False,
    Null,
    EndOfInput,
}

/// A token and where it is in the expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    /// Byte range of the token's text in the expression.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Token {
    /// The token's text as written.
    pub(crate) fn lexeme<'s>(&self, expression: &'s str) -> &'s str {
        expression.get(self.start..self.end).unwrap_or_default()
    }

    /// How GitHub names the token in error messages: strings by their value, the end by `EOF`, everything else
    /// by its text.
    pub(crate) fn describe(&self, expression: &str) -> String {
        match &self.kind {
            TokenKind::String(value) => value.clone(),
            TokenKind::EndOfInput => "EOF".to_owned(),
            _ => self.lexeme(expression).to_owned(),
        }
    }
}

/// Splits `expression` into tokens, ending with [`TokenKind::EndOfInput`].
pub(crate) fn tokenize(expression: &str) -> Result<Vec<Token>, ExpressionError> {
    Lexer { expression, offset: 0, tokens: Vec::new() }.run()
}

struct Lexer<'s> {
    expression: &'s str,
    offset: usize,
    tokens: Vec<Token>,
}

impl<'s> Lexer<'s> {
    fn run(mut self) -> Result<Vec<Token>, ExpressionError> {
        // GitHub places the end-of-input token at the start of whatever the lexer looked at last (a token or a
        // whitespace character); "Unexpected symbol: 'EOF'" errors point there.
        let mut last_item_start = 0;
        while let Some(character) = self.peek() {
            let start = self.offset;
            last_item_start = start;
            self.offset += character.len_utf8();
            match character {
                '(' => self.push(TokenKind::LeftParenthesis, start),
                ')' => self.push(TokenKind::RightParenthesis, start),
                '[' => self.push(TokenKind::LeftBracket, start),
                ']' => self.push(TokenKind::RightBracket, start),
                ',' => self.push(TokenKind::Comma, start),
                '*' => self.push(TokenKind::Star, start),
                '.' => {
                    let follows_operand = matches!(
                        self.previous_kind(),
                        Some(
                            TokenKind::Identifier
                                | TokenKind::RightBracket
                                | TokenKind::RightParenthesis
                                | TokenKind::Star
                        )
                    );
                    if follows_operand {
                        self.push(TokenKind::Dot, start);
                    } else {
                        self.consume_number(start)?;
                    }
                }
                '-' | '+' => self.consume_number(start)?,
                '!' => {
                    let kind = if self.eat('=') { TokenKind::BangEqual } else { TokenKind::Bang };
                    self.push(kind, start);
                }
                '<' => {
                    let kind = if self.eat('=') { TokenKind::LessEqual } else { TokenKind::Less };
                    self.push(kind, start);
                }
                '>' => {
                    let kind = if self.eat('=') { TokenKind::GreaterEqual } else { TokenKind::Greater };
                    self.push(kind, start);
                }
                '=' => self.consume_doubled_operator('=', TokenKind::EqualEqual, start)?,
                '&' => self.consume_doubled_operator('&', TokenKind::And, start)?,
                '|' => self.consume_doubled_operator('|', TokenKind::Or, start)?,
                ' ' | '\t' | '\r' | '\n' => {}
                '\'' => self.consume_string(start)?,
                digit if digit.is_ascii_digit() => self.consume_number(start)?,
                _ => self.consume_identifier(start)?,
            }
        }
        let end = self.expression.len();
        self.tokens.push(Token { kind: TokenKind::EndOfInput, start: last_item_start, end });
        Ok(self.tokens)
    }

    fn peek(&self) -> Option<char> {
        self.expression.get(self.offset..)?.chars().next()
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.offset += expected.len_utf8();
            return true;
        }
        false
    }

    fn previous_kind(&self) -> Option<&TokenKind> {
        self.tokens.last().map(|token| &token.kind)
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token { kind, start, end: self.offset });
    }

    fn text_from(&self, start: usize) -> &'s str {
        self.expression.get(start..self.offset).unwrap_or_default()
    }

    /// `==`, `&&` and `||`; a single `=`, `&` or `|` is an error reported together with the characters after it.
    fn consume_doubled_operator(
        &mut self,
        operator: char,
        kind: TokenKind,
        start: usize,
    ) -> Result<(), ExpressionError> {
        if self.eat(operator) {
            self.push(kind, start);
            return Ok(());
        }
        self.consume_identifier(start)
    }

    /// A number runs until a delimiter (a `.` does not end it); its text must then be a number as JavaScript's
    /// `Number(text)` reads it.
    fn consume_number(&mut self, start: usize) -> Result<(), ExpressionError> {
        while let Some(character) = self.peek() {
            if is_delimiter(character) && character != '.' {
                break;
            }
            self.offset += character.len_utf8();
        }
        let lexeme = self.text_from(start);
        let value = parse_number_like_javascript(lexeme);
        if value.is_nan() {
            return Err(self.invalid_token(start, lexeme, number_hint(lexeme)));
        }
        self.push(TokenKind::Number(value), start);
        Ok(())
    }

    /// A string literal: single quotes, with `''` standing for one quote.
    fn consume_string(&mut self, start: usize) -> Result<(), ExpressionError> {
        let mut value = String::new();
        loop {
            let Some(character) = self.peek() else {
                let lexeme = self.expression.get(start..).unwrap_or_default();
                let hint = "end the string with a single quote (') and write a quote inside a string as two quotes \
                            (''), e.g. 'it''s'";
                return Err(self.invalid_token(start, lexeme, hint.to_owned()));
            };
            self.offset += character.len_utf8();
            if character == '\'' {
                if self.eat('\'') {
                    value.push('\'');
                    continue;
                }
                break;
            }
            value.push(character);
        }
        self.push(TokenKind::String(value), start);
        Ok(())
    }

    /// An identifier, keyword or the characters after a lone `=`, `&` or `|`, all running until a delimiter.
    fn consume_identifier(&mut self, start: usize) -> Result<(), ExpressionError> {
        while let Some(character) = self.peek() {
            if is_delimiter(character) {
                break;
            }
            self.offset += character.len_utf8();
        }
        let lexeme = self.text_from(start);
        if !is_legal_identifier(lexeme) {
            return Err(self.invalid_token(start, lexeme, identifier_hint(lexeme)));
        }
        let after_dot = matches!(self.previous_kind(), Some(TokenKind::Dot));
        let kind = match lexeme {
            _ if after_dot => TokenKind::Identifier,
            "true" => TokenKind::True,
            "false" => TokenKind::False,
            "null" => TokenKind::Null,
            "NaN" => TokenKind::Number(f64::NAN),
            "Infinity" => TokenKind::Number(f64::INFINITY),
            _ => TokenKind::Identifier,
        };
        self.push(kind, start);
        Ok(())
    }

    fn invalid_token(&self, start: usize, lexeme: &str, hint: String) -> ExpressionError {
        ExpressionError::InvalidToken {
            symbol: lexeme.to_owned(),
            position: SourcePosition::at(self.expression, start),
            expression: self.expression.to_owned(),
            hint,
        }
    }
}

/// Characters that end an identifier or a number.
fn is_delimiter(character: char) -> bool {
    matches!(character, '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|')
        || is_javascript_whitespace(character)
}

/// An identifier starts with an ASCII letter or `_` and continues with ASCII letters, digits, `_` or `-`.
fn is_legal_identifier(text: &str) -> bool {
    let mut characters = text.chars();
    let Some(first) = characters.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_' || character == '-')
}

fn number_hint(lexeme: &str) -> String {
    if lexeme.starts_with('.') && lexeme.len() > 1 && !lexeme.as_bytes()[1].is_ascii_digit() {
        return "a path such as .github/file must be a string literal: '.github/file'".to_owned();
    }
    "write numbers like 42, -1.5, .5, 1e3, 0xff or 0o17 (a sign is not allowed before 0x or 0o); other text must \
     be a string literal in single quotes"
        .to_owned()
}

fn identifier_hint(lexeme: &str) -> String {
    match lexeme.chars().next() {
        Some('=') => "compare with '==' (a single '=' is not an operator)".to_owned(),
        Some('&') => "write '&&' for logical and".to_owned(),
        Some('|') => "write '||' for logical or".to_owned(),
        Some('"') => "string literals use single quotes: 'text'".to_owned(),
        _ => "names start with a letter or '_' and contain only letters, digits, '_' and '-'; put any other text in \
              a string literal: 'text'"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(expression: &str) -> Vec<TokenKind> {
        tokenize(expression).expect("lexes").into_iter().map(|token| token.kind).collect()
    }

    #[test]
    fn dots_are_properties_only_after_operands() {
        assert_eq!(
            kinds("a.b (.5) (x).y"),
            vec![
                TokenKind::Identifier,
                TokenKind::Dot,
                TokenKind::Identifier,
                TokenKind::LeftParenthesis,
                TokenKind::Number(0.5),
                TokenKind::RightParenthesis,
                TokenKind::LeftParenthesis,
                TokenKind::Identifier,
                TokenKind::RightParenthesis,
                TokenKind::Dot,
                TokenKind::Identifier,
                TokenKind::EndOfInput,
            ]
        );
    }

    #[test]
    fn keywords_after_a_dot_are_identifiers() {
        assert_eq!(
            kinds("a.null null"),
            vec![TokenKind::Identifier, TokenKind::Dot, TokenKind::Identifier, TokenKind::Null, TokenKind::EndOfInput]
        );
    }

    #[test]
    fn a_dot_after_a_keyword_starts_a_number() {
        // `true` is not an operand the lexer lets a property dot follow, exactly as in GitHub's lexer.
        assert!(matches!(tokenize("true.null"), Err(ExpressionError::InvalidToken { .. })));
    }

    #[test]
    fn strings_unescape_every_doubled_quote() {
        assert_eq!(kinds("'a''b''c'"), vec![TokenKind::String("a'b'c".to_owned()), TokenKind::EndOfInput]);
    }

    #[test]
    fn invalid_tokens_report_symbol_and_position() {
        let cases: &[(&str, &str, usize)] = &[
            ("1 = < 2", "=", 3),
            ("1 &2 &3", "&2", 3),
            ("-0xFF", "-0xFF", 1),
            ("'foo", "'foo", 1),
            ("foo.b@r", "b@r", 5),
            ("😊 x", "😊", 1),
            ("x == 😊", "😊", 6),
        ];
        for (expression, symbol, column) in cases {
            match tokenize(expression) {
                Err(ExpressionError::InvalidToken { symbol: found, position, .. }) => {
                    assert_eq!((found.as_str(), position.column), (*symbol, *column), "{expression}");
                }
                other => panic!("{expression}: expected an invalid token, got {other:?}"),
            }
        }
    }

    #[test]
    fn end_of_input_sits_at_the_last_item_looked_at() {
        let tokens = tokenize("f(1 ").expect("lexes");
        let end = tokens.last().expect("has an end token");
        assert_eq!((end.kind.clone(), end.start), (TokenKind::EndOfInput, 3));
    }
}
