//! Client-side dot-stuffing (RFC 5321 §4.5.2), for forwarding and delivery.

use super::scan::find_line_break;

/// Streaming dot-stuffer: turns a message, given in chunks of any size, into
/// DATA content. It exists so a spooled message can be sent without first
/// being loaded whole, and [`dot_stuff`] is just its one-chunk case.
///
/// A `.` is doubled wherever it starts a line in *any* reading of line
/// endings: at the start, after CRLF, after a bare LF and after a bare CR.
/// That is stricter than RFC 5321 requires, so that no receiver, however lax
/// its idea of a line, can find an end-of-data lookalike inside the message.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    /// The last two message bytes (most recent last), to know at the end
    /// whether the content already ends with CRLF.
    tail: [u8; 2],
    is_empty: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a message.
    pub fn new() -> Self {
        Self {
            at_line_start: true,
            tail: [0; 2],
            is_empty: true,
        }
    }

    /// Appends the stuffed form of `chunk`, the next part of the message.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for run in self.runs(chunk) {
            out.extend_from_slice(run);
        }
    }

    /// The stuffed form of `chunk`, the next part of the message, as slices
    /// of `chunk` whose concatenation is what [`DotStuffer::push`] appends.
    /// A doubled dot is not copied anywhere: one run ends with it and the
    /// next starts with it. This lets a message already in memory go out
    /// from where it lies, without a stuffed copy of it (at 100 sessions of
    /// 100 KB messages those copies were 7 MB of relay-in's peak). Take
    /// every run before the next chunk: the stuffer's state moves on as
    /// runs are taken.
    pub fn runs<'s, 'c>(&'s mut self, chunk: &'c [u8]) -> Runs<'s, 'c> {
        if let Some(&last) = chunk.last() {
            self.tail = match chunk {
                [.., before_last, _] => [*before_last, last],
                _ => [self.tail[1], last],
            };
            self.is_empty = false;
        }
        Runs {
            stuffer: self,
            chunk,
            run_start: 0,
            cursor: 0,
        }
    }
    /// Ends the content with CRLF if it does not already (an empty message
    /// stays empty), then appends the end-of-data line `.\r\n`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.is_empty && self.tail != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// [`DotStuffer::runs`]' iterator.
pub struct Runs<'s, 'c> {
    stuffer: &'s mut DotStuffer,
    chunk: &'c [u8],
    run_start: usize,
    cursor: usize,
}

impl<'c> Iterator for Runs<'_, 'c> {
    type Item = &'c [u8];

    fn next(&mut self) -> Option<&'c [u8]> {
        let chunk = self.chunk;
        while self.cursor < chunk.len() {
            let dot = self.stuffer.at_line_start && chunk[self.cursor] == b'.';
            let dot_at = self.cursor;
            match find_line_break(&chunk[self.cursor..]) {
                Some(offset) => {
                    self.cursor += offset + 1;
                    self.stuffer.at_line_start = true;
                }
                None => {
                    self.cursor = chunk.len();
                    self.stuffer.at_line_start = false;
                }
            }
            if dot {
                // Up to and including the dot; the next run starts with it.
                let run = &chunk[self.run_start..=dot_at];
                self.run_start = dot_at;
                return Some(run);
            }
        }
        if self.run_start < chunk.len() {
            let run = &chunk[self.run_start..];
            self.run_start = chunk.len();
            return Some(run);
        }
        None
    }
}

/// Writes `message` as DATA content: stuffs a `.` before every `.` that starts
/// a line (start of message and after every CR or LF, i.e. stricter than
/// needed, so no end-of-data lookalike can ever be produced), ensures the
/// content ends with CRLF, and appends `.\r\n`. An empty message becomes
/// just `.\r\n`.
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    let mut stuffer = DotStuffer::new();
    stuffer.push(message, out);
    stuffer.finish(out);
}

#[cfg(test)]
mod tests {
    use super::{DotStuffer, dot_stuff};

    #[test]
    fn stuffs_every_line_start_dot_and_terminates() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("empty message", b"", b".\r\n"),
            ("plain line", b"hello\r\n", b"hello\r\n.\r\n"),
            ("no final CRLF", b"hello", b"hello\r\n.\r\n"),
            ("leading dot", b".hidden\r\n", b"..hidden\r\n.\r\n"),
            ("lone dot message", b".", b"..\r\n.\r\n"),
            (
                "dot after CRLF",
                b"a\r\n.\r\nb\r\n",
                b"a\r\n..\r\nb\r\n.\r\n",
            ),
            (
                "double dot after CRLF",
                b"a\r\n..\r\n",
                b"a\r\n...\r\n.\r\n",
            ),
            ("dot after bare LF", b"a\n.\nb\r\n", b"a\n..\nb\r\n.\r\n"),
            ("dot after bare CR", b"a\r.\rb\r\n", b"a\r..\rb\r\n.\r\n"),
            ("mid-line dot untouched", b"a.b\r\n", b"a.b\r\n.\r\n"),
            ("ends in bare LF", b"a\n", b"a\n\r\n.\r\n"),
            ("ends in bare CR", b"a\r", b"a\r\r\n.\r\n"),
            ("only CRLF", b"\r\n", b"\r\n.\r\n"),
            ("NUL and 8-bit pass", b"\0\xff\r\n", b"\0\xff\r\n.\r\n"),
        ];
        for (name, message, expected) in cases {
            let mut out = Vec::new();
            dot_stuff(message, &mut out);
            assert_eq!(out, *expected, "{name}");

            // Chunked input at every single split point gives the same bytes.
            for split in 0..=message.len() {
                let mut stuffer = DotStuffer::new();
                let mut chunked = Vec::new();
                stuffer.push(&message[..split], &mut chunked);
                stuffer.push(&message[split..], &mut chunked);
                stuffer.finish(&mut chunked);
                assert_eq!(chunked, *expected, "{name}, split at {split}");
            }
            let mut stuffer = DotStuffer::new();
            let mut bytewise = Vec::new();
            for byte in message.iter() {
                stuffer.push(std::slice::from_ref(byte), &mut bytewise);
            }
            stuffer.finish(&mut bytewise);
            assert_eq!(bytewise, *expected, "{name}, byte by byte");
        }
    }
}
