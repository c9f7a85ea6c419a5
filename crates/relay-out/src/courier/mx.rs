//! Where mail for one destination goes: MX lookup, implicit MX, null MX, and
//! the addresses we refuse to connect to (haraka-behaviour.md §7.4).
//!
//! The decisions are sans-IO ([`order_mx`], [`AddressPolicy`]) and unit-tested;
//! [`resolve`] only feeds them what the DNS says.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rand::Rng;
use rand::seq::SliceRandom;
use smtp_core::dns::{Dns, DnsError, MxAnswer, MxRecord};
use tracing::debug;

use super::connector::Connector;
use super::source_check::FamilyChoice;
use crate::config::InetPrefer;

/// Where a group of recipients is delivered: a domain (MX lookup) or an
/// address literal (`user@[192.0.2.1]`, straight to that address).
///
/// It exists because recipients are grouped by it (one SMTP session per
/// destination), the per-destination concurrency cap is keyed by it, and it
/// names the destination in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// Lower-case A-label form, no trailing dot.
    Domain(String),
    Literal(IpAddr),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Domain(domain) => f.write_str(domain),
            Destination::Literal(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// One address to connect to, with the host name it came from (for SNI,
/// certificate checks, logs and a notice's `Remote-MTA`) and how to talk
/// to it (the MX default, or a route's settings).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub host: String,
    pub ip: IpAddr,
    pub port: u16,
    pub connector: Arc<Connector>,
}

/// The same host at the same address and port (the connector follows).
impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host && self.ip == other.ip && self.port == other.port
    }
}

impl Eq for Candidate {}

/// Why no candidate exists for a destination, in the form a recipient's
/// outcome needs: bounce or retry, a status code, and a text naming the
/// cause (nothing remote said anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveFailure {
    pub permanent: bool,
    /// RFC 3463 status.
    pub status: &'static str,
    pub text: String,
}

impl ResolveFailure {
    pub(super) fn permanent(status: &'static str, text: String) -> Self {
        ResolveFailure {
            permanent: true,
            status,
            text,
        }
    }

    pub(super) fn temporary(status: &'static str, text: String) -> Self {
        ResolveFailure {
            permanent: false,
            status,
            text,
        }
    }
}

/// Why an address is not connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// One of relay-out's own listeners: delivering there is a mail loop,
    /// whatever `local_mx_ok` says.
    OwnListener,
    /// Loopback, link-local, unspecified or one of our listen addresses
    /// (Haraka's `is_local_host`), and `local_mx_ok` is off.
    Local,
    /// IPv6 while `ipv6_enabled` is off.
    Ipv6Disabled,
    /// IPv6 while the IPv6 source address fails the reverse DNS self-check
    /// ([`super::source_check`]).
    Ipv6Unconfirmed,
    /// Not of the family of the configured source address
    /// (`local_address` or a route's `bind`): connecting from it is
    /// impossible, and from another one would send from the wrong address.
    SourceFamily(IpAddr),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::OwnListener => "it is one of relay-out's own listeners",
            Skip::Local => "it is a local address (set local_mx_ok=true to allow)",
            Skip::Ipv6Disabled => "IPv6 is off (ipv6_enabled=false)",
            Skip::Ipv6Unconfirmed => {
                "our IPv6 source address has no forward-confirmed PTR (see the startup warning; outbound.ini inet_prefer=v6 overrides)"
            }
            Skip::SourceFamily(source) => {
                return write!(
                    f,
                    "mail to it cannot be sent from {source} (local_address/bind)"
                );
            }
        })
    }
}

/// outbound.ini's rules about which resolved addresses to use and in which
/// order, plus the listen addresses that must never be delivered to.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    pub local_mx_ok: bool,
    pub ipv6_enabled: bool,
    pub inet_prefer: InetPrefer,
    /// What the source self-check decided about IPv6.
    pub family: Arc<FamilyChoice>,
    /// Our own listeners (smtp.ini `listen`).
    pub listeners: Vec<SocketAddr>,
    /// The port we deliver to (`remote_port`).
    pub remote_port: u16,
    /// outbound.ini `local_address`: MX addresses of the other family are
    /// not used.
    pub local_address: Option<IpAddr>,
}

impl AddressPolicy {
    /// Whether (and why) the MX address `ip` must not be connected to.
    pub fn skip(&self, ip: IpAddr) -> Option<Skip> {
        let ip = ip.to_canonical();
        if self.is_own_listener(ip, self.remote_port) {
            return Some(Skip::OwnListener);
        }
        let ours = self
            .listeners
            .iter()
            .any(|listener| listener.ip().to_canonical() == ip);
        if !self.local_mx_ok && (is_local(ip) || ours) {
            return Some(Skip::Local);
        }
        if let Some(skip) = self.ipv6_skip(ip) {
            return Some(skip);
        }
        source_family(ip, self.local_address)
    }

    /// Whether (and why) a route's next hop at `ip` must not be connected
    /// to. Routes are configured on purpose, so local addresses are fine
    /// (an LMTP server on this host), except our own listener on that
    /// port; `ipv6_enabled` applies only to addresses found in the DNS.
    pub fn skip_hop(
        &self,
        ip: IpAddr,
        port: u16,
        source: Option<IpAddr>,
        from_dns: bool,
    ) -> Option<Skip> {
        let ip = ip.to_canonical();
        if self.is_own_listener(ip, port) {
            return Some(Skip::OwnListener);
        }
        if from_dns && let Some(skip) = self.ipv6_skip(ip) {
            return Some(skip);
        }
        source_family(ip, source)
    }

    /// Whether an IPv6 address found in the DNS is left out: IPv6 is off,
    /// or our IPv6 source failed the self-check.
    fn ipv6_skip(&self, ip: IpAddr) -> Option<Skip> {
        if !ip.is_ipv6() {
            None
        } else if !self.ipv6_enabled {
            Some(Skip::Ipv6Disabled)
        } else if self.family.ipv6_refused() {
            Some(Skip::Ipv6Unconfirmed)
        } else {
            None
        }
    }

    fn is_own_listener(&self, ip: IpAddr, port: u16) -> bool {
        self.listeners.iter().any(|listener| {
            listener.port() == port
                && (listener.ip().to_canonical() == ip
                    || (listener.ip().is_unspecified() && is_local(ip)))
        })
    }

    /// The usable addresses of one host in connection order: the resolver's
    /// order (IPv6 first, as Haraka) unless `inet_prefer` moves one family
    /// ahead. Unlike Haraka this stays within the host, so MX preference is
    /// never overridden by address family.
    pub fn usable(&self, host: &str, addresses: &[IpAddr]) -> Vec<IpAddr> {
        self.usable_by(host, addresses, |ip| self.skip(ip))
    }

    /// [`Self::usable`] with the given rule for skipping an address.
    pub fn usable_by(
        &self,
        host: &str,
        addresses: &[IpAddr],
        skip: impl Fn(IpAddr) -> Option<Skip>,
    ) -> Vec<IpAddr> {
        let mut usable: Vec<IpAddr> = Vec::with_capacity(addresses.len());
        for &ip in addresses {
            match skip(ip) {
                Some(reason) => debug!(host, %ip, "not delivering to this address: {reason}"),
                None => usable.push(ip.to_canonical()),
            }
        }
        match self.inet_prefer {
            InetPrefer::Default => {}
            InetPrefer::V4 => usable.sort_by_key(|ip| ip.is_ipv6()),
            InetPrefer::V6 => usable.sort_by_key(|ip| ip.is_ipv4()),
        }
        usable
    }
}

/// An address `source` cannot connect to.
fn source_family(ip: IpAddr, source: Option<IpAddr>) -> Option<Skip> {
    let source = source?.to_canonical();
    (source.is_ipv4() != ip.is_ipv4()).then_some(Skip::SourceFamily(source))
}

/// Loopback, unspecified and link-local addresses: they can only mean this
/// host (or its link), never a remote MX. RFC 1918 addresses are not local
/// (Haraka agrees): split-horizon setups deliver to them on purpose.
fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// MX records in the order to try: by preference, hosts of equal preference
/// shuffled (RFC 5321 §5.1) so load spreads over them.
pub fn order_mx(mut records: Vec<MxRecord>, rng: &mut impl Rng) -> Vec<MxRecord> {
    records.sort_by_key(|record| record.preference);
    let mut start = 0;
    while start < records.len() {
        let preference = records[start].preference;
        let end = records[start..]
            .iter()
            .position(|record| record.preference != preference)
            .map_or(records.len(), |offset| start + offset);
        records[start..end].shuffle(rng);
        start = end;
    }
    records
}

/// Every MX address to try for `destination`, in order, or why there is
/// none; each is reached through `connector` on `remote_port`.
pub async fn resolve(
    dns: &Dns,
    destination: &Destination,
    policy: &AddressPolicy,
    connector: &Arc<Connector>,
) -> Result<Vec<Candidate>, ResolveFailure> {
    let candidate = |host: String, ip: IpAddr| Candidate {
        host,
        ip,
        port: policy.remote_port,
        connector: Arc::clone(connector),
    };
    let domain = match destination {
        Destination::Literal(ip) => {
            let host = destination.to_string();
            return match policy.skip(*ip) {
                Some(reason) => Err(unusable(&host, reason)),
                None => Ok(vec![candidate(host, *ip)]),
            };
        }
        Destination::Domain(domain) => domain,
    };
    let (hosts, implicit) = match dns.mx(domain).await {
        Ok(MxAnswer::Records(records)) => (order_mx(records, &mut rand::rng()), false),
        Ok(MxAnswer::NoRecords) => (
            vec![MxRecord {
                preference: 0,
                exchange: domain.clone(),
            }],
            true,
        ),
        Ok(MxAnswer::NullMx) => {
            return Err(ResolveFailure::permanent(
                "5.1.10",
                format!("Domain {domain} sends and receives no email (null MX, RFC 7505)"),
            ));
        }
        Err(error) => return Err(dns_failure(domain, &error, "MX")),
    };

    let mut candidates = Vec::new();
    let mut skipped = None;
    let mut lookup_errors = Vec::new();
    for host in &hosts {
        match dns.addresses(&host.exchange).await {
            Ok(addresses) => {
                if let Some(reason) = addresses.iter().find_map(|ip| policy.skip(*ip)) {
                    skipped.get_or_insert((host.exchange.clone(), reason));
                }
                candidates.extend(
                    policy
                        .usable(&host.exchange, &addresses)
                        .into_iter()
                        .map(|ip| candidate(host.exchange.clone(), ip)),
                );
            }
            Err(error) => {
                debug!(domain, mx = %host.exchange, %error, "MX host does not resolve");
                lookup_errors.push(error);
            }
        }
    }
    if !candidates.is_empty() {
        return Ok(candidates);
    }
    if let Some((host, reason)) = skipped {
        return Err(unusable(&host, reason));
    }
    if implicit {
        // No MX and no address: RFC 5321 §5.1 says there is nowhere to
        // deliver; only a lookup that failed temporarily may change that.
        return match lookup_errors.into_iter().next() {
            Some(error @ DnsError::Temporary { .. }) => Err(dns_failure(domain, &error, "A/AAAA")),
            _ => Err(ResolveFailure::permanent(
                "5.1.2",
                format!("Nowhere to deliver mail to for domain {domain}: no MX, A or AAAA record"),
            )),
        };
    }
    // Explicit MX hosts that do not resolve may be a passing DNS problem of
    // the domain's owner: retry until the queue lifetime runs out.
    Err(ResolveFailure::temporary(
        "4.4.4",
        format!("None of the MX hosts of {domain} has an address"),
    ))
}

fn unusable(host: &str, reason: Skip) -> ResolveFailure {
    match reason {
        Skip::OwnListener | Skip::Local => ResolveFailure::permanent(
            "5.4.6",
            format!("Mail for {host} loops back to myself: not delivering to it because {reason}"),
        ),
        Skip::Ipv6Disabled | Skip::Ipv6Unconfirmed => ResolveFailure::temporary(
            "4.4.4",
            format!("{host} has only IPv6 addresses and {reason}"),
        ),
        Skip::SourceFamily(_) => {
            ResolveFailure::temporary("4.4.4", format!("No usable address for {host}: {reason}"))
        }
    }
}

fn dns_failure(domain: &str, error: &DnsError, kind: &str) -> ResolveFailure {
    match error {
        DnsError::NxDomain { .. } => ResolveFailure::permanent(
            "5.1.2",
            format!("Domain {domain} does not exist (NXDOMAIN)"),
        ),
        DnsError::InvalidName { .. } => {
            ResolveFailure::permanent("5.1.2", format!("Invalid domain {domain}: {error}"))
        }
        DnsError::Temporary { .. } | DnsError::SystemConfig { .. } => ResolveFailure::temporary(
            "4.4.3",
            format!("DNS lookup failure ({kind}) for {domain}: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests;
