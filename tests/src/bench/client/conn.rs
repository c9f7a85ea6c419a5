//! One load-client connection: greeting, EHLO, optional STARTTLS, and
//! transactions pipelined as far as RFC 2920 allows.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{ClientTls, LoadError, Step};
use crate::bench::message::{FROM, RCPT};
use crate::bench::reply::{ReplyFrame, has_extension, parse_reply};

/// Octets asked of the socket per read; replies are small.
const READ_CHUNK: usize = 4096;
/// The name the load client gives in EHLO.
const HELO_NAME: &str = "load.bench.test";

/// The socket, before or after STARTTLS. An enum rather than a trait object
/// because the upgrade needs the plain socket back by value.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the handshake holds the socket.
    Upgrading,
}

/// How one transaction ended.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted; the end-of-DATA latency.
    Delivered(Duration),
    /// A 4xx/5xx somewhere in the transaction, with that reply's text.
    Refused(String),
}

/// An open SMTP session of the load client.
///
/// It exists because the load client must not be the bottleneck: the
/// envelope and the message are prepared once, MAIL, RCPT and DATA go in
/// one write when PIPELINING is offered, replies are parsed in place.
pub struct Connection {
    stream: Stream,
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// The last reply's octets: `input[last.0..last.1]`.
    last: (usize, usize),
    pipelining: bool,
    commands: Commands,
    reply_timeout: Duration,
}

/// The transaction's command lines, written once per connection: one by one,
/// or all three in one pipelined group.
struct Commands {
    mail: String,
    rcpt: String,
    group: String,
}

impl Commands {
    fn new() -> Self {
        let mail = format!("MAIL FROM:<{FROM}>\r\n");
        let rcpt = format!("RCPT TO:<{RCPT}>\r\n");
        let group = format!("{mail}{rcpt}DATA\r\n");
        Commands { mail, rcpt, group }
    }
}

impl Connection {
    /// Connects (from `source` if given), reads the greeting, says EHLO and,
    /// with `tls`, upgrades with STARTTLS and says EHLO again.
    pub async fn open(
        target: SocketAddr,
        source: Option<IpAddr>,
        tls: Option<&ClientTls>,
        reply_timeout: Duration,
    ) -> Result<Connection, LoadError> {
        let tcp = connect(target, source, reply_timeout).await?;
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            input: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            last: (0, 0),
            pipelining: false,
            commands: Commands::new(),
            reply_timeout,
        };
        conn.expect(Step::Greeting, 220).await?;
        conn.ehlo().await?;
        if let Some(tls) = tls {
            conn.write(b"STARTTLS\r\n").await?;
            conn.expect(Step::StartTls, 220).await?;
            conn.upgrade(tls).await?;
            conn.ehlo().await?;
        }
        Ok(conn)
    }

    /// Sends one message; the caller decides what a refusal means.
    pub async fn send(&mut self, wire: &[u8]) -> Result<Outcome, LoadError> {
        let mut refusal = None;
        let data = if self.pipelining {
            let group = std::mem::take(&mut self.commands.group);
            let written = self.write(group.as_bytes()).await;
            self.commands.group = group;
            written?;
            for step in [Step::Mail, Step::Rcpt] {
                let code = self.reply(step).await?;
                if code >= 400 && refusal.is_none() {
                    refusal = Some(self.last_text());
                }
            }
            self.reply(Step::Data).await?
        } else {
            for step in [Step::Mail, Step::Rcpt] {
                let line = match step {
                    Step::Mail => self.commands.mail.clone(),
                    _ => self.commands.rcpt.clone(),
                };
                self.write(line.as_bytes()).await?;
                if self.reply(step).await? >= 400 {
                    return self.abandon(self.last_text()).await;
                }
            }
            self.write(b"DATA\r\n").await?;
            self.reply(Step::Data).await?
        };
        if data != 354 {
            let text = refusal.unwrap_or_else(|| self.last_text());
            return self.abandon(text).await;
        }
        self.write(wire).await?;
        let sent = Instant::now();
        let code = self.reply(Step::DataEnd).await?;
        let latency = sent.elapsed();
        match (refusal, code) {
            (None, 200..=299) => Ok(Outcome::Delivered(latency)),
            (Some(text), _) => Ok(Outcome::Refused(text)),
            (None, _) => Ok(Outcome::Refused(self.last_text())),
        }
    }

    /// `QUIT`, best effort.
    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply(Step::Quit).await;
        }
    }

    /// After a refusal, RSET so the next transaction starts clean.
    async fn abandon(&mut self, text: String) -> Result<Outcome, LoadError> {
        self.write(b"RSET\r\n").await?;
        self.reply(Step::Rset).await?;
        Ok(Outcome::Refused(text))
    }

    async fn ehlo(&mut self) -> Result<(), LoadError> {
        self.write(format!("EHLO {HELO_NAME}\r\n").as_bytes())
            .await?;
        self.expect(Step::Ehlo, 250).await?;
        let (from, to) = self.last;
        self.pipelining = has_extension(&self.input[from..to], "PIPELINING");
        Ok(())
    }

    async fn upgrade(&mut self, tls: &ClientTls) -> Result<(), LoadError> {
        if self.start != self.end {
            return Err(LoadError::Protocol(
                Step::StartTls,
                "data after the 220 reply".into(),
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(LoadError::Protocol(
                Step::StartTls,
                "already upgraded".into(),
            ));
        };
        let handshake = tls.connector.connect(tls.server_name.clone(), tcp);
        let stream = tokio::time::timeout(self.reply_timeout, handshake)
            .await
            .map_err(|_| LoadError::Timeout(Step::StartTls))?
            .map_err(LoadError::Tls)?;
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    async fn expect(&mut self, step: Step, code: u16) -> Result<(), LoadError> {
        let got = self.reply(step).await?;
        if got == code {
            Ok(())
        } else {
            Err(LoadError::Refused(step, self.last_text()))
        }
    }

    fn last_text(&self) -> String {
        let (from, to) = self.last;
        String::from_utf8_lossy(&self.input[from..to])
            .trim_end()
            .to_string()
    }

    /// The next reply's code; its text stays readable until the next read.
    async fn reply(&mut self, step: Step) -> Result<u16, LoadError> {
        loop {
            let frame = parse_reply(&self.input[self.start..self.end])
                .map_err(|e| LoadError::Protocol(step, e.to_string()))?;
            if let Some(ReplyFrame { code, len }) = frame {
                self.last = (self.start, self.start + len);
                self.start += len;
                return Ok(code);
            }
            self.fill(step).await?;
        }
    }

    /// Reads more input, making room first.
    async fn fill(&mut self, step: Step) -> Result<(), LoadError> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.input.len() {
            self.input.resize(self.input.len() * 2, 0);
        }
        let buffer = &mut self.input[self.end..];
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => s.read(buffer).await,
                Stream::Tls(s) => s.read(buffer).await,
                Stream::Upgrading => Ok(0),
            }
        };
        let n = tokio::time::timeout(self.reply_timeout, read)
            .await
            .map_err(|_| LoadError::Timeout(step))?
            .map_err(|e| LoadError::Io(step, e))?;
        if n == 0 {
            return Err(LoadError::Closed(step));
        }
        self.end += n;
        Ok(())
    }

    async fn write(&mut self, octets: &[u8]) -> Result<(), LoadError> {
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(octets).await,
                Stream::Tls(s) => {
                    s.write_all(octets).await?;
                    s.flush().await
                }
                Stream::Upgrading => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        tokio::time::timeout(self.reply_timeout, write)
            .await
            .map_err(|_| LoadError::Timeout(Step::Write))?
            .map_err(|e| LoadError::Io(Step::Write, e))
    }
}

/// A TCP connection with Nagle off (pipelined groups go out at once).
pub async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    within: Duration,
) -> Result<TcpStream, LoadError> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(LoadError::Connect)?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(LoadError::Connect)?;
    }
    let tcp = tokio::time::timeout(within, socket.connect(target))
        .await
        .map_err(|_| LoadError::Timeout(Step::Connect))?
        .map_err(LoadError::Connect)?;
    tcp.set_nodelay(true).map_err(LoadError::Connect)?;
    Ok(tcp)
}
