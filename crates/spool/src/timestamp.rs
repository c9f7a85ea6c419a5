//! RFC 3339 timestamps for envelope files.
//!
//! Envelopes are meant to be read by an admin with `cat`, so times are written
//! as `2026-11-03T14:05:09Z` rather than as opaque unix seconds. The calendar
//! arithmetic is chrono's; what is ours is the contract of the file format,
//! which files written by earlier versions rely on: whole seconds in UTC with
//! a `Z` when writing, years 1970..=9999 only, and a lenient reader (an
//! admin may have edited the file by hand: `t`/`z`/space, any fraction,
//! which is dropped, and numeric offsets).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, SecondsFormat, Utc};

/// Years outside this range are refused: they can only come from a damaged or
/// hand-edited file.
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 9999;
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
    // In range by the clamp above, so the fallback is never taken.
    let utc = i64::try_from(seconds)
        .ok()
        .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0))
        .unwrap_or_default();
    utc.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; the fraction is ignored.
/// Lenient about `t`/`z`/space, since an admin may have edited the file by hand.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, BadTimestamp> {
    let bad = || BadTimestamp(text.chars().take(64).collect());
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|_| bad())?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&parsed.year()) {
        return Err(bad());
    }
    // `timestamp` counts whole seconds, so a fraction (and the extra second
    // chrono keeps for a leap second `:60`) is dropped, as before.
    let seconds = u64::try_from(parsed.timestamp()).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(seconds))
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
