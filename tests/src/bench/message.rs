//! The message every load session sends: built once, shared by all sessions.

/// Envelope sender used by every scenario.
pub const FROM: &str = "bench@load.test";
/// Envelope recipient: a domain relay-in's host_list accepts and relay-out's
/// test DNS routes to the sink.
pub const RCPT: &str = "user@example.com";

/// Longest body line, including CRLF: short enough for every peer's limits.
const LINE: usize = 78;

/// A message as it goes on the wire after `354`: `size` octets of content in
/// CRLF lines (none starting with a dot, so nothing needs stuffing and every
/// hop forwards exactly the same octets), then the `.` line.
///
/// It exists so the load client writes one prepared buffer per message
/// instead of formatting anything on the hot path.
#[derive(Debug, Clone)]
pub struct WireMessage {
    /// Content plus `.\r\n`.
    pub wire: Vec<u8>,
    /// Octets of content (what a receiver stores), without the `.` line.
    pub size: usize,
}

impl WireMessage {
    /// A message of exactly `size` content octets, or of its header block
    /// alone when `size` is smaller than that.
    pub fn new(size: usize) -> Self {
        let header = |subject_padding: usize| {
            format!(
                "From: <{FROM}>\r\nTo: <{RCPT}>\r\nSubject: postern-bench{}\r\n\
                 Message-ID: <bench@load.test>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                "z".repeat(subject_padding)
            )
        };
        let shortest = header(0).len();
        // A body line is at least "x\r\n": one or two octets more than the
        // header block go into the Subject instead.
        let padding = match size.saturating_sub(shortest) {
            short @ 1..3 => short,
            _ => 0,
        };
        let mut wire = header(padding).into_bytes();
        let pattern = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        while wire.len() < size {
            let room = size - wire.len();
            // Never leave a remainder too short for a line of its own.
            let take = if room <= LINE {
                room
            } else {
                LINE.min(room - 3)
            };
            let text = take - 2;
            let base = wire.len();
            wire.extend((0..text).map(|i| pattern[(base + i) % pattern.len()]));
            wire.extend_from_slice(b"\r\n");
        }
        let size = wire.len();
        wire.extend_from_slice(b".\r\n");
        WireMessage { wire, size }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_has_the_asked_size_and_well_formed_lines() {
        let header = WireMessage::new(0).size;
        for size in (0..header + 200).chain([2048, 100 * 1024, 100 * 1024 + 1]) {
            let message = WireMessage::new(size);
            assert_eq!(message.size, size.max(header), "size {size}");
            let (content, end) = message.wire.split_at(message.size);
            assert_eq!(end, b".\r\n");
            assert!(content.ends_with(b"\r\n"));
            for line in content.split(|&b| b == b'\n') {
                assert!(line.len() < LINE, "line too long at size {size}");
                assert!(!line.starts_with(b"."), "dot at line start, size {size}");
                if !line.is_empty() {
                    assert_eq!(line.last(), Some(&b'\r'));
                    assert!(!line[..line.len() - 1].contains(&b'\r'));
                }
            }
        }
    }
}
