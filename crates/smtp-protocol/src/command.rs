//! Parsing of one SMTP command line (RFC 5321 §4.1.1) into a [`Command`].
//!
//! Sans-IO: the driver strips CRLF and enforces the 512-octet line limit;
//! [`Command::parse`] gets the bare line. Errors carry their reply class via
//! [`CommandError::reply`].
//!
//! Deliberate leniency, for senders that big providers' software still
//! produces, each harmless because it cannot change what the line means:
//! - verbs, `FROM:`/`TO:` and parameter keywords in any case;
//! - a space after `FROM:`/`TO:` (`MAIL FROM: <a@b>`);
//! - a bare address without `<>` (`MAIL FROM:a@b`), which then ends at the
//!   first space (a quoted local part with spaces needs the brackets);
//! - runs of spaces between words, and trailing spaces;
//! - `NOOP` with any argument.
//!
//! Strictness, where security needs it: any C0 control (NUL, CR, LF, TAB...)
//! or DEL anywhere refuses the line; 8-bit bytes are allowed only in the
//! MAIL/RCPT address and must be valid UTF-8 (whether SMTPUTF8 permits them
//! is the session's call, via [`crate::address::Mailbox::is_utf8`]); a
//! leading space makes the verb unrecognized; duplicate parameters are
//! refused.

mod error;
#[cfg(test)]
mod fuzz_tests;
mod params;
#[cfg(test)]
mod tests;

pub use error::{CommandError, ErrorReply, ParameterError};
pub use params::{Body, MailParams, RcptParams};

use std::borrow::Cow;

use crate::address::{
    AddressError, ForwardPath, ReversePath, parse_forward_path, parse_reverse_path, path_token_len,
};

/// The most characters of an unknown verb kept for logging.
const MAX_LOGGED_VERB_CHARS: usize = 16;

const MAIL_USAGE: &str = "MAIL FROM:<address> [parameters]";
const RCPT_USAGE: &str = "RCPT TO:<address> [parameters]";
const AUTH_USAGE: &str = "AUTH mechanism [initial-response]";

/// One client command, parsed and syntax-checked.
///
/// It exists so the session state machine matches on typed values and never
/// looks at raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO name`: the first word as sent (domain or address literal).
    Helo(String),
    /// `EHLO name`: the first word as sent; further words are ignored.
    Ehlo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The sender, or null for bounces.
        from: ReversePath,
        /// SIZE, BODY, SMTPUTF8, AUTH and the rest.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The recipient, or bare `<postmaster>`.
        to: ForwardPath,
        /// Parameters, uninterpreted.
        params: RcptParams,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [anything]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS`.
    StartTls,
    /// `VRFY string`, as sent (trimmed).
    Vrfy(String),
    /// `HELP [topic]`.
    Help(Option<String>),
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// Uppercased SASL mechanism name.
        mechanism: String,
        /// Base64 text or `=`, as sent.
        initial_response: Option<String>,
    },
    /// `XCLIENT ...`: recognised only so the session can refuse it explicitly
    /// (it must never be accepted from the public side); arguments as sent.
    Xclient(String),
    /// `PROXY ...`: a PROXY protocol v1 header arriving as a command, from a
    /// client that is not a trusted proxy (connection.ini `[haproxy]
    /// hosts[]`); recognised only so the session can refuse it as Haraka
    /// does. Arguments as sent.
    Proxy(String),
}

impl Command {
    /// Parses one command line without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        if let Some(&byte) = line.iter().find(|b| b.is_ascii_control()) {
            return Err(CommandError::ControlCharacter { byte });
        }
        if line.iter().all(|&b| b == b' ') {
            return Err(CommandError::EmptyLine);
        }
        let (verb, rest) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], &line[space + 1..]),
            None => (line, &line[line.len()..]),
        };
        let Some(verb) = recognize_verb(verb) else {
            return Err(CommandError::Unrecognized {
                verb: sanitize_verb(verb),
            });
        };
        match verb {
            "MAIL" => parse_mail(utf8_argument(verb, rest)?),
            "RCPT" => parse_rcpt(utf8_argument(verb, rest)?),
            _ => parse_ascii_command(verb, ascii_argument(verb, rest)?),
        }
    }

    /// The command's verb in canonical uppercase, for logs and replies.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Helo(_) => "HELO",
            Command::Ehlo(_) => "EHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Vrfy(_) => "VRFY",
            Command::Help(_) => "HELP",
            Command::Auth { .. } => "AUTH",
            Command::Xclient(_) => "XCLIENT",
            Command::Proxy(_) => "PROXY",
        }
    }
}

/// Every verb we parse; also the source of the `&'static str` verbs used in
/// errors.
const KNOWN_VERBS: [&str; 14] = [
    "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "STARTTLS", "VRFY", "HELP",
    "AUTH", "XCLIENT", "PROXY",
];

fn recognize_verb(verb: &[u8]) -> Option<&'static str> {
    KNOWN_VERBS
        .into_iter()
        .find(|known| known.as_bytes().eq_ignore_ascii_case(verb))
}

/// Printable ASCII only and bounded, so a hostile verb is safe to log.
fn sanitize_verb(verb: &[u8]) -> String {
    verb.iter()
        .take(MAX_LOGGED_VERB_CHARS)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

fn ascii_argument<'a>(verb: &'static str, rest: &'a [u8]) -> Result<&'a str, CommandError> {
    if !rest.is_ascii() {
        return Err(CommandError::NonAscii { verb });
    }
    std::str::from_utf8(rest)
        .map(|text| text.trim_matches(' '))
        .map_err(|_| CommandError::NonAscii { verb })
}

fn utf8_argument<'a>(verb: &'static str, rest: &'a [u8]) -> Result<&'a str, CommandError> {
    std::str::from_utf8(rest)
        .map(|text| text.trim_matches(' '))
        .map_err(|_| CommandError::InvalidUtf8 { verb })
}

fn parse_ascii_command(verb: &'static str, argument: &str) -> Result<Command, CommandError> {
    let no_arguments = |command: Command| {
        if argument.is_empty() {
            Ok(command)
        } else {
            Err(CommandError::NoArgumentsAllowed { verb })
        }
    };
    let required = || {
        if argument.is_empty() {
            Err(CommandError::MissingArgument { verb })
        } else {
            Ok(argument)
        }
    };
    match verb {
        "HELO" => Ok(Command::Helo(first_word(required()?).to_owned())),
        "EHLO" => Ok(Command::Ehlo(first_word(required()?).to_owned())),
        "DATA" => no_arguments(Command::Data),
        "RSET" => no_arguments(Command::Rset),
        "QUIT" => no_arguments(Command::Quit),
        "STARTTLS" => no_arguments(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "VRFY" => Ok(Command::Vrfy(required()?.to_owned())),
        "HELP" => Ok(Command::Help(
            (!argument.is_empty()).then(|| argument.to_owned()),
        )),
        "AUTH" => parse_auth(required()?),
        "XCLIENT" => Ok(Command::Xclient(argument.to_owned())),
        "PROXY" => Ok(Command::Proxy(argument.to_owned())),
        _ => Err(CommandError::Unrecognized {
            verb: verb.to_owned(),
        }),
    }
}

fn first_word(argument: &str) -> &str {
    argument.split(' ').next().unwrap_or(argument)
}

/// Splits `FROM:<path> params` / `TO:<path> params` after the keyword into
/// the path (always bracketed, bare addresses wrapped) and the parameters.
fn split_path_argument<'a>(
    argument: &'a str,
    keyword: &str,
    usage: &'static str,
    to_address_error: fn(AddressError) -> CommandError,
) -> Result<(Cow<'a, str>, &'a str), CommandError> {
    let syntax = CommandError::Syntax { usage };
    let after_keyword = argument
        .get(..keyword.len())
        .filter(|prefix| prefix.eq_ignore_ascii_case(keyword))
        .and_then(|_| argument.get(keyword.len()..))
        .ok_or(syntax.clone())?
        .trim_start_matches(' ');
    if after_keyword.is_empty() {
        return Err(syntax);
    }
    if after_keyword.starts_with('<') {
        let path_len = path_token_len(after_keyword).map_err(to_address_error)?;
        let (path, rest) = after_keyword.split_at(path_len);
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(syntax);
        }
        Ok((Cow::Borrowed(path), rest))
    } else {
        let (bare, rest) = after_keyword.split_once(' ').unwrap_or((after_keyword, ""));
        Ok((Cow::Owned(format!("<{bare}>")), rest))
    }
}

fn parse_mail(argument: &str) -> Result<Command, CommandError> {
    let (path, params) =
        split_path_argument(argument, "FROM:", MAIL_USAGE, CommandError::InvalidSender)?;
    let from = parse_reverse_path(&path).map_err(CommandError::InvalidSender)?;
    let params = params::parse_mail_params(params)?;
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(argument: &str) -> Result<Command, CommandError> {
    let (path, params) =
        split_path_argument(argument, "TO:", RCPT_USAGE, CommandError::InvalidRecipient)?;
    let to = parse_forward_path(&path).map_err(CommandError::InvalidRecipient)?;
    let params = params::parse_rcpt_params(params)?;
    Ok(Command::Rcpt { to, params })
}

/// RFC 4422 mechanism names (1–20 of `A-Z 0-9 - _`, taken in any case) and an
/// RFC 4954 initial response (base64, or `=` for an empty one).
fn parse_auth(argument: &str) -> Result<Command, CommandError> {
    let syntax = CommandError::Syntax { usage: AUTH_USAGE };
    let mut words = argument.split(' ').filter(|word| !word.is_empty());
    let mechanism = words.next().ok_or(syntax.clone())?;
    let initial_response = words.next();
    if words.next().is_some() {
        return Err(syntax);
    }
    let mechanism_ok = (1..=20).contains(&mechanism.len())
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let response_ok = initial_response.is_none_or(|response| {
        response == "="
            || response
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    });
    if !mechanism_ok || !response_ok {
        return Err(syntax);
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial_response: initial_response.map(str::to_owned),
    })
}
