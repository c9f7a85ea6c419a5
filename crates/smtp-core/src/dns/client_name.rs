//! The forward-confirmed reverse lookup of an SMTP client (FCrDNS, Postfix's "verified client
//! name"), which feeds `Received:` headers and XCLIENT `NAME=` / `REVERSE_NAME=`.

use std::net::IpAddr;

use hickory_resolver::proto::rr::{Name, RData, RecordType};
use smtp_protocol::session::ClientName;

use super::names::{display_name, is_presentable_hostname};
use super::{Dns, QueryFailure, classify};

/// A client may publish many PTR records; confirming each costs a query, so a hostile reverse
/// zone must not be able to make one connection cost dozens of lookups.
const MAX_PTR_NAMES_CHECKED: usize = 4;

/// Outcome of checking one PTR name against the client address.
enum Confirmation {
    Confirmed,
    Mismatch,
    Temporary,
}

impl Dns {
    /// Reverse-looks up `ip` and confirms the name forward. The whole operation is bounded by the
    /// configured timeout; running out of time is [`ClientName::TempUnavailable`]. With reverse
    /// lookups switched off (`rdns=off`) this answers [`ClientName::Unavailable`] at once.
    pub async fn client_name(&self, ip: IpAddr) -> ClientName {
        if !self.reverse_lookups {
            return ClientName::Unavailable;
        }
        self.forward_confirmed_name(ip).await
    }

    /// [`Self::client_name`] whatever `rdns=` says: for checks of this host's own addresses
    /// (relay-out's source address self-check), which are wanted even where client lookups are off.
    pub async fn forward_confirmed_name(&self, ip: IpAddr) -> ClientName {
        // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; their PTR lives under
        // in-addr.arpa and their forward records are A records.
        let ip = ip.to_canonical();
        tokio::time::timeout(self.timeout, self.reverse_and_confirm(ip))
            .await
            .unwrap_or(ClientName::TempUnavailable)
    }

    async fn reverse_and_confirm(&self, ip: IpAddr) -> ClientName {
        let mut reverse_name = Name::from(ip);
        reverse_name.set_fqdn(true);
        let lookup = match self.resolver.lookup(reverse_name, RecordType::PTR).await {
            Ok(lookup) => lookup,
            Err(error) => {
                return match classify(&error) {
                    QueryFailure::NxDomain | QueryFailure::NoData => ClientName::Unavailable,
                    QueryFailure::Temporary => ClientName::TempUnavailable,
                };
            }
        };
        let candidates: Vec<&Name> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::PTR(ptr) => Some(&ptr.0),
                _ => None,
            })
            .filter(|name| is_presentable_hostname(&display_name(name)))
            .take(MAX_PTR_NAMES_CHECKED)
            .collect();
        let Some(first) = candidates.first() else {
            return ClientName::Unavailable;
        };

        let mut temporary_failure = false;
        for name in &candidates {
            match self.confirm(name, ip).await {
                Confirmation::Confirmed => return ClientName::Verified(display_name(name)),
                Confirmation::Mismatch => {}
                Confirmation::Temporary => temporary_failure = true,
            }
        }
        if temporary_failure {
            ClientName::TempUnavailable
        } else {
            ClientName::Unverified(display_name(first))
        }
    }

    /// Looks up the records of the client's address family only, as Postfix does: an IPv4
    /// client is confirmed by an A record, an IPv6 client by an AAAA record.
    async fn confirm(&self, name: &Name, ip: IpAddr) -> Confirmation {
        let mut name = name.clone();
        name.set_fqdn(true);
        let record_type = match ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        match self.resolver.lookup(name, record_type).await {
            Ok(lookup) => {
                let matches = lookup.answers().iter().any(|record| match &record.data {
                    RData::A(a) => IpAddr::V4(a.0) == ip,
                    RData::AAAA(aaaa) => IpAddr::V6(aaaa.0) == ip,
                    _ => false,
                });
                if matches {
                    Confirmation::Confirmed
                } else {
                    Confirmation::Mismatch
                }
            }
            Err(error) => match classify(&error) {
                QueryFailure::NxDomain | QueryFailure::NoData => Confirmation::Mismatch,
                QueryFailure::Temporary => Confirmation::Temporary,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rdns_off_sends_no_query() {
        // Nothing answers DNS on this loopback port: a query would only fail or wait.
        let settings = super::super::DnsSettings {
            nameservers: vec!["127.0.0.1:9".parse().expect("valid socket address")],
            timeout: std::time::Duration::from_secs(30),
            reverse_lookups: false,
        };
        let dns = Dns::new(&settings).expect("resolver builds");
        let started = std::time::Instant::now();
        let name = dns
            .client_name("192.0.2.1".parse().expect("valid ip"))
            .await;
        assert_eq!(name, ClientName::Unavailable);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
