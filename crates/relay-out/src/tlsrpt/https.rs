//! `rua=https:` destinations (RFC 8460 §5.4): the gzip'ed report POSTed
//! as [`CONTENT_TYPE`], a 2xx meaning received. The request goes through
//! relay-out's own HTTPS client (`crate::https_client`): the host is
//! resolved with relay-out's resolver, its certificate verified (system
//! CAs, or tls_policy.ini `ca_file`), redirects refused, time bounded.
//! A report that cannot be posted is logged and counted `not_sent`; it is
//! not retried (RFC 8460 §5.4 leaves retries to the sender; a day later the
//! next report carries that day's counts).

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Bytes;
use smtp_core::client::{ClientTlsError, TlsVerify};
use smtp_core::dns::Dns;

use crate::https_client::{HttpsClient, HttpsError};

/// RFC 8460 §5.4's media type for the POST body.
pub const CONTENT_TYPE: &str = "application/tlsrpt+gzip";

/// How long one POST may take, connect to response.
const POST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a response body read (the answer is not used).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a report was not POSTed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("{0:?} is not an https: URL with a host")]
    BadUrl(String),
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("no address for {0}")]
    NoAddress(String),
    #[error("{0}")]
    Https(#[from] HttpsError),
}

/// The client reports are POSTed with, built at startup (the CA file is
/// read then).
pub fn client(verify: &TlsVerify) -> Result<HttpsClient, ClientTlsError> {
    HttpsClient::new(verify, POST_TIMEOUT, MAX_RESPONSE_BYTES)
}

/// `https://host[:port]/path?query` split into host, port and path, by
/// hyper's own URI parser.
fn split_url(url: &str) -> Result<(String, u16, String), PostError> {
    let bad = || PostError::BadUrl(url.to_owned());
    let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme() != Some(&hyper::http::uri::Scheme::HTTPS) {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    let host = authority.host();
    // No user info, and no IP literal: a report goes to a named host whose
    // certificate names it.
    if authority.as_str().contains('@') || host.is_empty() || host.starts_with('[') {
        return Err(bad());
    }
    let port = match authority.as_str().rsplit_once(':') {
        None => 443,
        Some(_) => authority
            .port_u16()
            .filter(|&port| port != 0)
            .ok_or_else(bad)?,
    };
    let path = match uri.path_and_query().map(|path| path.as_str()) {
        Some(path) if path.starts_with('/') => path.to_owned(),
        Some(query) => format!("/{query}"),
        None => "/".to_owned(),
    };
    Ok((host.to_ascii_lowercase(), port, path))
}

/// POSTs `gzipped` (the report) to `url`, trying the host's addresses in
/// turn until one answers; an HTTP answer other than 2xx is final.
pub async fn post(
    dns: &Dns,
    client: &HttpsClient,
    url: &str,
    gzipped: &[u8],
) -> Result<(), PostError> {
    let (host, port, path) = split_url(url)?;
    let addresses = dns
        .addresses(&host)
        .await
        .map_err(|error| PostError::Resolve {
            host: host.clone(),
            detail: error.to_string(),
        })?;
    let mut last = PostError::NoAddress(host.clone());
    for ip in addresses {
        let addr = SocketAddr::new(ip, port);
        let body = Bytes::copy_from_slice(gzipped);
        match client.post(&host, addr, &path, CONTENT_TYPE, body).await {
            Ok(_) => return Ok(()),
            Err(error @ (HttpsError::Status(_) | HttpsError::Redirect(_))) => {
                return Err(error.into());
            }
            Err(error) => last = error.into(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            split_url("https://reports.example/tlsrpt").unwrap(),
            ("reports.example".into(), 443, "/tlsrpt".into())
        );
        assert_eq!(
            split_url("HTTPS://Reports.Example:8443").unwrap(),
            ("reports.example".into(), 8443, "/".into())
        );
        assert_eq!(
            split_url("https://r.example?x=1").unwrap(),
            ("r.example".into(), 443, "/?x=1".into())
        );
        for bad in [
            "http://r.example/",
            "https://",
            "https://user@r.example/",
            "https://r.example:0/",
            "https://r.example:x/",
            "https://[::1]/",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
