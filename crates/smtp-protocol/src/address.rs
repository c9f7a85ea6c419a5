//! RFC 5321 §4.1.2 envelope addresses, with RFC 6531 UTF-8.
//!
//! Sans-IO and allocation-light: the session hands us the text of a path and
//! gets back typed values or an [`AddressError`] whose `Display` is fit for a
//! `553` reply.
//!
//! What we are deliberately lenient about, and why it is harmless:
//! - one trailing dot on a domain (`user@example.com.`) is dropped;
//! - underscores in domains are accepted (the `domain` submodule says why);
//! - source routes are accepted and ignored, as RFC 5321 requires;
//! - a sender's local part may exceed 64 octets (see [`parse_reverse_path`]).
//!
//! What we are strict about: control characters (TAB included), NUL, C1
//! controls and Unicode line separators anywhere; empty or misplaced-dot
//! local parts; a second unquoted `@`; labels over 63 octets, leading or
//! trailing hyphens, all-numeric top-level domains; the 255-octet domain and
//! 256-octet path limits.

mod domain;
mod error;
mod local_part;
mod path;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use domain::{Domain, Host, MAX_DOMAIN_OCTETS, MAX_LABEL_OCTETS};
pub use error::AddressError;
pub use local_part::MAX_LOCAL_PART_OCTETS;
pub use path::{
    ForwardPath, MAX_PATH_OCTETS, ReversePath, parse_forward_path, parse_reverse_path,
    path_token_len,
};

/// Which local-part length limit applies; see [`parse_reverse_path`] for why
/// senders get more room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalPartLimit {
    /// 64 octets (RFC 5321 §4.5.3.1.1).
    Rfc5321,
    /// Only the enclosing path's 256-octet limit.
    PathOnly,
}

/// `local-part@host`, as received.
///
/// It exists to keep the two forms an MTA needs side by side: the wire form
/// for forwarding the address unchanged (case, quoting and U-labels kept),
/// and a comparison form of the domain for routing decisions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local_part: String,
    host: Host,
}

impl Mailbox {
    /// Parses `local@domain` (no brackets), applying the 64-octet local-part
    /// limit.
    pub fn parse(input: &str) -> Result<Mailbox, AddressError> {
        Mailbox::parse_with_limit(input, LocalPartLimit::Rfc5321)
    }

    fn parse_with_limit(input: &str, limit: LocalPartLimit) -> Result<Mailbox, AddressError> {
        let (local_part, host) = local_part::split_mailbox(input)?;
        if limit == LocalPartLimit::Rfc5321 && local_part.len() > MAX_LOCAL_PART_OCTETS {
            return Err(AddressError::LocalPartTooLong {
                length: local_part.len(),
                max: MAX_LOCAL_PART_OCTETS,
            });
        }
        if host.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        Ok(Mailbox {
            local_part: local_part.to_owned(),
            host: Host::parse(host)?,
        })
    }

    /// The local part in wire form, e.g. `"a b"` (quotes kept) or `User`.
    pub fn local_part(&self) -> &str {
        &self.local_part
    }

    /// The local part with quoting removed: `"a\ b"` → `a b`. For display and
    /// matching, never for sending (it may need quoting again).
    pub fn local_part_unquoted(&self) -> String {
        local_part::unquote(&self.local_part)
    }

    /// The part after `@`.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The domain in comparison form; `None` for address literals.
    pub fn domain(&self) -> Option<&Domain> {
        match &self.host {
            Host::Domain { domain, .. } => Some(domain),
            Host::Literal(_) => None,
        }
    }

    /// True when any part is non-ASCII, i.e. the address needs SMTPUTF8.
    pub fn is_utf8(&self) -> bool {
        !self.local_part.is_ascii() || self.host.is_utf8()
    }

    /// True when the local part could be re-routed by a downstream MTA: it
    /// contains `@` (only possible quoted), `%` or `!` (old-style relaying).
    pub fn has_routing_characters(&self) -> bool {
        self.local_part.contains(['@', '%', '!'])
    }
}

/// Wire form `local@host` as received (trailing dot stripped), e.g.
/// `USER@Example.COM`, suitable for re-sending.
impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.host)
    }
}

impl FromStr for Mailbox {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mailbox::parse(s)
    }
}
