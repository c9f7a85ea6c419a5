//! Which recipients relay-in accepts: Haraka's `rcpt_to.in_host_list`.

use std::collections::HashSet;

use regex::Regex;
use smtp_core::address::{ForwardPath, Host};

/// The domains we are MX for, from `host_list` (exact, in A-label form) and
/// `host_list_regex` (whole-name, case-insensitive).
///
/// relay-in never relays: this check is the only way a recipient gets in, so
/// it refuses anything a downstream MTA might re-route (`%`, `!`, a quoted
/// `@`, address literals) rather than trust the backend to agree with us on
/// what the domain is.
#[derive(Debug, Clone, Default)]
pub struct LocalDomains {
    exact: HashSet<String>,
    pattern: Option<Regex>,
}

/// Why a recipient is not ours; logged, and chooses nothing else: every
/// refusal gets the same `550 5.7.1`, so probing learns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotLocal,
    RoutingCharacters,
    AddressLiteral,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotLocal => "domain not in host_list",
            Refusal::RoutingCharacters => "local part holds routing characters (@ % !)",
            Refusal::AddressLiteral => "address literal",
        }
    }
}

impl LocalDomains {
    /// `domains` must already be normalised (lowercase A-labels without a
    /// trailing dot), as the config loader gives them.
    pub fn new(domains: impl IntoIterator<Item = String>, pattern: Option<Regex>) -> Self {
        Self {
            exact: domains.into_iter().collect(),
            pattern,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.pattern.is_none()
    }

    /// Whether `domain` (normalised) is one of ours.
    pub fn contains(&self, domain: &str) -> bool {
        self.exact.contains(domain) || self.pattern.as_ref().is_some_and(|p| p.is_match(domain))
    }

    /// Checks a recipient. `<postmaster>` without a domain is always
    /// accepted: RFC 5321 §4.5.1 requires it (Haraka refuses it).
    pub fn check(&self, rcpt: &ForwardPath) -> Result<(), Refusal> {
        let mailbox = match rcpt {
            ForwardPath::Postmaster(_) => return Ok(()),
            ForwardPath::Mailbox(mailbox) => mailbox,
        };
        if mailbox.has_routing_characters() {
            return Err(Refusal::RoutingCharacters);
        }
        match mailbox.host() {
            Host::Literal(_) => Err(Refusal::AddressLiteral),
            Host::Domain { domain, .. } if self.contains(domain.as_str()) => Ok(()),
            Host::Domain { .. } => Err(Refusal::NotLocal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_core::address::parse_forward_path;

    fn domains() -> LocalDomains {
        LocalDomains::new(
            ["example.com".to_string(), "xn--bcher-kva.example".to_string()],
            Some(Regex::new("(?i)^(?:.*\\.sub\\.example)$").unwrap()),
        )
    }

    fn check(path: &str) -> Result<(), Refusal> {
        domains().check(&parse_forward_path(path).expect(path))
    }

    #[test]
    fn accepts_our_domains_in_any_case_and_with_a_trailing_dot() {
        for path in [
            "<user@example.com>",
            "<USER@EXAMPLE.COM>",
            "<user@example.com.>",
            "<user@bücher.example>",
            "<user@a.sub.example>",
            "<@other.example:user@example.com>",
            "<postmaster>",
            "<Postmaster>",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn refuses_other_domains_and_routing_tricks() {
        for (path, refusal) in [
            ("<user@evil.org>", Refusal::NotLocal),
            ("<user@evil.org.>", Refusal::NotLocal),
            ("<@example.com:user@evil.org>", Refusal::NotLocal),
            ("<\"user@evil.org\"@example.com>", Refusal::RoutingCharacters),
            ("<user%evil.org@example.com>", Refusal::RoutingCharacters),
            ("<evil.org!user@example.com>", Refusal::RoutingCharacters),
            ("<user@[192.0.2.1]>", Refusal::AddressLiteral),
            ("<user@sub.example>", Refusal::NotLocal),
            ("<user@example.com.evil.org>", Refusal::NotLocal),
        ] {
            assert_eq!(check(path), Err(refusal), "{path}");
        }
    }
}
