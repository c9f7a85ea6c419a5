//! The one grammar of Postern's scripted SMTP dialogs.
//!
//! Two runners play dialogs: smtp-protocol's session tests feed them to a
//! sans-IO `Session`, and the end-to-end scenarios (`tests/scenarios/`) play
//! them over TCP against the real binaries. Both read scripts with this one
//! parser, so a script means the same thing to both and the grammar cannot
//! drift. The parser is pure (no I/O); each runner interprets the
//! directives it knows and reports any other as an error at its line.
//!
//! # Grammar
//!
//! One step per line; lines are numbered from 1 and every step keeps its
//! line number, so a runner can report `file:line`.
//!
//! | line | step |
//! | --- | --- |
//! | `C: text` | the client sends `text` followed by CRLF (`C:` alone sends an empty line) |
//! | `C~ text` | the client sends these raw bytes, nothing added; escapes `\r`, `\n`, `\0`, `\\` and `\xHH` |
//! | `S: text` | the next server reply line is exactly `text`; a trailing `*` matches any rest of the line |
//! | `= name args…` | a directive for the runner (see each runner for the ones it knows) |
//! | `# …` or blank | ignored |
//!
//! Anything else, an unknown escape, or a directive without a name is a
//! [`ParseError`] naming the line.

use std::fmt;

/// A parsed dialog: its steps in script order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub steps: Vec<Step>,
}

/// One meaningful line of a script, with the line number it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line number in the script.
    pub line: usize,
    pub kind: StepKind,
}

/// What a step asks the runner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// Bytes the client sends in one write (`C:` with CRLF added, or `C~`).
    Send(Vec<u8>),
    /// The next reply line the server must send (`S:`).
    Expect(ReplyPattern),
    /// A runner-specific event or setting (`= name args…`).
    Directive(Directive),
}

/// The expected text of one server reply line, and the matching rule both
/// runners apply: equal, or, when the script's text ends in `*`, starting
/// with what comes before the `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPattern {
    text: String,
    any_rest: bool,
}

impl ReplyPattern {
    /// Reads a pattern as written after `S: `.
    pub fn new(written: &str) -> Self {
        match written.strip_suffix('*') {
            Some(prefix) => ReplyPattern {
                text: prefix.to_string(),
                any_rest: true,
            },
            None => ReplyPattern {
                text: written.to_string(),
                any_rest: false,
            },
        }
    }

    /// Whether `line` (without CRLF) is what the script expects.
    pub fn matches(&self, line: &str) -> bool {
        if self.any_rest {
            line.starts_with(&self.text)
        } else {
            line == self.text
        }
    }
}

impl fmt::Display for ReplyPattern {
    /// The pattern as the script wrote it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if self.any_rest {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// `= name args…`: the name and its whitespace-separated arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
}

impl Directive {
    /// Checks that the directive has no arguments.
    pub fn no_args(&self) -> Result<(), String> {
        if self.args.is_empty() {
            Ok(())
        } else {
            Err(format!("`= {}` takes no arguments", self.name))
        }
    }

    /// The directive's one argument as a number.
    pub fn number(&self) -> Result<u64, String> {
        match self.args.as_slice() {
            [one] => one
                .parse()
                .map_err(|_| format!("`= {}`: {one:?} is not a number", self.name)),
            _ => Err(format!("`= {}` takes one number", self.name)),
        }
    }

    /// The directive's one argument, whatever it is.
    pub fn single(&self) -> Result<&str, String> {
        match self.args.as_slice() {
            [one] => Ok(one),
            _ => Err(format!("`= {}` takes one argument", self.name)),
        }
    }
}

impl fmt::Display for Directive {
    /// The directive as the script wrote it, without its `= `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// A line the grammar does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole script; the first unreadable line is the error.
pub fn parse(script: &str) -> Result<Script, ParseError> {
    let mut steps = Vec::new();
    for (index, text) in script.lines().enumerate() {
        let line = index + 1;
        let error = |message: String| ParseError { line, message };
        if text.trim().is_empty() || text.starts_with('#') {
            continue;
        }
        let kind = if text == "C:" {
            StepKind::Send(b"\r\n".to_vec())
        } else if let Some(command) = text.strip_prefix("C: ") {
            let mut bytes = command.as_bytes().to_vec();
            bytes.extend_from_slice(b"\r\n");
            StepKind::Send(bytes)
        } else if let Some(raw) = text.strip_prefix("C~ ") {
            StepKind::Send(unescape(raw).map_err(error)?)
        } else if text == "S:" {
            StepKind::Expect(ReplyPattern::new(""))
        } else if let Some(reply) = text.strip_prefix("S: ") {
            StepKind::Expect(ReplyPattern::new(reply))
        } else if let Some(directive) = text.strip_prefix('=') {
            let mut words = directive.split_whitespace().map(str::to_string);
            let Some(name) = words.next() else {
                return Err(error("a directive without a name".into()));
            };
            StepKind::Directive(Directive {
                name,
                args: words.collect(),
            })
        } else {
            return Err(error(format!(
                "cannot read {text:?} (expected `C: `, `C~ `, `S: `, `= `, `#` or a blank line)"
            )));
        };
        steps.push(Step { line, kind });
    }
    Ok(Script { steps })
}

/// The bytes a `C~` line stands for: its UTF-8 text with `\r`, `\n`, `\0`,
/// `\\` and `\xHH` (exactly two hex digits) replaced.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = (hex.len() == 2 && hex.chars().all(|h| h.is_ascii_hexdigit()))
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("`\\x` needs two hex digits, got {hex:?}"))?;
                out.push(byte);
            }
            Some(other) => return Err(format!("unknown escape `\\{other}`")),
            None => return Err("a lone `\\` at the end of the line".into()),
        }
    }
    Ok(out)
}

/// One failed dialog (or scenario check), located as precisely as the
/// runner could: `file:line: message`, or `file: message` when no line is
/// to blame (e.g. output left over at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Failure {
    /// A failure at a script line.
    pub fn at(file: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        Failure {
            file: file.into(),
            line: Some(line),
            message: message.into(),
        }
    }

    /// A failure of the file as a whole.
    pub fn whole(file: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }

    /// The failure of a script that did not parse.
    pub fn unparsable(file: impl Into<String>, error: ParseError) -> Self {
        Failure::at(file, error.line, error.message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The closing message of a run: how many dialogs ran, and every failure,
/// one per paragraph, so one failing dialog never hides another.
pub fn summary(ran: usize, failures: &[Failure]) -> String {
    let mut text = format!("{} failure(s) in {ran} dialog(s):", failures.len());
    for failure in failures {
        text.push_str(&format!("\n\n{failure}"));
    }
    text
}

#[cfg(test)]
mod tests;
