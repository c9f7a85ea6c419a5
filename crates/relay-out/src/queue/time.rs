//! RFC 3339 timestamps for envelope files.
//!
//! Envelopes are meant to be read by an admin with `cat`, so times are written
//! as `2026-11-03T14:05:09Z` rather than as opaque unix seconds. The relay-out
//! crate does not depend on chrono, and the two conversions needed here are a
//! few lines of well-known calendar arithmetic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: u64 = 86_400;
/// Years outside this range are refused: they can only come from a damaged or
/// hand-edited file, and bounding them keeps all arithmetic far from overflow.
const FIRST_YEAR: i64 = 1970;
const LAST_YEAR: i64 = 9999;
/// 9999-12-31T23:59:59Z.
const LAST_SECOND: u64 = 253_402_300_799;

/// Why a timestamp in an envelope was refused; folded into
/// [`super::SpoolError::Corrupt`] by the envelope decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp (expected like 2026-11-03T14:05:09Z): {0:?}")]
pub struct BadTimestamp(String);

/// Formats `time` in UTC with whole seconds (sub-seconds are dropped: retry
/// schedules are coarser than that). Times outside 1970..=9999 are clamped,
/// so that whatever is written can be parsed back.
pub fn format_rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
        .min(LAST_SECOND);
    let days = seconds / SECONDS_PER_DAY;
    let of_day = seconds % SECONDS_PER_DAY;
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; the fraction is ignored.
/// Lenient about `t`/`z`/space, since an admin may have edited the file by hand.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, BadTimestamp> {
    let bad = || BadTimestamp(text.chars().take(64).collect());
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !text.is_ascii() {
        return Err(bad());
    }
    let separators_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, BadTimestamp> {
        let digits = &text[range];
        if digits.bytes().all(|byte| byte.is_ascii_digit()) {
            digits.parse::<i64>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let month_ok = (1..=12).contains(&month);
    if !(FIRST_YEAR..=LAST_YEAR).contains(&year) || !month_ok {
        return Err(bad());
    }
    if day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }

    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = number(text.len() - 5..text.len() - 3)?;
            let minutes = number(text.len() - 2..text.len())?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return Err(bad()),
    };

    let local_seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY as i64
        + hour * 3600
        + minute * 60
        + second.min(59);
    let utc_seconds = u64::try_from(local_seconds - offset_seconds).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(utc_seconds))
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `#[serde(with = ...)]` adapter for a required timestamp.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_rfc3339(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = ...)]` adapter for an optional timestamp (`null` = none).
pub mod rfc3339_option {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(
        time: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.serialize_some(&super::format_rfc3339(*time)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => super::parse_rfc3339(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn known_dates_format_and_parse() {
        let table = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ];
        for (seconds, text) in table {
            assert_eq!(format_rfc3339(at(seconds)), text);
            assert_eq!(parse_rfc3339(text), Ok(at(seconds)), "{text}");
        }
        assert_eq!(
            format_rfc3339(at(LAST_SECOND + 86_400 * 400)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            format_rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn every_day_round_trips() {
        for day in (0..2_932_000u64).step_by(997) {
            let time = at(day * 86_400 + 3_723);
            assert_eq!(parse_rfc3339(&format_rfc3339(time)), Ok(time));
        }
    }

    #[test]
    fn offsets_fractions_and_lowercase_are_accepted() {
        let expected = Ok(at(1_700_000_000));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456Z"), expected);
        assert_eq!(parse_rfc3339("2023-11-14t22:13:20z"), expected);
        assert_eq!(parse_rfc3339("2023-11-15T00:13:20+02:00"), expected);
        assert_eq!(parse_rfc3339("2023-11-14T17:13:20-05:00"), expected);
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for text in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-02-29T22:13:20Z",
            "2023-11-31T22:13:20Z",
            "2023-11-14T24:13:20Z",
            "2023-11-14T22:13:20+2:00",
            "2023-11-14T22:13:20.Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+01:00",
            "+023-11-14T22:13:20Z",
            "2023-11-14T22:13:2\u{e9}Z",
            "2023\u{e9}11-14T22:13:20Z",
        ] {
            assert!(parse_rfc3339(text).is_err(), "{text:?} accepted");
        }
    }
}
