//! Buffered client input, split into command lines or handed to the DATA
//! decoder.

/// Bytes read from the client and not yet consumed.
///
/// Pipelined commands arrive several to a read; keeping them here (instead
/// of a line reader) lets DATA take raw bytes and lets STARTTLS discard
/// exactly what the client sent in clear text after the command.
#[derive(Debug, Default)]
pub(crate) struct InputBuffer {
    data: Vec<u8>,
    start: usize,
    /// Inside an over-long line: drop bytes up to its end.
    discarding: bool,
}

/// What [`InputBuffer::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A complete line without its CRLF (or bare LF).
    Complete(&'a [u8]),
    /// A line longer than the limit was dropped, up to and including its end.
    TooLong,
    /// No complete line yet.
    Incomplete,
}

impl InputBuffer {
    pub(crate) fn available(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
    }

    /// Drops everything buffered; returns how many bytes that was.
    pub(crate) fn discard_all(&mut self) -> usize {
        let n = self.data.len() - self.start;
        self.data.clear();
        self.start = 0;
        n
    }

    /// Gives the memory back when nothing is buffered, so an idle
    /// connection costs no buffer.
    pub(crate) fn release(&mut self) {
        if self.is_empty() {
            self.data = Vec::new();
            self.start = 0;
        }
    }

    /// Room for the next read, compacting consumed bytes first.
    pub(crate) fn spare(&mut self, min: usize) -> &mut Vec<u8> {
        if self.start > 0 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.reserve(min);
        &mut self.data
    }

    /// The next command line. `max_len` counts the line ending, as RFC 5321
    /// §4.5.3.1.4 does (512 octets including CRLF). A bare LF ends a command
    /// line too: only DATA is strict about CRLF, where it matters.
    pub(crate) fn next_line(&mut self, max_len: usize) -> Line<'_> {
        let start = self.start;
        let available = &self.data[start..];
        match available.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.start = start + lf + 1;
                if std::mem::take(&mut self.discarding) || lf + 1 > max_len {
                    return Line::TooLong;
                }
                let line = &self.data[start..start + lf];
                Line::Complete(line.strip_suffix(b"\r").unwrap_or(line))
            }
            None => {
                if self.discarding || available.len() >= max_len {
                    self.discarding = true;
                    self.discard_all();
                }
                Line::Incomplete
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(bytes: &[u8]) -> InputBuffer {
        let mut b = InputBuffer::default();
        b.spare(bytes.len()).extend_from_slice(bytes);
        b
    }

    #[test]
    fn splits_pipelined_lines() {
        let mut b = buffer(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\nDA");
        assert_eq!(b.next_line(512), Line::Complete(b"MAIL FROM:<a@b>"));
        assert_eq!(b.next_line(512), Line::Complete(b"RCPT TO:<c@d>"));
        assert_eq!(b.next_line(512), Line::Incomplete);
        assert_eq!(b.available(), b"DA");
    }

    #[test]
    fn limit_counts_the_line_ending() {
        let mut ok = vec![b'a'; 510];
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(buffer(&ok).next_line(512), Line::Complete(l) if l.len() == 510));
        let mut long = vec![b'a'; 511];
        long.extend_from_slice(b"\r\n");
        assert_eq!(buffer(&long).next_line(512), Line::TooLong);
    }

    #[test]
    fn release_frees_only_an_empty_buffer() {
        let mut b = buffer(b"NOOP\r\nQU");
        b.release();
        assert_eq!(b.next_line(512), Line::Complete(b"NOOP"));
        b.release();
        assert_eq!(b.available(), b"QU");
        b.consume(2);
        b.release();
        assert!(b.is_empty());
        assert_eq!(b.data.capacity(), 0);
        b.spare(16).extend_from_slice(b"IT\r\n");
        assert_eq!(b.next_line(512), Line::Complete(b"IT"));
    }

    #[test]
    fn over_long_line_is_discarded_across_reads() {
        let mut b = buffer(&[b'x'; 600]);
        assert_eq!(b.next_line(512), Line::Incomplete);
        assert!(b.is_empty());
        b.spare(16).extend_from_slice(b"yyy\r\nNOOP\r\n");
        assert_eq!(b.next_line(512), Line::TooLong);
        assert_eq!(b.next_line(512), Line::Complete(b"NOOP"));
    }
}
