//! smtp_proxy.ini: relay-in's backend when `plugins` loads Haraka's
//! `queue/smtp_proxy` (haraka-behaviour.md §3; plugins/queue/smtp_proxy.js).
//!
//! Haraka's proxy opens the backend session at MAIL FROM and passes each
//! RCPT through, which is relay-in's `mode=live`; it reads the same
//! `host`, `port`, `enable_tls` and `auth_*` keys as smtp_forward, from
//! `[main]` only. Postern's own smtp_forward.ini keys (`xclient`,
//! timeouts, `tls_verify`, `ca_file`) work here too; the ones about
//! per-domain routing and queueing mean nothing for a proxy and are
//! reported as not used.

use smtp_core::config::files;
use smtp_core::config::{ConfigDir, ConfigError};

use super::forward::{ForwardIni, ForwardMode, ForwardSection, ForwardSettings};

/// The forward settings from smtp_proxy.ini: `[main]` as the only route,
/// always live.
pub(super) fn settings(
    dir: &ConfigDir,
    main: &ForwardSection,
    sections: &ForwardIni,
) -> Result<ForwardSettings, ConfigError> {
    let shown = dir.shown(files::SMTP_PROXY_INI);
    for name in sections.keys().filter(|name| *name != "main") {
        dir.warn(format!(
            "{shown}: section [{name}] is not used: queue/smtp_proxy reads [main] only (ignored)"
        ));
    }
    let unused = [
        ("mode", main.mode.is_some_and(|m| m != ForwardMode::Live)),
        ("domain_selector", main.domain_selector.is_some()),
        ("check_recipient", main.check_recipient.is_some()),
        ("check_sender", main.check_sender.is_some()),
    ];
    for (key, _) in unused.iter().filter(|(_, set)| *set) {
        dir.warn(format!(
            "{shown}: [main] {key} is not used with queue/smtp_proxy, which always forwards live (ignored)"
        ));
    }
    let only_main = ForwardIni::new();
    let shipped = ForwardSettings::default();
    Ok(ForwardSettings {
        mode: ForwardMode::Live,
        domain_selector: shipped.domain_selector,
        check_recipient: false,
        check_sender: false,
        ..ForwardSettings::from_sections(dir, files::SMTP_PROXY_INI, main, &only_main)?
    })
}
