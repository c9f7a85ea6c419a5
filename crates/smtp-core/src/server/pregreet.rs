//! The pregreet test: does the client talk before our greeting is complete?
//!
//! A real SMTP client reads the whole greeting before it says EHLO; spam
//! bots often send at once. Looking for input just after accept is a race
//! (the bot's bytes may not have arrived yet), so we do what Postfix's
//! postscreen does: send the first line of a multi-line greeting (`220-`),
//! wait up to `early_talker.ini` `pause` for input, and only then send the
//! rest. A client that talks during the wait is caught the moment it does;
//! one that stays quiet has passed and is remembered for a day, so its
//! next connections get the whole greeting without the wait.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long a client that passed is spared the wait: postscreen's
/// `postscreen_greet_ttl`.
const PASS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// At most this many remembered clients (a few hundred kilobytes); when
/// full, expired ones go, and if none has expired all are forgotten: a
/// forgotten client only waits once more.
const MAX_REMEMBERED: usize = 10_000;

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pregreet {
    /// Nothing arrived before the greeting ends: go on.
    Quiet,
    /// Input arrived before the greeting was complete.
    Talked,
    /// The client closed the connection (or it broke) during the wait.
    Gone,
}

/// The test's settings and the clients that passed it, shared by all
/// connections of a server.
#[derive(Debug)]
pub(crate) struct PregreetTest {
    /// `early_talker.ini` `pause`; zero turns the wait (and the `220-` line)
    /// off, leaving one look for input at accept.
    wait: Duration,
    passed: Mutex<HashMap<IpAddr, Instant>>,
}

impl PregreetTest {
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            wait,
            passed: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the test on a new plain-text connection. On [`Pregreet::Quiet`]
    /// the caller sends the greeting proper, which completes the `220-` line
    /// written here, or put in `greeting` for a client that passed before:
    /// it is not waited for, so the whole greeting goes out in one write
    /// (one packet less for every connection of a busy sender).
    pub(crate) async fn run(
        &self,
        tcp: &mut TcpStream,
        me: &str,
        client: IpAddr,
        greeting: &mut Vec<u8>,
    ) -> Pregreet {
        if self.wait.is_zero() {
            return look_now(tcp);
        }
        if self.has_passed(client, Instant::now()) {
            greeting.extend_from_slice(first_line(me).as_bytes());
            return look_now(tcp);
        }
        if tcp.write_all(first_line(me).as_bytes()).await.is_err() {
            return Pregreet::Gone;
        }
        let mut byte = [0u8; 1];
        let found = match tokio::time::timeout(self.wait, tcp.peek(&mut byte)).await {
            Err(_elapsed) => Pregreet::Quiet,
            Ok(Ok(0)) | Ok(Err(_)) => Pregreet::Gone,
            Ok(Ok(_)) => Pregreet::Talked,
        };
        if found == Pregreet::Quiet {
            self.remember(client, Instant::now());
        }
        found
    }

    fn has_passed(&self, client: IpAddr, now: Instant) -> bool {
        let passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        passed
            .get(&remembered_as(client))
            .is_some_and(|&when| now.duration_since(when) < PASS_TTL)
    }

    fn remember(&self, client: IpAddr, now: Instant) {
        let mut passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        if passed.len() >= MAX_REMEMBERED {
            passed.retain(|_, &mut when| now.duration_since(when) < PASS_TTL);
            if passed.len() >= MAX_REMEMBERED {
                passed.clear();
            }
        }
        passed.insert(remembered_as(client), now);
    }
}

/// The greeting's first line, sent before the wait; the greeting proper
/// follows it as the rest of the same multi-line reply.
fn first_line(me: &str) -> String {
    format!("220-{me} ESMTP\r\n")
}

/// Whether input is already waiting, without waiting for any.
fn look_now(tcp: &TcpStream) -> Pregreet {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(tcp).peek(&mut byte) {
        Ok(0) => Pregreet::Gone,
        Ok(_) => Pregreet::Talked,
        Err(_) => Pregreet::Quiet,
    }
}

/// An IPv6 client is remembered by its /64: one host's addresses change
/// within its network's prefix (privacy addresses), and a /64 is what one
/// site gets.
fn remembered_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_passed_is_remembered_for_a_day_by_address_or_64() {
        let test = PregreetTest::new(Duration::from_secs(1));
        let start = Instant::now();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        assert!(!test.has_passed(v4, start));
        test.remember(v4, start);
        test.remember(v6, start);
        assert!(test.has_passed(v4, start + PASS_TTL - Duration::from_secs(1)));
        assert!(!test.has_passed(v4, start + PASS_TTL));
        assert!(!test.has_passed("192.0.2.8".parse().unwrap(), start));
        assert!(test.has_passed("2001:db8:1:2:ffff::1".parse().unwrap(), start));
        assert!(!test.has_passed("2001:db8:1:3::10".parse().unwrap(), start));
    }

    #[test]
    fn the_memory_is_bounded() {
        let test = PregreetTest::new(Duration::from_secs(1));
        let now = Instant::now();
        for n in 0..(MAX_REMEMBERED as u32 + 5) {
            test.remember(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(test.passed.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}
