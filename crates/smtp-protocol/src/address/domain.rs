//! Domains (RFC 5321 `Domain`, RFC 6531 U-labels) and address literals.
//!
//! Underscores: RFC 5321 allows only letters, digits and hyphens, but real
//! hosts do have `_` in their names and Postfix accepts them too. An
//! underscore is not a delimiter anywhere in SMTP, in headers or in DNS, so
//! accepting it cannot change how an address is split or routed; we accept
//! it anywhere in a label.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use super::AddressError;

/// RFC 5321 §4.5.3.1.2.
pub const MAX_DOMAIN_OCTETS: usize = 255;
/// RFC 1035 §2.3.4.
pub const MAX_LABEL_OCTETS: usize = 63;

/// A domain in the one form used for comparing and looking up: lowercase
/// A-label, no trailing dot.
///
/// It exists so host lists, relay rules and DNS lookups never have to think
/// about case, trailing dots or Unicode: two `Domain`s are equal exactly
/// when they name the same DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Validates a domain as sent (ASCII or UTF-8, one trailing dot allowed)
    /// and converts it to comparison form.
    pub fn parse(input: &str) -> Result<Domain, AddressError> {
        let without_root = strip_root_dot(input);
        if without_root.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        for found in without_root.chars() {
            if found.is_ascii() && !is_domain_ascii(found) {
                return Err(AddressError::InvalidDomainCharacter { found });
            }
            if found.is_control() {
                return Err(AddressError::InvalidDomainCharacter { found });
            }
        }
        // Checked before IDNA so `a..b` gets its precise error, not "invalid IDNA".
        if without_root.split('.').any(str::is_empty) {
            return Err(AddressError::EmptyDomainLabel);
        }
        let a_label = Uts46::new()
            .to_ascii(
                without_root.as_bytes(),
                AsciiDenyList::EMPTY,
                Hyphens::Allow,
                DnsLength::Ignore,
            )
            .map_err(|_| AddressError::InvalidIdna)?
            .to_ascii_lowercase();
        // UTS #46 maps fullwidth and ideographic dots to '.', which would let
        // the form we compare differ in structure from the form we forward.
        if a_label.split('.').count() != without_root.split('.').count() {
            return Err(AddressError::InvalidIdna);
        }
        validate_a_label_form(&a_label)?;
        Ok(Domain(a_label))
    }

    /// The lowercase A-label form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Domain {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

/// The part after `@`: a name, or an IP address in brackets.
///
/// It exists because the two need different handling downstream (MX lookup
/// versus direct connection; host lists match only names).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name.
    Domain {
        /// Comparison form.
        domain: Domain,
        /// As sent (case and U-labels kept), trailing dot removed, for
        /// forwarding the address unchanged.
        original: String,
    },
    /// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
    Literal(IpAddr),
}

impl Host {
    /// Parses the text after `@`.
    pub fn parse(input: &str) -> Result<Host, AddressError> {
        if input.starts_with('[') {
            return parse_address_literal(input).map(Host::Literal);
        }
        let domain = Domain::parse(input)?;
        Ok(Host::Domain {
            domain,
            original: strip_root_dot(input).to_owned(),
        })
    }

    /// True when the host as sent contains non-ASCII (a U-label).
    pub fn is_utf8(&self) -> bool {
        match self {
            Host::Domain { original, .. } => !original.is_ascii(),
            Host::Literal(_) => false,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain { original, .. } => f.write_str(original),
            Host::Literal(IpAddr::V4(v4)) => write!(f, "[{v4}]"),
            Host::Literal(IpAddr::V6(v6)) => write!(f, "[IPv6:{v6}]"),
        }
    }
}

/// Only one root dot: `example.com..` stays invalid.
fn strip_root_dot(input: &str) -> &str {
    input.strip_suffix('.').unwrap_or(input)
}

fn is_domain_ascii(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// The checks IDNA was told to skip, done on its output so that U-labels and
/// ASCII labels meet exactly the same rules.
fn validate_a_label_form(a_label: &str) -> Result<(), AddressError> {
    if a_label.len() > MAX_DOMAIN_OCTETS {
        return Err(AddressError::DomainTooLong {
            length: a_label.len(),
        });
    }
    for label in a_label.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyDomainLabel);
        }
        if label.len() > MAX_LABEL_OCTETS {
            return Err(AddressError::DomainLabelTooLong {
                length: label.len(),
            });
        }
        if let Some(found) = label.chars().find(|c| !is_domain_ascii(*c)) {
            return Err(AddressError::InvalidDomainCharacter { found });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::DomainLabelHyphen);
        }
    }
    let top_level = a_label.rsplit('.').next().unwrap_or_default();
    if top_level.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::NumericTopLevelDomain);
    }
    Ok(())
}

/// RFC 5321 §4.1.3. General (tagged) literals other than `IPv6:` name no
/// transport we could use, so they are refused.
fn parse_address_literal(input: &str) -> Result<IpAddr, AddressError> {
    let inner = input
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or(AddressError::InvalidAddressLiteral)?;
    const IPV6_TAG: &str = "IPv6:";
    let tag = inner.get(..IPV6_TAG.len());
    if tag.is_some_and(|tag| tag.eq_ignore_ascii_case(IPV6_TAG)) {
        let v6 = inner
            .get(IPV6_TAG.len()..)
            .and_then(|text| text.parse::<Ipv6Addr>().ok())
            .ok_or(AddressError::InvalidAddressLiteral)?;
        return Ok(IpAddr::V6(v6));
    }
    inner
        .parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| AddressError::InvalidAddressLiteral)
}
