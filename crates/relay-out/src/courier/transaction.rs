//! One transaction with a host that is connected (greeted, and
//! authenticated where the route says so): MAIL, the RCPTs and the data,
//! with an outcome per recipient. attempt.rs chooses and opens the hosts;
//! this is what happens on each one it opens.

use smtp_core::client::{ClientError, ClientErrorKind, MailOptions, SmtpClient};
use smtp_protocol::reply::Reply;

use super::Context;
use super::attempt::Job;
use super::grouping::Group;
use super::outcome::{HandedOn, RecipientOutcome, Verdict};
use super::session_cache::{Session, SessionKey};
use spool::QueueId;

/// How a session with one host ended.
pub(super) enum SessionEnd {
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

/// MAIL, RCPTs and the data with a connected host. The data gets one reply
/// per accepted recipient (LMTP's own, or SMTP's one repeated), and each
/// recipient's outcome follows its reply. A session whose data got a
/// positive reply is kept for the next message to the same host
/// (`session_cache`) when `keep` gives its key.
pub(super) async fn transaction(
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
pub(super) fn negative_reply(error: &ClientError) -> Option<&Reply> {
    error
        .reply()
        .filter(|reply| reply.is_transient() || reply.is_permanent())
}
