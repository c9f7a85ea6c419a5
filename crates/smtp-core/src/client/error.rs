//! Why an SMTP client session failed, in a form fit for a log line, a
//! `Diagnostic-Code`, and the 4xx-versus-5xx decision.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use smtp_protocol::reply::Reply;

use super::tls::ClientTlsError;
use smtp_protocol::reply_parser::ReplyError;

/// The protocol step a failure happened in. It exists because the same cause
/// (a timeout, a closed connection) means different things at different steps,
/// and because bounce messages and logs must say where delivery stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Auth,
    Xclient,
    MailFrom,
    RcptTo,
    /// The `DATA` command and its `354`.
    Data,
    /// Sending the message content.
    DataBlock,
    /// Waiting for the reply to the final `.`.
    DataEnd,
    Rset,
    Noop,
    Quit,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "connect",
            Step::Greeting => "greeting",
            Step::Ehlo => "EHLO",
            Step::Helo => "HELO",
            Step::StartTls => "STARTTLS",
            Step::TlsHandshake => "TLS handshake",
            Step::Auth => "AUTH",
            Step::Xclient => "XCLIENT",
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::DataBlock => "message content",
            Step::DataEnd => "end of data",
            Step::Rset => "RSET",
            Step::Noop => "NOOP",
            Step::Quit => "QUIT",
        })
    }
}

/// What went wrong; see [`ClientError`] for the context every kind comes with.
#[derive(Debug, thiserror::Error)]
pub enum ClientErrorKind {
    #[error("connection failed: {0}")]
    Connect(#[source] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(#[source] ReplyError),
    /// The server answered, but not with a code that fits the step (a `250`
    /// to DATA, a `3xx` to RCPT, an `AUTH` challenge we did not expect). A
    /// `2xx` mistaken for success would lose mail, so this is never guessed at.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(Reply),
    /// The server refused a step the session cannot go on without: a non-220
    /// greeting, EHLO and HELO both refused, STARTTLS refused when TLS is
    /// required, AUTH failed.
    #[error("rejected: {0}")]
    Rejected(Reply),
    /// The server sent more octets right after its `220` to STARTTLS, before the
    /// handshake: an attempt to inject replies into the TLS session.
    #[error("data received before the TLS handshake (possible injection)")]
    PrematureTlsData,
    #[error("STARTTLS is required but not offered")]
    TlsNotOffered,
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] io::Error),
    #[error("TLS setup failed: {0}")]
    TlsSetup(#[source] ClientTlsError),
    /// AUTH is configured but the server offers no mechanism we can use.
    #[error("no usable AUTH mechanism offered (offered: {})", offered_list(.offered))]
    AuthNotOffered { offered: Vec<String> },
    /// The message needs SMTPUTF8 (RFC 6531) and the server does not offer it.
    #[error("SMTPUTF8 is required but not offered")]
    SmtpUtf8NotOffered,
    /// The message carries REQUIRETLS (RFC 8689) and the server does not
    /// offer it after STARTTLS (or the session is not encrypted).
    #[error("REQUIRETLS is required but not offered after STARTTLS")]
    RequireTlsNotOffered,
    /// Reading the message to send failed (a spool file), not the connection.
    #[error("cannot read the message: {0}")]
    MessageRead(#[source] io::Error),
    /// An earlier error left the session out of step with the server.
    #[error("session unusable after an earlier error")]
    Unusable,
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "none".to_owned()
    } else {
        offered.join(" ")
    }
}

/// A failed client operation: what went wrong, with whom, and at which step.
///
/// It exists so that one value carries everything a caller needs: its
/// `Display` is a complete log line (`SMTP client 192.0.2.1:25: RCPT TO: timed
/// out`), [`reply`](Self::reply) gives the server's own words for a
/// `Diagnostic-Code`, and [`is_transient`](Self::is_transient) decides between
/// retrying (4xx) and bouncing (5xx).
#[derive(Debug, thiserror::Error)]
#[error("SMTP client {peer}: {step}: {kind}")]
pub struct ClientError {
    peer: SocketAddr,
    step: Step,
    #[source]
    kind: ClientErrorKind,
}

impl ClientError {
    pub(crate) fn new(peer: SocketAddr, step: Step, kind: ClientErrorKind) -> Self {
        Self { peer, step, kind }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn kind(&self) -> &ClientErrorKind {
        &self.kind
    }

    /// The server's reply, when the failure is one.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.kind {
            ClientErrorKind::Rejected(reply) | ClientErrorKind::UnexpectedReply(reply) => {
                Some(reply)
            }
            _ => None,
        }
    }

    /// Whether trying again later (or another host) may succeed.
    ///
    /// Only a permanent (5xx) refusal from the server, or a message that needs
    /// SMTPUTF8 or REQUIRETLS where none is offered, is permanent. AUTH failures are treated
    /// as transient whatever their code, as Postfix does by default
    /// (`smtp_sasl_auth_soft_bounce`): a wrong smart-host password is the
    /// operator's to fix, not a reason to bounce every message.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            ClientErrorKind::Rejected(reply) => self.step == Step::Auth || !reply.is_permanent(),
            ClientErrorKind::SmtpUtf8NotOffered | ClientErrorKind::RequireTlsNotOffered => false,
            _ => true,
        }
    }

    /// Whether the connection may still be used (the caller may e.g. send
    /// QUIT). Only refusals that leave the dialogue in step qualify.
    pub(crate) fn leaves_session_usable(&self) -> bool {
        matches!(
            self.kind,
            ClientErrorKind::Rejected(_)
                | ClientErrorKind::AuthNotOffered { .. }
                | ClientErrorKind::SmtpUtf8NotOffered
                | ClientErrorKind::RequireTlsNotOffered
                | ClientErrorKind::TlsNotOffered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_protocol::reply::EnhancedCode;

    fn error(step: Step, kind: ClientErrorKind) -> ClientError {
        ClientError::new("192.0.2.1:25".parse().unwrap(), step, kind)
    }

    #[test]
    fn display_is_a_complete_log_line() {
        let refused = Reply::new(554, Some(EnhancedCode::new(5, 7, 1)), "go away");
        let cases = [
            (
                error(Step::Greeting, ClientErrorKind::Rejected(refused.clone())),
                "SMTP client 192.0.2.1:25: greeting: rejected: 554 5.7.1 go away",
            ),
            (
                error(Step::RcptTo, ClientErrorKind::Timeout),
                "SMTP client 192.0.2.1:25: RCPT TO: timed out",
            ),
            (
                error(
                    Step::Auth,
                    ClientErrorKind::AuthNotOffered { offered: vec![] },
                ),
                "SMTP client 192.0.2.1:25: AUTH: no usable AUTH mechanism offered (offered: none)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn transient_or_permanent() {
        let permanent = Reply::new(554, None, "no");
        let temporary = Reply::new(421, None, "busy");
        let cases = [
            (
                Step::Greeting,
                ClientErrorKind::Rejected(permanent.clone()),
                false,
            ),
            (Step::Greeting, ClientErrorKind::Rejected(temporary), true),
            (Step::Auth, ClientErrorKind::Rejected(permanent), true),
            (Step::MailFrom, ClientErrorKind::SmtpUtf8NotOffered, false),
            (Step::Connect, ClientErrorKind::Timeout, true),
            (Step::Data, ClientErrorKind::Closed, true),
            (Step::StartTls, ClientErrorKind::TlsNotOffered, true),
        ];
        for (step, kind, transient) in cases {
            let error = error(step, kind);
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }
}
