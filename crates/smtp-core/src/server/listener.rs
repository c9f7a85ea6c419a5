//! Listening sockets and the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::error;

use super::Shared;
use super::shutdown::{Phase, Shutdown};
use crate::policy::MailPolicy;

/// Binds with socket2 so that `[::]` is explicitly dual-stack (whatever the
/// host's `bindv6only` says) and a restart does not wait out TIME_WAIT.
///
/// `TCP_NODELAY` is set here, once: Linux copies it to every accepted
/// socket, which saves a `setsockopt` per connection. Every write is a
/// complete reply group; waiting to coalesce it would only add a round trip.
pub(super) fn bind(addr: SocketAddr, freebind: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(!addr.ip().is_unspecified())?;
        socket.set_freebind_v6(freebind)?;
    } else {
        socket.set_freebind_v4(freebind)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts until shutdown begins, one task per connection. `done` is cloned
/// into every task so the server can wait for all of them to end.
pub(super) async fn accept_loop<P: MailPolicy>(
    listener: TcpListener,
    shared: Arc<Shared<P>>,
    mut shutdown: Shutdown,
    done: mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(10);
    // A listener bound to one address knows every connection's local end:
    // a `getsockname` per connection only for a wildcard (`[::]:25`).
    let bound = listener
        .local_addr()
        .ok()
        .filter(|addr| !addr.ip().is_unspecified());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed_from(Phase::Running) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(10);
                // Our ACK of the client's first command then rides on its
                // reply instead of going alone: Linux acknowledges the first
                // segment of a connection at once ("quick ACK") and waits
                // for a reply to piggyback on only from the second on. One
                // packet fewer per connection (BENCHMARKS.md, issue 19).
                // Not inherited from the listener, hence per connection.
                let _ = socket2::SockRef::from(&tcp).set_tcp_quickack(false);
                let local = bound.or_else(|| tcp.local_addr().ok()).unwrap_or(peer);
                // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d;
                // ACLs, logs and XCLIENT want the plain IPv4 address.
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                let local = SocketAddr::new(local.ip().to_canonical(), local.port());
                let shared = Arc::clone(&shared);
                let shutdown = shutdown.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    super::connection::serve(tcp, peer, local, shared, shutdown).await;
                    drop(done);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: slow down, don't spin.
                error!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
