//! shaping.ini (Postern): per-destination sending budgets, so that a big
//! provider is not sent more sessions or messages than it accepts.
//!
//! ```ini
//! ; every domain whose MX host ends in .google.com
//! [*.google.com]
//! max_connections = 5
//! messages_per_minute = 60
//! ; rest after a rate reply (421, 4.7.28, ...)
//! suspend = 60s
//!
//! ; this recipient domain only
//! [example.org]
//! max_connections = 2
//! ```
//!
//! A section `[*.suffix]` matches MX host names ending in `.suffix`, so
//! all domains hosted there share one budget; any other section name is a
//! recipient domain. The courier side is `crate::courier::shaping`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use smtp_core::config::values::{SettingValue, optional_setting, parse_decimal};
use smtp_core::config::{ConfigDir, ConfigError, files};

use super::retry::parse_span;

/// How long a destination rests after a rate reply when its section does
/// not say: long enough for a per-minute window at the provider to pass.
pub const DEFAULT_SUSPEND: Duration = Duration::from_secs(60);

/// The report for `messages_per_connection`, which is accepted (it is in
/// the shipped examples, and KumoMTA's and Postfix's vocabulary) but is
/// always met.
pub const MESSAGES_PER_CONNECTION_REPORT: &str =
    "messages_per_connection has no effect: relay-out sends one message per connection";

/// What a section applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShapingMatch {
    /// A recipient domain (lower case).
    Domain(String),
    /// MX host names ending in `.suffix` (stored without the leading dot).
    MxSuffix(String),
}

impl ShapingMatch {
    /// True if `host` (an MX host name) falls under this suffix.
    pub fn matches_mx(&self, host: &str) -> bool {
        let ShapingMatch::MxSuffix(suffix) = self else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host.len() > suffix.len()
            && host.ends_with(suffix.as_str())
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
    }
}

/// One section of shaping.ini, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapingRule {
    pub matches: ShapingMatch,
    /// The section as written, for logs, metrics and `--check`.
    pub name: String,
    /// Sessions at once for the whole destination; `None`: only
    /// outbound.ini `domain_concurrency_max` (per domain) applies.
    pub max_connections: Option<usize>,
    /// Sessions started per minute, spread evenly (one message per session).
    pub messages_per_minute: Option<u32>,
    /// How long the destination rests after a rate reply.
    pub suspend: Duration,
}

/// shaping.ini's sections, most specific first (the first match wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShapingRules {
    pub rules: Vec<ShapingRule>,
}

/// A positive whole number (a limit of 0 would be `disabled=true` in disguise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count(u32);

impl SettingValue for Count {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_decimal(text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n >= 1)
            .map(Count)
            .ok_or_else(|| "a whole number of at least 1".to_owned())
    }
}

/// A time span such as `60s`, `5m` (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span(Duration);

impl SettingValue for Span {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_span(text.trim(), false)
            .map(Span)
            .map_err(|_| "a duration such as 60s, 5m or 1h".to_owned())
    }
}

/// One section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SectionIni {
    #[serde(deserialize_with = "optional_setting")]
    max_connections: Option<Count>,
    #[serde(deserialize_with = "optional_setting")]
    messages_per_connection: Option<Count>,
    #[serde(deserialize_with = "optional_setting")]
    messages_per_minute: Option<Count>,
    #[serde(deserialize_with = "optional_setting")]
    suspend: Option<Span>,
}

impl ShapingRules {
    /// Reads shaping.ini; no file means no budgets (the automatic back-off
    /// on rate replies still applies to every destination).
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let sections = dir.ini::<BTreeMap<String, SectionIni>>(files::SHAPING_INI)?;
        let shown = dir.shown(files::SHAPING_INI);
        let mut rules = Vec::new();
        for (name, section) in sections {
            if section.messages_per_connection.is_some() {
                dir.warn(format!(
                    "{shown}: [{name}] {MESSAGES_PER_CONNECTION_REPORT}"
                ));
            }
            if section.max_connections.is_none()
                && section.messages_per_minute.is_none()
                && section.suspend.is_none()
            {
                continue;
            }
            let matches = parse_section(&name).map_err(|detail| ConfigError::BadValue {
                origin: shown.clone(),
                section: name.clone(),
                key: String::new(),
                detail,
            })?;
            rules.push(ShapingRule {
                matches,
                name,
                max_connections: section.max_connections.map(|Count(n)| n as usize),
                messages_per_minute: section.messages_per_minute.map(|Count(n)| n),
                suspend: section.suspend.map_or(DEFAULT_SUSPEND, |Span(span)| span),
            });
        }
        // The most specific section wins: a domain's own, then the longest
        // suffix (`*.protection.outlook.com` before `*.outlook.com`).
        rules.sort_by_key(|rule| match &rule.matches {
            ShapingMatch::Domain(_) => (false, std::cmp::Reverse(0)),
            ShapingMatch::MxSuffix(suffix) => (true, std::cmp::Reverse(suffix.len())),
        });
        Ok(ShapingRules { rules })
    }

    /// The rule for a recipient domain, if it has its own section.
    pub fn for_domain(&self, domain: &str) -> Option<&ShapingRule> {
        self.rules
            .iter()
            .find(|rule| matches!(&rule.matches, ShapingMatch::Domain(d) if d.eq_ignore_ascii_case(domain)))
    }

    /// The first suffix rule matching one of `mx_hosts` (in preference order).
    pub fn for_mx_hosts<'a>(
        &self,
        mx_hosts: impl IntoIterator<Item = &'a str>,
    ) -> Option<&ShapingRule> {
        mx_hosts
            .into_iter()
            .find_map(|host| self.rules.iter().find(|rule| rule.matches.matches_mx(host)))
    }

    /// True if some section names an MX suffix (then the MX hosts must be
    /// known before a session starts).
    pub fn has_suffixes(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| matches!(rule.matches, ShapingMatch::MxSuffix(_)))
    }
}

fn parse_section(name: &str) -> Result<ShapingMatch, String> {
    let lower = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let (suffix, label) = match lower.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, lower.as_str()),
    };
    let valid = !label.is_empty()
        && label.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!(
            "section name '{name}': expected a domain (example.com) or an MX host suffix (*.google.com)"
        ));
    }
    Ok(if suffix {
        ShapingMatch::MxSuffix(label.to_owned())
    } else {
        ShapingMatch::Domain(label.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_matches_only_whole_labels() {
        let google = ShapingMatch::MxSuffix("google.com".to_owned());
        assert!(google.matches_mx("aspmx.l.google.com"));
        assert!(google.matches_mx("ASPMX.L.GOOGLE.COM."));
        assert!(!google.matches_mx("google.com"));
        assert!(!google.matches_mx("notgoogle.com"));
        assert!(!ShapingMatch::Domain("google.com".to_owned()).matches_mx("a.google.com"));
    }

    /// The shipped examples, uncommented, load as documented.
    #[test]
    fn the_shipped_entries_load_when_uncommented() {
        let shipped = include_str!("../../../../config-out/shaping.ini");
        let uncommented: String = shipped
            .lines()
            .filter_map(|line| line.strip_prefix(';'))
            .filter(|line| line.starts_with('[') || line.contains(" = "))
            .map(|line| format!("{line}\n"))
            .collect();
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::write(temp.path().join(files::SHAPING_INI), uncommented).expect("write");
        let dir = ConfigDir::open(temp.path()).expect("open");
        let rules = ShapingRules::load(&dir).expect("shipped entries load");
        let names: Vec<&str> = rules.rules.iter().map(|rule| rule.name.as_str()).collect();
        assert_eq!(
            names,
            ["*.protection.outlook.com", "*.yahoodns.net", "*.google.com"]
        );
        assert_eq!(rules.rules[2].max_connections, Some(5));
        assert_eq!(rules.rules[1].suspend, Duration::from_secs(2 * 60 * 60));
        let mx = ["mta5.am0.yahoodns.net"];
        assert_eq!(
            rules.for_mx_hosts(mx).map(|rule| rule.name.as_str()),
            Some("*.yahoodns.net")
        );
    }

    #[test]
    fn section_names() {
        assert_eq!(
            parse_section("*.Outlook.com"),
            Ok(ShapingMatch::MxSuffix("outlook.com".to_owned()))
        );
        assert_eq!(
            parse_section("yahoo.com"),
            Ok(ShapingMatch::Domain("yahoo.com".to_owned()))
        );
        assert!(parse_section("*").is_err());
        assert!(parse_section("a..b").is_err());
    }
}
