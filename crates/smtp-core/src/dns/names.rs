//! Conversions between caller strings, wire names and the host names we hand back.
//!
//! Kept sans-IO so the rules that guard our output (a PTR answer ends up in `Received:` headers and
//! XCLIENT commands) are unit-tested without a nameserver.

use hickory_resolver::proto::rr::Name;

use super::DnsError;

/// Longest host name we accept in text form (RFC 1035 255-octet wire limit minus length octets).
const MAX_HOSTNAME_LEN: usize = 253;
/// RFC 1035 label limit.
const MAX_LABEL_LEN: usize = 63;

/// Parses a caller-supplied domain as an absolute name: `example.com` and `example.com.` are
/// the same query. UTF-8 names are converted to their punycode (A-label) form.
pub(super) fn absolute_name(input: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidName {
        name: input.to_string(),
        reason,
    };
    if input.is_empty() {
        return Err(invalid("empty name".to_string()));
    }
    let mut name = Name::from_utf8(input).map_err(|error| invalid(error.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The text form of a name we return to callers: ASCII, without the root's trailing dot.
pub(super) fn display_name(name: &Name) -> String {
    let ascii = name.to_ascii();
    match ascii.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_string(),
        _ => ascii,
    }
}

/// Whether a PTR target is fit to be presented as a host name, following Postfix's
/// `valid_hostname()`: LDH labels (underscore tolerated) of 1–63 octets, no label starting or
/// ending with a hyphen, at most 253 octets, and not all-numeric (which would make it look like an
/// address). Anything else is hostile or broken DNS data and is treated as "no name".
pub(super) fn is_presentable_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_HOSTNAME_LEN {
        return false;
    }
    let mut all_numeric = true;
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return false;
        }
        if label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
        if !label.bytes().all(|b| b.is_ascii_digit()) {
            all_numeric = false;
        }
    }
    !all_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_name_makes_relative_names_fully_qualified() {
        for input in ["example.com", "example.com.", "EXAMPLE.com"] {
            let name = absolute_name(input).expect("valid name");
            assert!(name.is_fqdn(), "{input}");
            assert_eq!(display_name(&name).to_ascii_lowercase(), "example.com");
        }
    }

    #[test]
    fn absolute_name_converts_utf8_to_punycode() {
        let name = absolute_name("bücher.example").expect("valid IDN");
        assert_eq!(display_name(&name), "xn--bcher-kva.example");
    }

    #[test]
    fn absolute_name_rejects_garbage_without_panicking() {
        let too_long_label = "a".repeat(64);
        for input in ["", "a..b", too_long_label.as_str()] {
            assert!(
                matches!(absolute_name(input), Err(DnsError::InvalidName { .. })),
                "{input:?}"
            );
        }
    }

    #[test]
    fn display_name_keeps_the_root_visible() {
        assert_eq!(display_name(&Name::root()), ".");
    }

    #[test]
    fn presentable_hostnames() {
        let long_name = format!("{}.example", "a".repeat(250));
        let long_label = format!("{}.example", "a".repeat(64));
        let cases: &[(&str, bool)] = &[
            ("mail.example.com", true),
            ("a", true),
            ("host_1.example", true),
            ("xn--bcher-kva.example", true),
            ("1.2.3.4", false),
            ("123", false),
            ("123.example", true),
            ("", false),
            ("a..b", false),
            ("-a.example", false),
            ("a-.example", false),
            ("a b.example", false),
            ("a\\.b.example", false),
            ("a\\000.example", false),
            ("[1.2.3.4]", false),
            (long_name.as_str(), false),
            (long_label.as_str(), false),
        ];
        for (name, expected) in cases {
            assert_eq!(is_presentable_hostname(name), *expected, "{name:?}");
        }
    }
}
