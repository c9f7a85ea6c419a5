//! relay-out's own settings, read from a haraka-out config directory next to
//! smtp-core's [`smtp_core::config::CoreSettings`].

mod auth_users;
mod dest_domains;
mod local_address;
mod outbound;
mod queue_dir;
mod relay;
mod shaping;
mod tls_policy;
mod tlsrpt;
use smtp_core::config::retry_schedule as retry;
pub mod routes;

#[cfg(test)]
mod tests;

use ipnetwork::IpNetwork;
use smtp_core::config::files::Binary;
use smtp_core::config::{ConfigDir, ConfigError, Feature, files};

pub use auth_users::AuthUsers;
pub use dest_domains::{DestAction, DestDomains};
pub use outbound::{InetPrefer, OutboundSettings};
pub use relay::RelayPolicy;
pub use routes::{HopHost, HopSettings, Route, RouteTable, RouteTls};
pub use shaping::{
    DEFAULT_SUSPEND, MESSAGES_PER_CONNECTION_REPORT, ShapingMatch, ShapingRule, ShapingRules,
};
pub use tls_policy::{MTA_STS_PORT, TlsPolicies, TlsPolicy};
pub use tlsrpt::TlsRptSettings;

use relay::RelayIni;

/// What relay-out needs beyond the core settings: who may relay and how to
/// deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOutSettings {
    /// relay.ini `[relay]`.
    pub relay: RelayPolicy,
    /// relay_acl_allow: client networks that may relay.
    pub acl_allow: Vec<IpNetwork>,
    /// relay_dest_domains.ini `action`s, when relay.ini `dest_domains` is
    /// on: the domains clients that may not relay may still send to.
    pub dest_domains: Option<DestDomains>,
    /// outbound.ini.
    pub outbound: OutboundSettings,
    /// Fixed next hops: outbound_routes.ini and relay_dest_domains.ini
    /// `nexthop` (see [`routes`]).
    pub routes: RouteTable,
    /// auth_flat_file.ini: who may authenticate to submit mail.
    pub auth_users: AuthUsers,
    /// shaping.ini: per-destination budgets.
    pub shaping: ShapingRules,
    /// tls_policy.ini: per-destination TLS.
    pub tls_policies: TlsPolicies,
    /// tlsrpt.ini: TLS-RPT reporting.
    pub tlsrpt: TlsRptSettings,
    /// Non-fatal findings for `--check`.
    pub warnings: Vec<String>,
}

impl RelayOutSettings {
    /// Reads the plugin list; relay.ini, relay_acl_allow and
    /// relay_dest_domains.ini when it loads `relay`; outbound.ini,
    /// outbound_routes.ini; auth_flat_file.ini when it loads
    /// `auth/flat_file`. Source addresses (`local_address`, `bind`) must
    /// exist on this host.
    ///
    /// `host_list` is not read, as in Haraka's relay-out side: only the
    /// `rcpt_to.in_host_list` plugin reads it there (to accept mail for
    /// local delivery, which relay-out does not do); a haraka-out
    /// directory holding one is told so.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let plugins = dir.plugins()?;
        for finding in plugins.findings(dir, Binary::RelayOut) {
            dir.warn(finding);
        }
        let relaying = plugins.enabled(Feature::Relay);
        if !relaying && !plugins.enabled(Feature::AuthFlatFile) {
            return Err(plugins.useless_for(
                Binary::RelayOut,
                "lists neither relay nor auth/flat_file, so no client may relay",
            ));
        }
        let relay = if relaying {
            dir.ini::<RelayIni>(files::RELAY_INI)?.relay
        } else {
            RelayPolicy::NOT_LOADED
        };
        let acl_allow = if relaying {
            relay::acl_allow(dir)?
        } else {
            Vec::new()
        };
        if relay.acl && !relay.all && acl_allow.is_empty() {
            dir.warn(format!(
                "{}: no client may relay (the file is missing or empty)",
                files::RELAY_ACL_ALLOW
            ));
        }
        if relay.all {
            dir.warn(format!(
                "{}: [relay] all=true makes this an open relay",
                files::RELAY_INI
            ));
        }
        // Without `relay` its files are not read: relay_dest_domains.ini
        // neither opens recipients nor routes.
        let dest_domains_file = if relaying {
            dir.ini_document(files::RELAY_DEST_DOMAINS_INI)?
        } else {
            None
        };
        let dest_domains = dest_domains::load(dir, &relay, dest_domains_file.as_ref())?;
        if let Some(path) = dir.path_of(files::HOST_LIST) {
            dir.warn(format!(
                "{}: not used by relay-out: in Haraka only rcpt_to.in_host_list reads it (the relay plugin and outbound do not), to accept mail for local delivery, which relay-out does not do; relay-out relays for relay_acl_allow, authenticated users and relay.ini dest_domains",
                path.display()
            ));
        }
        let outbound = OutboundSettings::load(dir)?;
        if let Some(ip) = outbound.local_address {
            local_address::ensure_local(ip).map_err(|detail| ConfigError::BadValue {
                origin: dir.shown(files::OUTBOUND_INI),
                section: "main".to_owned(),
                key: "local_address".to_owned(),
                detail: format!("'{ip}': {detail}"),
            })?;
        }
        let routes = routes::load(dir, &relay, dest_domains_file.as_ref(), &outbound)?;
        let auth_users = AuthUsers::load(dir)?;
        let shaping = ShapingRules::load(dir)?;
        let tls_policies = TlsPolicies::load(dir)?;
        let tlsrpt = TlsRptSettings::load(dir)?;
        Ok(Self {
            relay,
            acl_allow,
            dest_domains,
            outbound,
            routes,
            auth_users,
            shaping,
            tls_policies,
            tlsrpt,
            warnings: dir.take_warnings(),
        })
    }
}
