//! Queue mode's forward: the whole transaction at the client's final dot
//! (Haraka `queue/smtp_forward`), or only its content when the envelope
//! went at the client's DATA (`early.rs`).

use smtp_core::message::Message;
use smtp_protocol::reply::Reply;
use smtp_protocol::session::SessionInfo;
use tracing::{info, warn};

use super::early::awaits_content;
use super::replies::{broken_session, relayed};
use super::{
    Backend, EarlyExchange, Forwarded, Forwarder, dsn_recipients, failure_reply, mail_options,
};

impl Forwarder {
    /// Queue mode: the whole transaction at the end of DATA, on `reused`
    /// (the client's kept session, already known to serve this route and
    /// greeting) or else on a new session; or only its content, when the
    /// envelope went at the client's DATA (`early`).
    pub async fn forward(
        &self,
        session: &SessionInfo,
        envelope: &smtp_protocol::session::Envelope,
        selector: &str,
        message: &Message,
        mut reused: Option<Backend>,
        mut early: Option<EarlyExchange>,
    ) -> Forwarded {
        let not_reusable = |verdict| Forwarded {
            verdict,
            reusable: None,
        };
        let (mut backend, (replies, data)) = loop {
            // The envelope sent at DATA comes first; a session opened before
            // this message (sent at DATA, or kept) may have been closed by
            // the backend meanwhile, and is then replaced.
            let (backend, exchanged, opened_before, sent_early) = match early.take() {
                Some(EarlyExchange { backend, exchanged }) => (backend, exchanged, true, true),
                None => {
                    let (mut backend, was_kept) = match reused.take() {
                        Some(backend) => (backend, true),
                        // Boxed: opening is the rare path once sessions open
                        // early or are kept, and inline it doubled this
                        // future, which is moved for every message
                        // (BENCHMARKS.md, issue 19).
                        None => match Box::pin(self.open(selector, session)).await {
                            Ok(backend) => (backend, false),
                            Err(reply) => return not_reusable(Err(reply)),
                        },
                    };
                    let exchanged = backend
                        .client
                        .envelope_and_data(
                            &envelope.from,
                            &dsn_recipients(envelope),
                            mail_options(envelope, message.len()),
                        )
                        .await;
                    (backend, exchanged, was_kept, false)
                }
            };
            let first = exchanged.as_ref().map(|(replies, _)| &replies.mail);
            if opened_before && backend.closed_while_kept(session, first) {
                backend.abandon();
                continue;
            }
            match exchanged {
                Ok(exchanged) => break (backend, exchanged),
                // Nothing of this transaction can have been queued without
                // its content: start again on a new session.
                Err(e) if sent_early => {
                    info!(conn = %session.conn_id, backend = %backend.key, "backend envelope sent at DATA failed ({e}); opening a new session");
                    backend.abandon();
                }
                Err(e) => {
                    warn!(conn = %session.conn_id, backend = %backend.key, "backend envelope failed: {e}");
                    return not_reusable(Err(failure_reply(&e)));
                }
            }
        };
        let key = &backend.key;
        // After a 354 the backend waits for content we may not send.
        let awaiting_content = awaits_content(data.as_ref());
        if !replies.mail.is_positive() {
            if awaiting_content {
                backend.client.abort_data();
            }
            // No transaction is open: the session can carry the next one,
            // unless the backend said it is closing.
            let reusable = (replies.mail.code() != 421).then_some(backend);
            return Forwarded {
                verdict: Err(relayed(&replies.mail, &envelope.id)),
                reusable,
            };
        }
        // SMTP has one verdict for the message: every recipient must be
        // accepted, or none gets it (live mode gives per-recipient answers).
        let refused = envelope
            .recipients
            .iter()
            .zip(&replies.rcpts)
            .find(|(_, r)| !r.is_positive());
        if let Some((rcpt, _)) = refused {
            let worst = replies
                .rcpts
                .iter()
                .find(|r| r.is_transient())
                .or_else(|| replies.rcpts.iter().find(|r| r.is_permanent()))
                .cloned()
                .unwrap_or_else(broken_session);
            if awaiting_content {
                backend.client.abort_data();
            }
            info!(conn = %session.conn_id, id = %envelope.id, backend = %key, rcpt = %rcpt, "backend refused a recipient: {worst}");
            backend.abandon();
            return not_reusable(Err(relayed(
                &Reply::new(
                    worst.code(),
                    worst.enhanced(),
                    format!("{rcpt}: {}", worst.text()),
                ),
                &envelope.id,
            )));
        }
        if !awaiting_content {
            let reply = match data {
                Some(refusal) => {
                    info!(conn = %session.conn_id, id = %envelope.id, backend = %key, "backend refused DATA: {refusal}");
                    relayed(&refusal, &envelope.id)
                }
                // Only an empty recipient list gets here, which SMTP never sends.
                None => broken_session(),
            };
            backend.abandon();
            return not_reusable(Err(reply));
        }
        let verdict = backend.content(session, envelope, message).await;
        Forwarded {
            verdict,
            reusable: Some(backend),
        }
    }
}
