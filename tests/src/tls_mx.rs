//! An MX that offers STARTTLS, for relay-out's opportunistic TLS: either a
//! working handshake with a test certificate, or a broken one (it answers
//! `220` to STARTTLS, then sends garbage instead of a TLS handshake), to see
//! relay-out move to the next MX or fall back to clear text. It can also
//! offer REQUIRETLS (RFC 8689) after STARTTLS, and records each message's
//! MAIL FROM line to show which parameters arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::TestCa;

/// A stream the session runs on, before or after the handshake.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One message the server took.
#[derive(Debug, Clone)]
pub struct TlsAccepted {
    /// The message came over TLS.
    pub tls: bool,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    /// The MAIL FROM command as received (without CRLF).
    pub mail_from: String,
    /// Which TCP connection it came on (0 for the first the server
    /// accepted), to tell a reused session from a new one.
    pub connection: usize,
}

/// How a [`StartTlsMx`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsMxOptions {
    /// Every handshake fails.
    pub broken: bool,
    /// REQUIRETLS is listed in the EHLO reply after STARTTLS.
    pub requiretls: bool,
}

/// See the module docs.
pub struct StartTlsMx {
    pub addr: SocketAddr,
    /// The CA that issued the server's certificate (PEM): what a client
    /// must trust to verify it.
    pub ca_pem: String,
    /// The server's own certificate (DER), e.g. for its TLSA record.
    pub cert_der: CertificateDer<'static>,
    accepted: Arc<Mutex<Vec<TlsAccepted>>>,
    task: JoinHandle<()>,
}

impl StartTlsMx {
    /// Listens on `addr`; `broken` makes every handshake fail.
    pub async fn start_on(addr: SocketAddr, host: &str, broken: bool) -> anyhow::Result<Self> {
        Self::start_with(
            addr,
            host,
            TlsMxOptions {
                broken,
                ..TlsMxOptions::default()
            },
        )
        .await
    }

    /// Listens on `addr`, with a certificate for `host` from its own CA.
    pub async fn start_with(
        addr: SocketAddr,
        host: &str,
        options: TlsMxOptions,
    ) -> anyhow::Result<Self> {
        let ca = TestCa::new("Postern TLS MX CA")?;
        Self::start_issued_by(addr, &ca, host, options).await
    }

    /// Listens on `addr` with a certificate for `host` issued by `ca`
    /// (several MX hosts of one CA; a name that is not the MX's).
    pub async fn start_issued_by(
        addr: SocketAddr,
        ca: &TestCa,
        host: &str,
        options: TlsMxOptions,
    ) -> anyhow::Result<Self> {
        let cert = ca.issue(host)?;
        let leaf = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())?;
        let chain = vec![leaf.clone()];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let record = Arc::clone(&record);
                let number = connection;
                connection += 1;
                tokio::spawn(async move {
                    let session = serve(Box::new(tcp), acceptor, options, (record, number));
                    let _ = tokio::time::timeout(Duration::from_secs(30), session).await;
                });
            }
        });
        Ok(StartTlsMx {
            addr,
            ca_pem: ca.cert_pem.clone(),
            cert_der: leaf,
            accepted,
            task,
        })
    }

    pub fn accepted(&self) -> Vec<TlsAccepted> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for StartTlsMx {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: Box<dyn Stream>,
    acceptor: TlsAcceptor,
    options: TlsMxOptions,
    (record, connection): (Arc<Mutex<Vec<TlsAccepted>>>, usize),
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tls = false;
    let mut rcpts = Vec::new();
    let mut mail_from = String::new();
    stream.write_all(b"220 tls-mx.test ESMTP\r\n").await?;
    loop {
        let Some(line) = read_line(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        let upper = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let upper = upper.trim_end();
        if upper.starts_with("EHLO") {
            let starttls = if tls { "" } else { "250-STARTTLS\r\n" };
            let requiretls = if tls && options.requiretls {
                "250-REQUIRETLS\r\n"
            } else {
                ""
            };
            let reply = format!("250-tls-mx.test\r\n{starttls}{requiretls}250 8BITMIME\r\n");
            stream.write_all(reply.as_bytes()).await?;
        } else if upper == "STARTTLS" && !tls {
            stream
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await?;
            if options.broken {
                stream.write_all(b"this is not a TLS handshake\r\n").await?;
                return Ok(());
            }
            stream = Box::new(acceptor.accept(stream).await?);
            tls = true;
            buf.clear();
            rcpts.clear();
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = String::from_utf8_lossy(&line).trim_end().to_string();
            stream.write_all(b"250 2.1.0 Ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            let text = String::from_utf8_lossy(&line);
            let address = text.trim_end()[8..]
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            rcpts.push(address);
            stream.write_all(b"250 2.1.5 Ok\r\n").await?;
        } else if upper == "DATA" {
            stream.write_all(b"354 Go ahead\r\n").await?;
            let mut data = Vec::new();
            loop {
                let Some(line) = read_line(&mut stream, &mut buf).await? else {
                    return Ok(());
                };
                if line == b".\r\n" {
                    break;
                }
                data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
            }
            record.lock().unwrap().push(TlsAccepted {
                tls,
                rcpts: std::mem::take(&mut rcpts),
                data,
                mail_from: std::mem::take(&mut mail_from),
                connection,
            });
            stream.write_all(b"250 2.0.0 Ok: queued\r\n").await?;
        } else if upper == "QUIT" {
            stream.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            stream.write_all(b"250 2.0.0 Ok\r\n").await?;
        }
    }
}

async fn read_line(
    stream: &mut Box<dyn Stream>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(lf) = buf.iter().position(|&b| b == b'\n') {
            return Ok(Some(buf.drain(..=lf).collect()));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
