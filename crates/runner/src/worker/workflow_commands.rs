//! Recognition of the workflow commands a step prints on its standard output, in the
//! `::command key=value,key=value::message` syntax that GitHub Actions documents in
//! "Workflow commands for GitHub Actions".
//!
//! This module owns only the line syntax and the `stop-commands` state machine. The
//! caller splits the output into lines, logs plain lines, and acts on the commands
//! (adding masks, opening groups, creating annotations).
//!
//! The parsing follows the official runner (`ActionCommand.TryParseV2` and
//! `ActionCommandManager` in actions/runner) where it matters for compatibility:
//!
//! * Leading whitespace before `::` is allowed, because the runner trims it
//!   (`message.TrimStart()`), so indented output from scripts still issues commands.
//! * Command names and property keys are compared without regard to ASCII case, as
//!   the runner's case-insensitive dictionaries do.
//! * Properties are split on `,` and then on the first `=`; a property whose key or
//!   value is empty is dropped, and keys are not trimmed, so `a=1, line=2` has a key
//!   ` line` that matches nothing, exactly as on GitHub.
//! * Only the upper-case escapes the toolkit produces are decoded (`%0A`, not `%0a`),
//!   because the runner's replacements are case-sensitive.
//!
//! Only the commands this worker supports are recognised. Everything else, including
//! the deprecated `set-output`, `save-state`, `set-env` and `add-path` commands, the
//! `add-matcher` commands and the legacy `##[command]` syntax, is plain output.

use std::fmt;

/// The severity of an annotation created by `::error`, `::warning` or `::notice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Created by `::error::`.
    Error,
    /// Created by `::warning::`.
    Warning,
    /// Created by `::notice::`.
    Notice,
}

/// A workflow command recognised on a line of step output.
///
/// The `Debug` output of [`Command::AddMask`] hides the value, because that value is
/// a secret and commands are likely to end up in diagnostic logs.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `::add-mask::value`: mask `value` in all later output. The value is never
    /// blank: a blank value is ignored, as the runner does.
    AddMask(String),
    /// `::group::title`: start a collapsible group of log lines.
    Group(String),
    /// `::endgroup::`: end the current group.
    EndGroup,
    /// `::error`, `::warning` or `::notice`: create an annotation.
    Annotation {
        /// Which of the three commands created the annotation.
        level: Level,
        /// The annotation's text, possibly empty.
        message: String,
        /// The `file` property: the path the annotation refers to.
        file: Option<String>,
        /// The `line` property, if present and a number.
        line: Option<u32>,
        /// The `endLine` property, if present and a number.
        end_line: Option<u32>,
        /// The `col` property, if present and a number.
        col: Option<u32>,
        /// The `endColumn` property, if present and a number.
        end_column: Option<u32>,
        /// The `title` property: a custom title for the annotation.
        title: Option<String>,
    },
    /// `::debug::message`: a message shown only when debug logging is enabled.
    Debug(String),
    /// `::stop-commands::TOKEN`: from the next line on, every line is plain output
    /// until the line `::TOKEN::`. The runner still logs this line, so the caller
    /// should too. [`CommandProcessor::stop_token`] gives the token, for callers that
    /// want to mask it so that later output cannot read it back.
    StopCommands,
    /// `::TOKEN::` after `::stop-commands::TOKEN`: commands are processed again from
    /// the next line on. The runner logs this line too.
    ResumeCommands,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddMask(_) => f.write_str("AddMask(<redacted>)"),
            Self::Group(title) => f.debug_tuple("Group").field(title).finish(),
            Self::EndGroup => f.write_str("EndGroup"),
            Self::Annotation { level, message, file, line, end_line, col, end_column, title } => f
                .debug_struct("Annotation")
                .field("level", level)
                .field("message", message)
                .field("file", file)
                .field("line", line)
                .field("end_line", end_line)
                .field("col", col)
                .field("end_column", end_column)
                .field("title", title)
                .finish(),
            Self::Debug(message) => f.debug_tuple("Debug").field(message).finish(),
            Self::StopCommands => f.write_str("StopCommands"),
            Self::ResumeCommands => f.write_str("ResumeCommands"),
        }
    }
}

/// What to do with one line of step output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A plain line, to be logged as it was given.
    Output(String),
    /// A workflow command for the caller to act on.
    Command(Command),
    /// A command that is accepted but has no effect here, so the line is neither
    /// logged nor acted on. This covers `::echo::on|off` (the worker does not echo
    /// commands) and `::add-mask::` with a blank value, which the runner only warns
    /// about.
    Ignored,
}

/// The commands that are recognised while commands are being processed.
const COMMAND_NAMES: &[&str] = &["add-mask", "group", "endgroup", "error", "warning", "notice", "debug", "echo"];

/// The name of the command that suspends command processing.
const STOP_COMMANDS: &str = "stop-commands";

/// Tokens that `stop-commands` refuses because they name a command. The runner
/// refuses every command it has registered (including ones this worker treats as
/// plain output) and `pause-logging`, since such a token would make an ordinary
/// command line resume processing; we refuse the same set so that workflows written
/// for GitHub behave the same here.
const RESERVED_STOP_TOKENS: &[&str] = &[
    "add-mask",
    "add-matcher",
    "add-path",
    "debug",
    "echo",
    "endgroup",
    "error",
    "group",
    "internal-set-repo-path",
    "notice",
    "pause-logging",
    "remove-matcher",
    "save-state",
    "set-env",
    "set-output",
    "stop-commands",
    "warning",
];

/// Turns the lines of a step's standard output into [`Outcome`]s, keeping track of
/// `stop-commands`.
///
/// One processor serves one step: the suspension started by `stop-commands` lasts
/// until its token is seen or the processor is dropped.
#[derive(Default)]
pub struct CommandProcessor {
    /// The token that resumes processing, while processing is suspended.
    stop_token: Option<String>,
}

impl fmt::Debug for CommandProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is left out on purpose: knowing it lets output resume processing.
        f.debug_struct("CommandProcessor").field("stopped", &self.stop_token.is_some()).finish()
    }
}

impl CommandProcessor {
    /// Creates a processor that processes commands from the first line on.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token given to `::stop-commands::` while command processing is suspended.
    ///
    /// Anyone who can read the token back from the log can resume command processing,
    /// so callers may want to add it to their masker when they receive
    /// [`Command::StopCommands`].
    pub fn stop_token(&self) -> Option<&str> {
        self.stop_token.as_deref()
    }

    /// Classifies one line of output.
    ///
    /// `line` should be a single line; one trailing `\n`, `\r\n` or `\r` is ignored
    /// when looking for a command, and [`Outcome::Output`] returns the line exactly as
    /// it was given.
    pub fn process_line(&mut self, line: &str) -> Outcome {
        let parsed = parse_line(strip_line_ending(line));

        if let Some(token) = &self.stop_token {
            // While suspended, the only command is the token itself. The runner matches
            // it like a command name, so properties and a message after it are allowed
            // and case does not matter.
            return match parsed {
                Some(parsed) if parsed.name.eq_ignore_ascii_case(token) => {
                    self.stop_token = None;
                    Outcome::Command(Command::ResumeCommands)
                }
                _ => Outcome::Output(line.to_owned()),
            };
        }

        let Some(parsed) = parsed else {
            return Outcome::Output(line.to_owned());
        };
        if parsed.name.eq_ignore_ascii_case(STOP_COMMANDS) {
            let token = unescape_data(parsed.data);
            // An empty token could never be matched, and a token that names a command
            // would turn an ordinary command into the resume signal. The runner refuses
            // both unless `ACTIONS_ALLOW_UNSECURE_STOP_COMMAND_TOKENS` is set; here the
            // line is treated as plain output, so processing simply goes on.
            if token.is_empty() || RESERVED_STOP_TOKENS.iter().any(|reserved| reserved.eq_ignore_ascii_case(&token)) {
                return Outcome::Output(line.to_owned());
            }
            self.stop_token = Some(token);
            return Outcome::Command(Command::StopCommands);
        }

        let Some(name) = COMMAND_NAMES.iter().find(|name| name.eq_ignore_ascii_case(parsed.name)) else {
            return Outcome::Output(line.to_owned());
        };
        match *name {
            "add-mask" => {
                let value = unescape_data(parsed.data);
                // The runner refuses blank values (`IsNullOrWhiteSpace`), because masking
                // whitespace would garble the whole log.
                if value.trim().is_empty() { Outcome::Ignored } else { Outcome::Command(Command::AddMask(value)) }
            }
            "group" => Outcome::Command(Command::Group(unescape_data(parsed.data))),
            "endgroup" => Outcome::Command(Command::EndGroup),
            "debug" => Outcome::Command(Command::Debug(unescape_data(parsed.data))),
            "error" => Outcome::Command(annotation(Level::Error, &parsed)),
            "warning" => Outcome::Command(annotation(Level::Warning, &parsed)),
            "notice" => Outcome::Command(annotation(Level::Notice, &parsed)),
            // Only `echo` is left. This worker never echoes command lines into the log,
            // so switching echoing on or off changes nothing.
            _ => Outcome::Ignored,
        }
    }
}

/// A line that has the shape of a v2 command, before the name is checked.
///
/// It has no `Debug` implementation because its message may be an `add-mask` secret.
struct ParsedLine<'a> {
    /// The command name: the text between `::` and the first space or `::`.
    name: &'a str,
    /// The raw, still escaped, properties: the text after the first space, if any.
    properties: &'a str,
    /// The raw, still escaped, message: everything after the second `::`.
    data: &'a str,
}

impl ParsedLine<'_> {
    /// The unescaped value of the last property whose key equals `key`, ignoring
    /// ASCII case; later duplicates win, as they overwrite earlier ones in the
    /// runner's dictionary.
    fn property(&self, key: &str) -> Option<String> {
        self.properties
            .split(',')
            .rev()
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, value)| !name.is_empty() && !value.is_empty() && name.eq_ignore_ascii_case(key))
            .map(|(_, value)| unescape_property(value))
    }

    /// The property `key` as a number, or `None` if it is missing or not a number.
    ///
    /// The runner uses `int.TryParse`, which allows surrounding whitespace and a
    /// sign; negative numbers have no meaning for positions, so they count as absent.
    fn number_property(&self, key: &str) -> Option<u32> {
        self.property(key).and_then(|value| value.trim().parse().ok())
    }
}

/// Splits a line into command name, properties and message, or returns `None` if it
/// does not start (after leading whitespace) with `::name...::`.
fn parse_line(line: &str) -> Option<ParsedLine<'_>> {
    let rest = line.trim_start().strip_prefix("::")?;
    let (info, data) = rest.split_once("::")?;
    let (name, properties) = match info.split_once(' ') {
        Some((name, properties)) => (name, properties.trim()),
        None => (info, ""),
    };
    if name.is_empty() {
        return None;
    }
    Some(ParsedLine { name, properties, data })
}

/// Builds the annotation for an `error`, `warning` or `notice` command.
fn annotation(level: Level, parsed: &ParsedLine<'_>) -> Command {
    Command::Annotation {
        level,
        message: unescape_data(parsed.data),
        file: parsed.property("file"),
        line: parsed.number_property("line"),
        end_line: parsed.number_property("endLine"),
        col: parsed.number_property("col"),
        end_column: parsed.number_property("endColumn"),
        title: parsed.property("title"),
    }
}

/// Removes one trailing line ending, so that callers may pass lines with or without it.
fn strip_line_ending(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// Decodes the escapes allowed in a command's message: `%25`, `%0D` and `%0A`.
fn unescape_data(escaped: &str) -> String {
    unescape(escaped, &[("%25", '%'), ("%0D", '\r'), ("%0A", '\n')])
}

/// Decodes the escapes allowed in a property value: those of a message plus `%3A`
/// and `%2C`, which stand for the `:` and `,` that would otherwise end the value.
fn unescape_property(escaped: &str) -> String {
    unescape(escaped, &[("%25", '%'), ("%0D", '\r'), ("%0A", '\n'), ("%3A", ':'), ("%2C", ',')])
}

/// Decodes `escaped` in one left-to-right pass, so that `%250A` becomes the text
/// `%0A` rather than a newline. The runner replaces one escape after the other with
/// `%25` last, which gives the same result. Unknown escapes are kept as they are.
fn unescape(escaped: &str, mappings: &[(&str, char)]) -> String {
    let mut unescaped = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(percent) = rest.find('%') {
        unescaped.push_str(&rest[..percent]);
        rest = &rest[percent..];
        match mappings.iter().find(|(code, _)| rest.starts_with(code)) {
            Some((code, decoded)) => {
                unescaped.push(*decoded);
                rest = &rest[code.len()..];
            }
            None => {
                unescaped.push('%');
                rest = &rest[1..];
            }
        }
    }
    unescaped.push_str(rest);
    unescaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(line: &str) -> Outcome {
        Outcome::Output(line.to_owned())
    }

    fn command(command: Command) -> Outcome {
        Outcome::Command(command)
    }

    fn annotation(level: Level, message: &str) -> Command {
        Command::Annotation {
            level,
            message: message.to_owned(),
            file: None,
            line: None,
            end_line: None,
            col: None,
            end_column: None,
            title: None,
        }
    }

    /// The optional fields of an annotation, so that tests can name only the ones
    /// they care about.
    #[derive(Default)]
    struct Fields {
        file: Option<String>,
        line: Option<u32>,
        end_line: Option<u32>,
        col: Option<u32>,
        end_column: Option<u32>,
        title: Option<String>,
    }

    fn ann(level: Level, message: &str, fields: Fields) -> Command {
        let Fields { file, line, end_line, col, end_column, title } = fields;
        Command::Annotation { level, message: message.to_owned(), file, line, end_line, col, end_column, title }
    }

    /// Runs each line through a fresh processor.
    fn check_single_lines(cases: &[(&str, Outcome)]) {
        for (line, expected) in cases {
            assert_eq!(&CommandProcessor::new().process_line(line), expected, "line {line:?}");
        }
    }

    #[test]
    fn recognises_every_command() {
        check_single_lines(&[
            ("::add-mask::s3cret", command(Command::AddMask("s3cret".to_owned()))),
            ("::group::Build", command(Command::Group("Build".to_owned()))),
            ("::group::", command(Command::Group(String::new()))),
            ("::endgroup::", command(Command::EndGroup)),
            ("::endgroup::ignored text", command(Command::EndGroup)),
            ("::error::boom", command(annotation(Level::Error, "boom"))),
            ("::warning::careful", command(annotation(Level::Warning, "careful"))),
            ("::notice::fyi", command(annotation(Level::Notice, "fyi"))),
            ("::error::", command(annotation(Level::Error, ""))),
            ("::debug::details", command(Command::Debug("details".to_owned()))),
            ("::echo::on", Outcome::Ignored),
            ("::echo::off", Outcome::Ignored),
            ("::echo::nonsense", Outcome::Ignored),
        ]);
    }

    #[test]
    fn leaves_other_lines_as_output() {
        check_single_lines(&[
            ("", output("")),
            ("hello world", output("hello world")),
            ("::", output("::")),
            ("::::", output("::::")),
            (":: error::x", output(":: error::x")),
            ("::error", output("::error")),
            ("::error boom", output("::error boom")),
            (":error::x", output(":error::x")),
            ("text ::error::x", output("text ::error::x")),
            ("::set-output name=a::b", output("::set-output name=a::b")),
            ("::save-state name=a::b", output("::save-state name=a::b")),
            ("::set-env name=a::b", output("::set-env name=a::b")),
            ("::add-path::/bin", output("::add-path::/bin")),
            ("::add-matcher::m.json", output("::add-matcher::m.json")),
            ("::unknown::x", output("::unknown::x")),
            ("##[error]legacy syntax", output("##[error]legacy syntax")),
            ("::error\tfile=a::x", output("::error\tfile=a::x")),
            ("::errors::x", output("::errors::x")),
        ]);
    }

    #[test]
    fn follows_the_runner_on_whitespace_case_and_line_endings() {
        check_single_lines(&[
            // The runner trims leading whitespace before looking for `::`.
            ("   ::error::indented", command(annotation(Level::Error, "indented"))),
            ("\t::debug::tabbed", command(Command::Debug("tabbed".to_owned()))),
            // Command names are case-insensitive in the runner.
            ("::ERROR::loud", command(annotation(Level::Error, "loud"))),
            ("::EndGroup::", command(Command::EndGroup)),
            // The message is not trimmed, and everything after the second `::` is message.
            ("::debug::  a::b  ", command(Command::Debug("  a::b  ".to_owned()))),
            // A line ending passed along with the line is not part of the message.
            ("::debug::x\r\n", command(Command::Debug("x".to_owned()))),
            ("::debug::x\n", command(Command::Debug("x".to_owned()))),
            ("::group::x\r", command(Command::Group("x".to_owned()))),
        ]);
        // Plain lines come back exactly as given, line ending included.
        check_single_lines(&[("plain\r\n", output("plain\r\n"))]);
    }

    #[test]
    fn unescapes_messages_and_properties() {
        check_single_lines(&[
            ("::debug::100%25", command(Command::Debug("100%".to_owned()))),
            ("::debug::a%0Ab%0Dc", command(Command::Debug("a\nb\rc".to_owned()))),
            // Property-only escapes are left alone in the message.
            ("::debug::a%3Ab%2Cc", command(Command::Debug("a%3Ab%2Cc".to_owned()))),
            // `%25` is decoded once, never twice.
            ("::debug::%250A", command(Command::Debug("%0A".to_owned()))),
            // Lower-case and unknown escapes and lone percent signs are kept.
            ("::debug::%0a %zz 5% %", command(Command::Debug("%0a %zz 5% %".to_owned()))),
            ("::group::caf%C3%A9", command(Command::Group("caf%C3%A9".to_owned()))),
            ("::debug::héllo 🌍%0A", command(Command::Debug("héllo 🌍\n".to_owned()))),
            ("::add-mask::p%25ss%0Aword", command(Command::AddMask("p%ss\nword".to_owned()))),
            (
                "::error title=a%3Ab%2Cc%25d%0Ae%0Df::m",
                command(ann(
                    Level::Error,
                    "m",
                    Fields { title: Some("a:b,c%d\ne\rf".to_owned()), ..Fields::default() },
                )),
            ),
            (
                "::error title=%253A::m",
                command(ann(Level::Error, "m", Fields { title: Some("%3A".to_owned()), ..Fields::default() })),
            ),
        ]);
    }

    #[test]
    fn parses_annotation_properties() {
        check_single_lines(&[
            (
                "::error file=src/main.rs,line=10,endLine=12,col=5,endColumn=7,title=Bad thing::It broke",
                command(Command::Annotation {
                    level: Level::Error,
                    message: "It broke".to_owned(),
                    file: Some("src/main.rs".to_owned()),
                    line: Some(10),
                    end_line: Some(12),
                    col: Some(5),
                    end_column: Some(7),
                    title: Some("Bad thing".to_owned()),
                }),
            ),
            (
                "::warning file=a.py,line=3::msg",
                command(ann(
                    Level::Warning,
                    "msg",
                    Fields { file: Some("a.py".to_owned()), line: Some(3), ..Fields::default() },
                )),
            ),
            // Keys are case-insensitive, and the last duplicate wins.
            (
                "::notice FILE=a,LINE=1,line=2,ENDLINE=4,Col=3,ENDCOLUMN=9::m",
                command(ann(
                    Level::Notice,
                    "m",
                    Fields {
                        file: Some("a".to_owned()),
                        line: Some(2),
                        end_line: Some(4),
                        col: Some(3),
                        end_column: Some(9),
                        ..Fields::default()
                    },
                )),
            ),
            // Non-numeric and negative numbers are ignored; whitespace and `+` are allowed.
            (
                "::error line=abc,endLine=-1,col= 4 ,endColumn=+5::m",
                command(ann(Level::Error, "m", Fields { col: Some(4), end_column: Some(5), ..Fields::default() })),
            ),
            // Unknown keys, empty values, empty keys and pieces without `=` are ignored.
            (
                "::error foo=bar,file=,=x,noequals,,title=t::m",
                command(ann(Level::Error, "m", Fields { title: Some("t".to_owned()), ..Fields::default() })),
            ),
            // Keys are not trimmed, as in the runner, so ` line` is an unknown key.
            (
                "::error file=a, line=2::m",
                command(ann(Level::Error, "m", Fields { file: Some("a".to_owned()), ..Fields::default() })),
            ),
            // The property string as a whole is trimmed.
            (
                "::error   file=a  ::m",
                command(ann(Level::Error, "m", Fields { file: Some("a".to_owned()), ..Fields::default() })),
            ),
            // A value may contain `=`; only the first one separates key and value.
            (
                "::error title=a=b::m",
                command(ann(Level::Error, "m", Fields { title: Some("a=b".to_owned()), ..Fields::default() })),
            ),
            // Numbers too large for u32 are ignored.
            ("::error line=4294967296::m", command(annotation(Level::Error, "m"))),
            // Properties on commands that take none are ignored.
            ("::group title=x::G", command(Command::Group("G".to_owned()))),
        ]);
    }

    #[test]
    fn ignores_blank_masks() {
        check_single_lines(&[
            ("::add-mask::", Outcome::Ignored),
            ("::add-mask::   ", Outcome::Ignored),
            ("::add-mask::%0A", Outcome::Ignored),
            ("::add-mask:: padded ", command(Command::AddMask(" padded ".to_owned()))),
        ]);
    }

    #[test]
    fn stop_commands_suspends_until_the_token() {
        let mut processor = CommandProcessor::new();
        let script: &[(&str, Outcome)] = &[
            ("::debug::before", command(Command::Debug("before".to_owned()))),
            ("::stop-commands::pause-7f3a", command(Command::StopCommands)),
            ("::error::not a command now", output("::error::not a command now")),
            ("::add-mask::nope", output("::add-mask::nope")),
            ("::stop-commands::other", output("::stop-commands::other")),
            ("::pause-7f3ab::", output("::pause-7f3ab::")),
            ("pause-7f3a", output("pause-7f3a")),
            ("plain", output("plain")),
            ("::pause-7f3a::", command(Command::ResumeCommands)),
            ("::error::a command again", command(annotation(Level::Error, "a command again"))),
            ("::pause-7f3a::", output("::pause-7f3a::")),
        ];
        for (step, (line, expected)) in script.iter().enumerate() {
            assert_eq!(&processor.process_line(line), expected, "step {step}: {line:?}");
        }
    }

    #[test]
    fn resume_token_matches_like_a_command_name() {
        let resumers = [
            "::TOKEN::",
            "::token::",
            "  ::Token::",
            "::token::trailing message",
            "::token key=value::",
            "::token::\r\n",
        ];
        for resumer in resumers {
            let mut processor = CommandProcessor::new();
            assert_eq!(processor.process_line("::stop-commands::token"), command(Command::StopCommands));
            assert_eq!(processor.stop_token(), Some("token"));
            assert_eq!(processor.process_line(resumer), command(Command::ResumeCommands), "{resumer:?}");
            assert_eq!(processor.stop_token(), None);
        }
    }

    #[test]
    fn stop_token_is_unescaped() {
        let mut processor = CommandProcessor::new();
        assert_eq!(processor.process_line("::stop-commands::100%25"), command(Command::StopCommands));
        assert_eq!(processor.stop_token(), Some("100%"));
        assert_eq!(processor.process_line("::100%::"), command(Command::ResumeCommands));
    }

    #[test]
    fn refuses_empty_and_reserved_stop_tokens() {
        for line in [
            "::stop-commands::",
            "::stop-commands::error",
            "::stop-commands::Add-Mask",
            "::stop-commands::pause-logging",
        ] {
            let mut processor = CommandProcessor::new();
            assert_eq!(processor.process_line(line), output(line), "{line:?}");
            assert_eq!(processor.stop_token(), None, "{line:?}");
            assert_eq!(processor.process_line("::debug::still on"), command(Command::Debug("still on".to_owned())));
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mask = Outcome::Command(Command::AddMask("hunter2".to_owned()));
        assert_eq!(format!("{mask:?}"), "Command(AddMask(<redacted>))");

        let mut processor = CommandProcessor::new();
        processor.process_line("::stop-commands::sekrit-token");
        assert_eq!(format!("{processor:?}"), "CommandProcessor { stopped: true }");
    }
}
