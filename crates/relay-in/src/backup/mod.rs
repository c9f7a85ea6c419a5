//! relay-in's backup-MX spool (smtp_forward.ini `mode=spool`, issue 15):
//! mail keeps arriving while the home server is away, with no backscatter.
//!
//! While the backend answers, relay-in works exactly as in live mode and
//! remembers each recipient the backend accepted ([`crate::verified`]).
//! While it is away, a recipient it accepted before gets `250` and the
//! message is kept here, durably, before the sender's `250`; any other
//! recipient gets `451 4.4.1`, so the spool never holds mail the home server
//! might refuse (relay-in would owe a bounce to a sender that may be
//! forged). When the backend is back, [`delivery`] hands each message over
//! with the original client's XCLIENT attributes.
//!
//! | module | what it holds |
//! |---|---|
//! | `mod.rs` | [`BackupSpool`]: intake, the disk limits, the replies |
//! | `identity.rs` | what is kept of the sending client, and the session rebuilt from it |
//! | `delivery.rs` | handing spooled mail to the backend: order, retries, bounces |
//!
//! Crash safety is the spool crate's (at-least-once); where a duplicate can
//! come from is said in `delivery.rs`.

mod delivery;
mod identity;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use smtp_core::config::ConfigDir;
use smtp_core::message::Message;
use smtp_protocol::reply::{EnhancedCode, Reply};
use smtp_protocol::session::{Envelope, SessionInfo};
use spool::queue_tool::QueueCommand;
use spool::{QueueId, Spool, SpoolError};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::config::{ForwardMode, RelayInSettings, SpoolSettings, VERIFIED_CAPACITY};
use crate::verified::{SAVE_INTERVAL, VerifiedStore};

pub use delivery::run as deliver_forever;
pub use identity::{SpoolExtras, stored_recipient};

/// The name the spool's lock and PID file carry.
const DAEMON: &str = "relay-in";

/// The backup spool of one relay-in: its directory, its limits, the
/// verified recipients, and what wakes its delivery.
#[derive(Debug)]
pub struct BackupSpool {
    settings: SpoolSettings,
    spool: Spool<SpoolExtras>,
    verified: VerifiedStore,
    usage: Usage,
    /// Told when a message was spooled, or when the operator asked for a
    /// flush (SIGHUP), so the delivery looks again at once.
    wake: Notify,
    /// Serialises the check of the limits with the count's increase, so two
    /// intakes at once cannot both take the last place.
    intake: Mutex<()>,
    /// Every message in the spool and when it is next due, in id order
    /// (ids sort by arrival, so the oldest goes first).
    schedule: Mutex<BTreeMap<QueueId, Scheduled>>,
}

/// A spooled message's times, for the delivery order and the metrics.
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    due: SystemTime,
    arrival: SystemTime,
}

/// What the spool holds, kept in step with every store and removal so the
/// limits cost nothing to check.
#[derive(Debug, Default)]
struct Usage {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Why a message could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("the backup spool is full ({messages} messages, {bytes} bytes)")]
    Full { messages: u64, bytes: u64 },
    #[error(transparent)]
    Storage(#[from] SpoolError),
    #[error("the spooling task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl BackupSpool {
    /// Opens (creating) the spool directory, repairs what a crash left
    /// (the spool crate's start-up scan), counts what it holds, and reads
    /// the verified-recipient store.
    pub fn open(settings: &SpoolSettings) -> anyhow::Result<Arc<BackupSpool>> {
        let spool = open_spool(settings)?;
        if let Some(pid) = spool.running_daemon()?
            && pid != std::process::id()
        {
            anyhow::bail!(
                "another relay-in (PID {pid}) is using the backup spool {}; two daemons must never share one",
                settings.dir.display()
            );
        }
        let report = spool
            .load()
            .with_context(|| format!("reading the backup spool {}", settings.dir.display()))?;
        spool
            .write_pid_file(std::process::id())
            .context("writing the backup spool's PID file")?;
        for aside in &report.set_aside {
            error!(path = %aside.path.display(), "backup spool: a damaged message was set aside: {}", aside.reason);
        }
        let usage = Usage::default();
        let mut schedule = BTreeMap::new();
        for entry in &report.messages {
            usage.add(entry.size);
            let due = entry
                .envelope
                .next_attempt()
                .unwrap_or_else(SystemTime::now);
            let arrival = entry.envelope.arrival;
            schedule.insert(entry.envelope.id.clone(), Scheduled { due, arrival });
        }
        let (verified, skipped) = VerifiedStore::open(
            &settings.verified_store_path(),
            settings.verified_ttl,
            VERIFIED_CAPACITY,
        )?;
        for line in skipped {
            warn!(path = %settings.verified_store_path().display(), line = line.line_number, "verified-recipient store: unreadable line skipped: {}", line.text);
        }
        info!(
            spool_dir = %settings.dir.display(),
            messages = usage.messages(),
            bytes = usage.bytes(),
            verified = verified.len(),
            "backup spool ready"
        );
        Ok(Arc::new(BackupSpool {
            settings: settings.clone(),
            spool,
            verified,
            usage,
            wake: Notify::new(),
            intake: Mutex::new(()),
            schedule: Mutex::new(schedule),
        }))
    }

    pub fn verified(&self) -> &VerifiedStore {
        &self.verified
    }

    /// Whether another message of `size` bytes fits within
    /// `spool_max_messages` and `spool_max_bytes`.
    pub fn has_room_for(&self, size: u64) -> bool {
        self.usage.messages() < self.settings.max_messages
            && self.usage.bytes().saturating_add(size) <= self.settings.max_bytes
    }

    /// Writes the message to the spool, durably (file and directory
    /// fsynced), and returns its id: only then may the sender get `250`.
    pub async fn keep(
        self: &Arc<Self>,
        session: &SessionInfo,
        envelope: &Envelope,
        message: Message,
    ) -> Result<QueueId, KeepError> {
        let stored = identity::spooled_envelope(session, envelope, SystemTime::now());
        let id = stored.id.clone();
        let size = message.len();
        {
            let _intake = self.intake.lock().unwrap_or_else(|e| e.into_inner());
            if !self.has_room_for(size) {
                return Err(KeepError::Full {
                    messages: self.usage.messages(),
                    bytes: self.usage.bytes(),
                });
            }
            // Counted before the write, so concurrent intakes see it; given
            // back below if the write fails.
            self.usage.add(size);
        }
        let spool = self.spool.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut reader = message.reader().map_err(|source| SpoolError::Io {
                operation: "read back the received message",
                path: spool.dir().to_path_buf(),
                source,
            })?;
            spool.store_from(&stored, &mut reader)
        })
        .await;
        match written {
            Ok(Ok(_)) => {
                let now = SystemTime::now();
                self.lock_schedule().insert(
                    id.clone(),
                    Scheduled {
                        due: now,
                        arrival: now,
                    },
                );
                self.wake.notify_one();
                Ok(id)
            }
            Ok(Err(error)) => {
                self.usage.remove(size);
                Err(error.into())
            }
            Err(error) => {
                self.usage.remove(size);
                Err(error.into())
            }
        }
    }

    /// At the daemon's exit: the spool no longer has an owner (its PID file
    /// goes; the verified store is saved one last time).
    pub fn release(&self) {
        if let Err(error) = self.verified.save_if_changed() {
            error!("{error}");
        }
        if let Err(error) = self.spool.remove_pid_file() {
            warn!("cannot remove the backup spool's PID file: {error}");
        }
    }

    /// Delivery, now: what SIGHUP and a new message ask for. Every message
    /// becomes due (as Postfix's `postqueue -f`).
    pub fn flush(&self) {
        let now = SystemTime::now();
        for scheduled in self.lock_schedule().values_mut() {
            scheduled.due = now;
        }
        self.wake.notify_one();
    }

    /// The messages due at `now`, oldest first.
    fn due(&self, now: SystemTime) -> Vec<QueueId> {
        self.lock_schedule()
            .iter()
            .filter(|(_, scheduled)| scheduled.due <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// When a message that stays is due again.
    fn reschedule(&self, id: &QueueId, due: SystemTime) {
        if let Some(scheduled) = self.lock_schedule().get_mut(id) {
            scheduled.due = due;
        }
    }

    /// Sets the spool's gauges (`postern_queue_*`, `postern_verified_recipients`).
    fn report_metrics(&self, now: SystemTime) {
        let oldest = self
            .lock_schedule()
            .values()
            .map(|scheduled| scheduled.arrival)
            .min()
            .and_then(|arrival| now.duration_since(arrival).ok())
            .unwrap_or_default();
        let m = smtp_core::metrics::metrics();
        m.queue_messages.set(self.usage.messages() as i64);
        m.queue_bytes.set(self.usage.bytes() as i64);
        m.queue_oldest_age_seconds.set(oldest.as_secs() as i64);
        m.verified_recipients.set(self.verified.len() as i64);
    }

    fn forget_scheduled(&self, id: &QueueId) {
        self.lock_schedule().remove(id);
    }

    fn lock_schedule(&self) -> std::sync::MutexGuard<'_, BTreeMap<QueueId, Scheduled>> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Saves the verified-recipient store every [`SAVE_INTERVAL`] while
    /// something changed; runs for the daemon's life.
    pub async fn save_verified_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAVE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || me.verified.save_if_changed()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => error!("{error}"),
                Err(error) => error!("saving the verified-recipient store failed: {error}"),
            }
        }
    }
}

/// The spool at `spool_dir`, owned under relay-in's name.
fn open_spool(settings: &SpoolSettings) -> anyhow::Result<Spool<SpoolExtras>> {
    Spool::open(&settings.dir, DAEMON)
        .with_context(|| format!("smtp_forward.ini spool_dir = {}", settings.dir.display()))
}

/// `relay-in queue ...`: the queue tool on the backup spool the
/// configuration names; an error when it names none (no `mode=spool`).
pub fn queue_command(config: &Path, command: &QueueCommand) -> ExitCode {
    let opened = ConfigDir::open(config)
        .and_then(|dir| RelayInSettings::load(&dir))
        .map_err(anyhow::Error::from)
        .and_then(|settings| {
            if settings.forward.mode != ForwardMode::Spool {
                anyhow::bail!(
                    "relay-in keeps no mail with this configuration: smtp_forward.ini has no mode=spool"
                );
            }
            open_spool(&settings.forward.spool)
        });
    match opened {
        Ok(spool) => spool::queue_tool::run(&spool, command),
        Err(error) => {
            eprintln!("relay-in queue: {error:#}");
            ExitCode::FAILURE
        }
    }
}

impl Usage {
    fn add(&self, size: u64) {
        self.messages.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(size, Ordering::SeqCst);
    }

    fn remove(&self, size: u64) {
        let _ = self
            .messages
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            });
        let _ = self
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(size))
            });
    }

    fn messages(&self) -> u64 {
        self.messages.load(Ordering::SeqCst)
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

/// The sender's `250` for a spooled message.
pub fn spooled(id: &QueueId) -> Reply {
    Reply::new(
        250,
        Some(EnhancedCode::new(2, 0, 0)),
        format!("Queued as {id} (kept until the home server is back)"),
    )
}

/// `spool_max_messages` or `spool_max_bytes` reached (RFC 3463 4.3.1: mail
/// system full).
pub fn spool_full() -> Reply {
    Reply::new(
        452,
        Some(EnhancedCode::new(4, 3, 1)),
        "Too much mail is waiting for the home server, try again later",
    )
}

/// The spool could not be written (disk error): the sender retries.
pub fn spool_failed() -> Reply {
    Reply::new(
        451,
        Some(EnhancedCode::new(4, 3, 0)),
        "Cannot keep the message now, try again later",
    )
}
