//! relay.ini and relay_acl_allow (haraka-plugin-relay, haraka-behaviour.md §6).

use ipnetwork::IpNetwork;
use serde::Deserialize;
use smtp_core::config::files;
use smtp_core::config::values::setting;
use smtp_core::config::{ConfigDir, ConfigError};

/// Who may relay, from relay.ini `[relay]` (the plugin's code defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RelayPolicy {
    /// Clients in `relay_acl_allow` may relay (`acl`).
    #[serde(deserialize_with = "setting")]
    pub acl: bool,
    /// Route by relay_dest_domains.ini `nexthop` before MX (`force_routing`).
    #[serde(deserialize_with = "setting")]
    pub force_routing: bool,
    /// Non-relaying clients may send to domains listed in
    /// relay_dest_domains.ini (`dest_domains`).
    #[serde(deserialize_with = "setting")]
    pub dest_domains: bool,
    /// Everyone may relay: an open relay (`all`).
    #[serde(deserialize_with = "setting")]
    pub all: bool,
}

impl Default for RelayPolicy {
    fn default() -> Self {
        Self {
            acl: true,
            force_routing: true,
            dest_domains: false,
            all: false,
        }
    }
}

impl RelayPolicy {
    /// `plugins` does not load `relay`: no relaying by address, no
    /// relay_dest_domains.ini routes.
    pub const NOT_LOADED: Self = Self {
        acl: false,
        force_routing: false,
        dest_domains: false,
        all: false,
    };
}

/// relay.ini.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RelayIni {
    pub relay: RelayPolicy,
}

/// Reads relay_acl_allow. Unlike Haraka, an address without `/len` is a
/// single host (/32 or /128); Haraka appends `/32` even to IPv6 addresses,
/// which opens relaying to a whole /32 — such lines are reported.
pub(super) fn acl_allow(dir: &ConfigDir) -> Result<Vec<IpNetwork>, ConfigError> {
    let Some(file) = dir.list_file(files::RELAY_ACL_ALLOW)? else {
        return Ok(Vec::new());
    };
    let mut networks = Vec::with_capacity(file.lines.len());
    for line in &file.lines {
        let network: IpNetwork = line.text.parse().map_err(|_| ConfigError::BadEntry {
            path: file.path.clone(),
            line: line.number,
            entry: line.text.clone(),
            expected: "expected an IP address or CIDR network such as 10.0.0.2/32".to_owned(),
        })?;
        if network.is_ipv6() && !line.text.contains('/') {
            dir.warn(format!(
                "{}: line {}: {} means only that address (/128); Haraka read it as /32",
                file.path.display(),
                line.number,
                line.text
            ));
        }
        networks.push(network);
    }
    Ok(networks)
}
