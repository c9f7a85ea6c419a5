//! The PROXY protocol header decoder (smtp-core's server/proxy_protocol.rs):
//! never panics, and keeps the promises its socket reader relies on to
//! consume exactly the header: a complete header lies within the input and
//! is judged the same without what follows it; an incomplete one stays
//! incomplete on every shorter prefix and is never longer than the caps.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_core::server::proxy_protocol::{Decoded, decode};

fuzz_target!(|bytes: &[u8]| {
    match decode(bytes) {
        Decoded::Complete { header, length } => {
            assert!(length > 0 && length <= bytes.len() && length <= 4096);
            assert!(header.version == 1 || header.version == 2);
            if header.version == 1 {
                assert!(length <= 107 && bytes[length - 1] == b'\n');
            }
            assert_eq!(
                decode(&bytes[..length]),
                Decoded::Complete { header, length }
            );
            for cut in 0..length {
                assert_eq!(decode(&bytes[..cut]), Decoded::Incomplete, "{cut}");
            }
        }
        Decoded::Incomplete => {
            assert!(bytes.len() < 4096);
            if bytes.len() > 1 {
                assert_eq!(decode(&bytes[..bytes.len() - 1]), Decoded::Incomplete);
            }
        }
        Decoded::Invalid(why) => assert!(!why.is_empty()),
    }
});
