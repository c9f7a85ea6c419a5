//! Client-side TLS for STARTTLS: when to use it and whom to trust.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use tokio_rustls::TlsConnector;

/// Whether the client upgrades with STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Never, even if offered (e.g. a backend reached over a VPN).
    Off,
    /// When the server offers it; a refusal (`454`) continues in clear text.
    /// A failed handshake is an error: the connection is unusable after it,
    /// and the caller may reconnect with TLS off.
    #[default]
    Opportunistic,
    /// Always; a server that does not offer it, or refuses it, is an error.
    Required,
}

/// Which server certificates are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// The operating system's CA bundle, with the host name checked.
    SystemRoots,
    /// Only CAs from this PEM file (a private backend CA), host name checked.
    CaFile(PathBuf),
    /// Any certificate. This is what opportunistic MX delivery does everywhere
    /// (Haraka, Postfix `may`): without MTA-STS or DANE there is no name to
    /// check against, and encryption without authentication still beats clear
    /// text.
    Insecure,
}

/// Why the TLS client settings cannot be built. Exists so that a bad CA file
/// is reported once, at startup, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("cannot read CA file {}: {source}", path.display())]
    UnreadableCaFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed PEM in CA file {}: {source}", path.display())]
    MalformedCaFile {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("no usable CA certificate in {}", path.display())]
    NoCaCertificate { path: PathBuf },
    #[error("no usable system CA certificate found ({details})")]
    NoSystemRoots { details: String },
    #[error("cannot build the TLS client configuration: {0}")]
    Config(#[source] rustls::Error),
    /// The name given for SNI and verification is neither a DNS name nor an
    /// IP address.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
}

/// A TLS policy with its rustls configuration built once.
///
/// It exists because building the configuration reads CA files (the system
/// bundle holds hundreds of certificates): that must happen at startup, where
/// an error can stop the service, and not per connection. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    mode: TlsMode,
    verifies_names: bool,
    connector: Option<TlsConnector>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("mode", &self.mode)
            .field("verifies_names", &self.verifies_names)
            .finish_non_exhaustive()
    }
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls::off()
    }
}

impl ClientTls {
    /// Builds the policy; with [`TlsMode::Off`] nothing is loaded.
    pub fn new(mode: TlsMode, verify: &TlsVerify) -> Result<Self, ClientTlsError> {
        let connector = match mode {
            TlsMode::Off => None,
            TlsMode::Opportunistic | TlsMode::Required => Some(build_connector(verify)?),
        };
        Ok(ClientTls {
            mode,
            verifies_names: *verify != TlsVerify::Insecure,
            connector,
        })
    }

    /// STARTTLS required, the certificate judged by `check` alone (DANE:
    /// the TLSA records, not a CA, say which certificate is right). The
    /// handshake signatures are still checked with the ring provider.
    pub fn required_with_check(check: impl CertificateCheck) -> Result<Self, ClientTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(ClientTlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesChecked { check, provider }))
            .with_no_client_auth();
        Ok(ClientTls {
            mode: TlsMode::Required,
            verifies_names: true,
            connector: Some(TlsConnector::from(Arc::new(config))),
        })
    }

    /// No TLS.
    pub fn off() -> Self {
        ClientTls {
            mode: TlsMode::Off,
            verifies_names: false,
            connector: None,
        }
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    pub(crate) fn connector(&self) -> Option<&TlsConnector> {
        self.connector.as_ref()
    }

    /// The name to send as SNI and to verify. Without verification a name
    /// that cannot be used (an MX target with odd characters) falls back to
    /// the peer's address, so that opportunistic TLS still happens.
    pub(crate) fn server_name(
        &self,
        name: &str,
        peer: IpAddr,
    ) -> Result<ServerName<'static>, ClientTlsError> {
        let name = name.strip_suffix('.').unwrap_or(name);
        match ServerName::try_from(name.to_owned()) {
            Ok(server_name) => Ok(server_name),
            Err(_) if !self.verifies_names => Ok(ServerName::IpAddress(peer.into())),
            Err(_) => Err(ClientTlsError::InvalidServerName(name.to_owned())),
        }
    }
}

fn build_connector(verify: &TlsVerify) -> Result<TlsConnector, ClientTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(ClientTlsError::Config)?;
    let config = match verify {
        TlsVerify::SystemRoots => builder
            .with_root_certificates(system_roots()?)
            .with_no_client_auth(),
        TlsVerify::CaFile(path) => builder
            .with_root_certificates(roots_from_file(path)?)
            .with_no_client_auth(),
        TlsVerify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesChecked {
                check: AnyCertificate,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The CAs `verify` trusts, for other TLS clients of the relays (relay-out's
/// HTTPS client); `None` for [`TlsVerify::Insecure`], which trusts no CA.
pub fn root_store(verify: &TlsVerify) -> Result<Option<RootCertStore>, ClientTlsError> {
    match verify {
        TlsVerify::SystemRoots => system_roots().map(Some),
        TlsVerify::CaFile(path) => roots_from_file(path).map(Some),
        TlsVerify::Insecure => Ok(None),
    }
}

fn system_roots() -> Result<RootCertStore, ClientTlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let details = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ClientTlsError::NoSystemRoots { details });
    }
    Ok(roots)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, ClientTlsError> {
    let pem = std::fs::read(path).map_err(|source| ClientTlsError::UnreadableCaFile {
        path: path.to_owned(),
        source,
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ClientTlsError::MalformedCaFile {
            path: path.to_owned(),
            source,
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(ClientTlsError::NoCaCertificate {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// Which server certificates a TLS client accepts when no CA judges them
/// (DANE's TLSA records; any certificate for opportunistic TLS).
/// [`ClientTls::required_with_check`] puts it in a verifier that still
/// checks the handshake signatures, so an implementation only says which
/// chains it takes.
pub trait CertificateCheck: fmt::Debug + Send + Sync + 'static {
    /// `Ok` when the chain (leaf first, then what the server sent) is
    /// acceptable at `now`; the error is what the handshake fails with.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error>;
}

/// Accepts any certificate: the session is still bound to the key the
/// server presented, by the signature checks around it.
#[derive(Debug)]
struct AnyCertificate;

impl CertificateCheck for AnyCertificate {
    fn check(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<(), rustls::Error> {
        Ok(())
    }
}

/// A [`CertificateCheck`] with the handshake signatures checked by the
/// provider's algorithms: the part every such verifier shares.
#[derive(Debug)]
struct SignaturesChecked<C> {
    check: C,
    provider: Arc<CryptoProvider>,
}

impl<C: CertificateCheck> ServerCertVerifier for SignaturesChecked<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .check(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = ClientTls::new(TlsMode::Required, &TlsVerify::CaFile(missing.clone()));
        assert!(
            matches!(error, Err(ClientTlsError::UnreadableCaFile { ref path, .. }) if *path == missing)
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let error = ClientTls::new(TlsMode::Required, &TlsVerify::CaFile(empty.clone()));
        assert!(
            matches!(error, Err(ClientTlsError::NoCaCertificate { ref path }) if *path == empty)
        );
    }

    #[test]
    fn off_loads_nothing() {
        let tls = ClientTls::new(
            TlsMode::Off,
            &TlsVerify::CaFile("/nonexistent/ca.pem".into()),
        )
        .unwrap();
        assert!(tls.connector().is_none());
    }

    #[test]
    fn server_names() {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let insecure = ClientTls::new(TlsMode::Opportunistic, &TlsVerify::Insecure).unwrap();
        assert_eq!(
            insecure.server_name("mx.example.", peer).unwrap(),
            ServerName::try_from("mx.example").unwrap()
        );
        assert_eq!(
            insecure.server_name("bad name", peer).unwrap(),
            ServerName::IpAddress(peer.into())
        );
        let verifying = ClientTls {
            verifies_names: true,
            ..insecure
        };
        assert!(verifying.server_name("bad name", peer).is_err());
        assert_eq!(
            verifying.server_name("192.0.2.9", peer).unwrap(),
            ServerName::IpAddress("192.0.2.9".parse::<IpAddr>().unwrap().into())
        );
    }
}
