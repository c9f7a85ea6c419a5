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

use smtp_core::client::{ClientError, ClientErrorKind, MailOptions, SmtpClient, Step};
use smtp_protocol::address::ReversePath;
use smtp_protocol::dsn_params::{Envid, Ret};
use smtp_protocol::reply::Reply;
use tracing::{debug, warn};

use super::Context;
use super::dane::HostDecisions;
use super::grouping::Group;
use super::log::{AttemptRecord, AttemptResult, HostContact, log_attempt};
use super::mx::{self, Candidate};
use super::outcome::{HandedOn, RecipientOutcome, Verdict};
use super::routes;
use super::session_cache::{Session, SessionKey};
use super::tls::{HostOrder, MxDecision, TlsDecision, TlsUse};
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

/// How a session with one host ended.
enum SessionEnd {
    /// The host gave its verdicts.
    Done {
        outcomes: Vec<RecipientOutcome>,
        reply: String,
        response: Option<String>,
        closing: Option<tokio::task::JoinHandle<()>>,
    },
    /// The host could not take the transaction; try the next one.
    NextHost(ClientError),
    /// A session kept from an earlier message failed before MAIL was
    /// accepted (the host closed it while idle): no data was sent, so a
    /// fresh session to the same host takes the message.
    Stale,
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

/// MAIL, RCPTs and the data with a connected host. The data gets one reply
/// per accepted recipient (LMTP's own, or SMTP's one repeated), and each
/// recipient's outcome follows its reply. A session whose data got a
/// positive reply is kept for the next message to the same host
/// (`session_cache`) when `keep` gives its key.
async fn transaction(
    ctx: &Context,
    job: &Job,
    group: &Group,
    session: Session,
    (host, keep): (&str, Option<&SessionKey>),
) -> SessionEnd {
    let Session {
        mut client,
        opened,
        reused,
    } = session;
    let count = group.recipients.len();
    let options = MailOptions {
        size: job.size,
        smtputf8: job.smtputf8,
        eight_bit_mime: job.eight_bit_mime,
        ret: job.ret,
        envid: job.envid.clone(),
        // A notice about a REQUIRETLS message asks for it where offered
        // and is not held back where not (RFC 8689 §5).
        requiretls: job.requiretls
            && (job.requires_authenticated_tls()
                || (client.is_tls() && client.capabilities().requiretls)),
    };
    // With PIPELINING, DATA ends the envelope's group (RFC 2920 §3.1), as
    // Postfix's smtp client sends it: a round trip less per message. The
    // data file is opened first, so the message is at hand for the 354.
    // LMTP keeps DATA apart: only `data_per_recipient` reads its replies.
    let early_data = if client.capabilities().pipelining && !client.is_lmtp() {
        open_data(ctx, &job.id).await.ok()
    } else {
        None
    };
    let exchanged = if early_data.is_some() {
        client
            .envelope_and_data(&job.sender, &group.paths, options)
            .await
    } else {
        let envelope = client.envelope(&job.sender, &group.paths, options).await;
        envelope.map(|replies| (replies, None))
    };
    let (replies, data_reply) = match exchanged {
        Err(_) if reused => {
            client.close();
            return SessionEnd::Stale;
        }
        // A kept session's 4xx to MAIL is most often the host's idle
        // timeout (`421`); a fresh session gets the host's real verdict.
        Ok((replies, data_reply)) if reused && replies.mail.is_transient() => {
            abort_awaited_data(&mut client, data_reply.as_ref());
            client.close();
            return SessionEnd::Stale;
        }
        Ok(exchanged) => exchanged,
        Err(error) if matches!(error.kind(), ClientErrorKind::RequireTlsNotOffered) => {
            // RFC 8689 §4.2.1: QUIT and try the domain's next host.
            client.quit().await;
            return SessionEnd::NextHost(error);
        }
        Err(error) if !error.is_transient() => {
            // The host cannot take this message at all (SMTPUTF8 missing);
            // another host of the same domain would not either.
            let text = format!("{host} cannot take this message: {error}");
            client.quit().await;
            let outcome = RecipientOutcome::local(Verdict::Failed, "5.6.7", &text, Some(host));
            return SessionEnd::Done {
                outcomes: vec![outcome; count],
                reply: text,
                response: None,
                closing: None,
            };
        }
        Err(error) => return SessionEnd::NextHost(error),
    };
    if !replies.mail.is_positive() {
        let outcome = RecipientOutcome::from_reply(&replies.mail, host);
        abort_awaited_data(&mut client, data_reply.as_ref());
        client.quit().await;
        return SessionEnd::Done {
            outcomes: vec![outcome; count],
            reply: replies.mail.to_string(),
            response: None,
            closing: None,
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
        .map(ToString::to_string);
    let mut response = None;
    let mut closing = None;
    if accepted.is_empty() {
        abort_awaited_data(&mut client, data_reply.as_ref());
        client.quit().await;
    } else {
        let file = match early_data {
            Some(file) => Ok(file),
            None => open_data(ctx, &job.id).await,
        };
        let data_outcomes = match file {
            Ok(file) => match send_data(&mut client, data_reply, file, accepted.len()).await {
                Ok(data_replies) => {
                    let handed_on = handed_on(&client);
                    if let Some(key) = keep.filter(|_| data_replies.iter().all(Reply::is_positive))
                    {
                        let session = Session {
                            client,
                            opened,
                            reused,
                        };
                        ctx.sessions.put(key.clone(), session);
                    } else {
                        // Say goodbye in the background: the verdict must
                        // reach the envelope on disk as soon as possible,
                        // since until then a crash means sending the
                        // message again.
                        closing = Some(tokio::spawn(client.quit()));
                    }
                    response = data_replies
                        .iter()
                        .find(|reply| reply.is_positive())
                        .map(ToString::to_string);
                    if deciding.is_none() {
                        deciding = data_replies
                            .iter()
                            .find(|reply| !reply.is_positive())
                            .map(ToString::to_string);
                    }
                    let mut outcomes = per_recipient(&data_replies, accepted.len(), host);
                    for outcome in &mut outcomes {
                        if outcome.verdict == Verdict::Delivered {
                            outcome.handed_on = handed_on;
                        }
                    }
                    outcomes
                }
                Err(error) => {
                    deciding.get_or_insert_with(|| error.to_string());
                    vec![after_data_failure(&error, host); accepted.len()]
                }
            },
            Err(text) => {
                deciding.get_or_insert_with(|| text.clone());
                abort_awaited_data(&mut client, data_reply.as_ref());
                client.quit().await;
                let outcome = RecipientOutcome::local(Verdict::Deferred, "4.3.0", text, None);
                vec![outcome; accepted.len()]
            }
        };
        for (index, outcome) in accepted.into_iter().zip(data_outcomes) {
            outcomes[index] = Some(outcome);
        }
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
        reply: deciding.or_else(|| response.clone()).unwrap_or_default(),
        response,
        closing,
    }
}

/// The message after the envelope: its content after a pipelined DATA's
/// `354`, that DATA's refusal for every accepted recipient, or DATA now
/// when it was not pipelined. One reply per accepted recipient.
async fn send_data(
    client: &mut SmtpClient,
    data_reply: Option<Reply>,
    file: tokio::io::Take<tokio::fs::File>,
    accepted: usize,
) -> Result<Vec<Reply>, ClientError> {
    match data_reply {
        Some(reply) if reply.code() == 354 => {
            let reply = client.data_content(file).await?;
            Ok(vec![reply; accepted])
        }
        Some(refusal) => Ok(vec![refusal; accepted]),
        None => client.data_per_recipient(file).await,
    }
}

/// A pipelined DATA got `354` but the message must not follow: after that
/// only closing the connection keeps the host from taking what it has.
fn abort_awaited_data(client: &mut SmtpClient, data_reply: Option<&Reply>) {
    if data_reply.is_some_and(|reply| reply.code() == 354) {
        client.abort_data();
    }
}

/// What a success notice must say about a recipient this session took: an
/// LMTP server delivered it; an SMTP server without DSN only relayed it, and
/// will never report; one with DSN got the sender's NOTIFY and reports itself.
fn handed_on(client: &SmtpClient) -> Option<HandedOn> {
    if client.is_lmtp() {
        Some(HandedOn::Delivered)
    } else if !client.capabilities().dsn {
        Some(HandedOn::Relayed)
    } else {
        None
    }
}

/// The outcomes of `accepted` recipients from the replies to the data (one
/// per recipient; a missing one defers its recipient).
fn per_recipient(replies: &[Reply], accepted: usize, host: &str) -> Vec<RecipientOutcome> {
    (0..accepted)
        .map(|index| match replies.get(index) {
            Some(reply) => RecipientOutcome::from_reply(reply, host),
            None => RecipientOutcome::local(
                Verdict::Deferred,
                "4.4.2",
                format!("{host} gave no reply for this recipient after the data"),
                Some(host),
            ),
        })
        .collect()
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

/// The queued message, limited to its length (a message in a spare file is
/// followed by the spare's unused room).
async fn open_data(
    ctx: &Context,
    id: &QueueId,
) -> Result<tokio::io::Take<tokio::fs::File>, String> {
    let id = id.clone();
    match ctx.spool_call(move |spool| spool.open_data(&id)).await {
        Ok((file, len)) => Ok(tokio::io::AsyncReadExt::take(
            tokio::fs::File::from_std(file),
            len,
        )),
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
