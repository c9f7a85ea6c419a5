//! One client's live backend session: the commands relay-in sends on it
//! for that client, and when it may carry the client's next message.

use std::time::Instant;

use smtp_core::client::{ClientError, ClientErrorKind, EnvelopeRecipient, MailOptions, SmtpClient};
use smtp_core::message::Message;
use smtp_protocol::address::ReversePath;
use smtp_protocol::reply::Reply;
use smtp_protocol::session::{Greeting, SessionInfo};
use tracing::{debug, info, warn};

use super::RouteKey;
use super::replies::{failure_reply, relayed, reply};

/// An open backend session of one client connection. It may carry that
/// client's next transactions (see `reuse`), never another client's: after
/// XCLIENT it *is* that client as far as the backend knows.
pub struct Backend {
    pub(super) client: SmtpClient,
    pub key: RouteKey,
    /// The greeting XCLIENT presented as the client's HELO; a client that
    /// greets anew with another name needs a session saying so.
    pub(super) greeting: Option<Greeting>,
    pub(super) opened: Instant,
    /// Dropped with this session: then the route's next spare is made
    /// (`spare.rs`), off this client's path.
    pub(super) _next_spare: Option<super::spare::SpareTrigger>,
}

impl Backend {
    /// Whether the first exchange on a kept session shows that the backend
    /// closed it while it was kept (its own idle timeout, a restart): the
    /// connection is gone, or the first reply is its `421`. Nothing of the
    /// new transaction can have been accepted then, so the caller starts
    /// again on a new session.
    pub fn closed_while_kept(
        &self,
        session: &SessionInfo,
        first: Result<&Reply, &ClientError>,
    ) -> bool {
        let closed = match first {
            Ok(reply) => reply.code() == 421,
            Err(error) => matches!(
                error.kind(),
                ClientErrorKind::Closed | ClientErrorKind::Io(_)
            ),
        };
        if closed {
            let why = match first {
                Ok(reply) => reply.to_string(),
                Err(error) => error.to_string(),
            };
            info!(conn = %session.conn_id, backend = %self.key, "kept backend session was closed ({why}); opening a new one");
        }
        closed
    }

    /// Whether this session was opened for `key` and the client's current
    /// greeting, so XCLIENT told the backend what is still true.
    pub fn serves(&self, key: &RouteKey, session: &SessionInfo) -> bool {
        self.serves_greeting(key, &session.greeting)
    }

    /// [`Self::serves`], for a greeting kept apart from its session.
    pub fn serves_greeting(&self, key: &RouteKey, greeting: &Option<Greeting>) -> bool {
        self.key == *key && self.greeting == *greeting
    }

    /// Time since the session was opened.
    pub fn age(&self) -> std::time::Duration {
        self.opened.elapsed()
    }

    /// Whether the last exchange left the session in step with the backend.
    pub fn is_usable(&self) -> bool {
        self.client.is_usable()
    }

    /// MAIL FROM for live mode. `Err` is a failure of the session itself,
    /// with the client error for the caller to judge (a kept session that
    /// was closed meanwhile is retried on a new one).
    pub async fn mail_from(
        &mut self,
        from: &ReversePath,
        options: MailOptions,
    ) -> Result<Reply, ClientError> {
        self.client.mail_from(from, options).await
    }

    pub async fn rcpt_to<R: EnvelopeRecipient + ?Sized>(
        &mut self,
        rcpt: &R,
    ) -> Result<Reply, Reply> {
        self.client.rcpt_to(rcpt).await.map_err(|e| {
            warn!(backend = %self.key, "backend RCPT failed: {e}");
            failure_reply(&e)
        })
    }

    /// Live mode: DATA and the message; the backend's final reply is the
    /// verdict.
    pub async fn finish(
        &mut self,
        session: &SessionInfo,
        envelope: &smtp_protocol::session::Envelope,
        message: &Message,
    ) -> Result<Reply, Reply> {
        let reader = self.reader(session, envelope, message)?;
        let result = self.client.data_from(reader).await;
        self.verdict(session, envelope, result)
    }

    /// The message after DATA got `354`; the backend's final reply is the
    /// verdict.
    pub(super) async fn content(
        &mut self,
        session: &SessionInfo,
        envelope: &smtp_protocol::session::Envelope,
        message: &Message,
    ) -> Result<Reply, Reply> {
        let reader = match self.reader(session, envelope, message) {
            Ok(reader) => reader,
            Err(reply) => {
                self.client.abort_data();
                return Err(reply);
            }
        };
        let result = self.client.data_content(reader).await;
        self.verdict(session, envelope, result)
    }

    fn reader<'m>(
        &self,
        session: &SessionInfo,
        envelope: &smtp_protocol::session::Envelope,
        message: &'m Message,
    ) -> Result<smtp_core::message::MessageReader<'m>, Reply> {
        message.async_reader().map_err(|e| {
            warn!(conn = %session.conn_id, id = %envelope.id, "cannot read the message back: {e}");
            reply(451, (4, 3, 0), "Local error in processing, try again later")
        })
    }

    fn verdict(
        &self,
        session: &SessionInfo,
        envelope: &smtp_protocol::session::Envelope,
        result: Result<Reply, ClientError>,
    ) -> Result<Reply, Reply> {
        match result {
            // An acceptance is logged once, by the server's "message
            // accepted" line, which carries the backend's reply.
            Ok(final_reply) if final_reply.is_positive() => {
                debug!(conn = %session.conn_id, id = %envelope.id, backend = %self.key, "backend answered: {final_reply}");
                Ok(relayed(&final_reply, &envelope.id))
            }
            Ok(final_reply) => {
                info!(conn = %session.conn_id, id = %envelope.id, backend = %self.key, "backend refused the message: {final_reply}");
                Err(relayed(&final_reply, &envelope.id))
            }
            Err(e) => {
                warn!(conn = %session.conn_id, id = %envelope.id, backend = %self.key, "backend DATA failed: {e}");
                Err(failure_reply(&e))
            }
        }
    }

    /// Says QUIT and closes.
    pub async fn quit(self) {
        self.client.quit().await;
    }

    /// Closes the session (RSET, a dropped client, a session that cannot
    /// carry more) without waiting for the backend's goodbye, as Postfix's
    /// client does ([`SmtpClient::close`]).
    pub fn abandon(self) {
        self.client.close();
    }
}
