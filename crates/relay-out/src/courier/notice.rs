//! Telling the sender: turning recipients that failed (or that were
//! delivered, when the sender asked with `NOTIFY=SUCCESS`) into a delivery
//! status notification queued like any other message, or dropping it when
//! the message was itself a bounce (haraka-behaviour.md §7.6) or the sender
//! asked for none (`NOTIFY=NEVER`).

use std::time::{Duration, SystemTime};

use smtp_protocol::dsn_params::Ret;
use tracing::{info, warn};

use super::Context;
use crate::bounce::request::{self, wants_delay, wants_failure};
use crate::bounce::{
    Action, BounceInput, FailedRecipient, MAX_RETURNED_MESSAGE, build_bounce, delayed_recipient,
    failed_recipient, success_recipient,
};
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
/// `<>`), then marks failed ones [`RecipientStatus::Bounced`] and clears
/// owed success notices. The caller persists the envelope afterwards; a
/// crash in between sends the notice twice, never zero times.
pub async fn send_owed(ctx: &Context, envelope: &mut Envelope) -> Result<(), NoticeError> {
    let failed: Vec<usize> = indexes(envelope, |r| r.status == RecipientStatus::Failed);
    let succeeded: Vec<usize> = indexes(envelope, |r| r.success_notice.is_some());
    if failed.is_empty() && succeeded.is_empty() {
        return Ok(());
    }
    if envelope.sender.is_empty() {
        for &index in &failed {
            let recipient = &envelope.recipients[index];
            warn!(
                queue_id = %envelope.id,
                rcpt = %recipient.address,
                reason = recipient.last_reply.as_deref().unwrap_or("-"),
                "double bounce: delivery of a bounce failed; dropped, bounces are never bounced"
            );
        }
    } else {
        let mut reported: Vec<FailedRecipient> = Vec::new();
        for &index in &failed {
            let recipient = &envelope.recipients[index];
            if wants_failure(recipient) {
                reported.push(failed_recipient(recipient));
            } else {
                info!(
                    queue_id = %envelope.id,
                    rcpt = %recipient.address,
                    notify = recipient.notify.as_deref().unwrap_or("-"),
                    "no bounce: the sender asked not to be notified of failures (NOTIFY)"
                );
            }
        }
        for &index in &succeeded {
            let recipient = &envelope.recipients[index];
            let action = match recipient.success_notice.as_deref() {
                Some("delivered") => Action::Delivered,
                _ => Action::Relayed,
            };
            reported.push(success_recipient(recipient, action));
        }
        if !reported.is_empty() {
            let any_failed = reported.iter().any(|r| r.action == Action::Failed);
            // RFC 8689 §5: a REQUIRETLS message is returned as with RET=HDRS.
            let return_full =
                any_failed && request::ret(envelope) == Some(Ret::Full) && !envelope.requiretls;
            let notice = queue_notice(
                ctx,
                envelope,
                &reported,
                ctx.bounce_template.as_deref(),
                return_full,
            )
            .await?;
            info!(
                queue_id = %envelope.id,
                bounce_id = %notice.id,
                to = %envelope.sender,
                rcpts = reported.len(),
                kind = if any_failed { "failed" } else { "success" },
                "bounce queued"
            );
            ctx.dispatcher.queued(notice);
        }
    }
    for index in failed {
        envelope.recipients[index].status = RecipientStatus::Bounced;
    }
    for index in succeeded {
        envelope.recipients[index].success_notice = None;
    }
    Ok(())
}

/// When the message's next delay warning is due: `interval` after its
/// arrival or its last warning, while some recipient is still pending and
/// its sender wants to hear of delays. `None`: no warning will be due
/// (none configured, nothing pending, NOTIFY without DELAY, or the message
/// is itself a notice, whose sender `<>` cannot be told).
pub fn delay_warning_due(envelope: &Envelope, interval: Option<Duration>) -> Option<SystemTime> {
    let interval = interval?;
    if envelope.sender.is_empty() || !envelope.pending().any(wants_delay) {
        return None;
    }
    envelope
        .delay_warned
        .unwrap_or(envelope.arrival)
        .checked_add(interval)
}

/// Queues a delay warning (`Action: delayed`) when one is due at `now`,
/// about every pending recipient that wants one, quoting its last reply and
/// its next attempt, and records when, so the next comes one interval
/// later. The caller persists the envelope.
pub async fn warn_if_delayed(
    ctx: &Context,
    envelope: &mut Envelope,
    now: SystemTime,
) -> Result<(), NoticeError> {
    match delay_warning_due(envelope, ctx.delay_warning) {
        Some(due) if due <= now => {}
        _ => return Ok(()),
    }
    let give_up_at = envelope.arrival + ctx.retry.lifetime;
    let reported: Vec<FailedRecipient> = envelope
        .pending()
        .filter(|r| wants_delay(r))
        .map(|r| delayed_recipient(r, give_up_at))
        .collect();
    let notice = queue_notice(
        ctx,
        envelope,
        &reported,
        ctx.delay_template.as_deref(),
        false,
    )
    .await?;
    envelope.delay_warned = Some(now);
    info!(
        queue_id = %envelope.id,
        bounce_id = %notice.id,
        to = %envelope.sender,
        rcpts = reported.len(),
        "delay warning queued"
    );
    ctx.dispatcher.queued(notice);
    Ok(())
}

fn indexes(envelope: &Envelope, owed: impl Fn(&RecipientState) -> bool) -> Vec<usize> {
    envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| owed(r))
        .map(|(index, _)| index)
        .collect()
}

/// Builds and durably stores a notice about `reported` to the message's
/// sender; returns its envelope. With `return_full`, the message itself is
/// read (up to the size a notice returns) instead of its header section.
pub async fn queue_notice(
    ctx: &Context,
    envelope: &Envelope,
    reported: &[FailedRecipient],
    template: Option<&str>,
    return_full: bool,
) -> Result<Envelope, NoticeError> {
    let spool = ctx.spool.clone();
    let id = envelope.id.clone();
    let original = tokio::task::spawn_blocking(move || {
        if return_full {
            // One byte over the limit tells the builder it is too big.
            spool.read_start(&id, MAX_RETURNED_MESSAGE as u64 + 1)
        } else {
            let mut headers = spool.read_headers(&id, MAX_SHOWN_HEADER_BYTES)?;
            headers.extend_from_slice(b"\r\n");
            Ok(headers)
        }
    })
    .await??;
    let envid = request::envid(envelope).map(|id| id.report_value());
    let message = build_bounce(&BounceInput {
        me: &ctx.me,
        original_sender: &envelope.sender,
        arrival: envelope.arrival,
        original_message: &original,
        return_full,
        envid: envid.as_deref(),
        recipients: reported,
        template,
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
        // Only a returned 8-bit message makes the notice 8-bit.
        eight_bit_mime: !message.is_ascii(),
        ret: None,
        envid: None,
        delay_warned: None,
        // RFC 8689 §5: a notice about a REQUIRETLS message asks for the
        // same protection (best effort: see `crate::requiretls`).
        requiretls: envelope.requiretls,
        tls_required_no: false,
        extras: spool::NoExtras {},
    };
    let spool = ctx.spool.clone();
    let stored = notice.clone();
    tokio::task::spawn_blocking(move || spool.store(&stored, &message)).await??;
    Ok(notice)
}
