//! `scenario relay-out-intake` and `relay-out-delivery`: relay-out taking
//! mail into its durable queue (fsync per message), and delivering a full
//! queue through MX records from the test DNS to the sink.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Bench, Measured, check_idle_rss, load_phase, smtp_ini, tls_ini};
use crate::bench::cli::Load;
use crate::bench::procfs;
use crate::bench::report::{Phase, ScenarioReport};
use crate::bench::sink::{Offers, query_stats};
use crate::bench::tls::SERVER_NAME;
use crate::dns::{TestDns, TestZone};
use crate::process::free_port;

/// relay-out's intake rate with fsync, concurrency 20.
const MIN_INTAKE_RATE: f64 = 500.0;
/// How often the drain of the queue is polled.
const POLL: Duration = Duration::from_millis(20);

/// relay-out with its test DNS and, for delivery, the sink as the MX.
pub(super) struct RelayOut {
    pub(super) relay: Measured,
    dir: std::path::PathBuf,
    pub(super) addr: SocketAddr,
    /// Kept alive: relay-out resolves through it.
    _dns: TestDns,
    outbound: String,
}

/// Starts relay-out with delivery disabled, routing example.com to
/// 127.0.0.1 at `mx_port`.
async fn start(bench: &Bench, mx_port: u16, mx_tls: bool) -> anyhow::Result<RelayOut> {
    start_with(bench, mx_port, mx_tls, None, true, None).await
}

/// Starts relay-out routing example.com to 127.0.0.1 at `mx_port` through
/// the test DNS, its queue in `queue_dir` (default: its config directory),
/// delivering unless `disabled`; `concurrency_max` replaces the default
/// per-address connection limit (limit.ini `[concurrency] max`).
pub(super) async fn start_with(
    bench: &Bench,
    mx_port: u16,
    mx_tls: bool,
    queue_dir: Option<&Path>,
    disabled: bool,
    concurrency_max: Option<usize>,
) -> anyhow::Result<RelayOut> {
    let zone = TestZone::new()
        .mx("example.com", 10, "mx.example.com")
        .a("mx.example.com", Ipv4Addr::LOCALHOST);
    let dns = TestDns::start(zone).await?;
    let queue_dir = match queue_dir {
        Some(dir) => dir.display().to_string(),
        None => format!("{}/queue", super::DIR_PLACEHOLDER),
    };
    let outbound = format!(
        "nameservers={}\nremote_port={mx_port}\nlocal_mx_ok=true\nqueue_dir={queue_dir}\nenable_tls={mx_tls}\n",
        dns.nameservers_setting(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let pki = bench.pki()?;
    let mut files = vec![
        ("smtp.ini", smtp_ini(addr, "")),
        ("me", format!("{SERVER_NAME}\n")),
        ("relay_acl_allow", "127.0.0.0/8\n".to_string()),
        ("outbound.ini", format!("{outbound}disabled={disabled}\n")),
        ("tls.ini", tls_ini(&pki.server_pem)),
    ];
    if let Some(max) = concurrency_max {
        files.push(("limit.ini", format!("[concurrency]\nmax={max}\n")));
    }
    let (relay, dir) = bench.start_relay("relay-out", &files, addr).await?;
    let outbound = outbound.replace(super::DIR_PLACEHOLDER, &dir.display().to_string());
    Ok(RelayOut {
        relay,
        dir,
        addr,
        _dns: dns,
        outbound,
    })
}

/// Messages in the queue: one `.msg` file each, not counting spares (or, in
/// the layout before issue 19, one `.json` envelope each).
fn queued(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("queue"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    (name.ends_with(".msg") && !spool::is_spare_file(&e.path()))
                        || name.ends_with(".json")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Clients → relay-out, delivery off, so only the intake is measured.
async fn fill(bench: &Bench, out: &mut RelayOut, load: &Load) -> anyhow::Result<Phase> {
    let tls = load
        .tls
        .then(|| bench.pki()?.client(SERVER_NAME))
        .transpose()?;
    let phase = load_phase(
        "relay-out intake",
        out.addr,
        load,
        tls,
        &mut [&mut out.relay],
    )
    .await?;
    if !out.relay.daemon.is_running() {
        bail!(
            "relay-out died during the run:\n{}",
            out.relay.daemon.log_tail()
        );
    }
    Ok(phase)
}

pub async fn intake(bench: &Bench, load: &Load) -> anyhow::Result<ScenarioReport> {
    let mut out = start(bench, 9, false).await?;
    let phase = fill(bench, &mut out, load).await?;
    let mut report = ScenarioReport {
        scenario: format!(
            "relay-out intake{}",
            if load.tls { " STARTTLS" } else { "" }
        ),
        command: format!("postern-bench scenario relay-out-intake {}", load.args()),
        ..ScenarioReport::default()
    };
    let queued = queued(&out.dir);
    report.check(
        "every accepted message is in the queue",
        format!("{} accepted, {queued} queued", phase.delivered),
        queued as u64 == phase.delivered,
    );
    report.check(
        "no errors",
        format!("{} refused, {} failed", phase.refused, phase.failed),
        phase.errors_total() == 0,
    );
    if load.concurrency == 20 {
        report.check(
            &format!("intake with fsync ≥ {MIN_INTAKE_RATE} msg/s at concurrency 20"),
            format!("{:.0} msg/s", phase.messages_per_second),
            phase.messages_per_second >= MIN_INTAKE_RATE,
        );
    }
    check_idle_rss(&mut report, &[&out.relay]);
    report.phases.push(phase);
    Ok(report)
}

pub async fn delivery(bench: &Bench, load: &Load, mx_tls: bool) -> anyhow::Result<ScenarioReport> {
    let offers = Offers {
        xclient: false,
        starttls: mx_tls,
    };
    let (mut sink, sink_addr) = bench.start_sink(offers).await?;
    let mut out = start(bench, sink_addr.port(), mx_tls).await?;
    let filled = fill(bench, &mut out, load).await?;
    let mut report = ScenarioReport {
        scenario: format!(
            "relay-out delivery{}",
            if mx_tls { " (STARTTLS to the MX)" } else { "" }
        ),
        command: format!(
            "postern-bench scenario relay-out-delivery {}{}",
            load.args(),
            if mx_tls { " --mx-tls" } else { "" }
        ),
        ..ScenarioReport::default()
    };
    let queued = queued(&out.dir) as u64;
    let before = query_stats(sink_addr).await?.messages;

    // Release the queue: delivery on, and SIGHUP makes everything due now.
    std::fs::write(out.dir.join("outbound.ini"), &out.outbound).context("enabling delivery")?;
    out.relay.daemon.cpu_mark()?;
    sink.daemon.cpu_mark()?;
    let me = std::process::id();
    let bench_cpu = procfs::cpu_seconds(me)?;
    let machine = procfs::machine_ticks()?;
    let started = Instant::now();
    out.relay.daemon.signal(libc::SIGHUP);
    let deadline = started + load.time_limit().max(Duration::from_secs(60));
    let mut delivered = 0;
    while Instant::now() < deadline {
        delivered = query_stats(sink_addr).await?.messages - before;
        if delivered >= queued {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let machine_busy_percent = procfs::machine_ticks()?.busy_percent_since(machine);
    let bench_cpu_seconds = procfs::cpu_seconds(me)? - bench_cpu;
    // The sink counts a message when it answers 250; relay-out then removes
    // it from the queue, which must follow shortly.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while self::queued(&out.dir) > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(POLL).await;
    }
    let left = self::queued(&out.dir);
    let processes = vec![out.relay.usage()?, sink.usage()?];
    let mut phase = Phase {
        target: "relay-out → sink (MX)".to_string(),
        concurrency: filled.concurrency,
        message_size: filled.message_size,
        delivered,
        seconds,
        messages_per_second: delivered as f64 / seconds.max(f64::EPSILON),
        processes,
        bench_cpu_seconds,
        machine_busy_percent,
        ..Phase::default()
    };
    phase.account_others();
    report.check(
        "the whole queue was delivered and removed",
        format!("{queued} queued, {delivered} delivered, {left} left"),
        delivered == queued && left == 0,
    );
    check_idle_rss(&mut report, &[&out.relay]);
    report.phases.push(filled);
    report.phases.push(phase);
    Ok(report)
}
