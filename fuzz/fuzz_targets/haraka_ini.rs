//! Haraka's INI grammar (`IniDocument::parse`) on any text: it must never
//! panic, and what it returns must be consistent with itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_core::config::ini::{IniDocument, MAIN_SECTION};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let line_count = text.split(['\n', '\r']).count().max(1);
    match IniDocument::parse(&text) {
        Ok(document) => {
            let sections = document.sections();
            assert_eq!(
                sections.first().map(|s| s.name.as_str()),
                Some(MAIN_SECTION)
            );
            for section in sections {
                assert!(document.section(&section.name).is_some());
                for entry in &section.entries {
                    assert!((1..=line_count).contains(&entry.line), "{entry:?}");
                    assert!(document.get(&section.name, &entry.key).is_some());
                    assert!(section.get(&entry.key).is_some());
                }
            }
        }
        Err(error) => {
            assert!((1..=line_count).contains(&error.line), "{error:?}");
            let _ = error.to_string();
        }
    }
});
