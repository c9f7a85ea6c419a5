//! The dispatcher: one task that owns the [`DueList`], starts a delivery
//! task for each message when it is due, and takes the messages back when
//! the task is done. Everything else talks to it through a [`DispatcherHandle`].
//!
//! Only as many tasks run as there are delivery slots ([`Slots`]): a task
//! loads the envelope, waits for sessions and holds buffers, so a backlog
//! released at once must not start one per message. The rest wait as
//! compact records in the due list, handed out per destination so that a
//! slow domain cannot take every slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{error, info};

use super::Context;
use super::due_list::{DueList, Ticket};
use super::message::{self, TaskOutcome};
use super::switch::DisabledSwitch;
use spool::{Envelope, QueueId};

/// How often outbound.ini is checked for a change of `disabled`.
const SETTINGS_POLL: Duration = Duration::from_secs(1);

/// The dispatcher never sleeps longer than this, so a wall-clock jump delays
/// due mail by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Tasks per session slot. A task also waits for its shaping budget and
/// writes its outcome to disk outside its session, so with exactly one task
/// per slot the sessions would sit idle meanwhile; twice as many keeps them
/// busy, and is still a fixed number whatever the backlog.
const TASKS_PER_SLOT: usize = 2;

/// Tasks parked on a shaping budget (a throttled or suspended provider)
/// give their slot to others, up to this many per slot: a provider that
/// hosts many domains must not hold every slot while it rests, and the
/// tasks stay a fixed number however long it rests.
const PARKED_PER_SLOT: usize = 4;

/// The tasks waiting for a shaping budget, which do not count against the
/// slots (see [`PARKED_PER_SLOT`]); shared by the tasks and the dispatcher.
#[derive(Debug, Default)]
pub struct Parked {
    count: AtomicUsize,
    /// Wakes the dispatcher to use a slot a task just gave up.
    changed: Notify,
}

impl Parked {
    /// Waits for `wait`, counted as parked if it does not finish at once.
    pub async fn wait<T>(&self, wait: impl Future<Output = T>) -> T {
        let mut wait = std::pin::pin!(wait);
        tokio::select! {
            biased;
            done = &mut wait => done,
            () = std::future::ready(()) => {
                self.count.fetch_add(1, Ordering::Relaxed);
                self.changed.notify_one();
                let done = wait.await;
                self.count.fetch_sub(1, Ordering::Relaxed);
                done
            }
        }
    }
}

/// How many delivery tasks may run at once, overall and per destination key
/// (`concurrency_max` and `domain_concurrency_max`, see [`TASKS_PER_SLOT`]).
#[derive(Debug, Clone, Copy)]
pub struct Slots {
    total: usize,
    per_destination: usize,
}

impl Slots {
    pub fn new(concurrency_max: usize, domain_concurrency_max: usize) -> Self {
        Slots {
            total: concurrency_max.max(1) * TASKS_PER_SLOT,
            per_destination: domain_concurrency_max.max(1) * TASKS_PER_SLOT,
        }
    }
}

/// A message whose task failed or could not read its envelope is looked at
/// again after this.
const RETRY_UNREAD: Duration = Duration::from_secs(60);

/// What the rest of the daemon tells the dispatcher.
#[derive(Debug)]
enum Command {
    /// A message was just stored (intake, or a new notice).
    Queued(Envelope),
    /// SIGHUP: re-read `disabled`, retry deferred mail now, look at bounce
    /// requests.
    Flush,
    /// Stop starting attempts, wait up to the given time for running ones,
    /// then answer.
    Shutdown(Duration, oneshot::Sender<()>),
}

/// A cheap, cloneable way to reach the dispatcher; calls never block and never
/// fail (after shutdown they do nothing: the message is on disk anyway).
#[derive(Debug, Clone)]
pub struct DispatcherHandle {
    commands: mpsc::UnboundedSender<Command>,
}

/// The receiving end, handed to [`Dispatcher::new`].
#[derive(Debug)]
pub struct DispatcherInbox {
    commands: mpsc::UnboundedReceiver<Command>,
}

/// Creates the channel between the handle and the dispatcher, so the context
/// (which needs a handle to queue notices) can be built before the dispatcher.
pub fn channel() -> (DispatcherHandle, DispatcherInbox) {
    let (commands, inbox) = mpsc::unbounded_channel();
    (
        DispatcherHandle { commands },
        DispatcherInbox { commands: inbox },
    )
}

impl DispatcherHandle {
    /// A new message is durably queued and due now.
    pub fn queued(&self, envelope: Envelope) {
        let _ = self.commands.send(Command::Queued(envelope));
    }

    /// Retries deferred mail now (SIGHUP, `relay-out queue flush`).
    pub fn flush(&self) {
        let _ = self.commands.send(Command::Flush);
    }

    /// Stops the dispatcher, letting running deliveries finish for up to
    /// `grace` (what is still running then is cut off; its recipients stay
    /// pending on disk and are retried at the next start).
    pub async fn shutdown(&self, grace: Duration) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown(grace, done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The dispatcher; see the module docs.
pub struct Dispatcher {
    ctx: Arc<Context>,
    inbox: DispatcherInbox,
    due: DueList,
    switch: DisabledSwitch,
    tasks: JoinSet<TaskOutcome>,
    /// Which message each task works on, to take it back even if the task
    /// panicked.
    task_messages: HashMap<tokio::task::Id, QueueId>,
    slots: Slots,
    /// A flush while delivery is disabled: the messages still to visit for
    /// bounce requests and owed notices, a slot's worth at a time.
    sweep: Vec<QueueId>,
}

impl Dispatcher {
    /// `backlog`: the queue loaded at start.
    pub fn new(
        ctx: Arc<Context>,
        inbox: DispatcherInbox,
        switch: DisabledSwitch,
        slots: Slots,
        backlog: DueList,
    ) -> Self {
        Dispatcher {
            ctx,
            inbox,
            due: backlog,
            switch,
            tasks: JoinSet::new(),
            task_messages: HashMap::new(),
            slots,
            sweep: Vec::new(),
        }
    }

    fn free_slots(&self) -> usize {
        let parked = self
            .ctx
            .parked
            .count
            .load(Ordering::Relaxed)
            .min(self.slots.total * PARKED_PER_SLOT);
        (self.slots.total + parked).saturating_sub(self.tasks.len())
    }

    pub async fn run(mut self) {
        let mut poll = tokio::time::interval(SETTINGS_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = SystemTime::now();
            // While disabled, due mail stays due: wait for the switch (polled
            // below) or a command instead of waking for it again and again.
            // With every slot taken, a returning task wakes the loop.
            let sleep = if self.switch.is_disabled() {
                self.continue_sweep();
                MAX_SLEEP
            } else {
                self.sweep.clear();
                let per_destination = self.slots.per_destination;
                for ticket in self.due.take_due(now, self.free_slots(), per_destination) {
                    self.start(ticket, true);
                }
                match self.due.next_due(per_destination) {
                    Some(due) if self.free_slots() > 0 => {
                        due.duration_since(now).unwrap_or_default()
                    }
                    _ => MAX_SLEEP,
                }
                .min(MAX_SLEEP)
            };
            tokio::select! {
                command = self.inbox.commands.recv() => match command {
                    Some(Command::Queued(envelope)) => {
                        let due = DueList::due_of(&envelope, SystemTime::now());
                        self.due.insert(&envelope, due);
                    }
                    Some(Command::Flush) => self.flush(),
                    Some(Command::Shutdown(grace, done)) => {
                        self.stop(grace).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.returned(joined);
                }
                _ = tokio::time::sleep(sleep) => {}
                () = self.ctx.parked.changed.notified() => {}
                _ = poll.tick() => {
                    self.switch.poll();
                    let (messages, oldest) = self.due.gauges(SystemTime::now());
                    let metrics = smtp_core::metrics::metrics();
                    metrics.queue_messages.set(messages as i64);
                    metrics.queue_oldest_age_seconds.set(oldest.as_secs() as i64);
                }
            }
        }
    }

    fn start(&mut self, ticket: Ticket, deliver: bool) {
        let id = ticket.id.clone();
        let ctx = Arc::clone(&self.ctx);
        let handle = self
            .tasks
            .spawn(async move { message::process(ctx, ticket, deliver).await });
        self.task_messages.insert(handle.id(), id);
    }

    /// Starts the next messages of a flush while delivery is disabled, as
    /// many as there are free slots.
    fn continue_sweep(&mut self) {
        while self.free_slots() > 0 {
            let Some(id) = self.sweep.pop() else {
                break;
            };
            if let Some(ticket) = self.due.take(&id) {
                self.start(ticket, false);
            }
        }
    }

    fn returned(&mut self, joined: Result<(tokio::task::Id, TaskOutcome), tokio::task::JoinError>) {
        let now = SystemTime::now();
        match joined {
            Ok((task, outcome)) => {
                let Some(id) = self.task_messages.remove(&task) else {
                    return;
                };
                match outcome {
                    TaskOutcome::Gone => self.due.returned(&id, None, None, false, now),
                    TaskOutcome::Queued {
                        envelope,
                        revisit,
                        unsaved,
                    } => self
                        .due
                        .returned(&id, Some(*envelope), revisit, unsaved, now),
                    TaskOutcome::Unread => self.due.returned_unread(&id, now + RETRY_UNREAD),
                }
            }
            Err(failure) => {
                let Some(id) = self.task_messages.remove(&failure.id()) else {
                    return;
                };
                // The state on disk is the truth: the next task reads it.
                error!(queue_id = %id, error = %failure, "delivery task failed; the message is retried later");
                self.due.returned_unread(&id, now + RETRY_UNREAD);
            }
        }
    }

    fn flush(&mut self) {
        self.switch.reload();
        let now = SystemTime::now();
        self.due.flush(now);
        let (waiting, out) = self.due.counts();
        info!(
            waiting,
            in_progress = out,
            disabled = self.switch.is_disabled(),
            "queue flush: deferred mail is due now"
        );
        if self.switch.is_disabled() {
            // Delivery is off, but bounce requests and owed notices are not
            // deliveries: handle those now, a slot's worth at a time.
            self.sweep = self.due.waiting_ids();
            self.sweep.reverse();
            self.continue_sweep();
        }
    }

    async fn stop(&mut self, grace: Duration) {
        if self.tasks.is_empty() {
            return;
        }
        info!(
            running = self.tasks.len(),
            "waiting for running deliveries before exiting"
        );
        let finished = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            info!(
                running = self.tasks.len(),
                "deliveries still running are cut off; they are retried at the next start"
            );
            self.tasks.abort_all();
        }
    }
}
