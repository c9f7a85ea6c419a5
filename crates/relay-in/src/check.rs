//! `relay-in --check`: validates a configuration directory and says, in a
//! mail administrator's terms, what relay-in will do with it.

use std::path::Path;

use smtp_core::config::{ConfigDir, CoreSettings};

use crate::config::{ForwardMode, ForwardRoute, RelayInSettings, XclientPolicy};

pub fn report(path: &Path) -> anyhow::Result<Vec<String>> {
    let dir = ConfigDir::open(path)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayInSettings::load(&dir)?;
    let mut lines = vec![format!(
        "relay-in configuration in {}",
        dir.root().display()
    )];
    lines.extend(smtp_core::config::check::core_summary(&core));
    let domains = &settings.local_domains;
    lines.push(format!(
        "  accepts mail for: {}{}",
        if domains.names.is_empty() {
            "(no host_list entries)".to_string()
        } else {
            domains.names.join(", ")
        },
        domains
            .pattern
            .as_ref()
            .map(|p| format!(" and names matching {}", p.as_str()))
            .unwrap_or_default()
    ));
    let forward = &settings.forward;
    let route = &forward.default_route;
    lines.push(format!(
        "  forwards to: {} ({} mode, XCLIENT {})",
        describe(route),
        match forward.mode {
            ForwardMode::Queue => "queue",
            ForwardMode::Live => "live",
        },
        match forward.xclient {
            XclientPolicy::Required => "required",
            XclientPolicy::Optional => "optional",
            XclientPolicy::Off => "off",
        }
    ));
    for (domain, route) in &forward.domain_routes {
        lines.push(format!("  forwards {domain} to: {}", describe(route)));
    }
    for warning in core.warnings.iter().chain(&settings.warnings) {
        lines.push(format!("warning: {warning}"));
    }
    lines.extend(smtp_core::config::check::files_report(&dir));
    Ok(lines)
}

/// One route as an administrator checks it: where, STARTTLS, and which
/// AUTH user (never the password).
fn describe(route: &ForwardRoute) -> String {
    format!(
        "{}:{} (STARTTLS {}, AUTH {})",
        route.host,
        route.port,
        if route.enable_tls { "on" } else { "off" },
        match &route.auth {
            Some(auth) => format!("as {}", auth.user),
            None => "off".to_string(),
        }
    )
}
