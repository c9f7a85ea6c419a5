//! The `Received:` trace header (RFC 5321 §4.4) and the hop count used to
//! break mail loops (§6.3).

use crate::address::ForwardPath;
use crate::ip_text::IpText;
use crate::session::{ClientName, Envelope, HeloVerb, SessionInfo};

/// Builds our `Received:` header, folded, ending in CRLF:
///
/// ```text
/// Received: from <helo> (<rdns> [<ip>])
///         by <me> (Postern) with ESMTPS id <id>
///         (using TLSv1.3 with cipher …)
///         for <rcpt>; <RFC 5322 date>
/// ```
/// `for` is given only for a single recipient, so a Bcc list never leaks.
/// `date` is the RFC 5322 date-time, formatted by the driver: this module
/// reads no clock.
pub fn header(me: &str, session: &SessionInfo, envelope: &Envelope, date: &str) -> String {
    let ip = IpText(session.client.peer.ip());
    let helo = session
        .greeting
        .as_ref()
        .map(|g| sanitize(&g.name))
        .unwrap_or_else(|| "unknown".into());
    let remote = match &session.client.name {
        ClientName::Verified(name) | ClientName::Unverified(name) => {
            format!("{} [{ip}]", sanitize(name))
        }
        _ => format!("[{ip}]"),
    };
    let esmtp = session
        .greeting
        .as_ref()
        .is_some_and(|g| g.verb == HeloVerb::Ehlo);
    let protocol = match (esmtp, session.tls.is_some()) {
        (true, true) => "ESMTPS",
        (true, false) => "ESMTP",
        (false, true) => "SMTPS",
        (false, false) => "SMTP",
    };
    let mut h = format!(
        "Received: from {helo} ({remote})\r\n\tby {me} (Postern) with {protocol} id {}\r\n",
        envelope.id
    );
    if let Some(tls) = &session.tls {
        h.push_str(&format!(
            "\t(using {} with cipher {})\r\n",
            tls.protocol, tls.cipher
        ));
    }
    h.push('\t');
    if let [only] = envelope.recipients.as_slice() {
        let rcpt = match only {
            ForwardPath::Postmaster(p) => p.clone(),
            ForwardPath::Mailbox(m) => m.to_string(),
        };
        h.push_str(&format!("for <{}>; ", sanitize(&rcpt)));
    }
    h.push_str(date);
    h.push_str("\r\n");
    h
}

/// Client-supplied text in a header must stay on its line and in ASCII
/// printable range, or it could forge further headers.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()) {
                c
            } else {
                '?'
            }
        })
        .take(255)
        .collect()
}

/// Where the header section of `message` ends, as [`count`] reads lines:
/// just after the first empty line (CRLF or bare LF). `from` is where bytes
/// not yet searched begin (an empty line ending before it was looked for
/// already), so a message arriving in pieces is searched once.
pub fn header_end(message: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    if start == 0 {
        match message {
            [b'\n', ..] => return Some(1),
            [b'\r', b'\n', ..] => return Some(2),
            _ => {}
        }
    }
    let mut cursor = start;
    while let Some(offset) = message[cursor..].iter().position(|&b| b == b'\n') {
        let lf = cursor + offset;
        match &message[lf + 1..] {
            [b'\n', ..] => return Some(lf + 2),
            [b'\r', b'\n', ..] => return Some(lf + 3),
            _ => {}
        }
        cursor = lf + 1;
    }
    None
}

/// Counts `Received:` fields in the header section of `message` (up to the
/// first empty line), case-insensitively.
pub fn count(message: &[u8]) -> usize {
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_header_section() {
        let msg = b"Received: a\r\nreceived: b\r\n\tfolded\r\nSubject: x\r\n\r\nReceived: body\r\n";
        assert_eq!(count(msg), 2);
    }

    #[test]
    fn the_header_section_ends_at_the_first_empty_line_wherever_the_pieces_end() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"", None),
            (b"\r\nbody", Some(2)),
            (b"\nbody", Some(1)),
            (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n", Some(14)),
            (b"A: 1\nB: 2\n\nbody", Some(11)),
            (b"A: 1\r\n\r", None),
            (b"A: 1\r\n", None),
            (b"A: 1\r\rB\r\n", None),
        ];
        for (message, expected) in cases {
            for from in 0..=message.len() {
                // Searched in two pieces: up to `from` (found or not), then all.
                let found = header_end(&message[..from], 0).or_else(|| header_end(message, from));
                assert_eq!(found, *expected, "{message:?} from {from}");
            }
            let whole = match expected {
                Some(end) => count(&message[..*end]),
                None => count(message),
            };
            assert_eq!(whole, count(message), "{message:?}");
        }
    }

    #[test]
    fn empty_message_has_none() {
        assert_eq!(count(b""), 0);
        assert_eq!(count(b"\r\nReceived: x\r\n"), 0);
    }

    #[test]
    fn sanitize_keeps_header_on_one_line() {
        assert_eq!(sanitize("evil\r\nX-Injected: 1"), "evil??X-Injected:?1");
    }
}
