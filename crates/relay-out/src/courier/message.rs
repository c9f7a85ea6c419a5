//! The work on one queued message when it is due: the operator's bounce
//! request, one attempt per destination (concurrently, each within the
//! concurrency limits), the new state written to disk after each, then
//! notices for whatever failed, and removal once nothing is left.
//!
//! # Where a duplicate can happen
//!
//! The envelope on disk is rewritten after each destination's attempt, so a
//! crash (or a failed write) between a remote's 250 to the data and that
//! rewrite leaves the recipient pending, and it is sent again after the
//! restart. Likewise a crash between storing a notice and marking its
//! recipients `bounced` queues the notice twice. Nothing else is repeated:
//! recipients are settled one by one and a settled one is never retried
//! (see also the intake duplicate in the [`spool`] crate's docs).

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smtp_protocol::address::parse_reverse_path;
use tokio::task::JoinSet;
use tracing::{error, info};

use super::attempt::{GroupResult, Job, attempt_group};
use super::due_list::{Ticket, make_pending_due};
use super::grouping::{Group, due_work};
use super::log::{AttemptRecord, AttemptResult, HostContact, log_attempt};
use super::notice;
use super::outcome::{RecipientOutcome, Verdict};
use super::shaping::Signal;
use super::{Context, SpoolCallError};
use spool::{Envelope, RecipientStatus, SpoolError};

/// When a notice could not be stored (disk full), try again after this.
const NOTICE_RETRY: Duration = Duration::from_secs(60);

/// What became of a message after its turn.
#[derive(Debug)]
pub enum TaskOutcome {
    /// It left the queue (settled, or deleted by the operator).
    Gone,
    /// Still queued, in this new state (only its compact record is kept).
    Queued {
        /// Boxed: the other outcomes are small.
        envelope: Box<Envelope>,
        /// When to look at it again, if not when its envelope says.
        revisit: Option<SystemTime>,
        /// The last write of its state failed: the dispatcher keeps this
        /// state for the next turn, the disk's is older.
        unsaved: bool,
    },
    /// Its envelope could not be read; it stays queued and is tried later.
    Unread,
}

/// The message was deleted by the operator while we worked on it.
struct Gone;

/// One turn of a message: its envelope is read from the spool here, so
/// that only the messages being worked on are in memory. With `deliver`
/// false (delivery disabled) only the operator's bounce request and owed
/// notices are handled.
pub async fn process(ctx: Arc<Context>, ticket: Ticket, deliver: bool) -> TaskOutcome {
    let unsaved = Cell::new(ticket.unsaved.is_some());
    UNSAVED
        .scope(unsaved, async move {
            let mut outcome = turn(ctx, ticket, deliver).await;
            if let TaskOutcome::Queued { unsaved, .. } = &mut outcome {
                *unsaved = UNSAVED.with(Cell::get);
            }
            outcome
        })
        .await
}

tokio::task_local! {
    /// Whether the disk is behind the task's envelope (a write failed, and
    /// none succeeded since); set by [`persist`].
    static UNSAVED: Cell<bool>;
}

/// What a turn learns from the spool besides the envelope. Read with it in
/// one call to the blocking pool: each call is a hand-off to another thread
/// and a wake-up back, per message (BENCHMARKS.md, "relay-out drain").
struct Loaded {
    bounce_requested: Result<bool, SpoolError>,
    /// The message's size for `SIZE=`, when the turn may deliver.
    size: Option<Result<u64, SpoolError>>,
}

async fn turn(ctx: Arc<Context>, ticket: Ticket, deliver: bool) -> TaskOutcome {
    let id = ticket.id.clone();
    let unsaved = ticket.unsaved;
    let read = ctx
        .spool_call(move |spool| {
            let envelope = match unsaved {
                Some(envelope) => *envelope,
                None => spool.read_envelope(&id)?,
            };
            let loaded = Loaded {
                bounce_requested: spool.bounce_requested(&id),
                size: deliver.then(|| spool.data_size(&id)),
            };
            Ok((envelope, loaded))
        })
        .await;
    let (mut envelope, loaded) = match read {
        Ok(read) => read,
        Err(SpoolCallError::Spool(SpoolError::Gone(_))) => {
            info!(queue_id = %ticket.id, "message deleted by the operator");
            return TaskOutcome::Gone;
        }
        Err(error) => {
            error!(queue_id = %ticket.id, %error, "cannot read the queued message; trying again later");
            return TaskOutcome::Unread;
        }
    };
    if ticket.flushed {
        make_pending_due(&mut envelope, SystemTime::now());
    }
    if honour_bounce_request(&ctx, &mut envelope, loaded.bounce_requested)
        .await
        .is_err()
    {
        return TaskOutcome::Gone;
    }
    if let Some(size) = loaded.size
        && !ctx.is_disabled()
        && attempt_due(&ctx, &mut envelope, size).await.is_err()
    {
        return TaskOutcome::Gone;
    }
    // Boxed so that settling (bounces, the spool) does not size the task of
    // every message waiting for its attempts.
    Box::pin(settle(&ctx, envelope)).await
}

/// `relay-out queue bounce ID`: every pending recipient fails now.
async fn honour_bounce_request(
    ctx: &Context,
    envelope: &mut Envelope,
    requested: Result<bool, SpoolError>,
) -> Result<(), Gone> {
    let requested = match requested {
        Ok(requested) => requested,
        Err(error) => {
            error!(queue_id = %envelope.id, %error, "cannot check for a bounce request");
            false
        }
    };
    if !requested || envelope.is_finished() {
        return Ok(());
    }
    info!(queue_id = %envelope.id, "bouncing at the operator's request");
    let outcome = RecipientOutcome::local(
        Verdict::Failed,
        "5.0.0",
        "Delivery cancelled by the postmaster (relay-out queue bounce)",
        None,
    );
    let now = SystemTime::now();
    let arrival = envelope.arrival;
    for recipient in &mut envelope.recipients {
        if recipient.status == RecipientStatus::Pending {
            ctx.retry
                .apply(recipient, &outcome, arrival, now, &mut rand::rng());
        }
    }
    persist(ctx, envelope).await
}

/// Attempts every due destination of the message at once, saving the
/// envelope as each one finishes.
/// `size`: the message's size as read with the envelope.
async fn attempt_due(
    ctx: &Arc<Context>,
    envelope: &mut Envelope,
    size: Result<u64, SpoolError>,
) -> Result<(), Gone> {
    let now = SystemTime::now();
    let work = due_work(envelope, now, ctx.always_split);
    if !work.unroutable.is_empty() {
        apply(ctx, envelope, work.unroutable);
        persist(ctx, envelope).await?;
    }
    if work.groups.is_empty() {
        return Ok(());
    }
    let size = match size {
        Ok(size) => Some(size),
        Err(SpoolError::Gone(_)) => return Err(Gone),
        // Sending goes on without SIZE=; reading the data will tell.
        Err(error) => {
            error!(queue_id = %envelope.id, %error, "cannot read the size of the queued message");
            None
        }
    };
    let sender = match parse_reverse_path(&format!("<{}>", envelope.sender)) {
        Ok(sender) => sender,
        Err(problem) => {
            let text = format!(
                "Invalid sender {:?} in the queue: {problem}",
                envelope.sender
            );
            let outcome = RecipientOutcome::local(Verdict::Failed, "5.1.7", text, None);
            let all = work
                .groups
                .iter()
                .flat_map(|group| group.recipients.iter().map(|&i| (i, outcome.clone())))
                .collect();
            apply(ctx, envelope, all);
            return persist(ctx, envelope).await;
        }
    };
    let job = Arc::new(Job {
        id: envelope.id.clone(),
        arrival: envelope.arrival,
        sender,
        size,
        smtputf8: envelope.smtputf8,
        eight_bit_mime: envelope.eight_bit_mime,
        ret: dsn::request::ret(envelope),
        envid: dsn::request::envid(envelope),
        requiretls: envelope.requiretls,
        tls_required_no: envelope.tls_required_no,
    });
    let mut groups = work.groups;
    if groups.len() == 1 {
        // One destination, the usual case: attempted in this task, since a
        // task of its own costs a spawn and a wake-up per message.
        let group = groups.remove(0);
        let result = attempt_with_permits(ctx, &job, &group).await;
        return record_result(ctx, envelope, &job, &group, result).await;
    }
    let mut attempts = JoinSet::new();
    for group in groups {
        let ctx = Arc::clone(ctx);
        let job = Arc::clone(&job);
        attempts.spawn(async move {
            let outcomes = attempt_with_permits(&ctx, &job, &group).await;
            (group, outcomes)
        });
    }
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok((group, result)) => record_result(ctx, envelope, &job, &group, result).await?,
            Err(error) => {
                error!(queue_id = %envelope.id, %error, "a delivery attempt failed unexpectedly; retrying later");
            }
        }
    }
    Ok(())
}

/// One destination's verdicts into the envelope, its log line, and the
/// envelope to disk unless the message is settled; `None`: not attempted
/// (delivery was disabled while it waited).
async fn record_result(
    ctx: &Context,
    envelope: &mut Envelope,
    job: &Job,
    group: &Group,
    result: Option<GroupResult>,
) -> Result<(), Gone> {
    let Some(GroupResult {
        outcomes,
        contact,
        reply,
        response,
        elapsed,
        closing: _,
    }) = result
    else {
        return Ok(());
    };
    apply(
        ctx,
        envelope,
        group.recipients.iter().copied().zip(outcomes).collect(),
    );
    log_verdicts(
        job,
        envelope,
        group,
        &Verdicts {
            contact: &contact,
            reply: &reply,
            response: response.as_deref(),
            elapsed,
        },
    );
    // A settled message is removed next (`settle`), which is as durable a
    // record of the verdicts as this write and costs one directory sync
    // instead of a file and two syncs.
    if !envelope.is_settled() {
        persist(ctx, envelope).await?;
    }
    Ok(())
}

/// Waits for room in the destination's shaping budget, then for a slot,
/// then attempts and tells the budget how it went; `None` when delivery
/// was disabled while waiting.
async fn attempt_with_permits(ctx: &Context, job: &Job, group: &Group) -> Option<GroupResult> {
    let routed = ctx.routing.for_destination(&group.destination).is_some();
    let budget = ctx
        .shaping
        .budget_for(&ctx.dns, &group.destination, routed)
        .await;
    // The budget first: a session waiting on a throttled provider holds none
    // of the slots other destinations need.
    // Parked meanwhile: a resting provider does not hold delivery slots.
    let shaping = ctx.parked.wait(ctx.shaping.acquire(&budget)).await;
    let _permits = ctx.limits.acquire(&group.destination).await?;
    if ctx.is_disabled() {
        log_attempt(&AttemptRecord {
            delay: job.delay(),
            ..AttemptRecord::settling_none(
                &job.id,
                &group.destination.to_string(),
                &HostContact::default(),
                group.recipients.len(),
                AttemptResult::Skipped,
                "delivery disabled (outbound.ini disabled=true)",
            )
        });
        return None;
    }
    // Boxed: the attempt's future (DNS, connect, TLS, the SMTP dialogue) is
    // many KB, and inline it made every message still waiting for a slot
    // that large: a queue of 5,000 released at once held 65 MB.
    let keep_sessions = ctx.shaping.keeps_sessions(&budget);
    let mut result = Box::pin(attempt_group(ctx, job, group, keep_sessions)).await;
    // The host counts the connection until its QUIT is over, so the budget
    // place is given back only then (the verdicts go on to the disk now).
    if let Some(closing) = result.closing.take() {
        tokio::spawn(async move {
            let _ = closing.await;
            drop(shaping);
        });
    }
    let (signal, reply) = match result.outcomes.iter().find(|o| o.is_rate_reply()) {
        Some(rate) => (Signal::RateReply, rate.text.as_str()),
        None if result
            .outcomes
            .iter()
            .any(|o| o.verdict == Verdict::Delivered) =>
        {
            (Signal::Delivered, "")
        }
        None => (Signal::Nothing, ""),
    };
    ctx.shaping.observe(&budget, signal, reply);
    Some(result)
}

/// What an attempt's final log line says about the host side.
struct Verdicts<'a> {
    contact: &'a HostContact,
    reply: &'a str,
    response: Option<&'a str>,
    elapsed: Duration,
}

/// The attempt's final log line, once the verdicts are in the envelope:
/// which recipients were delivered, which are retried (and when the first
/// is due), which bounce.
fn log_verdicts(job: &Job, envelope: &Envelope, group: &Group, verdicts: &Verdicts) {
    let now = SystemTime::now();
    let (mut delivered, mut deferred, mut bounced) = (Vec::new(), Vec::new(), Vec::new());
    let mut next_attempt: Option<SystemTime> = None;
    for recipient in group
        .recipients
        .iter()
        .filter_map(|&i| envelope.recipients.get(i))
    {
        let address = recipient.address.as_str();
        match recipient.status {
            RecipientStatus::Delivered => delivered.push(address),
            RecipientStatus::Pending => {
                deferred.push(address);
                next_attempt = match (next_attempt, recipient.next_attempt) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            RecipientStatus::Failed | RecipientStatus::Bounced => bounced.push(address),
        }
    }
    let result = AttemptResult::of_counts(delivered.len(), deferred.len(), bounced.len());
    log_attempt(&AttemptRecord {
        queue_id: &job.id,
        domain: &group.destination.to_string(),
        contact: verdicts.contact,
        recipients: group.recipients.len(),
        result,
        reply: verdicts.reply,
        response: verdicts
            .response
            .filter(|_| result == AttemptResult::Partial),
        delivered: &delivered,
        deferred: &deferred,
        bounced: &bounced,
        retry_in: next_attempt.map(|due| due.duration_since(now).unwrap_or_default()),
        delay: job.delay(),
        elapsed: verdicts.elapsed,
    });
}

fn apply(ctx: &Context, envelope: &mut Envelope, outcomes: Vec<(usize, RecipientOutcome)>) {
    let now = SystemTime::now();
    let arrival = envelope.arrival;
    let mut rng = rand::rng();
    for (index, outcome) in outcomes {
        if let Some(recipient) = envelope.recipients.get_mut(index) {
            ctx.retry.apply(recipient, &outcome, arrival, now, &mut rng);
        }
    }
}

/// Queues owed notices, then removes the message if nothing is left, else
/// saves it.
async fn settle(ctx: &Context, mut envelope: Envelope) -> TaskOutcome {
    let mut revisit = None;
    if envelope.owing_notice() {
        match notice::send_owed(ctx, &mut envelope).await {
            Ok(()) => {
                if !envelope.is_settled() && persist(ctx, &envelope).await.is_err() {
                    return TaskOutcome::Gone;
                }
            }
            Err(notice::NoticeError::Spool(SpoolError::Gone(_))) => return TaskOutcome::Gone,
            Err(error) => {
                error!(queue_id = %envelope.id, %error, "bounce not queued; trying again later");
                revisit = Some(SystemTime::now() + NOTICE_RETRY);
            }
        }
    }
    if !envelope.is_finished() {
        let before = envelope.delay_warned;
        match notice::warn_if_delayed(ctx, &mut envelope, SystemTime::now()).await {
            Ok(()) => {
                if envelope.delay_warned != before && persist(ctx, &envelope).await.is_err() {
                    return TaskOutcome::Gone;
                }
            }
            Err(notice::NoticeError::Spool(SpoolError::Gone(_))) => return TaskOutcome::Gone,
            Err(error) => {
                error!(queue_id = %envelope.id, %error, "delay warning not queued; trying again later");
                revisit = Some(SystemTime::now() + NOTICE_RETRY);
            }
        }
        // Come back for the next warning even if no attempt is due by then.
        if let Some(warning) = notice::delay_warning_due(&envelope, ctx.delay_warning) {
            let due = revisit.or_else(|| envelope.next_attempt());
            revisit = Some(due.map_or(warning, |due| due.min(warning)));
        }
    }
    if envelope.is_settled() {
        let id = envelope.id.clone();
        match ctx.spool_call(move |spool| spool.remove(&id)).await {
            Ok(()) => info!(queue_id = %envelope.id, "message done, removed from the queue"),
            Err(SpoolCallError::Spool(error)) => {
                error!(queue_id = %envelope.id, %error, "cannot remove a finished message; it is cleaned up at the next start")
            }
            Err(error @ SpoolCallError::Task(_)) => {
                error!(queue_id = %envelope.id, %error, "cannot remove a finished message")
            }
        }
        return TaskOutcome::Gone;
    }
    TaskOutcome::Queued {
        envelope: Box::new(envelope),
        revisit,
        unsaved: false,
    }
}

/// Writes the envelope. A write failure is logged and the in-memory state
/// goes on (the risk is only a repeated delivery after a crash); `Gone`
/// means the operator deleted the message.
async fn persist(ctx: &Context, envelope: &Envelope) -> Result<(), Gone> {
    let copy = envelope.clone();
    let result = ctx.spool_call(move |spool| spool.update(&copy)).await;
    let _ = UNSAVED.try_with(|unsaved| unsaved.set(result.is_err()));
    match result {
        Ok(()) => Ok(()),
        Err(SpoolCallError::Spool(SpoolError::Gone(_))) => {
            info!(queue_id = %envelope.id, "message deleted by the operator");
            Err(Gone)
        }
        Err(error) => {
            error!(queue_id = %envelope.id, %error, "cannot save the delivery state");
            Ok(())
        }
    }
}
