//! Writing header fields (in the message header and in the delivery-status
//! part) from text that partly comes from strangers: the original Subject,
//! remote servers' replies, addresses. Everything written here stays on its
//! own field (no CR/LF injection) and within RFC 5322's line limits.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local};

use super::encoding::encode_words;

/// Where folding starts to be attempted (RFC 5322 §2.1.1 SHOULD).
const FOLD_WIDTH: usize = 78;

/// A word longer than this is cut into pieces on separate lines: without a
/// space to fold at, the 998-octet MUST limit could not be kept otherwise.
/// Leaves room for the longest field name (76) and the separators.
const HARD_PIECE: usize = 900;

/// Reduces untrusted text to one line of single-spaced words: CR, LF, other
/// controls and Unicode line separators become spaces, runs collapse.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// For fields that must be 7-bit (the `message/delivery-status` part):
/// anything outside printable ASCII becomes `?`.
pub fn ascii_only(text: &str) -> String {
    one_line(text)
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// A host name as written in our own fields (`From`, `Message-ID`,
/// `Reporting-MTA`, `Remote-MTA`): U-labels become A-labels, and anything
/// that cannot be part of a domain or address literal becomes `?`.
pub fn host(name: &str) -> String {
    let compact: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let ascii = if compact.is_ascii() {
        compact
    } else {
        idna::domain_to_ascii(&compact).unwrap_or(compact)
    };
    ascii
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']') {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `name: value` folded at spaces near 78 columns, ending in CRLF. Sanitises
/// the value itself so no caller can forget to.
pub fn field(name: &str, value: &str) -> String {
    let value = one_line(value);
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push(':');
    let header_only = out.len();
    let mut line_len = header_only;
    for word in value.split(' ') {
        for (index, piece) in pieces(word).enumerate() {
            let too_wide = line_len + 1 + piece.len() > FOLD_WIDTH;
            // A cut word always continues on its own line, so the cut is visible
            // and no line can grow past the hard limit.
            if (too_wide || index > 0) && line_len > header_only {
                out.push_str("\r\n");
                line_len = 0;
            }
            out.push(' ');
            out.push_str(piece);
            line_len += 1 + piece.len();
        }
    }
    out.push_str("\r\n");
    out
}

/// A field of human text: non-ASCII text (or text that a reader would
/// mistake for encoded words) is written as RFC 2047 encoded words.
pub fn text_field(name: &str, value: &str) -> String {
    let value = one_line(value);
    if value.is_ascii() && !value.contains("=?") {
        field(name, &value)
    } else {
        field(name, &encode_words(&value))
    }
}

/// The last second that still formats with a four-digit year in any time
/// zone (9999-12-30T00:00:00Z); chrono's RFC 2822 formatter panics beyond.
const LAST_FORMATTABLE_SECOND: i64 = 253_402_214_400;

/// An RFC 5322 date in local time. Times before 1970 or after year 9999 (a
/// corrupt queue file, a broken clock) are clamped rather than trusted.
pub fn date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
        .min(LAST_FORMATTABLE_SECOND);
    DateTime::from_timestamp(seconds, 0)
        .map(|utc| utc.with_timezone(&Local).to_rfc2822())
        .unwrap_or_else(|| "Thu, 1 Jan 1970 00:00:00 +0000".to_string())
}

/// Splits a word into pieces of at most `HARD_PIECE` bytes on character
/// boundaries (almost always just the word itself).
fn pieces(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(HARD_PIECE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(field: &str) -> Vec<&str> {
        field.strip_suffix("\r\n").unwrap().split("\r\n").collect()
    }

    #[test]
    fn one_line_removes_injection() {
        assert_eq!(
            one_line(" a\r\nBcc: evil@x\u{2028}b\tc\u{7f}d  "),
            "a Bcc: evil@x b c d"
        );
    }

    #[test]
    fn host_names_are_reduced_to_domain_characters() {
        let cases = [
            ("mx.example.com", "mx.example.com"),
            (" mx.example.com\r\n", "mx.example.com"),
            ("b\u{fc}cher.example", "xn--bcher-kva.example"),
            ("[192.0.2.1]", "[192.0.2.1]"),
            ("evil>;x", "evil??x"),
        ];
        for (name, expected) in cases {
            assert_eq!(host(name), expected, "{name:?}");
        }
    }

    #[test]
    fn short_field_stays_on_one_line() {
        assert_eq!(field("Action", "failed"), "Action: failed\r\n");
        assert_eq!(field("Subject", ""), "Subject:\r\n");
    }

    #[test]
    fn long_field_folds_at_spaces() {
        let value = "550 5.1.1 ".to_string() + &"word ".repeat(60);
        let folded = field("Diagnostic-Code", &format!("smtp; {value}"));
        let lines = lines(&folded);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| l.len() <= FOLD_WIDTH), "{folded}");
        assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
        let unfolded = folded.trim_end().replace("\r\n", "");
        assert_eq!(unfolded, format!("Diagnostic-Code: smtp; {}", value.trim()));
    }

    #[test]
    fn endless_word_is_cut_below_the_hard_limit() {
        let word = "\u{e9}".repeat(3000);
        let folded = field("X", &word);
        for line in lines(&folded) {
            assert!(line.len() < 998, "{}", line.len());
        }
        let unfolded: String = folded.trim_end().replace("\r\n ", "");
        assert_eq!(unfolded, format!("X: {word}"));
    }

    #[test]
    fn dates_parse_back_and_extremes_are_clamped() {
        use std::time::Duration;
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let parsed = DateTime::parse_from_rfc2822(&date(time)).unwrap();
        assert_eq!(parsed.timestamp(), 1_700_000_000);
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(
            DateTime::parse_from_rfc2822(&date(before))
                .unwrap()
                .timestamp(),
            0
        );
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        let parsed = DateTime::parse_from_rfc2822(&date(far)).unwrap();
        assert_eq!(parsed.timestamp(), LAST_FORMATTABLE_SECOND);
    }

    #[test]
    fn text_field_encodes_non_ascii_and_fake_encoded_words() {
        assert_eq!(text_field("Subject", "hi"), "Subject: hi\r\n");
        let encoded = text_field("Subject", "caf\u{e9}");
        assert_eq!(encoded, "Subject: =?UTF-8?B?Y2Fmw6k=?=\r\n");
        assert!(text_field("Subject", "=?x?q?y?=").contains("=?UTF-8?B?"));
    }
}
