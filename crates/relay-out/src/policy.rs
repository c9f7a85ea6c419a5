//! relay-out's decisions: who may relay, and taking a message into the queue.

use std::sync::Arc;

use smtp_core::address::ForwardPath;
use smtp_core::policy::{ClientInfo, ConnectionPolicy, Envelope, MailPolicy, SessionInfo, Verdict};
use smtp_core::reply::{EnhancedCode, Reply};
use tracing::info;

use crate::acl::RelayAcl;

/// relay-out's [`MailPolicy`].
#[derive(Debug)]
pub struct RelayOut {
    acl: Arc<RelayAcl>,
}

impl RelayOut {
    pub fn new(acl: RelayAcl) -> Self {
        Self { acl: Arc::new(acl) }
    }
}

/// Per-connection state: whether this client may relay, decided once.
#[derive(Debug)]
pub struct RelayOutConnection {
    relaying: bool,
}

impl MailPolicy for RelayOut {
    type Connection = RelayOutConnection;

    fn connect(&self, client: &ClientInfo) -> RelayOutConnection {
        RelayOutConnection {
            relaying: self.acl.allows(client.peer.ip()),
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
        if self.relaying {
            return Verdict::accept();
        }
        info!(conn = %session.conn_id, client = %session.client.peer.ip(), rcpt = %rcpt, "relay refused: client not in relay_acl_allow");
        Verdict::Reject(Reply::new(
            550,
            Some(EnhancedCode::new(5, 7, 1)),
            "Relay access denied",
        ))
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
            "Queueing is not available yet, try again later",
        ))
    }
}
