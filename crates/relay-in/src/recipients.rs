//! Which recipients relay-in accepts: Haraka's `rcpt_to.in_host_list`.

use smtp_protocol::address::{ForwardPath, Host};

use crate::config::LocalDomains;

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

/// Checks a recipient against our domains. `<postmaster>` without a domain
/// is always accepted: RFC 5321 §4.5.1 requires it (Haraka refuses it).
///
/// relay-in never relays: this check is the only way a recipient gets in, so
/// it refuses anything a downstream MTA might re-route (`%`, `!`, a quoted
/// `@`, address literals) rather than trust the backend to agree with us on
/// what the domain is.
pub fn check(domains: &LocalDomains, rcpt: &ForwardPath) -> Result<(), Refusal> {
    let mailbox = match rcpt {
        ForwardPath::Postmaster(_) => return Ok(()),
        ForwardPath::Mailbox(mailbox) => mailbox,
    };
    if mailbox.has_routing_characters() {
        return Err(Refusal::RoutingCharacters);
    }
    match mailbox.host() {
        Host::Literal(_) => Err(Refusal::AddressLiteral),
        Host::Domain { domain, original } if domains.contains(domain, original) => Ok(()),
        Host::Domain { .. } => Err(Refusal::NotLocal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_protocol::address::parse_forward_path;

    fn domains() -> LocalDomains {
        LocalDomains {
            names: vec![
                "example.com".to_string(),
                "xn--bcher-kva.example".to_string(),
            ],
            pattern: Some(regex::Regex::new("(?i)^(?:.*\\.sub\\.example)$").unwrap()),
        }
    }

    fn check(path: &str) -> Result<(), Refusal> {
        super::check(&domains(), &parse_forward_path(path).expect(path))
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
            (
                "<\"user@evil.org\"@example.com>",
                Refusal::RoutingCharacters,
            ),
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
