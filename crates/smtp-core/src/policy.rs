//! The extension point through which a binary decides what happens to mail.
//!
//! The session state machine knows SMTP; it does not know whether a recipient
//! is ours (relay-in's `host_list`), whether a client may relay (relay-out's
//! ACL), or where a finished message goes (a backend, a disk queue). Those
//! decisions are asynchronous (a backend round trip, an fsync), so the driver
//! asks a [`ConnectionPolicy`] and feeds the [`Verdict`] back to the session.
//! The values exchanged ([`SessionInfo`], [`Envelope`], [`Verdict`], …) are
//! the protocol crate's; the asynchronous traits are the runtime's, here.

use std::future::Future;

use smtp_protocol::address::{ForwardPath, ReversePath};
use smtp_protocol::command::{MailParams, RcptParams};
use smtp_protocol::sasl::{Credentials, SaslMechanism};
use smtp_protocol::session::{AuthVerdict, ClientInfo, Envelope, SessionInfo, Verdict};

use crate::message::Message;

/// Creates a [`ConnectionPolicy`] per client connection.
pub trait MailPolicy: Send + Sync + 'static {
    type Connection: ConnectionPolicy;

    fn connect(&self, client: &ClientInfo) -> Self::Connection;

    /// Whether `client` is one the policy trusts, such as relay-out's home
    /// server in `relay_acl_allow`: it is greeted at once, without the
    /// pregreet wait (`early_talker.ini` `pause`; Haraka's early_talker skips
    /// relaying clients too), and is not held to the per-address connection
    /// cap nor to `[rate_conn]` (as Postfix exempts `$mynetworks` through
    /// `smtpd_client_event_limit_exceptions`): all of a home server's mail
    /// comes from one address. The total cap still applies.
    fn trusts(&self, _client: std::net::IpAddr) -> bool {
        false
    }

    /// Whether REQUIRETLS (RFC 8689) is offered after STARTTLS: only a
    /// policy whose onward delivery keeps the promise (relay-out's courier)
    /// may say yes; relay-in forwards live and does not.
    fn offers_requiretls(&self) -> bool {
        false
    }
}

/// Decisions for one connection. It may hold per-connection state, such as a
/// live backend session opened at MAIL FROM (relay-in's `live` mode).
pub trait ConnectionPolicy: Send + 'static {
    fn mail_from(
        &mut self,
        _session: &SessionInfo,
        _from: &ReversePath,
        _params: &MailParams,
    ) -> impl Future<Output = Verdict> + Send {
        async { Verdict::accept() }
    }

    /// `params` are the RCPT's own (DSN's `NOTIFY`, `ORCPT`), for a policy
    /// that passes the recipient on at once (relay-in's live mode).
    fn rcpt_to(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        rcpt: &ForwardPath,
        params: &RcptParams,
    ) -> impl Future<Output = Verdict> + Send;

    /// The client's DATA was accepted (the `354` is queued): `envelope` is
    /// final and the message is on its way. A policy may start passing the
    /// envelope on meanwhile, as work for [`Self::poll_background`]
    /// (relay-in sends its backend MAIL, RCPT and DATA, so that the client's
    /// final dot waits for one round trip instead of two). Whatever it
    /// starts belongs to this transaction: [`Self::message`] finishes it, a
    /// [`Self::reset`] or the next transaction abandons it.
    fn data_started(&mut self, _session: &SessionInfo, _envelope: &Envelope) {}

    /// Takes responsibility for a complete message (our `Received:` header
    /// first). Answering `Accept` means the message is safe elsewhere: RFC 5321
    /// §6.1 forbids losing it afterwards.
    fn message(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        message: Message,
    ) -> impl Future<Output = Verdict> + Send;

    /// SASL mechanisms to offer in EHLO; empty (the default) offers no AUTH.
    /// Asked when the session starts and again after STARTTLS, so a policy
    /// can offer AUTH only over TLS.
    fn auth_mechanisms(&self, _session: &SessionInfo) -> Vec<SaslMechanism> {
        Vec::new()
    }

    /// Checks AUTH credentials. Never log the password.
    fn authenticate(
        &mut self,
        _session: &SessionInfo,
        _credentials: &Credentials,
    ) -> impl Future<Output = AuthVerdict> + Send {
        async { AuthVerdict::Rejected }
    }

    /// The transaction was abandoned (RSET, a new EHLO, STARTTLS, QUIT or a
    /// dropped connection): release anything held for it.
    fn reset(&mut self) {}

    /// Drives work the policy started for this connection and that goes on
    /// while the client talks, such as relay-in's early backend open: the
    /// driver polls it whenever it waits for the client. Such work needs no
    /// task of its own, and starts at once: a task spawned from a
    /// connection's task waited on the same worker until that connection had
    /// nothing to read, which a prompt client delays to its final dot
    /// (BENCHMARKS.md, issue 19). `Ready` when there is nothing (left) to do.
    fn poll_background(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }
}
