//! Serde helpers that read Haraka INI values into typed settings.
//!
//! The `config` crate's tree holds every INI value as text (or nothing, for a
//! bare key, or a list, for `key[]=`); Haraka itself converts per key at use.
//! These `deserialize_with` helpers do that conversion once, with Haraka's
//! rules, and phrase every failure as `'value': expected <form>` so the loader
//! can prefix the file, section and key.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::error::{expected, expected_for_bare_key};
use super::ini::IniValue;

/// The longest duration any setting accepts. Ten years is far beyond any
/// sensible timeout and keeps `Instant + duration` arithmetic from overflowing.
pub const MAX_DURATION_SECONDS: u64 = 10 * 366 * 24 * 60 * 60;

/// A type that can be read from one INI value.
///
/// One trait for all setting types keeps the error wording uniform and lets a
/// single pair of serde helpers ([`setting`], [`optional_setting`]) serve every
/// field.
pub trait SettingValue: Sized {
    /// Parses written text. The error is the expected form, phrased to follow
    /// "expected", e.g. `"a decimal number"`.
    fn from_text(text: &str) -> Result<Self, String>;

    /// Reads any INI value shape. A bare key (no `=`) reads like an empty
    /// value, so `key` and `key=` mean the same, but its error says
    /// "(no value)"; a `key[]=` list is an error for single-valued settings.
    fn from_value(value: &IniValue) -> Result<Self, String> {
        match value {
            IniValue::Text(text) => Self::from_text(text).map_err(|form| expected(text, &form)),
            IniValue::Bare => Self::from_text("").map_err(|form| expected_for_bare_key(&form)),
            IniValue::List(items) => Err(format!(
                "a list of {} values (key[]=): expected a single value",
                items.len()
            )),
        }
    }
}

/// Haraka's boolean rule: true iff `/^(true|yes|ok|enabled|on|1)$/i`.
pub fn is_haraka_true(text: &str) -> bool {
    ["true", "yes", "ok", "enabled", "on", "1"]
        .iter()
        .any(|word| text.eq_ignore_ascii_case(word))
}

/// Anything that is not a truthy word is false in Haraka, including a bare
/// key (`undefined`), so a boolean never fails to parse.
impl SettingValue for bool {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(is_haraka_true(text))
    }
}

/// Free text; a bare key is empty text.
impl SettingValue for String {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

/// A path as written; a relative one is resolved against the config root by
/// the code that uses it ([`super::ConfigDir::resolve`]).
impl SettingValue for std::path::PathBuf {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.into())
    }
}

/// Parses Haraka's decimal integers: ASCII digits only, no sign, no `0x`.
pub fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

macro_rules! decimal_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn from_text(text: &str) -> Result<Self, String> {
                parse_decimal(text)
                    .and_then(|n| <$ty>::try_from(n).ok())
                    .ok_or_else(|| format!("a decimal number from 0 to {}", <$ty>::MAX))
            }
        }
    )*};
}
decimal_setting!(u32, u64, usize);

/// A TCP port: 1 to 65535 (0 would mean "any port" to the OS).
impl SettingValue for u16 {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_decimal(text)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&port| port != 0)
            .ok_or_else(|| "a port number from 1 to 65535".to_owned())
    }
}

/// A setting whose value is one of a few words, matched case-insensitively.
pub trait Keyword: Sized + Copy + 'static {
    /// Every accepted word and what it means; the first word is the one
    /// shown in messages.
    const WORDS: &'static [(&'static str, Self)];
}

impl<T: Keyword> SettingValue for T {
    fn from_text(text: &str) -> Result<Self, String> {
        T::WORDS
            .iter()
            .find(|(word, _)| text.eq_ignore_ascii_case(word))
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let words: Vec<&str> = T::WORDS.iter().map(|(word, _)| *word).collect();
                format!("one of {}", words.join(", "))
            })
    }
}

/// A Postern-only security switch (`on`/`off`). Unlike Haraka booleans, an
/// unknown word is an error: a typo must not silently turn verification off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnOff(pub bool);

impl Keyword for OnOff {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("on", OnOff(true)),
        ("off", OnOff(false)),
        ("true", OnOff(true)),
        ("false", OnOff(false)),
        ("yes", OnOff(true)),
        ("no", OnOff(false)),
        ("1", OnOff(true)),
        ("0", OnOff(false)),
        ("enabled", OnOff(true)),
        ("disabled", OnOff(false)),
    ];
}

/// A whole number of seconds, Haraka's unit for timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl SettingValue for Seconds {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_decimal(text)
            .filter(|&n| n <= MAX_DURATION_SECONDS)
            .map(|n| Seconds(Duration::from_secs(n)))
            .ok_or_else(|| format!("a whole number of seconds (0 to {MAX_DURATION_SECONDS})"))
    }
}

/// Seconds with an optional decimal fraction (`0.5`), for short pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FractionalSeconds(pub Duration);

impl SettingValue for FractionalSeconds {
    fn from_text(text: &str) -> Result<Self, String> {
        let form =
            || format!("a number of seconds such as 2 or 0.5 (at most {MAX_DURATION_SECONDS})");
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        if parse_decimal(whole).is_none() || parse_decimal(fraction).is_none() {
            return Err(form());
        }
        let seconds: f64 = text.parse().map_err(|_| form())?;
        if !(0.0..=MAX_DURATION_SECONDS as f64).contains(&seconds) {
            return Err(form());
        }
        Ok(FractionalSeconds(Duration::from_secs_f64(seconds)))
    }
}

/// Reads one value with `T`'s rules (`#[serde(deserialize_with = "setting")]`).
pub fn setting<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: SettingValue,
{
    let value = IniValue::deserialize(deserializer)?;
    T::from_value(&value).map_err(de::Error::custom)
}

/// Like [`setting`] for an `Option` field that records whether the key was
/// written at all (serde only calls this when the key is present).
pub fn optional_setting<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: SettingValue,
{
    setting(deserializer).map(Some)
}

/// Reads a `key[]=` array; a plain `key=value` counts as a one-item list, so an
/// environment override (always plain text) can still set it.
pub fn text_list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match IniValue::deserialize(deserializer)? {
        IniValue::List(items) => items,
        IniValue::Text(text) => vec![text],
        IniValue::Bare => Vec::new(),
    })
}

/// [`text_list`] for an `Option` field that records whether the key was
/// written at all.
pub fn optional_text_list<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    text_list(deserializer).map(Some)
}

/// Splits a comma list the way Haraka does (`\s*,\s*`), dropping empty items
/// so `a, b,` means two items.
pub fn split_comma_list(text: &str) -> Vec<&str> {
    text.split(',')
        .map(super::ini::js_trim)
        .filter(|item| !item.is_empty())
        .collect()
}

impl<'de> Deserialize<'de> for IniValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IniValueVisitor)
    }
}

/// Accepts whatever the `config` tree can hold at a key: text from files and
/// environment, nothing for bare keys, arrays for `key[]=`. Numbers and
/// booleans only appear if a caller layered a typed source; they are turned
/// back into text so one parser handles every origin.
struct IniValueVisitor;

impl<'de> Visitor<'de> for IniValueVisitor {
    type Value = IniValue;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a value")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<IniValue, E> {
        Ok(IniValue::Text(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<IniValue, E> {
        Ok(IniValue::Text(text))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<IniValue, E> {
        Ok(IniValue::Text(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<IniValue, E> {
        Ok(IniValue::Text(value.to_string()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<IniValue, E> {
        Ok(IniValue::Text(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<IniValue, E> {
        Ok(IniValue::Text(value.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<IniValue, E> {
        Ok(IniValue::Bare)
    }

    fn visit_none<E: de::Error>(self) -> Result<IniValue, E> {
        Ok(IniValue::Bare)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<IniValue, D::Error> {
        IniValue::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IniValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<IniValue>()? {
            match item {
                IniValue::Text(text) => items.push(text),
                IniValue::Bare => items.push(String::new()),
                IniValue::List(_) => {
                    return Err(de::Error::custom("a nested list: expected a value"));
                }
            }
        }
        Ok(IniValue::List(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<IniValue, A::Error> {
        Err(de::Error::custom(
            "a group of keys: expected a single value (check environment variables with an extra __)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haraka_booleans() {
        for word in ["true", "TRUE", "yes", "Ok", "enabled", "on", "1"] {
            assert_eq!(bool::from_text(word), Ok(true), "{word}");
        }
        for word in ["false", "no", "0", "off", "", "2", "y", " true", "truthy"] {
            assert_eq!(bool::from_text(word), Ok(false), "{word}");
        }
        assert_eq!(bool::from_value(&IniValue::Bare), Ok(false));
        assert!(bool::from_value(&IniValue::List(vec!["1".into()])).is_err());
    }

    #[test]
    fn decimals() {
        assert_eq!(u64::from_text("26214400"), Ok(26_214_400));
        assert_eq!(u64::from_text("007"), Ok(7));
        for bad in ["", "-1", "+1", "1.0", "0x10", "1e3", " 1", "١٢"] {
            assert!(u64::from_text(bad).is_err(), "{bad:?}");
        }
        assert!(u32::from_text("4294967296").is_err());
        assert_eq!(u16::from_text("25"), Ok(25));
        assert!(u16::from_text("0").is_err());
        assert!(u16::from_text("65536").is_err());
        assert_eq!(
            u16::from_value(&IniValue::Text("x".into())),
            Err("'x': expected a port number from 1 to 65535".into())
        );
        assert_eq!(
            u16::from_value(&IniValue::Bare),
            Err("(no value): expected a port number from 1 to 65535".into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            Seconds::from_text("300"),
            Ok(Seconds(Duration::from_secs(300)))
        );
        assert!(Seconds::from_text("5m").is_err());
        assert!(Seconds::from_text(&(MAX_DURATION_SECONDS + 1).to_string()).is_err());
        assert_eq!(
            FractionalSeconds::from_text("0.5"),
            Ok(FractionalSeconds(Duration::from_millis(500)))
        );
        assert_eq!(
            FractionalSeconds::from_text("3"),
            Ok(FractionalSeconds(Duration::from_secs(3)))
        );
        for bad in [
            "",
            ".5",
            "5.",
            "-1",
            "1e9",
            "NaN",
            "inf",
            "99999999999999999999",
        ] {
            assert!(FractionalSeconds::from_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn on_off_is_strict() {
        assert_eq!(OnOff::from_text("ON"), Ok(OnOff(true)));
        assert_eq!(OnOff::from_text("off"), Ok(OnOff(false)));
        assert!(OnOff::from_text("of").is_err());
    }

    #[test]
    fn comma_lists() {
        assert_eq!(split_comma_list(" a ,b,, c "), vec!["a", "b", "c"]);
        assert!(split_comma_list("").is_empty());
    }
}
