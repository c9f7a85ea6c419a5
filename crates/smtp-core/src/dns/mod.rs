//! DNS lookups the relays need: the client reverse lookup (for `Received:` headers and XCLIENT
//! `NAME=`) and, for relay-out, MX and address lookups.
//!
//! One [`Dns`] is built per process from [`DnsSettings`] and cloned into every task that needs it;
//! clones share the resolver's connections and cache. Every public lookup is bounded by the
//! configured timeout as a whole, so a dead nameserver can stall a session for at most that long.
//!
//! All names we query are treated as absolute: a name without a trailing dot is never expanded with
//! resolv.conf search domains, because an MX host or PTR target is always fully qualified and a
//! search-domain expansion could silently deliver to the wrong place.

mod client_name;
mod mx;
mod names;
mod txt;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use thiserror::Error;

pub use mx::{MxAnswer, MxRecord};

/// Retries per query, as in resolv.conf's `attempts:2`: one lost UDP datagram must not turn
/// into a temporary failure, but a dead server must not be hammered either.
const ATTEMPTS_PER_QUERY: usize = 2;

/// The per-lookup timeout when the configuration gives none; resolv.conf's default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How lookups are configured, kept apart from [`Dns`] so the config loader can build and
/// validate it without touching the network or the system resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Nameservers to query (`nameservers=` as `ip:port` items). Empty means the system resolver's
    /// nameservers from /etc/resolv.conf (only its nameservers: not its search domains or options).
    pub nameservers: Vec<SocketAddr>,
    /// Bound on one whole public lookup operation (e.g. PTR plus the forward confirmation).
    pub timeout: Duration,
    /// `rdns=on|off`: with reverse lookups off, [`Dns::client_name`] answers
    /// [`ClientName::Unavailable`](smtp_protocol::session::ClientName::Unavailable) without sending a query.
    pub reverse_lookups: bool,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            reverse_lookups: true,
        }
    }
}

/// Why a lookup could not give an answer; typed so relay-out can tell a bounce (`NxDomain`) from
/// a deferral (`Temporary`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsError {
    /// `nameservers=` was empty and the system resolver configuration was unusable.
    #[error("cannot use the system resolver configuration: {reason}")]
    SystemConfig {
        /// What hickory reported while reading /etc/resolv.conf.
        reason: String,
    },
    /// The name given to a lookup is not a syntactically valid domain name.
    #[error("{name:?} is not a valid domain name: {reason}")]
    InvalidName {
        /// The name as the caller gave it.
        name: String,
        /// Why it did not parse.
        reason: String,
    },
    /// The nameserver said the name does not exist (NXDOMAIN): a permanent answer.
    #[error("{name} does not exist (NXDOMAIN)")]
    NxDomain {
        /// The queried name.
        name: String,
    },
    /// SERVFAIL, REFUSED, timeout, network error: try again later.
    #[error("temporary DNS failure for {name}: {reason}")]
    Temporary {
        /// The queried name.
        name: String,
        /// What went wrong, for logs and deferral messages.
        reason: String,
    },
}

/// The process-wide async resolver. Cheap to clone: clones share connections and the cache.
#[derive(Clone, Debug)]
pub struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
    reverse_lookups: bool,
}

impl Dns {
    /// Builds the resolver. With no configured nameservers this reads /etc/resolv.conf (its
    /// nameservers only); it sends no query itself.
    pub fn new(settings: &DnsSettings) -> Result<Dns, DnsError> {
        let name_servers = if settings.nameservers.is_empty() {
            system_name_servers()?
        } else {
            settings
                .nameservers
                .iter()
                .map(|addr| name_server_at(*addr))
                .collect()
        };
        // No domain and no search list: see the module comment on absolute names.
        let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = resolver_options(settings.timeout);
        let resolver = builder.build().map_err(|error| DnsError::SystemConfig {
            reason: error.to_string(),
        })?;
        Ok(Dns {
            resolver,
            timeout: settings.timeout,
            reverse_lookups: settings.reverse_lookups,
        })
    }

    /// The bound on one whole public lookup operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The nameservers of /etc/resolv.conf, without its search domains or options (ours win).
fn system_name_servers() -> Result<Vec<NameServerConfig>, DnsError> {
    let (config, _options) =
        hickory_resolver::system_conf::read_system_conf().map_err(|error| {
            DnsError::SystemConfig {
                reason: error.to_string(),
            }
        })?;
    let (_domain, _search, name_servers) = config.into_parts();
    Ok(name_servers)
}

/// UDP first, TCP when the UDP answer is truncated, both on the configured port (tests run
/// their nameserver on an ephemeral port, so port 53 cannot be assumed).
fn name_server_at(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

fn resolver_options(timeout: Duration) -> ResolverOpts {
    let mut options = ResolverOpts::default();
    // Each attempt gets its share of the budget so both fit inside the operation's bound.
    options.timeout = per_attempt_timeout(timeout);
    options.attempts = ATTEMPTS_PER_QUERY;
    // /etc/hosts maps 127.0.0.1 to "localhost" and the like; mail routing and Received headers
    // must reflect the DNS only, as Haraka's c-ares lookups do.
    options.use_hosts_file = ResolveHosts::Never;
    options
}

fn per_attempt_timeout(total: Duration) -> Duration {
    let divisor = u32::try_from(ATTEMPTS_PER_QUERY).unwrap_or(1).max(1);
    (total / divisor).max(Duration::from_millis(1))
}

/// How one query failed, reduced to what callers decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryFailure {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NOERROR with no records of the asked type.
    NoData,
    /// Anything that may succeed later.
    Temporary,
}

fn classify(error: &NetError) -> QueryFailure {
    if error.is_nx_domain() {
        QueryFailure::NxDomain
    } else if error.is_no_records_found() {
        QueryFailure::NoData
    } else {
        QueryFailure::Temporary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_attempt_timeout_splits_the_budget() {
        assert_eq!(
            per_attempt_timeout(Duration::from_secs(4)),
            Duration::from_secs(2)
        );
        assert_eq!(
            per_attempt_timeout(Duration::ZERO),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn configured_nameserver_keeps_its_port_for_udp_and_tcp() {
        let config = name_server_at("127.0.0.1:5353".parse().expect("valid socket address"));
        assert_eq!(config.ip.to_string(), "127.0.0.1");
        assert_eq!(config.connections.len(), 2);
        assert!(config.connections.iter().all(|c| c.port == 5353));
    }

    #[test]
    fn classify_separates_nxdomain_nodata_and_temporary() {
        use hickory_resolver::net::NoRecords;
        use hickory_resolver::proto::op::{Query, ResponseCode};

        let nx: NetError = NoRecords::new(Query::default(), ResponseCode::NXDomain).into();
        let nodata: NetError = NoRecords::new(Query::default(), ResponseCode::NoError).into();
        assert_eq!(classify(&nx), QueryFailure::NxDomain);
        assert_eq!(classify(&nodata), QueryFailure::NoData);
        assert_eq!(classify(&NetError::Timeout), QueryFailure::Temporary);
    }

    #[tokio::test]
    async fn new_with_explicit_nameservers_does_not_need_the_system_config() {
        let settings = DnsSettings {
            nameservers: vec!["127.0.0.1:5353".parse().expect("valid socket address")],
            ..DnsSettings::default()
        };
        let dns = Dns::new(&settings).expect("resolver builds");
        assert_eq!(dns.timeout(), DEFAULT_TIMEOUT);
    }
}
