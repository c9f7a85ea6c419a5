//! TXT lookups, for the policy records relay-out reads from DNS (TLS-RPT's
//! `_smtp._tls`, MTA-STS's `_mta-sts`). Only what the DNS says: each
//! record's character-strings joined as RFC 7208 §3.3 and RFC 8460 §3 say
//! (concatenated without separators); parsing is the caller's.

use hickory_resolver::proto::rr::{RData, RecordType};

use super::mx::temporary;
use super::names::absolute_name;
use super::{Dns, DnsError, QueryFailure, classify};

impl Dns {
    /// The TXT records of `name`, one string per record (non-UTF-8 bytes
    /// replaced). NOERROR/NODATA is an empty list; NXDOMAIN is
    /// [`DnsError::NxDomain`]; anything else [`DnsError::Temporary`].
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let absolute = absolute_name(name)?;
        let lookup = self
            .bounded(name, self.resolver.lookup(absolute, RecordType::TXT))
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
                QueryFailure::NoData => Ok(Vec::new()),
                QueryFailure::NxDomain => Err(DnsError::NxDomain {
                    name: name.to_string(),
                }),
                QueryFailure::Temporary => Err(temporary(name, &error)),
            },
        }
    }
}
