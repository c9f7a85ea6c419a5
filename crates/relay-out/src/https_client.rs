//! relay-out's HTTPS client: one GET or POST to a host relay-out resolved
//! itself, over TLS verified against the system's CAs or a CA file, with no
//! redirects followed, and the time and the response size bounded. Used by
//! the MTA-STS policy fetch (RFC 8461 §3.3) and meant for TLS-RPT's
//! `https:` report POSTs (RFC 8460 §3).
//!
//! hyper's HTTP/1.1 client runs over a connection opened here with tokio
//! and tokio-rustls, so the roots, the address (from relay-out's own
//! resolver, never the system's) and every bound stay in our hands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use smtp_core::client::{ClientTlsError, TlsVerify, root_store};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a request got no usable response; the text goes into logs and
/// reports, so it names the step.
#[derive(Debug, Error)]
pub enum HttpsError {
    #[error("invalid host name {0:?}")]
    BadName(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("redirect to {0:?} refused")]
    Redirect(String),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
}

impl HttpsError {
    /// The server's certificate was refused (untrusted, expired, wrong
    /// name), as opposed to a network or protocol failure.
    pub fn is_certificate_error(&self) -> bool {
        let HttpsError::Tls { source, .. } = self else {
            return false;
        };
        source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|error| {
                matches!(
                    error,
                    rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
                )
            })
    }
}

/// The TLS setup and bounds of every request, built once at startup (the
/// CA file is read then).
#[derive(Clone)]
pub struct HttpsClient {
    tls: TlsConnector,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// A 2xx response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    /// The media type without parameters, lower-case (`text/plain`).
    pub media_type: Option<String>,
    pub body: Bytes,
}

impl HttpsClient {
    /// `verify` must check names (system roots or a CA file): an HTTPS
    /// client that accepts any certificate has no use here.
    pub fn new(
        verify: &TlsVerify,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, ClientTlsError> {
        let roots = root_store(verify)?.unwrap_or_else(rustls::RootCertStore::empty);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(ClientTlsError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpsClient {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
            max_body,
        })
    }

    /// GET `https://{host}{path}` from `addr`.
    pub async fn get(
        &self,
        host: &str,
        addr: SocketAddr,
        path: &str,
    ) -> Result<Response, HttpsError> {
        self.request(Method::GET, host, addr, path, None).await
    }

    /// POST `body` as `content_type` to `https://{host}{path}` at `addr`.
    pub async fn post(
        &self,
        host: &str,
        addr: SocketAddr,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Response, HttpsError> {
        self.request(Method::POST, host, addr, path, Some((content_type, body)))
            .await
    }

    async fn request(
        &self,
        method: Method,
        host: &str,
        addr: SocketAddr,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Response, HttpsError> {
        let exchange = self.exchange(method, host, addr, path, body);
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_elapsed| HttpsError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        method: Method,
        host: &str,
        addr: SocketAddr,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Response, HttpsError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| HttpsError::BadName(host.to_owned()))?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| HttpsError::Connect { addr, source })?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|source| HttpsError::Tls {
                host: host.to_owned(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        // The connection ends with this request (or with the timeout).
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host)
            .header(
                USER_AGENT,
                concat!("postern-relay-out/", env!("CARGO_PKG_VERSION")),
            );
        let payload = match body {
            Some((content_type, bytes)) => {
                request = request.header(CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let response = sender.send_request(request.body(Full::new(payload))?).await;
        let result = self.read(response).await;
        driver.abort();
        result
    }

    async fn read(
        &self,
        response: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>,
    ) -> Result<Response, HttpsError> {
        let response = response?;
        let status = response.status();
        if status.is_redirection() {
            let target = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return Err(HttpsError::Redirect(target));
        }
        if !status.is_success() {
            return Err(HttpsError::Status(status));
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let body = Limited::new(response.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(error) => HttpsError::Http(*error),
                Err(_) => HttpsError::TooLarge(self.max_body),
            })?
            .to_bytes();
        Ok(Response {
            status,
            media_type,
            body,
        })
    }
}
