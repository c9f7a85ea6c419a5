//! The three MIME encodings a bounce needs: base64 (inside RFC 2047 encoded
//! words), quoted-printable (for parts that are not clean 7-bit text) and
//! RFC 2047 encoded words themselves (to read the original Subject and to
//! write non-ASCII header text).
//!
//! Quoted-printable and encoded words are written here because the
//! MIME-building crate that would provide them (mail-builder 2.x, through
//! encodify) needs a newer compiler than the workspace's rust-version; the
//! subset needed is small and exact. Base64 itself is the `base64` crate's.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Encoded words found in the wild often omit the `=` padding or carry
/// stray bits in the last symbol; a bounce should still show their text.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Longest quoted-printable line, soft-break `=` included (RFC 2045 §6.7).
const QP_LINE_LIMIT: usize = 76;

/// UTF-8 bytes per encoded word: 45 bytes become 60 base64 characters, plus
/// the 12 of `=?UTF-8?B?` and `?=` stays within RFC 2047's 75.
const ENCODED_WORD_PAYLOAD: usize = 45;

pub fn base64_encode(input: &[u8]) -> String {
    STANDARD.encode(input)
}

/// Strict about the alphabet, lenient about padding (see [`LENIENT_BASE64`]).
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    LENIENT_BASE64.decode(input).ok()
}

/// Encodes CRLF-separated text as quoted-printable with CRLF line breaks.
/// Line breaks of the input stay hard breaks; bare CR or LF are escaped so
/// they survive; every output line is at most 76 octets.
pub fn quoted_printable(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    let mut lines = split_crlf(text).peekable();
    while let Some(line) = lines.next() {
        let mut width = 0;
        for (i, &byte) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = match byte {
                b'=' => false,
                b' ' | b'\t' => !last,
                33..=126 => true,
                _ => false,
            };
            let token_len = if literal { 1 } else { 3 };
            // The final token of a line needs no room for a soft break.
            let room = if last {
                QP_LINE_LIMIT
            } else {
                QP_LINE_LIMIT - 1
            };
            if width + token_len > room {
                out.extend_from_slice(b"=\r\n");
                width = 0;
            }
            if literal {
                out.push(byte);
            } else {
                out.extend_from_slice(&[b'=', hex_digit(byte >> 4), hex_digit(byte & 15)]);
            }
            width += token_len;
        }
        if lines.peek().is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn split_crlf(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                rest = Some(&current[at + 2..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn hex_digit(nibble: u8) -> u8 {
    b"0123456789ABCDEF"[usize::from(nibble & 15)]
}

/// Encodes `text` as space-separated UTF-8 `B` encoded words of at most 75
/// characters each, never splitting a character between two words.
pub fn encode_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (at, c) in text.char_indices() {
        if at + c.len_utf8() - start > ENCODED_WORD_PAYLOAD {
            words.push(&text[start..end]);
            start = at;
        }
        end = at + c.len_utf8();
    }
    if start < text.len() {
        words.push(&text[start..]);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64_encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes RFC 2047 encoded words in a header value. Words in a charset we
/// cannot map (anything but UTF-8, US-ASCII and ISO-8859-1) or that are
/// malformed are left as they are; whitespace between two adjacent encoded
/// words is dropped as §6.2 requires.
pub fn decode_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut pending_space = "";
    let mut after_word = false;
    while !rest.is_empty() {
        let ws_len = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        if ws_len > 0 {
            pending_space = &rest[..ws_len];
            rest = &rest[ws_len..];
            continue;
        }
        let token_len = rest.find([' ', '\t']).unwrap_or(rest.len());
        let token = &rest[..token_len];
        rest = &rest[token_len..];
        match decode_word(token) {
            Some(decoded) => {
                if !after_word {
                    out.push_str(pending_space);
                }
                out.push_str(&decoded);
                after_word = true;
            }
            None => {
                out.push_str(pending_space);
                out.push_str(token);
                after_word = false;
            }
        }
        pending_space = "";
    }
    out.push_str(pending_space);
    out
}

fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut fields = inner.splitn(3, '?');
    let charset = fields.next()?;
    let encoding = fields.next()?;
    let text = fields.next()?;
    if text.contains('?') {
        return None;
    }
    // RFC 2231 allows a language after the charset: `UTF-8*en`.
    let charset = charset.split('*').next()?.to_ascii_lowercase();
    let bytes = match encoding {
        "B" | "b" => base64_decode(text)?,
        "Q" | "q" => decode_q(text)?,
        _ => return None,
    };
    match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" => Some(String::from_utf8_lossy(&bytes).into_owned()),
        "iso-8859-1" | "latin1" => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

fn decode_q(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_all_padding_lengths() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base64_decode("Zg").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Z!=="), None);
    }

    #[test]
    fn quoted_printable_escapes_and_soft_breaks() {
        let encoded = quoted_printable("a=b \r\ncaf\u{e9}\tx\t".as_bytes());
        assert_eq!(encoded, b"a=3Db=20\r\ncaf=C3=A9\tx=09");
        let long = "x".repeat(200);
        let encoded = quoted_printable(long.as_bytes());
        let lines: Vec<&[u8]> = split_crlf(&encoded).collect();
        assert!(lines.iter().all(|l| l.len() <= QP_LINE_LIMIT));
        let joined: Vec<u8> = lines
            .iter()
            .flat_map(|l| l.strip_suffix(b"=").unwrap_or(l).iter().copied())
            .collect();
        assert_eq!(joined, long.as_bytes());
    }

    #[test]
    fn quoted_printable_escapes_bare_line_ends() {
        assert_eq!(quoted_printable(b"a\rb\nc"), b"a=0Db=0Ac");
    }

    #[test]
    fn encoded_words_round_trip_without_splitting_characters() {
        let text = "\u{e9}t\u{e9} ".repeat(30) + "\u{1f600}";
        let encoded = encode_words(&text);
        assert!(encoded.split(' ').all(|w| w.len() <= 75), "{encoded}");
        assert_eq!(decode_words(&encoded), text);
    }

    #[test]
    fn decodes_q_b_and_mixed_text() {
        let cases = [
            ("plain  text", "plain  text"),
            ("=?utf-8?q?caf=C3=A9_au_lait?=", "caf\u{e9} au lait"),
            ("=?ISO-8859-1?Q?caf=E9?= ok", "caf\u{e9} ok"),
            ("a =?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?= b", "a \u{e9}\u{e9} b"),
            ("=?koi8-r?B?w6k=?=", "=?koi8-r?B?w6k=?="),
            ("=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
            ("=?utf-8?q?bad=Z?=", "=?utf-8?q?bad=Z?="),
            ("=?utf-8*en?q?hi?=", "hi"),
            ("=?utf-8?q?=+1?=", "=?utf-8?q?=+1?="),
            ("=?utf-8?q?=\u{e9}?=", "=?utf-8?q?=\u{e9}?="),
        ];
        for (raw, decoded) in cases {
            assert_eq!(decode_words(raw), decoded, "{raw}");
        }
    }
}
