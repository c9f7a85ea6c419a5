//! A destination's TLS-RPT record (RFC 8460 §3): the TXT at
//! `_smtp._tls.<domain>`, parsed strictly, and cached so that a busy
//! destination costs one lookup an hour, not one per session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use smtp_core::dns::Dns;

use crate::config::routes::percent_decode;

/// How long an answer (a record, or none) is trusted.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// How long a temporary DNS failure is remembered (sessions meanwhile are
/// not recorded: a report without them beats a lookup per session).
const FAILURE_TTL: Duration = Duration::from_secs(300);
/// Bound on the cache; when full it starts over.
const CACHE_MAX: usize = 10_000;

/// Where a domain wants its reports: the `rua` URIs, in the record's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rua {
    pub uris: Vec<ReportUri>,
}

/// One `rua` destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportUri {
    /// The address after `mailto:` (percent-decoded; RFC 6068 query parts
    /// are not allowed here).
    Mailto(String),
    /// The whole `https:` URI, to POST to.
    Https(String),
}

/// Why a TXT record is not a usable TLS-RPT record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no record starts with v=TLSRPTv1")]
    None,
    #[error("{0} records start with v=TLSRPTv1 (RFC 8460 §3: exactly one)")]
    Several(usize),
    #[error("malformed field {0:?}")]
    BadField(String),
    #[error("no rua field")]
    NoRua,
    #[error("more than one rua field")]
    SeveralRua,
    #[error("rua URI {0:?} is neither mailto: nor https:")]
    BadUri(String),
}

/// Picks the one TLS-RPT record among a name's TXT records and parses it.
pub fn parse_records(records: &[String]) -> Result<Rua, RecordError> {
    let candidates: Vec<&String> = records.iter().filter(|record| is_tlsrpt(record)).collect();
    match candidates.as_slice() {
        [] => Err(RecordError::None),
        [one] => parse_record(one),
        several => Err(RecordError::Several(several.len())),
    }
}

/// A record is a TLS-RPT one when its first field is exactly the version.
fn is_tlsrpt(record: &str) -> bool {
    record
        .split(';')
        .next()
        .is_some_and(|first| first.trim_matches(is_wsp) == "v=TLSRPTv1")
        && record.starts_with("v=TLSRPTv1")
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 8460 §3's grammar: `v=TLSRPTv1`, then `;`-separated fields (a
/// trailing `;` allowed), one `rua` with comma-separated URIs, extension
/// fields `name=value` ignored.
pub fn parse_record(record: &str) -> Result<Rua, RecordError> {
    let mut fields = record.split(';');
    if fields.next().map(|v| v.trim_matches(is_wsp)) != Some("v=TLSRPTv1") {
        return Err(RecordError::None);
    }
    let mut rua = None;
    let fields: Vec<&str> = fields.map(|f| f.trim_matches(is_wsp)).collect();
    for (index, field) in fields.iter().enumerate() {
        if field.is_empty() && index == fields.len() - 1 {
            break;
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(RecordError::BadField((*field).to_owned()));
        };
        if name == "rua" {
            if rua.is_some() {
                return Err(RecordError::SeveralRua);
            }
            let uris = value
                .split(',')
                .map(|uri| parse_uri(uri.trim_matches(is_wsp)))
                .collect::<Result<Vec<_>, _>>()?;
            rua = Some(Rua { uris });
        } else if !valid_ext(name, value) {
            return Err(RecordError::BadField((*field).to_owned()));
        }
    }
    rua.ok_or(RecordError::NoRua)
}

/// `tlsrpt-ext-name "=" tlsrpt-ext-value`.
fn valid_ext(name: &str, value: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b';' && b != b'=')
}

fn parse_uri(uri: &str) -> Result<ReportUri, RecordError> {
    let bad = || RecordError::BadUri(uri.to_owned());
    if let Some(address) = uri.strip_prefix("mailto:") {
        let address = percent_decode(address).ok_or_else(bad)?;
        let valid = address
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !address.contains(['?', ' ', '<', '>', ',', ';']);
        return if valid {
            Ok(ReportUri::Mailto(address))
        } else {
            Err(bad())
        };
    }
    match uri.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !uri.contains(' ') => {
            Ok(ReportUri::Https(uri.to_owned()))
        }
        _ => Err(bad()),
    }
}

/// The records looked up, by domain.
#[derive(Debug, Default)]
pub struct RecordCache {
    entries: Mutex<HashMap<String, (Instant, Option<Rua>)>>,
}

impl RecordCache {
    /// What the cache knows of `domain` without asking the DNS: `None` when
    /// nothing (or only an expired answer), `Some(None)` when it publishes
    /// no usable record.
    pub fn cached(&self, domain: &str) -> Option<Option<Rua>> {
        let entries = self.entries.lock().unwrap();
        let (until, rua) = entries.get(domain)?;
        (*until > Instant::now()).then(|| rua.clone())
    }

    /// `domain`'s TLS-RPT destinations, or `None` when it publishes no
    /// usable record (or DNS fails now).
    pub async fn lookup(&self, dns: &Dns, domain: &str) -> Option<Rua> {
        if let Some(known) = self.cached(domain) {
            return known;
        }
        let now = Instant::now();
        let name = format!("_smtp._tls.{domain}");
        let (rua, ttl) = match dns.txt(&name).await {
            Ok(records) => match parse_records(&records) {
                Ok(rua) => (Some(rua), CACHE_TTL),
                Err(RecordError::None) => (None, CACHE_TTL),
                Err(error) => {
                    tracing::info!(domain, "TLS-RPT: {name} is not used: {error}");
                    (None, CACHE_TTL)
                }
            },
            Err(error) => {
                tracing::debug!(domain, %error, "TLS-RPT: record lookup failed");
                (None, FAILURE_TTL)
            }
        };
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(domain.to_owned(), (now + ttl, rua.clone()));
        rua
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailto(a: &str) -> ReportUri {
        ReportUri::Mailto(a.to_owned())
    }

    #[test]
    fn the_rfc_examples_parse() {
        assert_eq!(
            parse_record("v=TLSRPTv1; rua=mailto:reports@example.com"),
            Ok(Rua {
                uris: vec![mailto("reports@example.com")]
            })
        );
        assert_eq!(
            parse_record("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt"),
            Ok(Rua {
                uris: vec![ReportUri::Https(
                    "https://reporting.example.com/v1/tlsrpt".into()
                )]
            })
        );
        assert_eq!(
            parse_record("v=TLSRPTv1;rua=mailto:a@x.test , https://r.test/p;ext=1;"),
            Ok(Rua {
                uris: vec![
                    mailto("a@x.test"),
                    ReportUri::Https("https://r.test/p".into())
                ]
            })
        );
        assert_eq!(
            parse_record("v=TLSRPTv1; rua=mailto:tls%2Breports@x.test"),
            Ok(Rua {
                uris: vec![mailto("tls+reports@x.test")]
            })
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        for (record, error) in [
            ("v=TLSRPTv1", RecordError::NoRua),
            ("v=TLSRPTv1;", RecordError::NoRua),
            ("v=TLSRPTv2; rua=mailto:a@x.test", RecordError::None),
            ("v=tlsrptv1; rua=mailto:a@x.test", RecordError::None),
            (
                "v=TLSRPTv1; rua=http://x.test/",
                RecordError::BadUri("http://x.test/".into()),
            ),
            (
                "v=TLSRPTv1; rua=mailto:nobody",
                RecordError::BadUri("mailto:nobody".into()),
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@x.test; rua=mailto:b@x.test",
                RecordError::SeveralRua,
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@x.test;; x=1",
                RecordError::BadField(String::new()),
            ),
            (
                "v=TLSRPTv1; junk; rua=mailto:a@x.test",
                RecordError::BadField("junk".into()),
            ),
        ] {
            assert_eq!(parse_record(record), Err(error), "{record}");
        }
    }

    #[test]
    fn exactly_one_tlsrpt_record_counts() {
        let record = |s: &str| s.to_owned();
        assert!(
            parse_records(&[
                record("v=spf1 -all"),
                record("v=TLSRPTv1; rua=mailto:a@x.test")
            ])
            .is_ok()
        );
        assert_eq!(
            parse_records(&[
                record("v=TLSRPTv1; rua=mailto:a@x.test"),
                record("v=TLSRPTv1; rua=mailto:b@x.test")
            ]),
            Err(RecordError::Several(2))
        );
        assert_eq!(parse_records(&[]), Err(RecordError::None));
    }
}
