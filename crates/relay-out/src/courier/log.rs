//! The one log line written per delivery attempt.
//!
//! Every attempt (one host contacted, or a destination that failed before
//! any host could be) goes through [`log_attempt`], so operators grep a
//! single shape and journald gets the same fields (`QUEUE_ID=`, `RESULT=`,
//! …, tracing-journald writes each as its own field). It carries what
//! Haraka's hooks get:
//!
//! | field | meaning (Haraka hook parameter) |
//! |---|---|
//! | `queue_id`, `domain` | the message and the destination |
//! | `mx`, `ip`, `port` | the host contacted (`delivered`: host, ip, port); `-` when none was |
//! | `tls` | the session was encrypted (`delivered`: secured) |
//! | `tls_policy`, `tls_policy_source` | the MX TLS policy (`none`, `may`, `encrypt`, `verify`, `dane`, `mta-sts`) and where it came from (`tls_policy.ini`, `tlsa`, `mta-sts`, `mta-sts-testing`, `enable_tls`, or `TLS-Required` when the message's `TLS-Required: No` relaxed it to `may`) |
//! | `rcpts` | recipients in the attempt |
//! | `result` | `delivered`, `partial`, `deferred`, `bounced`, `host-failed` (next host tried), `skipped` |
//! | `reply` | the deciding reply or error (`delivered`: response; `deferred`: err; `bounce`: the error) |
//! | `mode` | `SMTP` or `LMTP` (`delivered`: mode) |
//! | `auth` | the user name relay-out authenticated as, if any |
//! | `route` | the route used instead of MX hosts, if any |
//! | `delivered` | recipients accepted (`delivered`: ok_recips) |
//! | `deferred`, `retry_in_s` | recipients to retry, and in how many seconds the first is due (`deferred`: delay) |
//! | `bounced` | recipients given up on, a bounce is owed (`bounce`: bounced_rcpt) |
//! | `response` | with `result=partial`: the accepting reply (`reply` then tells why the rest was not) |
//! | `delay_s` | seconds since the message was queued (`delivered`: delay) |
//! | `elapsed_ms` | this attempt's duration |
//!
//! Fields with nothing to say are left out (journald then has no such
//! field) rather than written empty.

use std::net::IpAddr;
use std::time::Duration;

use tracing::info;

use super::connector::Mode;
use super::tls::TlsDecision;
use spool::QueueId;

/// How an attempt ended, as the log's `result` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Every recipient of the group was accepted.
    Delivered,
    /// Some recipients accepted, others deferred or refused.
    Partial,
    /// Nothing delivered; to be retried.
    Deferred,
    /// Nothing delivered; refused for good, a bounce is owed.
    Bounced,
    /// The host could not be used (connection, greeting, TLS, AUTH); the
    /// next one is tried.
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
            AttemptResult::Bounced => "bounced",
            AttemptResult::HostFailed => "host-failed",
            AttemptResult::Skipped => "skipped",
        }
    }

    /// The result of an attempt that reached a verdict, from how many
    /// recipients ended up in each state.
    pub fn of_counts(delivered: usize, deferred: usize, bounced: usize) -> Self {
        match (delivered, deferred, bounced) {
            (0, 0, _) => AttemptResult::Bounced,
            (0, _, _) => AttemptResult::Deferred,
            (_, 0, 0) => AttemptResult::Delivered,
            _ => AttemptResult::Partial,
        }
    }
}

/// The host side of an attempt: who was talked to and how.
#[derive(Debug, Clone, Default)]
pub struct HostContact {
    /// MX or route host name; `None` when no host was reached (DNS
    /// failure, null MX).
    pub mx: Option<String>,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    /// STARTTLS was in effect.
    pub tls: bool,
    pub mode: Option<Mode>,
    /// The user relay-out authenticated as.
    pub auth: Option<String>,
    /// The route's origin, when a route was used.
    pub route: Option<String>,
    /// The MX TLS policy and where it came from (none for routes, whose
    /// `tls` is their own).
    pub tls_policy: Option<TlsDecision>,
}

/// Everything one attempt's log line says.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub queue_id: &'a QueueId,
    /// The destination domain (or `[address]`).
    pub domain: &'a str,
    pub contact: &'a HostContact,
    pub recipients: usize,
    pub result: AttemptResult,
    /// The deciding reply or error text.
    pub reply: &'a str,
    /// With [`AttemptResult::Partial`]: the reply that accepted some.
    pub response: Option<&'a str>,
    pub delivered: &'a [&'a str],
    pub deferred: &'a [&'a str],
    pub bounced: &'a [&'a str],
    /// Until the first deferred recipient is due again.
    pub retry_in: Option<Duration>,
    /// Time since the message arrived.
    pub delay: Duration,
    /// Time this attempt took.
    pub elapsed: Duration,
}

impl<'a> AttemptRecord<'a> {
    /// The record of an attempt that settled no recipient (a host failed
    /// before taking the transaction, or the attempt was skipped): a cause
    /// and no recipient lists. The caller sets `delay` and `elapsed`.
    pub fn settling_none(
        queue_id: &'a QueueId,
        domain: &'a str,
        contact: &'a HostContact,
        recipients: usize,
        result: AttemptResult,
        reply: &'a str,
    ) -> Self {
        AttemptRecord {
            queue_id,
            domain,
            contact,
            recipients,
            result,
            reply,
            response: None,
            delivered: &[],
            deferred: &[],
            bounced: &[],
            retry_in: None,
            delay: Duration::ZERO,
            elapsed: Duration::ZERO,
        }
    }
}

/// Writes the attempt's log line.
pub fn log_attempt(record: &AttemptRecord) {
    use smtp_core::metrics::{Outcome, metrics};
    let outcome = match record.result {
        AttemptResult::Delivered | AttemptResult::Partial => Some(Outcome::Delivered),
        AttemptResult::Deferred | AttemptResult::HostFailed => Some(Outcome::Deferred),
        AttemptResult::Bounced => Some(Outcome::Bounced),
        AttemptResult::Skipped => None,
    };
    if let Some(outcome) = outcome {
        metrics().delivery_attempt(outcome);
        if let Some(decision) = record.contact.tls_policy {
            metrics().tls_policy_attempt(decision.policy.as_str(), outcome);
        }
    }
    let contact = record.contact;
    let list = |addresses: &[&str]| (!addresses.is_empty()).then(|| addresses.join(","));
    info!(
        queue_id = %record.queue_id,
        domain = %record.domain,
        mx = %contact.mx.as_deref().unwrap_or("-"),
        ip = %contact.ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        port = %contact.port.map_or_else(|| "-".to_string(), |port| port.to_string()),
        tls = contact.tls,
        rcpts = record.recipients,
        result = %record.result.as_str(),
        reply = record.reply,
        mode = contact.mode.map(tracing::field::display),
        auth = contact.auth.as_deref(),
        route = contact.route.as_deref(),
        tls_policy = contact
            .tls_policy
            .map(|d| tracing::field::display(d.policy.as_str())),
        tls_policy_source = contact.tls_policy.map(|d| tracing::field::display(d.source)),
        delivered = list(record.delivered).map(tracing::field::display),
        deferred = list(record.deferred).map(tracing::field::display),
        retry_in_s = record.retry_in.map(|delay| delay.as_secs()),
        bounced = list(record.bounced).map(tracing::field::display),
        response = record.response,
        delay_s = format_args!("{:.1}", record.delay.as_secs_f64()),
        elapsed_ms = record.elapsed.as_millis() as u64,
        "delivery attempt"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_from_recipient_counts() {
        use AttemptResult::*;
        for ((delivered, deferred, bounced), expected) in [
            ((2, 0, 0), Delivered),
            ((1, 1, 0), Partial),
            ((1, 0, 1), Partial),
            ((1, 1, 1), Partial),
            ((0, 1, 1), Deferred),
            ((0, 2, 0), Deferred),
            ((0, 0, 2), Bounced),
        ] {
            assert_eq!(
                AttemptResult::of_counts(delivered, deferred, bounced),
                expected,
                "{delivered} {deferred} {bounced}"
            );
        }
    }
}
