//! One delivery attempt for one group of recipients: resolve the
//! destination, then try its hosts in order until one of them takes the
//! transaction (haraka-behaviour.md §7.4-7.5).
//!
//! A host that cannot be used (refused connection, timeout, bad greeting,
//! failed TLS handshake, connection lost before DATA) passes the turn to the
//! next one. Once a host answers MAIL, its verdicts are final for this
//! attempt: per recipient at RCPT, for all accepted ones after the data.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use smtp_core::client::{ClientError, ClientErrorKind, SmtpClient, Step};
use smtp_protocol::address::ReversePath;
use smtp_protocol::dsn_params::{Envid, Ret};
use tracing::{debug, warn};

use super::Context;
use super::dane::HostDecisions;
use super::grouping::Group;
use super::log::{AttemptRecord, AttemptResult, HostContact, log_attempt};
use super::mx::{self, Candidate};
use super::outcome::{RecipientOutcome, Verdict};
use super::routes;
use super::session_cache::{Session, SessionKey};
use super::tls::{HostOrder, MxDecision, TlsDecision, TlsUse};
use super::transaction::{SessionEnd, negative_reply, transaction};
use crate::config::TlsPolicy;
use crate::mta_sts::Mode;
use crate::requiretls;
use crate::tlsrpt;
use spool::QueueId;

/// What an attempt needs to know about the message.
#[derive(Debug)]
pub struct Job {
    pub id: QueueId,
    pub arrival: SystemTime,
    pub sender: ReversePath,
    /// For `SIZE=`, when known.
    pub size: Option<u64>,
    pub smtputf8: bool,
    /// The sender declared `BODY=8BITMIME`: passed on where offered.
    pub eight_bit_mime: bool,
    /// DSN `RET`/`ENVID`: passed on where DSN is offered.
    pub ret: Option<Ret>,
    pub envid: Option<Envid>,
    /// RFC 8689 REQUIRETLS (see `crate::requiretls`).
    pub requiretls: bool,
    /// `TLS-Required: No` without REQUIRETLS: TLS policies give way to `may`.
    pub tls_required_no: bool,
}

impl Job {
    /// REQUIRETLS binds this delivery: the message asked for it and is not
    /// itself a notice (whose null sender makes it best effort, RFC 8689 §5).
    pub fn requires_authenticated_tls(&self) -> bool {
        self.requiretls && !matches!(self.sender, ReversePath::Null)
    }

    /// Time since the message was queued, for the log.
    pub fn delay(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.arrival)
            .unwrap_or_default()
    }
}

/// What one group's attempt came to: a verdict per recipient, and what
/// its final log line says about the host (written once the verdicts are
/// applied, so it can tell when the deferred ones are retried).
#[derive(Debug)]
pub struct GroupResult {
    /// One per recipient, in the group's order.
    pub outcomes: Vec<RecipientOutcome>,
    pub contact: HostContact,
    /// The deciding reply or error.
    pub reply: String,
    /// The accepting reply, when some recipients were delivered.
    pub response: Option<String>,
    pub elapsed: Duration,
    /// The session's QUIT, still under way in the background: the host
    /// counts the connection until it ends (the shaping budget does too).
    pub closing: Option<tokio::task::JoinHandle<()>>,
}

impl GroupResult {
    /// Every recipient settled here, before any host was contacted (the
    /// MX lookup failed, or REQUIRETLS found no host it may use).
    fn decided_locally(
        count: usize,
        route: Option<String>,
        tls_policy: Option<TlsDecision>,
        verdict: Verdict,
        status: &str,
        text: String,
        started: Instant,
    ) -> Self {
        let outcome = RecipientOutcome::local(verdict, status, &text, None);
        GroupResult {
            outcomes: vec![outcome; count],
            contact: HostContact {
                route,
                tls_policy,
                ..HostContact::default()
            },
            reply: text,
            response: None,
            elapsed: started.elapsed(),
            closing: None,
        }
    }
}

/// Attempts delivery of `group` through its route, else to its MX hosts;
/// returns one outcome per recipient, in the group's order. Each host that
/// could not be used gets its own `host-failed` log line here.
/// `keep_sessions`: whether a session may be taken from, and left in, the
/// session cache (the destination's shaping budget allows it).
pub async fn attempt_group(
    ctx: &Context,
    job: &Job,
    group: &Group,
    keep_sessions: bool,
) -> GroupResult {
    let domain = group.destination.to_string();
    let count = group.recipients.len();
    let started = Instant::now();
    let route = ctx.routing.for_destination(&group.destination);
    let origin = route.map(|route| route.origin.clone());
    let (resolved, mx_tls) = match route {
        Some(route) => (
            routes::resolve_route(&ctx.dns, route, &ctx.addresses)
                .await
                .map(|candidates| (candidates, HostDecisions::default())),
            None,
        ),
        None => {
            // The MTA-STS TXT lookup (and a policy fetch, rarely) runs
            // alongside the MX lookup, so it adds no round trip.
            let (mx_tls, resolved) = tokio::join!(
                ctx.mx_tls
                    .for_domain(&ctx.dns, &group.destination, job.tls_required_no),
                mx::resolve(
                    &ctx.dns,
                    &group.destination,
                    &ctx.addresses,
                    ctx.mx_tls.default_connector(),
                ),
            );
            let resolved = match resolved {
                // DANE comes after a tls_policy.ini entry and before
                // MTA-STS (courier::tls has the order).
                Ok(candidates) if mx_tls.decision.lets_dane_decide() => {
                    ctx.dane.apply(&domain, candidates).await
                }
                other => other.map(|candidates| (candidates, HostDecisions::default())),
            };
            let resolved = resolved.and_then(|(candidates, dane)| {
                if dane.any().is_some() {
                    // RFC 8461 §2: where DANE applies, MTA-STS does not.
                    Ok((mx_tls.beside_dane(candidates, &dane), dane))
                } else {
                    record_sts_mx_mismatches(ctx, &domain, &mx_tls, &candidates);
                    mx_tls
                        .admit(job.id.as_str(), candidates)
                        .map(|candidates| (candidates, dane))
                }
            });
            if let Some(result_type) = mx_tls.sts_fetch_failure {
                record_policy_failure(ctx, &domain, result_type);
            }
            (resolved, Some(mx_tls))
        }
    };
    let tls_policy = mx_tls.as_ref().map(|mx_tls| mx_tls.decision);
    let (candidates, dane) = match resolved {
        Ok(found) => found,
        Err(failure) => {
            let verdict = if failure.permanent {
                Verdict::Failed
            } else {
                Verdict::Deferred
            };
            return GroupResult::decided_locally(
                count,
                origin,
                tls_policy,
                verdict,
                failure.status,
                failure.text,
                started,
            );
        }
    };

    // REQUIRETLS (RFC 8689 §4.2.1): only hosts whose policy authenticates
    // them (DANE, MTA-STS enforce, tls_policy.ini verify; a route whose
    // every hop requires verified TLS) may get the message.
    let candidates = if job.requires_authenticated_tls() {
        let authenticated: Vec<Candidate> = match route {
            Some(route)
                if route
                    .hops
                    .iter()
                    .all(|hop| hop.connector.tls == TlsUse::Required) =>
            {
                candidates
            }
            Some(_) => Vec::new(),
            None => candidates
                .into_iter()
                .filter(|c| {
                    dane.for_host(&c.host)
                        .or(tls_policy)
                        .is_some_and(|d| d.policy.authenticates_host())
                })
                .collect(),
        };
        if authenticated.is_empty() {
            let policy = match (route, tls_policy) {
                (Some(route), _) => format!("the route {}", route.origin),
                (None, Some(decision)) => decision.policy.as_str().to_owned(),
                (None, None) => "none".to_owned(),
            };
            return GroupResult::decided_locally(
                count,
                origin,
                tls_policy,
                Verdict::Failed,
                requiretls::NO_AUTHENTICATED_TLS,
                requiretls::unauthenticated_text(&domain, &policy),
                started,
            );
        }
        authenticated
    } else {
        candidates
    };

    let host_failed = |contact: &HostContact, error: &ClientError, started: Instant| {
        let reply = error.to_string();
        log_attempt(&AttemptRecord {
            delay: job.delay(),
            elapsed: started.elapsed(),
            ..AttemptRecord::settling_none(
                &job.id,
                &domain,
                contact,
                count,
                AttemptResult::HostFailed,
                &reply,
            )
        });
    };
    let mut hosts = HostOrder::new(candidates);
    let mut last_failure: Option<(ClientError, String)> = None;
    while let Some((candidate, use_tls)) = hosts.next_attempt() {
        let started = Instant::now();
        let mut contact = HostContact {
            mx: Some(candidate.host.clone()),
            ip: Some(candidate.ip),
            port: Some(candidate.port),
            tls: use_tls,
            mode: Some(candidate.connector.mode()),
            auth: None,
            route: origin.clone(),
            tls_policy: dane.for_host(&candidate.host).or(tls_policy),
        };
        let key = SessionKey::new(&candidate, use_tls);
        let mut reused_end = None;
        if let Some(session) = keep_sessions.then(|| ctx.sessions.take(&key)).flatten() {
            contact.tls = session.client.is_tls();
            contact.auth = candidate.connector.auth_user().map(str::to_owned);
            // A kept session was counted for TLS-RPT when it was opened.
            if let Some(mx_tls) = &mx_tls {
                mx_tls.note_session(job.id.as_str(), &candidate.host, &session.client);
            }
            match transaction(ctx, job, group, session, (&candidate.host, Some(&key))).await {
                SessionEnd::Stale => {
                    debug!(queue_id = %job.id, mx = %candidate.host, "kept session closed by the host; opening a new one");
                }
                end => reused_end = Some(end),
            }
        }
        let session = match reused_end {
            Some(end) => end,
            None => {
                let opened = open_session(&candidate, use_tls, &mut contact).await;
                record_tls(
                    ctx,
                    contact.tls_policy,
                    mx_tls.as_ref(),
                    &domain,
                    &candidate,
                    opened.as_ref().map(SmtpClient::is_tls),
                );
                match opened {
                    Ok(client) => {
                        if let Some(mx_tls) = &mx_tls {
                            mx_tls.note_session(job.id.as_str(), &candidate.host, &client);
                        }
                        let session = Session {
                            client,
                            opened: tokio::time::Instant::now(),
                            reused: false,
                        };
                        let keep = keep_sessions.then_some(&key);
                        transaction(ctx, job, group, session, (&candidate.host, keep)).await
                    }
                    Err(error) => {
                        if let ClientErrorKind::AuthNotOffered { .. } = error.kind() {
                            warn!(
                                queue_id = %job.id,
                                domain = %domain,
                                mx = %candidate.host,
                                route = origin.as_deref().unwrap_or("-"),
                                "AUTH is configured but the server offers no usable mechanism; not delivering without AUTH: {error}"
                            );
                        }
                        if is_tls_failure(&error) {
                            hosts.tls_failed(&candidate);
                        }
                        SessionEnd::NextHost(error)
                    }
                }
            }
        };
        match session {
            SessionEnd::Done {
                outcomes,
                reply,
                response,
                closing,
            } => {
                return GroupResult {
                    outcomes,
                    contact,
                    reply,
                    response,
                    elapsed: started.elapsed(),
                    closing,
                };
            }
            SessionEnd::NextHost(error) => {
                host_failed(&contact, &error, started);
                last_failure = Some((error, candidate.host.clone()));
            }
            SessionEnd::Stale => unreachable!("only a kept session is stale, and it is retried"),
        }
    }
    let hosts = match &origin {
        Some(origin) => format!("next hops of {origin}"),
        None => format!("MX hosts of {domain}"),
    };
    let outcome = match &last_failure {
        Some((error, host)) if matches!(error.kind(), ClientErrorKind::RequireTlsNotOffered) => {
            RecipientOutcome::local(
                Verdict::Failed,
                requiretls::NOT_OFFERED,
                requiretls::not_offered_text(&hosts),
                Some(host),
            )
        }
        Some((error, host)) => match negative_reply(error) {
            Some(reply) if !error.is_transient() => RecipientOutcome::from_reply(reply, host),
            Some(reply) => RecipientOutcome {
                verdict: Verdict::Deferred,
                ..RecipientOutcome::from_reply(reply, host)
            },
            None => RecipientOutcome::local(
                Verdict::Deferred,
                "4.4.1",
                format!("Tried all {hosts}; last error: {error}"),
                Some(host),
            ),
        },
        None => RecipientOutcome::local(
            Verdict::Deferred,
            "4.4.1",
            format!("No {hosts} could be tried"),
            None,
        ),
    };
    GroupResult {
        reply: outcome.text.clone(),
        outcomes: vec![outcome; count],
        contact: HostContact {
            route: origin,
            tls_policy: dane.any().or(tls_policy),
            ..HostContact::default()
        },
        response: None,
        elapsed: started.elapsed(),
        closing: None,
    }
}

/// Connects (greeting, EHLO, STARTTLS per the connector) and, when the
/// connector has credentials, authenticates: a host that cannot take AUTH
/// never gets the mail.
async fn open_session(
    candidate: &Candidate,
    use_tls: bool,
    contact: &mut HostContact,
) -> Result<SmtpClient, ClientError> {
    let address = SocketAddr::new(candidate.ip, candidate.port);
    let config = candidate.connector.config(use_tls);
    let mut client = SmtpClient::connect(address, &candidate.host, config).await?;
    contact.tls = client.is_tls();
    if let Some(user) = candidate.connector.auth_user() {
        if let Err(error) = client.authenticate().await {
            client.quit().await;
            return Err(error);
        }
        contact.auth = Some(user.to_owned());
    }
    Ok(client)
}

/// Counts an MX session for TLS-RPT (routes are no recipient's policy):
/// a session that got STARTTLS, or one that failed for a TLS reason; a
/// clear-text session or a non-TLS failure is not counted. The policy is
/// the host's: DANE's (`tlsa`), the domain's MTA-STS policy (`sts`, also in
/// `testing` mode), else `no-policy-found` (tls_policy.ini and the
/// default, RFC 8460 §4.4).
fn record_tls(
    ctx: &Context,
    decision: Option<TlsDecision>,
    mx_tls: Option<&MxDecision>,
    domain: &str,
    candidate: &Candidate,
    outcome: Result<bool, &ClientError>,
) {
    let Some(decision) = decision else {
        return;
    };
    if !ctx.tlsrpt.may_count(domain) {
        return;
    }
    let required = !matches!(decision.policy, TlsPolicy::None | TlsPolicy::May);
    let result = match outcome {
        Ok(true) => tlsrpt::SessionResult::Success,
        Ok(false) => return,
        Err(error) => match tlsrpt::classify(error, required) {
            Some(result_type) => tlsrpt::SessionResult::Failure(tlsrpt::Failure {
                result_type,
                sending_mta_ip: tlsrpt::sending_ip(candidate.connector.source(), candidate.ip),
                receiving_mx_hostname: Some(candidate.host.clone()),
                receiving_ip: Some(candidate.ip),
                additional_information: None,
                failure_reason_code: None,
            }),
            None => return,
        },
    };
    ctx.tlsrpt
        .record(report_policy(decision, mx_tls, domain, candidate), result);
}

/// An MTA-STS policy that could not be had (fetch error, invalid policy,
/// policy host certificate) is reported for TLS-RPT with no MX: RFC 8460
/// §4.3.2's policy failures.
fn record_policy_failure(ctx: &Context, domain: &str, result_type: tlsrpt::ResultType) {
    if !ctx.tlsrpt.may_count(domain) {
        return;
    }
    let mut key = tlsrpt::PolicyKey::no_policy(domain);
    key.policy_type = tlsrpt::PolicyType::Sts;
    ctx.tlsrpt.record(
        key,
        tlsrpt::SessionResult::Failure(tlsrpt::Failure {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_ip: None,
            additional_information: None,
            failure_reason_code: None,
        }),
    );
}

/// MX hosts an MTA-STS policy does not list (refused under `enforce`,
/// would-be refused under `testing`) are reported for TLS-RPT as
/// `validation-failure` of the `sts` policy, once per host.
fn record_sts_mx_mismatches(
    ctx: &Context,
    domain: &str,
    mx_tls: &MxDecision,
    candidates: &[Candidate],
) {
    let Some(found) = &mx_tls.sts else {
        return;
    };
    if !ctx.tlsrpt.may_count(domain) {
        return;
    }
    let mut reported: Vec<&str> = Vec::new();
    for candidate in candidates {
        if found.policy.matches(&candidate.host) || reported.contains(&candidate.host.as_str()) {
            continue;
        }
        reported.push(&candidate.host);
        ctx.tlsrpt.record(
            report_policy(mx_tls.decision, Some(mx_tls), domain, candidate),
            tlsrpt::SessionResult::Failure(tlsrpt::Failure {
                result_type: tlsrpt::ResultType::ValidationFailure,
                sending_mta_ip: None,
                receiving_mx_hostname: Some(candidate.host.clone()),
                receiving_ip: None,
                additional_information: None,
                failure_reason_code: Some("MX host not in the MTA-STS policy".to_owned()),
            }),
        );
    }
}

/// The RFC 8460 §4.4 policy a session is reported under.
fn report_policy(
    decision: TlsDecision,
    mx_tls: Option<&MxDecision>,
    domain: &str,
    candidate: &Candidate,
) -> tlsrpt::PolicyKey {
    let mut key = tlsrpt::PolicyKey::no_policy(domain);
    if decision.policy == TlsPolicy::Dane {
        // The TLSA records themselves are not kept past the verifier, so
        // the policy string is left empty (a known gap).
        key.policy_type = tlsrpt::PolicyType::Tlsa;
        key.mx_host = vec![candidate.host.clone()];
    } else if let Some(found) = mx_tls.and_then(|mx_tls| mx_tls.sts.as_ref())
        && found.policy.mode != Mode::None
    {
        key.policy_type = tlsrpt::PolicyType::Sts;
        key.policy_string = std::iter::once("version: STSv1".to_owned())
            .chain(std::iter::once(format!(
                "mode: {}",
                found.policy.mode.as_str()
            )))
            .chain(found.policy.mx.iter().map(|mx| format!("mx: {mx}")))
            .chain(std::iter::once(format!(
                "max_age: {}",
                found.policy.max_age.as_secs()
            )))
            .collect();
        key.mx_host = found.policy.mx.clone();
    }
    key
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
