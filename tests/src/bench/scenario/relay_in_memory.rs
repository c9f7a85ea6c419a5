//! `scenario relay-in-memory`: issue 19's "relay-in peak RSS at 100
//! sessions ≤ 40 MB" and "idle RSS ≤ 8 MB", measured as the headline table
//! measures relay-in (smtp-source from 127.0.0.1 → relay-in with the shipped
//! configuration and XCLIENT → smtp-sink), at 100 sessions, 2 KB and 100 KB,
//! a connection per message and kept.
//!
//! The shipped `limit.ini` lets one address hold 50 connections (Postfix's
//! `smtpd_client_connection_count_limit`), so 100 sessions from 127.0.0.1
//! would be refused and measure nothing: this scenario raises
//! `[concurrency] max` to 200, says so in its output, and changes nothing
//! else. The raise is about admission only; the memory a session costs is
//! the same whichever address it comes from.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::headline::{SINK_COUNT_WAIT, shipped_relay_in};
use super::{Bench, finish_counted, load_phase, refused_or_lost, targets};
use crate::bench::cli::{Generator, Load};
use crate::bench::procfs;
use crate::bench::report::{ScenarioReport, mb};
use crate::bench::smtp_sink;
use crate::process::free_port;

/// Sessions of every phase: the concurrency of issue 19's memory target.
const SESSIONS: usize = 100;
/// limit.ini `[concurrency] max` for this scenario (shipped: 50).
const RAISED_PER_ADDRESS: usize = 200;
/// How long after the last phase relay-in's RSS is read again: past one
/// period of its heap trim (`smtp_core::app::give_back_freed_memory`, 10 s).
const AFTER_BURST: Duration = Duration::from_secs(12);

/// What the options of `scenario relay-in-memory` ask for.
pub struct MemoryPlan {
    /// Messages per 2 KB phase; 100 KB phases send a fifth.
    pub messages: u64,
    pub config_in: std::path::PathBuf,
}

pub async fn run(bench: &Bench, plan: &MemoryPlan) -> anyhow::Result<ScenarioReport> {
    let (mut sink, sink_addr) = bench.start_smtp_sink().await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let files = raised_relay_in(&plan.config_in, addr, sink_addr, &bench.pki()?.server_pem)?;
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let (mut relay, _) = bench.start_relay("relay-in", &files, addr).await?;
    let mut report = ScenarioReport {
        scenario: format!(
            "relay-in memory: smtp-source ({SESSIONS} sessions from 127.0.0.1) → relay-in \
             (shipped config, XCLIENT; limit.ini [concurrency] max raised 50 → \
             {RAISED_PER_ADDRESS} so that {SESSIONS} sessions from one address are admitted) \
             → smtp-sink"
        ),
        command: format!(
            "postern-bench scenario relay-in-memory --messages {}",
            plan.messages
        ),
        ..ScenarioReport::default()
    };
    let sink_output = sink.daemon.output_path.clone();
    let mut at_sink = 0;
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let mut worst_kb = 0;
    for size in [2048, 100 * 1024] {
        for keep in [false, true] {
            let load = Load {
                concurrency: SESSIONS,
                size,
                messages: if size > 2048 {
                    (plan.messages / 5).max(1)
                } else {
                    plan.messages
                },
                duration: None,
                tls: false,
                per_connection: u64::from(!keep),
                generator: Generator::SmtpSource,
            };
            let label = format!(
                "{SESSIONS} sessions, {} KB, {}",
                size / 1024,
                if keep {
                    "connections kept (-d)"
                } else {
                    "a connection per message"
                }
            );
            procfs::reset_peak(relay.daemon.pid())?;
            let phase = load_phase(&label, addr, &load, None, &mut [&mut relay, &mut sink]).await?;
            let counted =
                smtp_sink::wait_for(&sink_output, at_sink + phase.delivered, SINK_COUNT_WAIT).await
                    - at_sink;
            at_sink += counted;
            failures.extend(refused_or_lost(&label, &phase, load.messages, counted));
            if !relay.daemon.is_running() {
                anyhow::bail!("relay-in died during the run:\n{}", relay.daemon.log_tail());
            }
            let usage = &phase.processes[0];
            worst_kb = worst_kb.max(usage.end.peak_kb);
            let cpu_us = 1e6 * usage.cpu_seconds / phase.delivered.max(1) as f64;
            rows.push(format!(
                "| {label} | {} | {} | {cpu_us:.0} |\n",
                mb(usage.end.peak_kb),
                mb(usage.end.now_kb),
            ));
            report.phases.push(phase);
        }
    }
    let peak = worst_kb as f64 / 1024.0;
    report.check(
        &format!(
            "relay-in peak RSS ≤ {} MB at {SESSIONS} sessions (2 KB and 100 KB)",
            targets::CONCURRENCY_100_RSS_MB
        ),
        format!("{peak:.1} MB"),
        peak <= targets::CONCURRENCY_100_RSS_MB,
    );
    let idle = relay.idle.now_kb as f64 / 1024.0;
    report.check(
        &format!("relay-in idle RSS ≤ {} MB", targets::IDLE_RSS_MB),
        format!("{idle:.1} MB (anonymous {})", mb(relay.idle.anon_kb)),
        idle <= targets::IDLE_RSS_MB,
    );
    tokio::time::sleep(AFTER_BURST).await;
    let after = relay.daemon.memory()?;
    report.fact(
        &format!(
            "relay-in RSS {} s after the last phase",
            AFTER_BURST.as_secs()
        ),
        after.now_kb as f64 / 1024.0,
        "MB",
    );
    let mut table = format!(
        "limit.ini [concurrency] max raised 50 → {RAISED_PER_ADDRESS} (admission only); \
         relay-in idle RSS {} MB (anonymous {}), {} MB (anonymous {}) {} s after the last phase\n\n\
         | load (smtp-source → relay-in → smtp-sink) | relay-in peak RSS MB | RSS after the phase MB | relay-in µs CPU/msg |\n\
         |---|---:|---:|---:|\n",
        mb(relay.idle.now_kb),
        mb(relay.idle.anon_kb),
        mb(after.now_kb),
        mb(after.anon_kb),
        AFTER_BURST.as_secs(),
    );
    table.extend(rows);
    report.table = Some(table);
    finish_counted(report, &failures)
}

/// The shipped configuration as `scenario headline` runs it, with only
/// limit.ini's `[concurrency] max` raised.
fn raised_relay_in(
    config_in: &Path,
    listen: SocketAddr,
    backend: SocketAddr,
    pem: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = shipped_relay_in(config_in, listen, backend, pem)?;
    let limit = files.iter_mut().find(|(name, _)| name == "limit.ini");
    match limit {
        Some((_, text)) => *text = with_concurrency_max(text, RAISED_PER_ADDRESS),
        None => files.push((
            "limit.ini".to_string(),
            with_concurrency_max("", RAISED_PER_ADDRESS),
        )),
    }
    Ok(files)
}

/// limit.ini with `[concurrency] max=N`, every other line as it was.
fn with_concurrency_max(shipped: &str, max: usize) -> String {
    let mut out = String::new();
    let mut section = String::new();
    let mut written = false;
    for line in shipped.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if section == "concurrency" && !written {
                out.push_str(&format!("max={max}\n"));
                written = true;
            }
            section = trimmed.trim_matches(['[', ']']).trim().to_string();
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        if section == "concurrency" && key == "max" {
            if !written {
                out.push_str(&format!("max={max}\n"));
                written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !written {
        if section != "concurrency" {
            out.push_str("[concurrency]\n");
        }
        out.push_str(&format!("max={max}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concurrency_max_is_raised_and_the_rest_kept() {
        let shipped = "; per address\n[concurrency]\nmax=50\n[unrecognized_commands]\nmax=10\n";
        assert_eq!(
            with_concurrency_max(shipped, 200),
            "; per address\n[concurrency]\nmax=200\n[unrecognized_commands]\nmax=10\n"
        );
        assert_eq!(
            with_concurrency_max("[concurrency]\n[x]\nmax=3\n", 200),
            "[concurrency]\nmax=200\n[x]\nmax=3\n"
        );
        assert_eq!(
            with_concurrency_max("[x]\nmax=3\n", 200),
            "[x]\nmax=3\n[concurrency]\nmax=200\n"
        );
    }
}
