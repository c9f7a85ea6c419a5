//! A recording SMTP server that plays relay-in's backend (or an MX, smart
//! host or LMTP server for relay-out): scriptable replies and failures,
//! optional STARTTLS, AUTH and LMTP, and a record of every command line and
//! every message it accepted.
//!
//! relay-in probes its backend (connect, EHLO, QUIT) at startup and every
//! minute. A session that never goes beyond EHLO, STARTTLS and QUIT is such
//! a probe: it is counted in [`Record::probes`] and kept out of
//! [`Record::lines`] and [`Record::connections`], so tests that count mail
//! sessions are not thrown by when a probe happens to come.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_protocol::sasl::{SaslExchange, SaslMechanism, SaslStep};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A stream a session runs on, before or after STARTTLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What happens after the client's final dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterData {
    /// Answer this reply line.
    Reply(String),
    /// Never answer (the client's timeout must fire).
    Hang,
}

/// How the backend behaves; changeable while it runs.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The XCLIENT attribute list to advertise; `None`: no XCLIENT.
    pub xclient: Option<String>,
    /// Reply line to XCLIENT.
    pub xclient_reply: String,
    /// Refuse XCLIENT (`503 5.5.1`) in a session that has not said EHLO,
    /// as a backend stricter than Postfix might.
    pub xclient_needs_ehlo: bool,
    pub pipelining: bool,
    pub mail_reply: String,
    /// Reply line for RCPT by recipient address (without brackets); default 250.
    pub rcpt_replies: Vec<(String, String)>,
    /// Close the connection halfway through the message data.
    pub close_mid_data: bool,
    pub after_data: AfterData,
    /// Offer STARTTLS with this server configuration.
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    /// Offer AUTH (before and after TLS alike) and accept these credentials.
    pub auth: Option<BackendAuth>,
    /// Speak LMTP (RFC 2033): answer LHLO, refuse EHLO/HELO, and after the
    /// data reply once per accepted recipient.
    pub lmtp: bool,
    /// LMTP: the reply after the data by recipient address (default
    /// `after_data`'s reply).
    pub data_replies: Vec<(String, String)>,
    /// End each session after this many accepted messages, as a backend
    /// does on its idle timeout or a restart.
    pub end_session: Option<EndSession>,
    /// Answer the data of the first N sessions (counted from the start)
    /// with this reply instead of `after_data`'s, e.g. a 4xx that the
    /// client must retry later.
    pub first_sessions_data_reply: Option<(usize, String)>,
    /// Offer DSN (RFC 3461). Without it, a MAIL or RCPT carrying a DSN
    /// parameter is refused with 555, as a server without DSN does.
    pub dsn: bool,
    /// Every Nth session (counted from the start, as they connect; N, 2N,
    /// ...) answers MAIL with this reply, as a provider rate-limiting the
    /// sender does (`421 4.7.28 ...`).
    pub rate_reply_every: Option<(usize, String)>,
    /// Waits this long before answering the data, so that a client's
    /// sessions overlap and [`Record::max_in_flight`] means something.
    pub data_delay: Duration,
}

/// How and when a backend ends a session on its own.
#[derive(Clone, Copy, Debug)]
pub struct EndSession {
    /// Accepted messages after which the session ends.
    pub after_messages: usize,
    /// Say `421` first (Postfix on its idle timeout) rather than just close.
    pub with_421: bool,
}

/// The AUTH a backend offers and the one user it accepts.
#[derive(Clone, Debug)]
pub struct BackendAuth {
    /// The EHLO keyword's mechanisms, e.g. `PLAIN LOGIN`.
    pub mechanisms: String,
    pub user: String,
    pub password: String,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            xclient: Some("NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT".into()),
            xclient_reply: "220 backend.test ESMTP".into(),
            xclient_needs_ehlo: false,
            pipelining: true,
            mail_reply: "250 2.1.0 Ok".into(),
            rcpt_replies: Vec::new(),
            close_mid_data: false,
            after_data: AfterData::Reply("250 2.0.0 Ok: queued as BACKEND1".into()),
            starttls: None,
            auth: None,
            lmtp: false,
            data_replies: Vec::new(),
            end_session: None,
            first_sessions_data_reply: None,
            dsn: false,
            rate_reply_every: None,
            data_delay: Duration::ZERO,
        }
    }
}

/// One message the backend said 250 to.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// Dot-unstuffed data, without the final dot line.
    pub data: Vec<u8>,
    /// The XCLIENT line of that session, if any, and the EHLO lines.
    pub xclient: Option<String>,
    pub ehlos: Vec<String>,
    pub peer: SocketAddr,
    /// The message came over TLS (STARTTLS).
    pub tls: bool,
    /// The user that authenticated in that session.
    pub auth: Option<String>,
}

/// Everything seen, for assertions.
#[derive(Debug, Default)]
pub struct Record {
    /// Every command line of every mail session, in arrival order (a
    /// session's EHLO is added when its first other command arrives).
    pub lines: Vec<String>,
    pub accepted: Vec<Accepted>,
    /// Mail sessions: those that sent a command beyond EHLO, STARTTLS and
    /// QUIT.
    pub connections: usize,
    /// Sessions that ended without one, such as relay-in's probes.
    pub probes: usize,
    /// Every TCP session, probes included, counted as it connects.
    pub sessions: usize,
    /// Sessions open now, and the most ever open at once.
    pub in_flight: usize,
    pub max_in_flight: usize,
}

/// See the module docs: a server on a loopback address whose behaviour a
/// test scripts and whose record it inspects.
pub struct RecordingBackend {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    record: Arc<Mutex<Record>>,
    accept_task: Option<JoinHandle<()>>,
    /// The sessions started, for [`Self::end_sessions`].
    sessions: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    /// While [`Self::silence`]d: the listener nobody accepts on, and the
    /// connections that fill its queue.
    silent: Option<(TcpListener, Vec<TcpStream>)>,
}

impl RecordingBackend {
    pub async fn start(behaviour: Behaviour) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, behaviour).await
    }

    pub async fn start_on(addr: SocketAddr, behaviour: Behaviour) -> anyhow::Result<Self> {
        let mut backend = RecordingBackend {
            addr,
            behaviour: Arc::new(Mutex::new(behaviour)),
            record: Arc::new(Mutex::new(Record::default())),
            accept_task: None,
            sessions: Arc::default(),
            silent: None,
        };
        backend.serve_on(bind(addr, LISTEN_BACKLOG)?)?;
        Ok(backend)
    }

    fn serve_on(&mut self, listener: TcpListener) -> anyhow::Result<()> {
        self.addr = listener.local_addr()?;
        let behaviour = Arc::clone(&self.behaviour);
        let record = Arc::clone(&self.record);
        let sessions = Arc::clone(&self.sessions);
        self.accept_task = Some(tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let behaviour = behaviour.lock().unwrap().clone();
                let session = tokio::spawn(serve(stream, peer, behaviour, Arc::clone(&record)));
                let mut sessions = sessions.lock().unwrap();
                sessions.retain(|s| !s.is_finished());
                sessions.push(session.abort_handle());
            }
        }));
        Ok(())
    }

    /// Stops listening: connections are refused until [`Self::up`].
    pub fn down(&mut self) {
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
        self.silent = None;
    }

    /// Drops every open session without a word, as a restarted or crashed
    /// server does: a client that kept its session (relay-out's session
    /// cache) finds it closed, and new sessions get the current
    /// [`Behaviour`] (each session keeps the one it started with).
    pub fn end_sessions(&self) {
        for session in self.sessions.lock().unwrap().drain(..) {
            session.abort();
        }
    }

    /// [`Self::down`] and [`Self::end_sessions`]: the host is gone.
    pub fn crash(&mut self) {
        self.down();
        self.end_sessions();
    }

    /// Goes silent like a backend behind a tunnel that is down: the port
    /// stays bound but nothing is accepted and its listen queue is full, so
    /// the kernel drops each new connection's SYN and a client's connect
    /// times out instead of being refused. Until [`Self::up`].
    pub async fn silence(&mut self) -> anyhow::Result<()> {
        self.down();
        let listener = rebind(self.addr, 0).await?;
        let mut queued = Vec::new();
        // A backlog of 0 queues one connection; the next finds it full.
        while let Ok(connected) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(self.addr)).await
        {
            queued.push(connected?);
            anyhow::ensure!(queued.len() < 16, "the listen queue never filled");
        }
        self.silent = Some((listener, queued));
        Ok(())
    }

    /// Listens again after [`Self::down`] or [`Self::silence`].
    pub async fn up(&mut self) -> anyhow::Result<()> {
        self.silent = None;
        if self.accept_task.is_none() {
            let listener = rebind(self.addr, LISTEN_BACKLOG).await?;
            self.serve_on(listener)?;
        }
        Ok(())
    }

    /// Sessions that ended without a mail command (relay-in's probes).
    pub fn probes(&self) -> usize {
        self.record().probes
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap()
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.record().accepted.clone()
    }

    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.record()
            .lines
            .iter()
            .filter(|l| l.to_ascii_uppercase().starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.down();
    }
}

/// The listen queue of a backend that accepts.
const LISTEN_BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Binds `addr` again after [`RecordingBackend::down`]: the aborted accept
/// task drops its listener asynchronously, so retry briefly.
async fn rebind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    for _ in 0..50 {
        if let Ok(listener) = bind(addr, backlog) {
            return Ok(listener);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bind(addr, backlog)
}

async fn serve(stream: TcpStream, peer: SocketAddr, mut b: Behaviour, record: Arc<Mutex<Record>>) {
    {
        let mut record = record.lock().unwrap();
        record.sessions += 1;
        record.in_flight += 1;
        record.max_in_flight = record.max_in_flight.max(record.in_flight);
        if let Some((every, reply)) = &b.rate_reply_every
            && record.sessions.is_multiple_of(*every.max(&1))
        {
            b.mail_reply = reply.clone();
        }
    }
    let mut tally = Tally {
        record: &record,
        held: Vec::new(),
        mail: false,
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        session(Box::new(stream), peer, &mut b, &mut tally),
    )
    .await;
    tally.end();
    record.lock().unwrap().in_flight -= 1;
}

/// Sorts a session into a mail session or a probe (see the module docs) as
/// its command lines arrive.
struct Tally<'r> {
    record: &'r Mutex<Record>,
    /// Lines of a session not known to be a mail session yet.
    held: Vec<String>,
    mail: bool,
}

impl Tally<'_> {
    /// Records `line`; the first command a probe does not send makes this a
    /// mail session, numbered for `first_sessions_data_reply`.
    fn line(&mut self, line: &str, b: &mut Behaviour) {
        let upper = line.to_ascii_uppercase();
        let probe_command = ["EHLO", "HELO", "LHLO", "STARTTLS", "QUIT"]
            .iter()
            .any(|verb| upper.split(' ').next() == Some(verb));
        if !self.mail && probe_command {
            self.held.push(line.to_owned());
            return;
        }
        let mut record = self.record.lock().unwrap();
        if !self.mail {
            self.mail = true;
            record.connections += 1;
            if let Some((sessions, reply)) = &b.first_sessions_data_reply
                && record.connections <= *sessions
            {
                b.after_data = AfterData::Reply(reply.clone());
            }
            record.lines.append(&mut self.held);
        }
        record.lines.push(line.to_owned());
    }

    fn end(self) {
        if !self.mail {
            self.record.lock().unwrap().probes += 1;
        }
    }
}

/// What the session knows so far.
#[derive(Default)]
struct SessionState {
    mail_from: String,
    rcpts: Vec<String>,
    xclient: Option<String>,
    ehlos: Vec<String>,
    tls: bool,
    auth: Option<String>,
    accepted: usize,
}

async fn session(
    mut stream: Box<dyn Stream>,
    peer: SocketAddr,
    b: &mut Behaviour,
    tally: &mut Tally<'_>,
) -> std::io::Result<()> {
    let record = tally.record;
    let mut buf = Vec::new();
    let banner = if b.lmtp {
        "220 backend.test LMTP\r\n"
    } else {
        "220 backend.test ESMTP\r\n"
    };
    stream.write_all(banner.as_bytes()).await?;
    let mut st = SessionState::default();
    loop {
        let Some(line) = read_line(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        tally.line(&line, b);
        let b = &*b;
        let upper = line.to_ascii_uppercase();
        let greeting = if b.lmtp { "LHLO" } else { "EHLO" };
        let reply: String = if upper.starts_with(greeting) {
            st.ehlos.push(line.clone());
            let mut lines = vec!["250-backend.test".to_string()];
            if b.pipelining {
                lines.push("250-PIPELINING".into());
            }
            if let Some(attrs) = &b.xclient {
                lines.push(format!("250-XCLIENT {attrs}"));
            }
            if b.starttls.is_some() && !st.tls {
                lines.push("250-STARTTLS".into());
            }
            if let Some(auth) = &b.auth {
                lines.push(format!("250-AUTH {}", auth.mechanisms));
            }
            if b.dsn {
                lines.push("250-DSN".into());
            }
            lines.push("250 8BITMIME".into());
            lines.join("\r\n")
        } else if upper.starts_with("HELO") && !b.lmtp {
            st.ehlos.push(line.clone());
            "250 backend.test".into()
        } else if upper == "STARTTLS" && !st.tls && b.starttls.is_some() {
            stream
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await?;
            let Some(config) = &b.starttls else {
                return Ok(());
            };
            let acceptor = TlsAcceptor::from(Arc::clone(config));
            stream = Box::new(acceptor.accept(stream).await?);
            buf.clear();
            st = SessionState {
                tls: true,
                ..SessionState::default()
            };
            continue;
        } else if upper.starts_with("AUTH ") && b.auth.is_some() {
            match authenticate(&mut stream, &mut buf, &line, b, record).await? {
                Some(user) => {
                    st.auth = Some(user);
                    "235 2.7.0 Authentication successful".into()
                }
                None => "535 5.7.8 Authentication credentials invalid".into(),
            }
        } else if upper.starts_with("XCLIENT") && b.xclient_needs_ehlo && st.ehlos.is_empty() {
            "503 5.5.1 Error: send EHLO first".into()
        } else if upper.starts_with("XCLIENT") {
            st.xclient = Some(line.clone());
            b.xclient_reply.clone()
        } else if (upper.starts_with("MAIL FROM:") || upper.starts_with("RCPT TO:"))
            && !b.dsn
            && ["NOTIFY=", "ORCPT=", "RET=", "ENVID="]
                .iter()
                .any(|param| upper.contains(&format!(" {param}")))
        {
            "555 5.5.4 Unsupported option: DSN".into()
        } else if upper.starts_with("MAIL FROM:") {
            st.mail_from = line[10..].trim().to_string();
            st.rcpts.clear();
            b.mail_reply.clone()
        } else if upper.starts_with("RCPT TO:") {
            // The path alone, without any parameters after it.
            let path = line[8..].trim();
            let path = path.split_once('>').map_or(path, |(path, _)| path);
            let addr = path.trim_start_matches('<').to_string();
            let reply = b
                .rcpt_replies
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(&addr))
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| "250 2.1.5 Ok".into());
            if reply.starts_with('2') {
                st.rcpts.push(addr);
            }
            reply
        } else if upper == "DATA" {
            stream
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = Vec::new();
            loop {
                let Some(line) = read_raw_line(&mut stream, &mut buf).await? else {
                    return Ok(());
                };
                if b.close_mid_data && data.len() > 10 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                let line = line.strip_prefix(b".").unwrap_or(&line);
                data.extend_from_slice(line);
            }
            let default_reply = match &b.after_data {
                AfterData::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return Ok(());
                }
                AfterData::Reply(reply) => reply.clone(),
            };
            tokio::time::sleep(b.data_delay).await;
            // SMTP: one verdict for all; LMTP: one per accepted recipient.
            let verdicts: Vec<(Option<&String>, String)> = if b.lmtp {
                st.rcpts
                    .iter()
                    .map(|rcpt| {
                        let reply = b
                            .data_replies
                            .iter()
                            .find(|(a, _)| a.eq_ignore_ascii_case(rcpt))
                            .map_or_else(|| default_reply.clone(), |(_, r)| r.clone());
                        (Some(rcpt), reply)
                    })
                    .collect()
            } else {
                vec![(None, default_reply)]
            };
            let taken: Vec<String> = verdicts
                .iter()
                .filter(|(_, reply)| reply.starts_with('2'))
                .map(|(rcpt, _)| rcpt.cloned())
                .map(|rcpt| rcpt.unwrap_or_default())
                .collect();
            if !taken.is_empty() {
                st.accepted += 1;
                record.lock().unwrap().accepted.push(Accepted {
                    mail_from: st.mail_from.clone(),
                    rcpts: if b.lmtp { taken } else { st.rcpts.clone() },
                    data,
                    xclient: st.xclient.clone(),
                    ehlos: st.ehlos.clone(),
                    peer,
                    tls: st.tls,
                    auth: st.auth.clone(),
                });
            }
            let replies: Vec<String> = verdicts.into_iter().map(|(_, reply)| reply).collect();
            if let Some(end) = b
                .end_session
                .filter(|end| st.accepted >= end.after_messages)
            {
                stream
                    .write_all(format!("{}\r\n", replies.join("\r\n")).as_bytes())
                    .await?;
                if end.with_421 {
                    stream
                        .write_all(b"421 4.4.2 backend.test Error: timeout exceeded\r\n")
                        .await?;
                }
                return Ok(());
            }
            replies.join("\r\n")
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            stream.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Error: command not recognized".into()
        };
        stream.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// Runs one AUTH exchange (smtp-protocol's server-side SASL); the user name when
/// the credentials are the configured ones.
async fn authenticate(
    stream: &mut Box<dyn Stream>,
    buf: &mut Vec<u8>,
    line: &str,
    b: &Behaviour,
    record: &Mutex<Record>,
) -> std::io::Result<Option<String>> {
    let Some(auth) = &b.auth else {
        return Ok(None);
    };
    let mut words = line.split_whitespace().skip(1);
    let Some(mechanism) = words.next().and_then(SaslMechanism::parse) else {
        return Ok(None);
    };
    let Ok((mut exchange, mut step)) = SaslExchange::start(mechanism, words.next(), "backend.test")
    else {
        return Ok(None);
    };
    loop {
        match step {
            SaslStep::Done(credentials) => {
                let valid = credentials.user() == auth.user && credentials.matches(&auth.password);
                return Ok(valid.then(|| auth.user.clone()));
            }
            SaslStep::Challenge(challenge) => {
                stream
                    .write_all(format!("334 {challenge}\r\n").as_bytes())
                    .await?;
                let Some(response) = read_line(stream, buf).await? else {
                    return Ok(None);
                };
                record.lock().unwrap().lines.push(response.clone());
                match exchange.respond(&response) {
                    Ok(next) => step = next,
                    Err(_) => return Ok(None),
                }
            }
        }
    }
}

async fn read_raw_line<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(lf) = buf.iter().position(|&b| b == b'\n') {
            return Ok(Some(buf.drain(..=lf).collect()));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_line<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    Ok(read_raw_line(stream, buf).await?.map(|l| {
        String::from_utf8_lossy(&l)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }))
}
