//! The spool's envelope reader (relay-out's queue): whatever a crash, a full
//! disk or an operator's editor leaves in a `.json` envelope file, decoding
//! never panics; what decodes is re-encoded and decodes to the same envelope.
//! (That a corrupt file is set aside while the rest of the queue loads is
//! tested in the spool crate's tests.)

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spool::Envelope;

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new("/fuzz/01fuzzenvelope.json");
    // relay-out's envelopes: no extras.
    let decoded: Result<Envelope, _> = Envelope::decode(bytes, path);
    if let Ok(envelope) = decoded {
        let again = Envelope::decode(&envelope.encode(), path).expect("what we write, we read");
        assert_eq!(envelope, again);
    }
});
