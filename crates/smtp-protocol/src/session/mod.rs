//! The server side of one SMTP session as a sans-IO state machine.
//!
//! The driver feeds it input (command lines, DATA bytes, policy verdicts,
//! timeouts) and gets back an [`Action`] plus queued replies. No sockets, no
//! clocks, no randomness, no logging: what the session needs from the world
//! it asks for with an [`Action`], so every reply code can be unit-tested
//! byte for byte, and pipelined groups keep their order because replies are
//! only ever appended.
//!
//! - `action`: the questions to the driver ([`Action`]) and the tokens
//!   that carry what each is about;
//! - `transaction` and `auth`: MAIL/RCPT/DATA and AUTH inside the session;
//! - [`replies`]: every reply text, each defined once;
//! - [`ClientInfo`], [`SessionInfo`], [`Envelope`] and the other facts a
//!   policy decides on; [`Verdict`] and [`AuthVerdict`], its answers.

mod action;
mod auth;
mod info;
pub mod replies;
#[cfg(test)]
mod tests;
mod transaction;
mod verdict;

use std::sync::Arc;

use crate::command::{Command, CommandError, ErrorReply};
use crate::data::{BareNewlinePolicy, DataDecoder};
use crate::reply::Reply;
use crate::sasl::{SaslExchange, SaslMechanism};

pub use action::{Action, AuthCheck, Delivery, RecipientCheck, SenderCheck};
pub use info::{ClientInfo, ClientName, Envelope, Greeting, HeloVerb, SessionInfo, TlsInfo};
pub use verdict::{AuthVerdict, Verdict};

/// How much of the client's data stays in memory for the `Received:` loop
/// check even when the message goes to disk: a header section longer than
/// this is not a loop's.
const HEAD_KEPT: usize = 128 * 1024;

/// The fixed parameters of every session a listener runs, built once from
/// the config so that a session holds only an `Arc` to them.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Our host name (`me`): banner, EHLO reply, `Received: by`.
    pub me: String,
    /// `connection.ini [message] greeting[]`: custom banner lines.
    pub greeting: Vec<String>,
    pub helo_message: String,
    pub close_message: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    /// Bad commands tolerated before `421` and close.
    pub max_bad_commands: u32,
    pub smtputf8: bool,
    /// Offer REQUIRETLS (RFC 8689) in TLS sessions: only a relay that can
    /// keep the promise onwards (relay-out's courier) may.
    pub requiretls: bool,
    pub bare_newline: BareNewlinePolicy,
    pub add_received: bool,
    /// More `Received:` headers than this is a loop (RFC 5321 §6.3).
    pub max_received: usize,
}

impl SessionConfig {
    /// Defaults equal to Haraka's shipped `connection.ini`; used by tests and
    /// as the base the config loader overrides.
    pub fn with_host_name(me: impl Into<String>) -> Self {
        Self {
            me: me.into(),
            greeting: Vec::new(),
            helo_message: "Postern is at your service.".into(),
            close_message: "closing connection. Have a jolly good day.".into(),
            max_message_bytes: 26_214_400,
            max_recipients: 1000,
            max_bad_commands: 10,
            smtputf8: true,
            requiretls: false,
            bare_newline: BareNewlinePolicy::Reject,
            add_received: true,
            max_received: 100,
        }
    }
}

/// A finished transaction, handed to the driver for the one log line per
/// message that a mail administrator greps for.
#[derive(Clone, Debug)]
pub struct TransactionRecord {
    pub envelope: Envelope,
    /// Octets of message data received from the client.
    pub size: u64,
    pub reply: Reply,
}

/// Where the session is in the protocol. While it waits for an answer, what
/// the question is about travels with the [`Action`] and comes back with
/// the answer.
#[derive(Debug)]
enum State {
    Command,
    AwaitingSender,
    /// The transaction is in the [`RecipientCheck`].
    AwaitingRecipient,
    /// DATA was accepted; the driver gives the date for `Received:`.
    AwaitingStamp,
    Data(DataDecoder),
    /// The transaction is in the [`Delivery`].
    AwaitingDelivery,
    /// AUTH with a mechanism whose challenge needs the driver's randomness.
    AwaitingChallenge {
        mechanism: SaslMechanism,
        initial_response: Option<String>,
    },
    /// Inside an AUTH exchange: the next line is a SASL response.
    Authenticating(SaslExchange),
    AwaitingAuthVerdict,
    Closed,
}

/// The transaction between MAIL and the end of DATA (or RSET).
#[derive(Debug)]
struct Transaction {
    envelope: Envelope,
    /// RCPT commands tried, accepted or not: DATA after only failed RCPTs is
    /// "no valid recipients" (554), not a sequence error (503).
    rcpt_attempts: usize,
    message: Vec<u8>,
    /// The client's header section (for the loop check), kept here because
    /// `message` may be moved to disk as it grows. Only up to the empty line
    /// that ends it: when the body was kept too, every message of up to
    /// 128 KiB was in memory twice (12.5 MB of relay-in's 44 MB peak at 100
    /// sessions of 100 KB messages).
    head: Vec<u8>,
    /// `head` holds the whole header section, or [`HEAD_KEPT`] bytes of it.
    head_complete: bool,
    data_size: u64,
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    info: SessionInfo,
    tls_available: bool,
    auth_mechanisms: Vec<SaslMechanism>,
    state: State,
    /// Boxed so that moving it into a [`RecipientCheck`] or [`Delivery`]
    /// and back moves a pointer, and an [`Action`] stays small: the driver
    /// holds one across its awaits, in every connection's task.
    transaction: Option<Box<Transaction>>,
    transactions_started: u32,
    bad_commands: u32,
    replies: Vec<Reply>,
    finished: Option<TransactionRecord>,
    /// Input came out of sequence: a driver bug, for the driver to log.
    out_of_sequence: bool,
}

impl Session {
    pub fn new(config: Arc<SessionConfig>, client: ClientInfo, conn_id: String) -> Self {
        Self {
            config,
            info: SessionInfo {
                conn_id,
                client,
                greeting: None,
                tls: None,
                authenticated: None,
            },
            tls_available: false,
            auth_mechanisms: Vec::new(),
            state: State::Command,
            transaction: None,
            transactions_started: 0,
            bad_commands: 0,
            replies: Vec::new(),
            finished: None,
            out_of_sequence: false,
        }
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The envelope of the transaction in progress, if one is: after
    /// [`Action::ReceiveData`] the final one, for a driver that lets its
    /// policy start passing it on while the message arrives.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.transaction.as_ref().map(|txn| &txn.envelope)
    }

    /// Whether STARTTLS may be offered: the driver knows if a certificate is
    /// loaded right now.
    pub fn set_tls_available(&mut self, available: bool) {
        self.tls_available = available;
    }

    /// The SASL mechanisms to offer (empty: no AUTH). The driver asks the
    /// policy at the start and again after STARTTLS.
    pub fn set_auth_mechanisms(&mut self, mechanisms: Vec<SaslMechanism>) {
        self.auth_mechanisms = mechanisms;
    }

    /// Queues the banner. Call once, before any input.
    pub fn greet(&mut self) -> Action {
        let reply = replies::greeting(&self.config.me, &self.config.greeting, &self.info.conn_id);
        self.replies.push(reply);
        Action::Continue
    }

    /// Appends all queued replies, in order, to `out`.
    pub fn write_replies(&mut self, out: &mut Vec<u8>) {
        for reply in self.replies.drain(..) {
            reply.write_to(out);
        }
    }

    /// Takes the queued replies themselves (tests, logs).
    pub fn take_replies(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.replies)
    }

    pub fn take_finished(&mut self) -> Option<TransactionRecord> {
        self.finished.take()
    }

    /// Whether input came out of sequence since the last call: a driver bug,
    /// answered with `451` and close. The session does no logging; the
    /// driver does.
    pub fn take_out_of_sequence(&mut self) -> bool {
        std::mem::take(&mut self.out_of_sequence)
    }

    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some()
            || matches!(
                self.state,
                State::AwaitingRecipient | State::AwaitingDelivery
            )
    }

    pub fn is_receiving_data(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// One command line, without its line ending.
    pub fn command_line(&mut self, line: &[u8]) -> Action {
        if let State::Authenticating(_) = &self.state {
            return self.sasl_response(line);
        }
        if !matches!(self.state, State::Command) {
            // The driver only reads commands in the command state; anything
            // else is a driver bug, answered safely rather than panicking.
            self.replies.push(replies::local_error());
            return self.close();
        }
        match Command::parse(line) {
            Ok(command) => self.command(command),
            Err(error) => {
                let reply = error_reply(&error);
                self.bad_command(reply)
            }
        }
    }

    /// The driver saw a command line longer than the limit (and discards it
    /// up to its line end).
    pub fn line_too_long(&mut self) -> Action {
        self.bad_command(replies::line_too_long())
    }

    fn bad_command(&mut self, reply: Reply) -> Action {
        self.bad_commands += 1;
        if self.bad_commands > self.config.max_bad_commands {
            self.replies
                .push(replies::too_many_bad_commands(&self.config.me));
            return self.close();
        }
        self.replies.push(reply);
        Action::Continue
    }

    fn command(&mut self, command: Command) -> Action {
        match command {
            Command::Ehlo(name) => self.hello(HeloVerb::Ehlo, name),
            Command::Helo(name) => self.hello(HeloVerb::Helo, name),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => self.start_data(),
            Command::Rset => {
                self.replies.push(replies::ok());
                self.reset_transaction()
            }
            Command::Noop => {
                self.replies.push(replies::ok());
                Action::Continue
            }
            Command::Quit => {
                self.replies
                    .push(replies::quit(&self.config.me, &self.config.close_message));
                self.close()
            }
            Command::Vrfy(_) => {
                self.replies.push(replies::vrfy());
                Action::Continue
            }
            Command::Help(_) => {
                self.replies.push(replies::help());
                Action::Continue
            }
            Command::StartTls => self.start_tls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(&mechanism, initial_response.as_deref()),
            // XCLIENT is never accepted from a client: it would let anyone
            // claim another address.
            Command::Xclient(_) => self.bad_command(replies::unrecognized_command()),
            // Haraka's answer to a PROXY line from a host not in
            // `[haproxy] hosts[]`; trusted proxies' headers are read by the
            // driver before the session starts.
            Command::Proxy(_) => {
                let client = self.info.client.peer.ip();
                self.replies
                    .push(replies::proxy_not_allowed(&self.config.me, client));
                self.close()
            }
        }
    }

    fn hello(&mut self, verb: HeloVerb, name: String) -> Action {
        let had_transaction = self.transaction.take().is_some();
        let remote = self.info.client.remote_label();
        let reply = match verb {
            HeloVerb::Helo => replies::helo(&self.config.me, &remote, &self.config.helo_message),
            HeloVerb::Ehlo => replies::ehlo(
                &self.config.me,
                &remote,
                &self.config.helo_message,
                self.ehlo_keywords(),
            ),
        };
        self.replies.push(reply);
        self.info.greeting = Some(Greeting { verb, name });
        if had_transaction {
            Action::Reset
        } else {
            Action::Continue
        }
    }

    fn ehlo_keywords(&self) -> Vec<String> {
        let mut keywords = vec!["PIPELINING".to_string(), "8BITMIME".to_string()];
        if self.config.smtputf8 {
            keywords.push("SMTPUTF8".into());
        }
        keywords.push(format!("SIZE {}", self.config.max_message_bytes));
        keywords.push("ENHANCEDSTATUSCODES".into());
        keywords.push("DSN".into());
        if self.tls_available && self.info.tls.is_none() {
            keywords.push("STARTTLS".into());
        }
        // RFC 8689 §2: advertised after STARTTLS, where the option may be used.
        if self.config.requiretls && self.info.tls.is_some() {
            keywords.push("REQUIRETLS".into());
        }
        if !self.auth_mechanisms.is_empty() && self.info.authenticated.is_none() {
            let names: Vec<&str> = self.auth_mechanisms.iter().map(|m| m.name()).collect();
            keywords.push(format!("AUTH {}", names.join(" ")));
        }
        keywords
    }

    fn start_tls(&mut self) -> Action {
        if self.info.tls.is_some() {
            self.replies.push(replies::tls_already_active());
            return Action::Continue;
        }
        if !self.tls_available {
            self.replies.push(replies::tls_not_available());
            return Action::Continue;
        }
        self.replies.push(replies::start_tls());
        Action::StartTls
    }

    /// The handshake succeeded. RFC 3207 §4.2: forget everything learnt in
    /// clear text; the client must greet again.
    pub fn tls_established(&mut self, tls: TlsInfo) -> Action {
        self.info.tls = Some(tls);
        self.info.greeting = None;
        self.info.authenticated = None;
        self.reset_transaction()
    }

    fn reset_transaction(&mut self) -> Action {
        if self.transaction.take().is_some() {
            Action::Reset
        } else {
            Action::Continue
        }
    }

    /// No input within the inactivity timeout.
    pub fn timeout(&mut self) -> Action {
        self.replies.push(replies::timeout(&self.config.me));
        self.close()
    }

    /// The server is shutting down (or its grace period has run out).
    pub fn shutdown(&mut self) -> Action {
        self.replies.push(replies::shutting_down(&self.config.me));
        self.close()
    }

    fn close(&mut self) -> Action {
        self.state = State::Closed;
        Action::Close
    }

    fn driver_bug(&mut self) -> Action {
        self.out_of_sequence = true;
        self.replies.push(replies::local_error());
        self.close()
    }
}

/// Maps a parse error to its reply; the error's own text says what is wrong.
fn error_reply(error: &CommandError) -> Reply {
    let detail = error.to_string();
    match error.reply() {
        ErrorReply::UnknownCommand => replies::unrecognized_command(),
        ErrorReply::SyntaxError => replies::syntax_error(&detail),
        ErrorReply::InvalidParameters => replies::bad_parameters(&detail),
        ErrorReply::BadSenderAddress => replies::bad_sender_address(&detail),
        ErrorReply::BadRecipientAddress => replies::bad_recipient_address(&detail),
    }
}
