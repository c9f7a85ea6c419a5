//! One client connection: puts a [`Session`] on a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, error, info, warn};

use super::input::{InputBuffer, Line};
use super::limits::{ConnectionPermit, LimitExceeded};
use super::log;
use super::pregreet::Pregreet;
use super::proxy_protocol;
use super::shutdown::{Phase, Shutdown};
use super::{MIN_DATA_RATE_BYTES_PER_SECOND, STRESS_TIMEOUT, Shared, TLS_HANDSHAKE_TIMEOUT};
use crate::message::{Message, Spill};
use crate::metrics::{ConnectionOutcome, Outcome, metrics};
use crate::policy::{ConnectionPolicy, MailPolicy};
use crate::stream::MaybeTlsStream as ClientStream;
use smtp_protocol::session::ClientName;
use smtp_protocol::session::{Action, Session, replies};
use smtp_protocol::session::{ClientInfo, Verdict};

/// Bytes asked of the socket per read: enough for a pipelined group or a
/// good slice of DATA, small enough for 10,000 idle connections.
const READ_CHUNK: usize = 8 * 1024;

/// Bytes asked of the socket for a command between transactions' data: a
/// command line or a usual pipelined group. Small enough that glibc serves
/// the buffer from its per-thread cache (chunks up to 1,032 octets): this
/// buffer is freed whenever the client makes us wait, so a connection-per-
/// message sender had four 8 KiB mallocs and frees per message (DHAT).
const COMMAND_READ: usize = 1000;

/// Why a connection ended early; logged at debug level, since clients
/// vanishing is routine on port 25.
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("client stopped reading our replies")]
    WriteTimeout,
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("no TLS certificate available after STARTTLS was accepted")]
    TlsVanished,
}

/// What a read brought.
enum Input {
    Data,
    Eof,
    Timeout,
    Shutdown(Phase),
}

/// Accepts one TCP connection: limits, reverse DNS, early-talker check,
/// then the session loop.
pub(crate) async fn serve<P: MailPolicy>(
    mut tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared<P>>,
    shutdown: Shutdown,
) {
    let conn_id = crate::id::connection_id();
    let me = &shared.config.me;
    let Some((peer, proxy)) =
        proxy_protocol::client(&mut tcp, peer, &shared.config, &conn_id).await
    else {
        return;
    };
    let trusted = shared.policy.trusts(peer.ip());
    let permit = match shared.limits.try_acquire(peer.ip(), !trusted) {
        Ok(permit) => permit,
        Err(exceeded) => {
            let reply = match exceeded {
                LimitExceeded::Total => replies::too_many_connections(me),
                LimitExceeded::PerIp => replies::too_many_connections_from_ip(me),
            };
            if shared
                .log_throttle
                .should_log(peer.ip(), "connection cap", Instant::now())
            {
                info!(conn = %conn_id, client = %peer.ip(), code = reply.code(), "connection refused (logged once a minute per address): {reply}");
            }
            refuse(&mut tcp, &reply.to_wire()).await;
            return;
        }
    };
    if let Some(rate) = &shared.connection_rate
        && !trusted
        && !rate.allow(peer.ip(), Instant::now())
    {
        metrics().connection(ConnectionOutcome::RefusedRate);
        let reply = replies::connection_rate_exceeded(me);
        if shared
            .log_throttle
            .should_log(peer.ip(), "connection rate", Instant::now())
        {
            info!(conn = %conn_id, client = %peer.ip(), code = reply.code(), "limit.ini [rate_conn] exceeded (logged once a minute per address): {reply}");
        }
        refuse(&mut tcp, &reply.to_wire()).await;
        return;
    }
    debug!(conn = %conn_id, client = %peer.ip(), port = peer.port(), local = %local, proxy = proxy.map(tracing::field::display), "connection opened");

    let lookup = async {
        match &shared.dns {
            Some(dns) => dns.client_name(peer.ip()).await,
            None => ClientName::Unavailable,
        }
    };
    let implicit_tls = local.port() == shared.config.smtps_port;
    // The reverse lookup runs during the pregreet wait, which hides its
    // cost. Both futures live on the heap only while they run: inline, they
    // would enlarge every connection's task for its whole life.
    let skip_pregreet = implicit_tls || trusted;
    let mut output = Vec::with_capacity(512);
    let (name, pregreet) = Box::pin(async {
        if skip_pregreet {
            (lookup.await, Pregreet::Quiet)
        } else {
            let test = shared.pregreet.run(&mut tcp, me, peer.ip(), &mut output);
            tokio::join!(lookup, test)
        }
    })
    .await;
    match pregreet {
        Pregreet::Talked
            if proxy_protocol::refused_unlisted(&mut tcp, peer.ip(), me, &conn_id).await =>
        {
            return;
        }
        Pregreet::Talked if shared.config.early_talker_reject => {
            metrics().connection(ConnectionOutcome::EarlyTalker);
            let reply = replies::early_talker(me);
            info!(conn = %conn_id, client = %peer.ip(), code = reply.code(), "early talker refused: client sent data before the greeting");
            refuse(&mut tcp, &reply.to_wire()).await;
            return;
        }
        Pregreet::Gone => {
            debug!(conn = %conn_id, client = %peer.ip(), "client left before the greeting");
            return;
        }
        Pregreet::Talked | Pregreet::Quiet => {}
    }

    metrics().connection(ConnectionOutcome::Accepted);
    metrics().connections_open.inc();
    let _open = OpenConnection;
    let client = ClientInfo {
        peer,
        local,
        name,
        proxy,
    };
    let policy = shared.policy.connect(&client);
    let session = Session::new(Arc::clone(&shared.session), client, conn_id);
    let mut connection = Connection {
        permit: Some(permit),
        deadline: Instant::now(),
        data_progress: None,
        spill: Spilling::No,
        stream: ClientStream::Plain(tcp),
        input: InputBuffer::default(),
        output,
        session,
        policy,
        shared,
        shutdown,
    };
    let result = connection.run().await;
    if connection.session.in_transaction() {
        info!(conn = %connection.session.info().conn_id, client = %peer.ip(), "connection ended mid-transaction; nothing was accepted");
        connection.policy.reset();
    }
    match result {
        Ok(()) => debug!(conn = %connection.session.info().conn_id, "connection closed"),
        Err(end) => {
            debug!(conn = %connection.session.info().conn_id, client = %peer.ip(), "connection ended: {end}")
        }
    }
}

/// Whether the message being received has moved to disk.
enum Spilling {
    No,
    Yes(Spill),
    /// The temporary file could not be written: the message is still read
    /// to its end, then refused with 451.
    Failed,
}

/// Decrements the open-connections gauge however the connection ends.
struct OpenConnection;

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics().connections_open.dec();
    }
}

/// Best effort: a refused client gets its reply if it is listening.
pub(super) async fn refuse(tcp: &mut TcpStream, reply: &str) {
    let _ = timeout(Duration::from_secs(5), async {
        tcp.write_all(reply.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

/// The session loop's state: socket, buffers, protocol and policy.
struct Connection<P: MailPolicy> {
    /// This connection's place under the connection caps, given back as
    /// soon as the session is over: a client that got its `221` and connects
    /// again at once must find its slot free, not still held by this task
    /// while it closes the socket.
    permit: Option<ConnectionPermit>,
    /// When the record being received (a command line, or the message so
    /// far) must be complete; partial input does not push it back.
    deadline: Instant,
    /// DATA in progress: when it began and the octets consumed since.
    data_progress: Option<(Instant, u64)>,
    /// Where the message of the current transaction goes once it is large.
    spill: Spilling,
    stream: ClientStream,
    input: InputBuffer,
    output: Vec<u8>,
    session: Session,
    policy: P::Connection,
    shared: Arc<Shared<P>>,
    shutdown: Shutdown,
}

impl<P: MailPolicy> Connection<P> {
    async fn run(&mut self) -> Result<(), ConnectionEnd> {
        if self.implicit_tls() {
            self.handshake().await?;
            let tls = self.stream.tls_info().ok_or(ConnectionEnd::TlsVanished)?;
            let action = self.session.tls_established(tls);
            self.act(action).await?;
        }
        self.session.set_tls_available(self.tls_available());
        self.offer_auth();
        let action = self.session.greet();
        self.act(action).await?;
        self.restart_deadline();
        let max_line = self.shared.config.max_line_length;
        while !self.session.is_closed() {
            let action = if self.session.is_receiving_data() {
                if self.input.is_empty() {
                    None
                } else {
                    let (consumed, action) = self.session.data(self.input.available());
                    self.input.consume(consumed);
                    self.data_received(consumed);
                    if self.session.is_receiving_data() {
                        self.spill_if_large();
                    }
                    Some(action)
                }
            } else {
                match self.input.next_line(max_line) {
                    Line::Complete(line) => Some(self.session.command_line(line)),
                    Line::TooLong => Some(self.session.line_too_long()),
                    Line::Incomplete => self.idle_shutdown(),
                }
            };
            if action.is_some() && !self.session.is_receiving_data() {
                self.restart_deadline();
            }
            match action {
                Some(action) => self.act(action).await?,
                None => {
                    self.flush().await?;
                    match self.read().await? {
                        Input::Data => {}
                        Input::Eof => return Ok(()),
                        Input::Timeout => {
                            info!(conn = %self.session.info().conn_id, client = %self.session.info().client.peer.ip(), "inactivity timeout");
                            let action = self.session.timeout();
                            self.act(action).await?;
                        }
                        Input::Shutdown(phase) => {
                            if let Some(action) = self.shutdown_action(phase) {
                                self.act(action).await?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The timeout in force: shorter when the server is nearly full.
    fn timeout(&self) -> Duration {
        let config = &self.shared.config;
        if self.shared.limits.is_stressed() {
            config.inactivity_timeout.min(STRESS_TIMEOUT)
        } else {
            config.inactivity_timeout
        }
    }

    /// A new record (command line) begins: it has the whole timeout.
    fn restart_deadline(&mut self) {
        self.data_progress = None;
        self.deadline = Instant::now() + self.timeout();
    }

    /// DATA gets the timeout plus time in proportion to what has arrived,
    /// so a large message at a decent rate is never cut, while a trickle is.
    fn data_received(&mut self, octets: usize) {
        let now = Instant::now();
        let (started, total) = self.data_progress.get_or_insert((now, 0));
        *total += octets as u64;
        let rate = MIN_DATA_RATE_BYTES_PER_SECOND;
        let earned = Duration::from_millis(total.saturating_mul(1000) / rate);
        self.deadline = *started + self.timeout() + earned;
    }

    /// Between commands, a draining server says goodbye at once.
    fn idle_shutdown(&mut self) -> Option<Action> {
        self.shutdown_action(self.shutdown.phase())
    }

    fn shutdown_action(&mut self, phase: Phase) -> Option<Action> {
        let stop = match phase {
            Phase::Running => false,
            Phase::Draining => !self.session.in_transaction(),
            Phase::Forced => true,
        };
        stop.then(|| self.session.shutdown())
    }

    /// Carries out an action and every action that follows from it, until the
    /// session wants more input.
    ///
    /// The policy's futures (a whole backend dialogue for relay-in) are
    /// boxed here, as are the TLS handshake in [`Self::handshake`] and the
    /// reverse-DNS lookup in [`serve`]: inlined, they made every connection's
    /// task about 10 KB even while it idles, and 10,000 idle connections must
    /// fit in 150 MB. A box per call costs nothing next to the I/O behind it.
    async fn act(&mut self, mut action: Action) -> Result<(), ConnectionEnd> {
        loop {
            action = match action {
                Action::Continue => break,
                Action::ReceiveData => {
                    if let Some(envelope) = self.session.envelope() {
                        self.policy.data_started(self.session.info(), envelope);
                    }
                    break;
                }
                Action::CheckSender(check) => {
                    let info = self.session.info();
                    let verdict =
                        Box::pin(self.policy.mail_from(info, check.from(), check.params())).await;
                    self.session.sender_verdict(*check, verdict)
                }
                Action::CheckRecipient(check) if !self.recipient_rate_allows() => {
                    let verdict = Verdict::Reject(replies::recipient_rate_exceeded());
                    self.session.recipient_verdict(check, verdict)
                }
                Action::CheckRecipient(check) => {
                    let info = self.session.info();
                    let verdict = Box::pin(self.policy.rcpt_to(
                        info,
                        check.envelope(),
                        check.recipient(),
                        check.params(),
                    ))
                    .await;
                    self.session.recipient_verdict(check, verdict)
                }
                Action::StampReceived => {
                    let date = chrono::Local::now().to_rfc2822();
                    self.session.stamp_received(&date)
                }
                Action::DeliverMessage(mut delivery) => {
                    let verdict = match self.complete_message(delivery.take_message()) {
                        Ok(message) => {
                            let info = self.session.info();
                            Box::pin(self.policy.message(info, delivery.envelope(), message)).await
                        }
                        Err(()) => Verdict::Reject(replies::local_error()),
                    };
                    self.session.message_verdict(delivery, verdict)
                }
                Action::IssueChallenge => {
                    let random = crate::id::random_id(10);
                    self.session.issue_challenge(&random)
                }
                Action::Authenticate(check) => {
                    let info = self.session.info();
                    let credentials = check.credentials();
                    let verdict = Box::pin(self.policy.authenticate(info, credentials)).await;
                    log::authentication(info, credentials, verdict);
                    self.session.auth_verdict(*check, verdict)
                }
                Action::StartTls => self.start_tls().await?,
                Action::Reset => {
                    self.policy.reset();
                    Action::Continue
                }
                Action::Close => {
                    self.permit = None;
                    // The closing reply goes with the FIN in one packet.
                    self.session.write_replies(&mut self.output);
                    let taken = self.stream.send_last_line(&self.output);
                    self.output.drain(..taken);
                    self.flush().await?;
                    let _ = timeout(Duration::from_secs(5), self.stream.shutdown()).await;
                    break;
                }
            };
            self.after_step();
        }
        self.after_step();
        Ok(())
    }

    /// What the session reported of its last step goes to the log.
    fn after_step(&mut self) {
        if self.session.take_out_of_sequence() {
            log::out_of_sequence(self.session.info());
        }
        if let Some(record) = self.session.take_finished() {
            self.spill = Spilling::No;
            metrics().transaction(match record.reply.code() {
                200..=399 => Outcome::Accepted,
                400..=499 => Outcome::TempFailed,
                _ => Outcome::Rejected,
            });
            log::transaction(self.session.info(), &record);
        }
    }

    /// Past `spool_after` buffered bytes, moves the message received so far
    /// to an anonymous temporary file, and keeps appending there.
    fn spill_if_large(&mut self) {
        let Some(threshold) = self.shared.config.spool_after else {
            return;
        };
        let buffered = self.session.buffered_data();
        if buffered == 0 || (matches!(self.spill, Spilling::No) && buffered < threshold) {
            return;
        }
        let bytes = self.session.drain_buffered_data();
        if matches!(self.spill, Spilling::No) {
            self.spill = match Spill::create(&self.shared.config.spool_dir) {
                Ok(spill) => Spilling::Yes(spill),
                Err(e) => {
                    error!(conn = %self.session.info().conn_id, dir = %self.shared.config.spool_dir.display(), "cannot create a temporary file for a large message: {e}");
                    Spilling::Failed
                }
            };
        }
        if let Spilling::Yes(spill) = &mut self.spill
            && let Err(e) = spill.append(&bytes)
        {
            error!(conn = %self.session.info().conn_id, "cannot write a large message to its temporary file: {e}");
            self.spill = Spilling::Failed;
        }
    }

    /// The message for the policy, from memory or from its spill file. A
    /// failed spill is an error: the sender gets 451, nothing is lost.
    fn complete_message(&mut self, rest: Vec<u8>) -> Result<Message, ()> {
        match std::mem::replace(&mut self.spill, Spilling::No) {
            Spilling::No => Ok(Message::Memory(rest)),
            Spilling::Yes(mut spill) => match spill.append(&rest) {
                Ok(()) => Ok(spill.finish()),
                Err(e) => {
                    error!(conn = %self.session.info().conn_id, "cannot write a large message to its temporary file: {e}");
                    Err(())
                }
            },
            Spilling::Failed => Err(()),
        }
    }

    /// limit.ini `[rate_rcpt_host]`; refusals are logged once a minute.
    fn recipient_rate_allows(&self) -> bool {
        let Some(rate) = &self.shared.recipient_rate else {
            return true;
        };
        let ip = self.session.info().client.peer.ip();
        if rate.allow(ip, Instant::now()) {
            return true;
        }
        if self
            .shared
            .log_throttle
            .should_log(ip, "recipient rate", Instant::now())
        {
            info!(conn = %self.session.info().conn_id, client = %ip, "limit.ini [rate_rcpt_host] exceeded: 451 4.7.1 (logged once a minute per address)");
        }
        false
    }

    /// A listener on `smtps_port` speaks TLS from the first byte (RFC 8314).
    fn implicit_tls(&self) -> bool {
        self.session.info().client.local.port() == self.shared.config.smtps_port
    }

    fn offer_auth(&mut self) {
        let mechanisms = self.policy.auth_mechanisms(self.session.info());
        self.session.set_auth_mechanisms(mechanisms);
    }

    fn tls_available(&self) -> bool {
        let client = self.session.info().client.peer.ip();
        let excluded = self
            .shared
            .config
            .tls
            .no_tls_hosts
            .iter()
            .any(|net| net.contains(client));
        self.shared.config.tls.starttls
            && !excluded
            && self.shared.tls.as_ref().is_some_and(|t| t.is_available())
    }

    /// RFC 3207 and CVE-2011-0411: the `220` goes out, then whatever the
    /// client sent after STARTTLS in clear text is thrown away, never
    /// executed inside the TLS session.
    async fn start_tls(&mut self) -> Result<Action, ConnectionEnd> {
        self.flush().await?;
        let discarded = self.input.discard_all();
        if discarded > 0 {
            warn!(conn = %self.session.info().conn_id, client = %self.session.info().client.peer.ip(), bytes = discarded, "discarded input pipelined after STARTTLS (command injection attempt?)");
        }
        self.handshake().await?;
        let tls_info = self.stream.tls_info().ok_or(ConnectionEnd::TlsVanished)?;
        debug!(conn = %self.session.info().conn_id, protocol = %tls_info.protocol, cipher = %tls_info.cipher, "TLS established");
        let action = self.session.tls_established(tls_info);
        self.offer_auth();
        Ok(action)
    }

    /// The server side of the TLS handshake on the plain socket.
    async fn handshake(&mut self) -> Result<(), ConnectionEnd> {
        let acceptor = self
            .shared
            .tls
            .as_ref()
            .and_then(|tls| tls.acceptor())
            .ok_or(ConnectionEnd::TlsVanished)?;
        let tcp = self.stream.take_plain().ok_or(ConnectionEnd::TlsVanished)?;
        let handshake = Box::pin(timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)));
        match handshake.await {
            Ok(Ok(tls)) => {
                metrics().tls_sessions.inc();
                self.stream = ClientStream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)))
            }
            Ok(Err(e)) => {
                info!(conn = %self.session.info().conn_id, client = %self.session.info().client.peer.ip(), "TLS handshake failed: {e}");
                return Err(ConnectionEnd::Handshake(e));
            }
            Err(_) => return Err(ConnectionEnd::HandshakeTimeout),
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectionEnd> {
        self.session.write_replies(&mut self.output);
        if self.output.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match timeout(self.shared.config.inactivity_timeout, write).await {
            Ok(result) => result?,
            Err(_) => return Err(ConnectionEnd::WriteTimeout),
        }
        self.output.clear();
        Ok(())
    }

    async fn read(&mut self) -> Result<Input, ConnectionEnd> {
        let seen = self.shutdown.phase();
        let Connection {
            stream,
            input,
            session,
            policy,
            deadline,
            shutdown,
            ..
        } = self;
        // The policy's own work goes on while we wait: polled with every
        // wait below, it never ends a wait itself.
        let mut background = std::future::poll_fn(|cx| {
            let _ = policy.poll_background(cx);
            std::task::Poll::<std::convert::Infallible>::Pending
        });
        if input.is_empty()
            && !session.is_receiving_data()
            && let ClientStream::Plain(tcp) = &mut *stream
        {
            loop {
                let waited = {
                    let ready = tokio::time::timeout_at((*deadline).into(), tcp.readable());
                    let mut ready = std::pin::pin!(ready);
                    // Between commands a connection may idle for minutes,
                    // and thousands may: none holds a read buffer while it
                    // waits. But a prompt client's next command is often
                    // there already: then the buffer is kept, not freed and
                    // allocated again for every command (8 KiB each way).
                    let at_once = std::future::poll_fn(|cx| {
                        let _ = std::pin::Pin::new(&mut background).poll(cx);
                        std::task::Poll::Ready(ready.as_mut().poll(cx))
                    })
                    .await;
                    match at_once {
                        std::task::Poll::Ready(result) => result,
                        std::task::Poll::Pending => {
                            input.release();
                            tokio::select! {
                                biased;
                                never = &mut background => match never {},
                                result = &mut ready => result,
                                phase = shutdown.changed_from(seen) => return Ok(Input::Shutdown(phase)),
                            }
                        }
                    }
                };
                match waited {
                    Err(_) => return Ok(Input::Timeout),
                    Ok(Err(e)) => return Err(e.into()),
                    Ok(Ok(())) => {}
                }
                // Readable: read without arming a second timer and
                // shutdown watch, polled once. A read that leaves the socket
                // empty clears tokio's readiness (poll_read does; try_read
                // would not), so the next wait waits instead of ending at
                // once in a read that finds nothing: one `recvfrom` fewer
                // per command. A stale readiness (nothing to read after
                // all) is cleared by that one read: the buffer goes back
                // before waiting again.
                let once = {
                    let mut read = std::pin::pin!(tcp.read_buf(input.spare(COMMAND_READ)));
                    std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await
                };
                match once {
                    std::task::Poll::Ready(Ok(0)) => return Ok(Input::Eof),
                    std::task::Poll::Ready(Ok(_)) => return Ok(Input::Data),
                    std::task::Poll::Ready(Err(e)) => return Err(e.into()),
                    std::task::Poll::Pending => input.release(),
                }
            }
        }
        let buffer = input.spare(READ_CHUNK);
        let read = tokio::time::timeout_at((*deadline).into(), stream.read_buf(buffer));
        tokio::select! {
            biased;
            never = &mut background => match never {},
            result = read => match result {
                Err(_) => Ok(Input::Timeout),
                Ok(Ok(0)) => Ok(Input::Eof),
                Ok(Ok(_)) => Ok(Input::Data),
                Ok(Err(e)) => Err(e.into()),
            },
            phase = shutdown.changed_from(seen) => Ok(Input::Shutdown(phase)),
        }
    }
}
