//! The DATA phase of SMTP: turning the octets a client sends after `DATA` into a
//! message (server side, [`DataDecoder`]) and a message into such octets (client
//! side, [`dot_stuff`] / [`DotStuffer`]).
//!
//! Both directions are sans-IO so they can be tested byte by byte. The one
//! security-critical fact shared by both halves: only a literal
//! `<CR><LF>.<CR><LF>` ends DATA (RFC 5321 §4.1.1.4). Any laxer reading on one
//! hop and a stricter one on the next is what SMTP smuggling exploits, so the
//! decoder accepts nothing else as the end and the encoder never emits any
//! lookalike (`<LF>.<LF>`, `<LF>.<CR><LF>`, ...) inside a message.

mod decoder;
mod scan;
mod stuffing;

#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod tests;

use std::str::FromStr;

pub use decoder::DataDecoder;
pub use stuffing::{DotStuffer, Runs, dot_stuff};

/// What the server does with a bare CR or bare LF inside DATA. This exists
/// because such line endings are the raw material of SMTP smuggling: the
/// safe default refuses the message, while `Normalize` is for sites that must
/// accept sloppy senders (like Postfix `smtpd_forbid_bare_newline=normalize`).
/// Configured as `bare_newline=reject|normalize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareNewlinePolicy {
    /// Read to the real end of DATA, then refuse the whole message (550 5.5.2).
    #[default]
    Reject,
    /// Accept the message, writing each bare CR and bare LF as CRLF.
    Normalize,
}

/// Why a config value could not be read as a [`BareNewlinePolicy`]; exists so
/// the config loader can report the offending text instead of guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bare_newline policy {0:?} (expected \"reject\" or \"normalize\")")]
pub struct UnknownBareNewlinePolicy(pub String);

impl FromStr for BareNewlinePolicy {
    type Err = UnknownBareNewlinePolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "reject" => Ok(Self::Reject),
            "normalize" => Ok(Self::Normalize),
            _ => Err(UnknownBareNewlinePolicy(text.to_owned())),
        }
    }
}

/// How a DATA phase ended, so the session can pick its reply. Exists because
/// an oversized or malformed message must still be read to its end (the
/// client keeps sending until then) before the session can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOutcome {
    /// The message is complete and within limits.
    Complete,
    /// The message contained a bare CR or LF and the policy is
    /// [`BareNewlinePolicy::Reject`]; the output must be discarded.
    BareNewline,
    /// The message exceeded the size limit; the output is truncated and must
    /// be discarded. Takes precedence over [`DataOutcome::BareNewline`].
    TooBig,
}
