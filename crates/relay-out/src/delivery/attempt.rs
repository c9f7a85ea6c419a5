//! One delivery attempt for one group of recipients: resolve the
//! destination, then try its hosts in order until one of them takes the
//! transaction (haraka-behaviour.md §7.4-7.5).
//!
//! A host that cannot be used (refused connection, timeout, bad greeting,
//! failed TLS handshake, connection lost before DATA) passes the turn to the
//! next one. Once a host answers MAIL, its verdicts are final for this
//! attempt: per recipient at RCPT, for all accepted ones after the data.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use smtp_core::address::ReversePath;
use smtp_core::client::{ClientError, ClientErrorKind, MailOptions, SmtpClient, Step};
use smtp_core::reply::Reply;

use super::Context;
use super::log::{AttemptRecord, AttemptResult, log_attempt};
use super::outcome::{RecipientOutcome, Verdict};
use super::plan::{ConnectionPlan, Group};
use super::route::{self, Candidate};
use crate::queue::QueueId;

/// What an attempt needs to know about the message.
#[derive(Debug)]
pub struct Job {
    pub id: QueueId,
    pub arrival: SystemTime,
    pub sender: ReversePath,
    /// For `SIZE=`, when known.
    pub size: Option<u64>,
    pub smtputf8: bool,
}

/// How a session with one host ended.
enum SessionEnd {
    /// The host gave its verdicts; `reply` is the deciding one, for the log.
    Done {
        outcomes: Vec<RecipientOutcome>,
        reply: String,
    },
    /// The host could not take the transaction; try the next one.
    NextHost(ClientError),
}

/// Attempts delivery of `group`; returns one outcome per recipient, in the
/// group's order.
pub async fn attempt_group(ctx: &Context, job: &Job, group: &Group) -> Vec<RecipientOutcome> {
    let domain = group.destination.to_string();
    let count = group.recipients.len();
    let log = |candidate: Option<(&Candidate, bool)>, result, reply: &str, started: Instant| {
        log_attempt(&AttemptRecord {
            queue_id: &job.id,
            domain: &domain,
            mx: candidate.map(|(c, _)| c.host.as_str()),
            ip: candidate.map(|(c, _)| c.ip),
            port: ctx.port,
            tls: candidate.is_some_and(|(_, tls)| tls),
            recipients: count,
            result,
            reply,
            delay: SystemTime::now()
                .duration_since(job.arrival)
                .unwrap_or_default(),
            elapsed: started.elapsed(),
        });
    };

    let started = Instant::now();
    let candidates = match route::resolve(&ctx.dns, &group.destination, &ctx.addresses).await {
        Ok(candidates) => candidates,
        Err(failure) => {
            let verdict = if failure.permanent {
                Verdict::Failed
            } else {
                Verdict::Deferred
            };
            let result = if failure.permanent {
                AttemptResult::Failed
            } else {
                AttemptResult::Deferred
            };
            log(None, result, &failure.text, started);
            let outcome = RecipientOutcome::local(verdict, failure.status, failure.text, None);
            return vec![outcome; count];
        }
    };

    let mut plan = ConnectionPlan::new(candidates, ctx.enable_tls, ctx.tls_fallback_plain);
    let mut last_failure: Option<(ClientError, String)> = None;
    while let Some((candidate, use_tls)) = plan.next_attempt() {
        let started = Instant::now();
        let config = if use_tls {
            &ctx.tls_client
        } else {
            &ctx.plain_client
        };
        let address = SocketAddr::new(candidate.ip, ctx.port);
        let client = match SmtpClient::connect(address, &candidate.host, config).await {
            Ok(client) => client,
            Err(error) => {
                log(
                    Some((&candidate, use_tls)),
                    AttemptResult::HostFailed,
                    &error.to_string(),
                    started,
                );
                if is_tls_failure(&error) {
                    plan.tls_failed(&candidate);
                }
                last_failure = Some((error, candidate.host.clone()));
                continue;
            }
        };
        let tls = client.is_tls();
        match transaction(ctx, job, group, client, &candidate.host).await {
            SessionEnd::Done { outcomes, reply } => {
                log(Some((&candidate, tls)), summary(&outcomes), &reply, started);
                return outcomes;
            }
            SessionEnd::NextHost(error) => {
                log(
                    Some((&candidate, tls)),
                    AttemptResult::HostFailed,
                    &error.to_string(),
                    started,
                );
                last_failure = Some((error, candidate.host.clone()));
            }
        }
    }
    let outcome = match &last_failure {
        Some((error, host)) => match negative_reply(error) {
            Some(reply) if !error.is_transient() => RecipientOutcome::from_reply(reply, host),
            Some(reply) => RecipientOutcome {
                verdict: Verdict::Deferred,
                ..RecipientOutcome::from_reply(reply, host)
            },
            None => RecipientOutcome::local(
                Verdict::Deferred,
                "4.4.1",
                format!("Tried all MX hosts of {domain}; last error: {error}"),
                Some(host),
            ),
        },
        None => RecipientOutcome::local(
            Verdict::Deferred,
            "4.4.1",
            format!("No host of {domain} could be tried"),
            None,
        ),
    };
    vec![outcome; count]
}

/// MAIL, RCPTs and the data with a connected host.
async fn transaction(
    ctx: &Context,
    job: &Job,
    group: &Group,
    mut client: SmtpClient,
    host: &str,
) -> SessionEnd {
    let count = group.recipients.len();
    let options = MailOptions {
        size: job.size,
        smtputf8: job.smtputf8,
    };
    let replies = match client.envelope(&job.sender, &group.paths, options).await {
        Ok(replies) => replies,
        Err(error) if !error.is_transient() => {
            // The host cannot take this message at all (SMTPUTF8 missing);
            // another host of the same domain would not either.
            let text = format!("{host} cannot take this message: {error}");
            client.quit().await;
            let outcome = RecipientOutcome::local(Verdict::Failed, "5.6.7", &text, Some(host));
            return SessionEnd::Done {
                outcomes: vec![outcome; count],
                reply: text,
            };
        }
        Err(error) => return SessionEnd::NextHost(error),
    };
    if !replies.mail.is_positive() {
        let outcome = RecipientOutcome::from_reply(&replies.mail, host);
        client.quit().await;
        return SessionEnd::Done {
            outcomes: vec![outcome; count],
            reply: replies.mail.to_string(),
        };
    }
    let mut outcomes: Vec<Option<RecipientOutcome>> = (0..count)
        .map(|index| match replies.rcpts.get(index) {
            Some(reply) if reply.is_positive() => None,
            Some(reply) => Some(RecipientOutcome::from_reply(reply, host)),
            None => Some(RecipientOutcome::local(
                Verdict::Deferred,
                "4.4.2",
                format!("{host} gave no reply to RCPT TO"),
                Some(host),
            )),
        })
        .collect();
    let accepted: Vec<usize> = (0..count).filter(|&i| outcomes[i].is_none()).collect();
    let mut deciding = replies
        .rcpts
        .iter()
        .find(|reply| !reply.is_positive())
        .map(ToString::to_string)
        .unwrap_or_default();
    if !accepted.is_empty() {
        let data_outcome = match open_data(ctx, &job.id).await {
            Ok(file) => match client.data_from(file).await {
                Ok(reply) => {
                    deciding = reply.to_string();
                    // Say goodbye in the background: the verdict must reach
                    // the envelope on disk as soon as possible, since until
                    // then a crash means sending the message again.
                    tokio::spawn(client.quit());
                    RecipientOutcome::from_reply(&reply, host)
                }
                Err(error) => {
                    deciding = error.to_string();
                    after_data_failure(&error, host)
                }
            },
            Err(text) => {
                deciding.clone_from(&text);
                client.quit().await;
                RecipientOutcome::local(Verdict::Deferred, "4.3.0", text, None)
            }
        };
        for index in accepted {
            outcomes[index] = Some(data_outcome.clone());
        }
    } else {
        client.quit().await;
    }
    SessionEnd::Done {
        outcomes: outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    RecipientOutcome::local(Verdict::Deferred, "4.0.0", "no outcome", Some(host))
                })
            })
            .collect(),
        reply: deciding,
    }
}

/// The session broke during or after DATA. Whether the host took the
/// message is unknown, so it is retried later rather than sent to the next
/// host at once (a duplicate is possible either way; see the queue docs).
fn after_data_failure(error: &ClientError, host: &str) -> RecipientOutcome {
    match negative_reply(error) {
        Some(reply) => RecipientOutcome::from_reply(reply, host),
        None => RecipientOutcome::local(
            Verdict::Deferred,
            "4.4.2",
            format!("Connection with {host} broken: {error}"),
            Some(host),
        ),
    }
}

async fn open_data(ctx: &Context, id: &QueueId) -> Result<tokio::fs::File, String> {
    let spool = ctx.spool.clone();
    let id = id.clone();
    match tokio::task::spawn_blocking(move || spool.open_data(&id)).await {
        Ok(Ok(file)) => Ok(tokio::fs::File::from_std(file)),
        Ok(Err(error)) => Err(format!("Cannot read the queued message: {error}")),
        Err(error) => Err(format!("Cannot read the queued message: {error}")),
    }
}

/// A 4xx/5xx reply carried by an error (never a 2xx/3xx one, which must not
/// be taken for a verdict on the recipients).
fn negative_reply(error: &ClientError) -> Option<&Reply> {
    error
        .reply()
        .filter(|reply| reply.is_transient() || reply.is_permanent())
}

fn is_tls_failure(error: &ClientError) -> bool {
    error.step() == Step::TlsHandshake
        || matches!(
            error.kind(),
            ClientErrorKind::TlsHandshake(_)
                | ClientErrorKind::PrematureTlsData
                | ClientErrorKind::TlsSetup(_)
        )
}

/// The log's `result` for a session that reached a verdict.
fn summary(outcomes: &[RecipientOutcome]) -> AttemptResult {
    let delivered = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Delivered)
        .count();
    if delivered == outcomes.len() {
        AttemptResult::Delivered
    } else if delivered > 0 {
        AttemptResult::Partial
    } else if outcomes.iter().any(|o| o.verdict == Verdict::Deferred) {
        AttemptResult::Deferred
    } else {
        AttemptResult::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(verdict: Verdict) -> RecipientOutcome {
        RecipientOutcome::local(verdict, "x", "x", None)
    }

    #[test]
    fn summaries() {
        use Verdict::*;
        let cases = [
            (vec![Delivered, Delivered], AttemptResult::Delivered),
            (vec![Delivered, Failed], AttemptResult::Partial),
            (vec![Deferred, Failed], AttemptResult::Deferred),
            (vec![Failed, Failed], AttemptResult::Failed),
        ];
        for (verdicts, expected) in cases {
            let outcomes: Vec<_> = verdicts.into_iter().map(outcome).collect();
            assert_eq!(summary(&outcomes), expected);
        }
    }
}
