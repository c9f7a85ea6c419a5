//! Envelope addresses on any text: `parse_forward_path`,
//! `parse_reverse_path` and `Mailbox::parse` never panic; on success the
//! wire form (`Display`) parses again to an equal value, so forwarding an
//! address can never change what it means. The input is tried both as sent
//! and wrapped in `<>`, so the fuzzer reaches mailbox rules without having
//! to find the brackets first.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_protocol::address::{
    Domain, Host, Mailbox, parse_forward_path, parse_reverse_path, path_token_len,
};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    check(&text);
    check(&format!("<{text}>"));
});

fn check(text: &str) {
    if let Ok(path) = parse_forward_path(text) {
        let wire = path.to_string();
        assert_eq!(
            parse_forward_path(&wire),
            Ok(path.clone()),
            "{text:?} -> {wire:?}"
        );
        if let Some(mailbox) = path.mailbox() {
            check_mailbox(mailbox);
        }
    }
    if let Ok(path) = parse_reverse_path(text) {
        let wire = path.to_string();
        assert_eq!(
            parse_reverse_path(&wire),
            Ok(path.clone()),
            "{text:?} -> {wire:?}"
        );
        if let Some(mailbox) = path.mailbox() {
            // A sender's local part may be longer than Mailbox::parse allows.
            let _ = mailbox.local_part_unquoted();
        }
    }
    if let Ok(mailbox) = Mailbox::parse(text) {
        check_mailbox(&mailbox);
    }
    if let Ok(length) = path_token_len(text) {
        assert!(text.is_char_boundary(length) && text[..length].ends_with('>'));
    }
    if let Ok(host) = Host::parse(text) {
        assert_eq!(Host::parse(&host.to_string()), Ok(host.clone()), "{text:?}");
    }
    if let Ok(domain) = Domain::parse(text) {
        assert_eq!(
            Domain::parse(domain.as_str()),
            Ok(domain.clone()),
            "{text:?}"
        );
    }
}

fn check_mailbox(mailbox: &Mailbox) {
    let wire = mailbox.to_string();
    assert_eq!(Mailbox::parse(&wire).as_ref(), Ok(mailbox), "{wire:?}");
    let _ = mailbox.local_part_unquoted();
    let _ = mailbox.is_utf8();
    let _ = mailbox.has_routing_characters();
    if let Some(domain) = mailbox.domain() {
        assert!(domain.as_str().is_ascii(), "{domain:?}");
    }
}
