//! Handing spooled mail to the backend once it is back.
//!
//! Oldest first, each message on a backend session of its own: Postfix
//! re-evaluates its XCLIENT authorisation against the impersonated client
//! after each XCLIENT, so one session cannot carry two clients' messages.
//! At most `spool_concurrency` at once, so a home server that just came
//! back is not flooded.
//!
//! Per recipient, as relay-out's courier: the backend's 250 to the data
//! marks the recipients it accepted `delivered`; a 4xx defers them by the
//! next `spool_retry_intervals` delay; a 5xx fails them, removes them from
//! the verified store and owes the sender a notice, which is handed to the
//! backend (relay-in has no MX delivery: the home server delivers or relays
//! it). A message older than `max_spool_age` fails the same way.
//!
//! A backend that cannot be reached, or whose session cannot be set up,
//! costs no attempt: the message waits for the probe to see the backend
//! again, however long that takes (up to `max_spool_age`).
//!
//! # Where a duplicate can come from
//!
//! Only from a crash (or a failed envelope write) after the backend's 250
//! to the data and before [`Spool::update`](spool::Spool::update) recorded
//! it (`settle` below): the recipients are still pending on disk and go
//! again after restart. Likewise a notice handed to the backend just
//! before a crash is sent again. Nothing is lost: a recipient leaves the
//! spool only once its delivery, or its notice, was accepted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smtp_core::message::Message;
use smtp_protocol::reply::Reply;
use spool::{Envelope, QueueId, RecipientState, RecipientStatus, SpoolError};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::identity::replayed_envelope;
use super::{BackupSpool, SpoolExtras};
use crate::forward::{self, Forwarder};
use crate::policy::{RelayIn, selector};

/// How long the delivery waits before looking again while nothing is due
/// or the backend is away; a flush or a new message wakes it sooner.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// What one delivery pass did with a message.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The backend is away: nothing was tried, nothing counted.
    NotNow,
    /// Tried; the message stays for the recipients still pending.
    Kept { next_due: SystemTime },
    /// Everything is settled: the message left the spool.
    Finished,
    /// The files cannot be used; left on disk for the operator.
    Unusable,
}

/// Delivers spooled mail for the daemon's life.
pub async fn run(backup: Arc<BackupSpool>, relay: Arc<RelayIn>, me: String) {
    loop {
        let now = SystemTime::now();
        backup.report_metrics(now);
        let due = backup.due(now);
        let mut delivered_any = false;
        let mut tasks = JoinSet::new();
        for id in due {
            while tasks.len() >= backup.settings.concurrency {
                delivered_any |= finish_one(&backup, tasks.join_next().await);
            }
            let (backup, forwarder, me) =
                (Arc::clone(&backup), relay.current_forwarder(), me.clone());
            tasks.spawn(async move {
                let outcome = deliver(&backup, &forwarder, &me, &id).await;
                (id, outcome)
            });
        }
        while !tasks.is_empty() {
            delivered_any |= finish_one(&backup, tasks.join_next().await);
        }
        if !delivered_any {
            let _ = tokio::time::timeout(IDLE_LOOK, backup.wake.notified()).await;
        }
    }
}

/// Books one finished delivery; true when it got anywhere (so the loop
/// looks again at once).
fn finish_one(
    backup: &BackupSpool,
    joined: Option<Result<(QueueId, Outcome), tokio::task::JoinError>>,
) -> bool {
    match joined {
        Some(Ok((id, outcome))) => {
            let progressed = !matches!(outcome, Outcome::NotNow);
            match outcome {
                Outcome::NotNow => {}
                Outcome::Kept { next_due } => backup.reschedule(&id, next_due),
                Outcome::Finished | Outcome::Unusable => backup.forget_scheduled(&id),
            }
            progressed
        }
        Some(Err(error)) => {
            error!("backup spool: a delivery task failed: {error}");
            false
        }
        None => false,
    }
}

/// One pass over one message.
async fn deliver(backup: &BackupSpool, forwarder: &Forwarder, me: &str, id: &QueueId) -> Outcome {
    let spool = backup.spool.clone();
    let read_id = id.clone();
    let read = tokio::task::spawn_blocking(move || {
        let envelope = spool.read_envelope(&read_id)?;
        let bounce_requested = spool.bounce_requested(&read_id)?;
        let size = spool.data_size(&read_id)?;
        Ok::<_, SpoolError>((envelope, bounce_requested, size))
    })
    .await;
    let (mut envelope, bounce_requested, size) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(SpoolError::Gone(_))) => return Outcome::Finished,
        Ok(Err(error)) => {
            error!(queue_id = %id, "backup spool: cannot read the message: {error}");
            return Outcome::Unusable;
        }
        Err(error) => {
            error!(queue_id = %id, "backup spool: reading the message failed: {error}");
            return Outcome::NotNow;
        }
    };
    let now = SystemTime::now();
    let expired = now
        .duration_since(envelope.arrival)
        .is_ok_and(|age| age >= backup.settings.max_age);
    if bounce_requested || expired {
        let text = if bounce_requested {
            "delivery cancelled by the administrator (relay-in queue bounce)".to_owned()
        } else {
            format!(
                "the home mail server could not be reached for {} days",
                backup.settings.max_age.as_secs() / 86_400
            )
        };
        for recipient in pending_mut(&mut envelope) {
            fail(recipient, &text, false, "4.4.7");
        }
    } else if envelope.owing_bounce().next().is_none() {
        match try_backend(backup, forwarder, &mut envelope, size, now).await {
            Attempted::Yes => {}
            Attempted::NotNow => return Outcome::NotNow,
            Attempted::Unusable => return Outcome::Unusable,
        }
    }
    if envelope.owing_bounce().next().is_some()
        && !hand_over_notice(backup, forwarder, me, &mut envelope).await
    {
        // The notice waits with the message; the recipients stay failed.
        let next_due = now + backup.settings.retry_intervals[0];
        return settle(backup, envelope, size, Some(next_due)).await;
    }
    settle(backup, envelope, size, None).await
}

/// Whether the backend was tried for a message.
enum Attempted {
    Yes,
    NotNow,
    Unusable,
}

/// One transaction with the backend for the message's due recipients.
async fn try_backend(
    backup: &BackupSpool,
    forwarder: &Forwarder,
    envelope: &mut Envelope<SpoolExtras>,
    size: u64,
    now: SystemTime,
) -> Attempted {
    let id = envelope.id.clone();
    let due: Vec<usize> = envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.status == RecipientStatus::Pending && r.next_attempt.is_none_or(|at| at <= now)
        })
        .map(|(index, _)| index)
        .collect();
    if due.is_empty() {
        return Attempted::Yes;
    }
    let Some(original) = envelope.extras.original_client.clone() else {
        error!(queue_id = %id, "backup spool: the message does not say which client sent it; left in the spool for the administrator");
        return Attempted::Unusable;
    };
    let states: Vec<&RecipientState> = due.iter().map(|&i| &envelope.recipients[i]).collect();
    let Some(replayed) = replayed_envelope(envelope, &states) else {
        error!(queue_id = %id, "backup spool: an address in the message's envelope does not parse; left in the spool for the administrator");
        return Attempted::Unusable;
    };
    let session = original.session(&id);
    let settings = forwarder.settings();
    let selector = selector(
        settings.domain_selector,
        &replayed.from,
        &replayed.recipients[0],
    );
    if forwarder.backend_down(&selector) {
        return Attempted::NotNow;
    }
    let Ok(mut backend) = forwarder.open(&selector, &session).await else {
        // Logged by the forwarder; the probe tells when to try again.
        return Attempted::NotNow;
    };
    let mail = match backend
        .mail_from(&replayed.from, forward::mail_options(&replayed, size))
        .await
    {
        Ok(mail) => mail,
        Err(failure) => {
            warn!(queue_id = %id, "backup spool: backend MAIL failed: {failure}");
            backend.abandon();
            return Attempted::NotNow;
        }
    };
    let mut attempt = Attempt {
        backup,
        envelope,
        now,
    };
    if !mail.is_positive() {
        backend.abandon();
        for &index in &due {
            attempt.book(index, &mail);
        }
        return Attempted::Yes;
    }
    let mut accepted = Vec::new();
    let mut answers = Vec::new();
    for (&index, rcpt) in due.iter().zip(forward::dsn_recipients(&replayed)) {
        match backend.rcpt_to(&rcpt).await {
            Ok(reply) if reply.is_positive() => accepted.push((index, rcpt.path)),
            Ok(reply) => answers.push((index, reply)),
            Err(_) => {
                // The session broke before the data: nothing was delivered.
                backend.abandon();
                return Attempted::NotNow;
            }
        }
    }
    for (index, reply) in answers {
        attempt.book(index, &reply);
    }
    if accepted.is_empty() {
        backend.abandon();
        return Attempted::Yes;
    }
    // relay-in's backup spool keeps no spares, so the message is the file's
    // last `size` bytes, as `Message::Spooled` reads it.
    let data = match backup.spool.open_data(&id) {
        Ok((file, _)) => file,
        Err(error) => {
            error!(queue_id = %id, "backup spool: cannot open the message: {error}");
            backend.abandon();
            return Attempted::Unusable;
        }
    };
    let message = Message::Spooled {
        file: data,
        len: size,
    };
    let mut sent = replayed.clone();
    sent.recipients = accepted.iter().map(|(_, rcpt)| rcpt.clone()).collect();
    let verdict = backend.finish(&session, &sent, &message).await;
    let reply = match &verdict {
        Ok(reply) | Err(reply) => reply.clone(),
    };
    for (index, _) in &accepted {
        attempt.book(*index, &reply);
    }
    match verdict {
        Ok(_) => {
            info!(queue_id = %id, conn = %session.conn_id, client = %session.client.peer.ip(), rcpts = accepted.len(), "backup spool: delivered to the backend: {reply}");
            tokio::spawn(backend.quit());
        }
        Err(_) => backend.abandon(),
    }
    Attempted::Yes
}

/// Books the backend's answers into a message's recipients.
struct Attempt<'a> {
    backup: &'a BackupSpool,
    envelope: &'a mut Envelope<SpoolExtras>,
    now: SystemTime,
}

impl Attempt<'_> {
    fn book(&mut self, index: usize, reply: &Reply) {
        let id = self.envelope.id.clone();
        let recipient = &mut self.envelope.recipients[index];
        recipient.attempts += 1;
        recipient.last_reply = Some(reply.to_string().trim_end().to_owned());
        recipient.reply_is_remote = true;
        if reply.is_positive() {
            recipient.status = RecipientStatus::Delivered;
            recipient.next_attempt = None;
        } else if reply.is_permanent() {
            self.backup.verified.forget(&recipient.address);
            let status = reply
                .enhanced()
                .map_or_else(|| "5.0.0".to_owned(), |code| code.to_string());
            info!(queue_id = %id, rcpt = %recipient.address, "backup spool: the backend refused a recipient: {reply}");
            recipient.status = RecipientStatus::Failed;
            recipient.next_attempt = None;
            recipient.dsn_status = Some(status);
        } else {
            let intervals = &self.backup.settings.retry_intervals;
            let delay = intervals[(recipient.attempts as usize - 1).min(intervals.len() - 1)];
            info!(queue_id = %id, rcpt = %recipient.address, retry_in = delay.as_secs(), "backup spool: deferred by the backend: {reply}");
            recipient.next_attempt = Some(self.now + delay);
        }
    }
}

fn pending_mut(envelope: &mut Envelope<SpoolExtras>) -> impl Iterator<Item = &mut RecipientState> {
    envelope
        .recipients
        .iter_mut()
        .filter(|r| r.status == RecipientStatus::Pending)
}

fn fail(recipient: &mut RecipientState, text: &str, remote: bool, status: &str) {
    recipient.status = RecipientStatus::Failed;
    recipient.next_attempt = None;
    recipient.last_reply = Some(text.to_owned());
    recipient.reply_is_remote = remote;
    recipient.dsn_status = Some(status.to_owned());
}

/// Sends the notice the failed recipients owe to the original sender,
/// through the backend, and marks them bounced. A message from `<>` owes
/// none (a bounce is never bounced). False when it must wait.
async fn hand_over_notice(
    backup: &BackupSpool,
    forwarder: &Forwarder,
    me: &str,
    envelope: &mut Envelope<SpoolExtras>,
) -> bool {
    let id = envelope.id.clone();
    let all_failed: Vec<usize> = envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == RecipientStatus::Failed)
        .map(|(index, _)| index)
        .collect();
    if envelope.sender.is_empty() {
        info!(queue_id = %id, "backup spool: no notice for a message from <> (it is itself a notice)");
        mark_bounced(envelope, &all_failed);
        return true;
    }
    let failed: Vec<usize> = all_failed
        .iter()
        .copied()
        .filter(|&index| {
            let recipient = &envelope.recipients[index];
            let wanted = dsn::request::wants_failure(recipient);
            if !wanted {
                info!(queue_id = %id, rcpt = %recipient.address, "backup spool: no notice: the sender asked not to be notified of failures (NOTIFY)");
            }
            wanted
        })
        .collect();
    if failed.is_empty() {
        mark_bounced(envelope, &all_failed);
        return true;
    }
    let spool = backup.spool.clone();
    let header_id = id.clone();
    let return_full = dsn::request::ret(envelope) == Some(smtp_protocol::dsn_params::Ret::Full);
    let read = tokio::task::spawn_blocking(move || {
        if return_full {
            spool.read_start(&header_id, dsn::MAX_RETURNED_MESSAGE as u64 + 1)
        } else {
            spool.read_headers(&header_id, spool::MAX_SHOWN_HEADER_BYTES)
        }
    })
    .await;
    let original = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            error!(queue_id = %id, "backup spool: cannot read the message for its notice: {error}");
            return false;
        }
        Err(error) => {
            error!(queue_id = %id, "backup spool: cannot read the message for its notice: {error}");
            return false;
        }
    };
    let recipients: Vec<_> = failed
        .iter()
        .map(|&index| dsn::failed_recipient(&envelope.recipients[index]))
        .collect();
    let envid = dsn::request::envid(envelope).map(|id| id.report_value());
    let notice = dsn::build_bounce(&dsn::BounceInput {
        me,
        original_sender: &envelope.sender,
        arrival: envelope.arrival,
        original_message: &original,
        return_full,
        envid: envid.as_deref(),
        recipients: &recipients,
        template: None,
        pid: std::process::id(),
    });
    let Ok(to) = smtp_protocol::address::parse_forward_path(&format!("<{}>", envelope.sender))
    else {
        warn!(queue_id = %id, sender = %envelope.sender, "backup spool: the sender's address cannot take a notice; none sent");
        mark_bounced(envelope, &all_failed);
        return true;
    };
    match forwarder.send_notice(id.as_str(), to, notice).await {
        Ok(reply) => {
            info!(queue_id = %id, to = %envelope.sender, "backup spool: notice handed to the backend: {reply}");
            mark_bounced(envelope, &all_failed);
            true
        }
        Err(reply) if reply.is_permanent() => {
            // Most often "Relay access denied": the notice goes to the
            // internet, and Postfix relays only for clients it trusts.
            error!(queue_id = %id, to = %envelope.sender, "backup spool: the backend refused the notice, dropped: {reply} (to let the backend relay relay-in's notices, give relay-in a login there: smtp_forward.ini auth_type/auth_user/auth_pass; never put relay-in's address in mynetworks)");
            mark_bounced(envelope, &all_failed);
            true
        }
        Err(reply) => {
            warn!(queue_id = %id, to = %envelope.sender, "backup spool: the notice waits: {reply}");
            false
        }
    }
}

fn mark_bounced(envelope: &mut Envelope<SpoolExtras>, indexes: &[usize]) {
    for &index in indexes {
        envelope.recipients[index].status = RecipientStatus::Bounced;
    }
}

/// Writes what the pass found: removes a settled message, or records its
/// state and when it is due again.
async fn settle(
    backup: &BackupSpool,
    envelope: Envelope<SpoolExtras>,
    size: u64,
    notice_due: Option<SystemTime>,
) -> Outcome {
    let spool = backup.spool.clone();
    let settled = envelope.is_settled();
    let next_due = notice_due.or_else(|| envelope.next_attempt());
    let id = envelope.id.clone();
    let written = tokio::task::spawn_blocking(move || {
        if settled {
            spool.remove(&envelope.id)
        } else {
            spool.update(&envelope)
        }
    })
    .await;
    match written {
        Ok(Ok(())) if settled => {
            backup.usage.remove(size);
            info!(queue_id = %id, "backup spool: message done, removed from the spool");
            Outcome::Finished
        }
        Ok(Ok(())) => Outcome::Kept {
            next_due: next_due.unwrap_or_else(SystemTime::now),
        },
        Ok(Err(SpoolError::Gone(_))) => {
            backup.usage.remove(size);
            Outcome::Finished
        }
        Ok(Err(error)) => {
            error!(queue_id = %id, "backup spool: cannot record the delivery state: {error}");
            Outcome::Kept {
                next_due: SystemTime::now() + IDLE_LOOK,
            }
        }
        Err(error) => {
            error!(queue_id = %id, "backup spool: recording the delivery state failed: {error}");
            Outcome::Kept {
                next_due: SystemTime::now() + IDLE_LOOK,
            }
        }
    }
}
