//! Failed AUTH attempts per client network, sans-IO (the clock is a
//! parameter): Haraka's growing delay before each `535`, and a lockout
//! after repeated failures, so a password cannot be guessed at wire speed.
//!
//! IPv6 clients are counted per /64: one host usually owns a whole /64 and
//! could otherwise rotate addresses to escape the count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures older than this are forgotten; a locked-out network may try
/// again this long after its last failure.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failures within [`WINDOW`] after which further attempts are refused
/// with `454` without looking at the password.
pub const MAX_FAILURES: u32 = 5;

/// The longest wait before a `535` (Haraka waits 2^(n-1) s without bound).
pub const MAX_DELAY: Duration = Duration::from_secs(8);

/// Past this many tracked networks, expired entries are dropped, so a
/// flood of failing clients cannot grow the table without bound.
const PRUNE_ABOVE: usize = 10_000;

/// See the module docs.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    failures: HashMap<IpAddr, Failures>,
}

/// One network's recent failures: how many, and when the last was (the
/// window counts from it, so a slow guesser stays locked out).
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl AuthThrottle {
    /// Whether `client` may have its credentials checked now.
    pub fn allows(&mut self, client: IpAddr, now: Instant) -> bool {
        let key = network(client);
        match self.failures.get(&key) {
            Some(failures) if now.duration_since(failures.last) >= WINDOW => {
                self.failures.remove(&key);
                true
            }
            Some(failures) => failures.count < MAX_FAILURES,
            None => true,
        }
    }

    /// Records a failure; returns how long to wait before answering it
    /// (1 s, 2 s, 4 s, 8 s, 8 s, …) and whether it locked the network out.
    pub fn failed(&mut self, client: IpAddr, now: Instant) -> (Duration, bool) {
        if self.failures.len() > PRUNE_ABOVE {
            self.failures
                .retain(|_, failures| now.duration_since(failures.last) < WINDOW);
        }
        let entry = self.failures.entry(network(client)).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= WINDOW {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let exponent = entry.count.saturating_sub(1).min(16);
        let delay = Duration::from_secs(1u64 << exponent).min(MAX_DELAY);
        (delay, entry.count == MAX_FAILURES)
    }

    /// A success clears the network's count.
    pub fn succeeded(&mut self, client: IpAddr) {
        self.failures.remove(&network(client));
    }
}

/// The key a client is counted under: its address, or its /64.
fn network(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn delays_grow_then_the_network_is_locked_out_for_the_window() {
        let mut throttle = AuthThrottle::default();
        let start = Instant::now();
        let client = ip("192.0.2.7");
        let mut delays = Vec::new();
        for n in 0..MAX_FAILURES {
            let now = start + Duration::from_secs(u64::from(n));
            assert!(throttle.allows(client, now), "attempt {n}");
            let (delay, locked) = throttle.failed(client, now);
            delays.push(delay.as_secs());
            assert_eq!(locked, n + 1 == MAX_FAILURES);
        }
        assert_eq!(delays, [1, 2, 4, 8, 8]);
        let last = start + Duration::from_secs(u64::from(MAX_FAILURES - 1));
        assert!(!throttle.allows(client, last + WINDOW - Duration::from_secs(1)));
        assert!(
            throttle.allows(ip("192.0.2.8"), last),
            "other clients are not affected"
        );
        assert!(throttle.allows(client, last + WINDOW), "the lockout ends");
        let (delay, locked) = throttle.failed(client, last + WINDOW);
        assert_eq!(
            (delay.as_secs(), locked),
            (1, false),
            "counting starts over"
        );
    }

    #[test]
    fn success_clears_and_ipv6_counts_per_64() {
        let mut throttle = AuthThrottle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            throttle.failed(ip("2001:db8:1:2::1"), now);
        }
        assert!(!throttle.allows(ip("2001:db8:1:2::ffff"), now), "same /64");
        assert!(throttle.allows(ip("2001:db8:1:3::1"), now), "another /64");
        throttle.succeeded(ip("2001:db8:1:2::99"));
        assert!(throttle.allows(ip("2001:db8:1:2::1"), now));
        throttle.failed(ip("::ffff:192.0.2.9"), now);
        throttle.failed(ip("192.0.2.9"), now);
        let (delay, _) = throttle.failed(ip("192.0.2.9"), now);
        assert_eq!(delay.as_secs(), 4, "mapped IPv4 counts as IPv4");
    }
}
