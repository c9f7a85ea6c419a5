//! The built-in sink: an SMTP server that accepts everything as fast as the
//! machine allows, so a scenario measures the program under test, not its
//! peer. It stands in for relay-in's backend (offering XCLIENT, as Postfix
//! does) and for the MX relay-out delivers to, optionally with STARTTLS.
//!
//! It runs as its own process (`postern-bench serve-sink`), started by the
//! scenarios, so its memory and CPU are measured apart from the load client;
//! it exits when its standard input closes, so it never outlives the bench.
//! `XSTAT` asks it how many messages it has taken.

mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use session::{Next, Offers, SinkSession};

use super::eod::EndOfData;
use super::reply::parse_reply;

/// Octets asked of the socket per read: large messages arrive in few reads.
const READ_CHUNK: usize = 64 * 1024;
/// A sink connection idle this long is dropped, so a broken peer cannot
/// keep the sink (and the bench) alive.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the sink has taken since it started (`bytes`: data octets, each
/// message's end marker included). Atomics, because every
/// connection task counts and `XSTAT` reads at any time.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub connections: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    pub messages: u64,
    pub bytes: u64,
    pub connections: u64,
}

impl Counters {
    pub fn snapshot(&self) -> SinkStats {
        SinkStats {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }
}

/// The sink's fixed settings.
pub struct SinkConfig {
    pub offers: Offers,
    /// Present when STARTTLS is offered.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, config: Arc<SinkConfig>, counters: Arc<Counters>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let config = Arc::clone(&config);
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let _ = connection(stream, &config, &counters).await;
        });
    }
}

/// How a pass over one stream ended.
enum Ended<S> {
    Closed,
    /// STARTTLS was accepted: the same socket, ready for the handshake.
    StartTls(S),
}

async fn connection(
    stream: TcpStream,
    config: &SinkConfig,
    counters: &Counters,
) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut session = SinkSession::new(config.offers);
    let mut out = Vec::with_capacity(512);
    SinkSession::greeting(&mut out);
    let Ended::StartTls(stream) = converse(stream, &mut session, counters, out).await? else {
        return Ok(());
    };
    let Some(acceptor) = &config.tls else {
        return Ok(());
    };
    let tls = tokio::time::timeout(IDLE_TIMEOUT, acceptor.accept(stream)).await??;
    session.tls_established();
    converse(tls, &mut session, counters, Vec::with_capacity(512)).await?;
    Ok(())
}

/// The read–answer loop on one stream. Replies are written only when the
/// input holds no further complete command, so a pipelined group gets one
/// write.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    session: &mut SinkSession,
    counters: &Counters,
    mut out: Vec<u8>,
) -> anyhow::Result<Ended<S>> {
    let mut input = vec![0u8; READ_CHUNK];
    let (mut start, mut end) = (0usize, 0usize);
    let mut data: Option<(EndOfData, usize)> = None;
    loop {
        loop {
            let available = &input[start..end];
            if available.is_empty() {
                break;
            }
            if let Some((scanner, octets)) = &mut data {
                match scanner.feed(available) {
                    Some(n) => {
                        SinkSession::message_received(*octets + n, counters, &mut out);
                        start += n;
                        data = None;
                    }
                    None => {
                        *octets += available.len();
                        start = end;
                    }
                }
                continue;
            }
            let Some(lf) = available.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = &available[..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            start += lf + 1;
            match session.command(line, counters, &mut out) {
                Next::Command => {}
                Next::Data => data = Some((EndOfData::default(), 0)),
                Next::StartTls => {
                    stream.write_all(&out).await?;
                    return Ok(Ended::StartTls(stream));
                }
                Next::Close => {
                    stream.write_all(&out).await?;
                    stream.shutdown().await?;
                    return Ok(Ended::Closed);
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
            out.clear();
        }
        if start == end {
            (start, end) = (0, 0);
        } else if end == input.len() {
            if start == 0 {
                bail!("command line longer than {READ_CHUNK} octets");
            }
            input.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        let read = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut input[end..])).await;
        match read.context("idle timeout")?? {
            0 => return Ok(Ended::Closed),
            n => end += n,
        }
    }
}

/// Asks a running sink what it has taken (`XSTAT`).
pub async fn query_stats(addr: SocketAddr) -> anyhow::Result<SinkStats> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"XSTAT\r\nQUIT\r\n").await?;
        let mut text = Vec::new();
        stream.read_to_end(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("sink did not answer XSTAT")??;
    parse_stats(&text)
}

/// The numbers in the sink's answer to `XSTAT` (after its greeting).
fn parse_stats(text: &[u8]) -> anyhow::Result<SinkStats> {
    let mut rest = text;
    while let Some(frame) = parse_reply(rest)? {
        let reply = String::from_utf8_lossy(&rest[..frame.len]);
        if let Some(fields) = reply.trim_end().strip_prefix("250 messages=") {
            let numbers: Vec<u64> = fields
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            if let [messages, bytes, connections] = numbers[..] {
                return Ok(SinkStats {
                    messages,
                    bytes,
                    connections,
                });
            }
        }
        rest = &rest[frame.len..];
    }
    bail!("no XSTAT reply in {:?}", String::from_utf8_lossy(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_stats_reply() {
        let text = b"220 sink.bench.test ESMTP\r\n250 messages=3 bytes=4096 connections=2\r\n221 2.0.0 Bye\r\n";
        assert_eq!(
            parse_stats(text).unwrap(),
            SinkStats {
                messages: 3,
                bytes: 4096,
                connections: 2
            }
        );
        assert!(parse_stats(b"220 hi\r\n221 bye\r\n").is_err());
    }

    #[tokio::test]
    async fn takes_pipelined_messages_and_counts_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let config = Arc::new(SinkConfig {
            offers: Offers::default(),
            tls: None,
        });
        tokio::spawn(serve(listener, config, Arc::clone(&counters)));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Everything in one write, split oddly by the kernel or not: the
        // replies must still come in order.
        stream
            .write_all(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n..x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nQUIT\r\n")
            .await
            .unwrap();
        let mut text = Vec::new();
        stream.read_to_end(&mut text).await.unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.matches("250 2.0.0 Ok: queued").count(), 2, "{text}");
        assert!(text.ends_with("221 2.0.0 Bye\r\n"));
        let stats = query_stats(addr).await.unwrap();
        assert_eq!(stats.messages, 2);
        assert_eq!(stats.bytes, 12 + 3, "data octets, end marker included");
    }
}
