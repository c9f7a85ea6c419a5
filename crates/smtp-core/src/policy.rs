//! The extension point through which a binary decides what happens to mail.
//!
//! The session state machine knows SMTP; it does not know whether a recipient
//! is ours (relay-in's `host_list`), whether a client may relay (relay-out's
//! ACL), or where a finished message goes (a backend, a disk queue). Those
//! decisions are asynchronous (a backend round trip, an fsync), so the driver
//! asks a [`ConnectionPolicy`] and feeds the [`Verdict`] back to the session.

use std::future::Future;
use std::net::SocketAddr;

use crate::dns::ClientName;
use crate::message::Message;
use smtp_protocol::address::{ForwardPath, ReversePath};
use smtp_protocol::command::MailParams;
use smtp_protocol::reply::Reply;
use smtp_protocol::sasl::{Credentials, SaslMechanism};

/// What a policy says about a sender, a recipient or a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; `Some` replaces the default positive reply (e.g. a backend's
    /// "250 2.0.0 Ok: queued as …", or relay-out's "Queued as <id>").
    Accept(Option<Reply>),
    /// Refuse with this reply (4xx or 5xx).
    Reject(Reply),
}

impl Verdict {
    pub fn accept() -> Self {
        Verdict::Accept(None)
    }
}

/// Who is connected: known before the first byte is exchanged.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub name: ClientName,
}

impl ClientInfo {
    /// `host [ip]` or `[ip]`, as in EHLO replies and `Received:` headers.
    pub fn remote_label(&self) -> String {
        match &self.name {
            ClientName::Verified(name) => format!("{name} [{}]", self.peer.ip()),
            _ => format!("[{}]", self.peer.ip()),
        }
    }
}

/// Whether the client greeted with HELO or EHLO; XCLIENT forwards it as PROTO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeloVerb {
    Helo,
    Ehlo,
}

/// The client's greeting, kept for `Received:` and XCLIENT HELO=.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub verb: HeloVerb,
    pub name: String,
}

/// The negotiated TLS parameters, for `Received:` and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    pub protocol: String,
    pub cipher: String,
}

/// What a policy may know about the session when it decides.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub conn_id: String,
    pub client: ClientInfo,
    pub greeting: Option<Greeting>,
    pub tls: Option<TlsInfo>,
    /// The user name a successful AUTH proved (RFC 4954).
    pub authenticated: Option<String>,
}

/// What a policy says about AUTH credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVerdict {
    /// `235 2.7.0`
    Accepted,
    /// `535 5.7.8`
    Rejected,
    /// `454 4.7.0`: the user store could not be read, or the client is
    /// rate-limited; try again later.
    TemporaryFailure,
}

/// The transaction so far: sender and the recipients already accepted.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub id: String,
    pub from: ReversePath,
    pub params: MailParams,
    pub recipients: Vec<ForwardPath>,
}

/// Creates a [`ConnectionPolicy`] per client connection.
pub trait MailPolicy: Send + Sync + 'static {
    type Connection: ConnectionPolicy;

    fn connect(&self, client: &ClientInfo) -> Self::Connection;
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

    fn rcpt_to(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        rcpt: &ForwardPath,
    ) -> impl Future<Output = Verdict> + Send;

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
}
