//! A TCP connection before and after STARTTLS, as one type, shared by the
//! server driver and the SMTP client so each dialogue is written once for
//! both states.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

use smtp_protocol::session::TlsInfo;

/// Plain TCP, or TLS (client or server side) on top of it.
pub enum MaybeTlsStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a handshake owns the socket, or after it failed.
    Detached,
}

impl MaybeTlsStream {
    /// Takes the TCP socket out for a handshake; `None` if already TLS.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, MaybeTlsStream::Detached) {
            MaybeTlsStream::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTlsStream::Tls(_))
    }

    /// Hands a connection's last line to a plain socket without pushing it
    /// out (`MSG_MORE`), so that the close or shutdown that follows sends
    /// the line and the FIN in one packet: one packet, and the peer's ACK
    /// of it, fewer per connection (BENCHMARKS.md, issue 19). Returns how
    /// many octets the socket took: none on TLS (close_notify must follow
    /// the line), or when the socket buffer is full; the caller writes the
    /// rest the usual way.
    pub fn send_last_line(&self, octets: &[u8]) -> usize {
        let MaybeTlsStream::Plain(tcp) = self else {
            return 0;
        };
        socket2::SockRef::from(tcp)
            .send_with_flags(octets, libc::MSG_MORE)
            .unwrap_or(0)
    }

    /// The negotiated protocol and cipher, for `Received:` and logs.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        let MaybeTlsStream::Tls(tls) = self else {
            return None;
        };
        let (_, state) = tls.get_ref();
        Some(TlsInfo {
            protocol: state
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS")
                .replace("v1_", "v1."),
            cipher: state
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .unwrap_or("unknown")
                .to_string(),
        })
    }
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost in a TLS handshake",
    )
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTlsStream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTlsStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTlsStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTlsStream::Detached => Poll::Ready(Err(detached())),
        }
    }
}
