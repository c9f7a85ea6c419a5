//! Telling the sender: turning recipients that failed into a delivery
//! status notification queued like any other message, or dropping it when
//! the message was itself a bounce (haraka-behaviour.md §7.6).

use std::time::SystemTime;

use tracing::{info, warn};

use super::Context;
use crate::bounce::{Action, BounceInput, Diagnostic, FailedRecipient, build_bounce};
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

/// The notice's view of a failed recipient.
pub fn failed_recipient(recipient: &RecipientState) -> FailedRecipient {
    let text = recipient
        .last_reply
        .clone()
        .unwrap_or_else(|| "delivery failed".to_string());
    let (diagnostic, remote_mta) = if recipient.reply_is_remote {
        (Diagnostic::Smtp { reply: text }, recipient.last_mx.clone())
    } else {
        (Diagnostic::Local { text }, None)
    };
    FailedRecipient {
        address: recipient.address.clone(),
        action: Action::Failed,
        status: recipient
            .dsn_status
            .clone()
            .unwrap_or_else(|| "5.0.0".to_string()),
        remote_mta,
        diagnostic,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_replies_name_the_mta_local_causes_do_not() {
        let mut recipient = RecipientState::new("bob@example.net", SystemTime::UNIX_EPOCH);
        recipient.status = RecipientStatus::Failed;
        recipient.last_reply = Some("550 5.1.1 No such user".into());
        recipient.last_mx = Some("mx1.example.net".into());
        recipient.reply_is_remote = true;
        recipient.dsn_status = Some("5.1.1".into());
        let remote = failed_recipient(&recipient);
        assert_eq!(remote.status, "5.1.1");
        assert_eq!(remote.remote_mta.as_deref(), Some("mx1.example.net"));
        assert_eq!(
            remote.diagnostic,
            Diagnostic::Smtp {
                reply: "550 5.1.1 No such user".into()
            }
        );

        recipient.reply_is_remote = false;
        recipient.last_reply = Some("Domain example.net sends and receives no email".into());
        recipient.dsn_status = None;
        let local = failed_recipient(&recipient);
        assert_eq!(local.remote_mta, None);
        assert_eq!(local.status, "5.0.0");
        assert!(matches!(local.diagnostic, Diagnostic::Local { .. }));
    }
}
