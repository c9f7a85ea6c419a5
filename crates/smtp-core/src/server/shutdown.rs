//! Graceful shutdown, broadcast from the signal handler to every connection.

use tokio::sync::watch;

/// The phases of stopping: first let transactions in flight finish, then,
/// when the grace period (`force_shutdown_timeout`) is over, cut the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Running,
    /// Stop accepting; idle sessions get `421` now, busy ones after their
    /// transaction.
    Draining,
    /// Grace period over: every session gets `421` at once.
    Forced,
}

/// Sender side, held by the server.
#[derive(Debug)]
pub(crate) struct ShutdownSender(watch::Sender<Phase>);

/// Receiver side, one per listener and connection.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown(watch::Receiver<Phase>);

pub(crate) fn channel() -> (ShutdownSender, Shutdown) {
    let (tx, rx) = watch::channel(Phase::Running);
    (ShutdownSender(tx), Shutdown(rx))
}

impl ShutdownSender {
    pub(crate) fn set(&self, phase: Phase) {
        self.0.send_if_modified(|current| {
            let advance = phase > *current;
            if advance {
                *current = phase;
            }
            advance
        });
    }
}

impl Shutdown {
    pub(crate) fn phase(&self) -> Phase {
        *self.0.borrow()
    }

    /// Resolves when the phase moves past `seen`; never resolves if the
    /// sender is gone (the server outlives its connections).
    pub(crate) async fn changed_from(&mut self, seen: Phase) -> Phase {
        loop {
            let now = *self.0.borrow_and_update();
            if now != seen {
                return now;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
