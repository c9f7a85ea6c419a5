//! The scenarios: each starts what it measures, loads it, and reports.

pub mod contender;
mod haraka;
mod headline;
mod idle;
mod relay_in;
mod relay_in_memory;
mod relay_out;
mod relay_out_compare;
mod sink;
mod suite;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;

pub use suite::suite;

use super::cli::{Common, Generator, Load, Scenario};
use super::client::smtp_source::{self, SmtpSourcePlan};
use super::client::{self, ClientTls, LoadPlan};
use super::daemon::{self, Daemon, Usage};
use super::message::WireMessage;
use super::procfs::{self, Memory};
use super::report::{Phase, ScenarioReport};
use super::sink::Offers;
use super::stats::Latency;
use super::tls::BenchPki;
use crate::process::{free_port, running_as_root};

/// Stands for the daemon's config directory in the files given to
/// `start_relay`.
pub const DIR_PLACEHOLDER: &str = "{{DIR}}";

/// Postfix's test sink, from the postfix package.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// How long a daemon is left alone after startup before its idle memory is
/// read (lazy initialisation done, nothing else running).
const SETTLE: Duration = Duration::from_millis(300);
/// Reply timeout of the load client: far above any healthy reply on
/// loopback, short enough that a stuck peer ends the run.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one scenario.
pub async fn run(scenario: &Scenario, common: &Common) -> anyhow::Result<ScenarioReport> {
    let bench = Bench::new(common)?;
    match scenario {
        Scenario::Sink { load } => sink::run(&bench, load).await,
        Scenario::RelayIn {
            load,
            mode,
            backend_tls,
            no_baseline,
            sink,
        } => relay_in::run(&bench, load, *mode, *backend_tls, !no_baseline, *sink).await,
        Scenario::RelayOutIntake { load } => relay_out::intake(&bench, load).await,
        Scenario::RelayOutDelivery { load, mx_tls } => {
            relay_out::delivery(&bench, load, *mx_tls).await
        }
        Scenario::Headline {
            repetitions,
            messages,
            config_in,
        } => {
            let plan = headline::HeadlinePlan {
                repetitions: *repetitions,
                messages: *messages,
                config_in: config_in
                    .clone()
                    .unwrap_or_else(super::cli::default_config_in),
            };
            headline::run(&bench, &plan).await
        }
        Scenario::RelayInMemory {
            messages,
            config_in,
        } => {
            let plan = relay_in_memory::MemoryPlan {
                messages: *messages,
                config_in: config_in
                    .clone()
                    .unwrap_or_else(super::cli::default_config_in),
            };
            relay_in_memory::run(&bench, &plan).await
        }
        Scenario::RelayOutCompare {
            relays,
            messages,
            backlog,
            repetitions,
            queue_root,
            haraka,
            concurrency_max,
        } => {
            let plan = relay_out_compare::ComparePlan {
                relays: relays.iter().map(|r| r.kind()).collect(),
                messages: *messages,
                backlog: *backlog,
                repetitions: *repetitions,
                queue_root: queue_root.clone(),
                haraka_install: haraka
                    .clone()
                    .unwrap_or_else(|| haraka::DEFAULT_INSTALL.into()),
                concurrency_max: *concurrency_max,
            };
            relay_out_compare::run(&bench, &plan).await
        }
        Scenario::Idle {
            connections,
            per_address,
        } => idle::run(&bench, *connections, *per_address).await,
    }
}

/// What every scenario of one invocation shares: where the binaries are,
/// the work directory, the daemons' log level, and one CA.
pub struct Bench {
    bins: PathBuf,
    work: PathBuf,
    /// Removes the work directory at the end unless `--work-dir` was given.
    _temp: Option<tempfile::TempDir>,
    relay_log: String,
    pki: OnceLock<BenchPki>,
    /// Numbers the daemons' directories within the work directory.
    started: AtomicUsize,
}

impl Bench {
    pub fn new(common: &Common) -> anyhow::Result<Bench> {
        let bins = daemon::bin_dir(common.bin_dir.as_deref())?;
        let (work, temp) = match &common.work_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("postern-bench.")
                    .tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        Ok(Bench {
            bins,
            work,
            _temp: temp,
            relay_log: common.relay_log.clone(),
            pki: OnceLock::new(),
            started: AtomicUsize::new(0),
        })
    }

    fn pki(&self) -> anyhow::Result<&BenchPki> {
        if let Some(pki) = self.pki.get() {
            return Ok(pki);
        }
        let pki = BenchPki::create(&self.work)?;
        Ok(self.pki.get_or_init(|| pki))
    }

    /// A fresh directory for one daemon.
    fn daemon_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join(format!("{n:02}-{name}"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Starts the sink process on a free port.
    async fn start_sink(&self, offers: Offers) -> anyhow::Result<(Measured, SocketAddr)> {
        let dir = self.daemon_dir("sink")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let listen = addr.to_string();
        let mut args = vec!["serve-sink", "--listen", listen.as_str()];
        if offers.xclient {
            args.push("--xclient");
        }
        let pem;
        if offers.starttls {
            pem = self.pki()?.sink_pem.display().to_string();
            args.extend(["--tls-pem", pem.as_str()]);
        }
        let exe = std::env::current_exe().context("locating postern-bench")?;
        let daemon = Daemon::start("sink", &exe, &args, &[], dir.join("sink.log"), addr)?;
        Ok((Measured::settle(daemon).await?, addr))
    }

    /// Starts Postfix's `smtp-sink` on a free port: XCLIENT and PIPELINING
    /// offered (its defaults), up to 1,000 sessions.
    async fn start_smtp_sink(&self) -> anyhow::Result<(Measured, SocketAddr)> {
        self.start_smtp_sink_at(None).await
    }

    /// [`Bench::start_smtp_sink`] on `addr` (a free port if `None`): an MX
    /// that comes back where it was.
    async fn start_smtp_sink_at(
        &self,
        addr: Option<SocketAddr>,
    ) -> anyhow::Result<(Measured, SocketAddr)> {
        let program = Path::new(SMTP_SINK);
        anyhow::ensure!(
            program.exists(),
            "{SMTP_SINK} not found: install the postfix package (apt install postfix)"
        );
        let dir = self.daemon_dir("smtp-sink")?;
        let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let listen = addr.to_string();
        // -c: the message count the bench checks (crate::bench::smtp_sink).
        let mut args = vec!["-c", "-m", "1000", "-h", "sink.bench.test"];
        if running_as_root() {
            // smtp-sink refuses to keep root privileges.
            args.extend(["-u", "nobody"]);
        }
        args.extend([listen.as_str(), "1000"]);
        let daemon = Daemon::start(
            "smtp-sink",
            program,
            &args,
            &[],
            dir.join("smtp-sink.log"),
            addr,
        )?;
        Ok((Measured::settle(daemon).await?, addr))
    }

    /// Writes `files` into a fresh config directory and starts `name -c DIR`,
    /// listening on `addr`. [`DIR_PLACEHOLDER`] in a file stands for the
    /// directory (paths in configs must be absolute, e.g. `queue_dir`).
    async fn start_relay(
        &self,
        name: &str,
        files: &[(&str, String)],
        addr: SocketAddr,
    ) -> anyhow::Result<(Measured, PathBuf)> {
        let dir = self.daemon_dir(name)?;
        for (file, text) in files {
            let text = text.replace(DIR_PLACEHOLDER, &dir.display().to_string());
            std::fs::write(dir.join(file), text)?;
        }
        let program = daemon::binary(&self.bins, name)?;
        let config = dir.display().to_string();
        let env = [("RUST_LOG", self.relay_log.as_str())];
        let log = dir.join(format!("{name}.log"));
        let daemon = Daemon::start(name, &program, &["-c", &config], &env, log, addr)?;
        Ok((Measured::settle(daemon).await?, dir))
    }
}

/// A daemon and its memory right after startup.
pub struct Measured {
    pub daemon: Daemon,
    pub idle: Memory,
}

impl Measured {
    async fn settle(mut daemon: Daemon) -> anyhow::Result<Measured> {
        tokio::time::sleep(SETTLE).await;
        let idle = daemon.memory()?;
        daemon.cpu_mark()?;
        Ok(Measured { daemon, idle })
    }

    fn usage(&mut self) -> anyhow::Result<Usage> {
        self.daemon.usage(self.idle)
    }
}

/// The address every load session comes from: one, as a big sender's
/// outbound IP (or the home server) is, so the per-address limits apply as
/// they do to real senders. Spreading the sessions over 127.0.1.x once hid
/// a limit that refused a real sender.
const LOAD_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One load phase against `target`, measuring `processes` meanwhile.
async fn load_phase(
    name: &str,
    target: SocketAddr,
    load: &Load,
    tls: Option<ClientTls>,
    processes: &mut [&mut Measured],
) -> anyhow::Result<Phase> {
    if load.generator == Generator::SmtpSource {
        anyhow::ensure!(tls.is_none(), "smtp-source speaks no TLS: leave out --tls");
        return smtp_source_phase(name, target, load, processes).await;
    }
    let message = WireMessage::new(load.size);
    let plan = LoadPlan {
        target,
        concurrency: load.concurrency,
        messages: load.messages,
        duration: Some(load.time_limit()),
        message: std::sync::Arc::new(message.clone()),
        tls,
        source: Some(LOAD_SOURCE),
        reply_timeout: REPLY_TIMEOUT,
        per_connection: load.per_connection,
    };
    let marks = Marks::start(processes)?;
    let mut outcome = client::run(&plan).await;
    let (processes, bench_cpu_seconds, machine_busy_percent) = marks.finish(processes)?;
    let mut phase = Phase {
        target: name.to_string(),
        concurrency: load.concurrency,
        message_size: message.size,
        delivered: outcome.delivered,
        refused: outcome.refused,
        failed: outcome.failed,
        connections: outcome.connections,
        seconds: outcome.elapsed.as_secs_f64(),
        messages_per_second: outcome.rate(),
        latency: Some(Latency::from_micros(&mut outcome.latencies_us)),
        processes,
        bench_cpu_seconds,
        machine_busy_percent,
        errors: outcome.errors,
        ..Phase::default()
    };
    phase.account_others();
    Ok(phase)
}

/// CPU marks at the start of a load phase: the measured processes', the
/// bench's own (with a load generator it ran as a child, smtp-source) and
/// the whole machine's.
struct Marks {
    bench_cpu: f64,
    machine: procfs::MachineTicks,
}

impl Marks {
    fn start(processes: &mut [&mut Measured]) -> anyhow::Result<Marks> {
        for process in processes.iter_mut() {
            process.daemon.cpu_mark()?;
        }
        Ok(Marks {
            bench_cpu: bench_cpu_seconds()?,
            machine: procfs::machine_ticks()?,
        })
    }

    /// What each process used since the start, the bench's CPU seconds and
    /// how busy the machine was (percent).
    fn finish(self, processes: &mut [&mut Measured]) -> anyhow::Result<(Vec<Usage>, f64, f64)> {
        let machine_busy_percent = procfs::machine_ticks()?.busy_percent_since(self.machine);
        let bench_cpu_seconds = bench_cpu_seconds()? - self.bench_cpu;
        let processes = processes
            .iter_mut()
            .map(|p| p.usage())
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((processes, bench_cpu_seconds, machine_busy_percent))
    }
}

/// CPU seconds of the bench and of its children that have exited.
fn bench_cpu_seconds() -> anyhow::Result<f64> {
    Ok(procfs::cpu_seconds(std::process::id())? + procfs::reaped_children_cpu_seconds())
}

/// The run's verdict on counting: a check listing every phase where a
/// message was refused or lost. The caller prints and saves the report
/// first, then fails the run when the check is not met
/// ([`ScenarioReport::lost_or_refused`]): the table is then not valid.
fn finish_counted(
    mut report: ScenarioReport,
    failures: &[String],
) -> anyhow::Result<ScenarioReport> {
    report.check(
        super::report::COUNTED_CHECK,
        if failures.is_empty() {
            "none".to_string()
        } else {
            failures.join("; ")
        },
        failures.is_empty(),
    );
    Ok(report)
}

/// What failed in a phase of `sent` messages after which smtp-sink counted
/// `counted`: a refusal or error smtp-source saw, or a message accepted and
/// not at the sink. `None` when nothing did.
fn refused_or_lost(what: &str, phase: &Phase, sent: u64, counted: u64) -> Option<String> {
    if phase.errors_total() == 0 && counted == phase.delivered && phase.delivered == sent {
        return None;
    }
    Some(format!(
        "{what}: {} of {sent} accepted, {counted} at the sink{}",
        phase.delivered,
        phase
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    ))
}

/// One load phase made by Postfix's smtp-source (`--load smtp-source`):
/// no latency figures (smtp-source measures none); what did not complete
/// counts as failed, with smtp-source's reason as the error.
async fn smtp_source_phase(
    name: &str,
    target: SocketAddr,
    load: &Load,
    processes: &mut [&mut Measured],
) -> anyhow::Result<Phase> {
    anyhow::ensure!(
        load.per_connection <= 1,
        "smtp-source keeps a connection for all its messages (-d) or uses one per message: --per-connection 0 or 1"
    );
    let plan = SmtpSourcePlan {
        target,
        sessions: load.concurrency,
        messages: load.messages,
        size: load.size,
        keep_connections: load.per_connection == 0,
        time_limit: load.time_limit(),
    };
    let marks = Marks::start(processes)?;
    let outcome = smtp_source::run(&plan).await?;
    // smtp-source's CPU is in the bench's ("bench" in the report).
    let (processes, bench_cpu_seconds, machine_busy_percent) = marks.finish(processes)?;
    let seconds = outcome.elapsed.as_secs_f64();
    let mut phase = Phase {
        target: name.to_string(),
        concurrency: load.concurrency,
        message_size: load.size,
        delivered: outcome.completed,
        failed: load.messages.saturating_sub(outcome.completed),
        connections: if plan.keep_connections {
            load.concurrency as u64
        } else {
            outcome.completed
        },
        seconds,
        messages_per_second: outcome.completed as f64 / seconds.max(f64::EPSILON),
        processes,
        bench_cpu_seconds,
        machine_busy_percent,
        errors: outcome.error.into_iter().collect(),
        ..Phase::default()
    };
    phase.account_others();
    Ok(phase)
}

/// The smtp.ini every relay gets: loopback only, no reverse DNS (no network).
fn smtp_ini(addr: SocketAddr, extra: &str) -> String {
    format!("listen={addr}\nrdns=off\n{extra}")
}

/// tls.ini pointing at one combined PEM file.
fn tls_ini(pem: &Path) -> String {
    format!("key={0}\ncert={0}\n", pem.display())
}

/// Memory targets of the issue (MB), checked wherever a run shows them.
mod targets {
    pub const IDLE_RSS_MB: f64 = 8.0;
    pub const CONCURRENCY_100_RSS_MB: f64 = 40.0;
    pub const TEN_THOUSAND_IDLE_RSS_MB: f64 = 150.0;
}

/// The idle-RSS target, for each daemon of `processes`.
fn check_idle_rss(report: &mut ScenarioReport, processes: &[&Measured]) {
    for p in processes {
        let mb = p.idle.now_kb as f64 / 1024.0;
        report.check(
            &format!("{} idle RSS < {} MB", p.daemon.name, targets::IDLE_RSS_MB),
            format!(
                "{mb:.1} MB (anonymous {:.1} MB)",
                p.idle.anon_kb as f64 / 1024.0
            ),
            mb < targets::IDLE_RSS_MB,
        );
    }
}
