//! Parsing of the "file commands" a step writes to `GITHUB_ENV`, `GITHUB_OUTPUT`,
//! `GITHUB_STATE` and `GITHUB_PATH`, following the formats GitHub Actions documents
//! in "Workflow commands for GitHub Actions".
//!
//! This module owns only the text format. Reading the files, applying the values to
//! the job's environment, outputs or state, and reporting errors to the user are the
//! caller's business.
//!
//! Differences from the official runner (`SetEnvFileCommand` in actions/runner) are
//! deliberate and listed here so nobody "fixes" them back by accident:
//!
//! * The runner applies each `NAME=value` as soon as it has read it, so a file with a
//!   bad line half-way through still sets everything before that line. We parse the
//!   whole file first and return either every entry or an error, so that a
//!   malformed file never has a partial effect.
//! * On Linux the runner splits lines on `\n` only, so a `\r` written by a Windows
//!   tool ends up inside values and delimiters; on Windows it treats `\r\n` as the
//!   line ending but keeps the original `\r\n` inside multi-line values. We treat
//!   `\r\n` as a line ending on every platform and join multi-line values with
//!   `\n`, so the result does not depend on the operating system of the worker.
//! * The runner accepts `=value` (an empty name) because of a bug in its emptiness
//!   check; we reject it.

use thiserror::Error;

/// The largest file-command file, in bytes, that [`parse_key_value_file`] accepts.
///
/// The limit keeps one step from making the worker hold an unbounded amount of text
/// in memory and from pushing megabytes of environment into every later step.
pub const FILE_COMMAND_BYTES_MAX: usize = 1024 * 1024;

/// Why a `GITHUB_ENV`, `GITHUB_OUTPUT` or `GITHUB_STATE` file was rejected.
///
/// Line numbers are 1-based and count lines of the file as written. The messages do
/// not quote the offending line, because a line of such a file usually carries a
/// value that may be a secret, and error messages can travel to places (such as the
/// job's result on the server) that are not passed through the log masker.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileCommandError {
    /// The file is larger than [`FILE_COMMAND_BYTES_MAX`].
    #[error(
        "the file is {size} bytes, more than the limit of {max} bytes; write large values to a file \
         in the workspace and pass its path instead"
    )]
    TooLarge {
        /// The size of the rejected content in bytes.
        size: usize,
        /// The limit that was exceeded.
        max: usize,
    },

    /// A line is neither `NAME=value` nor `NAME<<DELIMITER`.
    #[error(
        "line {line}: expected `NAME=value` or `NAME<<DELIMITER`; write a multi-line value as \
         `NAME<<DELIMITER`, then the value's lines, then a line containing only DELIMITER"
    )]
    InvalidLine {
        /// The 1-based number of the offending line.
        line: usize,
    },

    /// A line starts with `=` or `<<`, so the name is missing.
    #[error("line {line}: the name is empty; write `NAME=value` or `NAME<<DELIMITER` with a non-empty NAME")]
    EmptyName {
        /// The 1-based number of the offending line.
        line: usize,
    },

    /// A line reads `NAME<<` with nothing after the `<<`.
    #[error(
        "line {line}: the delimiter after `<<` is empty; write `NAME<<DELIMITER` with a delimiter \
         that cannot occur in the value, ideally a random one such as `ghadelimiter_<uuid>`"
    )]
    EmptyDelimiter {
        /// The 1-based number of the offending line.
        line: usize,
    },

    /// A `NAME<<DELIMITER` value is never closed by a line equal to the delimiter.
    #[error(
        "line {line}: matching delimiter not found; end the value that starts here with a line \
         containing exactly `{delimiter}` and nothing else"
    )]
    UnterminatedHeredoc {
        /// The 1-based number of the `NAME<<DELIMITER` line.
        line: usize,
        /// The delimiter that was never found.
        delimiter: String,
    },
}

/// Parses a `GITHUB_ENV`, `GITHUB_OUTPUT` or `GITHUB_STATE` file into `(name, value)`
/// pairs, in file order.
///
/// Two forms of entry are accepted, separated by any number of empty lines:
///
/// * `NAME=value`: the name is everything before the first `=`, and the value is
///   everything after it, which may be empty and may contain further `=`.
/// * `NAME<<DELIMITER`, followed by the value's lines and then a line exactly equal
///   to `DELIMITER`: the value is those lines joined with `\n`.
///
/// Whichever of `=` and `<<` comes first on the line decides the form, as in the
/// runner, so `A=x<<y` sets `A` to `x<<y` and `A<<B=C` opens a value delimited by
/// `B=C`. A name that occurs twice appears twice in the result; the caller applies
/// the entries in order so that the later one wins, as it does on GitHub.
///
/// The parse is all-or-nothing: if any line is malformed, nothing is returned. This
/// is what defeats the usual delimiter-injection attack, where a value containing
/// `\nEOF\nINJECTED=1` closes the heredoc early: the real closing `EOF` line that
/// follows is then a stray line, so the whole file is rejected instead of setting
/// `INJECTED`. It is not a complete defence (an attacker who also appends a line
/// such as `X<<EOF` makes the file well-formed again), so workflows must still use
/// random delimiters, as GitHub's documentation asks.
///
/// A leading byte-order mark is ignored, because PowerShell 5 writes one with
/// `Out-File -Encoding utf8` and the runner's `File.ReadAllText` skips it too.
pub fn parse_key_value_file(content: &str) -> Result<Vec<(String, String)>, FileCommandError> {
    if content.len() > FILE_COMMAND_BYTES_MAX {
        return Err(FileCommandError::TooLarge { size: content.len(), max: FILE_COMMAND_BYTES_MAX });
    }

    let mut entries = Vec::new();
    let mut lines = Lines::new(strip_bom(content));
    while let Some((number, line)) = lines.next() {
        // Empty lines between entries carry no meaning and are common at the end of a
        // file written with `echo`, so they are skipped, as the runner does.
        if line.is_empty() {
            continue;
        }

        let equals = line.find('=');
        let heredoc = line.find("<<");
        match (equals, heredoc) {
            (Some(eq), heredoc) if heredoc.is_none_or(|h| eq < h) => {
                let (name, value) = (&line[..eq], &line[eq + 1..]);
                if name.is_empty() {
                    return Err(FileCommandError::EmptyName { line: number });
                }
                entries.push((name.to_owned(), value.to_owned()));
            }
            (_, Some(h)) => {
                let (name, delimiter) = (&line[..h], &line[h + 2..]);
                if name.is_empty() {
                    return Err(FileCommandError::EmptyName { line: number });
                }
                if delimiter.is_empty() {
                    return Err(FileCommandError::EmptyDelimiter { line: number });
                }
                let value = read_heredoc_value(&mut lines, delimiter).ok_or_else(|| {
                    FileCommandError::UnterminatedHeredoc { line: number, delimiter: delimiter.to_owned() }
                })?;
                entries.push((name.to_owned(), value));
            }
            _ => return Err(FileCommandError::InvalidLine { line: number }),
        }
    }
    Ok(entries)
}

/// Parses a `GITHUB_PATH` file into the directories to prepend to `PATH`, in file
/// order.
///
/// Each non-empty line is one directory; a trailing `\r` is removed so that files
/// written by Windows tools work. Other whitespace is kept, because it can be part
/// of a directory name and the runner keeps it too. The runner moves a directory
/// that is added again to the front rather than listing it twice; that
/// de-duplication spans steps, so it is left to the caller.
///
/// This function cannot fail, so it does not enforce [`FILE_COMMAND_BYTES_MAX`];
/// callers should check the size before reading the whole file into memory.
pub fn parse_path_file(content: &str) -> Vec<String> {
    Lines::new(strip_bom(content)).map(|(_, line)| line).filter(|line| !line.is_empty()).map(str::to_owned).collect()
}

/// Collects the lines of a heredoc value up to, and consuming, the line equal to
/// `delimiter`, or returns `None` if the input ends first.
fn read_heredoc_value(lines: &mut Lines<'_>, delimiter: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for (_, line) in lines.by_ref() {
        if line == delimiter {
            return Some(value.unwrap_or_default());
        }
        match value.as_mut() {
            Some(value) => {
                value.push('\n');
                value.push_str(line);
            }
            None => value = Some(line.to_owned()),
        }
    }
    None
}

/// Removes a UTF-8 byte-order mark from the start of `content`, if there is one.
fn strip_bom(content: &str) -> &str {
    content.strip_prefix('\u{feff}').unwrap_or(content)
}

/// An iterator over the lines of a file together with their 1-based numbers.
///
/// Lines end at `\n`, and a `\r` directly before the `\n` is part of the line ending.
/// A `\r` anywhere else is kept as part of the line, because it is data, not a line
/// ending. A final line without a line ending is still a line, but the empty string
/// after a final line ending is not.
#[derive(Debug)]
struct Lines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> Lines<'a> {
    fn new(content: &'a str) -> Self {
        Self { rest: content, number: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let line = match self.rest.split_once('\n') {
            Some((line, rest)) => {
                self.rest = rest;
                line.strip_suffix('\r').unwrap_or(line)
            }
            None => std::mem::take(&mut self.rest),
        };
        Some((self.number, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    /// A description, the file's content and the entries expected from it.
    type ValidCase = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

    #[test]
    fn accepts_valid_files() {
        let cases: &[ValidCase] = &[
            ("empty file", "", &[]),
            ("only empty lines", "\n\n\r\n", &[]),
            ("single entry without newline", "FOO=bar", &[("FOO", "bar")]),
            ("single entry with newline", "FOO=bar\n", &[("FOO", "bar")]),
            ("empty value", "FOO=\n", &[("FOO", "")]),
            ("value containing equals", "FOO=a=b==c\n", &[("FOO", "a=b==c")]),
            ("value containing heredoc marker", "FOO=a<<b\n", &[("FOO", "a<<b")]),
            ("value keeps surrounding spaces", "FOO= a b \n", &[("FOO", " a b ")]),
            ("name keeps inner spaces as the runner does", "MY VAR=1\n", &[("MY VAR", "1")]),
            ("several entries in order", "A=1\nB=2\nA=3\n", &[("A", "1"), ("B", "2"), ("A", "3")]),
            ("empty lines between entries", "\nA=1\n\n\nB=2\n\n", &[("A", "1"), ("B", "2")]),
            ("crlf line endings", "A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]),
            ("lone carriage return is data", "A=x\ry\n", &[("A", "x\ry")]),
            ("byte order mark is skipped", "\u{feff}A=1\n", &[("A", "1")]),
            ("heredoc", "FOO<<EOF\nline1\nline2\nEOF\n", &[("FOO", "line1\nline2")]),
            ("heredoc without final newline", "FOO<<EOF\nline1\nEOF", &[("FOO", "line1")]),
            ("heredoc with crlf", "FOO<<EOF\r\nline1\r\nline2\r\nEOF\r\n", &[("FOO", "line1\nline2")]),
            ("empty heredoc", "FOO<<EOF\nEOF\n", &[("FOO", "")]),
            ("heredoc of one empty line", "FOO<<EOF\n\nEOF\n", &[("FOO", "")]),
            ("heredoc keeps inner empty lines", "FOO<<EOF\na\n\n\nb\nEOF\n", &[("FOO", "a\n\n\nb")]),
            ("heredoc of two empty lines", "FOO<<EOF\n\n\nEOF\n", &[("FOO", "\n")]),
            ("heredoc keeps lines that look like entries", "FOO<<EOF\nBAR=1\nX<<Y\nEOF\n", &[("FOO", "BAR=1\nX<<Y")]),
            ("heredoc delimiter must match exactly", "FOO<<EOF\n EOF\nEOF \nEOF\n", &[("FOO", " EOF\nEOF ")]),
            ("heredoc delimiter containing equals", "FOO<<A=B\nx\nA=B\n", &[("FOO", "x")]),
            (
                "heredoc followed by entries",
                "A<<EOF\nx\nEOF\nB=2\nC<<EOF\ny\nEOF\n",
                &[("A", "x"), ("B", "2"), ("C", "y")],
            ),
            ("random delimiter", "OUT<<ghadelimiter_1f0c\n{\"a\": 1}\nghadelimiter_1f0c\n", &[("OUT", "{\"a\": 1}")]),
            ("utf-8 names and values", "GRÜSSE=héllo 🌍\n", &[("GRÜSSE", "héllo 🌍")]),
        ];
        for (description, content, expected) in cases {
            assert_eq!(parse_key_value_file(content), Ok(pairs(expected)), "{description}");
        }
    }

    #[test]
    fn rejects_invalid_files() {
        let cases: &[(&str, &str, FileCommandError)] = &[
            ("bare word", "FOO\n", FileCommandError::InvalidLine { line: 1 }),
            ("bare word after valid lines", "A=1\n\nFOO\n", FileCommandError::InvalidLine { line: 3 }),
            ("whitespace-only line", "A=1\n  \n", FileCommandError::InvalidLine { line: 2 }),
            ("single angle bracket", "FOO<EOF\n", FileCommandError::InvalidLine { line: 1 }),
            ("empty name with equals", "=value\n", FileCommandError::EmptyName { line: 1 }),
            ("empty name with heredoc", "<<EOF\nx\nEOF\n", FileCommandError::EmptyName { line: 1 }),
            ("empty delimiter", "A=1\nFOO<<\nx\n\n", FileCommandError::EmptyDelimiter { line: 2 }),
            (
                "unterminated heredoc",
                "A=1\nFOO<<EOF\nline\n",
                FileCommandError::UnterminatedHeredoc { line: 2, delimiter: "EOF".to_owned() },
            ),
            (
                "delimiter with trailing space does not match",
                "FOO<<EOF\nline\nEOF \n",
                FileCommandError::UnterminatedHeredoc { line: 1, delimiter: "EOF".to_owned() },
            ),
            (
                "crlf heredoc must not swallow the rest",
                "FOO<<EOF\r\nx\r\nEOFX\r\n",
                FileCommandError::UnterminatedHeredoc { line: 1, delimiter: "EOF".to_owned() },
            ),
            ("stray delimiter after a heredoc", "FOO<<EOF\nx\nEOF\nEOF\n", FileCommandError::InvalidLine { line: 4 }),
        ];
        for (description, content, expected) in cases {
            assert_eq!(parse_key_value_file(content).as_ref(), Err(expected), "{description}");
        }
    }

    /// A value that smuggles in the delimiter and a further `NAME=...` line must get
    /// the whole file rejected instead of setting the injected variable.
    #[test]
    fn delimiter_injection_rejects_the_whole_file() {
        let injected = "FOO<<EOF\nsafe\nEOF\nINJECTED=1\nEOF\n";
        assert_eq!(parse_key_value_file(injected), Err(FileCommandError::InvalidLine { line: 5 }));

        let honest = "FOO<<EOF\nline1\nline2\nEOF\n";
        assert_eq!(parse_key_value_file(honest), Ok(pairs(&[("FOO", "line1\nline2")])));
    }

    #[test]
    fn enforces_the_size_limit() {
        let value = "x".repeat(FILE_COMMAND_BYTES_MAX - "A=".len());
        let at_limit = format!("A={value}");
        assert_eq!(parse_key_value_file(&at_limit).map(|entries| entries.len()), Ok(1));

        let over_limit = format!("{at_limit}\n");
        assert_eq!(
            parse_key_value_file(&over_limit),
            Err(FileCommandError::TooLarge { size: FILE_COMMAND_BYTES_MAX + 1, max: FILE_COMMAND_BYTES_MAX })
        );
    }

    #[test]
    fn error_messages_tell_the_user_what_to_write() {
        let messages: Vec<String> = [
            FileCommandError::TooLarge { size: 2_000_000, max: FILE_COMMAND_BYTES_MAX },
            FileCommandError::InvalidLine { line: 3 },
            FileCommandError::EmptyName { line: 4 },
            FileCommandError::EmptyDelimiter { line: 5 },
            FileCommandError::UnterminatedHeredoc { line: 6, delimiter: "EOF".to_owned() },
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        expect![[r#"
            the file is 2000000 bytes, more than the limit of 1048576 bytes; write large values to a file in the workspace and pass its path instead
            line 3: expected `NAME=value` or `NAME<<DELIMITER`; write a multi-line value as `NAME<<DELIMITER`, then the value's lines, then a line containing only DELIMITER
            line 4: the name is empty; write `NAME=value` or `NAME<<DELIMITER` with a non-empty NAME
            line 5: the delimiter after `<<` is empty; write `NAME<<DELIMITER` with a delimiter that cannot occur in the value, ideally a random one such as `ghadelimiter_<uuid>`
            line 6: matching delimiter not found; end the value that starts here with a line containing exactly `EOF` and nothing else"#]]
        .assert_eq(&messages.join("\n"));
    }

    #[test]
    fn parses_path_files() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("empty file", "", &[]),
            ("one path", "/opt/tool/bin\n", &["/opt/tool/bin"]),
            ("no final newline", "/a\n/b", &["/a", "/b"]),
            ("empty lines skipped", "\n/a\n\n\r\n/b\n\n", &["/a", "/b"]),
            ("crlf trimmed", "C:\\tools\\bin\r\nD:\\x\r\n", &["C:\\tools\\bin", "D:\\x"]),
            ("other whitespace kept", " /with space \n", &[" /with space "]),
            ("duplicates kept in order", "/a\n/b\n/a\n", &["/a", "/b", "/a"]),
            ("byte order mark skipped", "\u{feff}/a\n", &["/a"]),
        ];
        for (description, content, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|path| (*path).to_owned()).collect();
            assert_eq!(parse_path_file(content), expected, "{description}");
        }
    }
}
