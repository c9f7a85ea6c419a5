//! Latency percentiles.

use std::time::Duration;

/// Summary of end-of-DATA latencies (the final `.` sent → the reply read).
///
/// Kept as milliseconds with fractions because the targets are stated in
/// milliseconds and sub-millisecond differences matter on loopback.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From per-message latencies in microseconds (sorted in place).
    /// Nearest-rank percentiles; all zero when there are none.
    pub fn from_micros(samples: &mut [u32]) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            f64::from(samples[index.clamp(1, samples.len()) - 1]) / 1000.0
        };
        Latency {
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            max_ms: f64::from(samples[samples.len() - 1]) / 1000.0,
        }
    }
}

/// Microseconds, saturating, for compact latency samples.
pub fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u32> = (1..=100).rev().map(|n| n * 1000).collect();
        let latency = Latency::from_micros(&mut samples);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(Latency::from_micros(&mut [7000]).p99_ms, 7.0);
        assert_eq!(Latency::from_micros(&mut []), Latency::default());
    }

    #[test]
    fn micros_saturate() {
        assert_eq!(micros(Duration::from_micros(5)), 5);
        assert_eq!(micros(Duration::from_secs(1 << 40)), u32::MAX);
    }
}
