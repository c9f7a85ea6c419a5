//! Fetching a domain's policy from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461 §3.3): the
//! certificate must be valid for that name, no redirect is followed, the
//! answer must be `200` with `text/plain`, and both time and size are bounded
//! (by the [`HttpsClient`] this is given).

use smtp_core::dns::Dns;
use thiserror::Error;

use super::policy::{Policy, PolicyError};
use crate::https_client::HttpsClient;

/// The well-known path of the policy (§3.2).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// §3.3: "senders SHOULD impose a limit on the maximum size of the response
/// body (e.g., 64 kilobytes)".
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Why no policy came from the policy host, sorted by the result types
/// RFC 8460 §4.3.2 reports them as.
#[derive(Debug, Error)]
pub enum FetchError {
    /// `sts-policy-fetch-error`: DNS, connection, HTTP status, redirect.
    #[error("cannot fetch the policy from {host}: {reason}")]
    Fetch { host: String, reason: String },
    /// `sts-webpki-invalid`: the policy host's certificate failed.
    #[error("the policy host {host} has no valid certificate: {reason}")]
    WebPki { host: String, reason: String },
    /// `sts-policy-invalid`: the answer is not a policy.
    #[error("the policy from {host} is invalid: {reason}")]
    Invalid { host: String, reason: String },
}

impl FetchError {
    /// The RFC 8460 result type, for TLS-RPT.
    /// The RFC 8460 result type, as TLS-RPT reports it.
    pub fn report_type(&self) -> crate::tlsrpt::ResultType {
        use crate::tlsrpt::ResultType;
        match self {
            FetchError::Fetch { .. } => ResultType::StsPolicyFetchError,
            FetchError::WebPki { .. } => ResultType::StsWebpkiInvalid,
            FetchError::Invalid { .. } => ResultType::StsPolicyInvalid,
        }
    }

    pub fn result_type(&self) -> &'static str {
        match self {
            FetchError::Fetch { .. } => "sts-policy-fetch-error",
            FetchError::WebPki { .. } => "sts-webpki-invalid",
            FetchError::Invalid { .. } => "sts-policy-invalid",
        }
    }
}

/// Fetches and parses `domain`'s policy; returns it with its text (what
/// the disk cache keeps). Each address of the policy host is tried in turn.
pub async fn fetch(
    client: &HttpsClient,
    dns: &Dns,
    domain: &str,
    port: u16,
) -> Result<(Policy, String), FetchError> {
    let host = format!("mta-sts.{domain}");
    let fetch_error = |reason: String| FetchError::Fetch {
        host: host.clone(),
        reason,
    };
    let addresses = dns
        .addresses(&host)
        .await
        .map_err(|e| fetch_error(e.to_string()))?;
    let mut last = fetch_error("the name has no address".to_owned());
    for ip in addresses {
        let addr = std::net::SocketAddr::new(ip, port);
        match client.get(&host, addr, POLICY_PATH).await {
            Ok(response) => return parse(&host, response),
            Err(error) if error.is_certificate_error() => {
                // A certificate failure on one address is the host's
                // answer: another address would not change the verdict
                // for a policy whose whole point is the certificate.
                return Err(FetchError::WebPki {
                    host: host.clone(),
                    reason: error.to_string(),
                });
            }
            Err(error) => last = fetch_error(error.to_string()),
        }
    }
    Err(last)
}

fn parse(
    host: &str,
    response: crate::https_client::Response,
) -> Result<(Policy, String), FetchError> {
    let invalid = |reason: String| FetchError::Invalid {
        host: host.to_owned(),
        reason,
    };
    if response.media_type.as_deref() != Some("text/plain") {
        return Err(invalid(format!(
            "Content-Type is {}, not text/plain",
            response.media_type.as_deref().unwrap_or("missing")
        )));
    }
    let text = String::from_utf8(response.body.to_vec())
        .map_err(|_| invalid("the body is not UTF-8".to_owned()))?;
    let policy = Policy::parse(&text).map_err(|e: PolicyError| invalid(e.to_string()))?;
    Ok((policy, text))
}
