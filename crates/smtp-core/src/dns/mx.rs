//! MX and address lookups for relay-out's next-hop selection (RFC 5321 §5.1, RFC 7505).
//!
//! This module only reports what the DNS says, in the shape the routing decision needs; the
//! policy on top (shuffling equal preferences, dropping local or private addresses, trying hosts
//! in turn) belongs to relay-out.

use std::net::IpAddr;

use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use super::names::{absolute_name, display_name};
use super::{Dns, DnsError, QueryFailure, classify};

/// One MX record: where mail for the domain goes, and how preferred that host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    /// Lower is preferred.
    pub preference: u16,
    /// The exchange host, absolute, without the trailing dot.
    pub exchange: String,
}

/// What the DNS says about a mail domain, beyond the failures in [`DnsError`]; the three cases
/// lead to three different routing decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// MX records, lowest preference first; equal preferences keep the server's order (shuffling
    /// them is relay-out's policy).
    Records(Vec<MxRecord>),
    /// The domain exists but has no MX records (NOERROR/NODATA): RFC 5321 §5.1 implicit MX, i.e.
    /// deliver to the domain's own AAAA/A addresses.
    NoRecords,
    /// RFC 7505 null MX (`0 .`): the domain accepts no mail; bounce without trying.
    NullMx,
}

impl Dns {
    /// Looks up the MX records of `domain` (treated as absolute; UTF-8 is converted to
    /// punycode). NXDOMAIN is [`DnsError::NxDomain`]; SERVFAIL, timeouts and the like are
    /// [`DnsError::Temporary`], which must defer rather than fall back to the implicit MX.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let name = absolute_name(domain)?;
        let lookup = self
            .bounded(domain, self.resolver.lookup(name, RecordType::MX))
            .await?;
        match lookup {
            Ok(lookup) => {
                Ok(interpret_mx(lookup.answers().iter().filter_map(
                    |record| match &record.data {
                        RData::MX(mx) => Some((mx.preference, &mx.exchange)),
                        _ => None,
                    },
                )))
            }
            Err(error) => match classify(&error) {
                QueryFailure::NoData => Ok(MxAnswer::NoRecords),
                QueryFailure::NxDomain => Err(DnsError::NxDomain {
                    name: domain.to_string(),
                }),
                QueryFailure::Temporary => Err(temporary(domain, &error)),
            },
        }
    }

    /// The addresses of `host` (treated as absolute), IPv6 first then IPv4, as Haraka orders
    /// them. Both families are queried concurrently. Addresses found in one family are returned
    /// even if the other family failed; an empty list means the name exists but has no address.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = absolute_name(host)?;
        let both = async {
            tokio::join!(
                self.resolver.lookup(name.clone(), RecordType::AAAA),
                self.resolver.lookup(name, RecordType::A),
            )
        };
        let (v6, v4) = self.bounded(host, both).await?;

        let mut addresses = Vec::new();
        let mut temporary_failure = None;
        let mut nx_domain = false;
        for result in [v6, v4] {
            match result {
                Ok(lookup) => {
                    for record in lookup.answers() {
                        let address = match &record.data {
                            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                            RData::A(a) => IpAddr::V4(a.0),
                            _ => continue,
                        };
                        if !addresses.contains(&address) {
                            addresses.push(address);
                        }
                    }
                }
                Err(error) => match classify(&error) {
                    QueryFailure::NoData => {}
                    QueryFailure::NxDomain => nx_domain = true,
                    QueryFailure::Temporary => temporary_failure = Some(temporary(host, &error)),
                },
            }
        }
        match (addresses.is_empty(), temporary_failure, nx_domain) {
            (false, _, _) => Ok(addresses),
            (true, Some(failure), _) => Err(failure),
            (true, None, true) => Err(DnsError::NxDomain {
                name: host.to_string(),
            }),
            (true, None, false) => Ok(addresses),
        }
    }

    /// Applies the per-operation timeout; running out of time is a temporary failure.
    pub(super) async fn bounded<T>(
        &self,
        name: &str,
        operation: impl Future<Output = T>,
    ) -> Result<T, DnsError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .map_err(|_elapsed| DnsError::Temporary {
                name: name.to_string(),
                reason: format!("no answer within {:?}", self.timeout),
            })
    }
}

pub(super) fn temporary(name: &str, error: &NetError) -> DnsError {
    DnsError::Temporary {
        name: name.to_string(),
        reason: error.to_string(),
    }
}

/// Turns the MX records of one answer into a routing answer. A root exchange (`.`) is the
/// RFC 7505 null MX; if a broken zone mixes it with real MX records, the root entries are
/// dropped (nothing can be delivered to ".") and the real ones are used.
fn interpret_mx<'a>(records: impl Iterator<Item = (u16, &'a Name)>) -> MxAnswer {
    let mut saw_null = false;
    let mut usable: Vec<MxRecord> = Vec::new();
    for (preference, exchange) in records {
        if exchange.is_root() {
            saw_null = true;
        } else {
            usable.push(MxRecord {
                preference,
                exchange: display_name(exchange),
            });
        }
    }
    if usable.is_empty() {
        return if saw_null {
            MxAnswer::NullMx
        } else {
            MxAnswer::NoRecords
        };
    }
    // Stable sort: equal preferences keep the server's order.
    usable.sort_by_key(|record| record.preference);
    MxAnswer::Records(usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        absolute_name(text).expect("valid test name")
    }

    fn interpret(records: &[(u16, &str)]) -> MxAnswer {
        let names: Vec<(u16, Name)> = records.iter().map(|(p, n)| (*p, name(n))).collect();
        interpret_mx(names.iter().map(|(p, n)| (*p, n)))
    }

    fn mx(preference: u16, exchange: &str) -> MxRecord {
        MxRecord {
            preference,
            exchange: exchange.to_string(),
        }
    }

    #[test]
    fn interpret_mx_table() {
        let cases: Vec<(&[(u16, &str)], MxAnswer)> = vec![
            (&[], MxAnswer::NoRecords),
            (&[(0, ".")], MxAnswer::NullMx),
            (&[(10, ".")], MxAnswer::NullMx),
            (
                &[(20, "b.example."), (10, "a.example"), (20, "c.example")],
                MxAnswer::Records(vec![
                    mx(10, "a.example"),
                    mx(20, "b.example"),
                    mx(20, "c.example"),
                ]),
            ),
            (
                &[(0, "."), (10, "mx.example")],
                MxAnswer::Records(vec![mx(10, "mx.example")]),
            ),
        ];
        for (records, expected) in cases {
            assert_eq!(interpret(records), expected, "{records:?}");
        }
    }

    #[tokio::test]
    async fn invalid_names_fail_before_any_query() {
        let settings = super::super::DnsSettings {
            nameservers: vec!["127.0.0.1:9".parse().expect("valid socket address")],
            ..super::super::DnsSettings::default()
        };
        let dns = Dns::new(&settings).expect("resolver builds");
        assert!(matches!(
            dns.mx("a..b").await,
            Err(DnsError::InvalidName { .. })
        ));
        assert!(matches!(
            dns.addresses("").await,
            Err(DnsError::InvalidName { .. })
        ));
    }
}
