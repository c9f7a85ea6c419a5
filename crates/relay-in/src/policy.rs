//! relay-in's decisions: which recipients to accept, and what to do with a
//! finished message.

use std::sync::Arc;

use smtp_core::address::ForwardPath;
use smtp_core::policy::{ClientInfo, ConnectionPolicy, Envelope, MailPolicy, SessionInfo, Verdict};
use smtp_core::reply::{EnhancedCode, Reply};
use tracing::info;

use crate::config::RelayInSettings;
use crate::recipients;

/// relay-in's [`MailPolicy`]: hands each connection the shared settings.
#[derive(Debug)]
pub struct RelayIn {
    shared: Arc<RelayInShared>,
}

impl RelayIn {
    pub fn new(settings: RelayInSettings) -> Self {
        Self {
            shared: Arc::new(RelayInShared { settings }),
        }
    }
}

/// Per-connection state.
#[derive(Debug)]
pub struct RelayInConnection {
    shared: Arc<RelayInShared>,
}

/// What connections need from [`RelayIn`], behind one `Arc`.
#[derive(Debug)]
struct RelayInShared {
    settings: RelayInSettings,
}

impl MailPolicy for RelayIn {
    type Connection = RelayInConnection;

    fn connect(&self, _client: &ClientInfo) -> RelayInConnection {
        RelayInConnection {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Haraka's text, so existing log filters keep working.
fn not_ours(rcpt: &ForwardPath) -> Reply {
    Reply::new(
        550,
        Some(EnhancedCode::new(5, 7, 1)),
        format!("I cannot deliver mail for {rcpt}"),
    )
}

impl ConnectionPolicy for RelayInConnection {
    async fn rcpt_to(
        &mut self,
        session: &SessionInfo,
        _envelope: &Envelope,
        rcpt: &ForwardPath,
    ) -> Verdict {
        match recipients::check(&self.shared.settings.local_domains, rcpt) {
            Ok(()) => Verdict::accept(),
            Err(refusal) => {
                info!(conn = %session.conn_id, client = %session.client.peer.ip(), rcpt = %rcpt, reason = refusal.reason(), "recipient refused");
                Verdict::Reject(not_ours(rcpt))
            }
        }
    }

    async fn message(
        &mut self,
        _session: &SessionInfo,
        _envelope: &Envelope,
        _message: Vec<u8>,
    ) -> Verdict {
        Verdict::Reject(Reply::new(
            451,
            Some(EnhancedCode::new(4, 3, 0)),
            "Forwarding is not available yet, try again later",
        ))
    }
}
