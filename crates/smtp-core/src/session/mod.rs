//! The server side of one SMTP session as a sans-IO state machine.
//!
//! The driver feeds it input (command lines, DATA bytes, policy verdicts,
//! timeouts) and gets back an [`Action`] plus queued replies. No sockets, no
//! clocks: every reply code can be unit-tested byte for byte, and pipelined
//! groups keep their order because replies are only ever appended.

pub mod replies;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::address::{ForwardPath, ReversePath};
use crate::command::{Command, CommandError, ErrorReply, MailParams};
use crate::data::{BareNewlinePolicy, DataDecoder, DataOutcome};
use crate::policy::{
    AuthVerdict, ClientInfo, Envelope, Greeting, HeloVerb, SessionInfo, TlsInfo, Verdict,
};
use crate::received;
use crate::reply::Reply;
use crate::sasl::{Credentials, SaslError, SaslExchange, SaslMechanism, SaslStep};

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
            bare_newline: BareNewlinePolicy::Reject,
            add_received: true,
            max_received: 100,
        }
    }
}

/// What the driver must do next, after sending any queued replies.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the next command (in DATA mode: more message bytes).
    Continue,
    /// Ask [`ConnectionPolicy::mail_from`](crate::policy::ConnectionPolicy::mail_from)
    /// about [`Session::pending_sender`], then call [`Session::sender_verdict`].
    CheckSender,
    /// Ask `rcpt_to` about [`Session::pending_recipient`], then call
    /// [`Session::recipient_verdict`].
    CheckRecipient,
    /// The 354 is queued: feed the following bytes to [`Session::data`].
    ReceiveData,
    /// A complete message: [`Session::take_message`], ask `message`, then call
    /// [`Session::message_verdict`].
    DeliverMessage,
    /// AUTH credentials are complete: ask `authenticate` about
    /// [`Session::pending_credentials`], then call [`Session::auth_verdict`].
    Authenticate,
    /// Flush the queued `220`, discard any input the client pipelined after
    /// STARTTLS (CVE-2011-0411), run the handshake, then call
    /// [`Session::tls_established`].
    StartTls,
    /// The transaction was abandoned: tell the policy to release it.
    Reset,
    /// Flush the queued replies and close the connection.
    Close,
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

/// Where the session is in the protocol.
#[derive(Debug)]
enum State {
    Command,
    AwaitingSender {
        from: ReversePath,
        params: MailParams,
    },
    AwaitingRecipient(ForwardPath),
    Data(DataDecoder),
    AwaitingDelivery,
    /// Inside an AUTH exchange: the next line is a SASL response.
    Authenticating(SaslExchange),
    AwaitingAuthVerdict(Credentials),
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
    /// The start of the client's data (its header section, for the loop
    /// check), kept here because `message` may be moved to disk as it grows.
    head: Vec<u8>,
    data_size: u64,
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    info: SessionInfo,
    tls_available: bool,
    auth_mechanisms: Vec<SaslMechanism>,
    extra_keywords: Vec<String>,
    state: State,
    transaction: Option<Transaction>,
    transactions_started: u32,
    bad_commands: u32,
    replies: Vec<Reply>,
    finished: Option<TransactionRecord>,
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
            extra_keywords: Vec::new(),
            state: State::Command,
            transaction: None,
            transactions_started: 0,
            bad_commands: 0,
            replies: Vec::new(),
            finished: None,
        }
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Whether STARTTLS may be offered: the driver knows if a certificate is
    /// loaded right now.
    pub fn set_tls_available(&mut self, available: bool) {
        self.tls_available = available;
    }

    /// EHLO keywords a binary adds beyond this engine's own.
    pub fn set_extra_keywords(&mut self, keywords: Vec<String>) {
        self.extra_keywords = keywords;
    }

    /// The SASL mechanisms to offer (empty: no AUTH). The driver asks the
    /// policy at the start and again after STARTTLS.
    pub fn set_auth_mechanisms(&mut self, mechanisms: Vec<SaslMechanism>) {
        self.auth_mechanisms = mechanisms;
    }

    pub fn pending_credentials(&self) -> Option<&Credentials> {
        match &self.state {
            State::AwaitingAuthVerdict(credentials) => Some(credentials),
            _ => None,
        }
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

    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    pub fn is_receiving_data(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    pub fn envelope(&self) -> Option<&Envelope> {
        self.transaction.as_ref().map(|t| &t.envelope)
    }

    pub fn pending_sender(&self) -> Option<(&ReversePath, &MailParams)> {
        match &self.state {
            State::AwaitingSender { from, params } => Some((from, params)),
            _ => None,
        }
    }

    pub fn pending_recipient(&self) -> Option<&ForwardPath> {
        match &self.state {
            State::AwaitingRecipient(rcpt) => Some(rcpt),
            _ => None,
        }
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
        if self.tls_available && self.info.tls.is_none() {
            keywords.push("STARTTLS".into());
        }
        if !self.auth_mechanisms.is_empty() && self.info.authenticated.is_none() {
            let names: Vec<&str> = self.auth_mechanisms.iter().map(|m| m.name()).collect();
            keywords.push(format!("AUTH {}", names.join(" ")));
        }
        keywords.extend(self.extra_keywords.iter().cloned());
        keywords
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) -> Action {
        let Some(greeting) = &self.info.greeting else {
            self.replies.push(replies::need_helo());
            return Action::Continue;
        };
        if self.transaction.is_some() {
            self.replies.push(replies::nested_mail());
            return Action::Continue;
        }
        if let Some(reply) = self.check_mail_params(greeting.verb, &from, &params) {
            self.replies.push(reply);
            return Action::Continue;
        }
        self.state = State::AwaitingSender { from, params };
        Action::CheckSender
    }

    fn check_mail_params(
        &self,
        verb: HeloVerb,
        from: &ReversePath,
        params: &MailParams,
    ) -> Option<Reply> {
        let has_params = params.size.is_some()
            || params.body.is_some()
            || params.smtputf8
            || params.auth.is_some()
            || !params.other.is_empty();
        if has_params && verb == HeloVerb::Helo {
            return Some(replies::parameters_need_ehlo());
        }
        if let Some((name, _)) = params.other.first() {
            return Some(replies::bad_parameters(&format!(
                "Unsupported parameter {name}"
            )));
        }
        if params.auth.is_some() && self.auth_mechanisms.is_empty() {
            return Some(replies::bad_parameters("Unsupported parameter AUTH"));
        }
        if params.smtputf8 && !self.config.smtputf8 {
            return Some(replies::bad_parameters("Unsupported parameter SMTPUTF8"));
        }
        if params
            .size
            .is_some_and(|size| size > self.config.max_message_bytes as u64)
        {
            return Some(replies::message_too_big());
        }
        if let ReversePath::Mailbox(mailbox) = from
            && mailbox.is_utf8()
            && !params.smtputf8
        {
            return Some(replies::needs_smtputf8());
        }
        None
    }

    /// The policy's answer to [`Action::CheckSender`].
    pub fn sender_verdict(&mut self, verdict: Verdict) -> Action {
        let State::AwaitingSender { from, params } =
            std::mem::replace(&mut self.state, State::Command)
        else {
            return self.driver_bug();
        };
        match verdict {
            Verdict::Accept(reply) => {
                self.transactions_started += 1;
                let id = format!("{}.{}", self.info.conn_id, self.transactions_started);
                self.replies
                    .push(reply.unwrap_or_else(|| replies::sender_ok(&from.to_string())));
                self.transaction = Some(Transaction {
                    envelope: Envelope {
                        id,
                        from,
                        params,
                        recipients: Vec::new(),
                    },
                    rcpt_attempts: 0,
                    message: Vec::new(),
                    head: Vec::new(),
                    data_size: 0,
                });
            }
            Verdict::Reject(reply) => self.replies.push(reply),
        }
        Action::Continue
    }

    fn rcpt(&mut self, to: ForwardPath, params: crate::command::RcptParams) -> Action {
        let smtputf8_allowed = self.config.smtputf8;
        let Some(txn) = &mut self.transaction else {
            self.replies.push(replies::need_mail_before_rcpt());
            return Action::Continue;
        };
        txn.rcpt_attempts += 1;
        if let Some((name, _)) = params.other.first() {
            let reply = replies::bad_parameters(&format!("Unsupported parameter {name}"));
            self.replies.push(reply);
            return Action::Continue;
        }
        if txn.envelope.recipients.len() >= self.config.max_recipients {
            self.replies.push(replies::too_many_recipients());
            return Action::Continue;
        }
        if let ForwardPath::Mailbox(mailbox) = &to
            && mailbox.is_utf8()
            && !(smtputf8_allowed && txn.envelope.params.smtputf8)
        {
            self.replies.push(replies::needs_smtputf8());
            return Action::Continue;
        }
        self.state = State::AwaitingRecipient(to);
        Action::CheckRecipient
    }

    /// The policy's answer to [`Action::CheckRecipient`].
    pub fn recipient_verdict(&mut self, verdict: Verdict) -> Action {
        let State::AwaitingRecipient(rcpt) = std::mem::replace(&mut self.state, State::Command)
        else {
            return self.driver_bug();
        };
        let Some(txn) = &mut self.transaction else {
            return self.driver_bug();
        };
        match verdict {
            Verdict::Accept(reply) => {
                self.replies
                    .push(reply.unwrap_or_else(|| replies::recipient_ok(&rcpt.to_string())));
                txn.envelope.recipients.push(rcpt);
            }
            Verdict::Reject(reply) => self.replies.push(reply),
        }
        Action::Continue
    }

    fn start_data(&mut self) -> Action {
        let Some(txn) = &mut self.transaction else {
            self.replies.push(replies::need_mail_before_data());
            return Action::Continue;
        };
        if txn.envelope.recipients.is_empty() {
            self.replies.push(if txn.rcpt_attempts > 0 {
                replies::no_valid_recipients()
            } else {
                replies::need_rcpt_before_data()
            });
            return Action::Continue;
        }
        if self.config.add_received {
            let header = received::header(&self.config.me, &self.info, &txn.envelope);
            txn.message.extend_from_slice(header.as_bytes());
        }
        self.replies.push(replies::start_data());
        self.state = State::Data(DataDecoder::new(
            self.config.max_message_bytes,
            self.config.bare_newline,
        ));
        Action::ReceiveData
    }

    /// Message bytes in DATA mode. Returns how many bytes were consumed: at
    /// the end of the message the rest of `input` is the next command.
    pub fn data(&mut self, input: &[u8]) -> (usize, Action) {
        let (State::Data(decoder), Some(txn)) = (&mut self.state, &mut self.transaction) else {
            return (0, self.driver_bug());
        };
        let before = txn.message.len();
        let (consumed, outcome) = decoder.feed(input, &mut txn.message);
        if txn.head.len() < HEAD_KEPT {
            let new = &txn.message[before..];
            let take = new.len().min(HEAD_KEPT - txn.head.len());
            txn.head.extend_from_slice(&new[..take]);
        }
        let Some(outcome) = outcome else {
            return (consumed, Action::Continue);
        };
        txn.data_size = decoder.bytes_received();
        self.state = State::Command;
        let rejection = match outcome {
            DataOutcome::TooBig => Some(replies::message_too_big()),
            DataOutcome::BareNewline => Some(replies::bare_newline()),
            DataOutcome::Complete => {
                let count = received::count(&txn.head);
                (count > self.config.max_received).then(|| replies::mail_loop(count))
            }
        };
        match rejection {
            Some(reply) => (consumed, self.finish_transaction(reply)),
            None => {
                self.state = State::AwaitingDelivery;
                (consumed, Action::DeliverMessage)
            }
        }
    }

    /// Message bytes received and not yet taken: the driver moves them to
    /// disk past `spool_after`.
    pub fn buffered_data(&self) -> usize {
        self.transaction.as_ref().map_or(0, |t| t.message.len())
    }

    /// Takes the message bytes received so far (our `Received:` header
    /// first); the next ones continue from here.
    pub fn drain_buffered_data(&mut self) -> Vec<u8> {
        self.take_message()
    }

    /// The rest of the message for [`Action::DeliverMessage`] (all of it,
    /// unless the driver drained earlier parts).
    pub fn take_message(&mut self) -> Vec<u8> {
        self.transaction
            .as_mut()
            .map(|t| std::mem::take(&mut t.message))
            .unwrap_or_default()
    }

    /// The policy's answer to [`Action::DeliverMessage`].
    pub fn message_verdict(&mut self, verdict: Verdict) -> Action {
        if !matches!(self.state, State::AwaitingDelivery) {
            return self.driver_bug();
        }
        self.state = State::Command;
        let reply = match verdict {
            Verdict::Accept(reply) => reply.unwrap_or_else(|| {
                let id = self.envelope().map(|e| e.id.as_str()).unwrap_or_default();
                replies::message_accepted(id)
            }),
            Verdict::Reject(reply) => reply,
        };
        self.finish_transaction(reply);
        Action::Continue
    }

    /// Ends the transaction with `reply`, recording it for the log. The
    /// policy has seen the whole message or rejected it; no reset needed.
    fn finish_transaction(&mut self, reply: Reply) -> Action {
        if let Some(txn) = self.transaction.take() {
            self.finished = Some(TransactionRecord {
                envelope: txn.envelope,
                size: txn.data_size,
                reply: reply.clone(),
            });
        }
        self.replies.push(reply);
        Action::Continue
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Action {
        if self.auth_mechanisms.is_empty() {
            return self.bad_command(replies::not_implemented());
        }
        let reply = if self.info.authenticated.is_some() {
            Some(replies::auth_already_done())
        } else if self.transaction.is_some() {
            Some(replies::auth_in_transaction())
        } else if self.info.greeting.as_ref().map(|g| g.verb) != Some(HeloVerb::Ehlo) {
            Some(replies::auth_need_ehlo())
        } else {
            None
        };
        if let Some(reply) = reply {
            self.replies.push(reply);
            return Action::Continue;
        }
        let Some(mechanism) =
            SaslMechanism::parse(mechanism).filter(|m| self.auth_mechanisms.contains(m))
        else {
            self.replies.push(replies::auth_unknown_mechanism());
            return Action::Continue;
        };
        // RFC 4954 §4: "=" is an empty initial response.
        let challenge_id = format!(
            "{}.{}@{}",
            crate::id::random_id(10),
            self.info.conn_id,
            self.config.me
        );
        match SaslExchange::start(mechanism, initial, &challenge_id) {
            Ok((exchange, step)) => self.sasl_step(exchange, step),
            Err(error) => self.sasl_failed(&error),
        }
    }

    fn sasl_response(&mut self, line: &[u8]) -> Action {
        let State::Authenticating(mut exchange) =
            std::mem::replace(&mut self.state, State::Command)
        else {
            return self.driver_bug();
        };
        let text = String::from_utf8_lossy(line);
        match exchange.respond(&text) {
            Ok(step) => self.sasl_step(exchange, step),
            Err(error) => self.sasl_failed(&error),
        }
    }

    fn sasl_step(&mut self, exchange: SaslExchange, step: SaslStep) -> Action {
        match step {
            SaslStep::Challenge(challenge) => {
                self.replies.push(replies::auth_challenge(challenge));
                self.state = State::Authenticating(exchange);
                Action::Continue
            }
            SaslStep::Done(credentials) => {
                self.state = State::AwaitingAuthVerdict(credentials);
                Action::Authenticate
            }
        }
    }

    fn sasl_failed(&mut self, error: &SaslError) -> Action {
        self.state = State::Command;
        self.replies.push(match error {
            SaslError::Cancelled => replies::auth_cancelled(),
            other => replies::auth_bad_response(&other.to_string()),
        });
        Action::Continue
    }

    /// The policy's answer to [`Action::Authenticate`].
    pub fn auth_verdict(&mut self, verdict: AuthVerdict) -> Action {
        let State::AwaitingAuthVerdict(credentials) =
            std::mem::replace(&mut self.state, State::Command)
        else {
            return self.driver_bug();
        };
        self.replies.push(match verdict {
            AuthVerdict::Accepted => {
                self.info.authenticated = Some(credentials.user().to_string());
                replies::auth_succeeded()
            }
            AuthVerdict::Rejected => replies::auth_failed(),
            AuthVerdict::TemporaryFailure => replies::auth_temporary_failure(),
        });
        Action::Continue
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
        tracing::error!(conn = %self.info.conn_id, "session input out of sequence (driver bug)");
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
