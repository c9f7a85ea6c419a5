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
pub struct RouteFailure {
    pub permanent: bool,
    /// RFC 3463 status.
    pub status: &'static str,
    pub text: String,
}

impl RouteFailure {
    pub(super) fn permanent(status: &'static str, text: String) -> Self {
        RouteFailure {
            permanent: true,
            status,
            text,
        }
    }

    pub(super) fn temporary(status: &'static str, text: String) -> Self {
        RouteFailure {
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
        if ip.is_ipv6() && !self.ipv6_enabled {
            return Some(Skip::Ipv6Disabled);
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
        if from_dns && ip.is_ipv6() && !self.ipv6_enabled {
            return Some(Skip::Ipv6Disabled);
        }
        source_family(ip, source)
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
) -> Result<Vec<Candidate>, RouteFailure> {
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
            return Err(RouteFailure::permanent(
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
            _ => Err(RouteFailure::permanent(
                "5.1.2",
                format!("Nowhere to deliver mail to for domain {domain}: no MX, A or AAAA record"),
            )),
        };
    }
    // Explicit MX hosts that do not resolve may be a passing DNS problem of
    // the domain's owner: retry until the queue lifetime runs out.
    Err(RouteFailure::temporary(
        "4.4.4",
        format!("None of the MX hosts of {domain} has an address"),
    ))
}

fn unusable(host: &str, reason: Skip) -> RouteFailure {
    match reason {
        Skip::OwnListener | Skip::Local => RouteFailure::permanent(
            "5.4.6",
            format!("Mail for {host} loops back to myself: not delivering to it because {reason}"),
        ),
        Skip::Ipv6Disabled => RouteFailure::temporary(
            "4.4.4",
            format!("{host} has only IPv6 addresses and {reason}"),
        ),
        Skip::SourceFamily(_) => {
            RouteFailure::temporary("4.4.4", format!("No usable address for {host}: {reason}"))
        }
    }
}

fn dns_failure(domain: &str, error: &DnsError, kind: &str) -> RouteFailure {
    match error {
        DnsError::NxDomain { .. } => RouteFailure::permanent(
            "5.1.2",
            format!("Domain {domain} does not exist (NXDOMAIN)"),
        ),
        DnsError::InvalidName { .. } => {
            RouteFailure::permanent("5.1.2", format!("Invalid domain {domain}: {error}"))
        }
        DnsError::Temporary { .. } | DnsError::SystemConfig { .. } => RouteFailure::temporary(
            "4.4.3",
            format!("DNS lookup failure ({kind}) for {domain}: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(local_mx_ok: bool, ipv6_enabled: bool, inet_prefer: InetPrefer) -> AddressPolicy {
        AddressPolicy {
            local_mx_ok,
            ipv6_enabled,
            inet_prefer,
            listeners: vec![
                "10.0.0.1:2526".parse().unwrap(),
                "127.0.0.1:2525".parse().unwrap(),
                "[::]:25".parse().unwrap(),
            ],
            remote_port: 2525,
            local_address: None,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn skipped_addresses() {
        let strict = policy(false, false, InetPrefer::Default);
        let lenient = policy(true, true, InetPrefer::Default);
        let cases = [
            (
                "127.0.0.1",
                Some(Skip::OwnListener),
                Some(Skip::OwnListener),
            ),
            (
                "::ffff:127.0.0.1",
                Some(Skip::OwnListener),
                Some(Skip::OwnListener),
            ),
            ("127.0.0.2", Some(Skip::Local), None),
            ("::1", Some(Skip::Local), None),
            ("169.254.1.1", Some(Skip::Local), None),
            ("fe80::1", Some(Skip::Local), None),
            ("0.0.0.0", Some(Skip::Local), None),
            ("10.0.0.1", Some(Skip::Local), None),
            ("10.0.0.9", None, None),
            ("192.168.1.1", None, None),
            ("203.0.113.5", None, None),
            ("2001:db8::1", Some(Skip::Ipv6Disabled), None),
        ];
        for (address, strictly, leniently) in cases {
            assert_eq!(strict.skip(ip(address)), strictly, "{address} strict");
            assert_eq!(lenient.skip(ip(address)), leniently, "{address} lenient");
        }
    }

    #[test]
    fn route_hops_may_be_local_but_never_our_own_listener() {
        let strict = policy(false, false, InetPrefer::Default);
        let v4 = Some(ip("127.0.0.3"));
        let cases = [
            // (address, port, source, from DNS, expected)
            ("127.0.0.1", 2525, None, false, Some(Skip::OwnListener)),
            ("127.0.0.1", 2424, None, false, None),
            ("127.0.0.7", 2525, None, false, None),
            ("10.0.0.1", 2526, None, true, Some(Skip::OwnListener)),
            ("10.0.0.1", 25, None, true, None),
            ("::1", 25, None, false, Some(Skip::OwnListener)),
            ("2001:db8::1", 587, None, false, None),
            ("2001:db8::1", 587, None, true, Some(Skip::Ipv6Disabled)),
            (
                "2001:db8::1",
                587,
                v4,
                false,
                Some(Skip::SourceFamily(ip("127.0.0.3"))),
            ),
            (
                "192.0.2.1",
                587,
                Some(ip("2001:db8::5")),
                false,
                Some(Skip::SourceFamily(ip("2001:db8::5"))),
            ),
            ("192.0.2.1", 587, v4, true, None),
        ];
        for (address, port, source, from_dns, expected) in cases {
            assert_eq!(
                strict.skip_hop(ip(address), port, source, from_dns),
                expected,
                "{address}:{port} from {source:?}"
            );
        }
    }

    #[test]
    fn local_address_keeps_mx_delivery_to_its_family() {
        let mut policy = policy(true, true, InetPrefer::Default);
        policy.local_address = Some(ip("127.0.0.4"));
        assert_eq!(policy.skip(ip("192.0.2.1")), None);
        assert_eq!(
            policy.skip(ip("2001:db8::1")),
            Some(Skip::SourceFamily(ip("127.0.0.4")))
        );
        assert_eq!(
            policy.usable("mx", &[ip("2001:db8::1"), ip("192.0.2.1")]),
            [ip("192.0.2.1")]
        );
    }

    #[test]
    fn a_wildcard_listener_on_the_delivery_port_makes_every_local_address_ours() {
        let mut wildcard = policy(true, true, InetPrefer::Default);
        wildcard.remote_port = 25;
        assert_eq!(wildcard.skip(ip("127.0.0.9")), Some(Skip::OwnListener));
        assert_eq!(wildcard.skip(ip("::1")), Some(Skip::OwnListener));
        assert_eq!(wildcard.skip(ip("203.0.113.5")), None);
    }

    #[test]
    fn address_order_follows_inet_prefer_within_a_host() {
        let addresses = [
            ip("2001:db8::1"),
            ip("192.0.2.1"),
            ip("2001:db8::2"),
            ip("192.0.2.2"),
        ];
        let cases = [
            (
                InetPrefer::Default,
                vec!["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"],
            ),
            (
                InetPrefer::V4,
                vec!["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"],
            ),
            (
                InetPrefer::V6,
                vec!["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"],
            ),
        ];
        for (prefer, expected) in cases {
            let expected: Vec<IpAddr> = expected.into_iter().map(ip).collect();
            assert_eq!(
                policy(true, true, prefer).usable("mx", &addresses),
                expected
            );
        }
        let v4_only = policy(true, false, InetPrefer::V6).usable("mx", &addresses);
        assert_eq!(v4_only, vec![ip("192.0.2.1"), ip("192.0.2.2")]);
    }

    fn mx(preference: u16, exchange: &str) -> MxRecord {
        MxRecord {
            preference,
            exchange: exchange.to_string(),
        }
    }

    #[test]
    fn mx_order_is_by_preference_with_equal_ones_shuffled() {
        let records = vec![
            mx(20, "c"),
            mx(10, "a"),
            mx(10, "b"),
            mx(30, "d"),
            mx(20, "e"),
        ];
        let mut rng = StdRng::seed_from_u64(7);
        let mut first_seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let ordered = order_mx(records.clone(), &mut rng);
            let preferences: Vec<u16> = ordered.iter().map(|r| r.preference).collect();
            assert_eq!(preferences, [10, 10, 20, 20, 30]);
            let mut pair: Vec<&str> = ordered[..2].iter().map(|r| r.exchange.as_str()).collect();
            first_seen.insert(pair[0].to_string());
            pair.sort_unstable();
            assert_eq!(pair, ["a", "b"]);
            assert_eq!(ordered[4].exchange, "d");
        }
        assert_eq!(first_seen.len(), 2, "both equal hosts come first sometimes");
        assert!(order_mx(Vec::new(), &mut rng).is_empty());
    }

    #[test]
    fn dns_failures_bounce_or_defer() {
        let nx = DnsError::NxDomain {
            name: "x.test".into(),
        };
        let temporary = DnsError::Temporary {
            name: "x.test".into(),
            reason: "SERVFAIL".into(),
        };
        let bounce = dns_failure("x.test", &nx, "MX");
        assert!(bounce.permanent && bounce.status == "5.1.2");
        assert!(bounce.text.contains("does not exist"), "{}", bounce.text);
        let defer = dns_failure("x.test", &temporary, "MX");
        assert!(!defer.permanent && defer.status == "4.4.3");
        assert!(defer.text.contains("SERVFAIL"), "{}", defer.text);
    }

    #[test]
    fn destinations_display_like_addresses() {
        assert_eq!(
            Destination::Domain("example.com".into()).to_string(),
            "example.com"
        );
        assert_eq!(
            Destination::Literal(ip("192.0.2.1")).to_string(),
            "[192.0.2.1]"
        );
        assert_eq!(
            Destination::Literal(ip("2001:db8::1")).to_string(),
            "[2001:db8::1]"
        );
    }
}
