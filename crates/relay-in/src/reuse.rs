//! A client's backend session: opened early in queue mode, kept for the
//! client's next message, closed when idle or when the client leaves.
//!
//! A sending MTA often delivers several messages over one connection. Its
//! backend session (connect, EHLO, XCLIENT, EHLO again, AUTH) can carry them
//! all: XCLIENT made that session *this* client as far as the backend knows,
//! so it is only ever reused for the same client connection, never pooled
//! between clients (Postfix refuses a second XCLIENT, and mixing identities
//! would lie to the backend's policy checks).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smtp_protocol::session::SessionInfo;
use tokio::task::AbortHandle;

use crate::forward::{Backend, Forwarder, OpenFailed, RouteKey};

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

/// The backend session of one client connection: kept after a message for
/// that client's next one, or opened early, at the client's first accepted
/// recipient while it still sends the rest of its transaction (queue mode),
/// so that the final dot waits for MAIL, RCPT, DATA and the content only.
///
/// Whichever way it came, it is at most one session, parked in one slot:
/// an early open starts only while the slot is empty and no other open is
/// in flight, and a forward at the dot takes the session out of the slot.
///
/// The early open is not a task: the connection's driver polls it while it
/// waits for the client ([`KeptBackend::poll_open`], through smtp-core's
/// `ConnectionPolicy::poll_background`), and the forward at the dot awaits
/// what is left of it. A spawned task ran on the connection's own worker
/// only once the connection had nothing to read, which a prompt client
/// (smtp-source) delayed to its final dot: the open then gained nothing.
///
/// An idle session must be closed after [`IDLE_LIMIT`] even though nothing
/// else runs while the client is quiet, so a reaper task watches the slot.
/// It is spawned when a session is parked and none is watching, and sleeps
/// until the parked session's deadline: a busy connection costs a mutex per
/// message and a task every couple of seconds, not a task per message. The
/// same limit closes an early session whose client dawdles (or said RSET)
/// before its dot, so such a client holds no backend process longer than a
/// kept session would. Dropping the keeper (the client went away) closes
/// the session at once and ends an open still in flight.
#[derive(Default)]
pub struct KeptBackend {
    /// Made on the first `keep` or early open, and only as large as an
    /// empty slot: most connections (idle ones, those refused) never have a
    /// backend session.
    slot: Option<Arc<Mutex<Slot>>>,
    /// The early open in flight; its session is parked in the slot when done.
    opening: Option<Opening>,
    /// Why the early open failed, reported at the dot as an open there would.
    failed: Option<OpenFailed>,
}

/// An early open: boxed, as it is several KB (connect, STARTTLS, AUTH,
/// XCLIENT) and most connections never have one.
type Opening = Pin<Box<dyn Future<Output = Result<Backend, OpenFailed>> + Send>>;

/// What the connection and its reaper share. The session is boxed: it is
/// several KB (its TLS state is inline) and the slot outlives it.
#[derive(Default)]
struct Slot {
    parked: Option<(Box<Backend>, Instant)>,
    /// The reaper watching the slot, ended with the connection: one that
    /// slept out its deadline after the client left held the slot (and a
    /// task) for up to [`IDLE_LIMIT`] per closed connection.
    reaper: Option<AbortHandle>,
}

impl KeptBackend {
    /// Keeps `backend` for the client's next message, or closes it when it
    /// has served long enough or an error left it out of step.
    pub fn keep(&mut self, backend: Backend) {
        park(self.slot.get_or_insert_with(Arc::default), backend);
    }

    /// Starts opening a session for the transaction the client has begun
    /// (queue mode), unless one is parked or already being opened: the
    /// forward at the dot finds it in the slot ([`KeptBackend::opened`]).
    pub fn open_early(
        &mut self,
        forwarder: &Arc<Forwarder>,
        selector: String,
        session: &SessionInfo,
    ) {
        if self.opening.is_some() {
            return;
        }
        self.failed = None;
        if self
            .slot
            .as_ref()
            .is_some_and(|slot| lock(slot).parked.is_some())
        {
            return;
        }
        let forwarder = Arc::clone(forwarder);
        let session = session.clone();
        self.opening = Some(Box::pin(async move {
            forwarder.open_unreported(&selector, &session).await
        }));
    }

    /// Drives the early open while the connection waits for its client.
    /// A transaction that never reaches its dot (RSET) leaves the session
    /// parked; a failure then concerns nobody until the next open clears it.
    pub fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(opening) = &mut self.opening else {
            return Poll::Ready(());
        };
        let Poll::Ready(opened) = opening.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        self.opening = None;
        self.settle(opened);
        Poll::Ready(())
    }

    /// Finishes an early open still in flight. Its failure, if it was for
    /// `key`, is the dot's: the caller reports it as its own open's.
    pub async fn opened(&mut self, key: &RouteKey) -> Result<(), OpenFailed> {
        if let Some(opening) = self.opening.take() {
            let opened = opening.await;
            self.settle(opened);
        }
        match self.failed.take() {
            Some(failure) if failure.key() == key => Err(failure),
            _ => Ok(()),
        }
    }

    /// Parks what an early open opened, or keeps why it failed.
    fn settle(&mut self, opened: Result<Backend, OpenFailed>) {
        match opened {
            Ok(backend) => self.keep(backend),
            Err(failure) => self.failed = Some(failure),
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
        // An open in flight is dropped where it stands: its connection
        // closes without a QUIT, as nothing was said on it yet.
        self.opening = None;
        let Some(shared) = self.slot.take() else {
            return;
        };
        let (parked, reaper) = {
            let mut slot = lock(&shared);
            (slot.parked.take(), slot.reaper.take())
        };
        // The reaper never awaits anything but its timer (closing a session
        // does not wait), so ending it loses nothing.
        if let Some(reaper) = reaper {
            reaper.abort();
        }
        if let Some((backend, _)) = parked {
            backend.abandon();
        }
    }
}

/// Parks `backend` in the slot, closing whatever it replaces, and makes sure
/// a reaper watches it. A session past its use is closed instead.
fn park(shared: &Arc<Mutex<Slot>>, backend: Backend) {
    if !backend.is_usable() || backend.age() >= AGE_LIMIT {
        backend.abandon();
        return;
    }
    let mut slot = lock(shared);
    if let Some((previous, _)) = slot.parked.replace((Box::new(backend), Instant::now())) {
        previous.abandon();
    }
    if slot.reaper.is_none() {
        slot.reaper = Some(tokio::spawn(reap(Arc::clone(shared))).abort_handle());
    }
}

/// The reaper: closes the parked session once it has been idle for
/// [`IDLE_LIMIT`]; ends when the slot is empty (the session is in use or
/// gone; the next `park` starts another).
async fn reap(slot: Arc<Mutex<Slot>>) {
    loop {
        let next = {
            let mut guard = lock(&slot);
            let idle_until = guard.parked.as_ref().map(|(_, since)| *since + IDLE_LIMIT);
            match idle_until {
                Some(deadline) if Instant::now() < deadline => Ok(deadline),
                _ => {
                    guard.reaper = None;
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
