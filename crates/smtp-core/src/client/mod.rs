//! The SMTP client both relays use: relay-in to forward accepted mail to the
//! backend Postfix (with XCLIENT), relay-out to deliver to MX hosts and smart
//! hosts.
//!
//! The protocol pieces are sans-IO and unit-tested without sockets:
//! [`ReplyParser`](smtp_protocol::reply_parser::ReplyParser) (octets →
//! [`Reply`], in the protocol crate), [`Capabilities`] (the EHLO reply), [`xclient_commands`] and the AUTH
//! encodings. [`SmtpClient`] is the thin tokio driver on top: one connection,
//! every step bounded by its RFC 5321 §4.5.3.2 timeout.
//!
//! Negative replies to MAIL, RCPT and DATA are values, not errors: what to do
//! with a `450` or a `550` is the caller's decision. [`ClientError`] is for
//! everything that ends the session or keeps it from starting.

mod auth;
mod capabilities;
mod content;
mod error;
mod session;
mod tls;
mod transport;
mod xclient;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

use smtp_protocol::address::ForwardPath;
use smtp_protocol::dsn_params::{Envid, Notify, Orcpt, Ret};
use smtp_protocol::reply::Reply;

pub use auth::{AuthMechanism, Credentials};
pub use capabilities::Capabilities;
pub use content::MessageSource;
pub use error::{ClientError, ClientErrorKind, Step};
pub use session::SmtpClient;
pub use tls::{CertificateCheck, ClientTls, ClientTlsError, TlsMode, TlsVerify, root_store};
pub use xclient::{MAX_XCLIENT_LINE, XclientAttribute, XclientAttributes, xclient_commands};

/// How long the client waits at each step.
///
/// Separate values exist because RFC 5321 §4.5.3.2 gives each step its own
/// minimum: the server may legitimately take ten minutes to accept the final
/// `.` (content scanning) but should answer RCPT much sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTimeouts {
    /// The `220` banner.
    pub greeting: Duration,
    /// EHLO/HELO, STARTTLS and its handshake, AUTH, XCLIENT, RSET, NOOP.
    pub command: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    /// The `354` to DATA.
    pub data_init: Duration,
    /// Each write of message content.
    pub data_block: Duration,
    /// The reply to the final `.`.
    pub data_end: Duration,
}

impl Default for StepTimeouts {
    /// The RFC 5321 §4.5.3.2 values.
    fn default() -> Self {
        const MINUTE: u64 = 60;
        StepTimeouts {
            greeting: Duration::from_secs(5 * MINUTE),
            command: Duration::from_secs(5 * MINUTE),
            mail: Duration::from_secs(5 * MINUTE),
            rcpt: Duration::from_secs(5 * MINUTE),
            data_init: Duration::from_secs(2 * MINUTE),
            data_block: Duration::from_secs(3 * MINUTE),
            data_end: Duration::from_secs(10 * MINUTE),
        }
    }
}

impl StepTimeouts {
    /// The same limit for every step, e.g. relay-in's backend `timeout`,
    /// which must stay well inside its own client's patience.
    pub fn uniform(timeout: Duration) -> Self {
        StepTimeouts {
            greeting: timeout,
            command: timeout,
            mail: timeout,
            rcpt: timeout,
            data_init: timeout,
            data_block: timeout,
            data_end: timeout,
        }
    }
}

/// Everything that shapes a client session, fixed for a whole connection.
///
/// It exists so that relay-in (one backend) and relay-out (many destinations,
/// each with its own TLS and AUTH needs) can build one value per destination
/// at startup and open connections from it cheaply.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our EHLO name (Haraka's `me`).
    pub helo_name: String,
    pub connect_timeout: Duration,
    pub timeouts: StepTimeouts,
    pub tls: ClientTls,
    /// Used by [`SmtpClient::authenticate`]; `None` means no AUTH.
    pub auth: Option<Credentials>,
    /// Local address to connect from (Haraka's `bind`).
    pub source_address: Option<IpAddr>,
    /// Speak LMTP (RFC 2033): LHLO, and a reply per recipient after the
    /// data (Haraka's `using_lmtp`).
    pub lmtp: bool,
}

impl ClientConfig {
    /// No TLS, no AUTH, RFC timeouts, and the 30 s connect timeout Haraka uses.
    pub fn new(helo_name: impl Into<String>) -> Self {
        ClientConfig {
            helo_name: helo_name.into(),
            connect_timeout: Duration::from_secs(30),
            timeouts: StepTimeouts::default(),
            tls: ClientTls::off(),
            auth: None,
            source_address: None,
            lmtp: false,
        }
    }
}

/// Optional MAIL FROM parameters; each is only sent when the server
/// advertised the extension.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailOptions {
    /// The message size, for `SIZE=` (RFC 1870).
    pub size: Option<u64>,
    /// The message needs SMTPUTF8 (a UTF-8 address or header). Sent as the
    /// `SMTPUTF8` parameter; a server without it gets nothing and the call
    /// fails with [`ClientErrorKind::SmtpUtf8NotOffered`].
    pub smtputf8: bool,
    /// The sender declared `BODY=8BITMIME` (RFC 6152). Sent on when the
    /// server offers 8BITMIME; to a server that does not, the message goes
    /// as it is, without the parameter, as Postfix does when it does not
    /// convert and Haraka always does: every server in use takes 8-bit data,
    /// and a 7-bit conversion would break DKIM signatures.
    pub eight_bit_mime: bool,
    /// DSN's `RET=` (RFC 3461), sent when the server offers DSN.
    pub ret: Option<Ret>,
    /// DSN's `ENVID=`, sent when the server offers DSN.
    pub envid: Option<Envid>,
    /// RFC 8689 `REQUIRETLS`: sent only in a TLS session with a server that
    /// offers it; otherwise nothing is sent and the call fails with
    /// [`ClientErrorKind::RequireTlsNotOffered`]. Whether the session's TLS
    /// was authenticated enough is the caller's decision (its TLS policy).
    pub requiretls: bool,
}

/// One recipient of an envelope and its DSN parameters (`NOTIFY`, `ORCPT`),
/// which are sent only to a server that offers DSN.
///
/// A trait so callers with plain addresses pass `&[ForwardPath]` as before,
/// and callers carrying DSN requests pass [`DsnRecipient`]s.
pub trait EnvelopeRecipient {
    fn path(&self) -> &ForwardPath;
    fn notify(&self) -> Option<Notify> {
        None
    }
    fn orcpt(&self) -> Option<&Orcpt> {
        None
    }

    /// The `RCPT TO:` line, with the DSN parameters when `dsn` is offered.
    fn rcpt_line(&self, dsn: bool) -> String {
        let mut line = format!("RCPT TO:{}", self.path());
        if dsn {
            if let Some(notify) = self.notify() {
                line.push_str(&format!(" NOTIFY={}", notify.to_param()));
            }
            if let Some(orcpt) = self.orcpt() {
                line.push_str(&format!(" ORCPT={orcpt}"));
            }
        }
        line
    }
}

impl EnvelopeRecipient for ForwardPath {
    fn path(&self) -> &ForwardPath {
        self
    }
}

/// A recipient with the DSN parameters its sender gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    pub path: ForwardPath,
    pub notify: Option<Notify>,
    pub orcpt: Option<Orcpt>,
}

impl EnvelopeRecipient for DsnRecipient {
    fn path(&self) -> &ForwardPath {
        &self.path
    }
    fn notify(&self) -> Option<Notify> {
        self.notify
    }
    fn orcpt(&self) -> Option<&Orcpt> {
        self.orcpt.as_ref()
    }
}

/// The server's answers to one envelope, in command order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeReplies {
    pub mail: Reply,
    /// One reply per recipient, in the order given. Empty when MAIL was
    /// refused (any pipelined RCPT replies are then meaningless `503`s).
    pub rcpts: Vec<Reply>,
}

impl EnvelopeReplies {
    /// Whether at least one recipient was accepted, i.e. DATA is worth sending.
    pub fn any_accepted(&self) -> bool {
        self.mail.is_positive() && self.rcpts.iter().any(Reply::is_positive)
    }
}

/// What came of an XCLIENT attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XclientOutcome {
    /// All XCLIENT commands got `2xx` and we greeted again as the client.
    Accepted,
    /// The server does not offer XCLIENT (or none of our attributes); nothing
    /// was sent, so the backend sees relay-in as the client.
    NotOffered,
    /// The server refused (`550` not authorised, `501`, `421`...). Attributes
    /// of an earlier command of a split XCLIENT may already be in effect.
    Refused(Reply),
}
