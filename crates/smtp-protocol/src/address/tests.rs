//! Table-driven tests of the address grammar, leniencies and limits.

use std::net::IpAddr;

use super::*;

fn mailbox(input: &str) -> Mailbox {
    match Mailbox::parse(input) {
        Ok(mailbox) => mailbox,
        Err(error) => panic!("{input:?} should parse: {error}"),
    }
}

#[test]
fn valid_mailboxes_keep_wire_form_and_normalise_domain() {
    // (input, local part, comparison domain or None for literal, display)
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        (
            "user@example.com",
            "user",
            Some("example.com"),
            "user@example.com",
        ),
        (
            "USER@EXAMPLE.COM",
            "USER",
            Some("example.com"),
            "USER@EXAMPLE.COM",
        ),
        (
            "user@example.com.",
            "user",
            Some("example.com"),
            "user@example.com",
        ),
        ("user@evil.org.", "user", Some("evil.org"), "user@evil.org"),
        (
            "first.last@sub.example.co.uk",
            "first.last",
            Some("sub.example.co.uk"),
            "first.last@sub.example.co.uk",
        ),
        (
            "a+tag@example.com",
            "a+tag",
            Some("example.com"),
            "a+tag@example.com",
        ),
        (
            "!#$%&'*+-/=?^_`{|}~@example.com",
            "!#$%&'*+-/=?^_`{|}~",
            Some("example.com"),
            "!#$%&'*+-/=?^_`{|}~@example.com",
        ),
        (
            "\"a b\"@example.com",
            "\"a b\"",
            Some("example.com"),
            "\"a b\"@example.com",
        ),
        (
            "\"a\\\"b\"@example.com",
            "\"a\\\"b\"",
            Some("example.com"),
            "\"a\\\"b\"@example.com",
        ),
        (
            "\"user@evil.org\"@example.com",
            "\"user@evil.org\"",
            Some("example.com"),
            "\"user@evil.org\"@example.com",
        ),
        (
            "user@host_name.example.com",
            "user",
            Some("host_name.example.com"),
            "user@host_name.example.com",
        ),
        (
            "user@xn--fsqu00a.xn--4rr70v",
            "user",
            Some("xn--fsqu00a.xn--4rr70v"),
            "user@xn--fsqu00a.xn--4rr70v",
        ),
        ("user@a1.com", "user", Some("a1.com"), "user@a1.com"),
        (
            "user@localhost",
            "user",
            Some("localhost"),
            "user@localhost",
        ),
        ("user@[192.0.2.1]", "user", None, "user@[192.0.2.1]"),
        (
            "user@[IPv6:2001:db8::1]",
            "user",
            None,
            "user@[IPv6:2001:db8::1]",
        ),
        (
            "user@[ipv6:2001:DB8::1]",
            "user",
            None,
            "user@[IPv6:2001:db8::1]",
        ),
    ];
    for (input, local, domain, display) in cases {
        let parsed = mailbox(input);
        assert_eq!(parsed.local_part(), *local, "{input}");
        assert_eq!(parsed.domain().map(Domain::as_str), *domain, "{input}");
        assert_eq!(parsed.to_string(), *display, "{input}");
        assert!(!parsed.is_utf8(), "{input}");
    }
}

#[test]
fn address_literals_give_ip_hosts() {
    assert_eq!(
        mailbox("user@[192.0.2.1]").host(),
        &Host::Literal("192.0.2.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        mailbox("user@[IPv6:2001:db8::1]").host(),
        &Host::Literal("2001:db8::1".parse::<IpAddr>().unwrap())
    );
}

#[test]
fn host_keeps_original_text_and_comparison_form() {
    let parsed = mailbox("user@Example.COM.");
    let Host::Domain { domain, original } = parsed.host() else {
        panic!("expected a domain host");
    };
    assert_eq!(domain.as_str(), "example.com");
    assert_eq!(original, "Example.COM");
}

#[test]
fn utf8_mailbox_gets_a_label_domain() {
    let parsed = mailbox("用户@例子.广告");
    assert_eq!(parsed.domain().unwrap().as_str(), "xn--fsqu00a.xn--4rr70v");
    assert!(parsed.is_utf8());
    assert_eq!(parsed.to_string(), "用户@例子.广告");
    assert!(mailbox("用户@example.com").is_utf8());
    assert!(mailbox("user@例子.广告").is_utf8());
    assert!(mailbox("\"用 户\"@example.com").is_utf8());
    assert_eq!(
        Domain::parse("BÜCHER.example").unwrap().as_str(),
        "xn--bcher-kva.example"
    );
}

#[test]
fn routing_characters_are_detected() {
    let cases = [
        ("\"user@evil.org\"@example.com", true),
        ("user%evil.org@example.com", true),
        ("evil.org!user@example.com", true),
        ("user@example.com", false),
        ("user+tag@example.com", false),
    ];
    for (input, expected) in cases {
        assert_eq!(mailbox(input).has_routing_characters(), expected, "{input}");
    }
}

#[test]
fn unquoting_removes_escapes() {
    assert_eq!(
        mailbox("\"a\\ b\\\\\"@x.org").local_part_unquoted(),
        "a b\\"
    );
    assert_eq!(mailbox("plain@x.org").local_part_unquoted(), "plain");
}

#[test]
fn invalid_mailboxes_give_precise_errors() {
    let long_label = format!("user@{}.com", "a".repeat(64));
    let ok_label = format!("user@{}.com", "a".repeat(63));
    assert!(Mailbox::parse(&ok_label).is_ok());
    let long_local = format!("{}@example.com", "a".repeat(65));
    assert!(Mailbox::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
    let long_domain = format!("u@{}com", "abcdefghi.".repeat(26));
    let cases: Vec<(&str, AddressError)> = vec![
        ("", AddressError::Empty),
        ("user", AddressError::MissingAt),
        ("user@", AddressError::EmptyDomain),
        ("user@.", AddressError::EmptyDomain),
        ("@example.com", AddressError::EmptyLocalPart),
        ("\"\"@example.com", AddressError::EmptyLocalPart),
        ("a..b@x.org", AddressError::MisplacedDot),
        (".a@x.org", AddressError::MisplacedDot),
        ("a.@x.org", AddressError::MisplacedDot),
        ("user@example.com@evil.org", AddressError::MultipleAt),
        (
            "\"unbalanced@example.com",
            AddressError::UnterminatedQuotedString,
        ),
        ("\"a\"b@example.com", AddressError::TextAfterQuotedString),
        ("\"a\"", AddressError::MissingAt),
        (
            "un\"balanced@example.com",
            AddressError::InvalidLocalPartCharacter { found: '"' },
        ),
        (
            "us er@example.com",
            AddressError::InvalidLocalPartCharacter { found: ' ' },
        ),
        (
            "us\ter@example.com",
            AddressError::InvalidLocalPartCharacter { found: '\t' },
        ),
        (
            "us\0er@example.com",
            AddressError::InvalidLocalPartCharacter { found: '\0' },
        ),
        (
            "us\u{85}er@example.com",
            AddressError::InvalidLocalPartCharacter { found: '\u{85}' },
        ),
        (
            "us\u{2028}er@example.com",
            AddressError::InvalidLocalPartCharacter { found: '\u{2028}' },
        ),
        (
            "a(b)@example.com",
            AddressError::InvalidLocalPartCharacter { found: '(' },
        ),
        (
            "\"a\tb\"@example.com",
            AddressError::InvalidQuotedCharacter { found: '\t' },
        ),
        (
            "\"a\rb\"@example.com",
            AddressError::InvalidQuotedCharacter { found: '\r' },
        ),
        (
            "\"a\\\nb\"@example.com",
            AddressError::InvalidQuotedCharacter { found: '\n' },
        ),
        ("\"a\\", AddressError::UnterminatedQuotedString),
        (
            &long_local,
            AddressError::LocalPartTooLong {
                length: 65,
                max: 64,
            },
        ),
        (&long_label, AddressError::DomainLabelTooLong { length: 64 }),
        (&long_domain, AddressError::DomainTooLong { length: 263 }),
        ("user@-bad-.com", AddressError::DomainLabelHyphen),
        ("user@bad-.com", AddressError::DomainLabelHyphen),
        ("user@a..com", AddressError::EmptyDomainLabel),
        ("user@.example.com", AddressError::EmptyDomainLabel),
        ("user@example.com..", AddressError::EmptyDomainLabel),
        (
            "user@exa mple.com",
            AddressError::InvalidDomainCharacter { found: ' ' },
        ),
        (
            "user@exam\0ple.com",
            AddressError::InvalidDomainCharacter { found: '\0' },
        ),
        (
            "user@example.com>",
            AddressError::InvalidDomainCharacter { found: '>' },
        ),
        ("user@1.2.3.4", AddressError::NumericTopLevelDomain),
        ("user@xn--zz.com", AddressError::InvalidIdna),
        ("user@例子。广告", AddressError::InvalidIdna),
        ("user@[192.0.2.1", AddressError::InvalidAddressLiteral),
        ("user@[300.0.2.1]", AddressError::InvalidAddressLiteral),
        ("user@[2001:db8::1]", AddressError::InvalidAddressLiteral),
        ("user@[IPv6:192.0.2.1]", AddressError::InvalidAddressLiteral),
        (
            "user@[IPv6:fe80::1%eth0]",
            AddressError::InvalidAddressLiteral,
        ),
        ("user@[tag:whatever]", AddressError::InvalidAddressLiteral),
        ("user@[]", AddressError::InvalidAddressLiteral),
    ];
    for (input, expected) in cases {
        assert_eq!(Mailbox::parse(input), Err(expected), "{input:?}");
    }
}

#[test]
fn reverse_paths() {
    assert_eq!(parse_reverse_path("<>"), Ok(ReversePath::Null));
    let cases = [
        ("<user@example.com>", "user@example.com"),
        ("<@example.com:user@evil.org>", "user@evil.org"),
        ("<@a.example,@b.example:user@c.example>", "user@c.example"),
        ("<\"a>b\"@example.com>", "\"a>b\"@example.com"),
        ("<User@Example.COM.>", "User@Example.COM"),
    ];
    for (input, expected) in cases {
        let path = parse_reverse_path(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(path.mailbox().unwrap().to_string(), expected, "{input}");
        assert_eq!(path.to_string(), format!("<{expected}>"), "{input}");
    }
    assert_eq!(ReversePath::Null.to_string(), "<>");
}

#[test]
fn sender_local_part_may_exceed_64_octets() {
    let long = format!("<{}@example.com>", "s".repeat(100));
    assert!(parse_reverse_path(&long).is_ok());
    assert_eq!(
        parse_forward_path(&long),
        Err(AddressError::LocalPartTooLong {
            length: 100,
            max: 64
        })
    );
}

#[test]
fn forward_paths() {
    for input in ["<postmaster>", "<Postmaster>", "<POSTMASTER>"] {
        let path = parse_forward_path(input).unwrap();
        assert_eq!(
            path,
            ForwardPath::Postmaster(input[1..input.len() - 1].to_owned())
        );
        assert_eq!(path.to_string(), input);
        assert!(path.mailbox().is_none());
    }
    let path = parse_forward_path("<@relay.example:Postmaster@Example.com>").unwrap();
    assert_eq!(path.to_string(), "<Postmaster@Example.com>");
    assert_eq!(
        path.mailbox().unwrap().domain().unwrap().as_str(),
        "example.com"
    );
}

#[test]
fn invalid_paths() {
    let long_path = format!("<{}@{}com>", "a".repeat(60), "b.".repeat(100));
    let cases: Vec<(&str, AddressError)> = vec![
        ("", AddressError::Empty),
        ("user@example.com", AddressError::MissingOpeningBracket),
        ("<a@b.example", AddressError::UnterminatedPath),
        ("<\"a>@b.example", AddressError::UnterminatedPath),
        ("<a@b.example> ", AddressError::TextAfterPath),
        ("<a@b.example>>", AddressError::TextAfterPath),
        ("<@example.com>", AddressError::InvalidSourceRoute),
        ("<@:user@example.com>", AddressError::InvalidSourceRoute),
        (
            "<@a.example;@b.example:user@example.com>",
            AddressError::InvalidSourceRoute,
        ),
        (
            "<@a.example,b.example:user@example.com>",
            AddressError::InvalidSourceRoute,
        ),
        ("<@a.example:>", AddressError::Empty),
        ("<postmaster@>", AddressError::EmptyDomain),
        (&long_path, AddressError::PathTooLong { length: 266 }),
        (
            "< user@example.com>",
            AddressError::InvalidLocalPartCharacter { found: ' ' },
        ),
    ];
    for (input, expected) in &cases {
        assert_eq!(
            parse_reverse_path(input).err().as_ref(),
            Some(expected),
            "{input:?}"
        );
        assert_eq!(
            parse_forward_path(input).err().as_ref(),
            Some(expected),
            "{input:?}"
        );
    }
    assert_eq!(parse_forward_path("<>"), Err(AddressError::NullForwardPath));
    assert_eq!(
        parse_reverse_path("<postmaster>"),
        Err(AddressError::MissingAt)
    );
}

#[test]
fn path_token_len_skips_quoted_brackets() {
    assert_eq!(path_token_len("<a@b.example> SIZE=1"), Ok(13));
    assert_eq!(path_token_len("<\"a>\\\"\"@b.example>x"), Ok(18));
    assert_eq!(path_token_len("<>"), Ok(2));
    assert_eq!(
        path_token_len("a@b"),
        Err(AddressError::MissingOpeningBracket)
    );
}

#[test]
fn error_text_never_contains_raw_control_characters() {
    for input in ["a\u{1b}b@x.org", "a@x\u{7f}.org", "\"\u{0}\"@x.org"] {
        let text = Mailbox::parse(input).unwrap_err().to_string();
        assert!(text.chars().all(|c| !c.is_control()), "{text:?}");
        assert!(text.is_ascii(), "{text:?}");
    }
}

#[test]
fn domains_compare_in_one_form() {
    let forms = ["Example.COM.", "example.com", "EXAMPLE.com"];
    for form in forms {
        assert_eq!(Domain::parse(form), Domain::parse("example.com"), "{form}");
    }
    assert_eq!(
        Domain::parse("例子.广告"),
        Domain::parse("XN--FSQU00A.xn--4rr70v.")
    );
    assert_eq!(
        Domain::parse("_dmarc.example.com").unwrap().to_string(),
        "_dmarc.example.com"
    );
    assert_eq!("a.example".parse::<Domain>().unwrap().as_str(), "a.example");
    assert_eq!(
        Domain::parse("[192.0.2.1]"),
        Err(AddressError::InvalidDomainCharacter { found: '[' })
    );
}

#[test]
fn host_parse_is_usable_for_helo_arguments() {
    assert!(matches!(Host::parse("[192.0.2.1]"), Ok(Host::Literal(_))));
    assert!(matches!(
        Host::parse("mx.example."),
        Ok(Host::Domain { .. })
    ));
    assert_eq!(Host::parse("[IPv6:::1]").unwrap().to_string(), "[IPv6:::1]");
    assert!(Host::parse("not a host").is_err());
}
