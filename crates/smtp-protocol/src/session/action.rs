//! What the session asks of its driver, each question carrying what the
//! driver needs to answer it.
//!
//! A question that needs the policy (a sender, a recipient, a message,
//! credentials) hands over its data in a token only the session can make;
//! the answer gives the token back with the verdict. So a driver can neither
//! ask about something the session does not hold nor answer a question it
//! was not asked, and there is no getter that might return `None`.

use super::Envelope;
use super::Transaction;
use crate::address::{ForwardPath, ReversePath};
use crate::command::{MailParams, RcptParams};
use crate::sasl::Credentials;

/// What the driver must do next, after sending any queued replies.
#[derive(Debug)]
pub enum Action {
    /// Read the next command (in DATA mode: more message bytes).
    Continue,
    /// Ask the policy (`ConnectionPolicy::mail_from`, in smtp-core) about
    /// the sender, then call [`Session::sender_verdict`](super::Session::sender_verdict).
    CheckSender(Box<SenderCheck>),
    /// Ask `rcpt_to` about the recipient, then call
    /// [`Session::recipient_verdict`](super::Session::recipient_verdict).
    CheckRecipient(RecipientCheck),
    /// DATA was accepted and our `Received:` header comes first: call
    /// [`Session::stamp_received`](super::Session::stamp_received) with the
    /// date (the session reads no clock).
    StampReceived,
    /// The 354 is queued: feed the following bytes to
    /// [`Session::data`](super::Session::data).
    ReceiveData,
    /// A complete message: ask `message`, then call
    /// [`Session::message_verdict`](super::Session::message_verdict).
    DeliverMessage(Delivery),
    /// AUTH CRAM-MD5 began; its challenge must be one no one can predict:
    /// call [`Session::issue_challenge`](super::Session::issue_challenge)
    /// with a fresh random token (the session has no randomness of its own).
    IssueChallenge,
    /// AUTH credentials are complete: ask `authenticate`, then call
    /// [`Session::auth_verdict`](super::Session::auth_verdict).
    Authenticate(Box<AuthCheck>),
    /// Flush the queued `220`, discard any input the client pipelined after
    /// STARTTLS (CVE-2011-0411), run the handshake, then call
    /// [`Session::tls_established`](super::Session::tls_established).
    StartTls,
    /// The transaction was abandoned: tell the policy to release it.
    Reset,
    /// Flush the queued replies and close the connection.
    Close,
}

/// A MAIL command waiting for the policy's verdict.
#[derive(Debug)]
pub struct SenderCheck {
    pub(super) from: ReversePath,
    pub(super) params: MailParams,
}

impl SenderCheck {
    pub fn from(&self) -> &ReversePath {
        &self.from
    }

    pub fn params(&self) -> &MailParams {
        &self.params
    }
}

/// A RCPT command waiting for the policy's verdict, with the transaction it
/// would join.
#[derive(Debug)]
pub struct RecipientCheck {
    pub(super) transaction: Box<Transaction>,
    pub(super) recipient: ForwardPath,
    pub(super) params: RcptParams,
}

impl RecipientCheck {
    /// The transaction so far: the sender and the recipients already accepted.
    pub fn envelope(&self) -> &Envelope {
        &self.transaction.envelope
    }

    pub fn recipient(&self) -> &ForwardPath {
        &self.recipient
    }

    /// The recipient's parameters (`NOTIFY`, `ORCPT`).
    pub fn params(&self) -> &RcptParams {
        &self.params
    }
}

/// A complete message waiting for the policy to take it.
#[derive(Debug)]
pub struct Delivery {
    pub(super) transaction: Box<Transaction>,
}

impl Delivery {
    pub fn envelope(&self) -> &Envelope {
        &self.transaction.envelope
    }

    /// The message bytes not yet taken: all of it (our `Received:` header
    /// first), unless the driver drained earlier parts to disk with
    /// [`Session::drain_buffered_data`](super::Session::drain_buffered_data).
    pub fn take_message(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.transaction.message)
    }
}

/// Complete AUTH credentials waiting for the policy's verdict.
#[derive(Debug)]
pub struct AuthCheck {
    pub(super) credentials: Credentials,
}

impl AuthCheck {
    /// Never log these, except [`Credentials::user`].
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}
