//! Haraka's retry-schedule syntax (`temp_fail_intervals = 1m, 5m*2, 1h*3`)
//! and the durations it is made of (`5d`, `36h`).
//!
//! Shared by both binaries: relay-out's outbound.ini schedules its MX
//! deliveries with it, and relay-in's backup-MX spool its backend retries,
//! so an administrator writes one syntax for both.
//!
//! Haraka falls back to its derived schedule when the text does not parse,
//! and only logs it; a typo then silently changes how long mail is retried.
//! Postern refuses to start instead and says which element is wrong.

use std::time::Duration;

use super::values::{MAX_DURATION_SECONDS, SettingValue, parse_decimal};

/// Below this a retry delay is accepted (Haraka takes `1s, 1s, 1s`, and
/// test setups use it) but warned about: a real MX would be hammered.
pub const SANE_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Cap on the number of retries a schedule may expand to, so `1m*9999999999`
/// cannot allocate without bound.
pub const MAX_RETRIES: usize = 1000;

/// The largest `maxTempFailures` accepted; 2^(50+5) s is already absurd.
pub const MAX_TEMP_FAILURES: u32 = 50;

/// A parsed `temp_fail_intervals`: the delay before each retry, in order.
/// Empty means "bounce on the first temporary failure" (`none`).
///
/// Only the syntax lives here; what the intervals mean, and Haraka's derived
/// schedule when the key is unset, is each binary's (relay-out's
/// `courier::retry_timetable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFailIntervals(pub Vec<Duration>);

impl SettingValue for TempFailIntervals {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_schedule(text).map_err(|problem| {
            format!(
                "intervals like \"1m, 5m*2, 1h*3\" (units s, m, h, d; each more than 0s) or none; {problem}"
            )
        })
    }
}

/// Parses the schedule; the error describes the first bad element.
pub fn parse_schedule(text: &str) -> Result<TempFailIntervals, String> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    if compact.is_empty() {
        return Err("nothing specified".to_owned());
    }
    if compact == "none" {
        return Ok(TempFailIntervals(Vec::new()));
    }
    let mut delays = Vec::new();
    for (index, element) in compact.split(',').enumerate() {
        let number = index + 1;
        let (span, count) = match element.split_once('*') {
            None => (element, 1),
            Some((span, count)) => {
                let count = parse_decimal(count)
                    .filter(|&c| c >= 1)
                    .ok_or_else(|| {
                        format!("element {number} '{element}': the count after * must be a whole number from 1")
                    })?;
                (span, count)
            }
        };
        let delay = parse_span(span, true)
            .map_err(|problem| format!("element {number} '{element}': {problem}"))?;
        if delay.is_zero() {
            return Err(format!("element {number} '{element}': a delay of 0"));
        }
        let total = usize::try_from(count)
            .ok()
            .and_then(|count| delays.len().checked_add(count))
            .filter(|&total| total <= MAX_RETRIES)
            .ok_or_else(|| format!("more than {MAX_RETRIES} retries"))?;
        delays.resize(total, delay);
    }
    Ok(TempFailIntervals(delays))
}

/// One time span: a decimal number (fraction allowed, as Haraka's
/// `Number()`) and a unit `s`, `m`, `h` or `d`; the unit may be omitted
/// (meaning seconds) only when `unit_required` is false.
pub fn parse_span(span: &str, unit_required: bool) -> Result<Duration, String> {
    let (digits, multiplier) = match span.char_indices().last() {
        Some((at, 's')) => (&span[..at], 1.0),
        Some((at, 'm')) => (&span[..at], 60.0),
        Some((at, 'h')) => (&span[..at], 3_600.0),
        Some((at, 'd')) => (&span[..at], 86_400.0),
        Some((_, c)) if c.is_ascii_digit() && !unit_required => (span, 1.0),
        _ => return Err("expected a number followed by s, m, h or d".to_owned()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    if parse_decimal(whole).is_none() || parse_decimal(fraction).is_none() {
        return Err("expected a number followed by s, m, h or d".to_owned());
    }
    let seconds = digits
        .parse::<f64>()
        .map_err(|_| "expected a number".to_owned())?
        * multiplier;
    if !(0.0..=MAX_DURATION_SECONDS as f64).contains(&seconds) {
        return Err("too long".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A single duration such as `5d`, `36h` or `3600` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Duration);

impl SettingValue for Lifetime {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_span(&text.to_lowercase(), false)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Lifetime)
            .ok_or_else(|| "a duration such as 5d, 36h or 3600 (seconds)".to_owned())
    }
}

/// `maxTempFailures`: 1 to [`MAX_TEMP_FAILURES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxTempFailures(pub u32);

impl SettingValue for MaxTempFailures {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_decimal(text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_TEMP_FAILURES).contains(n))
            .map(MaxTempFailures)
            .ok_or_else(|| format!("a whole number from 1 to {MAX_TEMP_FAILURES}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(schedule: &TempFailIntervals) -> Vec<u64> {
        schedule.0.iter().map(Duration::as_secs).collect()
    }

    #[test]
    fn haraka_examples() {
        let cases: &[(&str, &[u64])] = &[
            ("10s, 1m*2", &[10, 60, 60]),
            (
                "30s, 1m, 5m, 9m, 15m*3, 30m*2, 1h*3, 2h*3, 1d",
                &[
                    30, 60, 300, 540, 900, 900, 900, 1800, 1800, 3600, 3600, 3600, 7200, 7200,
                    7200, 86400,
                ],
            ),
            ("none", &[]),
            (" NONE ", &[]),
            ("1 m , 5M * 2", &[60, 300, 300]),
            ("1.5m", &[90]),
            ("5s", &[5]),
            // Short delays are Haraka's too (a warning says so at load).
            ("1s, 1s, 1s", &[1, 1, 1]),
        ];
        for (text, expected) in cases {
            let parsed = parse_schedule(text).expect(text);
            assert_eq!(seconds(&parsed), expected.to_vec(), "input {text:?}");
        }
    }

    #[test]
    fn syntax_errors_are_errors() {
        let cases = [
            ("", "nothing specified"),
            ("60 min", "element 1 '60min'"),
            ("1m,", "element 2 ''"),
            ("0s", "a delay of 0"),
            ("1m*0", "count after *"),
            ("1m*2*3", "count after *"),
            ("1m*x", "count after *"),
            ("60", "element 1 '60'"),
            ("1x", "element 1 '1x'"),
            ("-1m", "element 1 '-1m'"),
            ("1m*1001", "more than 1000 retries"),
            ("1m*99999999999999999999", "count after *"),
            ("99999999999d", "too long"),
        ];
        for (text, expected) in cases {
            let error = parse_schedule(text).expect_err(text);
            assert!(error.contains(expected), "input {text:?}: {error}");
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(
            Lifetime::from_text("5d"),
            Ok(Lifetime(Duration::from_secs(432_000)))
        );
        assert_eq!(
            Lifetime::from_text("3600"),
            Ok(Lifetime(Duration::from_secs(3600)))
        );
        assert!(Lifetime::from_text("0").is_err());
        assert!(Lifetime::from_text("five days").is_err());
    }
}
