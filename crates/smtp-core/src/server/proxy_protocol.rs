//! The PROXY protocol (HAProxy's; v1 text and v2 binary) from the proxies
//! listed in connection.ini `[haproxy] hosts[]`.
//!
//! A load balancer in front of the relay hides the client's address behind
//! its own; a listed proxy says whose connection it is in a header before
//! any SMTP, and from then on that address is the client everywhere
//! (limits, pregreet, reverse DNS, ACL, XCLIENT, Received, logs). As in
//! Haraka, a listed proxy gets no greeting until its header has arrived,
//! and anyone else's header is refused: believing it would let any client
//! claim any address. Haraka reads v1 only; v2 is recognised by its
//! signature.
//!
//! [`decode`] judges the bytes received so far (no I/O, so it is unit
//! tested and fuzzed on its own); [`read_header`] feeds it from the socket
//! without ever consuming a byte past the header, since what follows it is
//! the client's SMTP (or TLS) and belongs to the session.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proxy_header::{ParseConfig, Protocol};
use smtp_protocol::session::replies;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::connection::refuse;
use crate::config::CoreSettings;

/// Haraka's wait for a listed proxy's header (hard-coded there too).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest v1 header the specification allows, CRLF included.
const V1_MAX: usize = 107;
/// The longest v2 header accepted: the fixed part, addresses and TLVs
/// (HAProxy's unique id, SSL details); the 64 KiB the length field allows
/// would be a buffer per connection for nothing.
const V2_MAX: usize = 4096;
/// v2's fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What a complete header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The client and the address it connected to, for a proxied TCP
    /// connection; `None` for v2 `LOCAL` (the proxy's own health check), v1
    /// `UNKNOWN` and v2 `AF_UNIX`/`UNSPEC`, where the socket's peer stays
    /// the client, as the specification says.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// [`decode`]'s verdict on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A header of `length` bytes; anything after it is the client's.
    Complete { header: ProxyHeader, length: usize },
    /// A possible header that has not ended yet: every byte so far belongs
    /// to it, so the reader may consume them all.
    Incomplete,
    /// Not a PROXY header, or a malformed or oversized one.
    Invalid(&'static str),
}

/// Judges the first bytes of a connection. Parsing is the `proxy-header`
/// crate's; this adds what a reader that must not over-read needs: an early
/// verdict on garbage, the v1 line ending at its first LF, and size caps.
pub fn decode(buf: &[u8]) -> Decoded {
    match buf.first() {
        None => Decoded::Incomplete,
        Some(b'P') => decode_v1(buf),
        Some(b'\r') => decode_v2(buf),
        Some(_) => Decoded::Invalid("not a PROXY header"),
    }
}

fn decode_v1(buf: &[u8]) -> Decoded {
    let prefix = buf.len().min(V1_PREFIX.len());
    if buf[..prefix] != V1_PREFIX[..prefix] {
        return Decoded::Invalid("not a PROXY header");
    }
    let line_end = buf.iter().position(|&b| b == b'\n').map(|lf| lf + 1);
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: false,
    };
    match (proxy_header::ProxyHeader::parse(buf, config), line_end) {
        // The crate looks for CR, not LF, so a line without CR could run
        // into the SMTP after it: the header is exactly the first line.
        (Ok((header, length)), Some(end)) if length == end && length <= V1_MAX => {
            complete(1, &header, length)
        }
        (Err(proxy_header::Error::BufferTooShort), None) if buf.len() < V1_MAX => {
            Decoded::Incomplete
        }
        (_, None) if buf.len() >= V1_MAX => Decoded::Invalid("v1 header longer than 107 bytes"),
        _ => Decoded::Invalid("malformed v1 header"),
    }
}

fn decode_v2(buf: &[u8]) -> Decoded {
    let signature = buf.len().min(V2_SIGNATURE.len());
    if buf[..signature] != V2_SIGNATURE[..signature] {
        return Decoded::Invalid("not a PROXY header");
    }
    if buf.len() < V2_FIXED {
        return Decoded::Incomplete;
    }
    let length = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if length > V2_MAX {
        return Decoded::Invalid("v2 header longer than 4096 bytes");
    }
    if buf.len() < length {
        return Decoded::Incomplete;
    }
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: false,
        allow_v2: true,
    };
    match proxy_header::ProxyHeader::parse(&buf[..length], config) {
        Ok((header, parsed)) if parsed == length => complete(2, &header, length),
        _ => Decoded::Invalid("malformed v2 header"),
    }
}

fn complete(version: u8, header: &proxy_header::ProxyHeader<'_>, length: usize) -> Decoded {
    let addresses = match header.proxied_address() {
        None => None,
        Some(address) if address.protocol == Protocol::Stream => {
            Some((canonical(address.source), canonical(address.destination)))
        }
        Some(_) => return Decoded::Invalid("a UDP connection"),
    };
    Decoded::Complete {
        header: ProxyHeader { version, addresses },
        length,
    }
}

/// `::ffff:a.b.c.d` is the IPv4 client it stands for, as for accepted
/// sockets.
fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// Why no header was read; each gets its reply in the driver.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("no complete PROXY header within {} s", HEADER_TIMEOUT.as_secs())]
    Timeout,
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    #[error("i/o error reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one header from a listed proxy within `within`, consuming exactly
/// its bytes. It peeks at what has arrived and reads only what [`decode`]
/// places inside the header: all of it while the header is incomplete, up
/// to its end once complete. Usually one peek and one read.
pub(crate) async fn read_header(
    tcp: &mut TcpStream,
    within: Duration,
) -> Result<ProxyHeader, HeaderError> {
    tokio::time::timeout(within, read_exactly_the_header(tcp))
        .await
        .map_err(|_| HeaderError::Timeout)?
}

async fn read_exactly_the_header(tcp: &mut TcpStream) -> Result<ProxyHeader, HeaderError> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(V1_MAX);
    let mut consumed = 0;
    loop {
        buf.resize(consumed + room(&buf[..consumed]), 0);
        let peeked = tcp.peek(&mut buf[consumed..]).await?;
        if peeked == 0 {
            return Err(HeaderError::Closed);
        }
        let take = match decode(&buf[..consumed + peeked]) {
            Decoded::Complete { header, length } => {
                tcp.read_exact(&mut buf[consumed..length]).await?;
                return Ok(header);
            }
            Decoded::Incomplete => peeked,
            Decoded::Invalid(why) => return Err(HeaderError::Invalid(why)),
        };
        tcp.read_exact(&mut buf[consumed..consumed + take]).await?;
        consumed += take;
    }
}

/// How much more to look at: up to a v2 header's declared end once its
/// fixed part is in, else up to the longest v1 line (which also covers
/// v2's fixed part). Never zero while [`decode`] says incomplete.
fn room(consumed: &[u8]) -> usize {
    if consumed.len() >= V2_FIXED && consumed.starts_with(V2_SIGNATURE) {
        let length = V2_FIXED + usize::from(u16::from_be_bytes([consumed[14], consumed[15]]));
        length.saturating_sub(consumed.len())
    } else {
        V1_MAX - consumed.len()
    }
}

/// Whether the first bytes waiting are a PROXY header's (v1's `PROXY ` or
/// v2's whole signature).
async fn sent_a_header(tcp: &TcpStream) -> bool {
    let mut first = [0u8; V2_SIGNATURE.len()];
    // The client has talked, so this returns at once; the bound is for a
    // peer that took its bytes back (a reset).
    match tokio::time::timeout(Duration::from_secs(1), tcp.peek(&mut first)).await {
        Ok(Ok(n)) => first[..n].starts_with(V1_PREFIX) || first[..n].starts_with(V2_SIGNATURE),
        _ => false,
    }
}

/// The client of a new connection and, when a listed proxy's header named
/// it, the proxy: the socket's peer unless it is in `[haproxy] hosts[]`.
/// `None` when the connection is over (refused with its reply, or gone).
pub(crate) async fn client(
    tcp: &mut TcpStream,
    socket_peer: SocketAddr,
    config: &CoreSettings,
    conn_id: &str,
) -> Option<(SocketAddr, Option<IpAddr>)> {
    if !config
        .haproxy_hosts
        .iter()
        .any(|n| n.contains(socket_peer.ip()))
    {
        return Some((socket_peer, None));
    }
    match read_header(tcp, HEADER_TIMEOUT).await {
        Ok(ProxyHeader {
            addresses: Some((client, destination)),
            version,
        }) => {
            debug!(conn = %conn_id, proxy = %socket_peer, client = %client, destination = %destination, version, "PROXY header");
            Some((client, Some(socket_peer.ip())))
        }
        // LOCAL and UNKNOWN: the proxy speaks for itself (a health check).
        Ok(ProxyHeader {
            addresses: None,
            version,
        }) => {
            debug!(conn = %conn_id, proxy = %socket_peer, version, "PROXY header without a client address: the proxy is the client");
            Some((socket_peer, None))
        }
        Err(error) => {
            let reply = match &error {
                HeaderError::Timeout => replies::proxy_timeout(&config.me),
                HeaderError::Invalid(_) => replies::proxy_invalid(&config.me),
                HeaderError::Closed | HeaderError::Io(_) => {
                    debug!(conn = %conn_id, proxy = %socket_peer, "{error}");
                    return None;
                }
            };
            info!(conn = %conn_id, proxy = %socket_peer.ip(), code = reply.code(), "{error}: {reply}");
            refuse(tcp, &reply.to_wire()).await;
            None
        }
    }
}

/// For a client that talked before the greeting: if it began with a PROXY
/// header, it is a proxy nobody listed; it gets Haraka's refusal rather
/// than the early-talker one, and `true` says the connection is over.
pub(crate) async fn refused_unlisted(
    tcp: &mut TcpStream,
    client: IpAddr,
    me: &str,
    conn_id: &str,
) -> bool {
    if !sent_a_header(tcp).await {
        return false;
    }
    let reply = replies::proxy_not_allowed(me, client);
    info!(conn = %conn_id, client = %client, code = reply.code(), "PROXY header from a host not in connection.ini [haproxy] hosts[]: {reply}");
    refuse(tcp, &reply.to_wire()).await;
    true
}

#[cfg(test)]
mod tests;
