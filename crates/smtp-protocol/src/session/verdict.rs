//! A policy's answers to the session's questions.
//!
//! The session knows SMTP; it does not know whether a recipient is ours,
//! whether a client may relay, or where a finished message goes. The
//! driver asks its policy (asynchronously, outside this crate) and hands
//! the answer back as one of these values.

use crate::reply::Reply;

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
