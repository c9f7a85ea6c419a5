//! `relay-out --check`: validates a configuration directory and says what
//! relay-out will do with it; with `--probe`, also whether its source
//! addresses have the reverse DNS receivers demand.

use std::path::Path;
use std::process::ExitCode;

use smtp_core::app::ProbeVerdicts;
use smtp_core::config::files::Binary;
use smtp_core::config::{ConfigDir, CoreSettings, Feature};

use crate::acl::RelayAcl;
use crate::config::RelayOutSettings;
use crate::courier::retry_timetable::RetryTimetable;
use crate::courier::source_check::{self, Severity, SourceCheck};
use crate::courier::{self, BOUNCE_TEMPLATE_FILE, DELAY_TEMPLATE_FILE};
use crate::submission::Submission;

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
    lines.extend(core.plugins.summary(&dir, Binary::RelayOut));
    let relay = &settings.relay;
    if !core.plugins.enabled(Feature::Relay) {
        lines
            .push("  relays for: authenticated users only (relay is not listed in plugins)".into());
    } else if relay.all {
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
    if let Some(dest_domains) = &settings.dest_domains {
        let accepted: Vec<&str> = dest_domains
            .domains()
            .filter(|(_, action)| *action == crate::config::DestAction::Accept)
            .map(|(domain, _)| domain)
            .collect();
        lines.push(format!(
            "  anyone else may send to: {} (relay.ini dest_domains=true, relay_dest_domains.ini)",
            if accepted.is_empty() {
                "no domain".to_owned()
            } else {
                accepted.join(", ")
            }
        ));
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
    lines.push(format!("  {}", courier::describe(&settings, &core.listen)));
    let submission = Submission::new(settings.auth_users.clone(), &core);
    let listeners: Vec<String> = submission
        .listeners(&core.listen)
        .iter()
        .map(|a| a.to_string())
        .collect();
    lines.push(if listeners.is_empty() {
        "  submission: none (no listener on submission_port or smtps_port)".into()
    } else {
        format!(
            "  submission: {} (AUTH required), {} user(s) in auth_flat_file.ini",
            listeners.join(", "),
            submission.user_count()
        )
    });
    lines.push(format!("  retries: {}", retry_summary(&settings)));
    lines.push(format!(
        "  bounce text: {}",
        match courier::template(&dir, BOUNCE_TEMPLATE_FILE)? {
            Some(_) => format!("from {BOUNCE_TEMPLATE_FILE}"),
            None => "built in".to_string(),
        }
    ));
    lines.push(format!(
        "  delay warnings: {}",
        match settings.outbound.delay_warning_time {
            None => "off (delay_warning_time=0)".to_string(),
            Some(every) => format!(
                "every {} a message waits, text {}",
                span(every),
                match courier::template(&dir, DELAY_TEMPLATE_FILE)? {
                    Some(_) => format!("from {DELAY_TEMPLATE_FILE}"),
                    None => "built in".to_string(),
                }
            ),
        }
    ));
    for warning in core.warnings.iter().chain(&settings.warnings) {
        lines.push(format!("warning: {warning}"));
    }
    lines.extend(smtp_core::config::check::files_report(
        &dir,
        Binary::RelayOut,
    ));
    Ok(lines)
}

/// A duration as written in outbound.ini (`4h`, `30m`, `10s`).
fn span(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// How long a deferred message is retried, in words.
fn retry_summary(settings: &RelayOutSettings) -> String {
    let outbound = &settings.outbound;
    let timetable = RetryTimetable::from_config(
        outbound.temp_fail_intervals.as_deref(),
        outbound.max_temp_failures,
    );
    let intervals: Vec<_> = (1..)
        .map_while(|failures| timetable.interval(failures))
        .take(1000)
        .collect();
    let total: std::time::Duration = intervals.iter().sum();
    format!(
        "{} retries over about {:.1} h (±10% jitter), bounce after at most {:.1} days in the queue",
        intervals.len(),
        total.as_secs_f64() / 3600.0,
        outbound.max_queue_lifetime.as_secs_f64() / 86_400.0
    )
}

/// `--check --probe`: the source address self-check relay-out runs at
/// startup, printed in the log's words. Exits 1 if the IPv4 source fails
/// it (an IPv6 failure only makes delivery use IPv4).
pub fn print_probe(path: &Path) -> ExitCode {
    smtp_core::app::print_probe(
        probe_report(path),
        &ProbeVerdicts {
            passed: "receivers can confirm the name of the address mail leaves from.",
            failed: "relay-out would run, but receivers would refuse its mail; see above.",
            not_run: "the source addresses could not be checked.",
        },
    )
}

fn probe_report(path: &Path) -> anyhow::Result<(Vec<String>, bool)> {
    let dir = ConfigDir::open(path)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayOutSettings::load(&dir)?;
    let outbound = &settings.outbound;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let findings = runtime.block_on(async {
        let dns = courier::delivery_dns(&core, outbound)?;
        let check = SourceCheck::new(dns, &settings, Default::default());
        anyhow::Ok(check.findings().await)
    })?;
    let mut lines = Vec::new();
    let mut deliverable = true;
    for (checked, finding) in &findings {
        let (severity, text) = source_check::explain(*checked, finding, outbound.inet_prefer);
        let prefix = match severity {
            Severity::Info => "probe",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        deliverable &= severity != Severity::Error;
        lines.push(format!("{prefix}: {text}"));
    }
    Ok((lines, deliverable))
}
