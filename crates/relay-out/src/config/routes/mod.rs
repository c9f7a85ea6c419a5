//! Routes: fixed next hops per destination domain instead of its MX hosts
//! (Haraka's `get_mx` answers, haraka-behaviour.md §6 and §7.4).
//!
//! Two files say where mail goes:
//!
//! - relay_dest_domains.ini, Haraka's: `[domains] example.com = {"action":
//!   "accept", "nexthop": "10.0.0.5:2525"}`, and the `any` key for every
//!   other domain; read only when relay.ini `force_routing` is on (its
//!   default). `nexthop` is what Haraka's `get_mx` accepts: a string
//!   (`host`, `host:port`, `[v6]:port`, `smtp://user:pass@host:port`,
//!   `lmtp://host:port`), an MX object (`exchange`, `port`, `priority`,
//!   `bind`, `using_lmtp`, `auth_user`, `auth_pass`, `auth_type`) or a list
//!   of them. See [`nexthop`].
//! - outbound_routes.ini, Postern's, for what a `nexthop` cannot say:
//!   required and verified STARTTLS. One section per domain, `[*]` for the
//!   default route (a smart host for all mail). See [`postern`].
//!
//! A domain routed in both files, or a default route in both, is a startup
//! error: which one wins would be a guess. Routes match the recipient's
//! domain exactly (after lower-casing and IDNA), as Haraka's do; the default
//! route takes every other domain and address literals too.

mod nexthop;
pub(crate) use nexthop::percent_decode;
mod postern;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use smtp_core::client::Credentials;
use smtp_core::config::domains::normalize_domain;
use smtp_core::config::endpoint::SMTP_PORT;
use smtp_core::config::{ConfigDir, ConfigError, IniDocument, files};

use super::local_address::ensure_local;
use super::outbound::OutboundSettings;
use super::relay::RelayPolicy;

/// The port of an LMTP route host written without one (Haraka's default
/// for a `get_mx` answer with `using_lmtp`); an SMTP one gets [`SMTP_PORT`].
pub const LMTP_PORT: u16 = 24;

/// Submissions port with implicit TLS (RFC 8314), which the client cannot
/// speak: a route to it is most likely a mistake.
const IMPLICIT_TLS_PORT: u16 = 465;

/// relay_dest_domains.ini's key for the default route.
const HARAKA_DEFAULT_KEY: &str = "any";

/// Every route, looked up per destination domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    by_domain: BTreeMap<String, Route>,
    default: Option<Route>,
}

/// Where one destination's mail goes instead of its MX hosts: hosts tried
/// in order, each with how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Where it was configured (`outbound_routes.ini [example.com]`), for
    /// logs and `--check`.
    pub origin: String,
    pub hops: Vec<Hop>,
}

/// One next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: HopHost,
    pub port: u16,
    /// Shared by the hops configured together (one section, one MX object).
    pub settings: Arc<HopSettings>,
}

/// A next hop's address as written: a name resolved at delivery time (so a
/// provider may change its addresses), or an address used as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopHost {
    /// Lower-case A-label form without a trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for HopHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HopHost::Name(name) => f.write_str(name),
            HopHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// How to talk to a next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSettings {
    pub tls: RouteTls,
    /// AUTH credentials; when set, mail is never sent without AUTH.
    pub auth: Option<Credentials>,
    /// LMTP (RFC 2033) instead of SMTP (Haraka's `using_lmtp`).
    pub lmtp: bool,
    /// Source address (Haraka's `bind`); else outbound.ini `local_address`.
    pub bind: Option<IpAddr>,
}

/// STARTTLS with a route's hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTls {
    Off,
    /// When offered, any certificate (as outbound.ini `enable_tls`).
    Opportunistic,
    /// Always, with the certificate verified for the host name as written
    /// in the route: against the system's CAs, or only those in `ca_file`.
    Required {
        ca_file: Option<PathBuf>,
    },
}

impl RouteTable {
    /// The smart host, if there is one.
    pub fn default_route(&self) -> Option<&Route> {
        self.default.as_ref()
    }

    /// Domain routes in name order.
    pub fn domains(&self) -> impl Iterator<Item = (&str, &Route)> {
        self.by_domain
            .iter()
            .map(|(domain, route)| (domain.as_str(), route))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty() && self.default.is_none()
    }

    fn insert(&mut self, key: RouteKey, route: Route) -> Result<(), Box<Route>> {
        let slot = match key {
            RouteKey::Default => &mut self.default,
            RouteKey::Domain(domain) => {
                if let Some(existing) = self.by_domain.get(&domain) {
                    return Err(Box::new(existing.clone()));
                }
                self.by_domain.insert(domain, route);
                return Ok(());
            }
        };
        match slot {
            Some(existing) => Err(Box::new(existing.clone())),
            None => {
                *slot = Some(route);
                Ok(())
            }
        }
    }
}

/// Which mail a configured route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RouteKey {
    Domain(String),
    Default,
}

impl RouteKey {
    /// A section name or relay_dest_domains.ini key as a route key;
    /// `default_word` is the file's name for the default route.
    fn parse(text: &str, default_word: &str) -> Result<Self, String> {
        if text == default_word {
            return Ok(RouteKey::Default);
        }
        normalize_domain(text)
            .map(RouteKey::Domain)
            .map_err(|form| format!("{form}, or {default_word} for every other domain"))
    }
}

/// Reads both route files (see the module docs). Local `bind` addresses
/// are checked against the host's interfaces.
pub fn load(
    dir: &ConfigDir,
    relay: &RelayPolicy,
    dest_domains: Option<&(PathBuf, IniDocument)>,
    outbound: &OutboundSettings,
) -> Result<RouteTable, ConfigError> {
    let default_tls = if outbound.enable_tls {
        RouteTls::Opportunistic
    } else {
        RouteTls::Off
    };
    let mut configured = Vec::new();
    if let Some((path, document)) = dir.ini_document(files::OUTBOUND_ROUTES_INI)? {
        let routes = postern::routes(dir, &path, &document, &default_tls)?;
        configured.extend(routes.into_iter().map(|route| (path.clone(), route)));
    }
    if let Some((path, document)) = dest_domains {
        let routes = nexthop::routes(path, document, &default_tls)?;
        if relay.force_routing {
            configured.extend(routes.into_iter().map(|route| (path.clone(), route)));
        } else if !routes.is_empty() {
            dir.warn(format!(
                "{}: nexthop routes are ignored because {} [relay] force_routing=false",
                path.display(),
                files::RELAY_INI
            ));
        }
    }
    let mut table = RouteTable::default();
    for (path, (key, route)) in configured {
        let clear_text_auth = route.hops.iter().any(|hop| {
            hop.settings.auth.is_some() && !matches!(hop.settings.tls, RouteTls::Required { .. })
        });
        if route.hops.iter().any(|hop| hop.port == IMPLICIT_TLS_PORT) {
            dir.warn(format!(
                "{}: port {IMPLICIT_TLS_PORT} expects TLS from the first byte, which relay-out does not speak to next hops (as Haraka's outbound does not); use the provider's STARTTLS port (587) with tls = required",
                route.origin
            ));
        }
        if clear_text_auth {
            dir.warn(format!(
                "{}: AUTH without tls = required: the password crosses the network in clear text if a host does not offer STARTTLS (outbound_routes.ini can require it)",
                route.origin
            ));
        }
        let origin = route.origin.clone();
        if let Err(existing) = table.insert(key, route) {
            return Err(ConfigError::Inconsistent {
                path,
                problem: format!(
                    "{origin} routes the same mail as {}; keep one of them",
                    existing.origin
                ),
            });
        }
    }
    Ok(table)
}

/// Checks a hop's `bind` address: it must be one of this host's (a wrong
/// address is a startup error, not a failure at every delivery), and of
/// the family of the hop's literal address, if it has one. The error is
/// the detail for a [`ConfigError::BadValue`].
fn check_bind(bind: IpAddr, hosts: &[(HopHost, Option<u16>)]) -> Result<(), String> {
    ensure_local(bind).map_err(|detail| format!("'{bind}': {detail}"))?;
    for (host, _) in hosts {
        if let HopHost::Ip(ip) = host
            && ip.is_ipv4() != bind.is_ipv4()
        {
            return Err(format!(
                "'{bind}': cannot connect from it to {ip} (another address family)"
            ));
        }
    }
    Ok(())
}

/// Parses one next-hop address the way Haraka's `HarakaMx` reads a string:
/// `[host]` or `[host]:port`, a bare IPv6 address, or a name or IPv4
/// address with an optional `:port`. Unlike Haraka a bad port is an error,
/// not silently part of the host name.
pub fn parse_hop_address(text: &str) -> Result<(HopHost, Option<u16>), String> {
    let form =
        "a host such as smtp.example.com, smtp.example.com:587, 192.0.2.1:25 or [2001:db8::1]:25";
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(|| form.to_owned())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| form.to_owned())?),
        };
        (inner, port)
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        (text, None)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| format!("{form} (the port must be 1-65535)"))
        })
        .transpose()?;
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => HopHost::Ip(ip),
        Err(_) => HopHost::Name(normalize_domain(host).map_err(|_| form.to_owned())?),
    };
    Ok((host, port))
}

/// The port a hop uses when none is written.
fn default_port(lmtp: bool) -> u16 {
    if lmtp { LMTP_PORT } else { SMTP_PORT }
}
