//! Reading what the backend accepted: the Maildir `virtual(8)` writes, one file per delivered
//! recipient, and the few headers of each file a test asks about.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::BACKEND_HOSTNAME;

/// The headers `virtual(8)` puts on top of every file it writes; they are the backend's record of
/// the envelope, not part of what the client sent.
const DELIVERY_HEADERS: [&str; 3] = ["return-path", "x-original-to", "delivered-to"];

/// One message as the backend stored it for one recipient, so a test can check what the relay
/// really handed over (envelope, headers, body) rather than what it claimed in its replies.
///
/// A message sent to two recipients of the accepted domains is stored twice, once per recipient,
/// each copy with its own `Delivered-To:`. Postfix stores lines with LF endings, not the CRLF of
/// the SMTP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMessage {
    /// The Maildir file, handy in failure messages.
    pub path: PathBuf,
    /// The file's bytes: the delivery headers, Postfix's `Received:`, then the message.
    pub raw: Vec<u8>,
}

impl DeliveredMessage {
    /// The envelope sender (`MAIL FROM`), from `Return-Path:`, without the angle brackets; the
    /// null sender is the empty string.
    pub fn envelope_sender(&self) -> Option<String> {
        self.header("Return-Path").map(|value| {
            value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    }

    /// The envelope recipient this copy was delivered for (`RCPT TO`), from `Delivered-To:`.
    pub fn envelope_recipient(&self) -> Option<String> {
        self.header("Delivered-To")
            .map(|value| value.trim().to_string())
    }

    /// The first header field named `name` (case-insensitive), unfolded, without the name and
    /// colon.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Every header field named `name` (case-insensitive), in order, unfolded.
    pub fn headers(&self, name: &str) -> Vec<String> {
        header_fields(&self.raw)
            .into_iter()
            .filter(|field| field.name.eq_ignore_ascii_case(name))
            .map(|field| unfold(field.value))
            .collect()
    }

    /// The body: everything after the empty line that ends the header.
    pub fn body(&self) -> &[u8] {
        let header_end = header_end(&self.raw);
        self.raw.get(header_end..).unwrap_or_default()
    }

    /// The message as the client sent it in DATA (with LF line endings): the file without the
    /// delivery headers and without the `Received:` header this backend added.
    pub fn as_sent(&self) -> &[u8] {
        let mut start = 0;
        let mut fields = header_fields(&self.raw).into_iter().peekable();
        while let Some(field) = fields.next_if(|field| is_delivery_header(field.name)) {
            start = field.end;
        }
        if let Some(field) = fields.next_if(|field| is_own_received(field)) {
            start = field.end;
        }
        self.raw.get(start..).unwrap_or_default()
    }

    /// The whole file as text (lossy), for assertions and failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Every message in the Maildir, oldest first. A missing Maildir means nothing was delivered yet
/// (`virtual(8)` creates it on the first delivery).
pub(crate) fn read_maildir(maildir: &Path) -> io::Result<Vec<DeliveredMessage>> {
    let mut found: Vec<(SystemTime, DeliveredMessage)> = Vec::new();
    // `new/` holds what was delivered; `cur/` only matters if something marked mail as seen.
    for subdir in ["new", "cur"] {
        let entries = match fs::read_dir(maildir.join(subdir)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let modified = entry.metadata()?.modified()?;
            let raw = fs::read(&path)?;
            found.push((modified, DeliveredMessage { path, raw }));
        }
    }
    // Maildir names don't sort by time (their microsecond field is not zero-padded), so order
    // by the time the file was written, then by name for a stable order.
    found.sort_by(|(a_time, a), (b_time, b)| a_time.cmp(b_time).then_with(|| a.path.cmp(&b.path)));
    Ok(found.into_iter().map(|(_, message)| message).collect())
}

/// One header field: its name, its raw value (folded lines included) and the offset just past it.
#[derive(Debug, Clone, Copy)]
struct HeaderField<'a> {
    name: &'a str,
    value: &'a [u8],
    end: usize,
}

/// The header fields at the top of `raw`, up to the empty line (or the first line that is not a
/// field, which is where the body starts for a sloppy message).
fn header_fields(raw: &[u8]) -> Vec<HeaderField<'_>> {
    let mut fields = Vec::new();
    let mut offset = 0;
    while offset < raw.len() {
        let line_end = next_line_end(raw, offset);
        let line = &raw[offset..line_end];
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            break;
        };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else {
            break;
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            break;
        }
        let mut end = line_end;
        while raw
            .get(end)
            .is_some_and(|&byte| byte == b' ' || byte == b'\t')
        {
            end = next_line_end(raw, end);
        }
        fields.push(HeaderField {
            name,
            value: &raw[offset + colon + 1..end],
            end,
        });
        offset = end;
    }
    fields
}

/// Offset of the body: just past the empty line after the header, or the end of a message that
/// has no body.
fn header_end(raw: &[u8]) -> usize {
    let fields_end = header_fields(raw).last().map_or(0, |field| field.end);
    match raw.get(fields_end..) {
        Some([b'\r', b'\n', ..]) => fields_end + 2,
        Some([b'\n', ..]) => fields_end + 1,
        _ => fields_end,
    }
}

/// Offset just past the LF that ends the line starting at `start` (or the end of `raw`).
fn next_line_end(raw: &[u8], start: usize) -> usize {
    raw[start..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(raw.len(), |newline| start + newline + 1)
}

fn unfold(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_delivery_header(name: &str) -> bool {
    DELIVERY_HEADERS
        .iter()
        .any(|known| name.eq_ignore_ascii_case(known))
}

/// The `Received:` header the backend's smtpd added: it names this backend as the receiver.
fn is_own_received(field: &HeaderField<'_>) -> bool {
    field.name.eq_ignore_ascii_case("Received")
        && unfold(field.value).contains(&format!("by {BACKEND_HOSTNAME} (Postfix)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: &str = "Return-Path: <alice@sender.example>\n\
        X-Original-To: user@example.com\n\
        Delivered-To: user@example.com\n\
        Received: from mail.sender.example (mail.sender.example [192.0.2.55])\n\
        \tby backend.postern.test (Postfix) with ESMTP id 1A2B3C\n\
        \tfor <user@example.com>; Sun, 22 Nov 2026 01:20:17 +0000 (UTC)\n\
        Received: from elsewhere by relay.example\n\
        Subject: hello\n\
        \x20 folded\n\
        \n\
        body line\n";

    fn stored(raw: &str) -> DeliveredMessage {
        DeliveredMessage {
            path: PathBuf::from("/x"),
            raw: raw.as_bytes().to_vec(),
        }
    }

    #[test]
    fn envelope_comes_from_the_delivery_headers() {
        let message = stored(STORED);
        assert_eq!(
            message.envelope_sender().as_deref(),
            Some("alice@sender.example")
        );
        assert_eq!(
            message.envelope_recipient().as_deref(),
            Some("user@example.com")
        );
        assert_eq!(
            stored("Return-Path: <>\n\n").envelope_sender().as_deref(),
            Some("")
        );
    }

    #[test]
    fn headers_are_unfolded_and_case_insensitive() {
        let message = stored(STORED);
        assert_eq!(message.header("subject").as_deref(), Some("hello folded"));
        assert_eq!(message.headers("RECEIVED").len(), 2);
        assert_eq!(message.header("X-Missing"), None);
    }

    #[test]
    fn body_starts_after_the_empty_line() {
        assert_eq!(stored(STORED).body(), b"body line\n");
        assert_eq!(stored("Subject: x\r\n\r\nbody").body(), b"body");
        assert_eq!(stored("Subject: no body\n").body(), b"");
        assert_eq!(stored("").body(), b"");
    }

    #[test]
    fn as_sent_drops_only_what_the_backend_added() {
        let expected =
            "Received: from elsewhere by relay.example\nSubject: hello\n\x20 folded\n\nbody line\n";
        assert_eq!(stored(STORED).as_sent(), expected.as_bytes());
        // A Received header from another host at the top is the client's, and stays.
        let foreign =
            "Delivered-To: u@example.com\nReceived: from a by other.example (Postfix)\n\nb\n";
        assert_eq!(
            stored(foreign).as_sent(),
            b"Received: from a by other.example (Postfix)\n\nb\n"
        );
    }

    #[test]
    fn hostile_bytes_do_not_panic() {
        for raw in [
            "\n",
            ":",
            ": x\n",
            "\t\n",
            "A:\n\t",
            "\u{fffd}:\n",
            "x\r",
            "Delivered-To:",
        ] {
            let message = stored(raw);
            let _ = (
                message.body(),
                message.as_sent(),
                message.headers("a"),
                message.envelope_sender(),
            );
        }
    }
}
