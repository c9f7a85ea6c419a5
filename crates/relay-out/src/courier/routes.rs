//! Routes at delivery time: which route (if any) takes a destination, and
//! the addresses of its next hops in order (haraka-behaviour.md §7.4, for
//! what `get_mx` answers).
//!
//! Unlike MX hosts found in the DNS, a route's hops are the operator's
//! choice, so local addresses are allowed (an LMTP server on this host) and
//! a failure to find any address defers the mail rather than bouncing it:
//! a wrong route is the operator's to fix, not the sender's problem.

use std::collections::HashMap;
use std::sync::Arc;

use smtp_core::client::ClientTlsError;
use smtp_core::config::CoreSettings;
use smtp_core::dns::Dns;
use tracing::debug;

use super::connector::Connector;
use super::mx::{AddressPolicy, Candidate, Destination, ResolveFailure, Skip};
use crate::config::{HopHost, HopSettings, OutboundSettings, Route, RouteTable};

/// A configured route with a connector per hop.
#[derive(Debug)]
pub struct RouteHops {
    /// Where it is configured, for logs.
    pub origin: String,
    pub hops: Vec<RouteHop>,
}

/// One next hop of a [`RouteHops`].
#[derive(Debug)]
pub struct RouteHop {
    pub host: HopHost,
    pub port: u16,
    pub connector: Arc<Connector>,
}

/// Every route, ready for delivery.
#[derive(Debug, Default)]
pub struct Routing {
    by_domain: HashMap<String, Arc<RouteHops>>,
    default: Option<Arc<RouteHops>>,
}

impl Routing {
    /// Builds a connector per distinct hop setting (hops configured
    /// together share one).
    pub fn new(
        table: &RouteTable,
        core: &CoreSettings,
        outbound: &OutboundSettings,
    ) -> Result<Self, ClientTlsError> {
        let mut built: Vec<(Arc<HopSettings>, Arc<Connector>)> = Vec::new();
        let mut prepare = |route: &Route| -> Result<Arc<RouteHops>, ClientTlsError> {
            let mut hops = Vec::with_capacity(route.hops.len());
            for hop in &route.hops {
                let existing = built
                    .iter()
                    .find(|(settings, _)| Arc::ptr_eq(settings, &hop.settings))
                    .map(|(_, connector)| Arc::clone(connector));
                let connector = match existing {
                    Some(connector) => connector,
                    None => {
                        let connector =
                            Arc::new(Connector::for_hop(core, outbound, &hop.settings)?);
                        built.push((Arc::clone(&hop.settings), Arc::clone(&connector)));
                        connector
                    }
                };
                hops.push(RouteHop {
                    host: hop.host.clone(),
                    port: hop.port,
                    connector,
                });
            }
            Ok(Arc::new(RouteHops {
                origin: route.origin.clone(),
                hops,
            }))
        };
        let mut by_domain = HashMap::new();
        for (domain, route) in table.domains() {
            by_domain.insert(domain.to_owned(), prepare(route)?);
        }
        let default = table.default_route().map(&mut prepare).transpose()?;
        Ok(Routing { by_domain, default })
    }

    /// The route for `destination`: its domain's, else the default route
    /// (which also takes address literals), else none (MX delivery).
    pub fn for_destination(&self, destination: &Destination) -> Option<&Arc<RouteHops>> {
        let by_domain = match destination {
            Destination::Domain(domain) => self.by_domain.get(domain),
            Destination::Literal(_) => None,
        };
        by_domain.or(self.default.as_ref())
    }
}

/// Every address to try for `route`, in hop order, or why there is none
/// (always temporary, see the module docs).
pub async fn resolve_route(
    dns: &Dns,
    route: &RouteHops,
    policy: &AddressPolicy,
) -> Result<Vec<Candidate>, ResolveFailure> {
    let mut candidates = Vec::new();
    let mut problems = Vec::new();
    for hop in &route.hops {
        let source = hop.connector.source();
        let candidate = |host: &str, ip| Candidate {
            host: host.to_owned(),
            ip,
            port: hop.port,
            connector: Arc::clone(&hop.connector),
        };
        match &hop.host {
            HopHost::Ip(ip) => match policy.skip_hop(*ip, hop.port, source, false) {
                None => candidates.push(candidate(&ip.to_string(), ip.to_canonical())),
                Some(reason) => problems.push(skipped(&hop.host, hop.port, reason)),
            },
            HopHost::Name(name) => match dns.addresses(name).await {
                Ok(addresses) => {
                    let usable = policy.usable_by(name, &addresses, |ip| {
                        policy.skip_hop(ip, hop.port, source, true)
                    });
                    if usable.is_empty() {
                        problems.push(format!("{name} has no usable address"));
                    }
                    candidates.extend(usable.into_iter().map(|ip| candidate(name, ip)));
                }
                Err(error) => {
                    debug!(route = %route.origin, host = %name, %error, "route host does not resolve");
                    problems.push(format!("{name}: {error}"));
                }
            },
        }
    }
    if candidates.is_empty() {
        return Err(ResolveFailure::temporary(
            "4.4.4",
            format!(
                "No next hop of {} can be used ({})",
                route.origin,
                problems.join("; ")
            ),
        ));
    }
    Ok(candidates)
}

fn skipped(host: &HopHost, port: u16, reason: Skip) -> String {
    format!("{host} port {port}: not used because {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RelayOutSettings;
    use smtp_core::config::ConfigDir;

    fn routing(files: &[(&str, &str)]) -> Routing {
        let temp = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(temp.path().join(name), text).expect("write");
        }
        let dir = ConfigDir::open(temp.path())
            .expect("open")
            .with_environment(Vec::<(String, String)>::new());
        let core = CoreSettings::load(&dir).expect("core");
        let settings = RelayOutSettings::load(&dir).expect("settings");
        Routing::new(&settings.routes, &core, &settings.outbound).expect("routing")
    }

    fn origin(routing: &Routing, destination: Destination) -> Option<String> {
        routing
            .for_destination(&destination)
            .map(|route| route.origin.clone())
    }

    #[test]
    fn a_domain_route_first_then_the_smart_host_for_everything_else() {
        let routing = routing(&[(
            "outbound_routes.ini",
            "[*]\nhosts=127.0.0.7, 127.0.0.8\n[lists.test]\nhosts=127.0.0.9\nusing_lmtp=true\n",
        )]);
        let domain = |name: &str| Destination::Domain(name.to_owned());
        assert_eq!(
            origin(&routing, domain("lists.test")).as_deref(),
            Some("outbound_routes.ini [lists.test]")
        );
        for destination in [
            domain("other.test"),
            Destination::Literal("192.0.2.1".parse().unwrap()),
        ] {
            assert_eq!(
                origin(&routing, destination).as_deref(),
                Some("outbound_routes.ini [*]")
            );
        }
        // Hops configured together share one connector.
        let smart = routing
            .for_destination(&domain("x.test"))
            .expect("smart host");
        assert!(Arc::ptr_eq(
            &smart.hops[0].connector,
            &smart.hops[1].connector
        ));
        let lists = routing
            .for_destination(&domain("lists.test"))
            .expect("route");
        assert_eq!(
            lists.hops[0].connector.mode(),
            super::super::connector::Mode::Lmtp
        );
        assert_eq!(lists.hops[0].port, crate::config::routes::LMTP_PORT);
    }

    #[test]
    fn without_routes_everything_goes_to_mx_hosts() {
        let routing = routing(&[]);
        assert!(origin(&routing, Destination::Domain("x.test".into())).is_none());
    }
}
