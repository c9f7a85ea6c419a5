//! Keeping a client's backend session for its next message.
//!
//! A sending MTA often delivers several messages over one connection. Its
//! backend session (connect, EHLO, XCLIENT, EHLO again, AUTH) can carry them
//! all: XCLIENT made that session *this* client as far as the backend knows,
//! so it is only ever reused for the same client connection, never pooled
//! between clients (Postfix refuses a second XCLIENT, and mixing identities
//! would lie to the backend's policy checks).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtp_protocol::session::SessionInfo;
use tokio::task::AbortHandle;

use crate::forward::{Backend, RouteKey};

/// How long a finished backend session waits for the client's next message
/// before it is closed. Postfix's own SMTP connection cache keeps an idle
/// session for `smtp_connection_cache_time_limit` = 2 s: long enough for an
/// MTA's next queued message, short enough that clients dawdling between
/// messages do not hold the backend's smtpd processes.
pub const IDLE_LIMIT: Duration = Duration::from_secs(2);

/// The longest a backend session is used for one client, counted from its
/// connection (Postfix `smtp_connection_reuse_time_limit`, 300 s): the
/// backend re-reads its configuration for new sessions only.
pub const AGE_LIMIT: Duration = Duration::from_secs(300);

/// The finished backend session of one client connection, waiting for that
/// client's next message.
///
/// An idle session must be closed after [`IDLE_LIMIT`] even though nothing
/// else runs while the client is quiet, so a reaper task watches the slot.
/// It is spawned when a session is parked and none is watching, and sleeps
/// until the parked session's deadline: a busy connection costs a mutex per
/// message and a task every couple of seconds, not a task per message.
/// Dropping the keeper (the client went away) closes the session at once.
#[derive(Default)]
pub struct KeptBackend {
    /// Made on the first `keep`, and only as large as an empty slot: most
    /// connections (idle ones, those refused) never keep a session.
    slot: Option<Arc<Mutex<Slot>>>,
    /// The reaper watching the slot, ended with the connection: one that
    /// slept out its deadline after the client left held the slot (and a
    /// task) for up to [`IDLE_LIMIT`] per closed connection.
    reaper: Option<AbortHandle>,
}

/// What the connection and its reaper share. The session is boxed: it is
/// several KB (its TLS state is inline) and the slot outlives it.
#[derive(Default)]
struct Slot {
    parked: Option<(Box<Backend>, Instant)>,
    reaper_running: bool,
}

impl KeptBackend {
    /// Keeps `backend` for the client's next message, or closes it when it
    /// has served long enough or an error left it out of step.
    pub fn keep(&mut self, backend: Backend) {
        if !backend.is_usable() || backend.age() >= AGE_LIMIT {
            backend.abandon();
            return;
        }
        let shared = self.slot.get_or_insert_with(Arc::default);
        let mut slot = lock(shared);
        if let Some((previous, _)) = slot.parked.replace((Box::new(backend), Instant::now())) {
            previous.abandon();
        }
        if !slot.reaper_running {
            slot.reaper_running = true;
            self.reaper = Some(tokio::spawn(reap(Arc::clone(shared))).abort_handle());
        }
    }

    /// The kept session, unless it was closed for idleness.
    fn take(&self) -> Option<Backend> {
        let slot = self.slot.as_ref()?;
        lock(slot).parked.take().map(|(backend, _)| *backend)
    }

    /// The kept session if it serves `key` and the client's current greeting
    /// (so XCLIENT told the backend what is still true); one that does not is
    /// closed.
    pub fn take_for(&self, key: &RouteKey, session: &SessionInfo) -> Option<Backend> {
        let backend = self.take()?;
        if backend.serves(key, session) {
            Some(backend)
        } else {
            backend.abandon();
            None
        }
    }
}

impl Drop for KeptBackend {
    fn drop(&mut self) {
        // The reaper never awaits anything but its timer (closing a session
        // does not wait), so ending it loses nothing.
        if let Some(reaper) = self.reaper.take() {
            reaper.abort();
        }
        if let Some(backend) = self.take() {
            backend.abandon();
        }
    }
}

/// The reaper: closes the parked session once it has been idle for
/// [`IDLE_LIMIT`]; ends when the slot is empty (the session is in use or
/// gone; the next `keep` starts another).
async fn reap(slot: Arc<Mutex<Slot>>) {
    loop {
        let next = {
            let mut guard = lock(&slot);
            let idle_until = guard.parked.as_ref().map(|(_, since)| *since + IDLE_LIMIT);
            match idle_until {
                Some(deadline) if Instant::now() < deadline => Ok(deadline),
                _ => {
                    guard.reaper_running = false;
                    Err(guard.parked.take())
                }
            }
        };
        match next {
            Ok(deadline) => tokio::time::sleep_until(deadline.into()).await,
            Err(idle) => {
                if let Some((backend, _)) = idle {
                    backend.abandon();
                }
                return;
            }
        }
    }
}

/// The slot holds no invariant a panic elsewhere could break halfway.
fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}
