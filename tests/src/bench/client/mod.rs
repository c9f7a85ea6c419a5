//! The load client: N concurrent sessions sharing a budget of messages,
//! each sending one prepared message after another and timing the reply to
//! its final dot.

mod conn;
pub mod smtp_source;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;

pub use conn::{Connection, Outcome, connect};

use super::message::WireMessage;
use super::stats::micros;

/// How many error texts a run keeps for its report.
const KEPT_ERRORS: usize = 5;
/// A session that fails to connect this many times in a row gives up, so a
/// dead target ends the run quickly instead of spinning until the deadline.
const MAX_CONSECUTIVE_FAILURES: u32 = 20;

/// Where in a session something went wrong, for error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Rset,
    Quit,
    Write,
}

/// Why a session could not go on. A refusal of one transaction is not an
/// error of the session; these are.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0:?}: {1}")]
    Io(Step, std::io::Error),
    #[error("{0:?}: no reply in time")]
    Timeout(Step),
    #[error("{0:?}: connection closed")]
    Closed(Step),
    #[error("{0:?}: {1}")]
    Protocol(Step, String),
    #[error("{0:?}: refused: {1}")]
    Refused(Step, String),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
}

/// STARTTLS settings of the load client: built once per run (one root
/// store, one connector) and shared by every session.
#[derive(Clone)]
pub struct ClientTls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: ServerName<'static>,
}

/// One run of the load client.
///
/// The budget (`messages`) is shared: each session takes the next message
/// when it is ready, so fast sessions are not held back by slow ones and the
/// total is exact. `duration`, if set, stops the taking early.
#[derive(Clone)]
pub struct LoadPlan {
    pub target: SocketAddr,
    pub concurrency: usize,
    pub messages: u64,
    pub duration: Option<Duration>,
    pub message: Arc<WireMessage>,
    pub tls: Option<ClientTls>,
    /// The address every session comes from (none: the kernel picks).
    pub source: Option<IpAddr>,
    pub reply_timeout: Duration,
    /// Messages per connection (0: no limit).
    pub per_connection: u64,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub delivered: u64,
    /// Transactions answered with 4xx/5xx.
    pub refused: u64,
    /// Connections or transactions that broke (I/O, timeout, bad reply).
    pub failed: u64,
    pub connections: u64,
    pub elapsed: Duration,
    /// End-of-DATA latency of each delivered message, in microseconds.
    pub latencies_us: Vec<u32>,
    /// The first few error and refusal texts.
    pub errors: Vec<String>,
}

impl LoadOutcome {
    fn merge(&mut self, other: LoadOutcome) {
        self.delivered += other.delivered;
        self.refused += other.refused;
        self.failed += other.failed;
        self.connections += other.connections;
        self.latencies_us.extend(other.latencies_us);
        for error in other.errors {
            self.note(error);
        }
    }

    fn note(&mut self, error: String) {
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(error);
        }
    }

    /// Messages accepted per second of the run.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.delivered as f64 / seconds
        } else {
            0.0
        }
    }
}

/// The budget and deadline all sessions of one run share.
struct Budget {
    remaining: AtomicU64,
    stop_at: Option<Instant>,
}

impl Budget {
    fn take(&self) -> bool {
        if self.stop_at.is_some_and(|at| Instant::now() >= at) {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn exhausted(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) == 0
            || self.stop_at.is_some_and(|at| Instant::now() >= at)
    }
}

/// Runs the plan to the end of its budget or duration.
pub async fn run(plan: &LoadPlan) -> LoadOutcome {
    warm_up(plan).await;
    let started = Instant::now();
    let budget = Arc::new(Budget {
        remaining: AtomicU64::new(plan.messages),
        stop_at: plan.duration.map(|d| started + d),
    });
    let plan = Arc::new(plan.clone());
    let sessions: Vec<_> = (0..plan.concurrency.max(1))
        .map(|_| tokio::spawn(session(Arc::clone(&plan), Arc::clone(&budget), plan.source)))
        .collect();
    let mut outcome = LoadOutcome::default();
    for handle in sessions {
        match handle.await {
            Ok(tally) => outcome.merge(tally),
            Err(e) => {
                outcome.failed += 1;
                outcome.note(format!("session task: {e}"));
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// One untimed session first, as a real sender has had before it sends in
/// bulk: its first connection of the day sits through the server's
/// pregreet wait (relay-in's `early_talker.ini` `pause`), and the figures
/// are about the steady state, not that once. A failure here is left for
/// the timed sessions to meet and report.
async fn warm_up(plan: &LoadPlan) {
    if let Ok(conn) = Connection::open(
        plan.target,
        plan.source,
        plan.tls.as_ref(),
        plan.reply_timeout,
    )
    .await
    {
        conn.quit().await;
    }
}

/// One session: connect, send while the budget lasts, reconnect after a
/// broken connection.
async fn session(plan: Arc<LoadPlan>, budget: Arc<Budget>, source: Option<IpAddr>) -> LoadOutcome {
    let mut tally = LoadOutcome::default();
    let mut consecutive_failures = 0;
    while !budget.exhausted() {
        let mut conn = match Connection::open(
            plan.target,
            source,
            plan.tls.as_ref(),
            plan.reply_timeout,
        )
        .await
        {
            Ok(conn) => conn,
            Err(error) => {
                tally.failed += 1;
                tally.note(error.to_string());
                consecutive_failures += 1;
                if consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        tally.connections += 1;
        consecutive_failures = 0;
        let mut broken = false;
        let mut sent = 0;
        while (plan.per_connection == 0 || sent < plan.per_connection) && budget.take() {
            sent += 1;
            match conn.send(&plan.message.wire).await {
                Ok(Outcome::Delivered(latency)) => {
                    tally.delivered += 1;
                    tally.latencies_us.push(micros(latency));
                }
                Ok(Outcome::Refused(text)) => {
                    tally.refused += 1;
                    tally.note(text);
                }
                Err(error) => {
                    tally.failed += 1;
                    tally.note(error.to_string());
                    broken = true;
                    break;
                }
            }
        }
        if !broken {
            conn.quit().await;
        }
    }
    tally
}
