//! Server-side DATA decoding (RFC 5321 §4.1.1.4, §4.5.2).

use super::scan::find_line_break;
use super::{BareNewlinePolicy, DataOutcome};

/// Where the decoder stands between two input bytes. Every state that holds
/// bytes not yet written to the output (`Dot`, `DotCr`, `Cr`) exists because
/// those bytes' meaning depends on input that may arrive in the next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// At the start of a line. `after_crlf` is false when the previous line
    /// ended in a bare CR/LF: such a line start still gets dot-unstuffing
    /// but can never begin the end marker.
    LineStart { after_crlf: bool },
    /// Inside a line, everything so far written out.
    MidLine,
    /// Held back: a `\r` inside a line (CRLF or bare CR?).
    Cr,
    /// Held back: a `.` at a line start (stuffing dot, or the end marker?).
    Dot { after_crlf: bool },
    /// Held back: `.\r` at a line start (end marker, or `.` plus bare CR?).
    DotCr { after_crlf: bool },
}

/// Incremental decoder for the DATA phase of one message. It exists so the
/// session can feed whatever each socket read returns and get back exactly the
/// message, with the end-of-data rule enforced in one place: only a literal
/// `<CRLF>.<CRLF>` ends DATA (the SMTP-smuggling defence), and the input
/// after the end marker is left untouched for the next pipelined command.
///
/// The output is the un-stuffed message with CRLF line endings; the CRLF
/// before the terminating `.` belongs to the message. Bare CR and bare LF are
/// written as CRLF under both policies; under [`BareNewlinePolicy::Reject`]
/// the outcome is [`DataOutcome::BareNewline`] and the output is to be
/// discarded. The output never grows past `max_size` bytes.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    max_size: usize,
    policy: BareNewlinePolicy,
    position: Position,
    message_len: usize,
    bytes_received: u64,
    too_big: bool,
    saw_bare_newline: bool,
    finished: Option<DataOutcome>,
}

impl DataDecoder {
    /// A decoder positioned right after the `DATA` command's CRLF (so a
    /// leading `.\r\n` is an empty message).
    pub fn new(max_size: usize, policy: BareNewlinePolicy) -> Self {
        Self {
            max_size,
            policy,
            position: Position::LineStart { after_crlf: true },
            message_len: 0,
            bytes_received: 0,
            too_big: false,
            saw_bare_newline: false,
            finished: None,
        }
    }

    /// Decodes from `input`, appending message bytes to `out`. Returns (bytes
    /// consumed, Some(outcome) once the end marker has been consumed). When
    /// the end is found, consumption stops right after the marker: the
    /// remaining input belongs to the next pipelined command. Once finished,
    /// further calls consume nothing and repeat the outcome.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<DataOutcome>) {
        if let Some(outcome) = self.finished {
            return (0, Some(outcome));
        }
        let mut cursor = 0;
        // Input from `run_start` to `cursor` is copied to the output verbatim;
        // it is flushed only where output and input diverge, so ordinary
        // lines are copied in long runs.
        let mut run_start = 0;
        let mut ended = false;
        while let Some(&byte) = input.get(cursor) {
            match self.position {
                Position::LineStart { after_crlf } => {
                    if byte == b'.' {
                        self.emit(out, &input[run_start..cursor]);
                        cursor += 1;
                        run_start = cursor;
                        self.position = Position::Dot { after_crlf };
                    } else {
                        self.position = Position::MidLine;
                    }
                }
                Position::MidLine => {
                    let Some(offset) = find_line_break(&input[cursor..]) else {
                        cursor = input.len();
                        break;
                    };
                    let line_break = cursor + offset;
                    match (input[line_break], input.get(line_break + 1)) {
                        (b'\r', Some(b'\n')) => {
                            cursor = line_break + 2;
                            self.position = Position::LineStart { after_crlf: true };
                        }
                        (b'\r', None) => {
                            self.emit(out, &input[run_start..line_break]);
                            cursor = line_break + 1;
                            run_start = cursor;
                            self.position = Position::Cr;
                        }
                        _ => {
                            self.emit(out, &input[run_start..line_break]);
                            self.bare_newline(out);
                            cursor = line_break + 1;
                            run_start = cursor;
                        }
                    }
                }
                Position::Cr => {
                    if byte == b'\n' {
                        self.emit(out, b"\r\n");
                        cursor += 1;
                        run_start = cursor;
                        self.position = Position::LineStart { after_crlf: true };
                    } else {
                        // `byte` starts the next line; leave it unconsumed.
                        self.bare_newline(out);
                    }
                }
                Position::Dot { after_crlf } => match byte {
                    b'\r' => {
                        cursor += 1;
                        run_start = cursor;
                        self.position = Position::DotCr { after_crlf };
                    }
                    b'\n' => {
                        self.emit(out, b".");
                        self.bare_newline(out);
                        cursor += 1;
                        run_start = cursor;
                    }
                    // A stuffing dot: dropped by leaving it out of the run.
                    _ => self.position = Position::MidLine,
                },
                Position::DotCr { after_crlf } => {
                    if byte == b'\n' && after_crlf {
                        cursor += 1;
                        ended = true;
                        break;
                    } else if byte == b'\n' {
                        // A lone `.` line after a bare newline is content.
                        self.emit(out, b".\r\n");
                        cursor += 1;
                        run_start = cursor;
                        self.position = Position::LineStart { after_crlf: true };
                    } else {
                        self.emit(out, b".");
                        self.bare_newline(out);
                    }
                }
            }
        }
        if !ended {
            self.emit(out, &input[run_start..cursor]);
        }
        self.bytes_received = self.bytes_received.saturating_add(cursor as u64);
        if ended {
            let outcome = self.outcome();
            self.finished = Some(outcome);
            (cursor, Some(outcome))
        } else {
            (cursor, None)
        }
    }

    /// Raw octets consumed so far, end marker included, for logs.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    fn outcome(&self) -> DataOutcome {
        if self.too_big {
            DataOutcome::TooBig
        } else if self.saw_bare_newline && self.policy == BareNewlinePolicy::Reject {
            DataOutcome::BareNewline
        } else {
            DataOutcome::Complete
        }
    }

    /// Writes the CRLF that stands in for a bare CR or LF; what follows is a
    /// line start for unstuffing but can never begin the end marker.
    fn bare_newline(&mut self, out: &mut Vec<u8>) {
        self.saw_bare_newline = true;
        self.emit(out, b"\r\n");
        self.position = Position::LineStart { after_crlf: false };
    }

    /// Appends message bytes, cutting at `max_size` so a hostile client can
    /// never make us buffer more than the limit. Cutting at the exact byte
    /// keeps the output independent of how the input was split into reads.
    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let room = self.max_size.saturating_sub(self.message_len);
        if bytes.len() > room {
            self.too_big = true;
            out.extend_from_slice(&bytes[..room]);
            self.message_len = self.max_size;
        } else {
            out.extend_from_slice(bytes);
            self.message_len += bytes.len();
        }
    }
}
