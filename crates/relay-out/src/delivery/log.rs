//! The one log line written per delivery attempt.
//!
//! Every attempt (one host contacted, or a destination that failed before
//! any host could be) goes through [`log_attempt`], so operators grep a
//! single shape (`delivery attempt queue_id=… domain=… mx=… ip=… port=…
//! tls=… result=… reply=…`) and later additions (per-attempt metrics, TLS
//! details) have one place to go.

use std::net::IpAddr;
use std::time::Duration;

use tracing::info;

use crate::queue::QueueId;

/// How an attempt ended, as the log's `result` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Every recipient of the group was accepted.
    Delivered,
    /// Some recipients accepted, others deferred or refused.
    Partial,
    /// Nothing delivered; to be retried.
    Deferred,
    /// Nothing delivered; refused for good.
    Failed,
    /// The host could not be used (connection, greeting, TLS); the next one
    /// is tried.
    HostFailed,
    /// Not attempted after all (delivery was disabled meanwhile).
    Skipped,
}

impl AttemptResult {
    fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Partial => "partial",
            AttemptResult::Deferred => "deferred",
            AttemptResult::Failed => "failed",
            AttemptResult::HostFailed => "host-failed",
            AttemptResult::Skipped => "skipped",
        }
    }
}

/// Everything one attempt's log line says.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub queue_id: &'a QueueId,
    /// The destination domain (or `[address]`).
    pub domain: &'a str,
    /// MX host name; `None` when no host was reached (DNS failure, null MX).
    pub mx: Option<&'a str>,
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// STARTTLS was in effect.
    pub tls: bool,
    pub recipients: usize,
    pub result: AttemptResult,
    /// The deciding reply or error text.
    pub reply: &'a str,
    /// Time since the message arrived.
    pub delay: Duration,
    /// Time this attempt took.
    pub elapsed: Duration,
}

/// Writes the attempt's log line.
pub fn log_attempt(record: &AttemptRecord) {
    info!(
        queue_id = %record.queue_id,
        domain = %record.domain,
        mx = %record.mx.unwrap_or("-"),
        ip = %record.ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        port = record.port,
        tls = record.tls,
        rcpts = record.recipients,
        result = %record.result.as_str(),
        reply = record.reply,
        delay_s = format_args!("{:.1}", record.delay.as_secs_f64()),
        elapsed_ms = record.elapsed.as_millis() as u64,
        "delivery attempt"
    );
}
