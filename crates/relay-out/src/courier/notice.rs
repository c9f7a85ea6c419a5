//! Telling the sender: turning recipients that failed into a delivery
//! status notification queued like any other message, or dropping it when
//! the message was itself a bounce (haraka-behaviour.md §7.6).

use std::time::SystemTime;

use tracing::{info, warn};

use super::Context;
use crate::bounce::{BounceInput, FailedRecipient, build_bounce, failed_recipient};
use spool::{
    Envelope, MAX_SHOWN_HEADER_BYTES, QueueId, RecipientState, RecipientStatus, SpoolError,
};

/// Why an owed notice could not be queued now.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("cannot queue the bounce: {0}")]
    Spool(#[from] SpoolError),
    #[error("cannot queue the bounce: the storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Settles every recipient that owes a notice: queues one notice for all of
/// them to the original sender (or logs a double bounce when the sender is
/// `<>`), then marks them [`RecipientStatus::Bounced`]. The caller persists
/// the envelope afterwards; a crash in between sends the notice twice,
/// never zero times.
pub async fn send_owed(ctx: &Context, envelope: &mut Envelope) -> Result<(), NoticeError> {
    let owed: Vec<usize> = envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == RecipientStatus::Failed)
        .map(|(index, _)| index)
        .collect();
    if owed.is_empty() {
        return Ok(());
    }
    if envelope.sender.is_empty() {
        for &index in &owed {
            let recipient = &envelope.recipients[index];
            warn!(
                queue_id = %envelope.id,
                rcpt = %recipient.address,
                reason = recipient.last_reply.as_deref().unwrap_or("-"),
                "double bounce: delivery of a bounce failed; dropped, bounces are never bounced"
            );
        }
    } else {
        let failed: Vec<FailedRecipient> = owed
            .iter()
            .map(|&index| failed_recipient(&envelope.recipients[index]))
            .collect();
        let notice = queue_notice(ctx, envelope, &failed).await?;
        info!(
            queue_id = %envelope.id,
            bounce_id = %notice.id,
            to = %envelope.sender,
            rcpts = failed.len(),
            "bounce queued"
        );
        ctx.dispatcher.queued(notice);
    }
    for index in owed {
        envelope.recipients[index].status = RecipientStatus::Bounced;
    }
    Ok(())
}

/// Builds and durably stores the notice; returns its envelope.
async fn queue_notice(
    ctx: &Context,
    envelope: &Envelope,
    failed: &[FailedRecipient],
) -> Result<Envelope, NoticeError> {
    let spool = ctx.spool.clone();
    let id = envelope.id.clone();
    let mut original =
        tokio::task::spawn_blocking(move || spool.read_headers(&id, MAX_SHOWN_HEADER_BYTES))
            .await??;
    original.extend_from_slice(b"\r\n");
    let message = build_bounce(&BounceInput {
        me: &ctx.me,
        original_sender: &envelope.sender,
        arrival: envelope.arrival,
        original_message: &original,
        recipients: failed,
        template: ctx.bounce_template.as_deref(),
        pid: std::process::id(),
    });
    let now = SystemTime::now();
    let notice = Envelope {
        id: QueueId::generate_at(now),
        arrival: now,
        sender: String::new(),
        recipients: vec![RecipientState::new(envelope.sender.clone(), now)],
        client: Some(format!(
            "relay-out: delivery status notice for {}",
            envelope.id
        )),
        smtputf8: !envelope.sender.is_ascii(),
        eight_bit_mime: false,
        extras: spool::NoExtras {},
    };
    let spool = ctx.spool.clone();
    let stored = notice.clone();
    tokio::task::spawn_blocking(move || spool.store(&stored, &message)).await??;
    Ok(notice)
}
