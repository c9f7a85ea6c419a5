//! Per-client-address rate limits (limit.ini `[rate_conn]`,
//! `[rate_rcpt_host]`) and a log throttle, both in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::core::rates::RateRule;

/// Past this many tracked addresses, expired windows are swept, so a flood
/// of distinct addresses cannot grow the table without bound.
const SWEEP_ABOVE: usize = 10_000;

/// Counts events per client address in fixed windows of the rule's period.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rule: RateRule,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

impl RateLimiter {
    /// `None` when the rule limits nothing, so the hot path skips it.
    pub(crate) fn new(rule: RateRule) -> Option<Self> {
        (!rule.is_unlimited()).then(|| Self {
            rule,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one event for `ip`; false when it is over the limit.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let Some(rate) = self.rule.for_ip(ip) else {
            return true;
        };
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, w| now.duration_since(w.started) < rate.period);
        }
        let window = windows.entry(ip.to_canonical()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) >= rate.period {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        if window.count >= rate.count {
            return false;
        }
        window.count += 1;
        true
    }
}

/// Lets one log line per client address and kind through per minute, so a
/// flood of refusals costs one line a minute, not one per event.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    last: Mutex<HashMap<(IpAddr, &'static str), Instant>>,
}

const LOG_EVERY: Duration = Duration::from_secs(60);

impl LogThrottle {
    pub(crate) fn should_log(&self, ip: IpAddr, kind: &'static str, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() > SWEEP_ABOVE {
            last.retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        }
        match last.get(&(ip, kind)) {
            Some(at) if now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                last.insert((ip, kind), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::core::rates::Rate;

    fn limiter(count: u32, secs: u64) -> RateLimiter {
        RateLimiter::new(RateRule {
            default: Some(Rate {
                count,
                period: Duration::from_secs(secs),
            }),
            networks: vec![(
                "127.0.0.0/8".parse().unwrap(),
                Rate {
                    count: 0,
                    period: Duration::from_secs(60),
                },
            )],
        })
        .unwrap()
    }

    #[test]
    fn counts_per_address_and_window() {
        let limiter = limiter(2, 60);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.allow(a, t0));
        assert!(limiter.allow(a, t0));
        assert!(!limiter.allow(a, t0 + Duration::from_secs(1)));
        assert!(limiter.allow(b, t0));
        assert!(
            limiter.allow(a, t0 + Duration::from_secs(60)),
            "a new window"
        );
        for _ in 0..100 {
            assert!(
                limiter.allow("127.0.0.1".parse().unwrap(), t0),
                "exempt network"
            );
        }
    }

    #[test]
    fn no_rule_no_limiter() {
        assert!(RateLimiter::new(RateRule::default()).is_none());
    }

    #[test]
    fn log_throttle_once_a_minute_per_address_and_kind() {
        let throttle = LogThrottle::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(throttle.should_log(a, "rate", t0));
        assert!(!throttle.should_log(a, "rate", t0 + Duration::from_secs(30)));
        assert!(throttle.should_log(a, "cap", t0 + Duration::from_secs(30)));
        assert!(throttle.should_log(a, "rate", t0 + Duration::from_secs(61)));
    }
}
