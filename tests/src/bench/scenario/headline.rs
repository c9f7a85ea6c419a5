//! `scenario headline`: BENCHMARKS.md's headline table (issue 19), measured
//! as a new user would. Postfix's smtp-source makes the load, every session
//! from 127.0.0.1; Postfix's smtp-sink takes the mail, alone and behind
//! relay-in; relay-in runs the shipped configuration (`config-in/`, so the
//! shipped limits) with XCLIENT to the sink. Each row is measured
//! `--repetitions` times, the sink-alone and relay-in phases of a row side
//! by side (their order alternating between repetitions, so a machine that
//! slows down during the run does not favour either) and the rows
//! interleaved, and the table gives the medians. A phase where smtp-source
//! saw a refusal, or the sink's count differs from what was accepted, fails
//! the run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::{Bench, Measured, finish_counted, load_phase, refused_or_lost, smtp_ini, tls_ini};
use crate::bench::cli::{Generator, Load};
use crate::bench::procfs;
use crate::bench::report::{Phase, ScenarioReport, mb};
use crate::bench::smtp_sink;
use crate::bench::tls::SERVER_NAME;
use crate::process::free_port;

/// How long smtp-sink may take to print a count it has reached.
pub(super) const SINK_COUNT_WAIT: Duration = Duration::from_secs(5);

/// One row of the table: a load, as smtp-source makes it.
struct Row {
    label: &'static str,
    sessions: usize,
    size: usize,
    /// `-d`: a session keeps its connection.
    keep: bool,
    /// The acceptance ratio for this row, if it sets one.
    min_ratio: Option<f64>,
}

/// The rows of issue 19's table.
const ROWS: [Row; 5] = [
    Row {
        label: "1 session, a connection per message",
        sessions: 1,
        size: 2048,
        keep: false,
        min_ratio: Some(0.7),
    },
    Row {
        label: "20 sessions, a connection per message",
        sessions: 20,
        size: 2048,
        keep: false,
        min_ratio: Some(0.5),
    },
    Row {
        label: "100 sessions, a connection per message",
        sessions: 100,
        size: 2048,
        keep: false,
        min_ratio: None,
    },
    Row {
        label: "20 sessions, connections kept (`-d`)",
        sessions: 20,
        size: 2048,
        keep: true,
        min_ratio: Some(0.5),
    },
    Row {
        label: "20 sessions, 100 KB",
        sessions: 20,
        size: 100 * 1024,
        keep: false,
        min_ratio: None,
    },
];

/// relay-in's idle and concurrency-100 memory targets of issue 19 (MB).
const IDLE_RSS_MB: f64 = 8.0;
const PEAK_RSS_100_MB: f64 = 40.0;

/// What the options of `scenario headline` ask for.
pub struct HeadlinePlan {
    pub repetitions: usize,
    /// Messages per 2 KB phase; the 100 KB row sends a fifth of them.
    pub messages: u64,
    /// The shipped relay-in configuration to start from.
    pub config_in: PathBuf,
}

/// The figures of one row over all repetitions.
#[derive(Default)]
struct RowFigures {
    sink: Vec<f64>,
    relay: Vec<f64>,
    ratios: Vec<f64>,
    relay_peak_kb: u64,
    relay_cpu_us: Vec<f64>,
    /// relay-in's CPU per message over what smtp-source and smtp-sink
    /// together cost per message alone: relay-in does one hop of each, so
    /// 1.0 is the premise (one hop of relay-in ≈ smtp-sink), and
    /// unlike the ratio of rates it does not depend on how fast this
    /// machine wakes a process up.
    relay_cpu_over_peers: Vec<f64>,
    /// What smtp-source and smtp-sink cost per message through relay-in
    /// over what they cost alone: the peers' share of the second hop.
    peers_through_over_alone: Vec<f64>,
}

/// CPU seconds per message of the load generator (smtp-source, the bench's
/// child) and smtp-sink in `phase`; smtp-sink is the last process measured.
fn peers_cpu_per_message(phase: &Phase) -> f64 {
    let sink = phase.processes.last().map_or(0.0, |p| p.cpu_seconds);
    (sink + phase.bench_cpu_seconds) / phase.delivered.max(1) as f64
}

pub async fn run(bench: &Bench, plan: &HeadlinePlan) -> anyhow::Result<ScenarioReport> {
    anyhow::ensure!(plan.repetitions >= 1, "--repetitions must be at least 1");
    let (mut sink, sink_addr) = bench.start_smtp_sink().await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let files = shipped_relay_in(&plan.config_in, addr, sink_addr, &bench.pki()?.server_pem)?;
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let (mut relay, _) = bench.start_relay("relay-in", &files, addr).await?;
    let mut report = ScenarioReport {
        scenario: "headline: smtp-source → (relay-in →) smtp-sink, shipped config, XCLIENT"
            .to_string(),
        command: format!(
            "postern-bench scenario headline --repetitions {} --messages {}",
            plan.repetitions, plan.messages
        ),
        ..ScenarioReport::default()
    };
    let sink_output = sink.daemon.output_path.clone();
    let mut at_sink = 0;
    let mut figures: Vec<RowFigures> = ROWS.iter().map(|_| RowFigures::default()).collect();
    let mut failures = Vec::new();
    for repetition in 0..plan.repetitions {
        for (row, figures) in ROWS.iter().zip(figures.iter_mut()) {
            let load = Load {
                concurrency: row.sessions,
                size: row.size,
                messages: if row.size > 2048 {
                    (plan.messages / 5).max(1)
                } else {
                    plan.messages
                },
                duration: None,
                tls: false,
                per_connection: u64::from(!row.keep),
                generator: Generator::SmtpSource,
            };
            let relay_first = repetition % 2 == 1;
            let mut pair: [Option<Phase>; 2] = [None, None];
            for step in 0..2 {
                let through_relay = (step == 0) == relay_first;
                let phase = if through_relay {
                    procfs::reset_peak(relay.daemon.pid())?;
                    let name = format!("relay-in, {}", row.label);
                    load_phase(&name, addr, &load, None, &mut [&mut relay, &mut sink]).await?
                } else {
                    let name = format!("sink alone, {}", row.label);
                    load_phase(&name, sink_addr, &load, None, &mut [&mut sink]).await?
                };
                let counted =
                    smtp_sink::wait_for(&sink_output, at_sink + phase.delivered, SINK_COUNT_WAIT)
                        .await
                        - at_sink;
                at_sink += counted;
                let what = format!("{} (repetition {})", phase.target, repetition + 1);
                failures.extend(refused_or_lost(&what, &phase, load.messages, counted));
                if !relay.daemon.is_running() {
                    anyhow::bail!("relay-in died during the run:\n{}", relay.daemon.log_tail());
                }
                pair[usize::from(through_relay)] = Some(phase.clone());
                report.phases.push(phase);
            }
            let [Some(alone), Some(through)] = pair else {
                unreachable!("both phases of a row ran");
            };
            figures.sink.push(alone.messages_per_second);
            figures.relay.push(through.messages_per_second);
            figures
                .ratios
                .push(through.messages_per_second / alone.messages_per_second.max(f64::EPSILON));
            figures.relay_peak_kb = figures.relay_peak_kb.max(through.processes[0].end.peak_kb);
            let relay_cpu = through.processes[0].cpu_seconds / through.delivered.max(1) as f64;
            figures.relay_cpu_us.push(1e6 * relay_cpu);
            let peers_alone = peers_cpu_per_message(&alone).max(f64::EPSILON);
            figures.relay_cpu_over_peers.push(relay_cpu / peers_alone);
            figures
                .peers_through_over_alone
                .push(peers_cpu_per_message(&through) / peers_alone);
        }
    }
    for (row, figures) in ROWS.iter().zip(&figures) {
        let ratio = median(&figures.ratios);
        if let Some(min) = row.min_ratio {
            report.check(
                &format!("relay-in ≥ {min} × smtp-sink alone, {}", row.label),
                format!("{ratio:.2} × (median of {})", figures.ratios.len()),
                ratio >= min,
            );
        }
        if row.sessions == 100 {
            let peak = figures.relay_peak_kb as f64 / 1024.0;
            report.check(
                &format!("relay-in peak RSS ≤ {PEAK_RSS_100_MB} MB at 100 sessions"),
                format!("{peak:.1} MB"),
                peak <= PEAK_RSS_100_MB,
            );
        }
    }
    let idle = relay.idle.now_kb as f64 / 1024.0;
    report.check(
        &format!("relay-in idle RSS ≤ {IDLE_RSS_MB} MB"),
        format!("{idle:.1} MB (anonymous {})", mb(relay.idle.anon_kb)),
        idle <= IDLE_RSS_MB,
    );
    report.table = Some(table(&figures, plan.repetitions, &relay));
    finish_counted(report, &failures)
}

/// The Markdown table of issue 19: medians, and each rate's range.
fn table(figures: &[RowFigures], repetitions: usize, relay: &Measured) -> String {
    let mut out = format!(
        "median of {repetitions} interleaved repetitions (range in brackets); relay-in idle RSS {} MB\n\n\
         | load (smtp-source) | smtp-sink alone msg/s | through relay-in msg/s | ratio | relay-in µs CPU/msg | relay-in CPU ÷ source + sink alone | source + sink CPU, through ÷ alone | relay-in peak RSS MB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        mb(relay.idle.now_kb)
    );
    for (row, f) in ROWS.iter().zip(figures) {
        out.push_str(&format!(
            "| {} | {:.0} ({}) | {:.0} ({}) | {:.2} ({}) | {:.0} | {:.2} ({}) | {:.2} | {} |\n",
            row.label,
            median(&f.sink),
            range(&f.sink, 0),
            median(&f.relay),
            range(&f.relay, 0),
            median(&f.ratios),
            range(&f.ratios, 2),
            median(&f.relay_cpu_us),
            median(&f.relay_cpu_over_peers),
            range(&f.relay_cpu_over_peers, 2),
            median(&f.peers_through_over_alone),
            mb(f.relay_peak_kb),
        ));
    }
    out
}

/// The median (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `lowest–highest` with `decimals` decimals.
pub fn range(values: &[f64], decimals: usize) -> String {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{low:.decimals$}–{high:.decimals$}")
}

/// relay-in's shipped configuration (every file of `config-in/`, so its
/// limits), changed only where the bench must: the listen address and no
/// reverse DNS (smtp.ini: there is no resolver here), the sink as the
/// backend (smtp_forward.ini's host and port; mode and XCLIENT as shipped),
/// the bench's certificate (tls.ini), and example.com, smtp-source's
/// recipient domain, in host_list.
pub(super) fn shipped_relay_in(
    config_in: &Path,
    listen: SocketAddr,
    backend: SocketAddr,
    pem: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(config_in)
        .with_context(|| format!("reading the shipped configuration {}", config_in.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() || name.ends_with(".md") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        let text = match name.as_str() {
            "smtp.ini" => smtp_ini(listen, ""),
            "tls.ini" => tls_ini(pem),
            "me" => format!("{SERVER_NAME}\n"),
            "host_list" => "example.com\n".to_string(),
            "smtp_forward.ini" => with_backend(&text, backend),
            _ => text,
        };
        files.push((name, text));
    }
    Ok(files)
}

/// smtp_forward.ini with `host` and `port` pointing at `backend`, every
/// other line as shipped.
fn with_backend(shipped: &str, backend: SocketAddr) -> String {
    let mut out = String::new();
    for line in shipped.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "host" => out.push_str(&format!("host={}\n", backend.ip())),
            "port" => out.push_str(&format!("port={}\n", backend.port())),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(range(&[0.61, 0.5, 0.7], 2), "0.50–0.70");
    }

    #[test]
    fn the_backend_is_replaced_and_the_rest_kept() {
        let shipped = "; comment\nhost=10.0.0.2\nport=25\nmode=queue\nxclient=required\n";
        let text = with_backend(shipped, "127.0.0.1:2600".parse().unwrap());
        assert_eq!(
            text,
            "; comment\nhost=127.0.0.1\nport=2600\nmode=queue\nxclient=required\n"
        );
    }
}
