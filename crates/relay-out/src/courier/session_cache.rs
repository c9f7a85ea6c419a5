//! Idle SMTP sessions kept for the next message to the same host, as
//! Postfix's smtp client does with its connection cache: a drain of
//! thousands of messages to one MX then needs a handful of connections,
//! greetings, EHLOs and TLS handshakes instead of one of each per message
//! (BENCHMARKS.md, "relay-out drain: session reuse").
//!
//! A session is handed to a later message only when opening a fresh one
//! for it would have given the same session: the same host name, address
//! and port, the same [`Connector`] (one object per TLS policy, route hop
//! or DANE lookup, so the same TLS requirement and verification, AUTH
//! credentials, LMTP and source address) and the same STARTTLS choice.
//! Each message's own policy picks its candidates and connector first, so a
//! session never serves a message whose policy it does not meet.
//!
//! Only a session whose last transaction ended with a positive reply to the
//! data is kept: the dialogue is then back at the start of a transaction
//! without an RSET. It stays at most [`IDLE_LIMIT`] idle and is not kept past
//! [`REUSE_TIME_LIMIT`] after it was opened (Postfix's
//! `smtp_connection_cache_time_limit` and `smtp_connection_reuse_time_limit`
//! defaults), and at most `concurrency_max` sessions (`domain_concurrency_max`
//! per host) wait at once. An MX that closed an idle session is found out at
//! the next MAIL, before any data: the attempt then opens a fresh session
//! to the same host (`attempt`).
//!
//! An idle session holds no delivery slot or shaping place, so it is not
//! used for a destination with a shaping.ini section (whose
//! `max_connections` counts connections) nor while a budget backs off after
//! a rate reply ([`super::shaping::Shaper::keeps_sessions`]); elsewhere, as
//! with Postfix's cache, a destination may briefly have its idle sessions
//! open beside `domain_concurrency_max` busy ones.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use smtp_core::client::SmtpClient;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::connector::Connector;
use super::mx::Candidate;

/// How long a session may wait for the next message (Postfix's
/// `smtp_connection_cache_time_limit`, 2 s): long enough for a queue run's
/// next message, short enough not to hold an MX's connection slot.
pub const IDLE_LIMIT: Duration = Duration::from_secs(2);

/// A session older than this is closed instead of kept (Postfix's
/// `smtp_connection_reuse_time_limit`, 300 s), so that a DNS, TLS policy or
/// MX change reaches a busy destination in bounded time.
pub const REUSE_TIME_LIMIT: Duration = Duration::from_secs(300);

/// What a session must have been opened with to serve a message.
#[derive(Debug, Clone)]
pub struct SessionKey {
    host: String,
    ip: IpAddr,
    port: u16,
    use_tls: bool,
    /// Compared by identity; holding it keeps its address from being
    /// taken by another connector while the session waits.
    connector: Arc<Connector>,
}

impl SessionKey {
    pub fn new(candidate: &Candidate, use_tls: bool) -> Self {
        SessionKey {
            host: candidate.host.clone(),
            ip: candidate.ip,
            port: candidate.port,
            use_tls,
            connector: Arc::clone(&candidate.connector),
        }
    }

    fn same_host(&self, other: &SessionKey) -> bool {
        self.ip == other.ip && self.port == other.port && self.host == other.host
    }

    fn matches(&self, other: &SessionKey) -> bool {
        self.same_host(other)
            && self.use_tls == other.use_tls
            && Arc::ptr_eq(&self.connector, &other.connector)
    }
}

/// An open session and when it was opened (for [`REUSE_TIME_LIMIT`]).
#[derive(Debug)]
pub struct Session {
    pub client: SmtpClient,
    pub opened: Instant,
    /// Taken from the cache: it may have been closed by the host meanwhile.
    pub reused: bool,
}

#[derive(Debug)]
struct Idle {
    key: SessionKey,
    session: Session,
    since: Instant,
}

/// See the module docs.
#[derive(Debug)]
pub struct SessionCache {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    max_idle_per_host: usize,
    reaper_started: AtomicBool,
    /// Wakes the reaper when the first session is put in an empty cache.
    filled: Arc<Notify>,
}

impl SessionCache {
    pub fn new(concurrency_max: usize, domain_concurrency_max: usize) -> Self {
        SessionCache {
            idle: Mutex::new(Vec::new()),
            max_idle: concurrency_max.max(1),
            max_idle_per_host: domain_concurrency_max.max(1),
            reaper_started: AtomicBool::new(false),
            filled: Arc::new(Notify::new()),
        }
    }

    /// An idle session opened as `key` says, the most recently used first
    /// (the oldest are the likeliest to have been closed by the host).
    pub fn take(&self, key: &SessionKey) -> Option<Session> {
        let now = Instant::now();
        let mut idle = self.lock();
        let index = idle
            .iter()
            .rposition(|entry| entry.key.matches(key) && now - entry.since < IDLE_LIMIT)?;
        let mut session = idle.swap_remove(index).session;
        session.reused = true;
        Some(session)
    }

    /// Keeps `session` for the next message to the same host, or closes it
    /// when it may not be kept (out of step, too old, or the cache is full
    /// for this host: the oldest idle one makes room when the whole cache is).
    pub fn put(self: &Arc<Self>, key: SessionKey, session: Session) {
        let now = Instant::now();
        if !session.client.is_usable() || now - session.opened >= REUSE_TIME_LIMIT {
            session.client.close();
            return;
        }
        let evicted = {
            let mut idle = self.lock();
            if idle.iter().filter(|e| e.key.same_host(&key)).count() >= self.max_idle_per_host {
                Some(session)
            } else {
                let evicted = (idle.len() >= self.max_idle).then(|| idle.remove(0).session);
                idle.push(Idle {
                    key,
                    session,
                    since: now,
                });
                if idle.len() == 1 {
                    self.filled.notify_one();
                }
                evicted
            }
        };
        if let Some(session) = evicted {
            session.client.close();
        }
        self.start_reaper();
    }

    /// How many sessions wait; for tests.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One task closes the sessions that waited past [`IDLE_LIMIT`]; it
    /// sleeps while the cache is empty. Started by the first `put`, inside
    /// the runtime.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let cache = Arc::downgrade(self);
        let filled = Arc::clone(&self.filled);
        tokio::spawn(async move {
            loop {
                let Some(cache) = cache.upgrade() else {
                    return;
                };
                let (expired, next) = cache.expire(Instant::now());
                drop(cache);
                for session in expired {
                    session.client.close();
                }
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => filled.notified().await,
                }
            }
        });
    }

    /// Takes out the sessions idle for [`IDLE_LIMIT`] at `now`; also says
    /// when the next of the others expires.
    fn expire(&self, now: Instant) -> (Vec<Session>, Option<Instant>) {
        let mut idle = self.lock();
        let mut expired = Vec::new();
        let mut index = 0;
        while index < idle.len() {
            if now - idle[index].since >= IDLE_LIMIT {
                expired.push(idle.remove(index).session);
            } else {
                index += 1;
            }
        }
        let next = idle.iter().map(|entry| entry.since + IDLE_LIMIT).min();
        (expired, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::courier::tls::TlsUse;
    use smtp_core::client::ClientConfig;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A listener that greets and accepts EHLO and nothing else, enough
    /// for `SmtpClient::connect`.
    async fn server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 test\r\n").await;
                    while let Ok(Some(_)) = lines.next_line().await {
                        let _ = write.write_all(b"250 test\r\n").await;
                    }
                });
            }
        });
        address
    }

    async fn session(address: std::net::SocketAddr) -> Session {
        let client = SmtpClient::connect(address, "mx.test", &ClientConfig::new("me.test"))
            .await
            .unwrap();
        Session {
            client,
            opened: Instant::now(),
            reused: false,
        }
    }

    fn key(address: std::net::SocketAddr, connector: &Arc<Connector>) -> SessionKey {
        SessionKey::new(
            &Candidate {
                host: "mx.test".into(),
                ip: address.ip(),
                port: address.port(),
                connector: Arc::clone(connector),
            },
            false,
        )
    }

    #[tokio::test]
    async fn a_session_serves_only_the_same_host_connector_and_tls_choice() {
        let address = server().await;
        let plain = Arc::new(Connector::plain_for_tests(TlsUse::Off, false));
        let other = Arc::new(Connector::plain_for_tests(TlsUse::Off, false));
        let cache = Arc::new(SessionCache::new(10, 10));
        cache.put(key(address, &plain), session(address).await);
        assert!(
            cache.take(&key(address, &other)).is_none(),
            "other connector"
        );
        let mut tls = key(address, &plain);
        tls.use_tls = true;
        assert!(cache.take(&tls).is_none(), "other STARTTLS choice");
        let mut port = key(address, &plain);
        port.port += 1;
        assert!(cache.take(&port).is_none(), "other port");
        let taken = cache.take(&key(address, &plain)).expect("same key");
        assert!(taken.reused);
        assert!(cache.take(&key(address, &plain)).is_none(), "taken once");
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_the_cache_is_bounded() {
        let address = server().await;
        let plain = Arc::new(Connector::plain_for_tests(TlsUse::Off, false));
        let cache = Arc::new(SessionCache::new(3, 2));
        for _ in 0..3 {
            cache.put(key(address, &plain), session(address).await);
        }
        assert_eq!(cache.idle_count(), 2, "at most 2 per host");
        let (expired, next) = cache.expire(Instant::now());
        assert!(expired.is_empty());
        let next = next.expect("a next expiry");
        assert!(next <= Instant::now() + IDLE_LIMIT);
        let (first, _) = cache.expire(next);
        assert!(!first.is_empty(), "the first one put expires first");
        let (rest, next) = cache.expire(Instant::now() + IDLE_LIMIT);
        assert_eq!((first.len() + rest.len(), next), (2, None));
        let mut old = session(address).await;
        old.opened = Instant::now()
            .checked_sub(REUSE_TIME_LIMIT)
            .expect("the machine is up for longer");
        cache.put(key(address, &plain), old);
        assert_eq!(cache.idle_count(), 0, "too old to keep");
    }

    #[tokio::test]
    async fn the_reaper_closes_sessions_left_idle() {
        let address = server().await;
        let plain = Arc::new(Connector::plain_for_tests(TlsUse::Off, false));
        let cache = Arc::new(SessionCache::new(3, 2));
        cache.put(key(address, &plain), session(address).await);
        assert_eq!(cache.idle_count(), 1);
        let deadline = Instant::now() + IDLE_LIMIT * 3;
        while cache.idle_count() > 0 {
            assert!(
                Instant::now() < deadline,
                "still idle after {:?}",
                IDLE_LIMIT * 3
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
