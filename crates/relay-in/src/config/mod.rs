//! relay-in's own settings, read from a haraka-in config directory next to
//! smtp-core's [`smtp_core::config::CoreSettings`].

mod backup_spool;
mod forward;
mod local_domains;
mod xclient_alias;

#[cfg(test)]
mod tests;

pub use backup_spool::{SpoolSettings, VERIFIED_CAPACITY};
pub use forward::{
    AuthMechanism, DomainSelector, ForwardMode, ForwardRoute, ForwardSettings, XclientPolicy,
};
pub use local_domains::LocalDomains;

use smtp_core::config::{ConfigDir, ConfigError, files};

use forward::ForwardIni;

/// What relay-in needs beyond the core settings: which domains to accept and
/// where to forward them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInSettings {
    /// Accepted recipient domains (`host_list`, `host_list_regex`).
    pub local_domains: LocalDomains,
    /// The backend (smtp_forward.ini, completed by the seed's xclient.ini).
    pub forward: ForwardSettings,
    /// Non-fatal findings for `--check` (ignored keys, aliases applied).
    pub warnings: Vec<String>,
}

impl RelayInSettings {
    /// Reads host_list, host_list_regex, rcpt_to.in_host_list.ini,
    /// smtp_forward.ini and xclient.ini.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let local_domains = LocalDomains::load(dir)?;
        let sections: ForwardIni = dir.ini(files::SMTP_FORWARD_INI)?;
        let mut main = sections.get("main").cloned().unwrap_or_default();
        xclient_alias::apply(dir, &mut main)?;
        let forward = ForwardSettings::from_sections(dir, &main, &sections)?;
        Ok(Self {
            local_domains,
            forward,
            warnings: dir.take_warnings(),
        })
    }
}
