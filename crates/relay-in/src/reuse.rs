//! Keeping a client's backend session for its next message.
//!
//! A sending MTA often delivers several messages over one connection. Its
//! backend session (connect, EHLO, XCLIENT, EHLO again, AUTH) can carry them
//! all: XCLIENT made that session *this* client as far as the backend knows,
//! so it is only ever reused for the same client connection, never pooled
//! between clients (Postfix refuses a second XCLIENT, and mixing identities
//! would lie to the backend's policy checks).

use std::time::Duration;

use tokio::sync::oneshot;

use crate::forward::Backend;

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

/// A finished backend session waiting for the same client's next message.
///
/// It lives in a small task so that an idle session is closed (QUIT) after
/// [`IDLE_LIMIT`] even though nothing else runs while the client is quiet;
/// dropping the handle (the client went away) closes it at once.
pub struct ParkedBackend {
    request: oneshot::Sender<oneshot::Sender<Backend>>,
}

impl ParkedBackend {
    /// Parks `backend`, or closes it when it has served long enough or an
    /// error left it out of step.
    pub fn park(backend: Backend) -> Option<ParkedBackend> {
        if !backend.is_usable() || backend.age() >= AGE_LIMIT {
            backend.abandon();
            return None;
        }
        let (request, requested) = oneshot::channel::<oneshot::Sender<Backend>>();
        tokio::spawn(async move {
            tokio::select! {
                asked = requested => match asked {
                    Ok(give) => {
                        if let Err(backend) = give.send(backend) {
                            backend.quit().await;
                        }
                    }
                    Err(_) => backend.quit().await,
                },
                () = tokio::time::sleep(IDLE_LIMIT) => backend.quit().await,
            }
        });
        Some(ParkedBackend { request })
    }

    /// The parked session, unless it was closed for idleness meanwhile.
    pub async fn take(self) -> Option<Backend> {
        let (give, receive) = oneshot::channel();
        self.request.send(give).ok()?;
        receive.await.ok()
    }
}
