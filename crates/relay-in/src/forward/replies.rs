//! The replies relay-in gives a sender on the backend's behalf: one place
//! for each text, so logs, tests and docs quote the same words.

use smtp_core::client::{ClientError, ClientErrorKind, Step};
use smtp_protocol::reply::{EnhancedCode, Reply};

pub(super) fn reply(code: u16, enhanced: (u8, u16, u16), text: &str) -> Reply {
    let (c, s, d) = enhanced;
    Reply::new(code, Some(EnhancedCode::new(c, s, d)), text.to_string())
}

/// The backend could not be reached or dropped us: the sender retries.
pub fn unavailable() -> Reply {
    reply(
        451,
        (4, 4, 1),
        "Backend mail server unavailable, try again later",
    )
}

pub(super) fn broken_session() -> Reply {
    reply(
        451,
        (4, 4, 2),
        "Connection to the backend mail server failed, try again later",
    )
}

pub(super) fn xclient_missing() -> Reply {
    reply(
        451,
        (4, 7, 0),
        "Backend does not accept the client's identity (XCLIENT), try again later",
    )
}

/// `check_sender`: a sender in a domain of ours, from a client on the
/// internet (relay-in relays for nobody); Haraka's text.
pub fn spoofed_sender() -> Reply {
    reply(550, (5, 7, 1), "Spoofed MAIL FROM")
}

pub fn split_transaction() -> Reply {
    reply(451, (4, 3, 0), "Split transaction, retry soon")
}

/// A message that needs SMTPUTF8 (RFC 6531) cannot go to a backend that
/// does not offer it, and retrying will not change that: RFC 6531 §3.2 has
/// the relay refuse it rather than pass it on downgraded.
pub fn backend_lacks_smtputf8() -> Reply {
    reply(
        553,
        (5, 6, 7),
        "The mail server behind this relay does not take SMTPUTF8 mail",
    )
}

/// Maps a client-side failure to the sender's reply. No error but one ever
/// becomes a positive or permanent reply, whatever its step: a failure
/// between us and our own backend is never the sender's fault. The one is a
/// message that needs SMTPUTF8 where the backend does not offer it.
pub fn failure_reply(error: &ClientError) -> Reply {
    match (error.step(), error.kind()) {
        (_, ClientErrorKind::SmtpUtf8NotOffered) => backend_lacks_smtputf8(),
        (Step::Connect, _) | (_, ClientErrorKind::Connect(_)) => unavailable(),
        (Step::Greeting, _) => unavailable(),
        _ => broken_session(),
    }
}

/// A backend reply passed to the sender, with our transaction id appended
/// so one grep finds both sides (Haraka does the same).
pub(super) fn relayed(backend: &Reply, txn_id: &str) -> Reply {
    Reply::new(
        backend.code(),
        backend.enhanced(),
        format!("{} ({txn_id})", backend.text()),
    )
}
