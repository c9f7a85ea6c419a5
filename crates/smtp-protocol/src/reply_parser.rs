//! Sans-IO parsing of a server's replies: octets in, [`Reply`] values out.
//!
//! The server on the other end may be hostile (relay-out talks to any MX on the
//! internet), so every limit is enforced while the octets arrive rather than
//! after a whole reply has been buffered.

use crate::reply::{EnhancedCode, Reply};

/// Longest reply line accepted, line ending excluded. RFC 5321 allows 512
/// octets; real servers exceed it (long AUTH lists, verbose rejections), so we
/// allow what Postfix's `line_length_limit` allows.
pub const MAX_REPLY_LINE: usize = 2048;

/// Most lines accepted in one reply; large enough for any EHLO list.
pub const MAX_REPLY_LINES: usize = 100;

/// How many octets of a bad line an error quotes, enough to recognise it in a
/// log without letting the server fill the log.
const EXCERPT_LEN: usize = 64;

/// Why the server's octets are not a valid reply. The connection cannot be
/// trusted to be in step any more, so every variant ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    #[error("reply longer than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    /// Not `ddd`, `ddd text` or `ddd-text` with a code from 200 to 599.
    #[error("malformed reply line {excerpt:?}")]
    Malformed { excerpt: String },
    /// A multi-line reply whose lines do not all carry the same code.
    #[error("reply code changed from {first} to {found} within one reply")]
    InconsistentCode { first: u16, found: u16 },
}

/// The lines of a multi-line reply read so far.
#[derive(Debug)]
struct PartialReply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    first: String,
    /// The lines after the first: most replies have none, and need no vector.
    rest: Vec<String>,
}

/// Incremental reply parser.
///
/// It exists so that the socket code only moves octets: feed whatever the
/// socket returned with [`push`](Self::push), then take complete replies with
/// [`next_reply`](Self::next_reply). Octets after a complete reply (pipelined
/// answers) stay buffered for the next call. Lines may end in CRLF or, from
/// sloppy servers, a bare LF.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buffer: Vec<u8>,
    /// Length of the buffer prefix already known to hold no LF, so that a line
    /// arriving one octet at a time is not rescanned from its start each time.
    scanned: usize,
    partial: Option<PartialReply>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends octets received from the server.
    pub fn push(&mut self, octets: &[u8]) {
        self.buffer.extend_from_slice(octets);
    }

    /// Where octets received from the server may be read to directly;
    /// appending here is the same as [`Self::push`]. A client reading into
    /// a chunk of its own held that chunk inside every future that awaits a
    /// reply (4 KiB, copied whenever such a future was moved: BENCHMARKS.md,
    /// issue 19).
    pub fn input(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    /// Whether any octets or lines are held that are not part of a reply
    /// already returned. After the `220` to STARTTLS this must be false: octets
    /// sent before the handshake but read after it would otherwise be taken as
    /// the server's answers inside TLS (response injection).
    pub fn has_buffered_input(&self) -> bool {
        !self.buffer.is_empty() || self.partial.is_some()
    }

    /// The next complete reply, `Ok(None)` if more octets are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(line_end) = self.find_line_end()? else {
                return Ok(None);
            };
            self.scanned = 0;
            // The line is parsed where it lies, then dropped from the buffer.
            let content = strip_line_ending(&self.buffer[..=line_end]);
            let accepted = if content.len() > MAX_REPLY_LINE {
                Err(ReplyError::LineTooLong)
            } else {
                accept_line(&mut self.partial, content)
            };
            self.buffer.drain(..=line_end);
            if let Some(reply) = accepted? {
                return Ok(Some(reply));
            }
        }
    }

    /// Index of the LF ending the first buffered line, or an error once the
    /// line can no longer fit the limit (so a server cannot make us buffer an
    /// endless line).
    fn find_line_end(&mut self) -> Result<Option<usize>, ReplyError> {
        match self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(offset) => Ok(Some(self.scanned + offset)),
            None => {
                self.scanned = self.buffer.len();
                // The content may be followed by a CR whose LF is still on its way.
                if self.buffer.len() > MAX_REPLY_LINE + 1 {
                    Err(ReplyError::LineTooLong)
                } else {
                    Ok(None)
                }
            }
        }
    }
}

/// Adds one line (ending removed) to the reply in progress; returns the
/// reply when this was its last line. A free function so the line can be
/// borrowed from the parser's buffer meanwhile.
fn accept_line(
    in_progress: &mut Option<PartialReply>,
    content: &[u8],
) -> Result<Option<Reply>, ReplyError> {
    let (code, is_last, text) = split_reply_line(content)?;
    let text = String::from_utf8_lossy(text);
    // Taken out while this line is added (an error ends the session, so
    // what was read of the reply no longer matters), put back unless done.
    let partial = match in_progress.take() {
        None => {
            let (enhanced, text) = split_enhanced(code, &text);
            PartialReply {
                code,
                enhanced,
                first: text.to_owned(),
                rest: Vec::new(),
            }
        }
        Some(mut partial) => {
            if partial.code != code {
                return Err(ReplyError::InconsistentCode {
                    first: partial.code,
                    found: code,
                });
            }
            if partial.rest.len() + 1 >= MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            let text = strip_repeated_enhanced(partial.enhanced, &text);
            partial.rest.push(text.to_owned());
            partial
        }
    };
    if !is_last {
        *in_progress = Some(partial);
        return Ok(None);
    }
    let PartialReply {
        code,
        enhanced,
        first,
        rest,
    } = partial;
    Ok(Some(Reply::multiline(
        code,
        enhanced,
        std::iter::once(first).chain(rest),
    )))
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `250-text` → (250, false, "text"); `250 text` and a bare `250` are last lines.
fn split_reply_line(content: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let malformed = || ReplyError::Malformed {
        excerpt: excerpt(content),
    };
    let (digits, rest) = content.split_at_checked(3).ok_or_else(malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(malformed());
    }
    let code = digits
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    match rest.split_first() {
        None => Ok((code, true, rest)),
        Some((b' ', text)) => Ok((code, true, text)),
        Some((b'-', text)) => Ok((code, false, text)),
        Some(_) => Err(malformed()),
    }
}

/// Takes an RFC 2034 enhanced code off the front of the first line. It is only
/// recognised when its class agrees with the reply code: `250 5.0.0` is text a
/// server wrote, not a status we may act on.
fn split_enhanced(code: u16, text: &str) -> (Option<EnhancedCode>, &str) {
    let (first_word, rest) = text.split_once(' ').unwrap_or((text, ""));
    match EnhancedCode::parse(first_word) {
        Some(enhanced) if u16::from(enhanced.class) == code / 100 => (Some(enhanced), rest),
        _ => (None, text),
    }
}

/// Continuation lines repeat the enhanced code (RFC 2034); it is kept once,
/// in the reply, rather than in every line's text.
fn strip_repeated_enhanced(enhanced: Option<EnhancedCode>, text: &str) -> &str {
    let Some(enhanced) = enhanced else {
        return text;
    };
    let (first_word, rest) = text.split_once(' ').unwrap_or((text, ""));
    if EnhancedCode::parse(first_word) == Some(enhanced) {
        rest
    } else {
        text
    }
}

fn excerpt(content: &[u8]) -> String {
    let cut = &content[..content.len().min(EXCERPT_LEN)];
    String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut parser = ReplyParser::new();
        parser.push(input);
        let mut replies = Vec::new();
        while let Some(reply) = parser.next_reply()? {
            replies.push(reply);
        }
        Ok(replies)
    }

    fn reply(code: u16, enhanced: Option<(u8, u16, u16)>, lines: &[&str]) -> Reply {
        let enhanced = enhanced.map(|(c, s, d)| EnhancedCode::new(c, s, d));
        Reply::multiline(
            code,
            enhanced,
            lines.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn valid_replies() {
        let line_at_limit = [b"250 ".as_slice(), &[b'x'; MAX_REPLY_LINE - 4], b"\r\n"].concat();
        let cases: Vec<(&str, &[u8], Vec<Reply>)> = vec![
            (
                "greeting",
                b"220 mx.example ESMTP\r\n",
                vec![reply(220, None, &["mx.example ESMTP"])],
            ),
            (
                "enhanced code",
                b"250 2.1.5 Ok\r\n",
                vec![reply(250, Some((2, 1, 5)), &["Ok"])],
            ),
            (
                "enhanced code only",
                b"250 2.0.0\r\n",
                vec![reply(250, Some((2, 0, 0)), &[""])],
            ),
            (
                "enhanced class must match",
                b"250 5.0.0 odd\r\n",
                vec![reply(250, None, &["5.0.0 odd"])],
            ),
            ("bare code", b"250\r\n", vec![reply(250, None, &[""])]),
            (
                "multi-line",
                b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n",
                vec![reply(250, None, &["mx.example", "PIPELINING", "SIZE 10"])],
            ),
            (
                "multi-line with repeated enhanced code",
                b"550-5.7.1 first\r\n550 5.7.1 second\r\n",
                vec![reply(550, Some((5, 7, 1)), &["first", "second"])],
            ),
            (
                "bare LF endings tolerated",
                b"250-a\n250 b\n",
                vec![reply(250, None, &["a", "b"])],
            ),
            (
                "pipelined replies",
                b"250 2.1.0 Ok\r\n550 5.1.1 No\r\n250 2.1.5 Ok\r\n",
                vec![
                    reply(250, Some((2, 1, 0)), &["Ok"]),
                    reply(550, Some((5, 1, 1)), &["No"]),
                    reply(250, Some((2, 1, 5)), &["Ok"]),
                ],
            ),
            (
                "control characters sanitised",
                b"550 bad\x00text\r\n",
                vec![reply(550, None, &["bad?text"])],
            ),
            (
                "line at the limit",
                &line_at_limit,
                vec![reply(250, None, &[&"x".repeat(MAX_REPLY_LINE - 4)])],
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(parse_all(input).as_ref(), Ok(&expected), "{name}");

            for split in 0..input.len() {
                let mut parser = ReplyParser::new();
                let mut got = Vec::new();
                parser.push(&input[..split]);
                while let Some(reply) = parser.next_reply().expect(name) {
                    got.push(reply);
                }
                parser.push(&input[split..]);
                while let Some(reply) = parser.next_reply().expect(name) {
                    got.push(reply);
                }
                assert_eq!(got, expected, "{name}, split at {split}");
                assert!(!parser.has_buffered_input(), "{name}");
            }
        }
    }

    #[test]
    fn partial_input_waits_for_the_last_line() {
        let mut parser = ReplyParser::new();
        parser.push(b"250-first\r\n250 sec");
        assert_eq!(parser.next_reply(), Ok(None));
        assert!(parser.has_buffered_input());
        parser.push(b"ond\r\n220 next");
        let first = parser.next_reply().unwrap().unwrap();
        assert_eq!(first.lines().collect::<Vec<_>>(), ["first", "second"]);
        assert_eq!(parser.next_reply(), Ok(None));
        assert!(parser.has_buffered_input());
    }

    #[test]
    fn invalid_replies() {
        let long_line = [b"250 ".as_slice(), &[b'x'; MAX_REPLY_LINE], b"\r\n"].concat();
        let many_lines = [b"250-x\r\n".repeat(MAX_REPLY_LINES), b"250 x\r\n".to_vec()].concat();
        let malformed = |text: &str| ReplyError::Malformed {
            excerpt: text.to_owned(),
        };
        let cases: Vec<(&str, Vec<u8>, ReplyError)> = vec![
            ("code 1xx", b"199 x\r\n".to_vec(), malformed("199 x")),
            ("code 6xx", b"600 x\r\n".to_vec(), malformed("600 x")),
            ("letters", b"abc\r\n".to_vec(), malformed("abc")),
            ("short", b"25\r\n".to_vec(), malformed("25")),
            ("empty line", b"\r\n".to_vec(), malformed("")),
            ("bad separator", b"250x\r\n".to_vec(), malformed("250x")),
            (
                "control excerpt",
                b"2\x0050\r\n".to_vec(),
                malformed("2?50"),
            ),
            (
                "inconsistent codes",
                b"250-a\r\n251 b\r\n".to_vec(),
                ReplyError::InconsistentCode {
                    first: 250,
                    found: 251,
                },
            ),
            ("overlong line", long_line, ReplyError::LineTooLong),
            ("too many lines", many_lines, ReplyError::TooManyLines),
        ];
        for (name, input, error) in cases {
            assert_eq!(parse_all(&input), Err(error), "{name}");
        }
    }

    #[test]
    fn endless_line_is_refused_before_its_end_arrives() {
        let mut parser = ReplyParser::new();
        parser.push(b"250 ");
        for _ in 0..MAX_REPLY_LINE {
            match parser.next_reply() {
                Ok(None) => parser.push(b"x"),
                Err(error) => {
                    assert_eq!(error, ReplyError::LineTooLong);
                    return;
                }
                Ok(Some(reply)) => panic!("unexpected reply {reply}"),
            }
        }
        assert_eq!(parser.next_reply(), Err(ReplyError::LineTooLong));
    }
}
