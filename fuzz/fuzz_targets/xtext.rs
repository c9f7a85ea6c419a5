//! xtext (RFC 3461): `encode` then `decode` is the identity for any octets,
//! `encode` writes only what xtext allows, and `decode` of any text never
//! panics (and, when it succeeds, re-encodes to text that decodes the same).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_protocol::xtext::{decode, encode};

fuzz_target!(|bytes: &[u8]| {
    let encoded = encode(bytes);
    assert!(
        encoded
            .bytes()
            .all(|b| (b'!'..=b'~').contains(&b) && b != b'='),
        "{encoded:?}"
    );
    assert_eq!(decode(&encoded).as_deref(), Ok(bytes), "{encoded:?}");

    let text = String::from_utf8_lossy(bytes);
    if let Ok(decoded) = decode(&text) {
        assert_eq!(decode(&encode(&decoded)), Ok(decoded), "{text:?}");
    }
});
