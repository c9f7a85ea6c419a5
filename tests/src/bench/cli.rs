//! The command line of `postern-bench`.

use std::path::PathBuf;
use std::time::Duration;

/// The longest any one load phase may run, whatever was asked: the bench is
/// bounded in time as well as in count.
pub const MAX_PHASE: Duration = Duration::from_secs(600);

/// `postern-bench`: load, measure, report. Parsed with clap so every option
/// is documented in `--help`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "postern-bench",
    about = "Postern benchmarks: throughput, latency and memory of relay-in and relay-out on loopback"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run: a scenario, all of them, or (internally) the sink process,
/// which is this same program so the bench needs no second binary.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run one scenario and print (and optionally save) its figures.
    Scenario {
        #[command(subcommand)]
        scenario: Scenario,
        #[command(flatten)]
        common: Common,
    },
    /// Run every scenario of BENCHMARKS.md and print its Markdown table.
    Suite {
        /// Shorter runs (a quick look, not figures to publish).
        #[arg(long)]
        quick: bool,
        #[command(flatten)]
        common: Common,
    },
    /// The built-in sink as a process (the scenarios start it themselves).
    #[command(hide = true)]
    ServeSink {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Advertise and accept XCLIENT.
        #[arg(long)]
        xclient: bool,
        /// Offer STARTTLS with this key-and-certificate PEM file.
        #[arg(long)]
        tls_pem: Option<PathBuf>,
    },
}

/// A relay of `scenario relay-out-compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareRelay {
    RelayOut,
    Postfix,
    Haraka,
}

impl CompareRelay {
    pub fn kind(self) -> crate::bench::scenario::contender::Kind {
        use crate::bench::scenario::contender::Kind;
        match self {
            CompareRelay::RelayOut => Kind::RelayOut,
            CompareRelay::Postfix => Kind::Postfix,
            CompareRelay::Haraka => Kind::Haraka,
        }
    }
}

/// The repository's shipped relay-in configuration, `config-in/`.
pub fn default_config_in() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config-in")
}

/// Options every scenario takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Also write the results as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Where relay-in and relay-out are (default: next to postern-bench).
    #[arg(long, global = true)]
    pub bin_dir: Option<PathBuf>,
    /// Configuration, queues and logs go under here (default: a temporary
    /// directory, removed afterwards). Put it on the disk you want relay-out's
    /// fsync measured on.
    #[arg(long, global = true)]
    pub work_dir: Option<PathBuf>,
    /// RUST_LOG for the daemons (their default, info, is what production logs).
    #[arg(long, global = true, default_value = "info")]
    pub relay_log: String,
}

/// How much load, and of what.
#[derive(Debug, Clone, clap::Args)]
pub struct Load {
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,
    /// Message size in octets (2048: 2 KB; 102400: 100 KB).
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Messages in all, shared by the sessions.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Stop after this many seconds even if messages remain.
    #[arg(long)]
    pub duration: Option<f64>,
    /// The client uses STARTTLS.
    #[arg(long)]
    pub tls: bool,
    /// Messages per connection before QUIT and a new connection (0: a
    /// session keeps its connection for all its messages; 1: a connection
    /// per message, as most MX traffic and smtp-source without -d).
    #[arg(long, default_value_t = 0)]
    pub per_connection: u64,
    /// The load generator: the built-in client, or Postfix's smtp-source
    /// (all sessions from 127.0.0.1; `--per-connection 0` is its `-d`,
    /// `--per-connection 1` its default; no TLS, no latency figures).
    #[arg(long = "load", value_enum, default_value = "postern")]
    pub generator: Generator,
}

impl Load {
    /// The phase's time bound: `--duration`, never more than [`MAX_PHASE`].
    pub fn time_limit(&self) -> Duration {
        self.duration
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(MAX_PHASE)
            .min(MAX_PHASE)
    }

    /// The options as written on a command line.
    pub fn args(&self) -> String {
        let mut args = format!(
            "--concurrency {} --size {} --messages {}",
            self.concurrency, self.size, self.messages
        );
        if let Some(duration) = self.duration {
            args.push_str(&format!(" --duration {duration}"));
        }
        if self.tls {
            args.push_str(" --tls");
        }
        if self.per_connection > 0 {
            args.push_str(&format!(" --per-connection {}", self.per_connection));
        }
        if self.generator != Generator::Postern {
            args.push_str(&format!(" --load {}", self.generator.as_str()));
        }
        args
    }
}

/// Which program makes the load (`--load`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
pub enum Generator {
    /// postern-bench's own client: pipelined, latency per message, every
    /// session from 127.0.0.1.
    #[default]
    Postern,
    /// Postfix's `/usr/sbin/smtp-source`, as the Postfix world measures.
    SmtpSource,
}

impl Generator {
    pub fn as_str(self) -> &'static str {
        match self {
            Generator::Postern => "postern",
            Generator::SmtpSource => "smtp-source",
        }
    }
}

/// relay-in's forwarding mode (smtp_forward.ini `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Queue,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Queue => "queue",
            Mode::Live => "live",
        }
    }
}

/// Which sink relay-in forwards to in `scenario relay-in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// postern-bench's own sink: the machine's ceiling for one SMTP hop.
    Postern,
    /// Postfix's `smtp-sink` (from the postfix package), the sink the
    /// Postfix world benchmarks with: a real-world ceiling, without TLS.
    SmtpSink,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Postern => "postern",
            SinkKind::SmtpSink => "smtp-sink",
        }
    }
}

/// The scenarios of issue 7, each one command; the suite runs them all.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// The sink alone: the ceiling of one SMTP hop on this machine.
    Sink {
        #[command(flatten)]
        load: Load,
    },
    /// Client → relay-in → sink (with XCLIENT), after the sink alone with
    /// the same load, so the ratio comes from one run.
    RelayIn {
        #[command(flatten)]
        load: Load,
        #[arg(long, value_enum, default_value = "queue")]
        mode: Mode,
        /// relay-in uses STARTTLS to the sink too (smtp_forward.ini enable_tls).
        #[arg(long)]
        backend_tls: bool,
        /// Skip the sink-alone phase.
        #[arg(long)]
        no_baseline: bool,
        /// The sink behind relay-in (and measured alone first).
        #[arg(long, value_enum, default_value = "postern")]
        sink: SinkKind,
    },
    /// Client → relay-out with delivery disabled: intake alone, fsync per message.
    RelayOutIntake {
        #[command(flatten)]
        load: Load,
    },
    /// relay-out delivering a queue of --messages through MX records from the
    /// test DNS to the sink (filled first with delivery off, then released).
    RelayOutDelivery {
        #[command(flatten)]
        load: Load,
        /// The sink offers STARTTLS (relay-out's enable_tls uses it).
        #[arg(long)]
        mx_tls: bool,
    },
    /// Issue 19's headline table: smtp-source (all sessions from 127.0.0.1)
    /// into smtp-sink alone and through relay-in with the shipped
    /// configuration, five loads, median of interleaved repetitions.
    Headline {
        /// Repetitions of every row (the table gives medians).
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// Messages per 2 KB phase (the 100 KB row sends a fifth).
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        /// relay-in's shipped configuration directory (default: the
        /// repository's config-in/).
        #[arg(long)]
        config_in: Option<PathBuf>,
    },
    /// Issue 19's relay-in memory targets: peak RSS at 100 sessions (2 KB
    /// and 100 KB, a connection per message and kept) and idle RSS, with
    /// the shipped configuration except limit.ini `[concurrency] max`,
    /// raised to 200 so that 100 sessions from one address are admitted.
    RelayInMemory {
        /// Messages per 2 KB phase (100 KB phases send a fifth).
        #[arg(long, default_value_t = 5_000)]
        messages: u64,
        /// relay-in's shipped configuration directory (default: the
        /// repository's config-in/).
        #[arg(long)]
        config_in: Option<PathBuf>,
    },
    /// relay-out in its own role against Postfix and Haraka: smtp-source
    /// (127.0.0.1) → each relay (fsync before 250) → smtp-sink as the MX;
    /// end-to-end and accept rates at 1, 20, 100 sessions (2 KB) and 20
    /// (100 KB), then the drain of a backlog released at once.
    RelayOutCompare {
        /// The relays, in the order each load runs them.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "relay-out,postfix,haraka"
        )]
        relays: Vec<CompareRelay>,
        /// Messages per 2 KB phase (100 KB phases send a fifth).
        #[arg(long, default_value_t = 5_000)]
        messages: u64,
        /// Messages queued while the MX is down, then released.
        #[arg(long, default_value_t = 5_000)]
        backlog: u64,
        #[arg(long, default_value_t = 1)]
        repetitions: usize,
        /// Where the queues go: `ext4-image` (a journaled ext4 image the
        /// bench makes and loop-mounts; root only), or a directory; default:
        /// the work directory.
        #[arg(long)]
        queue_root: Option<String>,
        /// Haraka's npm install (default /var/cache/postern-bench/haraka).
        #[arg(long)]
        haraka: Option<PathBuf>,
        /// relay-out's per-address connection limit (limit.ini
        /// `[concurrency] max`) instead of its default: the home server is
        /// one address, and Postfix exempts mynetworks from its own limit.
        #[arg(long)]
        concurrency_max: Option<usize>,
    },
    /// Many idle connections held open on relay-in: its memory, and how soon
    /// a new client is served meanwhile.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Connections per client address (relay-in's per-address cap is
        /// raised to match).
        #[arg(long, default_value_t = 100)]
        per_address: usize,
    },
}
