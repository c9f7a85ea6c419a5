//! The envelope sent at the client's DATA (queue mode): MAIL, RCPT and DATA
//! go to the backend while the client's message is still arriving, so that
//! its final dot waits for one backend round trip (the content and its
//! `250`) instead of two.
//!
//! Why: with a connection per message, those two round trips after the dot
//! were most of what a sender waited for beyond what the backend itself
//! takes (BENCHMARKS.md, issue 19, "the envelope at DATA"); over the
//! WireGuard link to a home server each is a real network round trip.
//!
//! What it costs: once the backend has answered DATA with `354`, closing
//! the connection is the only way not to deliver, and Postfix then logs
//! `lost connection after DATA`. That happens only for a transaction relay-in
//! does not forward after all: the client leaves or resets before its dot,
//! relay-in refuses the message at the dot (too large, a mail loop), or the
//! message takes longer than [`crate::reuse::IDLE_LIMIT`] to arrive (the
//! backend session is not held for a slow sender). Messages declared larger
//! than [`EARLY_ENVELOPE_MAX_SIZE`] keep the envelope for the dot, as they
//! are the ones likely to take that long.

use smtp_core::client::{ClientError, DsnRecipient, EnvelopeReplies, MailOptions};
use smtp_protocol::address::ReversePath;
use smtp_protocol::reply::Reply;
use smtp_protocol::session::Envelope;

use super::{Backend, dsn_recipients, mail_options};

/// Messages declared (`SIZE=`) larger than this keep their envelope for
/// the dot: at 1 Mbit/s, 256 KiB is the [`crate::reuse::IDLE_LIMIT`] of
/// transfer.
pub const EARLY_ENVELOPE_MAX_SIZE: u64 = 256 * 1024;

/// What the backend is told at the client's DATA: the envelope as the dot
/// would send it, but `SIZE=` as the client declared it (the message's own
/// size is not known yet).
pub struct EnvelopeToSend {
    from: ReversePath,
    rcpts: Vec<DsnRecipient>,
    options: MailOptions,
}

impl EnvelopeToSend {
    pub fn new(envelope: &Envelope) -> Self {
        Self {
            from: envelope.from.clone(),
            rcpts: dsn_recipients(envelope),
            options: MailOptions {
                size: envelope.params.size,
                ..mail_options(envelope, 0)
            },
        }
    }

    /// MAIL, RCPT and DATA on `backend`, pipelined as at the dot.
    pub async fn send(self, mut backend: Backend) -> EarlyExchange {
        let exchanged = backend
            .client
            .envelope_and_data(&self.from, &self.rcpts, self.options)
            .await;
        EarlyExchange { backend, exchanged }
    }
}

/// The session the envelope went on, and what the backend answered: the
/// forward at the dot judges the replies as if it had just sent them.
pub struct EarlyExchange {
    pub(super) backend: Backend,
    pub(super) exchanged: Result<(EnvelopeReplies, Option<Reply>), ClientError>,
}

impl EarlyExchange {
    /// Gives the transaction up: a backend waiting for the content (it
    /// answered `354`) gets the connection closed without the final dot,
    /// so it delivers nothing; otherwise the session says QUIT.
    pub fn abandon(self) {
        let EarlyExchange {
            mut backend,
            exchanged,
        } = self;
        let awaiting_content = exchanged
            .as_ref()
            .is_ok_and(|(_, data)| awaits_content(data.as_ref()));
        if awaiting_content {
            backend.client.abort_data();
        }
        backend.abandon();
    }
}

/// Whether the reply to DATA (`None`: DATA not sent) left the backend
/// waiting for content: then only closing the connection stops delivery.
pub(super) fn awaits_content(data: Option<&Reply>) -> bool {
    data.is_some_and(|reply| reply.code() == 354)
}
