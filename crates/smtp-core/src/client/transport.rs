//! The socket side of the client: octets out, [`Reply`] values in, every wait
//! bounded by a timeout, and the TLS upgrade in place.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tracing::trace;

use crate::stream::MaybeTlsStream as Stream;
use smtp_protocol::reply::Reply;

use super::error::{ClientError, ClientErrorKind, Step};
use smtp_protocol::reply_parser::ReplyParser;

/// Room made for each read of a reply: an EHLO reply fits in one.
const READ_SIZE: usize = 4096;

/// One SMTP connection's octet stream and reply parser.
///
/// It exists to keep one invariant in one place: after any failure that may
/// have left the dialogue out of step (a timeout, a reset, garbage from the
/// server) the connection is marked unusable, so that no later reply is ever
/// matched to the wrong command.
pub(crate) struct Transport {
    stream: Stream,
    parser: ReplyParser,
    peer: SocketAddr,
    usable: bool,
}

impl Transport {
    /// Opens the TCP connection, from `source` if given.
    pub(crate) async fn connect(
        peer: SocketAddr,
        source: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Transport, ClientError> {
        let connect_error =
            |source| ClientError::new(peer, Step::Connect, ClientErrorKind::Connect(source));
        let socket = match peer {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(connect_error)?;
        if let Some(source) = source {
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(connect_error)?;
        }
        let tcp = tokio::time::timeout(timeout, socket.connect(peer))
            .await
            .map_err(|_| ClientError::new(peer, Step::Connect, ClientErrorKind::Timeout))?
            .map_err(connect_error)?;
        // Every write is a complete command group; waiting to coalesce it with
        // more data would only add a round trip.
        let _ = tcp.set_nodelay(true);
        // Our ACK of the greeting then rides on our first command instead
        // of going alone (Linux acknowledges a connection's first segment
        // at once otherwise): one packet fewer per session.
        let _ = socket2::SockRef::from(&tcp).set_tcp_quickack(false);
        Ok(Transport {
            stream: Stream::Plain(tcp),
            parser: ReplyParser::new(),
            peer,
            usable: true,
        })
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Our end of the connection: the address the server sees us as. Asked
    /// for when needed (the probe): a `getsockname` per session otherwise.
    pub(crate) fn local(&self) -> Option<SocketAddr> {
        match &self.stream {
            Stream::Plain(tcp) => tcp.local_addr().ok(),
            Stream::Tls(tls) => tls.get_ref().0.local_addr().ok(),
            Stream::Detached => None,
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The certificate chain the server presented (end entity first).
    pub(crate) fn peer_certificates(
        &self,
    ) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match &self.stream {
            Stream::Tls(tls) => match tls.as_ref() {
                tokio_rustls::TlsStream::Client(client) => client.get_ref().1.peer_certificates(),
                tokio_rustls::TlsStream::Server(_) => None,
            },
            _ => None,
        }
    }

    pub(crate) fn is_usable(&self) -> bool {
        self.usable
    }

    /// Builds the error for `kind` at `step`, marking the connection unusable
    /// unless the failure leaves the dialogue in step.
    pub(crate) fn fail(&mut self, step: Step, kind: ClientErrorKind) -> ClientError {
        let error = ClientError::new(self.peer, step, kind);
        if !error.leaves_session_usable() {
            self.usable = false;
        }
        error
    }

    /// Takes the session out of use without an error (a DATA abandoned after
    /// `354`): only closing the connection is left.
    pub(crate) fn mark_unusable(&mut self) {
        self.usable = false;
    }

    /// Refuses to go on after an earlier failure.
    pub(crate) fn ensure_usable(&self, step: Step) -> Result<(), ClientError> {
        if self.usable {
            Ok(())
        } else {
            Err(ClientError::new(self.peer, step, ClientErrorKind::Unusable))
        }
    }

    /// Writes one command line; `shown` is what the trace log says instead
    /// (AUTH lines carry secrets).
    pub(crate) async fn send_line(
        &mut self,
        line: &str,
        shown: &str,
        step: Step,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        trace!(peer = %self.peer, "C: {shown}");
        let mut octets = Vec::with_capacity(line.len() + 2);
        octets.extend_from_slice(line.as_bytes());
        octets.extend_from_slice(b"\r\n");
        self.write(&octets, step, timeout).await
    }

    /// Writes and flushes `octets` within `timeout`.
    pub(crate) async fn write(
        &mut self,
        octets: &[u8],
        step: Step,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let stream = &mut self.stream;
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(octets).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.fail(step, io_kind(error))),
            Err(_) => Err(self.fail(step, ClientErrorKind::Timeout)),
        }
    }

    /// Says QUIT on a plain socket that takes it without waiting (a goodbye
    /// on an idle connection always fits), for a connection the caller
    /// drops at once: the close sends the line with the FIN
    /// ([`Stream::send_last_line`]).
    pub(crate) fn quit_and_close_now(&mut self) {
        trace!(peer = %self.peer, "C: QUIT");
        self.stream.send_last_line(b"QUIT\r\n");
    }

    /// Reads the next complete reply; the whole reply must arrive within
    /// `timeout`, so a server dripping one octet at a time cannot hold us.
    pub(crate) async fn read_reply(
        &mut self,
        step: Step,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let Transport { stream, parser, .. } = self;
        let read = tokio::time::timeout(timeout, async {
            loop {
                match parser.next_reply() {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => {}
                    Err(error) => return Err(ClientErrorKind::Protocol(error)),
                }
                // Straight into the parser's buffer: no chunk in this
                // future, nor zeroed memory (zeroing 4 KiB before every
                // read was 13% of relay-in's instructions per message).
                let input = parser.input();
                input.reserve(READ_SIZE);
                match stream.read_buf(input).await {
                    Ok(0) => return Err(ClientErrorKind::Closed),
                    Ok(_) => {}
                    Err(error) => return Err(io_kind(error)),
                }
            }
        })
        .await;
        match read {
            Ok(Ok(reply)) => {
                trace!(peer = %self.peer, "S: {reply}");
                Ok(reply)
            }
            Ok(Err(kind)) => Err(self.fail(step, kind)),
            Err(_) => Err(self.fail(step, ClientErrorKind::Timeout)),
        }
    }

    /// Sends a command and reads its reply, each within `timeout`.
    pub(crate) async fn command(
        &mut self,
        line: &str,
        step: Step,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        self.send_line(line, line, step, timeout).await?;
        self.read_reply(step, timeout).await
    }

    /// Runs the TLS handshake on the connection after the server's `220`.
    pub(crate) async fn start_tls(
        &mut self,
        connector: &TlsConnector,
        server_name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        if self.parser.has_buffered_input() {
            return Err(self.fail(Step::TlsHandshake, ClientErrorKind::PrematureTlsData));
        }
        let Some(tcp) = self.stream.take_plain() else {
            let lost = std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "no plain connection to upgrade",
            );
            return Err(self.fail(Step::TlsHandshake, ClientErrorKind::Io(lost)));
        };
        match tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)));
                Ok(())
            }
            Ok(Err(error)) => {
                Err(self.fail(Step::TlsHandshake, ClientErrorKind::TlsHandshake(error)))
            }
            Err(_) => Err(self.fail(Step::TlsHandshake, ClientErrorKind::Timeout)),
        }
    }

    /// Closes the connection (TLS close_notify first), waiting at most `timeout`.
    pub(crate) async fn shutdown(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.stream.shutdown()).await;
    }
}

/// An unexpected end of the stream is a close, whatever layer noticed it.
fn io_kind(error: io::Error) -> ClientErrorKind {
    match error.kind() {
        io::ErrorKind::UnexpectedEof => ClientErrorKind::Closed,
        _ => ClientErrorKind::Io(error),
    }
}
