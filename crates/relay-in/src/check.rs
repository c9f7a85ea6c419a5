//! `relay-in --check`: validates a configuration directory and says, in a
//! mail administrator's terms, what relay-in will do with it; with
//! `--probe`, also whether its backends can take mail now.

use std::path::Path;
use std::process::ExitCode;

use smtp_core::app::ProbeVerdicts;
use smtp_core::config::files::Binary;
use smtp_core::config::{ConfigDir, CoreSettings, Feature};

use crate::config::{
    ForwardMode, ForwardRoute, HARAKA_SHIPPED_FORWARD_PORT, RelayInSettings, SpoolSettings,
    XclientPolicy,
};
use crate::forward::Forwarder;
use crate::probe::{self, Health, Intervals, Severity};

fn load(path: &Path) -> anyhow::Result<(ConfigDir, CoreSettings, RelayInSettings)> {
    let dir = ConfigDir::open(path)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayInSettings::load(&dir)?;
    Ok((dir, core, settings))
}

pub fn report(path: &Path) -> anyhow::Result<Vec<String>> {
    let (dir, core, settings) = load(path)?;
    let mut lines = vec![format!(
        "relay-in configuration in {}",
        dir.root().display()
    )];
    lines.extend(smtp_core::config::check::core_summary(&core));
    lines.extend(core.plugins.summary(&dir, Binary::RelayIn));
    let domains = &settings.local_domains;
    if !core.plugins.enabled(Feature::InHostList) {
        lines.push(
            "  accepts mail for: no host_list domain (rcpt_to.in_host_list is not listed in plugins)"
                .into(),
        );
    } else {
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
    }
    let forward = &settings.forward;
    let route = &forward.default_route;
    lines.push(format!(
        "  forwards to: {} ({} mode, XCLIENT {}), from {}",
        describe(route),
        match forward.mode {
            ForwardMode::Queue => "queue",
            ForwardMode::Live => "live",
            ForwardMode::Spool => "spool",
        },
        match forward.xclient {
            XclientPolicy::Required => "required",
            XclientPolicy::Optional => "optional",
            XclientPolicy::Off => "off",
        },
        settings.forward_ini
    ));
    if settings.forward_port_from_haraka_defaults {
        lines.push(format!(
            "  note: {} sets no port: Haraka would have used {HARAKA_SHIPPED_FORWARD_PORT} (its shipped {}), Postern uses {}",
            settings.forward_ini, settings.forward_ini, route.port
        ));
    }
    for (domain, route) in &forward.domain_routes {
        lines.push(format!("  forwards {domain} to: {}", describe(route)));
    }
    lines.push(format!(
        "  probes each backend every {} while it answers (probe_interval)",
        humanize(forward.probe_interval)
    ));
    if forward.mode == ForwardMode::Spool {
        lines.extend(describe_spool(&forward.spool));
    }
    for warning in core.warnings.iter().chain(&settings.warnings) {
        lines.push(format!("warning: {warning}"));
    }
    lines.extend(smtp_core::config::check::files_report(
        &dir,
        Binary::RelayIn,
    ));
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

/// The backup spool's settings, one line each with its key, so that an
/// administrator sees every default in force.
fn describe_spool(spool: &SpoolSettings) -> Vec<String> {
    let intervals: Vec<String> = spool.retry_intervals.iter().map(|d| humanize(*d)).collect();
    vec![
        "  while a backend is away, keeps mail for recipients it accepted before (mode=spool):"
            .to_owned(),
        format!("    spool_dir = {}", spool.dir.display()),
        format!(
            "    verified_ttl = {} (a recipient the backend accepted counts as existing this long)",
            humanize(spool.verified_ttl)
        ),
        format!(
            "    spool_max_messages = {}, spool_max_bytes = {} (then 452 4.3.1)",
            spool.max_messages, spool.max_bytes
        ),
        format!(
            "    max_spool_age = {} (then the sender gets a bounce)",
            humanize(spool.max_age)
        ),
        format!(
            "    spool_concurrency = {} (messages delivered at once when the backend is back)",
            spool.concurrency
        ),
        format!(
            "    spool_retry_intervals = {} (after a 4xx; the last repeats)",
            intervals.join(", ")
        ),
    ]
}

/// A duration in the largest unit that divides it, as the keys take it.
fn humanize(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `--check --probe`: probes every backend once, as relay-in does at
/// startup, and prints what it found in the log's words. Exits 1 if mail
/// could not be forwarded to one: it is down, or does not offer the XCLIENT
/// that `xclient=required` insists on.
pub fn print_probe(path: &Path) -> ExitCode {
    smtp_core::app::print_probe(
        probe_report(path),
        &ProbeVerdicts {
            passed: "every backend answers and mail can be forwarded.",
            failed: "relay-in would run, but mail would be deferred; see above.",
            not_run: "the backends could not be probed.",
        },
    )
}

fn probe_report(path: &Path) -> anyhow::Result<(Vec<String>, bool)> {
    let (_, core, settings) = load(path)?;
    let intervals = Intervals::configured(settings.forward.probe_interval);
    let forwarder = Forwarder::new(&core.me, settings.forward, &Health::new(intervals))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut lines = Vec::new();
    let mut forwardable = true;
    for route in forwarder.backends() {
        let finding = runtime.block_on(probe::probe(&route));
        let (severity, text) = probe::explain(
            route.key(),
            &finding,
            route.xclient_policy(),
            intervals.down,
        );
        let prefix = match severity {
            Severity::Info => "probe",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        forwardable &= severity != Severity::Error;
        lines.push(format!("{prefix}: {text}"));
    }
    Ok((lines, forwardable))
}
