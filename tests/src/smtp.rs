//! A deliberately plain SMTP client for tests: it sends exactly the bytes a
//! test gives it, so tests can misbehave on purpose (pipelining, injection,
//! smuggling) and see the raw replies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Anything the client can talk over: TCP, or TLS on top of it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// How long a test waits for any one reply before failing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A reply as the client saw it.
#[derive(Debug, Clone)]
pub struct ClientReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl ClientReply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

pub struct SmtpClient {
    stream: Option<Box<dyn Transport>>,
    buf: Vec<u8>,
    local: SocketAddr,
}

impl SmtpClient {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        Ok(Self::from_stream(tcp))
    }

    /// Connects from a chosen source address, e.g. 127.0.0.5, so a test can
    /// check which client address the next hop sees.
    pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> anyhow::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let tcp = socket
            .connect(addr)
            .await
            .with_context(|| format!("connect {addr} from {source}"))?;
        Ok(Self::from_stream(tcp))
    }

    fn from_stream(tcp: TcpStream) -> Self {
        let local = tcp
            .local_addr()
            .expect("connected socket has a local address");
        Self {
            stream: Some(Box::new(tcp)),
            buf: Vec::new(),
            local,
        }
    }

    /// Our side of the connection (the server sees this as the client).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn stream(&mut self) -> &mut Box<dyn Transport> {
        self.stream.as_mut().expect("stream present")
    }

    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream().write_all(bytes).await?;
        self.stream().flush().await?;
        Ok(())
    }

    /// One line without CRLF; `None` at end of stream.
    pub async fn read_line(&mut self, within: Duration) -> anyhow::Result<Option<String>> {
        let read = async {
            loop {
                if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=lf).collect();
                    let line = String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    return Ok(Some(line));
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream().read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        match tokio::time::timeout(within, read).await {
            Ok(result) => result,
            Err(_) => bail!("no reply line within {within:?}"),
        }
    }

    pub async fn read_reply(&mut self) -> anyhow::Result<ClientReply> {
        let mut lines = Vec::new();
        loop {
            let Some(line) = self.read_line(REPLY_TIMEOUT).await? else {
                bail!("connection closed while reading a reply (got {lines:?})");
            };
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("bad reply line {line:?}"))?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Ok(ClientReply { code, lines });
            }
        }
    }

    /// Sends `line` + CRLF and reads the reply.
    pub async fn command(&mut self, line: &str) -> anyhow::Result<ClientReply> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// Sends the command and fails unless the reply has `code`.
    pub async fn expect(&mut self, line: &str, code: u16) -> anyhow::Result<ClientReply> {
        let reply = self.command(line).await?;
        if reply.code != code {
            bail!("{line:?}: expected {code}, got {:?}", reply.lines);
        }
        Ok(reply)
    }

    /// True when the server closes the connection within `within` without
    /// sending anything more.
    pub async fn closed_within(&mut self, within: Duration) -> anyhow::Result<bool> {
        match self.read_line(within).await {
            Ok(None) => Ok(true),
            Ok(Some(line)) => bail!("expected close, got {line:?}"),
            Err(_) => Ok(false),
        }
    }

    /// Nothing arrives for `quiet`; used to show a command was never answered.
    pub async fn silent_for(&mut self, quiet: Duration) -> anyhow::Result<()> {
        match self.read_line(quiet).await {
            Err(_) => Ok(()),
            Ok(Some(line)) => bail!("expected silence, got {line:?}"),
            Ok(None) => bail!("expected silence, got end of stream"),
        }
    }

    /// The TLS handshake after a `220` to STARTTLS; returns the chain the
    /// server presented. Bytes buffered from before are a test failure.
    pub async fn upgrade_tls(
        &mut self,
        ca: &CertificateDer<'static>,
        server_name: &str,
    ) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        if !self.buf.is_empty() {
            bail!(
                "server sent data after its STARTTLS reply: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = self.stream.take().expect("stream present");
        let name = ServerName::try_from(server_name.to_string())?;
        let tls = connector
            .connect(name, stream)
            .await
            .context("TLS handshake")?;
        let chain = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        self.stream = Some(Box::new(tls));
        Ok(chain)
    }

    /// MAIL, RCPTs, DATA and the message; returns the final reply, and
    /// fails if any step before it is refused.
    pub async fn send_mail(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &str,
    ) -> anyhow::Result<ClientReply> {
        self.transaction(from, rcpts, message, true).await
    }

    /// The same transaction as a sending MTA runs it: a refusal of MAIL, of
    /// a recipient or of DATA ends it and is the message's verdict, else the
    /// reply to the final dot is.
    pub async fn try_mail(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &str,
    ) -> anyhow::Result<ClientReply> {
        self.transaction(from, rcpts, message, false).await
    }

    /// A refusal before the message fails the call if `strict`, else it is
    /// returned.
    async fn transaction(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &str,
        strict: bool,
    ) -> anyhow::Result<ClientReply> {
        let mut steps = vec![(format!("MAIL FROM:<{from}>"), 250)];
        steps.extend(rcpts.iter().map(|rcpt| (format!("RCPT TO:<{rcpt}>"), 250)));
        steps.push(("DATA".to_string(), 354));
        for (line, code) in steps {
            if strict {
                self.expect(&line, code).await?;
                continue;
            }
            let reply = self.command(&line).await?;
            if reply.code != code {
                return Ok(reply);
            }
        }
        let mut body = message.replace("\r\n", "\n").replace('\n', "\r\n");
        if !body.ends_with("\r\n") {
            body.push_str("\r\n");
        }
        self.send(body.as_bytes()).await?;
        self.command(".").await
    }
}
