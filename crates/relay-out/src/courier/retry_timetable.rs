//! The retry timetable: when to try a temporarily failed delivery again,
//! and when to give up. (Reading `temp_fail_intervals` from outbound.ini is
//! `config::retry`; the queue lifetime is applied in `outcome`.)
//!
//! Follows Haraka (`outbound/config.js` `set_temp_fail_intervals`,
//! `hmail.temp_fail`): after the n-th temporary failure the message waits the
//! n-th interval; when there is no n-th interval it bounces. Jitter is added
//! so that messages deferred together by one busy server do not all come back
//! in the same second.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Each delay is moved by up to this fraction either way.
const JITTER: f64 = 0.10;

/// Haraka's first derived interval is 2^6 s: interval i is 2^(i + 5) s.
const HARAKA_EXPONENT_OFFSET: u32 = 5;

/// The waits between attempts after successive temporary failures; running
/// off the end means the message bounces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTimetable {
    intervals: Intervals,
}

/// Haraka's derived timetable is computed rather than stored, so an absurd
/// `maxTempFailures` cannot make us allocate billions of intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Intervals {
    Doubling { max_temp_failures: u32 },
    Listed(Vec<Duration>),
}

impl RetryTimetable {
    /// Haraka's default: 2^(i+5) s for i = 1..max_temp_failures-1 (64 s to
    /// 131072 s for 13), bouncing on failure number `max_temp_failures`.
    pub fn haraka_default(max_temp_failures: u32) -> Self {
        RetryTimetable {
            intervals: Intervals::Doubling { max_temp_failures },
        }
    }

    /// `outbound.ini` `temp_fail_intervals`, already parsed; empty (`none`)
    /// bounces on the first temporary failure.
    pub fn from_intervals(intervals: Vec<Duration>) -> Self {
        RetryTimetable {
            intervals: Intervals::Listed(intervals),
        }
    }

    /// The wait before the next attempt after `failures` temporary failures
    /// (1-based; 0 is treated as 1), without jitter. `None` = give up.
    pub fn interval(&self, failures: u32) -> Option<Duration> {
        let failures = failures.max(1);
        match &self.intervals {
            Intervals::Doubling { max_temp_failures } => {
                (failures < *max_temp_failures).then(|| {
                    let exponent = failures.saturating_add(HARAKA_EXPONENT_OFFSET);
                    Duration::from_secs(1u64.checked_shl(exponent).unwrap_or(u64::MAX))
                })
            }
            Intervals::Listed(list) => usize::try_from(failures - 1)
                .ok()
                .and_then(|index| list.get(index))
                .copied(),
        }
    }

    /// The timetable outbound.ini asks for: `temp_fail_intervals` when it is
    /// set (`intervals`), else Haraka's doubling shaped by `maxTempFailures`.
    pub fn from_config(intervals: Option<&[Duration]>, max_temp_failures: u32) -> Self {
        match intervals {
            Some(intervals) => Self::from_intervals(intervals.to_vec()),
            None => Self::haraka_default(max_temp_failures),
        }
    }

    /// [`interval`](Self::interval) moved by a random ±10%. `None` = give up
    /// (bounce).
    pub fn next_delay(&self, failures: u32, rng: &mut impl Rng) -> Option<Duration> {
        let base = self.interval(failures)?;
        let factor = rng.random_range(1.0 - JITTER..=1.0 + JITTER);
        Some(Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX))
    }
}

/// Whether a message that arrived at `arrival` has outlived the queue
/// lifetime and must bounce whatever its timetable says. A clock that went
/// backwards does not expire anything.
pub fn expired(arrival: SystemTime, now: SystemTime, lifetime: Duration) -> bool {
    now.duration_since(arrival).is_ok_and(|age| age > lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().copied().map(Duration::from_secs).collect()
    }

    fn unjittered(timetable: &RetryTimetable) -> Vec<Duration> {
        (1..)
            .map_while(|failures| timetable.interval(failures))
            .take(100)
            .collect()
    }

    #[test]
    fn haraka_default_for_13_failures() {
        let timetable = RetryTimetable::haraka_default(13);
        assert_eq!(
            unjittered(&timetable),
            secs(&[
                64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072
            ])
        );
        assert_eq!(timetable.interval(12), Some(Duration::from_secs(131072)));
        assert_eq!(timetable.interval(13), None);
        assert_eq!(timetable.interval(0), timetable.interval(1));
        let total: u64 = unjittered(&timetable).iter().map(Duration::as_secs).sum();
        assert_eq!(total, 262_080, "about 3.03 days, as documented");
    }

    #[test]
    fn haraka_default_edges() {
        assert_eq!(
            unjittered(&RetryTimetable::haraka_default(0)),
            Vec::<Duration>::new()
        );
        assert_eq!(
            unjittered(&RetryTimetable::haraka_default(1)),
            Vec::<Duration>::new()
        );
        assert_eq!(unjittered(&RetryTimetable::haraka_default(2)), secs(&[64]));
        let huge = RetryTimetable::haraka_default(u32::MAX);
        assert_eq!(huge.interval(58), Some(Duration::from_secs(1 << 63)));
        assert_eq!(huge.interval(59), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(
            huge.interval(u32::MAX - 1),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(huge.interval(u32::MAX), None);
    }

    #[test]
    fn custom_intervals_are_used_in_order_then_bounce() {
        let timetable = RetryTimetable::from_intervals(secs(&[60, 300, 300, 3600]));
        assert_eq!(unjittered(&timetable), secs(&[60, 300, 300, 3600]));
        assert_eq!(timetable.interval(5), None);
        assert_eq!(timetable.interval(u32::MAX), None);
    }

    #[test]
    fn configured_intervals_win_over_max_temp_failures() {
        assert_eq!(
            unjittered(&RetryTimetable::from_config(None, 3)),
            secs(&[64, 128])
        );
        assert_eq!(
            unjittered(&RetryTimetable::from_config(Some(&secs(&[5, 10])), 3)),
            secs(&[5, 10])
        );
        assert_eq!(
            unjittered(&RetryTimetable::from_config(Some(&[]), 13)),
            Vec::<Duration>::new()
        );
    }

    #[test]
    fn empty_intervals_bounce_on_first_failure() {
        let timetable = RetryTimetable::from_intervals(Vec::new());
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(timetable.interval(1), None);
        assert_eq!(timetable.next_delay(1, &mut rng), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let timetable = RetryTimetable::haraka_default(13);
        let mut rng = StdRng::seed_from_u64(42);
        for failures in 1..13 {
            let base = timetable.interval(failures).unwrap().as_secs_f64();
            let mut seen = Vec::new();
            for _ in 0..200 {
                let delay = timetable
                    .next_delay(failures, &mut rng)
                    .unwrap()
                    .as_secs_f64();
                assert!(delay >= base * 0.9 - 1e-6 && delay <= base * 1.1 + 1e-6);
                seen.push(delay);
            }
            let low = seen.iter().copied().fold(f64::MAX, f64::min);
            let high = seen.iter().copied().fold(0.0, f64::max);
            assert!(low < base * 0.95 && high > base * 1.05, "jitter spreads");
        }
        assert_eq!(timetable.next_delay(13, &mut rng), None);
    }

    #[test]
    fn jitter_is_reproducible_from_a_seed_and_never_overflows() {
        let timetable = RetryTimetable::haraka_default(13);
        let a: Vec<_> = (1..13)
            .map(|n| timetable.next_delay(n, &mut StdRng::seed_from_u64(7)))
            .collect();
        let b: Vec<_> = (1..13)
            .map(|n| timetable.next_delay(n, &mut StdRng::seed_from_u64(7)))
            .collect();
        assert_eq!(a, b);
        let max = RetryTimetable::from_intervals(vec![Duration::MAX]);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            assert!(max.next_delay(1, &mut rng).is_some());
        }
    }

    #[test]
    fn expiry() {
        let arrival = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let lifetime = Duration::from_secs(5 * 86_400);
        let cases = [
            (Duration::from_secs(0), false),
            (lifetime - Duration::from_secs(1), false),
            (lifetime, false),
            (lifetime + Duration::from_secs(1), true),
        ];
        for (age, expected) in cases {
            assert_eq!(
                expired(arrival, arrival + age, lifetime),
                expected,
                "{age:?}"
            );
        }
        let clock_went_back = arrival - Duration::from_secs(3600);
        assert!(!expired(arrival, clock_went_back, Duration::ZERO));
    }
}
