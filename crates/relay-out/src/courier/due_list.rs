//! The in-memory timetable of the queue: which message is due when, and
//! which ones are being worked on. Rebuilt from the spool at every start, so
//! nothing here needs to survive a crash.
//!
//! Sans-IO: the dispatcher feeds it the clock.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use spool::{Envelope, QueueId, RecipientStatus};

/// A message that comes back from an attempt is not due again sooner than
/// this, whatever its envelope says: an attempt that changed nothing (a
/// crashed task, delivery disabled meanwhile) must not spin.
pub const MIN_REVISIT: Duration = Duration::from_secs(1);

/// Every queued message the daemon knows, each either waiting for its due
/// time or out with a delivery task.
#[derive(Debug, Default)]
pub struct DueList {
    waiting: HashMap<QueueId, Waiting>,
    order: BTreeSet<(SystemTime, QueueId)>,
    /// Messages out with a task; `true` when a flush arrived meanwhile, so
    /// the message is due again as soon as it comes back.
    out: HashMap<QueueId, bool>,
}

#[derive(Debug)]
struct Waiting {
    envelope: Envelope,
    due: SystemTime,
}

impl DueList {
    /// When `envelope` next needs work: at once if a notice is owed or
    /// nothing is left (the task then removes it), else at its earliest
    /// pending recipient's time.
    pub fn due_of(envelope: &Envelope, now: SystemTime) -> SystemTime {
        if envelope.owing_bounce().next().is_some() {
            return now;
        }
        envelope.next_attempt().unwrap_or(now)
    }

    /// Messages known (waiting or out with a task) and the age of the oldest
    /// waiting one, for the queue metrics.
    pub fn gauges(&self, now: SystemTime) -> (usize, Duration) {
        let oldest = self
            .waiting
            .values()
            .map(|w| w.envelope.arrival)
            .min()
            .and_then(|arrival| now.duration_since(arrival).ok())
            .unwrap_or_default();
        (self.waiting.len() + self.out.len(), oldest)
    }

    /// Adds a message (new at intake, loaded at start, or a new notice).
    pub fn insert(&mut self, envelope: Envelope, due: SystemTime) {
        let id = envelope.id.clone();
        self.out.remove(&id);
        if let Some(old) = self.waiting.remove(&id) {
            self.order.remove(&(old.due, id.clone()));
        }
        self.order.insert((due, id.clone()));
        self.waiting.insert(id, Waiting { envelope, due });
    }

    /// Hands out every message due at `now`, marking them out.
    pub fn take_due(&mut self, now: SystemTime) -> Vec<Envelope> {
        let mut taken = Vec::new();
        while let Some((due, id)) = self.order.first().cloned() {
            if due > now {
                break;
            }
            self.order.pop_first();
            if let Some(waiting) = self.waiting.remove(&id) {
                self.out.insert(id, false);
                taken.push(waiting.envelope);
            }
        }
        taken
    }

    /// Hands out every waiting message regardless of time (a flush while
    /// delivery is disabled still handles bounce requests and owed notices).
    pub fn take_all(&mut self) -> Vec<Envelope> {
        self.order.clear();
        let taken: Vec<Envelope> = self.waiting.drain().map(|(_, w)| w.envelope).collect();
        for envelope in &taken {
            self.out.insert(envelope.id.clone(), false);
        }
        taken
    }

    /// A task is done with `id`. `envelope` is its new state (`None`: it
    /// left the queue); `revisit` overrides the due time (e.g. a notice that
    /// could not be stored yet).
    pub fn returned(
        &mut self,
        id: &QueueId,
        envelope: Option<Envelope>,
        revisit: Option<SystemTime>,
        now: SystemTime,
    ) {
        let flushed = self.out.remove(id).unwrap_or(false);
        let Some(mut envelope) = envelope else {
            return;
        };
        let due = if flushed {
            make_pending_due(&mut envelope, now);
            now
        } else {
            revisit
                .unwrap_or_else(|| Self::due_of(&envelope, now))
                .max(now + MIN_REVISIT)
        };
        self.insert(envelope, due);
    }

    /// SIGHUP / `queue flush`: every pending recipient is due now, as is
    /// every message out with a task once it returns.
    pub fn flush(&mut self, now: SystemTime) {
        self.order.clear();
        for (id, waiting) in &mut self.waiting {
            make_pending_due(&mut waiting.envelope, now);
            waiting.due = now;
            self.order.insert((now, id.clone()));
        }
        for flushed in self.out.values_mut() {
            *flushed = true;
        }
    }

    /// The earliest due time of a waiting message.
    pub fn next_due(&self) -> Option<SystemTime> {
        self.order.first().map(|(due, _)| *due)
    }

    /// (waiting, out with a task).
    pub fn counts(&self) -> (usize, usize) {
        (self.waiting.len(), self.out.len())
    }
}

fn make_pending_due(envelope: &mut Envelope, now: SystemTime) {
    for recipient in &mut envelope.recipients {
        if recipient.status == RecipientStatus::Pending {
            recipient.next_attempt = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool::RecipientState;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn envelope(next: u64) -> Envelope {
        let mut recipient = RecipientState::new("a@b.test", at(0));
        recipient.next_attempt = Some(at(next));
        Envelope {
            id: QueueId::generate(),
            arrival: at(0),
            sender: "s@b.test".into(),
            recipients: vec![recipient],
            client: None,
            smtputf8: false,
            eight_bit_mime: false,
            ret: None,
            envid: None,
            delay_warned: None,
            requiretls: false,
            tls_required_no: false,
            extras: spool::NoExtras {},
        }
    }

    fn ids(list: &[Envelope]) -> Vec<QueueId> {
        list.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn messages_come_out_in_due_order_once() {
        let mut due = DueList::default();
        let (early, late) = (envelope(10), envelope(20));
        due.insert(late.clone(), DueList::due_of(&late, at(0)));
        due.insert(early.clone(), DueList::due_of(&early, at(0)));
        assert_eq!(due.next_due(), Some(at(10)));
        assert!(due.take_due(at(9)).is_empty());
        assert_eq!(ids(&due.take_due(at(15))), vec![early.id.clone()]);
        assert_eq!(due.counts(), (1, 1));
        assert_eq!(ids(&due.take_due(at(25))), vec![late.id.clone()]);
        assert!(due.take_due(at(99)).is_empty());
        assert_eq!(due.counts(), (0, 2));
    }

    #[test]
    fn returned_messages_wait_at_least_a_moment_unless_flushed() {
        let mut due = DueList::default();
        let message = envelope(0);
        due.insert(message.clone(), at(0));
        let out = due.take_due(at(0)).remove(0);
        // Came back unchanged (nothing attempted): not due before MIN_REVISIT.
        due.returned(&out.id, Some(out.clone()), None, at(5));
        assert_eq!(due.next_due(), Some(at(5) + MIN_REVISIT));

        let out = due.take_all().remove(0);
        due.flush(at(7));
        due.returned(&out.id, Some(out.clone()), None, at(8));
        assert_eq!(due.next_due(), Some(at(8)));
        let again = due.take_due(at(8)).remove(0);
        assert_eq!(again.recipients[0].next_attempt, Some(at(8)));

        due.returned(&again.id, None, None, at(9));
        assert_eq!(due.counts(), (0, 0), "a finished message is forgotten");
    }

    #[test]
    fn flush_makes_everything_due_now() {
        let mut due = DueList::default();
        for next in [100, 200, 300] {
            let message = envelope(next);
            due.insert(message.clone(), DueList::due_of(&message, at(0)));
        }
        due.flush(at(1));
        let taken = due.take_due(at(1));
        assert_eq!(taken.len(), 3);
        assert!(
            taken
                .iter()
                .all(|e| e.recipients[0].next_attempt == Some(at(1)))
        );
    }

    #[test]
    fn an_owed_notice_is_due_at_once() {
        let mut message = envelope(500);
        message.recipients[0].status = RecipientStatus::Failed;
        assert_eq!(DueList::due_of(&message, at(3)), at(3));
        let revisit = at(60);
        let mut due = DueList::default();
        due.insert(message.clone(), at(3));
        let out = due.take_due(at(3)).remove(0);
        due.returned(&out.id, Some(out.clone()), Some(revisit), at(4));
        assert_eq!(due.next_due(), Some(revisit));
    }
}
