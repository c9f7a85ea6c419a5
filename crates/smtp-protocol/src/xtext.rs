//! xtext (RFC 3461 §4): the encoding of XCLIENT attribute values and of the DSN
//! `ENVID=` / `ORCPT=` parameters.
//!
//! It exists because these values travel inside an SMTP command line, where a
//! space would start the next parameter and `=` would be read as the end of a
//! parameter name. xtext keeps every octet from `!` to `~` except `+` and `=`,
//! and writes everything else as `+XX`.

use std::fmt::Write as _;

/// Why a text is not valid xtext; exists so that a caller decoding a peer's
/// parameter can say exactly what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XtextError {
    /// An octet that xtext never carries raw: a control character, a space,
    /// `=`, or anything outside ASCII.
    #[error("octet 0x{octet:02X} at offset {offset} is not allowed in xtext")]
    InvalidOctet { offset: usize, octet: u8 },
    /// A `+` not followed by two hexadecimal digits.
    #[error("'+' at offset {offset} is not followed by two hexadecimal digits")]
    BadHexEscape { offset: usize },
}

/// Whether `octet` is written as itself (RFC 3461 `xchar`).
fn is_plain(octet: u8) -> bool {
    (b'!'..=b'~').contains(&octet) && octet != b'+' && octet != b'='
}

/// Encodes `value` as xtext: `+`, `=`, and octets below 33 or above 126
/// become `+XX` with upper-case hex digits; everything else is copied.
pub fn encode(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &octet in value {
        if is_plain(octet) {
            out.push(char::from(octet));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "+{octet:02X}");
        }
    }
    out
}

/// Decodes xtext. Lower-case hex digits are accepted although RFC 3461 asks
/// for upper case, because senders get this wrong and the meaning is not in
/// doubt.
pub fn decode(text: &str) -> Result<Vec<u8>, XtextError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut offset = 0;
    while offset < bytes.len() {
        let octet = bytes[offset];
        if octet == b'+' {
            let high = bytes.get(offset + 1).and_then(|&b| hex_value(b));
            let low = bytes.get(offset + 2).and_then(|&b| hex_value(b));
            let (Some(high), Some(low)) = (high, low) else {
                return Err(XtextError::BadHexEscape { offset });
            };
            out.push(high << 4 | low);
            offset += 3;
        } else if is_plain(octet) {
            out.push(octet);
            offset += 1;
        } else {
            return Err(XtextError::InvalidOctet { offset, octet });
        }
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn encodes_exactly_the_octets_rfc_3461_excludes() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"mail.example.com", "mail.example.com"),
            (b"a b", "a+20b"),
            (b"a+b=c", "a+2Bb+3Dc"),
            (b"!~", "!~"),
            (b"\0\r\n\x7f\xff", "+00+0D+0A+7F+FF"),
            ("é".as_bytes(), "+C3+A9"),
            (b"[UNAVAILABLE]", "[UNAVAILABLE]"),
        ];
        for (raw, encoded) in cases {
            assert_eq!(encode(raw), *encoded, "{raw:?}");
            assert_eq!(decode(encoded).as_deref(), Ok(*raw), "{encoded}");
        }
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let encoded = encode(&all);
        assert!(
            encoded.bytes().all(|b| is_plain(b) || b == b'+'),
            "{encoded}"
        );
        assert_eq!(decode(&encoded), Ok(all));
    }

    #[test]
    fn decode_rejects_malformed_text() {
        let cases: &[(&str, XtextError)] = &[
            (
                "a b",
                XtextError::InvalidOctet {
                    offset: 1,
                    octet: b' ',
                },
            ),
            (
                "a=b",
                XtextError::InvalidOctet {
                    offset: 1,
                    octet: b'=',
                },
            ),
            (
                "é",
                XtextError::InvalidOctet {
                    offset: 0,
                    octet: 0xC3,
                },
            ),
            ("+", XtextError::BadHexEscape { offset: 0 }),
            ("ab+4", XtextError::BadHexEscape { offset: 2 }),
            ("+GG", XtextError::BadHexEscape { offset: 0 }),
            ("+-1", XtextError::BadHexEscape { offset: 0 }),
        ];
        for (text, error) in cases {
            assert_eq!(decode(text), Err(error.clone()), "{text}");
        }
        assert_eq!(decode("+2b+3d"), Ok(b"+=".to_vec()));
    }

    #[test]
    fn seeded_random_values_round_trip() {
        let mut rng = StdRng::seed_from_u64(0x0078_7465_7874);
        for _ in 0..2000 {
            let length = rng.random_range(0..64);
            let value: Vec<u8> = (0..length).map(|_| rng.random()).collect();
            let encoded = encode(&value);
            assert!(encoded.is_ascii());
            assert!(!encoded.contains([' ', '=']), "{encoded}");
            assert_eq!(decode(&encoded), Ok(value));
        }
    }
}
