//! The dispatcher: one task that owns the [`DueList`], starts a delivery
//! task for each message when it is due, and takes the messages back when
//! the task is done. Everything else talks to it through a [`DispatcherHandle`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{error, info};

use super::Context;
use super::due_list::DueList;
use super::message::{self, TaskOutcome};
use super::switch::DisabledSwitch;
use spool::{Envelope, QueueId};

/// How often outbound.ini is checked for a change of `disabled`.
const SETTINGS_POLL: Duration = Duration::from_secs(1);

/// The dispatcher never sleeps longer than this, so a wall-clock jump delays
/// due mail by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

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
}

impl Dispatcher {
    pub fn new(ctx: Arc<Context>, inbox: DispatcherInbox, switch: DisabledSwitch) -> Self {
        Dispatcher {
            ctx,
            inbox,
            due: DueList::default(),
            switch,
            tasks: JoinSet::new(),
            task_messages: HashMap::new(),
        }
    }

    /// Adds a message loaded from the spool at start.
    pub fn resume(&mut self, envelope: Envelope) {
        let now = SystemTime::now();
        let due = DueList::due_of(&envelope, now);
        self.due.insert(envelope, due);
    }

    pub async fn run(mut self) {
        let mut poll = tokio::time::interval(SETTINGS_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = SystemTime::now();
            // While disabled, due mail stays due: wait for the switch (polled
            // below) or a command instead of waking for it again and again.
            let sleep = if self.switch.is_disabled() {
                MAX_SLEEP
            } else {
                for envelope in self.due.take_due(now) {
                    self.start(envelope, true);
                }
                self.due
                    .next_due()
                    .map_or(MAX_SLEEP, |due| due.duration_since(now).unwrap_or_default())
                    .min(MAX_SLEEP)
            };
            tokio::select! {
                command = self.inbox.commands.recv() => match command {
                    Some(Command::Queued(envelope)) => {
                        let due = DueList::due_of(&envelope, SystemTime::now());
                        self.due.insert(envelope, due);
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

    fn start(&mut self, envelope: Envelope, deliver: bool) {
        let id = envelope.id.clone();
        let ctx = Arc::clone(&self.ctx);
        let handle = self
            .tasks
            .spawn(async move { message::process(ctx, envelope, deliver).await });
        self.task_messages.insert(handle.id(), id);
    }

    fn returned(&mut self, joined: Result<(tokio::task::Id, TaskOutcome), tokio::task::JoinError>) {
        let now = SystemTime::now();
        match joined {
            Ok((task, outcome)) => {
                if let Some(id) = self.task_messages.remove(&task) {
                    self.due
                        .returned(&id, outcome.envelope, outcome.revisit, now);
                }
            }
            Err(failure) => {
                let Some(id) = self.task_messages.remove(&failure.id()) else {
                    return;
                };
                // The state on disk is the truth: reload it and try later.
                error!(queue_id = %id, error = %failure, "delivery task failed; the message is retried later");
                match self.ctx.spool.read_envelope(&id) {
                    Ok(envelope) => {
                        let revisit = now + Duration::from_secs(60);
                        self.due.returned(&id, Some(envelope), Some(revisit), now);
                    }
                    Err(error) => {
                        error!(queue_id = %id, %error, "cannot re-read the message");
                        self.due.returned(&id, None, None, now);
                    }
                }
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
            // deliveries: handle those now.
            for envelope in self.due.take_all() {
                self.start(envelope, false);
            }
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
