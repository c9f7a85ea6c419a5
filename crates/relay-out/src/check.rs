//! `relay-out --check`: validates a configuration directory and says what
//! relay-out will do with it.

use std::path::Path;

use smtp_core::config::{ConfigDir, CoreSettings, files};

use crate::acl::RelayAcl;
use crate::config::RelayOutSettings;

pub fn report(path: &Path) -> anyhow::Result<Vec<String>> {
    let dir = ConfigDir::open(path)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayOutSettings::load(&dir)?;
    RelayAcl::new(&settings, &core.listen)?;
    let mut lines = vec![format!(
        "relay-out configuration in {}",
        dir.root().display()
    )];
    lines.extend(smtp_core::config::check::core_summary(&core));
    let relay = &settings.relay;
    if relay.all {
        lines.push("  relays for: EVERYONE (relay.ini all=true)".into());
    } else if relay.acl {
        let nets: Vec<String> = settings.acl_allow.iter().map(|n| n.to_string()).collect();
        lines.push(format!(
            "  relays for: {}",
            if nets.is_empty() {
                "nobody (relay_acl_allow is empty)".into()
            } else {
                nets.join(", ")
            }
        ));
    } else {
        lines.push("  relays for: nobody (relay.ini acl=false)".into());
    }
    let out = &settings.outbound;
    lines.push(format!(
        "  queue: {}; delivery {}, up to {} at once, STARTTLS {}",
        out.queue_dir.display(),
        if out.disabled {
            "PAUSED (outbound.ini disabled=true)"
        } else {
            "on"
        },
        out.concurrency_max,
        if out.enable_tls {
            "opportunistic"
        } else {
            "off"
        }
    ));
    for warning in core.warnings.iter().chain(&settings.warnings) {
        lines.push(format!("warning: {warning}"));
    }
    for file in dir.unrecognized_files(files::KNOWN_FILES) {
        lines.push(format!("note: {file}: not a file Postern reads; ignored"));
    }
    Ok(lines)
}
