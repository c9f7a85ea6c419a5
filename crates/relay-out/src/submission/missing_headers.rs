//! `Message-ID` and `Date` for mail a user submits with AUTH: mail clients
//! (scripts, printers, some webmail) leave them out, and receivers score a
//! message without them as spam. Postfix adds them for such clients
//! (`local_header_rewrite_clients`, `always_add_missing_headers` for
//! submission); Haraka did not.
//!
//! Only for authenticated submission: mail relayed from an address in
//! relay_acl_allow comes from a home server that has already signed it
//! (DKIM), and must leave byte for byte as it came.

use std::io::Read;

/// How much of the message is searched for its header section; a header
/// section longer than this is treated as having both fields (nothing is
/// added), since its end cannot be found.
pub const MAX_HEADER_SECTION: u64 = 256 * 1024;

/// The fields to add, each a complete line with CRLF (empty: none).
pub fn missing_fields(header_section: &[u8], message_id: &str, date: &str) -> String {
    let mut fields = String::new();
    if !has_field(header_section, "Message-ID") {
        fields.push_str(&format!("Message-ID: {message_id}\r\n"));
    }
    if !has_field(header_section, "Date") {
        fields.push_str(&format!("Date: {date}\r\n"));
    }
    fields
}

/// The message's start (at most [`MAX_HEADER_SECTION`] octets, read from
/// `message`) with the missing fields inserted at the end of its header
/// section, where Postfix adds them; the caller sends the rest of `message`
/// after it. Returns the start unchanged when nothing is missing or the
/// header section does not end within the bytes read.
pub fn complete_head(
    message: &mut dyn Read,
    message_id: &str,
    date: &str,
) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    message.take(MAX_HEADER_SECTION).read_to_end(&mut head)?;
    let Some(end) = header_end(&head) else {
        return Ok(head);
    };
    let fields = missing_fields(&head[..end], message_id, date);
    if !fields.is_empty() {
        head.splice(end..end, fields.into_bytes());
    }
    Ok(head)
}

/// Where the header section ends: the offset just after the last header
/// line's CRLF (where the blank line starts). A message with no blank line
/// before the end of its data is all header.
pub(crate) fn header_end(message: &[u8]) -> Option<usize> {
    let mut start = 0;
    while start < message.len() {
        let line_end = message[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|at| start + at + 2)?;
        if line_end - start == 2 {
            return Some(start);
        }
        start = line_end;
    }
    Some(message.len())
}

/// Whether a field called `name` (any case) starts a line of the header section.
fn has_field(header_section: &[u8], name: &str) -> bool {
    header_section
        .split(|&b| b == b'\n')
        .any(|line| field_value(line, name).is_some())
}

/// The value of `line` when it starts a field called `name` (any case):
/// what follows the colon, without the line's CR.
pub(crate) fn field_value<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    line[..colon]
        .trim_ascii_end()
        .eq_ignore_ascii_case(name.as_bytes())
        .then(|| {
            let value = &line[colon + 1..];
            value.strip_suffix(b"\r").unwrap_or(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(message: &[u8]) -> Vec<u8> {
        let mut reader = message;
        let mut head =
            complete_head(&mut reader, "<id@relay>", "Sun, 6 Dec 2026 20:00:00 +0000").unwrap();
        head.extend_from_slice(reader);
        head
    }

    #[test]
    fn adds_only_what_is_missing_at_the_end_of_the_header_section() {
        let cases: [(&[u8], &[u8]); 5] = [
            (
                b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n",
                b"Received: x\r\nSubject: hi\r\nMessage-ID: <id@relay>\r\nDate: Sun, 6 Dec 2026 20:00:00 +0000\r\n\r\nbody\r\n",
            ),
            (
                b"message-id: <a@b>\r\nSubject: hi\r\n\r\nDate: not a header\r\n",
                b"message-id: <a@b>\r\nSubject: hi\r\nDate: Sun, 6 Dec 2026 20:00:00 +0000\r\n\r\nDate: not a header\r\n",
            ),
            (
                b"DATE : x\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n",
                b"DATE : x\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n",
            ),
            // All header, no body.
            (
                b"Subject: hi\r\nDate: x\r\n",
                b"Subject: hi\r\nDate: x\r\nMessage-ID: <id@relay>\r\n",
            ),
            // A folded Subject mentioning Date: is not a Date field.
            (
                b"Subject: a\r\n Date: b\r\nMessage-ID: <a@b>\r\n\r\n",
                b"Subject: a\r\n Date: b\r\nMessage-ID: <a@b>\r\nDate: Sun, 6 Dec 2026 20:00:00 +0000\r\n\r\n",
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(
                String::from_utf8_lossy(&complete(message)),
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[test]
    fn a_header_section_that_does_not_end_in_reach_is_left_alone() {
        let mut message = b"Subject: hi\r\n".to_vec();
        message.extend(std::iter::repeat_n(b'x', MAX_HEADER_SECTION as usize));
        message.extend_from_slice(b"\r\n\r\nbody\r\n");
        assert_eq!(complete(&message), message);
    }
}
