//! TXT lookups, for relay-out's MTA-STS (`_mta-sts.<domain>`) and
//! TLS-RPT (`_smtp._tls.<domain>`) records.

use hickory_resolver::proto::rr::{RData, RecordType};

use super::mx::temporary;
use super::names::absolute_name;
use super::{Dns, DnsError, QueryFailure, classify};

impl Dns {
    /// The TXT records of `name`, each record's strings joined (RFC 7208
    /// §3.3 style, as RFC 8461 §3.1 says). No record, or no such name, is
    /// an empty list; a temporary failure is [`DnsError::Temporary`].
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let query = absolute_name(name)?;
        let lookup = self
            .bounded(name, self.resolver.lookup(query, RecordType::TXT))
            .await?;
        match lookup {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(error) => match classify(&error) {
                QueryFailure::NoData | QueryFailure::NxDomain => Ok(Vec::new()),
                QueryFailure::Temporary => Err(temporary(name, &error)),
            },
        }
    }
}
