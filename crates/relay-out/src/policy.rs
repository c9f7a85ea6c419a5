//! relay-out's decisions: who may relay, and taking a message into the
//! queue (durable intake).
//!
//! A message is answered `250 2.0.0 Queued as <id>` only after the spool
//! returned from storing it, i.e. after its data and envelope files and the
//! directory are fsynced; any storage failure (full disk included) answers
//! `451 4.3.0`, so the sender keeps the message and retries. (Haraka answers
//! a permanent 550 there, bouncing mail for a local fault.)
//!
//! Loop protection at intake is the session's: a message with more than
//! connection.ini `max_received` (100) `Received:` headers is refused with
//! `554 5.4.6` before it reaches [`ConnectionPolicy::message`].

use std::sync::Arc;
use std::time::SystemTime;

use smtp_core::address::{ForwardPath, ReversePath};
use smtp_core::command::Body;
use smtp_core::message::Message;
use smtp_core::policy::{ClientInfo, ConnectionPolicy, Envelope, MailPolicy, SessionInfo, Verdict};
use smtp_core::reply::{EnhancedCode, Reply};
use tracing::{error, info};

use crate::acl::RelayAcl;
use crate::delivery::RunnerHandle;
use crate::queue::{self, QueueId, RecipientState, Spool, SpoolError};

/// relay-out's [`MailPolicy`].
#[derive(Debug)]
pub struct RelayOut {
    acl: Arc<RelayAcl>,
    intake: Arc<Intake>,
}

/// Where accepted messages go: the spool, then the runner's timetable.
#[derive(Debug)]
pub struct Intake {
    pub spool: Spool,
    pub runner: RunnerHandle,
}

impl RelayOut {
    pub fn new(acl: RelayAcl, intake: Intake) -> Self {
        Self {
            acl: Arc::new(acl),
            intake: Arc::new(intake),
        }
    }
}

/// Per-connection state: whether this client may relay, decided once.
#[derive(Debug)]
pub struct RelayOutConnection {
    relaying: bool,
    intake: Arc<Intake>,
}

impl MailPolicy for RelayOut {
    type Connection = RelayOutConnection;

    fn connect(&self, client: &ClientInfo) -> RelayOutConnection {
        RelayOutConnection {
            relaying: self.acl.allows(client.peer.ip()),
            intake: Arc::clone(&self.intake),
        }
    }
}

impl ConnectionPolicy for RelayOutConnection {
    async fn rcpt_to(
        &mut self,
        session: &SessionInfo,
        _envelope: &Envelope,
        rcpt: &ForwardPath,
    ) -> Verdict {
        if !self.relaying {
            info!(conn = %session.conn_id, client = %session.client.peer.ip(), rcpt = %rcpt, "relay refused: client not in relay_acl_allow");
            return Verdict::Reject(Reply::new(
                550,
                Some(EnhancedCode::new(5, 7, 1)),
                "Relay access denied",
            ));
        }
        if rcpt.mailbox().is_none() {
            // relay-out has no local mailboxes: a bare <postmaster> has
            // nowhere to go.
            return Verdict::Reject(Reply::new(
                550,
                Some(EnhancedCode::new(5, 1, 1)),
                "relay-out only relays to addresses with a domain",
            ));
        }
        Verdict::accept()
    }

    async fn message(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        message: Message,
    ) -> Verdict {
        let queued = queued_envelope(session, envelope, SystemTime::now());
        let id = queued.id.clone();
        let spool = self.intake.spool.clone();
        let size = message.len();
        // Large messages arrive in a temporary file: copied into the spool
        // from there, never held in memory whole.
        let stored = tokio::task::spawn_blocking(move || {
            let mut reader = message.reader().map_err(|source| SpoolError::Io {
                operation: "read back the received message",
                path: spool.dir().to_path_buf(),
                source,
            })?;
            spool.store_from(&queued, &mut reader).map(|_| queued)
        })
        .await;
        match stored {
            Ok(Ok(queued)) => {
                info!(
                    conn = %session.conn_id,
                    txn = %envelope.id,
                    queue_id = %id,
                    from = %envelope.from,
                    rcpts = queued.recipients.len(),
                    size,
                    "queued"
                );
                self.intake.runner.queued(queued);
                Verdict::Accept(Some(Reply::new(
                    250,
                    Some(EnhancedCode::new(2, 0, 0)),
                    format!("Queued as {id}"),
                )))
            }
            Ok(Err(failure)) => {
                error!(conn = %session.conn_id, txn = %envelope.id, error = %failure, "cannot queue the message");
                storage_failure()
            }
            Err(failure) => {
                error!(conn = %session.conn_id, txn = %envelope.id, error = %failure, "cannot queue the message");
                storage_failure()
            }
        }
    }
}

/// The queue envelope for an accepted transaction, every recipient due now.
fn queued_envelope(session: &SessionInfo, envelope: &Envelope, now: SystemTime) -> queue::Envelope {
    let sender = match &envelope.from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(mailbox) => mailbox.to_string(),
    };
    let helo = session
        .greeting
        .as_ref()
        .map_or("-", |greeting| greeting.name.as_str());
    queue::Envelope {
        id: QueueId::generate_at(now),
        arrival: now,
        sender,
        recipients: envelope
            .recipients
            .iter()
            .filter_map(ForwardPath::mailbox)
            .map(|mailbox| RecipientState::new(mailbox.to_string(), now))
            .collect(),
        client: Some(format!("{} helo={helo}", session.client.peer.ip())),
        smtputf8: envelope.params.smtputf8,
        eight_bit_mime: envelope.params.body == Some(Body::EightBitMime),
    }
}

fn storage_failure() -> Verdict {
    Verdict::Reject(Reply::new(
        451,
        Some(EnhancedCode::new(4, 3, 0)),
        "Cannot queue the message now, try again later",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_core::address::{parse_forward_path, parse_reverse_path};
    use smtp_core::command::MailParams;
    use smtp_core::dns::ClientName;
    use smtp_core::policy::{ClientInfo, Greeting, HeloVerb};

    fn session() -> SessionInfo {
        SessionInfo {
            conn_id: "C1".into(),
            client: ClientInfo {
                peer: "10.0.0.2:40000".parse().unwrap(),
                local: "10.0.0.1:2526".parse().unwrap(),
                name: ClientName::Unavailable,
            },
            greeting: Some(Greeting {
                verb: HeloVerb::Ehlo,
                name: "mailcow.lan".into(),
            }),
            tls: None,
            authenticated: None,
        }
    }

    fn transaction(from: &str, rcpts: &[&str], params: MailParams) -> Envelope {
        Envelope {
            id: "C1.1".into(),
            from: parse_reverse_path(from).unwrap(),
            params,
            recipients: rcpts
                .iter()
                .map(|r| parse_forward_path(r).unwrap())
                .collect(),
        }
    }

    #[test]
    fn the_queue_envelope_keeps_the_transaction_in_wire_form() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let params = MailParams {
            body: Some(Body::EightBitMime),
            smtputf8: true,
            ..MailParams::default()
        };
        let txn = transaction(
            "<Alice@Example.ORG>",
            &["<bob@x.test>", "<Carol@Y.test>"],
            params,
        );
        let queued = queued_envelope(&session(), &txn, now);
        assert_eq!(queued.sender, "Alice@Example.ORG");
        let rcpts: Vec<&str> = queued
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(rcpts, ["bob@x.test", "Carol@Y.test"]);
        assert!(
            queued
                .recipients
                .iter()
                .all(|r| r.next_attempt == Some(now))
        );
        assert_eq!(queued.arrival, now);
        assert_eq!(queued.client.as_deref(), Some("10.0.0.2 helo=mailcow.lan"));
        assert!(queued.smtputf8 && queued.eight_bit_mime);

        let bounce = queued_envelope(
            &session(),
            &transaction("<>", &["<a@b.test>"], MailParams::default()),
            now,
        );
        assert_eq!(bounce.sender, "", "the null sender stays null");
        assert!(!bounce.smtputf8 && !bounce.eight_bit_mime);
    }
}
