//! The self-check of relay-out's own source addresses: for each address
//! family, the address mail leaves from (outbound.ini `local_address`, else
//! the one the kernel picks) must have a PTR record whose name resolves back
//! to it (forward-confirmed reverse DNS), or most big receivers refuse the
//! mail. IPv6 addresses on a VPS often have no PTR while IPv4 has one, so an
//! IPv6 source that fails the check makes delivery use IPv4 only (Haraka
//! 3.x's `inet_prefer`, but decided from facts); `inet_prefer=v4|v6` in
//! outbound.ini overrides that. An IPv4 source that fails is logged at error
//! level: there is nothing to fall back to. A route's own `bind` address is
//! checked too, and only warned about (its next hop may not care).
//!
//! The check runs before the first delivery and every
//! [`RECHECK_INTERVAL`]; a change is logged once. `relay-out --check
//! --probe` prints the same findings.
//!
//! Finding the kernel's source sends no packet: a UDP socket `connect()`ed
//! to a public address of the family only asks the routing table. Tests run
//! where no public address is routed, so [`PROBE_V4_ENV`] and
//! [`PROBE_V6_ENV`] (`POSTERN_SOURCE_PROBE_V4`/`_V6`) replace the public
//! address (e.g. with 127.0.0.1 and ::1); they are meant for tests only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use smtp_core::dns::Dns;
use smtp_protocol::session::ClientName;
use tracing::{error, info, warn};

use crate::config::{InetPrefer, RelayOutSettings};

/// For tests only: the address whose route gives the IPv4 source.
pub const PROBE_V4_ENV: &str = "POSTERN_SOURCE_PROBE_V4";
/// For tests only: the address whose route gives the IPv6 source.
pub const PROBE_V6_ENV: &str = "POSTERN_SOURCE_PROBE_V6";
/// a.root-servers.net: routed wherever the internet is; no packet is sent
/// to it, the kernel is only asked which source it would use.
const PUBLIC_V4: Ipv4Addr = Ipv4Addr::new(198, 41, 0, 4);
const PUBLIC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0x503, 0xba3e, 0, 0, 0, 2, 0x30);
/// PTR records change rarely (a ticket at the VPS provider); once a day
/// notices the fix without a restart.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// After a DNS failure the previous choice stays; the check is repeated
/// sooner than a day so a passing outage does not leave it stale.
const RECHECK_AFTER_TEMPORARY: Duration = Duration::from_secs(15 * 60);

/// An address family, named as in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        if ip.to_canonical().is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn forward_type(self) -> &'static str {
        match self {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        }
    }
}

/// What the check found for one family: kept whole so that a change can be
/// logged once and `--check --probe` can print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The family is not used for delivery, so there is nothing to check.
    NotUsed(&'static str),
    /// The kernel has no route to the internet over this family.
    NoSource(String),
    Confirmed {
        source: IpAddr,
        name: String,
    },
    NoPtr {
        source: IpAddr,
    },
    Mismatch {
        source: IpAddr,
        name: String,
    },
    /// The DNS did not answer: the previous choice stands.
    Temporary {
        source: IpAddr,
    },
}

impl Finding {
    /// The source has no forward-confirmed name (a fact, not a DNS outage).
    fn failed(&self) -> bool {
        matches!(
            self,
            Finding::NoSource(_) | Finding::NoPtr { .. } | Finding::Mismatch { .. }
        )
    }
}

/// How loud a finding is; also whether `--check --probe` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// The family decision that [`super::mx::AddressPolicy`] reads on every
/// resolution and the check task updates.
#[derive(Debug, Default)]
pub struct FamilyChoice {
    ipv6_refused: AtomicBool,
}

impl FamilyChoice {
    /// Whether IPv6 addresses are left out because the IPv6 source failed
    /// the check (and `inet_prefer` does not override it).
    pub fn ipv6_refused(&self) -> bool {
        self.ipv6_refused.load(Ordering::Relaxed)
    }

    pub(super) fn set_ipv6_refused(&self, refused: bool) {
        self.ipv6_refused.store(refused, Ordering::Relaxed);
    }
}

/// What one finding is about: the source of MX delivery for a family, or
/// a route's own `bind` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Mx(Family),
    RouteBind(IpAddr),
}

/// The check's inputs and the choice it updates; built from outbound.ini
/// and the routes.
#[derive(Debug, Clone)]
pub struct SourceCheck {
    dns: Dns,
    local_address: Option<IpAddr>,
    ipv6_enabled: bool,
    inet_prefer: InetPrefer,
    /// Routes' `bind` addresses other than `local_address`, each once.
    route_binds: Vec<IpAddr>,
    choice: Arc<FamilyChoice>,
}

impl SourceCheck {
    /// The check of `settings`' sources, whose verdict goes to `choice`.
    pub fn new(dns: Dns, settings: &RelayOutSettings, choice: Arc<FamilyChoice>) -> Self {
        let outbound = &settings.outbound;
        let routes = &settings.routes;
        let local_address = outbound.local_address.map(|ip| ip.to_canonical());
        let mut route_binds: Vec<IpAddr> = Vec::new();
        for route in routes
            .domains()
            .map(|(_, route)| route)
            .chain(routes.default_route())
        {
            for bind in route.hops.iter().filter_map(|hop| hop.settings.bind) {
                let bind = bind.to_canonical();
                if Some(bind) != local_address && !route_binds.contains(&bind) {
                    route_binds.push(bind);
                }
            }
        }
        SourceCheck {
            dns,
            local_address,
            ipv6_enabled: outbound.ipv6_enabled,
            inet_prefer: outbound.inet_prefer,
            route_binds,
            choice,
        }
    }

    /// Every finding: IPv4, IPv6, then each route's `bind`.
    pub async fn findings(&self) -> Vec<(Checked, Finding)> {
        let mut findings = Vec::with_capacity(2 + self.route_binds.len());
        for family in [Family::V4, Family::V6] {
            findings.push((Checked::Mx(family), self.check(family).await));
        }
        for &bind in &self.route_binds {
            findings.push((Checked::RouteBind(bind), self.confirm(bind).await));
        }
        findings
    }

    async fn check(&self, family: Family) -> Finding {
        if let Some(local) = self.local_address
            && Family::of(local) != family
        {
            return Finding::NotUsed("local_address is of the other family");
        }
        if family == Family::V6 && !self.ipv6_enabled {
            return Finding::NotUsed("ipv6_enabled=false");
        }
        let source = match self.local_address {
            Some(local) => local,
            None => match kernel_source(family) {
                Ok(source) => source,
                Err(reason) => return Finding::NoSource(reason),
            },
        };
        self.confirm(source).await
    }

    async fn confirm(&self, source: IpAddr) -> Finding {
        match self.dns.forward_confirmed_name(source).await {
            ClientName::Verified(name) => Finding::Confirmed { source, name },
            ClientName::Unverified(name) => Finding::Mismatch { source, name },
            ClientName::Unavailable => Finding::NoPtr { source },
            ClientName::TempUnavailable => Finding::Temporary { source },
        }
    }

    /// Checks both families, updates the choice and logs what changed
    /// since `previous`; answers when to check again.
    async fn run_once(&self, previous: &mut Vec<Option<Finding>>) -> Duration {
        let mut next = RECHECK_INTERVAL;
        let findings = self.findings().await;
        previous.resize(findings.len(), None);
        for (index, (checked, finding)) in findings.into_iter().enumerate() {
            let temporary = matches!(finding, Finding::Temporary { .. });
            if temporary {
                next = RECHECK_AFTER_TEMPORARY;
            }
            if checked == Checked::Mx(Family::V6) && !temporary {
                self.choice
                    .set_ipv6_refused(self.inet_prefer == InetPrefer::Default && finding.failed());
            }
            if previous[index].as_ref() != Some(&finding) {
                let (severity, text) = explain(checked, &finding, self.inet_prefer);
                match severity {
                    Severity::Info => info!("{text}"),
                    Severity::Warning => warn!("{text}"),
                    Severity::Error => error!("{text}"),
                }
                previous[index] = Some(finding);
            }
        }
        next
    }

    /// The first check; then the task that repeats it while relay-out runs.
    pub async fn start(self) -> tokio::task::JoinHandle<()> {
        let mut previous = Vec::new();
        let mut next = self.run_once(&mut previous).await;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(next).await;
                next = self.run_once(&mut previous).await;
            }
        })
    }
}

/// The address the kernel would send from to the internet over `family`,
/// found without sending anything.
fn kernel_source(family: Family) -> Result<IpAddr, String> {
    let (env, public): (&str, IpAddr) = match family {
        Family::V4 => (PROBE_V4_ENV, PUBLIC_V4.into()),
        Family::V6 => (PROBE_V6_ENV, PUBLIC_V6.into()),
    };
    let target = match std::env::var(env) {
        Ok(text) => text
            .trim()
            .parse::<IpAddr>()
            .ok()
            .filter(|ip| Family::of(*ip) == family)
            .ok_or_else(|| format!("{env}={text} is not an {family} address"))?,
        Err(_) => public,
    };
    source_towards(target)
}

/// The source of a route to `target`: a connected UDP socket's address
/// (connecting a UDP socket sends nothing).
fn source_towards(target: IpAddr) -> Result<IpAddr, String> {
    let family = Family::of(target);
    let unspecified: IpAddr = match family {
        Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
        Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0))
        .map_err(|error| format!("no {family} socket: {error}"))?;
    socket
        .connect(SocketAddr::new(target, 53))
        .map_err(|error| format!("no {family} route to {target}: {error}"))?;
    socket
        .local_addr()
        .map(|addr| addr.ip().to_canonical())
        .map_err(|error| format!("no {family} source address: {error}"))
}

/// A finding in an administrator's words, with the fix.
pub fn explain(checked: Checked, finding: &Finding, inet_prefer: InetPrefer) -> (Severity, String) {
    let family = match checked {
        Checked::Mx(family) => family,
        Checked::RouteBind(bind) => return explain_bind(bind, finding),
    };
    let overridden = match inet_prefer {
        InetPrefer::Default => None,
        InetPrefer::V4 => Some("v4"),
        InetPrefer::V6 => Some("v6"),
    };
    let consequence = match (family, overridden) {
        (Family::V4, _) => {
            return match finding {
                Finding::NotUsed(why) => {
                    (Severity::Info, format!("IPv4 source not checked: {why}"))
                }
                // Not an error: a relay on an internal network may reach
                // only its routes' next hops.
                Finding::NoSource(reason) => (
                    Severity::Warning,
                    format!(
                        "IPv4 source self-check: {reason}; only routes' next hops can be reached over IPv4"
                    ),
                ),
                Finding::Confirmed { source, name } => (
                    Severity::Info,
                    format!("IPv4 source {source} has forward-confirmed reverse DNS: {name}"),
                ),
                Finding::Temporary { source } => (
                    Severity::Warning,
                    format!(
                        "IPv4 source {source}: reverse DNS could not be checked now (DNS failure); checking again later"
                    ),
                ),
                failed => (
                    Severity::Error,
                    format!(
                        "IPv4 source {}; most big receivers refuse mail from it. Fix: set its PTR (reverse DNS) at your VPS or network provider to this host's name, with an A record of that name pointing back to it",
                        describe_failure(Family::V4, failed)
                    ),
                ),
            };
        }
        (Family::V6, None) => {
            "delivering over IPv4 only (outbound.ini inet_prefer=v6 would use IPv6 anyway)"
        }
        (Family::V6, Some("v6")) => {
            "IPv6 is still used first because outbound.ini sets inet_prefer=v6"
        }
        (Family::V6, Some(_)) => {
            "IPv4 is used first (outbound.ini inet_prefer=v4), IPv6 only after it"
        }
    };
    match finding {
        Finding::NotUsed(why) => (Severity::Info, format!("IPv6 source not checked: {why}")),
        Finding::NoSource(reason) => (
            Severity::Info,
            format!("IPv6 source self-check: {reason}; {consequence}"),
        ),
        Finding::Confirmed { source, name } => (
            Severity::Info,
            format!("IPv6 source {source} has forward-confirmed reverse DNS: {name}; IPv6 is used"),
        ),
        Finding::Temporary { source } => (
            Severity::Warning,
            format!(
                "IPv6 source {source}: reverse DNS could not be checked now (DNS failure); the previous choice stands, checking again later"
            ),
        ),
        failed => (
            Severity::Warning,
            format!(
                "IPv6 source {}: {consequence}. Fix: set its PTR (reverse DNS) at your VPS provider to this host's name, with an AAAA record of that name pointing back to it",
                describe_failure(Family::V6, failed)
            ),
        ),
    }
}

/// A route's `bind` address: only logged, since its next hop (a smart host
/// that authenticates us, an internal server) may not care.
fn explain_bind(bind: IpAddr, finding: &Finding) -> (Severity, String) {
    match finding {
        Finding::Confirmed { name, .. } => (
            Severity::Info,
            format!("route source {bind} (bind) has forward-confirmed reverse DNS: {name}"),
        ),
        Finding::NoPtr { .. } | Finding::Mismatch { .. } => (
            Severity::Warning,
            format!(
                "route source (bind) {}: a next hop that checks reverse DNS refuses mail from it. Fix: set its PTR to this host's name, with an {} record pointing back to it",
                describe_failure(Family::of(bind), finding),
                Family::of(bind).forward_type()
            ),
        ),
        other => (
            Severity::Warning,
            format!("route source {bind} (bind): reverse DNS could not be checked now ({other:?})"),
        ),
    }
}

fn describe_failure(family: Family, finding: &Finding) -> String {
    match finding {
        Finding::NoPtr { source } => format!("{source} has no PTR record"),
        Finding::Mismatch { source, name } => format!(
            "{source} has the PTR {name}, but {name} has no {} record for {source}",
            family.forward_type()
        ),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_target_gives_a_loopback_source() {
        assert_eq!(
            source_towards(Ipv4Addr::LOCALHOST.into()),
            Ok(IpAddr::from(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn an_ipv6_source_without_ptr_is_a_warning_naming_the_address() {
        let source: IpAddr = "2001:db8::25".parse().expect("ip");
        let (severity, text) = explain(
            Checked::Mx(Family::V6),
            &Finding::NoPtr { source },
            InetPrefer::Default,
        );
        assert_eq!(severity, Severity::Warning);
        assert!(text.contains("2001:db8::25 has no PTR record"), "{text}");
        assert!(text.contains("IPv4 only"), "{text}");
    }

    #[test]
    fn a_failing_ipv4_source_is_an_error() {
        let source: IpAddr = "192.0.2.25".parse().expect("ip");
        let (severity, text) = explain(
            Checked::Mx(Family::V4),
            &Finding::Mismatch {
                source,
                name: "mail.example".into(),
            },
            InetPrefer::Default,
        );
        assert_eq!(severity, Severity::Error);
        assert!(text.contains("no A record for 192.0.2.25"), "{text}");
    }
}
