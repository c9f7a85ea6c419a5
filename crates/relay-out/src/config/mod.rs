//! relay-out's own settings, read from a haraka-out config directory next to
//! smtp-core's [`smtp_core::config::CoreSettings`].

mod auth_users;
mod local_address;
mod outbound;
mod relay;
use smtp_core::config::retry_schedule as retry;
pub mod routes;

#[cfg(test)]
mod tests;

use ipnetwork::IpNetwork;
use smtp_core::config::domains::domain_list;
use smtp_core::config::{ConfigDir, ConfigError, files};

pub use auth_users::AuthUsers;
pub use outbound::{InetPrefer, OutboundSettings};
pub use relay::RelayPolicy;
pub use routes::{HopHost, HopSettings, Route, RouteTable, RouteTls};

use relay::RelayIni;

/// What relay-out needs beyond the core settings: who may relay and how to
/// deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOutSettings {
    /// relay.ini `[relay]`.
    pub relay: RelayPolicy,
    /// relay_acl_allow: client networks that may relay.
    pub acl_allow: Vec<IpNetwork>,
    /// host_list: this relay's own domains (normalised like relay-in's).
    pub local_domains: Vec<String>,
    /// outbound.ini.
    pub outbound: OutboundSettings,
    /// Fixed next hops: outbound_routes.ini and relay_dest_domains.ini
    /// `nexthop` (see [`routes`]).
    pub routes: RouteTable,
    /// auth_flat_file.ini: who may authenticate to submit mail.
    pub auth_users: AuthUsers,
    /// Non-fatal findings for `--check`.
    pub warnings: Vec<String>,
}

impl RelayOutSettings {
    /// Reads relay.ini, relay_acl_allow, relay_dest_domains.ini, host_list,
    /// outbound.ini, outbound_routes.ini and auth_flat_file.ini. Source
    /// addresses (`local_address`, `bind`) must exist on this host.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let relay = dir.ini::<RelayIni>(files::RELAY_INI)?.relay;
        let acl_allow = relay::acl_allow(dir)?;
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
        let dest_domains = dir.ini_document(files::RELAY_DEST_DOMAINS_INI)?;
        let local_domains = match dir.list_file(files::HOST_LIST)? {
            Some(file) => domain_list(&file)?,
            None => Vec::new(),
        };
        let outbound = OutboundSettings::load(dir)?;
        if let Some(ip) = outbound.local_address {
            local_address::ensure_local(ip).map_err(|detail| ConfigError::BadValue {
                origin: dir.shown(files::OUTBOUND_INI),
                section: "main".to_owned(),
                key: "local_address".to_owned(),
                detail: format!("'{ip}': {detail}"),
            })?;
        }
        let routes = routes::load(dir, &relay, dest_domains.as_ref(), &outbound)?;
        let auth_users = AuthUsers::load(dir)?;
        Ok(Self {
            relay,
            acl_allow,
            local_domains,
            outbound,
            routes,
            auth_users,
            warnings: dir.take_warnings(),
        })
    }
}
