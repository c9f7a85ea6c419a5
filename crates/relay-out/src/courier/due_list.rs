//! The in-memory timetable of the queue: which message is due when, and
//! which ones are being worked on. Rebuilt from the spool at every start, so
//! nothing here needs to survive a crash.
//!
//! A waiting message costs only a compact record (its id, due time, arrival
//! and destination key), never its envelope: the task that works on it reads
//! the envelope from the spool, so a backlog of 100,000 messages fits in a
//! few MB. Messages are handed out per destination key, at most a given
//! number out at once for each key, so one slow or unreachable domain can
//! neither take every delivery slot nor hold back the due mail of others.
//!
//! Sans-IO: the dispatcher feeds it the clock and the slot counts.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spool::{Envelope, QueueId, RecipientStatus};

/// A message that comes back from an attempt is not due again sooner than
/// this, whatever its envelope says: an attempt that changed nothing (a
/// crashed task, delivery disabled meanwhile) must not spin.
pub const MIN_REVISIT: Duration = Duration::from_secs(1);

/// What a message is counted under for fairness: the domain of its first
/// pending recipient (lower case, no trailing dot). A message with several
/// domains counts under the first only; the sessions themselves are still
/// capped per destination by `limits`. Interned, so that 100,000 messages
/// to one domain share one string.
pub type DestinationKey = Arc<str>;

/// The compact record of one waiting message.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub due: SystemTime,
    /// For the queue-age gauge.
    arrival: SystemTime,
    key: DestinationKey,
    /// A flush came: every pending recipient is due when the envelope is
    /// next read, whatever its stored next attempt says.
    flushed: bool,
    /// The state a task could not write to disk (a failing disk): the next
    /// task starts from it, not from the older state on disk, so that what
    /// was delivered is not sent again. `None` normally: the disk has it.
    unsaved: Option<Box<Envelope>>,
}

/// A message handed to a task: its id, and whether its pending recipients
/// are all due now (a flush) rather than when the envelope says.
#[derive(Debug)]
pub struct Ticket {
    pub id: QueueId,
    pub flushed: bool,
    /// See [`Waiting::unsaved`].
    pub unsaved: Option<Box<Envelope>>,
}

/// A message out with a task.
#[derive(Debug)]
struct Out {
    key: DestinationKey,
    arrival: SystemTime,
    /// A flush arrived meanwhile: due again as soon as it comes back.
    flushed: bool,
}

/// Every queued message the daemon knows, each either waiting for its due
/// time or out with a delivery task.
#[derive(Debug, Default)]
pub struct DueList {
    waiting: HashMap<QueueId, Waiting>,
    /// Per destination key, its waiting messages in due order.
    queues: HashMap<DestinationKey, BTreeSet<(SystemTime, QueueId)>>,
    /// Each key with waiting messages, at the due time of its first one.
    heads: BTreeSet<(SystemTime, DestinationKey)>,
    out: HashMap<QueueId, Out>,
    out_per_key: HashMap<DestinationKey, usize>,
    /// The interned keys (see [`DestinationKey`]).
    keys: HashSet<DestinationKey>,
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
            .map(|w| w.arrival)
            .min()
            .and_then(|arrival| now.duration_since(arrival).ok())
            .unwrap_or_default();
        (self.waiting.len() + self.out.len(), oldest)
    }

    /// Adds a message loaded from the spool at start.
    pub fn resume(&mut self, envelope: &Envelope, now: SystemTime) {
        self.insert(envelope, Self::due_of(envelope, now));
    }

    /// Adds a message (new at intake, loaded at start, a new notice, or
    /// back from its task) due at `due`; the envelope is not kept.
    pub fn insert(&mut self, envelope: &Envelope, due: SystemTime) {
        let key = self.intern(key_of(envelope));
        self.insert_record(
            envelope.id.clone(),
            Waiting {
                due,
                arrival: envelope.arrival,
                key,
                flushed: false,
                unsaved: None,
            },
        );
    }

    fn insert_record(&mut self, id: QueueId, record: Waiting) {
        self.mark_back(&id);
        self.remove_waiting(&id);
        let queue = self.queues.entry(record.key.clone()).or_default();
        let old_head = queue.first().map(|(due, _)| *due);
        queue.insert((record.due, id.clone()));
        if old_head.is_none_or(|head| record.due < head) {
            if let Some(head) = old_head {
                self.heads.remove(&(head, record.key.clone()));
            }
            self.heads.insert((record.due, record.key.clone()));
        }
        self.waiting.insert(id, record);
    }

    /// Takes `id` out of the waiting structures, if it waits.
    fn remove_waiting(&mut self, id: &QueueId) -> Option<Waiting> {
        let record = self.waiting.remove(id)?;
        let queue = self
            .queues
            .get_mut(&record.key)
            .expect("a waiting message's key has a queue");
        let old_head = queue.first().map(|(due, _)| *due);
        queue.remove(&(record.due, id.clone()));
        let new_head = queue.first().map(|(due, _)| *due);
        if new_head != old_head {
            if let Some(head) = old_head {
                self.heads.remove(&(head, record.key.clone()));
            }
            match new_head {
                Some(head) => {
                    self.heads.insert((head, record.key.clone()));
                }
                None => {
                    self.queues.remove(&record.key);
                }
            }
        }
        Some(record)
    }

    /// Forgets that `id` is out with a task; whether a flush came meanwhile.
    fn mark_back(&mut self, id: &QueueId) -> Option<Out> {
        let out = self.out.remove(id)?;
        if let Some(count) = self.out_per_key.get_mut(&out.key) {
            *count -= 1;
            if *count == 0 {
                self.out_per_key.remove(&out.key);
            }
        }
        Some(out)
    }

    fn mark_out(&mut self, id: QueueId, record: Waiting) -> Ticket {
        *self.out_per_key.entry(record.key.clone()).or_default() += 1;
        self.out.insert(
            id.clone(),
            Out {
                key: record.key,
                arrival: record.arrival,
                flushed: false,
            },
        );
        Ticket {
            id,
            flushed: record.flushed,
            unsaved: record.unsaved,
        }
    }

    fn intern(&mut self, key: String) -> DestinationKey {
        if let Some(known) = self.keys.get(key.as_str()) {
            return known.clone();
        }
        if self.keys.len() > KEYS_PRUNE_ABOVE {
            // Only keys still in use stay: the map itself holds one reference.
            self.keys.retain(|key| Arc::strong_count(key) > 1);
        }
        let key: DestinationKey = key.into();
        self.keys.insert(key.clone());
        key
    }

    fn out_of(&self, key: &DestinationKey) -> usize {
        self.out_per_key.get(key).copied().unwrap_or(0)
    }

    /// Hands out up to `free` messages due at `now`, earliest first, but
    /// none of a key that already has `per_key` out; marks them out.
    pub fn take_due(&mut self, now: SystemTime, free: usize, per_key: usize) -> Vec<Ticket> {
        let mut taken = Vec::new();
        let mut full = Vec::new();
        while taken.len() < free {
            let Some((due, key)) = self.heads.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            if self.out_of(&key) >= per_key {
                // Set aside for this round only: the others behind it go on.
                self.heads.pop_first();
                full.push((due, key));
                continue;
            }
            let first = self
                .queues
                .get(&key)
                .and_then(|queue| queue.first().cloned());
            let Some((_, id)) = first else {
                self.heads.pop_first();
                continue;
            };
            if let Some(record) = self.remove_waiting(&id) {
                taken.push(self.mark_out(id, record));
            }
        }
        self.heads.extend(full);
        taken
    }

    /// Takes one waiting message regardless of time and limits (a flush
    /// while delivery is disabled still handles bounce requests and owed
    /// notices); `None` if it does not wait (out, or gone).
    pub fn take(&mut self, id: &QueueId) -> Option<Ticket> {
        let record = self.remove_waiting(id)?;
        Some(self.mark_out(id.clone(), record))
    }

    /// The ids of every waiting message, earliest due first.
    pub fn waiting_ids(&self) -> Vec<QueueId> {
        let mut ids: Vec<(SystemTime, &QueueId)> =
            self.waiting.iter().map(|(id, w)| (w.due, id)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// A task is done with `id`. `envelope` is its new state (`None`: it
    /// left the queue), kept only if `unsaved` (see [`Waiting::unsaved`]);
    /// `revisit` overrides the due time (e.g. a notice that could not be
    /// stored yet).
    pub fn returned(
        &mut self,
        id: &QueueId,
        envelope: Option<Envelope>,
        revisit: Option<SystemTime>,
        unsaved: bool,
        now: SystemTime,
    ) {
        let out = self.mark_back(id);
        let flushed = out.as_ref().is_some_and(|out| out.flushed);
        let Some(envelope) = envelope else {
            return;
        };
        let due = if flushed {
            now
        } else {
            revisit
                .unwrap_or_else(|| Self::due_of(&envelope, now))
                .max(now + MIN_REVISIT)
        };
        let key = self.intern(key_of(&envelope));
        self.insert_record(
            id.clone(),
            Waiting {
                due,
                arrival: envelope.arrival,
                key,
                flushed,
                unsaved: unsaved.then(|| Box::new(envelope)),
            },
        );
    }

    /// A task could not read `id`'s envelope (or failed): the message stays
    /// queued under its old key and is looked at again at `when`.
    pub fn returned_unread(&mut self, id: &QueueId, when: SystemTime) {
        let Some(out) = self.mark_back(id) else {
            return;
        };
        self.insert_record(
            id.clone(),
            Waiting {
                due: when,
                arrival: out.arrival,
                key: out.key,
                flushed: out.flushed,
                unsaved: None,
            },
        );
    }

    /// SIGHUP / `queue flush`: every pending recipient is due now, as is
    /// every message out with a task once it returns.
    pub fn flush(&mut self, now: SystemTime) {
        let records: Vec<(QueueId, Waiting)> = self.waiting.drain().collect();
        self.queues.clear();
        self.heads.clear();
        for (id, mut record) in records {
            record.due = now;
            record.flushed = true;
            self.insert_record(id, record);
        }
        for out in self.out.values_mut() {
            out.flushed = true;
        }
    }

    /// The earliest due time of a waiting message whose key has fewer than
    /// `per_key` out (the others wait for a task of theirs to return).
    pub fn next_due(&self, per_key: usize) -> Option<SystemTime> {
        self.heads
            .iter()
            .find(|(_, key)| self.out_of(key) < per_key)
            .map(|(due, _)| *due)
    }

    /// (waiting, out with a task).
    pub fn counts(&self) -> (usize, usize) {
        (self.waiting.len(), self.out.len())
    }
}

/// Past this many interned keys, unused ones are dropped.
const KEYS_PRUNE_ABOVE: usize = 4096;

/// See [`DestinationKey`].
fn key_of(envelope: &Envelope) -> String {
    let recipient = envelope
        .recipients
        .iter()
        .find(|r| r.status == RecipientStatus::Pending)
        .or(envelope.recipients.first());
    let domain = recipient
        .and_then(|r| r.address.rsplit_once('@'))
        .map_or("", |(_, domain)| domain);
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// Every pending recipient of `envelope` is due at `now` (a flush).
pub fn make_pending_due(envelope: &mut Envelope, now: SystemTime) {
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

    /// Plenty: for the tests that are not about the limits.
    const ANY: usize = 1000;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn envelope_to(domain: &str, next: u64) -> Envelope {
        let mut recipient = RecipientState::new(format!("a@{domain}"), at(0));
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

    fn envelope(next: u64) -> Envelope {
        envelope_to("b.test", next)
    }

    fn ids(list: &[Ticket]) -> Vec<QueueId> {
        list.iter().map(|t| t.id.clone()).collect()
    }

    #[test]
    fn messages_come_out_in_due_order_once() {
        let mut due = DueList::default();
        let (early, late) = (envelope(10), envelope(20));
        due.insert(&late, DueList::due_of(&late, at(0)));
        due.insert(&early, DueList::due_of(&early, at(0)));
        assert_eq!(due.next_due(ANY), Some(at(10)));
        assert!(due.take_due(at(9), ANY, ANY).is_empty());
        assert_eq!(ids(&due.take_due(at(15), ANY, ANY)), vec![early.id.clone()]);
        assert_eq!(due.counts(), (1, 1));
        assert_eq!(ids(&due.take_due(at(25), ANY, ANY)), vec![late.id.clone()]);
        assert!(due.take_due(at(99), ANY, ANY).is_empty());
        assert_eq!(due.counts(), (0, 2));
    }

    #[test]
    fn returned_messages_wait_at_least_a_moment_unless_flushed() {
        let mut due = DueList::default();
        let message = envelope(0);
        due.insert(&message, at(0));
        let out = due.take_due(at(0), ANY, ANY).remove(0);
        assert!(!out.flushed);
        // Came back unchanged (nothing attempted): not due before MIN_REVISIT.
        due.returned(&out.id, Some(message.clone()), None, false, at(5));
        assert_eq!(due.next_due(ANY), Some(at(5) + MIN_REVISIT));

        let out = due.take(&message.id).expect("waiting");
        due.flush(at(7));
        due.returned(&out.id, Some(message.clone()), None, false, at(8));
        assert_eq!(due.next_due(ANY), Some(at(8)));
        let again = due.take_due(at(8), ANY, ANY).remove(0);
        assert!(again.flushed, "the task makes every pending recipient due");
        assert!(again.unsaved.is_none(), "the task reads the disk's state");

        due.returned(&again.id, None, None, false, at(9));
        assert_eq!(due.counts(), (0, 0), "a finished message is forgotten");
    }

    #[test]
    fn flush_makes_everything_due_now() {
        let mut due = DueList::default();
        for next in [100, 200, 300] {
            let message = envelope(next);
            due.insert(&message, DueList::due_of(&message, at(0)));
        }
        due.flush(at(1));
        let taken = due.take_due(at(1), ANY, ANY);
        assert_eq!(taken.len(), 3);
        assert!(taken.iter().all(|t| t.flushed));
    }

    #[test]
    fn an_owed_notice_is_due_at_once() {
        let mut message = envelope(500);
        message.recipients[0].status = RecipientStatus::Failed;
        assert_eq!(DueList::due_of(&message, at(3)), at(3));
        let revisit = at(60);
        let mut due = DueList::default();
        due.insert(&message, at(3));
        let out = due.take_due(at(3), ANY, ANY).remove(0);
        due.returned(&out.id, Some(message.clone()), Some(revisit), false, at(4));
        assert_eq!(due.next_due(ANY), Some(revisit));
    }

    #[test]
    fn only_free_slots_are_filled() {
        let mut due = DueList::default();
        for _ in 0..10 {
            due.insert(&envelope(0), at(0));
        }
        assert_eq!(due.take_due(at(0), 3, ANY).len(), 3);
        assert_eq!(due.counts(), (7, 3));
        assert_eq!(due.take_due(at(0), 0, ANY).len(), 0);
    }

    #[test]
    fn a_busy_destination_does_not_hold_back_the_others() {
        let mut due = DueList::default();
        // The slow domain's mail is due first and there is much of it.
        let slow: Vec<Envelope> = (0..50).map(|_| envelope_to("Slow.Test.", 0)).collect();
        for message in &slow {
            due.insert(message, at(0));
        }
        let other = envelope_to("other.test", 1);
        due.insert(&other, at(1));
        let taken = due.take_due(at(1), ANY, 2);
        assert_eq!(taken.len(), 3, "two of the slow domain, then the other");
        assert_eq!(taken[2].id, other.id);
        // While the slow domain has its two out, nothing is due for it:
        // the dispatcher sleeps instead of spinning on it.
        assert_eq!(due.next_due(2), None);
        assert!(due.take_due(at(2), ANY, 2).is_empty());
        due.returned(&taken[0].id, None, None, false, at(3));
        assert_eq!(due.next_due(2), Some(at(0)));
        assert_eq!(due.take_due(at(3), ANY, 2).len(), 1);
    }

    #[test]
    fn a_state_the_disk_refused_is_handed_to_the_next_task() {
        let mut due = DueList::default();
        let mut message = envelope(0);
        due.insert(&message, at(0));
        let out = due.take_due(at(0), ANY, ANY).remove(0);
        message.recipients[0].attempts = 7;
        due.returned(&out.id, Some(message.clone()), Some(at(2)), true, at(1));
        let again = due.take_due(at(2), ANY, ANY).remove(0);
        assert_eq!(again.unsaved.map(|e| e.recipients[0].attempts), Some(7));
    }

    #[test]
    fn a_record_moves_with_its_new_due_time() {
        let mut due = DueList::default();
        let message = envelope(10);
        due.insert(&message, at(10));
        due.insert(&message, at(20));
        assert_eq!(due.counts(), (1, 0));
        assert_eq!(due.next_due(ANY), Some(at(20)));
        let out = due.take_due(at(20), ANY, ANY).remove(0);
        due.returned_unread(&out.id, at(80));
        assert_eq!(due.next_due(ANY), Some(at(80)));
        assert_eq!(due.waiting_ids(), vec![message.id.clone()]);
        let (_, oldest) = due.gauges(at(100));
        assert_eq!(oldest, Duration::from_secs(100));
    }
}
