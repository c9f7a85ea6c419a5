//! What a bounce needs from the message it reports on: the header section
//! (attached as `text/rfc822-headers`), the Message-ID (for threading) and
//! the Subject (for the human text). The message is arbitrary bytes from a
//! stranger, so nothing here trusts its structure.

use super::encoding::decode_words;
use super::header::one_line;

/// A Message-ID longer than this is not reused in our headers; real ones are
/// well under 100 octets and an enormous one only serves to break folding.
const MAX_MESSAGE_ID: usize = 250;

/// The parts of the original message the bounce refers to.
pub struct Original<'a> {
    /// Everything before the first empty line, as stored.
    pub header_section: &'a [u8],
    pub message_id: Option<String>,
    /// Decoded and reduced to one line; empty when absent.
    pub subject: String,
}

impl<'a> Original<'a> {
    pub fn parse(message: &'a [u8]) -> Self {
        let header_section = header_section(message);
        let message_id = field_value(header_section, "Message-ID")
            .and_then(|v| angle_id(&String::from_utf8_lossy(&v)));
        let subject = field_value(header_section, "Subject")
            .map(|v| one_line(&decode_words(&String::from_utf8_lossy(&v))))
            .unwrap_or_default();
        Original {
            header_section,
            message_id,
            subject,
        }
    }
}

/// Lines up to the first empty one. A lone LF counts as a line end here so
/// that a malformed message cannot smuggle its body into the attachment.
fn header_section(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = message[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |at| start + at);
        let line = &message[start..end];
        if line.is_empty() || line == b"\r" {
            return &message[..start];
        }
        start = end + 1;
    }
    message
}

/// The unfolded value of the first field called `name` (case-insensitive).
fn field_value(header_section: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut value: Option<Vec<u8>> = None;
    for line in header_section.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        match (&mut value, continuation) {
            (Some(v), true) => v.extend_from_slice(line),
            (Some(_), false) => break,
            (None, true) => {}
            (None, false) => {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                let field_name = line[..colon].trim_ascii_end();
                if field_name.eq_ignore_ascii_case(name.as_bytes()) {
                    value = Some(line[colon + 1..].to_vec());
                }
            }
        }
    }
    value
}

/// The first `<...>` token of a Message-ID field, if it could safely be
/// copied into our References and In-Reply-To fields.
fn angle_id(value: &str) -> Option<String> {
    let open = value.find('<')?;
    let close = open + value[open..].find('>')?;
    let inner = &value[open + 1..close];
    let printable = inner.bytes().all(|b| b.is_ascii_graphic() && b != b'<');
    (printable && !inner.is_empty() && inner.len() <= MAX_MESSAGE_ID).then(|| format!("<{inner}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_section_stops_at_first_empty_line() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\nB: 2\n\nbody\n", b"A: 1\nB: 2\n"),
            (b"A: 1\r\n", b"A: 1\r\n"),
            (b"A: 1", b"A: 1"),
            (b"\r\nbody", b""),
            (b"", b""),
        ];
        for (message, headers) in cases {
            assert_eq!(header_section(message), headers);
        }
    }

    #[test]
    fn finds_folded_fields_case_insensitively() {
        let headers = b"Received: x\r\nsubject : hello\r\n  world\r\nSubject: second\r\n";
        assert_eq!(
            field_value(headers, "Subject").as_deref(),
            Some(&b" hello  world"[..])
        );
        assert_eq!(field_value(headers, "Message-ID"), None);
    }

    #[test]
    fn message_id_must_be_a_clean_angle_token() {
        let cases = [
            (" <abc@example.com> (comment)", Some("<abc@example.com>")),
            ("<>", None),
            ("abc@example.com", None),
            ("<a b@c>", None),
            ("<a\u{e9}@c>", None),
        ];
        for (value, expected) in cases {
            assert_eq!(angle_id(value).as_deref(), expected, "{value}");
        }
        assert_eq!(angle_id(&format!("<{}@x>", "a".repeat(300))), None);
    }

    #[test]
    fn parse_decodes_subject_and_neutralises_line_breaks() {
        let message =
            b"Message-Id: <1@x>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n =?utf-8?q?=0D=0ABcc:_e@x?=\r\n\r\nbody";
        let original = Original::parse(message);
        assert_eq!(original.message_id.as_deref(), Some("<1@x>"));
        assert_eq!(original.subject, "caf\u{e9} Bcc: e@x");
        assert!(original.header_section.ends_with(b"?=\r\n"));
    }
}
