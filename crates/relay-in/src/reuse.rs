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

use smtp_protocol::session::{Envelope, Greeting, SessionInfo};
use tokio::time::Sleep;

use crate::forward::{Backend, EarlyExchange, EnvelopeToSend, Forwarder, OpenFailed, RouteKey};

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
/// At the client's DATA the session is taken for the envelope
/// ([`KeptBackend::begin_transaction`], `forward/early.rs`): MAIL, RCPT and
/// DATA go while the message arrives, and the forward at the dot finds the
/// backend's answers ([`KeptBackend::early_exchange`]).
///
/// The idle limit needs no task either: a parked session waits only while
/// the client is quiet, and that is when the driver polls the expiry. The
/// same limit closes an early session whose client dawdles (or said RSET)
/// before its dot, and an envelope whose message has not come within it, so
/// such a client holds no backend process longer than a kept session would.
/// Dropping the keeper (the client went away) closes the session at once
/// and ends an open still in flight.
#[derive(Default)]
pub struct KeptBackend {
    /// The parked session and when it was parked. Boxed: it is several KB
    /// (its TLS state is inline) and most connections (idle ones, those
    /// refused) never have one.
    parked: Option<(Box<Backend>, Instant)>,
    /// Fires when the parked session or the envelope sent has waited
    /// [`IDLE_LIMIT`]: made when first needed, reset after.
    expiry: Option<Pin<Box<Sleep>>>,
    /// The envelope of the transaction in progress, sent (or to be sent)
    /// at the client's DATA. Boxed: it holds a session, and most
    /// connections (idle ones, those refused) never have one.
    early: Option<Box<Early>>,
    /// The early open in flight; its session is parked when done.
    opening: Option<Opening>,
    /// Why the early open failed, reported at the dot as an open there would.
    failed: Option<OpenFailed>,
}

/// An early open: boxed, as it is several KB (connect, STARTTLS, AUTH,
/// XCLIENT) and most connections never have one.
type Opening = Pin<Box<dyn Future<Output = Result<Backend, OpenFailed>> + Send>>;

/// The envelope of transaction `id`, on its way to the backend.
struct Early {
    id: String,
    state: EarlyState,
}

// The whole `Early` is boxed where it is kept, so its largest variant
// costs no connection anything until it is used.
#[allow(clippy::large_enum_variant)]
enum EarlyState {
    /// The early open is still in flight; the envelope goes on its session.
    AwaitingOpen {
        key: RouteKey,
        greeting: Option<Greeting>,
        envelope: EnvelopeToSend,
    },
    /// MAIL, RCPT and DATA sent; the replies come.
    Sending(Pin<Box<dyn Future<Output = EarlyExchange> + Send>>),
    /// The backend answered (when), and waits for the content.
    Sent(EarlyExchange, Instant),
}

impl Early {
    /// Gives the transaction up; a session waiting for content is closed
    /// without it, so the backend delivers nothing.
    fn abandon(self) {
        match self.state {
            EarlyState::AwaitingOpen { .. } => {}
            // Dropped mid-exchange: its connection closes.
            EarlyState::Sending(sending) => drop(sending),
            EarlyState::Sent(exchange, _) => exchange.abandon(),
        }
    }
}

impl KeptBackend {
    /// Keeps `backend` for the client's next message, or closes it when it
    /// has served long enough or an error left it out of step.
    pub fn keep(&mut self, backend: Backend) {
        if !backend.is_usable() || backend.age() >= AGE_LIMIT {
            backend.abandon();
            return;
        }
        if let Some((previous, _)) = self.parked.replace((Box::new(backend), Instant::now())) {
            previous.abandon();
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
        self.cancel_transaction();
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

    /// Sends the envelope of the transaction `envelope` (the client's DATA
    /// was accepted) on the session opened early or kept, once there is
    /// one; the sending is driven by [`Self::poll_background`]. Nothing
    /// happens when no session is parked nor being opened: the dot opens
    /// one as before.
    pub fn begin_transaction(&mut self, key: RouteKey, session: &SessionInfo, envelope: &Envelope) {
        self.cancel_transaction();
        if self.opening.is_none() && self.parked.is_none() {
            return;
        }
        self.early = Some(Box::new(Early {
            id: envelope.id.clone(),
            state: EarlyState::AwaitingOpen {
                key,
                greeting: session.greeting.clone(),
                envelope: EnvelopeToSend::new(envelope),
            },
        }));
    }

    /// Abandons the envelope sent for a transaction that will not reach
    /// the forward (RSET, a new transaction, a message refused at its dot).
    pub fn cancel_transaction(&mut self) {
        if let Some(early) = self.early.take() {
            early.abandon();
        }
    }

    /// The backend's answers to the envelope of transaction `id`, sent at
    /// its DATA; `None` if it was not sent (then the forward sends it).
    pub async fn early_exchange(&mut self, id: &str) -> Option<EarlyExchange> {
        let early = self.early.take()?;
        if early.id != id {
            early.abandon();
            return None;
        }
        match early.state {
            // The open settled only at the dot: the forward takes its
            // session and sends the envelope itself.
            EarlyState::AwaitingOpen { .. } => None,
            EarlyState::Sending(sending) => Some(sending.await),
            EarlyState::Sent(exchange, _) => Some(exchange),
        }
    }

    /// Drives the early open and the envelope sent at DATA, and closes a
    /// session parked (or an envelope unanswered by content) for
    /// [`IDLE_LIMIT`], while the connection waits for its client. A
    /// transaction that never reaches its dot (RSET) leaves the session
    /// parked; a failure then concerns nobody until the next open clears it.
    /// `Ready` when nothing is left to wait for.
    pub fn poll_background(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let opening = self.poll_open(cx);
        let early = self.poll_early(cx);
        let idle = self.poll_expiry(cx);
        if opening.is_ready() && early.is_ready() && idle.is_ready() {
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

    /// Moves the envelope of the transaction on: onto the session once the
    /// open has settled, then to the backend's answers.
    fn poll_early(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(mut early) = self.early.take() else {
            return Poll::Ready(());
        };
        if self.opening.is_some() && matches!(early.state, EarlyState::AwaitingOpen { .. }) {
            // The open's own poll wakes this task when it settles.
            self.early = Some(early);
            return Poll::Pending;
        }
        if let EarlyState::AwaitingOpen {
            key,
            greeting,
            envelope,
        } = early.state
        {
            match self.take() {
                Some(backend) if backend.serves_greeting(&key, &greeting) => {
                    early.state = EarlyState::Sending(Box::pin(envelope.send(backend)));
                }
                // Nothing usable (the open failed, or it is for another
                // route or greeting, which the dot would close too): the dot
                // opens a session as before.
                other => {
                    if let Some(backend) = other {
                        backend.abandon();
                    }
                    return Poll::Ready(());
                }
            }
        }
        if let EarlyState::Sending(sending) = &mut early.state {
            match sending.as_mut().poll(cx) {
                Poll::Pending => {
                    self.early = Some(early);
                    return Poll::Pending;
                }
                Poll::Ready(exchange) => early.state = EarlyState::Sent(exchange, Instant::now()),
            }
        }
        self.early = Some(early);
        Poll::Ready(())
    }

    /// Closes whatever has waited for its client for [`IDLE_LIMIT`]: the
    /// parked session, an envelope whose message did not come.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Bounded: each turn closes what was due, so the next deadline is
        // later or there is none.
        loop {
            let Some(due) = self.next_deadline() else {
                return Poll::Ready(());
            };
            let wake_at = tokio::time::Instant::from_std(due);
            let expiry = self
                .expiry
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake_at)));
            if expiry.deadline() != wake_at {
                expiry.as_mut().reset(wake_at);
            }
            if expiry.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.expire(due);
        }
    }

    /// When the parked session or the envelope sent will have waited
    /// [`IDLE_LIMIT`], whichever is first.
    fn next_deadline(&self) -> Option<Instant> {
        let parked = self.parked.as_ref().map(|(_, since)| *since + IDLE_LIMIT);
        let sent = match self.early.as_deref() {
            Some(Early {
                state: EarlyState::Sent(_, since),
                ..
            }) => Some(*since + IDLE_LIMIT),
            _ => None,
        };
        parked.into_iter().chain(sent).min()
    }

    /// Closes what was due at `due` or before.
    fn expire(&mut self, due: Instant) {
        if self
            .parked
            .as_ref()
            .is_some_and(|(_, since)| *since + IDLE_LIMIT <= due)
            && let Some((idle, _)) = self.parked.take()
        {
            idle.abandon();
        }
        if let Some(Early {
            state: EarlyState::Sent(_, since),
            ..
        }) = self.early.as_deref()
            && *since + IDLE_LIMIT <= due
        {
            self.cancel_transaction();
        }
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
        self.cancel_transaction();
        if let Some((backend, _)) = self.parked.take() {
            backend.abandon();
        }
    }
}
