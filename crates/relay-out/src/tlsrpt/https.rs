//! `rua=https:` destinations (RFC 8460 §5.4): the gzip'ed report POSTed
//! as [`CONTENT_TYPE`], a 2xx meaning received. Not supported yet: relay-out
//! has no HTTPS client on this branch. This function is the one place to
//! plug one in (the MTA-STS work brings `crate::https_client`); until then
//! every https: report is logged as not sent, and the mailto: ones of the
//! same record still go.

/// RFC 8460 §5.4's media type for the POST body.
pub const CONTENT_TYPE: &str = "application/tlsrpt+gzip";

/// Why a report was not POSTed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("https: report destinations are not supported yet; this report is not sent")]
    NotSupported,
}

/// POSTs `gzipped` (the report) to `url`.
pub async fn post(url: &str, gzipped: &[u8]) -> Result<(), PostError> {
    let _ = (url, gzipped, CONTENT_TYPE);
    Err(PostError::NotSupported)
}
