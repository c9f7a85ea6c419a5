//! What is known about a session and its transaction: the client, its
//! greeting, TLS, AUTH and the envelope so far.
//!
//! These are the facts a policy decides on and that `Received:` and XCLIENT
//! report. They are plain values, filled in by the driver (the client's
//! address and reverse-DNS name) and by the session (everything said in
//! SMTP), so that the session, its tests and its fuzzer need no network.

use std::net::{IpAddr, SocketAddr};

use crate::address::{ForwardPath, ReversePath};
use crate::command::{MailParams, RcptParams};
use crate::ip_text::IpText;

/// Result of the client reverse lookup, in the four states XCLIENT distinguishes: the backend
/// Postfix applies `reject_unknown_client_hostname` and friends to it, so a temporary DNS problem
/// must not be reported as a permanent absence of a name. The lookup itself is the driver's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientName {
    /// PTR name whose A/AAAA records contain the client address.
    Verified(String),
    /// PTR name that does not resolve back to the client address (XCLIENT then sends
    /// `NAME=[UNAVAILABLE]` and this as `REVERSE_NAME=`).
    Unverified(String),
    /// No usable PTR record (NXDOMAIN, NODATA, or a PTR target that is not a valid host name).
    Unavailable,
    /// SERVFAIL, timeout or another failure that may clear later, in the PTR lookup or in the
    /// forward confirmation.
    TempUnavailable,
}

impl ClientName {
    /// The PTR name, verified or not: what Haraka shows in `Received:` (it never confirms).
    pub fn ptr_name(&self) -> Option<&str> {
        match self {
            ClientName::Verified(name) | ClientName::Unverified(name) => Some(name),
            ClientName::Unavailable | ClientName::TempUnavailable => None,
        }
    }

    /// The forward-confirmed name, the only one XCLIENT may send as `NAME=`.
    pub fn verified_name(&self) -> Option<&str> {
        match self {
            ClientName::Verified(name) => Some(name),
            _ => None,
        }
    }
}

/// Who is connected: known before the first byte is exchanged.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The client: the socket's peer, or the address a trusted proxy's
    /// PROXY header carried. Limits, ACLs, XCLIENT and Received use this.
    pub peer: SocketAddr,
    /// Our listening socket's address (the listener decides implicit TLS
    /// and submission, even behind a proxy).
    pub local: SocketAddr,
    pub name: ClientName,
    /// The trusted proxy the connection came through (the socket's peer),
    /// when a PROXY header named the client; for the logs.
    pub proxy: Option<IpAddr>,
}

impl ClientInfo {
    /// `host [ip]` or `[ip]`, as in EHLO replies and `Received:` headers.
    pub fn remote_label(&self) -> String {
        match &self.name {
            ClientName::Verified(name) => format!("{name} [{}]", IpText(self.peer.ip())),
            _ => format!("[{}]", IpText(self.peer.ip())),
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

/// The transaction so far: sender and the recipients already accepted.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub id: String,
    pub from: ReversePath,
    pub params: MailParams,
    pub recipients: Vec<ForwardPath>,
    /// The parameters (DSN's `NOTIFY`/`ORCPT`) each accepted recipient came
    /// with, at the same index as in `recipients`. A separate list so the
    /// many readers of `recipients` stay plain addresses.
    pub recipient_params: Vec<RcptParams>,
}

impl Envelope {
    /// The parameters of the recipient at `index` (default ones if none).
    pub fn params_of(&self, index: usize) -> RcptParams {
        self.recipient_params
            .get(index)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_expose_only_what_each_state_allows() {
        let verified = ClientName::Verified("mx.example".to_string());
        let unverified = ClientName::Unverified("spoof.example".to_string());
        assert_eq!(verified.ptr_name(), Some("mx.example"));
        assert_eq!(verified.verified_name(), Some("mx.example"));
        assert_eq!(unverified.ptr_name(), Some("spoof.example"));
        assert_eq!(unverified.verified_name(), None);
        for absent in [ClientName::Unavailable, ClientName::TempUnavailable] {
            assert_eq!(absent.ptr_name(), None);
            assert_eq!(absent.verified_name(), None);
        }
    }
}
