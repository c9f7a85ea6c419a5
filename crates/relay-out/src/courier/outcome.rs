//! What one attempt did to each recipient, and how that changes the
//! recipient's queue state: delivered, bounced, or retried later on the
//! retry timetable until the queue lifetime runs out.
//!
//! Sans-IO: the clock, the retry timetable and the randomness are parameters.

use std::time::{Duration, SystemTime};

use rand::Rng;
use smtp_protocol::reply::Reply;

use super::retry_timetable::{RetryTimetable, expired};
use spool::{RecipientState, RecipientStatus};

/// The verdict on one recipient after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again later (4xx, unreachable, DNS trouble).
    Deferred,
    /// Give up and bounce (5xx, null MX, NXDOMAIN).
    Failed,
}

/// One recipient's result of an attempt, with everything a later notice
/// must quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    pub verdict: Verdict,
    /// The remote's reply as received (`550 5.1.1 No such user`), or our
    /// description of a local cause.
    pub text: String,
    /// `text` is a remote server's reply.
    pub remote: bool,
    /// The MX host that answered (or was last tried).
    pub mx: Option<String>,
    /// RFC 3463 status for a notice.
    pub status: String,
    /// For a delivered recipient: the success notice it earns if the sender
    /// asked for one (`NOTIFY=SUCCESS`); `None` when the next hop reports itself.
    pub handed_on: Option<HandedOn>,
}

/// How a delivered recipient left us, for a `NOTIFY=SUCCESS` notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandedOn {
    /// To an SMTP server that does not offer DSN: `Action: relayed`.
    Relayed,
    /// To an LMTP server, final delivery: `Action: delivered`.
    Delivered,
}

impl HandedOn {
    /// The value kept in the queue envelope until the notice is queued.
    pub fn as_str(self) -> &'static str {
        match self {
            HandedOn::Relayed => "relayed",
            HandedOn::Delivered => "delivered",
        }
    }
}

impl RecipientOutcome {
    /// The outcome a remote reply means: 2xx delivered, 4xx deferred, 5xx failed.
    pub fn from_reply(reply: &Reply, mx: &str) -> Self {
        let verdict = if reply.is_positive() {
            Verdict::Delivered
        } else if reply.is_transient() {
            Verdict::Deferred
        } else {
            Verdict::Failed
        };
        let status = match reply.enhanced() {
            Some(code) if code.class == class_digit(verdict) => code.to_string(),
            _ => default_status(verdict).to_string(),
        };
        RecipientOutcome {
            verdict,
            text: reply.to_string(),
            remote: true,
            mx: Some(mx.to_string()),
            status,
            handed_on: None,
        }
    }

    /// A remote's "slow down": `421` (too many connections, rate), or the
    /// providers' rate statuses: Gmail's 4.7.28, Microsoft's 4.7.650 and
    /// 4.7.500. Other 4.7.x (greylisting's 4.7.1, TLS's 4.7.0) are not
    /// about the sending rate. Drives [`super::shaping`]'s back-off.
    pub fn is_rate_reply(&self) -> bool {
        const RATE_STATUSES: &[&str] = &["4.7.28", "4.7.650", "4.7.500"];
        self.remote
            && self.verdict == Verdict::Deferred
            && (self.text.starts_with("421") || RATE_STATUSES.contains(&self.status.as_str()))
    }

    /// A cause found on our side (nothing remote answered, or what it said
    /// is not a reply about this recipient).
    pub fn local(
        verdict: Verdict,
        status: &str,
        text: impl Into<String>,
        mx: Option<&str>,
    ) -> Self {
        RecipientOutcome {
            verdict,
            text: text.into(),
            remote: false,
            mx: mx.map(str::to_string),
            status: status.to_string(),
            handed_on: None,
        }
    }
}

fn class_digit(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Delivered => 2,
        Verdict::Deferred => 4,
        Verdict::Failed => 5,
    }
}

fn default_status(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Delivered => "2.0.0",
        Verdict::Deferred => "4.0.0",
        Verdict::Failed => "5.0.0",
    }
}

/// When temporary failures turn into a bounce.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub timetable: RetryTimetable,
    /// `max_queue_lifetime`, counted from the message's arrival.
    pub lifetime: Duration,
}

impl RetryPolicy {
    /// Records `outcome` in `recipient`. A deferral gets its next attempt
    /// from the retry timetable (with jitter), but never later than the end of the
    /// queue lifetime, so an expiring message gets one last attempt exactly
    /// then; a deferral with no retry left, or past the lifetime, becomes a
    /// failure whose status class is rewritten from 4 to 5 (as Haraka does).
    pub fn apply(
        &self,
        recipient: &mut RecipientState,
        outcome: &RecipientOutcome,
        arrival: SystemTime,
        now: SystemTime,
        rng: &mut impl Rng,
    ) {
        recipient.attempts = recipient.attempts.saturating_add(1);
        recipient.last_reply = Some(outcome.text.clone());
        recipient.last_mx.clone_from(&outcome.mx);
        recipient.reply_is_remote = outcome.remote;
        recipient.dsn_status = Some(outcome.status.clone());
        match outcome.verdict {
            Verdict::Delivered => {
                recipient.status = RecipientStatus::Delivered;
                recipient.next_attempt = None;
                recipient.success_notice = outcome
                    .handed_on
                    .filter(|_| dsn::request::wants_success(recipient))
                    .map(|how| how.as_str().to_string());
            }
            Verdict::Failed => fail(recipient),
            Verdict::Deferred => {
                let deadline = arrival.checked_add(self.lifetime);
                let next = self
                    .timetable
                    .next_delay(recipient.attempts, rng)
                    .and_then(|delay| now.checked_add(delay))
                    .map(|next| deadline.map_or(next, |deadline| next.min(deadline)));
                match next {
                    Some(next) if !expired(arrival, now, self.lifetime) && next > now => {
                        recipient.next_attempt = Some(next);
                    }
                    _ => {
                        let lifetime_over = expired(arrival, now, self.lifetime);
                        if !outcome.remote
                            && let Some(reply) = &mut recipient.last_reply
                        {
                            reply.push_str(&give_up_reason(lifetime_over));
                        }
                        recipient.dsn_status = Some(permanent_status(&outcome.status));
                        fail(recipient);
                    }
                }
            }
        }
    }
}

fn fail(recipient: &mut RecipientState) {
    recipient.status = RecipientStatus::Failed;
    recipient.next_attempt = None;
}

fn give_up_reason(lifetime_over: bool) -> String {
    if lifetime_over {
        " (giving up: the message is older than max_queue_lifetime)".to_string()
    } else {
        " (giving up: too many temporary failures)".to_string()
    }
}

/// `4.x.y` → `5.x.y`; anything else stays (a `5.x.y` is already final).
fn permanent_status(status: &str) -> String {
    match status.strip_prefix("4.") {
        Some(rest) => format!("5.{rest}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use smtp_protocol::reply::EnhancedCode;

    const ARRIVAL_SECS: u64 = 1_700_000_000;

    fn at(seconds_after_arrival: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ARRIVAL_SECS + seconds_after_arrival)
    }

    fn policy(intervals: &[u64], lifetime: u64) -> RetryPolicy {
        RetryPolicy {
            timetable: RetryTimetable::from_intervals(
                intervals.iter().copied().map(Duration::from_secs).collect(),
            ),
            lifetime: Duration::from_secs(lifetime),
        }
    }

    fn recipient() -> RecipientState {
        RecipientState::new("bob@example.net", at(0))
    }

    #[test]
    fn replies_map_to_verdicts_and_statuses() {
        let cases = [
            (
                Reply::new(250, Some(EnhancedCode::new(2, 0, 0)), "Ok"),
                Verdict::Delivered,
                "2.0.0",
            ),
            (
                Reply::new(450, Some(EnhancedCode::new(4, 2, 1)), "busy"),
                Verdict::Deferred,
                "4.2.1",
            ),
            (Reply::new(451, None, "later"), Verdict::Deferred, "4.0.0"),
            (
                Reply::new(550, Some(EnhancedCode::new(5, 1, 1)), "No such user"),
                Verdict::Failed,
                "5.1.1",
            ),
            // A server mixing classes gets the generic status of its code.
            (
                Reply::new(550, Some(EnhancedCode::new(4, 1, 1)), "odd"),
                Verdict::Failed,
                "5.0.0",
            ),
        ];
        for (reply, verdict, status) in cases {
            let outcome = RecipientOutcome::from_reply(&reply, "mx.example.net");
            assert_eq!(outcome.verdict, verdict, "{reply}");
            assert_eq!(outcome.status, status, "{reply}");
            assert_eq!(outcome.text, reply.to_string());
            assert!(outcome.remote);
            assert_eq!(outcome.mx.as_deref(), Some("mx.example.net"));
        }
    }

    #[test]
    fn delivered_and_failed_are_final() {
        let policy = policy(&[60], 3600);
        let mut rng = StdRng::seed_from_u64(1);
        let mut delivered = recipient();
        let ok = RecipientOutcome::from_reply(&Reply::new(250, None, "Ok"), "mx");
        policy.apply(&mut delivered, &ok, at(0), at(1), &mut rng);
        assert_eq!(delivered.status, RecipientStatus::Delivered);
        assert_eq!((delivered.next_attempt, delivered.attempts), (None, 1));

        let mut failed = recipient();
        let no = RecipientOutcome::from_reply(&Reply::new(550, None, "no"), "mx");
        policy.apply(&mut failed, &no, at(0), at(1), &mut rng);
        assert_eq!(failed.status, RecipientStatus::Failed);
        assert_eq!(failed.last_reply.as_deref(), Some("550 no"));
        assert_eq!(failed.dsn_status.as_deref(), Some("5.0.0"));
        assert!(failed.reply_is_remote);
    }

    #[test]
    fn deferrals_follow_the_schedule_then_bounce_with_a_5_status() {
        let policy = policy(&[60, 600], 86_400);
        let mut rng = StdRng::seed_from_u64(2);
        let mut state = recipient();
        let busy = RecipientOutcome::from_reply(
            &Reply::new(450, Some(EnhancedCode::new(4, 2, 0)), "busy"),
            "mx",
        );
        policy.apply(&mut state, &busy, at(0), at(10), &mut rng);
        let next = state.next_attempt.expect("retry scheduled");
        assert!(next >= at(10 + 54) && next <= at(10 + 66), "{next:?}");
        assert_eq!(state.status, RecipientStatus::Pending);

        policy.apply(&mut state, &busy, at(0), at(100), &mut rng);
        let next = state.next_attempt.expect("second retry");
        assert!(next >= at(100 + 540) && next <= at(100 + 660));

        policy.apply(&mut state, &busy, at(0), at(800), &mut rng);
        assert_eq!(state.status, RecipientStatus::Failed);
        assert_eq!(state.attempts, 3);
        assert_eq!(state.dsn_status.as_deref(), Some("5.2.0"));
        // The remote's own words stay untouched for the Diagnostic-Code.
        assert_eq!(state.last_reply.as_deref(), Some("450 4.2.0 busy"));
    }

    #[test]
    fn the_last_retry_happens_at_the_end_of_the_lifetime_then_bounces() {
        let policy = policy(&[3600], 600);
        let mut rng = StdRng::seed_from_u64(3);
        let mut state = recipient();
        let down = RecipientOutcome::local(Verdict::Deferred, "4.4.1", "Tried all MXs", None);
        policy.apply(&mut state, &down, at(0), at(1), &mut rng);
        assert_eq!(state.next_attempt, Some(at(600)));

        let mut state = recipient();
        policy.apply(&mut state, &down, at(0), at(601), &mut rng);
        assert_eq!(state.status, RecipientStatus::Failed);
        assert_eq!(state.dsn_status.as_deref(), Some("5.4.1"));
        let reason = state.last_reply.unwrap_or_default();
        assert!(
            reason.starts_with("Tried all MXs (giving up: the message is older"),
            "{reason}"
        );
    }

    #[test]
    fn an_empty_schedule_bounces_the_first_deferral() {
        let policy = policy(&[], 86_400);
        let mut state = recipient();
        let down = RecipientOutcome::local(Verdict::Deferred, "4.4.3", "DNS lookup failure", None);
        policy.apply(
            &mut state,
            &down,
            at(0),
            at(1),
            &mut StdRng::seed_from_u64(4),
        );
        assert_eq!(state.status, RecipientStatus::Failed);
        assert!(
            state
                .last_reply
                .unwrap_or_default()
                .contains("too many temporary failures")
        );
    }

    #[test]
    fn permanent_status_rewrites_only_the_class() {
        assert_eq!(permanent_status("4.4.1"), "5.4.1");
        assert_eq!(permanent_status("5.1.1"), "5.1.1");
        assert_eq!(permanent_status("weird"), "weird");
    }
}
