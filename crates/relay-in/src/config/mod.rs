//! relay-in's own settings, read from a haraka-in config directory next to
//! smtp-core's [`smtp_core::config::CoreSettings`].

mod backup_spool;
mod forward;
mod local_domains;
mod proxy;
mod xclient_alias;

#[cfg(test)]
mod tests;

pub use backup_spool::{SpoolSettings, VERIFIED_CAPACITY};
pub use forward::{
    AuthMechanism, DomainSelector, ForwardMode, ForwardRoute, ForwardSettings,
    HARAKA_SHIPPED_FORWARD_PORT, XclientPolicy,
};
pub use local_domains::LocalDomains;

use smtp_core::config::files::Binary;
use smtp_core::config::{ConfigDir, ConfigError, Feature, files};

use forward::ForwardIni;

/// What relay-in needs beyond the core settings: which domains to accept and
/// where to forward them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInSettings {
    /// Accepted recipient domains (`host_list`, `host_list_regex`); none
    /// when `plugins` does not list `rcpt_to.in_host_list`.
    pub local_domains: LocalDomains,
    /// The backend (smtp_forward.ini, or smtp_proxy.ini when `plugins`
    /// loads `queue/smtp_proxy`; completed by the seed's xclient.ini).
    pub forward: ForwardSettings,
    /// The file `forward` came from: smtp_forward.ini or smtp_proxy.ini.
    pub forward_ini: &'static str,
    /// `plugins` lists the forwarding plugin but its file sets no `[main]`
    /// port: Haraka would have used its shipped file's port, Postern uses
    /// its own default (`--check` says so).
    pub forward_port_from_haraka_defaults: bool,
    /// Non-fatal findings for `--check` (ignored keys, aliases applied).
    pub warnings: Vec<String>,
}

impl RelayInSettings {
    /// Reads the plugin list, then what the listed plugins read: host_list,
    /// host_list_regex, rcpt_to.in_host_list.ini (`rcpt_to.in_host_list`),
    /// smtp_forward.ini (`queue/smtp_forward`) or smtp_proxy.ini
    /// (`queue/smtp_proxy`), and xclient.ini.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let plugins = dir.plugins()?;
        for finding in plugins.findings(dir, Binary::RelayIn) {
            dir.warn(finding);
        }
        let queue = plugins.queue().ok_or_else(|| {
            plugins.useless_for(
                Binary::RelayIn,
                "lists neither queue/smtp_forward nor queue/smtp_proxy",
            )
        })?;
        let local_domains = if plugins.enabled(Feature::InHostList) {
            LocalDomains::load(dir)?
        } else {
            LocalDomains::none()
        };
        let forward_ini = match queue {
            Feature::SmtpProxy => files::SMTP_PROXY_INI,
            _ => files::SMTP_FORWARD_INI,
        };
        let sections: ForwardIni = dir.ini(forward_ini)?;
        let mut main = sections.get("main").cloned().unwrap_or_default();
        let forward_port_from_haraka_defaults = plugins.path().is_some() && main.port.is_none();
        xclient_alias::apply(dir, forward_ini, &mut main)?;
        let forward = match queue {
            Feature::SmtpProxy => proxy::settings(dir, &main, &sections)?,
            _ => ForwardSettings::from_sections(dir, forward_ini, &main, &sections)?,
        };
        Ok(Self {
            local_domains,
            forward,
            forward_ini,
            forward_port_from_haraka_defaults,
            warnings: dir.take_warnings(),
        })
    }
}
