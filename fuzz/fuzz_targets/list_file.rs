//! Haraka's one-item-per-line files (`parse_list`) on any text: it must
//! never panic, and every item must be one trimmed, non-comment line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_core::config::list::parse_list;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let mut previous = 0;
    for line in parse_list(&text) {
        assert!(line.number > previous, "{line:?} after line {previous}");
        previous = line.number;
        assert!(!line.text.is_empty());
        assert!(!line.text.contains(['\r', '\n']), "{line:?}");
        assert!(!line.text.starts_with(['#', ';']), "{line:?}");
        assert!(text.contains(line.text.as_str()), "{line:?}");
    }
});
