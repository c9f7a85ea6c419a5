//! A scenario's `expect` file: what the recording MX servers must have
//! received, and what the relay must have logged, once the dialogs ran.
//!
//! One statement a line (leading blanks allowed, so a message's checks can
//! be indented); `#` comments and blank lines are ignored:
//!
//! | line | meaning |
//! | --- | --- |
//! | `message IP` | the next message the MX on IP (127.0.0.x) accepted; the lines up to the next `message` check it |
//! | `mail-from <ADDRESS>` | its `MAIL FROM` argument, exactly (`<>` for a bounce) |
//! | `rcpt ADDRESS…` | its envelope recipients, exactly, in order |
//! | `header Name: value` | one of its header lines (folded lines joined with a space) |
//! | `contains TEXT` | its data contains TEXT, written with the `C~` escapes of dialogs (`\r`, `\n`, `\0`, `\\`, `\xHH`) |
//! | `dsn Field: value` | it is a delivery status notification whose `message/delivery-status` part has this field, per message or for a recipient |
//! | `sessions IP N` | the MX on IP had exactly N connections |
//! | `log TEXT` | the relay's log shows TEXT |
//!
//! `header` and `dsn` values match as reply lines do in dialogs: exactly,
//! or by prefix before a trailing `*`. Field names are case-insensitive.
//!
//! Checking waits (bounded) for the positive events: each MX having
//! accepted as many messages as the `message` lines name, and each `log`
//! text. Then, at once, it checks that no MX accepted more, each message
//! line by line, and the `sessions` counts.

use std::collections::BTreeMap;
use std::time::Duration;

use dialog_script::{Failure, ParseError, ReplyPattern};

use super::world::{RunningWorld, server_octet};
use crate::backend::{Accepted, RecordingBackend};
use crate::outbound::{parse_dsn, strip_ansi, wait_until};
use crate::process::Relay;

/// How long checking waits for an expected message or log line.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed `expect` file.
#[derive(Debug, Default)]
pub struct Expectations {
    messages: Vec<ExpectedMessage>,
    sessions: Vec<(usize, u8, usize)>,
    logs: Vec<(usize, String)>,
}

/// One `message IP` block.
#[derive(Debug)]
struct ExpectedMessage {
    line: usize,
    server: u8,
    checks: Vec<(usize, MessageCheck)>,
}

/// One line of a `message` block.
#[derive(Debug)]
enum MessageCheck {
    MailFrom(String),
    Recipients(Vec<String>),
    Header(ReplyPattern),
    Contains(Vec<u8>),
    Dsn { field: String, value: ReplyPattern },
}

impl Expectations {
    pub fn parse(text: &str) -> Result<Expectations, ParseError> {
        let mut expect = Expectations::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |message: String| ParseError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
            let rest = rest.trim();
            let check = match keyword {
                "message" => {
                    let server = server_octet(rest).map_err(error)?;
                    expect.messages.push(ExpectedMessage {
                        line,
                        server,
                        checks: Vec::new(),
                    });
                    continue;
                }
                "sessions" => {
                    let (ip, count) = rest.split_once(' ').unwrap_or((rest, ""));
                    let server = server_octet(ip).map_err(error)?;
                    let count = count
                        .trim()
                        .parse()
                        .map_err(|_| error(format!("bad session count {count:?}")))?;
                    expect.sessions.push((line, server, count));
                    continue;
                }
                "log" if !rest.is_empty() => {
                    expect.logs.push((line, rest.to_string()));
                    continue;
                }
                "mail-from" if !rest.is_empty() => MessageCheck::MailFrom(rest.to_string()),
                "rcpt" if !rest.is_empty() => {
                    MessageCheck::Recipients(rest.split_whitespace().map(str::to_string).collect())
                }
                "header" if rest.contains(':') => MessageCheck::Header(ReplyPattern::new(rest)),
                "contains" if !rest.is_empty() => {
                    MessageCheck::Contains(dialog_script::unescape(rest).map_err(error)?)
                }
                "dsn" => {
                    let (field, value) = rest.split_once(':').ok_or_else(|| {
                        error(format!("`dsn` needs `Field: value`, got {rest:?}"))
                    })?;
                    MessageCheck::Dsn {
                        field: field.trim().to_ascii_lowercase(),
                        value: ReplyPattern::new(value.trim()),
                    }
                }
                _ => return Err(error(format!("cannot read {trimmed:?}"))),
            };
            let message = expect
                .messages
                .last_mut()
                .ok_or_else(|| error(format!("`{keyword}` before any `message` line")))?;
            message.checks.push((line, check));
        }
        Ok(expect)
    }

    /// Checks everything against the scenario's world and relay; every
    /// unmet expectation is a failure at its line of `file`.
    pub async fn check(
        &self,
        file: &str,
        world: Option<&RunningWorld>,
        relay: &Relay,
    ) -> Vec<Failure> {
        let mut failures = Vec::new();
        let farm = world.and_then(|world| world.farm.as_ref());
        let server = |octet: u8| -> Option<&RecordingBackend> {
            farm.and_then(|farm| farm.servers().find(|(o, _)| *o == octet).map(|(_, s)| s))
        };
        // The positive events first: the messages arrive, the log shows up.
        let mut wanted: BTreeMap<u8, (usize, usize)> = BTreeMap::new();
        for message in &self.messages {
            let entry = wanted.entry(message.server).or_insert((message.line, 0));
            entry.1 += 1;
        }
        for (&octet, &(line, count)) in &wanted {
            let Some(mx) = server(octet) else {
                failures.push(Failure::at(
                    file,
                    line,
                    format!("no `server 127.0.0.{octet}` in the world file"),
                ));
                continue;
            };
            let arrived = wait_until(EXPECT_TIMEOUT, "messages", || mx.accepted().len() >= count);
            if arrived.await.is_err() {
                failures.push(Failure::at(
                    file,
                    line,
                    format!(
                        "the MX on 127.0.0.{octet} accepted {} message(s) within {EXPECT_TIMEOUT:?}, expected {count}; commands it saw: {:?}",
                        mx.accepted().len(),
                        mx.record().lines
                    ),
                ));
            }
        }
        for (line, text) in &self.logs {
            let shown = wait_until(EXPECT_TIMEOUT, text, || {
                strip_ansi(&relay.log()).contains(text)
            });
            if shown.await.is_err() {
                failures.push(Failure::at(
                    file,
                    *line,
                    format!("the log never showed {text:?} within {EXPECT_TIMEOUT:?}"),
                ));
            }
        }
        // Then, at once: no more messages than named, each one as described.
        for (octet, mx) in farm.into_iter().flat_map(|farm| farm.servers()) {
            let accepted = mx.accepted();
            let named = wanted.get(&octet).map_or(0, |(_, count)| *count);
            if accepted.len() > named {
                failures.push(Failure::whole(
                    file,
                    format!(
                        "the MX on 127.0.0.{octet} accepted {} message(s), the file names {named}: {:?}",
                        accepted.len(),
                        accepted.iter().map(|m| (&m.mail_from, &m.rcpts)).collect::<Vec<_>>()
                    ),
                ));
            }
        }
        let mut seen: BTreeMap<u8, usize> = BTreeMap::new();
        for message in &self.messages {
            let index = seen.entry(message.server).or_insert(0);
            let accepted = server(message.server).and_then(|mx| mx.accepted().get(*index).cloned());
            *index += 1;
            let Some(accepted) = accepted else {
                continue; // already reported as missing
            };
            for (line, check) in &message.checks {
                if let Err(what) = check.against(&accepted) {
                    failures.push(Failure::at(file, *line, what));
                }
            }
        }
        for &(line, octet, count) in &self.sessions {
            match server(octet) {
                Some(mx) if mx.record().connections == count => {}
                Some(mx) => failures.push(Failure::at(
                    file,
                    line,
                    format!(
                        "the MX on 127.0.0.{octet} had {} session(s), expected {count}",
                        mx.record().connections
                    ),
                )),
                None => failures.push(Failure::at(
                    file,
                    line,
                    format!("no `server 127.0.0.{octet}` in the world file"),
                )),
            }
        }
        failures
    }
}

impl MessageCheck {
    /// `Err(what differs)` when `message` does not pass this check.
    fn against(&self, message: &Accepted) -> Result<(), String> {
        let data = String::from_utf8_lossy(&message.data);
        match self {
            MessageCheck::MailFrom(expected) if message.mail_from == *expected => Ok(()),
            MessageCheck::MailFrom(expected) => Err(format!(
                "MAIL FROM was {:?}, expected {expected:?}",
                message.mail_from
            )),
            MessageCheck::Recipients(expected) if message.rcpts == *expected => Ok(()),
            MessageCheck::Recipients(expected) => Err(format!(
                "the recipients were {:?}, expected {expected:?}",
                message.rcpts
            )),
            MessageCheck::Header(pattern) => {
                let headers = header_lines(&data);
                if headers.iter().any(|header| pattern.matches(header)) {
                    Ok(())
                } else {
                    Err(format!(
                        "no header line {:?} in {headers:#?}",
                        pattern.to_string()
                    ))
                }
            }
            MessageCheck::Contains(bytes)
                if message
                    .data
                    .windows(bytes.len())
                    .any(|w| w == bytes.as_slice()) =>
            {
                Ok(())
            }
            MessageCheck::Contains(bytes) => Err(format!(
                "the data lacks {:?}:\n{data}",
                String::from_utf8_lossy(bytes)
            )),
            MessageCheck::Dsn { field, value } => {
                let dsn = parse_dsn(&message.data).map_err(|e| format!("not a DSN: {e:#}"))?;
                let values: Vec<&String> = std::iter::once(&dsn.per_message)
                    .chain(&dsn.recipients)
                    .filter_map(|fields| fields.get(field))
                    .collect();
                if values.iter().any(|got| value.matches(got)) {
                    Ok(())
                } else {
                    Err(format!(
                        "DSN field {field}: expected {:?}, found {values:?}",
                        value.to_string()
                    ))
                }
            }
        }
    }
}

/// The header section's lines, folded lines joined with a space.
fn header_lines(data: &str) -> Vec<String> {
    let head = data.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => lines.push(line.to_string()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_with_their_checks() {
        let expect = Expectations::parse(
            "# the bounce\nmessage 127.0.0.5\n  mail-from <>\n  rcpt a@origin.test\n\
             \x20 header Subject: *\n  dsn Status: 5.1.1\nsessions 127.0.0.2 2\nlog result=deferred\n",
        )
        .unwrap();
        assert_eq!(expect.messages.len(), 1);
        assert_eq!(expect.messages[0].server, 5);
        assert_eq!(expect.messages[0].checks.len(), 4);
        assert_eq!(expect.messages[0].checks[3].0, 6);
        assert_eq!(expect.sessions, [(7, 2, 2)]);
        assert_eq!(expect.logs, [(8, "result=deferred".to_string())]);
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, line, needle) in [
            ("mail-from <a@b>\n", 1, "before any `message`"),
            ("message 127.0.0.2\ndsn Status 5.1.1\n", 2, "`dsn` needs"),
            ("message 127.0.0.2\n\nheader Subject\n", 3, "cannot read"),
            ("message 192.0.2.1\n", 1, "not a 127.0.0.x"),
            ("sessions 127.0.0.2 many\n", 1, "bad session count"),
            ("message 127.0.0.2\ncontains a\\qb\n", 2, "unknown escape"),
        ] {
            let error = Expectations::parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn folded_header_lines_are_joined() {
        let data = "Received: from a\r\n\tby b; now\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(
            header_lines(data),
            ["Received: from a by b; now", "Subject: hi"]
        );
    }
}
