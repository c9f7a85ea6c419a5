//! [`SmtpClient`]: one SMTP connection, driven step by step.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::debug;

use smtp_protocol::address::ReversePath;
use smtp_protocol::reply::Reply;

use super::auth::{self, ChosenMechanism};
use super::capabilities::Capabilities;
use super::content::{DataBuffers, MessageSource};
use super::error::{ClientError, ClientErrorKind, Step};
use super::transport::Transport;
use super::xclient::xclient_commands;
use super::{
    ClientConfig, EnvelopeRecipient, EnvelopeReplies, MailOptions, TlsMode, XclientAttributes,
    XclientOutcome,
};

/// QUIT is a courtesy: never wait long for it.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Commands written at once when pipelining. A bound keeps the replies we do
/// not read while writing small enough that neither side's socket buffer can
/// fill up and deadlock the exchange (RFC 2920 §3.1).
const PIPELINE_GROUP: usize = 100;

/// An open SMTP session, greeted and (per the configuration) upgraded to TLS.
///
/// Each method is one protocol step and returns the server's reply; negative
/// replies to MAIL, RCPT, DATA and RSET are values for the caller to judge.
/// After an error that may have left the dialogue out of step, every further
/// call fails with [`ClientErrorKind::Unusable`]: drop the client then.
pub struct SmtpClient {
    pub(super) transport: Transport,
    pub(super) config: ClientConfig,
    capabilities: Capabilities,
    /// RCPTs accepted since the last MAIL: an LMTP server answers the data
    /// once for each (RFC 2033 §4.2).
    pub(super) accepted_rcpts: usize,
    /// The DATA buffers of the last message, kept while they are of the
    /// first piece's size so a session carrying many small messages does not
    /// allocate (and free) them for each one.
    pub(super) data_buffers: DataBuffers,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("peer", &self.transport.peer())
            .field("tls", &self.transport.is_tls())
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl SmtpClient {
    /// Connects, reads the greeting (anything but `220` is an error carrying
    /// the reply), greets with EHLO (HELO if EHLO gets a 5xx), then upgrades
    /// with STARTTLS per `config.tls` and greets again. `server_name` is the
    /// name for SNI and certificate verification (the MX or smart-host name).
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<SmtpClient, ClientError> {
        let mut client = Self::greeted_by(addr, config).await?;
        let helo_name = client.config.helo_name.clone();
        client.greet(&helo_name).await?;
        client.negotiate_tls(server_name).await?;
        Ok(client)
    }

    /// Connects and reads the greeting, but says no EHLO: `known` (what this
    /// server offered in an earlier session's EHLO) stands for its reply.
    /// For a session whose first command is XCLIENT, which sends the server
    /// back to its greeting and is followed by EHLO anyway (relay-in's
    /// backend sessions): one round trip and one EHLO reply fewer each.
    /// `None` when `config` wants STARTTLS or AUTH, which need the server's
    /// own EHLO reply: use [`Self::connect`].
    pub async fn connect_known(
        addr: SocketAddr,
        config: &ClientConfig,
        known: Capabilities,
    ) -> Option<Result<SmtpClient, ClientError>> {
        if config.tls.connector().is_some() || config.auth.is_some() {
            return None;
        }
        Some(Self::greeted_by(addr, config).await.map(|mut client| {
            client.capabilities = known;
            client
        }))
    }

    /// Connects and reads a `220` greeting (anything else is an error
    /// carrying the reply).
    async fn greeted_by(
        addr: SocketAddr,
        config: &ClientConfig,
    ) -> Result<SmtpClient, ClientError> {
        let transport =
            Transport::connect(addr, config.source_address, config.connect_timeout).await?;
        let mut client = SmtpClient {
            transport,
            config: config.clone(),
            capabilities: Capabilities::default(),
            accepted_rcpts: 0,
            data_buffers: DataBuffers::default(),
        };
        let greeting = client
            .transport
            .read_reply(Step::Greeting, config.timeouts.greeting)
            .await?;
        if greeting.code() != 220 {
            return Err(client.refusal(Step::Greeting, greeting));
        }
        Ok(client)
    }

    /// What the server advertised in its latest EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// The server's certificate chain after STARTTLS (end entity first), so
    /// a caller can judge it by other rules than the session's verifier
    /// (relay-out's MTA-STS `testing` mode reports what `enforce` would
    /// have refused).
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.transport.peer_certificates()
    }

    /// Whether this is an LMTP session (RFC 2033): a 250 after the data is
    /// final delivery, not relaying.
    pub fn is_lmtp(&self) -> bool {
        self.config.lmtp
    }

    /// The relays never need it (errors carry the peer); tests check it.
    #[cfg(test)]
    pub fn peer_addr(&self) -> SocketAddr {
        self.transport.peer()
    }

    /// The local address of the connection: the client address the server
    /// sees, unless a NAT between us rewrites it (`None` once the
    /// connection is gone).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.transport.local()
    }

    /// Hands the original client's identity to a Postfix backend (XCLIENT;
    /// peers-and-specs §1): only the advertised attributes, split at 512
    /// octets, NAME and ADDR last. Each command must get a `2xx` (Postfix:
    /// `220`, a fresh greeting); then we greet again with `ehlo_as` (the
    /// client's HELO name), so that the backend records the HELO it would
    /// have seen.
    ///
    /// The re-greeting is always EHLO, even for a client that said HELO, as
    /// Haraka's `smtp_forward` does: Postfix forbids pipelining in a session
    /// greeted with HELO (`smtpd_forbid_unauth_pipelining`), and without it
    /// every message costs three round trips to the backend (MAIL, RCPT,
    /// DATA) instead of one. The price: Postfix's own `Received:` says
    /// `with ESMTP` for such a client (an EHLO overrides XCLIENT's `PROTO`,
    /// smtpd.c `ehlo_cmd`); relay-in's `Received:` still says `with SMTP`.
    pub async fn xclient(
        &mut self,
        attributes: &XclientAttributes,
        ehlo_as: &str,
    ) -> Result<XclientOutcome, ClientError> {
        self.transport.ensure_usable(Step::Xclient)?;
        let Some(advertised) = &self.capabilities.xclient else {
            return Ok(XclientOutcome::NotOffered);
        };
        let commands = xclient_commands(attributes, advertised);
        if commands.is_empty() {
            return Ok(XclientOutcome::NotOffered);
        }
        let timeout = self.config.timeouts.command;
        for command in &commands {
            let reply = self
                .transport
                .command(command, Step::Xclient, timeout)
                .await?;
            match reply.code() {
                200..=299 => {}
                400..=599 => return Ok(XclientOutcome::Refused(reply)),
                _ => return Err(self.unexpected(Step::Xclient, reply)),
            }
        }
        let ehlo_as = if ehlo_as.trim().is_empty() {
            self.config.helo_name.clone()
        } else {
            ehlo_as.to_owned()
        };
        self.greet(&ehlo_as).await?;
        Ok(XclientOutcome::Accepted)
    }

    /// Authenticates per `config.auth` (nothing to do without credentials):
    /// AUTH PLAIN with an initial response, or AUTH LOGIN. The password never
    /// reaches a log.
    pub async fn authenticate(&mut self) -> Result<(), ClientError> {
        self.transport.ensure_usable(Step::Auth)?;
        let Some(credentials) = self.config.auth.clone() else {
            return Ok(());
        };
        let Some(mechanism) = auth::choose_mechanism(credentials.mechanism, &self.capabilities)
        else {
            let offered = self.capabilities.auth.clone();
            return Err(self
                .transport
                .fail(Step::Auth, ClientErrorKind::AuthNotOffered { offered }));
        };
        let final_reply = match mechanism {
            ChosenMechanism::Plain => {
                let command = auth::plain_command(&credentials);
                self.auth_step(&command, "AUTH PLAIN <redacted>").await?
            }
            ChosenMechanism::Login => {
                let user = auth::base64(credentials.user.as_bytes());
                let password = auth::base64(credentials.password.as_bytes());
                let mut reply = self.auth_step("AUTH LOGIN", "AUTH LOGIN").await?;
                if reply.code() == 334 {
                    reply = self.auth_step(&user, "<user>").await?;
                }
                if reply.code() == 334 {
                    reply = self.auth_step(&password, "<redacted>").await?;
                }
                reply
            }
        };
        match final_reply.code() {
            235 => Ok(()),
            400..=599 => Err(self.refusal(Step::Auth, final_reply)),
            _ => Err(self.unexpected(Step::Auth, final_reply)),
        }
    }

    /// MAIL FROM and every RCPT TO, pipelined when the server offers
    /// PIPELINING (in groups of at most 100 commands), one by one otherwise.
    pub async fn envelope<R: EnvelopeRecipient>(
        &mut self,
        from: &ReversePath,
        rcpts: &[R],
        options: MailOptions,
    ) -> Result<EnvelopeReplies, ClientError> {
        let (replies, _) = self.envelope_commands(from, rcpts, options, false).await?;
        Ok(replies)
    }

    /// [`envelope`](Self::envelope) with DATA at the end of the last
    /// pipelined group (RFC 2920 §3.1 lets DATA end one), saving a round
    /// trip per message; without PIPELINING, DATA follows only when MAIL and
    /// every RCPT were accepted. The DATA reply is `None` when DATA was not
    /// sent. After a `354` the caller sends the message with
    /// [`data_content`](Self::data_content), or calls
    /// [`abort_data`](Self::abort_data): once a server waits for the message,
    /// closing the connection is the only way not to deliver it.
    pub async fn envelope_and_data<R: EnvelopeRecipient>(
        &mut self,
        from: &ReversePath,
        rcpts: &[R],
        options: MailOptions,
    ) -> Result<(EnvelopeReplies, Option<Reply>), ClientError> {
        self.envelope_commands(from, rcpts, options, true).await
    }

    async fn envelope_commands<R: EnvelopeRecipient>(
        &mut self,
        from: &ReversePath,
        rcpts: &[R],
        options: MailOptions,
        with_data: bool,
    ) -> Result<(EnvelopeReplies, Option<Reply>), ClientError> {
        self.transport.ensure_usable(Step::MailFrom)?;
        let mail = self.mail_command(from, options)?;
        if !self.capabilities.pipelining {
            let mail = self.mail_from_line(&mail).await?;
            let mut replies = Vec::with_capacity(rcpts.len());
            if mail.is_positive() {
                for rcpt in rcpts {
                    replies.push(self.rcpt_to(rcpt).await?);
                }
            }
            let all_accepted = mail.is_positive() && replies.iter().all(Reply::is_positive);
            let data = if with_data && all_accepted && !rcpts.is_empty() {
                Some(self.data_command().await?)
            } else {
                None
            };
            let replies = EnvelopeReplies {
                mail,
                rcpts: replies,
            };
            return Ok((replies, data));
        }

        let timeouts = self.config.timeouts;
        let dsn = self.capabilities.dsn;
        let mut commands = Vec::with_capacity(rcpts.len() + 2);
        commands.push((mail, Step::MailFrom, timeouts.mail));
        commands.extend(
            rcpts
                .iter()
                .map(|rcpt| (rcpt.rcpt_line(dsn), Step::RcptTo, timeouts.rcpt)),
        );
        if with_data {
            commands.push(("DATA".to_owned(), Step::Data, timeouts.data_init));
        }
        let mut replies = Vec::with_capacity(commands.len());
        let mut data = None;
        for group in commands.chunks(PIPELINE_GROUP) {
            let mut octets = Vec::new();
            for (line, _, _) in group {
                tracing::trace!(peer = %self.transport.peer(), "C: {line}");
                octets.extend_from_slice(line.as_bytes());
                octets.extend_from_slice(b"\r\n");
            }
            let (_, first_step, first_timeout) = group[0];
            self.transport
                .write(&octets, first_step, first_timeout)
                .await?;
            for &(_, step, timeout) in group {
                let reply = self.transport.read_reply(step, timeout).await?;
                if step == Step::Data {
                    data = Some(self.data_reply(reply)?);
                } else {
                    replies.push(self.transaction_reply(step, reply)?);
                }
            }
        }
        let mut replies = replies.into_iter();
        let Some(mail) = replies.next() else {
            return Err(self.transport.fail(Step::MailFrom, ClientErrorKind::Closed));
        };
        let rcpts = if mail.is_positive() {
            replies.collect()
        } else {
            Vec::new()
        };
        Ok((EnvelopeReplies { mail, rcpts }, data))
    }

    /// MAIL FROM alone, for relay-in's live mode.
    pub async fn mail_from(
        &mut self,
        from: &ReversePath,
        options: MailOptions,
    ) -> Result<Reply, ClientError> {
        self.transport.ensure_usable(Step::MailFrom)?;
        let line = self.mail_command(from, options)?;
        self.mail_from_line(&line).await
    }

    /// One RCPT TO, for relay-in's live mode.
    pub async fn rcpt_to<R: EnvelopeRecipient + ?Sized>(
        &mut self,
        rcpt: &R,
    ) -> Result<Reply, ClientError> {
        self.transport.ensure_usable(Step::RcptTo)?;
        let line = rcpt.rcpt_line(self.capabilities.dsn);
        let timeout = self.config.timeouts.rcpt;
        let reply = self.transport.command(&line, Step::RcptTo, timeout).await?;
        self.transaction_reply(Step::RcptTo, reply)
    }

    /// Sends DATA and, after `354`, the message dot-stuffed, and returns the
    /// reply to the final `.`. A refusal of DATA itself (4xx/5xx) is returned
    /// as is, without sending the message.
    pub async fn data(&mut self, message: &[u8]) -> Result<Reply, ClientError> {
        self.data_from(message).await
    }

    /// [`data`](Self::data) for a message read from `message` (a spool file)
    /// piece by piece. A read failure is [`ClientErrorKind::MessageRead`] and
    /// leaves the session unusable (DATA cannot be aborted).
    pub async fn data_from<R: MessageSource>(&mut self, message: R) -> Result<Reply, ClientError> {
        let mut replies = self.data_per_recipient(message).await?;
        // SMTP has one verdict; for LMTP callers should use the per-recipient
        // form, and the first reply stands for the rest here.
        Ok(replies.swap_remove(0))
    }

    /// DATA, the message, and one reply per accepted recipient, in RCPT
    /// order: LMTP's own per-recipient replies, or SMTP's single reply
    /// repeated, so a caller handles both protocols alike. A refusal of DATA
    /// itself counts for every recipient.
    pub async fn data_per_recipient<R: MessageSource>(
        &mut self,
        message: R,
    ) -> Result<Vec<Reply>, ClientError> {
        self.transport.ensure_usable(Step::Data)?;
        let reply = self.data_command().await?;
        if reply.code() != 354 {
            return Ok(vec![reply; self.accepted_rcpts.max(1)]);
        }
        self.content_per_recipient(message).await
    }

    /// The message after a `354` from [`envelope_and_data`](Self::envelope_and_data),
    /// and the server's verdict on it (for LMTP, the first recipient's).
    pub async fn data_content<R: MessageSource>(
        &mut self,
        message: R,
    ) -> Result<Reply, ClientError> {
        self.transport.ensure_usable(Step::DataBlock)?;
        let mut replies = self.content_per_recipient(message).await?;
        Ok(replies.swap_remove(0))
    }

    /// Gives up on a message after DATA got `354` without sending it: the
    /// connection is left unusable so the caller's [`quit`](Self::quit) only
    /// closes it, and the server, missing the final dot, delivers nothing.
    pub fn abort_data(&mut self) {
        self.transport.mark_unusable();
    }

    /// Whether the session can carry another transaction: no error has left
    /// it out of step with the server.
    pub fn is_usable(&self) -> bool {
        self.transport.is_usable()
    }

    async fn data_command(&mut self) -> Result<Reply, ClientError> {
        let timeout = self.config.timeouts.data_init;
        let reply = self.transport.command("DATA", Step::Data, timeout).await?;
        self.data_reply(reply)
    }

    /// `354`, or a refusal the caller judges; anything else is out of step.
    fn data_reply(&mut self, reply: Reply) -> Result<Reply, ClientError> {
        match reply.code() {
            354 | 400..=599 => Ok(reply),
            _ => Err(self.unexpected(Step::Data, reply)),
        }
    }

    /// Abandons the current transaction. Only tests use it: the relays
    /// never abandon a transaction they can still finish, and retire the
    /// session when they cannot.
    #[cfg(test)]
    pub async fn rset(&mut self) -> Result<Reply, ClientError> {
        self.simple_command("RSET", Step::Rset).await
    }

    /// Checks that the session is alive. Only tests use it.
    #[cfg(test)]
    pub async fn noop(&mut self) -> Result<Reply, ClientError> {
        self.simple_command("NOOP", Step::Noop).await
    }

    /// Says goodbye and closes the connection; best effort, bounded by a few
    /// seconds, errors ignored.
    pub async fn quit(mut self) {
        let timeout = self.config.timeouts.command.min(QUIT_TIMEOUT);
        if self.transport.is_usable() {
            let _ = self.transport.command("QUIT", Step::Quit, timeout).await;
        }
        self.transport.shutdown(timeout).await;
    }

    /// Says QUIT and closes without waiting for the server's `221`, as
    /// Postfix's own client does by default (`smtp_skip_quit_response =
    /// yes`): the reply changes nothing, and waiting for it cost relay-in a
    /// task, a wake-up, a read and a `shutdown` per backend session
    /// (BENCHMARKS.md, issue 19). A plain connection whose socket takes the
    /// line at once is closed right here; a TLS one (close_notify needs the
    /// runtime) says goodbye in a task as [`Self::quit`] does.
    pub fn close(mut self) {
        if self.transport.is_tls() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(self.quit());
            }
            return;
        }
        if self.transport.is_usable() {
            self.transport.quit_and_close_now();
        }
    }

    /// EHLO and the capabilities it brings; falls back to HELO when EHLO
    /// gets a 5xx.
    async fn greet(&mut self, name: &str) -> Result<(), ClientError> {
        let name = helo_argument(name);
        let timeout = self.config.timeouts.command;
        if self.config.lmtp {
            // RFC 2033: LHLO, and no HELO fallback.
            let reply = self
                .transport
                .command(&format!("LHLO {name}"), Step::Ehlo, timeout)
                .await?;
            if reply.code() != 250 {
                return Err(self.refusal(Step::Ehlo, reply));
            }
            self.capabilities = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        let reply = self
            .transport
            .command(&format!("EHLO {name}"), Step::Ehlo, timeout)
            .await?;
        match reply.code() {
            250 => {
                self.capabilities = Capabilities::from_ehlo(&reply);
                return Ok(());
            }
            500..=599 => {}
            _ => return Err(self.refusal(Step::Ehlo, reply)),
        }
        let reply = self
            .transport
            .command(&format!("HELO {name}"), Step::Helo, timeout)
            .await?;
        if reply.code() != 250 {
            return Err(self.refusal(Step::Helo, reply));
        }
        self.capabilities = Capabilities::from_helo(&reply);
        Ok(())
    }

    /// STARTTLS per the configured mode, then EHLO again (RFC 3207 §4.2: what
    /// the server said before TLS no longer counts).
    async fn negotiate_tls(&mut self, server_name: &str) -> Result<(), ClientError> {
        let tls = self.config.tls.clone();
        let Some(connector) = tls.connector() else {
            return Ok(());
        };
        let required = tls.mode() == TlsMode::Required;
        if !self.capabilities.starttls {
            if required {
                return Err(self
                    .transport
                    .fail(Step::StartTls, ClientErrorKind::TlsNotOffered));
            }
            return Ok(());
        }
        let name = tls
            .server_name(server_name, self.transport.peer().ip())
            .map_err(|error| {
                self.transport
                    .fail(Step::StartTls, ClientErrorKind::TlsSetup(error))
            })?;
        let timeout = self.config.timeouts.command;
        let reply = self
            .transport
            .command("STARTTLS", Step::StartTls, timeout)
            .await?;
        match reply.code() {
            220 => {}
            400..=599 if !required => {
                debug!(peer = %self.transport.peer(), %reply, "STARTTLS refused; continuing in clear text");
                return Ok(());
            }
            400..=599 => return Err(self.refusal(Step::StartTls, reply)),
            _ => return Err(self.unexpected(Step::StartTls, reply)),
        }
        self.transport.start_tls(connector, name, timeout).await?;
        self.capabilities = Capabilities::default();
        let helo_name = self.config.helo_name.clone();
        self.greet(&helo_name).await
    }

    /// `MAIL FROM:<...>` with the parameters the server can take.
    fn mail_command(
        &mut self,
        from: &ReversePath,
        options: MailOptions,
    ) -> Result<String, ClientError> {
        let mut line = format!("MAIL FROM:{from}");
        if let (Some(size), Some(_)) = (options.size, self.capabilities.size) {
            line.push_str(&format!(" SIZE={size}"));
        }
        if options.eight_bit_mime && self.capabilities.eight_bit_mime {
            line.push_str(" BODY=8BITMIME");
        }
        if self.capabilities.dsn {
            if let Some(ret) = options.ret {
                line.push_str(&format!(" RET={}", ret.as_str()));
            }
            if let Some(envid) = &options.envid {
                line.push_str(&format!(" ENVID={}", envid.as_xtext()));
            }
        }
        if options.smtputf8 {
            if !self.capabilities.smtputf8 {
                return Err(self
                    .transport
                    .fail(Step::MailFrom, ClientErrorKind::SmtpUtf8NotOffered));
            }
            line.push_str(" SMTPUTF8");
        }
        if options.requiretls {
            if !(self.transport.is_tls() && self.capabilities.requiretls) {
                return Err(self
                    .transport
                    .fail(Step::MailFrom, ClientErrorKind::RequireTlsNotOffered));
            }
            line.push_str(" REQUIRETLS");
        }
        Ok(line)
    }

    async fn mail_from_line(&mut self, line: &str) -> Result<Reply, ClientError> {
        let timeout = self.config.timeouts.mail;
        let reply = self
            .transport
            .command(line, Step::MailFrom, timeout)
            .await?;
        self.transaction_reply(Step::MailFrom, reply)
    }

    #[cfg(test)]
    async fn simple_command(&mut self, line: &str, step: Step) -> Result<Reply, ClientError> {
        self.transport.ensure_usable(step)?;
        let timeout = self.config.timeouts.command;
        let reply = self.transport.command(line, step, timeout).await?;
        self.transaction_reply(step, reply)
    }

    /// A reply the caller judges: any 2xx, 4xx or 5xx. A 3xx where none can
    /// come means we no longer understand the server.
    pub(super) fn transaction_reply(
        &mut self,
        step: Step,
        reply: Reply,
    ) -> Result<Reply, ClientError> {
        if (300..400).contains(&reply.code()) {
            return Err(self.unexpected(step, reply));
        }
        match step {
            Step::MailFrom => self.accepted_rcpts = 0,
            Step::RcptTo if reply.is_positive() => self.accepted_rcpts += 1,
            _ => {}
        }
        Ok(reply)
    }

    fn refusal(&mut self, step: Step, reply: Reply) -> ClientError {
        if (400..600).contains(&reply.code()) {
            self.transport.fail(step, ClientErrorKind::Rejected(reply))
        } else {
            self.unexpected(step, reply)
        }
    }

    fn unexpected(&mut self, step: Step, reply: Reply) -> ClientError {
        self.transport
            .fail(step, ClientErrorKind::UnexpectedReply(reply))
    }

    /// Sends one AUTH line and reads the answer.
    async fn auth_step(&mut self, line: &str, shown: &str) -> Result<Reply, ClientError> {
        let timeout = self.config.timeouts.command;
        self.transport
            .send_line(line, shown, Step::Auth, timeout)
            .await?;
        self.transport.read_reply(Step::Auth, timeout).await
    }
}

/// The HELO/EHLO argument as sent: the original client's HELO name may hold
/// anything its command line could, and a control character must never reach
/// our command line.
fn helo_argument(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
