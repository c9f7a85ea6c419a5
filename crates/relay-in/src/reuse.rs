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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smtp_protocol::session::SessionInfo;
use tokio::time::Sleep;

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
/// Whichever way it came, it is at most one session, parked here: an early
/// open starts only while none is parked and no other open is in flight,
/// and a forward at the dot takes the session out.
///
/// Nothing here is a task: the connection's driver polls this while it
/// waits for the client ([`KeptBackend::poll_background`], through
/// smtp-core's `ConnectionPolicy::poll_background`), which drives the early
/// open and closes a session parked for [`IDLE_LIMIT`], and the forward at
/// the dot awaits what is left of the open. A spawned open ran on the
/// connection's own worker only once the connection had nothing to read,
/// which a prompt client (smtp-source) delayed to its final dot: the open
/// then gained nothing. A reaper task per parked session (the design before)
/// cost two spawns per message with a connection per message, each a
/// wake-up of the other worker (BENCHMARKS.md, issue 19).
///
/// The idle limit needs no task either: a parked session waits only while
/// the client is quiet, and that is when the driver polls the expiry. The
/// same limit closes an early session whose client dawdles (or said RSET)
/// before its dot, so such a client holds no backend process longer than a
/// kept session would. Dropping the keeper (the client went away) closes
/// the session at once and ends an open still in flight.
#[derive(Default)]
pub struct KeptBackend {
    /// The parked session and when it was parked. Boxed: it is several KB
    /// (its TLS state is inline) and most connections (idle ones, those
    /// refused) never have one.
    parked: Option<(Box<Backend>, Instant)>,
    /// Fires [`IDLE_LIMIT`] after the latest park: made on the first one,
    /// reset on each after it.
    expiry: Option<Pin<Box<Sleep>>>,
    /// The early open in flight; its session is parked when done.
    opening: Option<Opening>,
    /// Why the early open failed, reported at the dot as an open there would.
    failed: Option<OpenFailed>,
}

/// An early open: boxed, as it is several KB (connect, STARTTLS, AUTH,
/// XCLIENT) and most connections never have one.
type Opening = Pin<Box<dyn Future<Output = Result<Backend, OpenFailed>> + Send>>;

impl KeptBackend {
    /// Keeps `backend` for the client's next message, or closes it when it
    /// has served long enough or an error left it out of step.
    pub fn keep(&mut self, backend: Backend) {
        if !backend.is_usable() || backend.age() >= AGE_LIMIT {
            backend.abandon();
            return;
        }
        let now = Instant::now();
        if let Some((previous, _)) = self.parked.replace((Box::new(backend), now)) {
            previous.abandon();
        }
        let deadline = tokio::time::Instant::from_std(now + IDLE_LIMIT);
        match &mut self.expiry {
            Some(expiry) => expiry.as_mut().reset(deadline),
            None => self.expiry = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// Starts opening a session for the transaction the client has begun
    /// (queue mode), unless one is parked or already being opened: the
    /// forward at the dot finds it parked ([`KeptBackend::opened`]).
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
        if self.parked.is_some() {
            return;
        }
        let forwarder = Arc::clone(forwarder);
        let session = session.clone();
        self.opening = Some(Box::pin(async move {
            forwarder.open_unreported(&selector, &session).await
        }));
    }

    /// Drives the early open and closes a session parked for
    /// [`IDLE_LIMIT`], while the connection waits for its client. A
    /// transaction that never reaches its dot (RSET) leaves the session
    /// parked; a failure then concerns nobody until the next open clears it.
    /// `Ready` when neither is left to wait for.
    pub fn poll_background(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let opening = self.poll_open(cx);
        let idle = self.poll_expiry(cx);
        if opening.is_ready() && idle.is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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

    /// Closes the parked session once its expiry fires.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (Some(_), Some(expiry)) = (&self.parked, &mut self.expiry) else {
            return Poll::Ready(());
        };
        if expiry.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some((idle, _)) = self.parked.take() {
            idle.abandon();
        }
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

    /// The parked session, unless it has been idle for [`IDLE_LIMIT`]
    /// (the connection was not waiting for its client when the expiry
    /// fired): that one is closed.
    fn take(&mut self) -> Option<Backend> {
        let (backend, since) = self.parked.take()?;
        if since.elapsed() >= IDLE_LIMIT {
            backend.abandon();
            return None;
        }
        Some(*backend)
    }

    /// The kept session if it serves `key` and the client's current greeting
    /// (so XCLIENT told the backend what is still true); one that does not is
    /// closed.
    pub fn take_for(&mut self, key: &RouteKey, session: &SessionInfo) -> Option<Backend> {
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
        if let Some((backend, _)) = self.parked.take() {
            backend.abandon();
        }
    }
}
