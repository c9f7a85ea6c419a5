//! `scenario relay-out-compare`: relay-out in its own role against Postfix
//! and Haraka (issue 19, point 3), measured as a new user would. The home
//! server is smtp-source on 127.0.0.1; each relay takes its mail (fsync
//! before 250 where the relay does so) and sends it to Postfix's smtp-sink
//! as every recipient's MX. For each load the relays run one after the
//! other (interleaved, so a machine that slows down during the run favours
//! none), and each figure is:
//!
//! - **end to end**: messages over the time from smtp-source's start until
//!   the sink has every one of them;
//! - **accept**: messages over smtp-source's own run time (the relay's 250s).
//!
//! Each relay sends to a sink of its own, so the counts are its own.
//! Then a backlog: the relay's sink is stopped, `--backlog` messages are sent to
//! the relay (which queues them, its deliveries failing), the sink comes
//! back on the same port and the relay is told to retry now; the drain
//! rate is the backlog over the time until the sink has it all, with the
//! peak memory of the relay's processes meanwhile.
//!
//! Every phase checks its count: smtp-source exited 0 (no refusal) and the
//! sink got exactly what was sent; a phase that fails fails the run.

use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::contender::{Contender, Kind, TreeSample};
use super::headline::{median, range};
use super::{Bench, Measured, finish_counted};
use crate::bench::cli::MAX_PHASE;
use crate::bench::client::smtp_source::{self, SmtpSourcePlan};
use crate::bench::procfs;
use crate::bench::queue_root::QueueRoot;
use crate::bench::report::{Phase, ScenarioReport, mb};
use crate::bench::smtp_sink;

/// How often the sink's count is read while waiting for the last message.
const COUNT_POLL: Duration = Duration::from_millis(5);
/// How often the relay's memory is sampled during the drain.
const MEMORY_POLL: Duration = Duration::from_millis(100);
/// A phase gives up when the sink's count has not moved for this long after
/// smtp-source finished (a relay that lost or deferred mail), rather than
/// waiting out [`MAX_PHASE`].
const STALL: Duration = Duration::from_secs(30);
/// Sessions that fill the backlog.
const BACKLOG_SESSIONS: usize = 20;
/// During the drain, a sink count that has not moved for this long gets the
/// relay released again, as an admin would say `postqueue -f` a second time.
/// Postfix defers messages that its queue manager was still trying when
/// the first flush came (the destination was dead then) and would try them
/// only at its next queue run (`queue_run_delay`): 109 of 5,000 once missed
/// the [`STALL`] bound that way and reached the sink in the next phase.
const RELEASE_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// How many times the drain releases the relay again at most.
const RELEASES_AGAIN: u32 = 3;

/// What the options of `scenario relay-out-compare` ask for.
pub struct ComparePlan {
    pub relays: Vec<Kind>,
    /// Messages per 2 KB phase; 100 KB phases send a fifth.
    pub messages: u64,
    /// Messages queued while the MX is down, then released.
    pub backlog: u64,
    pub repetitions: usize,
    /// `--queue-root`: absent, `ext4-image`, or a directory.
    pub queue_root: Option<String>,
    pub haraka_install: PathBuf,
    /// relay-out's per-address connection limit, when not its default.
    pub concurrency_max: Option<usize>,
}

/// A load of the table: sessions and message size.
const LOADS: [(usize, usize); 4] = [(1, 2048), (20, 2048), (100, 2048), (20, 100 * 1024)];

/// The figures of one relay at one load, over the repetitions.
#[derive(Default, Clone)]
struct Cell {
    end_to_end: Vec<f64>,
    accept: Vec<f64>,
}

/// One relay's drain figures over the repetitions.
#[derive(Default, Clone)]
struct Drain {
    rate: Vec<f64>,
    /// The largest process's VmHWM (exact for a one-process relay).
    peak_rss_kb: u64,
    /// Sampled: the tree's summed RSS (shared pages once per process) and
    /// summed PSS (shared pages split between their users).
    peak_rss_sum_kb: u64,
    peak_pss_kb: u64,
}

pub async fn run(bench: &Bench, plan: &ComparePlan) -> anyhow::Result<ScenarioReport> {
    anyhow::ensure!(plan.repetitions >= 1, "--repetitions must be at least 1");
    let root = QueueRoot::prepare(plan.queue_root.as_deref(), &bench.work)?;
    let mut relays = Vec::new();
    // Each relay has its own sink, so that a relay's late or repeated
    // deliveries are counted as its own, never in another relay's phase
    // (with one shared sink, Haraka's repeats once showed up as relay-out's).
    let mut sinks = Vec::new();
    let mut skipped = Vec::new();
    for &kind in &plan.relays {
        let queue = root.queue_dir(&kind.name().to_lowercase())?;
        let (sink, sink_addr) = bench.start_smtp_sink_at(None).await?;
        match Contender::start(
            bench,
            kind,
            &queue,
            sink_addr,
            &plan.haraka_install,
            plan.concurrency_max,
        )
        .await
        {
            Ok(relay) => {
                relays.push(relay);
                sinks.push(Some((sink, sink_addr)));
            }
            // Only Haraka, installed apart, may be missing; the others are
            // what the comparison is about.
            Err(error) if kind == Kind::Haraka => {
                skipped.push(format!("Haraka not measured: {error:#}"));
            }
            Err(error) => return Err(error.context(format!("starting {}", kind.name()))),
        }
    }
    let mut report = ScenarioReport {
        scenario: format!(
            "relay-out compare: smtp-source → relay → smtp-sink (MX), queues on {}",
            root.description
        ),
        command: command(plan),
        ..ScenarioReport::default()
    };
    let mut cells = vec![vec![Cell::default(); relays.len()]; LOADS.len()];
    let mut drains = vec![Drain::default(); relays.len()];
    let mut failures = Vec::new();
    let count = relays.len();
    for repetition in 0..plan.repetitions {
        // Each repetition starts with the next relay, so none always runs
        // first (on a cold page cache) or last.
        let order: Vec<usize> = (0..count).map(|k| (repetition + k) % count).collect();
        for (load, &(sessions, size)) in LOADS.iter().enumerate() {
            let messages = if size > 2048 {
                (plan.messages / 5).max(1)
            } else {
                plan.messages
            };
            for &i in &order {
                let relay = &mut relays[i];
                let (sink, _) = sinks[i].as_ref().context("the relay's sink")?;
                let phase = through(relay, sink, sessions, size, messages).await?;
                eprintln!(
                    "postern-bench: {} c={sessions} {size} octets: {:.0} msg/s end to end, {:.0} accepted{}",
                    relay.kind.name(),
                    phase.end_to_end,
                    phase.accept,
                    phase
                        .failure
                        .as_deref()
                        .map(|f| format!(" FAILED: {f}"))
                        .unwrap_or_default()
                );
                if let Some(failure) = phase.failure.clone() {
                    failures.push(failure);
                }
                cells[load][i].end_to_end.push(phase.end_to_end);
                cells[load][i].accept.push(phase.accept);
                report
                    .phases
                    .push(phase.into_phase(relay.kind, sessions, size));
            }
        }
        for &i in &order {
            let relay = &mut relays[i];
            let (sink, sink_addr) = sinks[i].take().context("the relay's sink")?;
            let (drained, new_sink) = drain(bench, relay, sink, sink_addr, plan.backlog).await?;
            eprintln!(
                "postern-bench: {} drain of {}: {:.0} msg/s{}",
                relay.kind.name(),
                plan.backlog,
                drained.rate,
                drained
                    .failure
                    .as_deref()
                    .map(|f| format!(" FAILED: {f}"))
                    .unwrap_or_default()
            );
            sinks[i] = Some((new_sink, sink_addr));
            if let Some(failure) = drained.failure.clone() {
                failures.push(failure);
            }
            drains[i].rate.push(drained.rate);
            drains[i].peak_rss_kb = drains[i].peak_rss_kb.max(drained.peak_rss_kb);
            drains[i].peak_pss_kb = drains[i].peak_pss_kb.max(drained.peak.pss_kb);
            drains[i].peak_rss_sum_kb = drains[i].peak_rss_sum_kb.max(drained.peak.rss_kb);
        }
    }
    for note in &skipped {
        report.check("every relay measured", note.clone(), false);
    }
    for (relay, drain) in relays.iter().zip(&drains) {
        let name = relay.kind.name();
        report.fact(
            &format!("{name} drain (median)"),
            median(&drain.rate),
            "msg/s",
        );
        report.fact(
            &format!("{name} drain peak RSS, largest process"),
            drain.peak_rss_kb as f64 / 1024.0,
            "MB",
        );
        report.fact(
            &format!("{name} drain peak PSS, all processes"),
            drain.peak_pss_kb as f64 / 1024.0,
            "MB",
        );
    }
    report.table = Some(table(&relays, &cells, &drains, plan, &root));
    // Stop the relays, then unmount their queues.
    drop(relays);
    drop(root);
    finish_counted(report, &failures)
}

/// The command that reproduces the run.
fn command(plan: &ComparePlan) -> String {
    let relays: Vec<&str> = plan
        .relays
        .iter()
        .map(|kind| match kind {
            Kind::RelayOut => "relay-out",
            Kind::Postfix => "postfix",
            Kind::Haraka => "haraka",
        })
        .collect();
    let mut command = format!(
        "postern-bench scenario relay-out-compare --relays {} --messages {} --backlog {} --repetitions {}",
        relays.join(","),
        plan.messages,
        plan.backlog,
        plan.repetitions
    );
    if let Some(root) = &plan.queue_root {
        command.push_str(&format!(" --queue-root {root}"));
    }
    if let Some(max) = plan.concurrency_max {
        command.push_str(&format!(" --concurrency-max {max}"));
    }
    command
}

/// What one load phase through one relay gave.
struct Through {
    /// The tree's summed RSS at the end, and its largest process's peak.
    rss_kb: u64,
    peak_rss_kb: u64,
    machine_busy_percent: f64,
    messages: u64,
    end_to_end: f64,
    accept: f64,
    seconds: f64,
    cpu_seconds: f64,
    failure: Option<String>,
}

impl Through {
    fn into_phase(self, kind: Kind, sessions: usize, size: usize) -> Phase {
        let mut phase = Phase {
            target: format!(
                "{} (end to end; accept {:.0} msg/s)",
                kind.name(),
                self.accept
            ),
            concurrency: sessions,
            message_size: size,
            delivered: self.messages,
            seconds: self.seconds,
            messages_per_second: self.end_to_end,
            processes: vec![crate::bench::daemon::Usage {
                process: format!("{} (all processes)", kind.name()),
                cpu_seconds: self.cpu_seconds,
                end: crate::bench::procfs::Memory {
                    now_kb: self.rss_kb,
                    peak_kb: self.peak_rss_kb,
                    anon_kb: 0,
                },
                ..Default::default()
            }],
            machine_busy_percent: self.machine_busy_percent,
            ..Phase::default()
        };
        phase.account_others();
        phase
    }
}

/// smtp-source → `relay` → the sink, `messages` messages.
async fn through(
    relay: &mut Contender,
    sink: &Measured,
    sessions: usize,
    size: usize,
    messages: u64,
) -> anyhow::Result<Through> {
    let output = sink.daemon.output_path.clone();
    let before = smtp_sink::messages(&output);
    relay.reset_peaks();
    let cpu_before = relay.sample().cpu_seconds;
    let machine = procfs::machine_ticks()?;
    let plan = SmtpSourcePlan {
        target: relay.addr,
        sessions,
        messages,
        size,
        keep_connections: false,
        time_limit: MAX_PHASE,
    };
    let started = Instant::now();
    let source = tokio::spawn(async move { smtp_source::run(&plan).await });
    let target = before + messages;
    let deadline = started + MAX_PHASE;
    let mut at_sink = before;
    let mut progress = Instant::now();
    while at_sink < target && Instant::now() < deadline {
        tokio::time::sleep(COUNT_POLL).await;
        let now = smtp_sink::messages(&output);
        if now != at_sink {
            progress = Instant::now();
        }
        at_sink = now;
        let stalled = progress.elapsed() > STALL;
        if source.is_finished() && (stalled || !relay.is_running()) {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let outcome = source.await??;
    let machine_busy_percent = procfs::machine_ticks()?.busy_percent_since(machine);
    let end = relay.sample();
    let cpu_seconds = end.cpu_seconds - cpu_before;
    let got = at_sink - before;
    let failure = (!outcome.success || got != messages).then(|| {
        format!(
            "{}, {sessions} sessions, {size} octets: {} of {messages} accepted, {got} at the sink{}{}",
            relay.kind.name(),
            outcome.completed,
            outcome
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            if relay.is_running() {
                String::new()
            } else {
                format!("; it died:\n{}", relay.log_tail())
            }
        )
    });
    Ok(Through {
        rss_kb: end.rss_kb,
        peak_rss_kb: relay.peak_rss_kb(),
        machine_busy_percent,
        messages,
        end_to_end: got as f64 / seconds.max(f64::EPSILON),
        accept: outcome.completed as f64 / outcome.elapsed.as_secs_f64().max(f64::EPSILON),
        seconds,
        cpu_seconds,
        failure,
    })
}

/// What one drain gave.
struct Drained {
    rate: f64,
    peak: TreeSample,
    peak_rss_kb: u64,
    failure: Option<String>,
}

/// Queues `backlog` messages on `relay` with the sink down, brings the sink
/// back on `sink_addr`, releases the queue and waits until the sink has it
/// all. Returns the new sink.
async fn drain(
    bench: &Bench,
    relay: &mut Contender,
    sink: Measured,
    sink_addr: SocketAddr,
    backlog: u64,
) -> anyhow::Result<(Drained, Measured)> {
    drop(sink);
    // Hold the sink's port while it is down, so no other program on the
    // machine (a parallel test's free port) takes it; smtp-sink binds with
    // SO_REUSEADDR beside this socket, which never listens.
    let reservation = tokio::net::TcpSocket::new_v4()?;
    reservation.set_reuseaddr(true)?;
    reservation.bind(sink_addr)?;
    let fill = SmtpSourcePlan {
        target: relay.addr,
        sessions: BACKLOG_SESSIONS,
        messages: backlog,
        size: 2048,
        keep_connections: false,
        time_limit: MAX_PHASE,
    };
    let filled = smtp_source::run(&fill).await?;
    let (sink, _) = bench.start_smtp_sink_at(Some(sink_addr)).await?;
    drop(reservation);
    let output = sink.daemon.output_path.clone();
    relay.reset_peaks();
    let mut peak = relay.sample();
    let started = Instant::now();
    relay.release().await?;
    let deadline = started + MAX_PHASE;
    let mut sampled = Instant::now();
    let mut at_sink = 0;
    let mut progress = Instant::now();
    let mut released_again = 0;
    while at_sink < filled.completed && Instant::now() < deadline && progress.elapsed() < STALL {
        tokio::time::sleep(COUNT_POLL).await;
        let now = smtp_sink::messages(&output);
        if now != at_sink {
            progress = Instant::now();
        }
        at_sink = now;
        if progress.elapsed() >= RELEASE_AGAIN_AFTER && released_again < RELEASES_AGAIN {
            released_again += 1;
            eprintln!(
                "postern-bench: {} drain: {at_sink} of {} at the sink, unmoved for {} s: released again",
                relay.kind.name(),
                filled.completed,
                RELEASE_AGAIN_AFTER.as_secs()
            );
            relay.release().await?;
            progress = Instant::now();
        }
        if sampled.elapsed() >= MEMORY_POLL {
            let now = relay.sample();
            peak.rss_kb = peak.rss_kb.max(now.rss_kb);
            peak.pss_kb = peak.pss_kb.max(now.pss_kb);
            sampled = Instant::now();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let failure = (!filled.success || at_sink != backlog).then(|| {
        format!(
            "{} drain: {} of {backlog} accepted while the MX was down, {at_sink} at the sink after {seconds:.1} s{}",
            relay.kind.name(),
            filled.completed,
            filled
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    });
    let drained = Drained {
        rate: at_sink as f64 / seconds.max(f64::EPSILON),
        peak,
        peak_rss_kb: relay.peak_rss_kb(),
        failure,
    };
    Ok((drained, sink))
}

/// Issue 19's table: one column per relay; end-to-end msg/s (accept msg/s)
/// as medians, with the end-to-end range; the drain's rate and memory.
fn table(
    relays: &[Contender],
    cells: &[Vec<Cell>],
    drains: &[Drain],
    plan: &ComparePlan,
    root: &QueueRoot,
) -> String {
    let names: Vec<&str> = relays.iter().map(|r| r.kind.name()).collect();
    let mut out = format!(
        "queues on {}; median of {} repetition(s); cells: end-to-end msg/s [range] (accept msg/s)\n\n| load | {} |\n|---|{}\n",
        root.description,
        plan.repetitions,
        names.join(" | "),
        "---:|".repeat(names.len())
    );
    for (&(sessions, size), row) in LOADS.iter().zip(cells) {
        let texts: Vec<String> = row
            .iter()
            .map(|cell| {
                format!(
                    "{:.0} [{}] ({:.0})",
                    median(&cell.end_to_end),
                    range(&cell.end_to_end, 0),
                    median(&cell.accept)
                )
            })
            .collect();
        out.push_str(&format!(
            "| c={sessions}, {} KB | {} |\n",
            size / 1024,
            texts.join(" | ")
        ));
    }
    let texts: Vec<String> = drains
        .iter()
        .map(|d| {
            format!(
                "{:.0} msg/s [{}], peak RSS {} MB (all processes {} MB, PSS {} MB)",
                median(&d.rate),
                range(&d.rate, 0),
                mb(d.peak_rss_kb),
                mb(d.peak_rss_sum_kb),
                mb(d.peak_pss_kb)
            )
        })
        .collect();
    out.push_str(&format!(
        "| {} queued while the MX is down, then released: drain | {} |\n",
        plan.backlog,
        texts.join(" | ")
    ));
    if relays.len() > 1 && relays[0].kind == Kind::RelayOut {
        for (j, relay) in relays.iter().enumerate().skip(1) {
            let ratios: Vec<String> = LOADS
                .iter()
                .zip(cells_ratio(cells, j))
                .map(|(&(s, size), r)| format!("c={s} {} KB {r:.2}×", size / 1024))
                .collect();
            out.push_str(&format!(
                "\nrelay-out / {} end to end: {}",
                relay.kind.name(),
                ratios.join(", ")
            ));
        }
        out.push('\n');
    }
    out
}

/// relay-out's median end-to-end rate over relay `j`'s, per load.
fn cells_ratio(cells: &[Vec<Cell>], j: usize) -> Vec<f64> {
    cells
        .iter()
        .map(|row| median(&row[0].end_to_end) / median(&row[j].end_to_end).max(f64::EPSILON))
        .collect()
}
