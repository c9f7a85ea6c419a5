//! A spare backend session per route: connected, greeted, STARTTLS'd and
//! authenticated, but not yet anyone's (no XCLIENT), so that the next
//! client's open starts at XCLIENT.
//!
//! Why: with a connection per message, relay-in needs a whole backend
//! session per client, and its first steps (TCP connect, the greeting,
//! EHLO, STARTTLS, AUTH) are round trips the client's own transaction can
//! outrun. At one session they were most of what a message waited for after
//! its final dot (BENCHMARKS.md, issue 19, "Spare backend sessions").
//!
//! Like a client's own open, a spare says no EHLO before XCLIENT when the
//! backend's offer is known (`PreparedRoute::connect_for_xclient`).
//!
//! This is not a pool of shared sessions: a spare is handed to exactly one
//! client, whose XCLIENT makes it that client's for good (Postfix re-checks
//! XCLIENT authorisation against the impersonated client, so a session can
//! never serve a second one). All a spare saves is doing the same opening
//! steps a little earlier.
//!
//! A spare costs the backend an smtpd process while it waits, so one is made
//! only when traffic is dense enough to use it: after an open that followed
//! the previous one within [`SPARE_IDLE_LIMIT`], at most one per route and
//! one being made at a time. A spare unused for that long is closed (QUIT),
//! so a relay with sparse traffic opens no session it does not use, and an
//! idle one holds none.
//!
//! The spare is made once the session of the open that asked for it has
//! ended ([`SpareTrigger`]), not at once: made at once, its connect, greeting
//! and EHLO competed with that very client's transaction at its final dot,
//! on the backend (one smtpd per session, but one CPU) and in relay-in; after
//! the session it has the next client's greeting, MAIL and RCPT to be ready
//! in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtp_core::client::SmtpClient;
use tokio::sync::oneshot;
use tracing::debug;

use super::PreparedRoute;

/// How long a spare waits for a client before it is closed, and the gap
/// between two opens under which one is made: Postfix's own SMTP
/// connection cache keeps an idle session as long
/// (`smtp_connection_cache_time_limit`, 2 s), the same as
/// [`crate::reuse::IDLE_LIMIT`].
pub const SPARE_IDLE_LIMIT: Duration = crate::reuse::IDLE_LIMIT;

/// The spare session of one route, and what decides when to make one.
#[derive(Debug, Default)]
pub struct Spare {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ready: Option<Ready>,
    /// How many spares were made: each one's number, so that an expiry
    /// closes only its own.
    made: u64,
    /// A spare is being made.
    making: bool,
    /// The last open on this route, spare or not.
    last_open: Option<Instant>,
}

/// A spare waiting for a client.
#[derive(Debug)]
struct Ready {
    client: SmtpClient,
    /// It said no EHLO: the backend's last offer stands for its reply.
    skipped_ehlo: bool,
    made_at: Instant,
    number: u64,
    /// Dropped with this spare when a client takes it (or it is closed):
    /// its expiry timer then ends, so a busy relay keeps no timer per spare
    /// it made in the last 2 s.
    _taken: oneshot::Sender<()>,
}

/// Held by the backend session of an open that asked for the next spare:
/// its end (the session dropped, however it ends) starts making it.
#[derive(Debug)]
pub struct SpareTrigger {
    _fire_on_drop: oneshot::Sender<()>,
}

impl Spare {
    /// The ready spare (and whether it skipped EHLO), if it is still
    /// usable and young enough; records an open and, when opens come
    /// densely, arranges for the next spare, made when the returned trigger
    /// is dropped with the opened session. `route` is the route this spare
    /// belongs to.
    pub fn take(
        &self,
        route: &Arc<PreparedRoute>,
    ) -> (Option<(SmtpClient, bool)>, Option<SpareTrigger>) {
        let now = Instant::now();
        let (ready, make) = {
            let mut state = lock(&self.state);
            let ready = state.ready.take();
            let make = wants_spare(state.last_open, now, state.making);
            state.last_open = Some(now);
            if make {
                state.making = true;
            }
            (ready, make)
        };
        let trigger = make.then(|| {
            let (fire, fired) = oneshot::channel();
            tokio::spawn(make_spare(Arc::clone(route), fired));
            SpareTrigger {
                _fire_on_drop: fire,
            }
        });
        let Some(ready) = ready else {
            return (None, trigger);
        };
        if ready.client.is_usable() && now.duration_since(ready.made_at) < SPARE_IDLE_LIMIT {
            (Some((ready.client, ready.skipped_ehlo)), trigger)
        } else {
            // Its expiry is due: close it now rather than hand it out.
            ready.client.close();
            (None, trigger)
        }
    }

    /// Parks a newly made spare (closing any it would replace); returns
    /// its number and what says it was taken.
    fn park(&self, client: SmtpClient, skipped_ehlo: bool) -> (u64, oneshot::Receiver<()>) {
        let (taken, was_taken) = oneshot::channel();
        let mut state = lock(&self.state);
        state.making = false;
        state.made += 1;
        let number = state.made;
        let ready = Ready {
            client,
            skipped_ehlo,
            made_at: Instant::now(),
            number,
            _taken: taken,
        };
        if let Some(previous) = state.ready.replace(ready) {
            previous.client.close();
        }
        (number, was_taken)
    }

    fn making_failed(&self) {
        lock(&self.state).making = false;
    }

    /// Closes spare `number` if it is still waiting.
    fn expire(&self, number: u64) {
        let expired = {
            let mut state = lock(&self.state);
            match &state.ready {
                Some(ready) if ready.number == number => state.ready.take(),
                _ => None,
            }
        };
        if let Some(expired) = expired {
            expired.client.close();
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // Only at shutdown can a spare still wait here (its expiry task
        // holds the route until it is taken or closed): say goodbye instead
        // of leaving the backend to log a lost connection.
        let ready = lock(&self.state).ready.take();
        if let Some(ready) = ready {
            ready.client.close();
        }
    }
}

/// Whether an open at `now` should start making a spare: only when the
/// previous open was recent (traffic dense enough for a spare to be used
/// before it expires) and none is being made.
fn wants_spare(last_open: Option<Instant>, now: Instant, making: bool) -> bool {
    let dense = last_open.is_some_and(|last| now.duration_since(last) < SPARE_IDLE_LIMIT);
    dense && !making
}

/// Makes a spare for `route` once `fired` (the session that asked for it
/// ended), and closes it if nobody took it in time.
async fn make_spare(route: Arc<PreparedRoute>, fired: oneshot::Receiver<()>) {
    // Nothing is ever sent: the sender's drop is the signal.
    let _ = fired.await;
    let (mut client, skipped_ehlo) = match route.connect_for_xclient().await {
        Ok(made) => made,
        Err(failure) => {
            // The next client's own open tries again and reports it.
            debug!(backend = %route.key(), "no spare backend session: {failure}");
            route.spare.making_failed();
            return;
        }
    };
    if let Err(e) = client.authenticate().await {
        debug!(backend = %route.key(), "no spare backend session: AUTH failed: {e}");
        client.close();
        route.spare.making_failed();
        return;
    }
    let (number, was_taken) = route.spare.park(client, skipped_ehlo);
    // Taken (or replaced): nothing left to do. Otherwise it is closed.
    if tokio::time::timeout(SPARE_IDLE_LIMIT, was_taken)
        .await
        .is_err()
    {
        route.spare.expire(number);
    }
}

/// The spare holds no invariant a panic elsewhere could break halfway.
fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_made_only_for_dense_opens_one_at_a_time() {
        let now = Instant::now();
        let recent = now.checked_sub(Duration::from_millis(1)).unwrap();
        let old = now.checked_sub(SPARE_IDLE_LIMIT).unwrap();
        assert!(!wants_spare(None, now, false), "the first open");
        assert!(wants_spare(Some(recent), now, false));
        assert!(!wants_spare(Some(recent), now, true), "one being made");
        assert!(!wants_spare(Some(old), now, false), "sparse traffic");
    }
}
