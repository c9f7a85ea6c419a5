//! Socket tests of [`SmtpClient`] against a scripted fake server on loopback.
//!
//! The fake server plays a fixed script (say this, hear that many lines, read
//! DATA, start TLS, hang, close) and records everything it heard, so each test
//! checks the exact octets the client sent as well as what it made of the
//! replies.

mod auth;
mod failures;
mod tls;
mod transaction;
mod xclient;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ClientConfig;
use smtp_protocol::address::{ForwardPath, ReversePath, parse_forward_path, parse_reverse_path};

/// How long the fake server waits for the client before giving up, so a
/// client bug fails the test instead of hanging it.
const SERVER_PATIENCE: Duration = Duration::from_secs(10);

/// One step of the fake server's script.
pub(super) enum Act {
    /// Write these octets.
    Say(String),
    /// Read this many command lines.
    Hear(usize),
    /// Read DATA content up to and including `<CRLF>.<CRLF>`.
    HearData,
    /// Check that the client sends nothing for this long (it waits for us).
    Silence(Duration),
    /// Run the TLS handshake as the server.
    StartTls(TlsAcceptor),
    /// Do nothing for this long (a server that never answers).
    Hang(Duration),
    /// Read the DATA command's content only partly, then close.
    CloseAfterReading(usize),
    /// Expect the client to close the connection without sending anything more.
    ExpectClose,
}

pub(super) fn say(text: &str) -> Act {
    Act::Say(text.to_owned())
}

/// What the fake server heard.
#[derive(Debug, Default)]
pub(super) struct Heard {
    /// Command lines, without their CRLF.
    pub lines: Vec<String>,
    /// Each DATA content, raw, terminator included.
    pub data: Vec<Vec<u8>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A fake SMTP server serving one connection with a script.
pub(super) struct FakeServer {
    pub addr: SocketAddr,
    task: JoinHandle<Heard>,
}

impl FakeServer {
    pub async fn start(script: Vec<Act>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            play(Box::new(socket), script).await
        });
        FakeServer { addr, task }
    }

    /// Waits for the script to end and returns what was heard.
    pub async fn heard(self) -> Heard {
        self.task.await.expect("fake server script failed")
    }
}

async fn play(mut stream: Box<dyn Io>, script: Vec<Act>) -> Heard {
    let mut heard = Heard::default();
    let mut buffer: Vec<u8> = Vec::new();
    for act in script {
        match act {
            Act::Say(text) => stream.write_all(text.as_bytes()).await.unwrap(),
            Act::Hear(count) => {
                for _ in 0..count {
                    let line = read_until(&mut stream, &mut buffer, b"\r\n").await;
                    let line = String::from_utf8(line).unwrap();
                    heard.lines.push(line.trim_end_matches("\r\n").to_owned());
                }
            }
            Act::HearData => {
                let content = read_until(&mut stream, &mut buffer, b"\r\n.\r\n").await;
                heard.data.push(content);
            }
            Act::Silence(period) => {
                assert!(buffer.is_empty(), "client sent early: {buffer:?}");
                let mut octet = [0u8; 1];
                let read = tokio::time::timeout(period, stream.read(&mut octet)).await;
                assert!(read.is_err(), "client did not wait for the reply");
            }
            Act::StartTls(acceptor) => {
                assert!(buffer.is_empty(), "client pipelined after STARTTLS");
                match acceptor.accept(stream).await {
                    Ok(tls) => stream = Box::new(tls),
                    // The client refused our certificate; nothing more to hear.
                    Err(_) => return heard,
                }
            }
            Act::Hang(period) => tokio::time::sleep(period).await,
            Act::ExpectClose => {
                let mut rest = Vec::new();
                tokio::time::timeout(SERVER_PATIENCE, stream.read_to_end(&mut rest))
                    .await
                    .expect("client did not close")
                    .unwrap();
                buffer.extend_from_slice(&rest);
                assert!(buffer.is_empty(), "client sent before closing: {buffer:?}");
            }
            Act::CloseAfterReading(count) => {
                let mut chunk = vec![0u8; count];
                let _ = stream.read(&mut chunk).await;
                return heard;
            }
        }
    }
    heard
}

/// Reads until `terminator` and returns everything up to and including it;
/// octets after it stay in `buffer`.
async fn read_until(stream: &mut Box<dyn Io>, buffer: &mut Vec<u8>, terminator: &[u8]) -> Vec<u8> {
    let mut chunk = [0u8; 8192];
    // Where the search resumes, so a large DATA is not rescanned per read.
    let mut searched = 0;
    loop {
        if let Some(at) = buffer[searched..]
            .windows(terminator.len())
            .position(|window| window == terminator)
        {
            return buffer.drain(..searched + at + terminator.len()).collect();
        }
        searched = buffer.len().saturating_sub(terminator.len() - 1);
        let read = tokio::time::timeout(SERVER_PATIENCE, stream.read(&mut chunk))
            .await
            .expect("client went quiet")
            .unwrap();
        assert!(read > 0, "client closed early; had {buffer:?}");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The usual opening: greeting, EHLO and its reply with these extensions.
pub(super) fn opening(extensions: &[&str]) -> Vec<Act> {
    let mut ehlo = String::from("250-backend.test\r\n");
    for (index, extension) in extensions.iter().enumerate() {
        let separator = if index + 1 == extensions.len() {
            ' '
        } else {
            '-'
        };
        ehlo.push_str(&format!("250{separator}{extension}\r\n"));
    }
    if extensions.is_empty() {
        ehlo = "250 backend.test\r\n".to_owned();
    }
    vec![
        say("220 backend.test ESMTP\r\n"),
        Act::Hear(1),
        Act::Say(ehlo),
    ]
}

/// A configuration with timeouts short enough that a failing test fails
/// within seconds, yet long enough for a busy test machine.
pub(super) fn config() -> ClientConfig {
    let mut config = ClientConfig::new("relay.test");
    config.connect_timeout = Duration::from_secs(10);
    config.timeouts = super::StepTimeouts::uniform(Duration::from_secs(10));
    config
}

pub(super) fn sender(text: &str) -> ReversePath {
    parse_reverse_path(text).unwrap()
}

pub(super) fn recipient(text: &str) -> ForwardPath {
    parse_forward_path(text).unwrap()
}
