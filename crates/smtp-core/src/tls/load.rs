//! Turning `tls.ini`'s `key=` / `cert=` PEM files into a rustls server configuration.
//!
//! Haraka hands both files whole to OpenSSL, so operators point `key=` and `cert=` at a
//! combined "key + full chain" bundle as often as at two separate files; both layouts
//! must load. Unlike Haraka's directory loader we serve every certificate of the chain,
//! because clients that only trust the root cannot verify a leaf without its
//! intermediates.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, ServerConfig};

use super::TlsMinVersion;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the server certificate and its private key live on disk.
///
/// Kept as paths rather than loaded bytes because the files are re-read whenever they
/// change (certificate renewal), so the paths are the lasting identity of "our TLS
/// certificate". `key` and `cert` may name the same combined file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// File holding exactly one PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// File holding the certificate chain, server certificate first.
    pub cert: PathBuf,
}

impl TlsFiles {
    /// Whether both settings name the same file, so it is read once and key and chain
    /// come from one consistent snapshot.
    fn is_combined(&self) -> bool {
        self.key == self.cert
    }
}

/// Why the configured certificate cannot be used.
///
/// Every variant names the file at fault, because the operator reads these in the log
/// after a renewal went wrong and must know which file to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be opened or read (missing, permissions, ...).
    #[error("cannot read TLS file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A PEM block is syntactically broken (truncated, bad base64), typically a file
    /// caught half-written.
    #[error("malformed PEM in {}: {source}", path.display())]
    MalformedPem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// Neither the certificate file nor the key file holds a PEM `CERTIFICATE` block.
    #[error("no PEM certificate found in {}", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file holds no private key we understand.
    #[error(
        "no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) found in {}",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },
    /// The only key present is passphrase-protected; there is no way to ask for the
    /// passphrase, so it must be decrypted on disk.
    #[error(
        "the private key in {} is encrypted; decrypt it (e.g. `openssl pkey -in KEY -out KEY.plain`)",
        path.display()
    )]
    EncryptedPrivateKey { path: PathBuf },
    /// More than one private key: we would have to guess which one belongs to the
    /// certificate, and guessing wrong fails every handshake.
    #[error("{} contains {count} private keys; exactly one is allowed", path.display())]
    MultiplePrivateKeys { path: PathBuf, count: usize },
    /// The key decodes as PEM but the crypto provider rejects it (bad DER, unsupported
    /// algorithm or curve).
    #[error("the private key in {} is not usable: {source}", path.display())]
    UnusablePrivateKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The server certificate (first of the chain) cannot be parsed.
    #[error("the certificate in {} is not usable: {source}", path.display())]
    InvalidCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// Key and certificate belong to different key pairs, e.g. a renewal that replaced
    /// only one of the two files, or a chain not starting with the server certificate.
    #[error(
        "the private key in {} does not match the first certificate in {} (the server certificate must come first)",
        key.display(),
        cert.display()
    )]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// rustls refused the protocol settings; only a programming error can cause this.
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// Reads `files` and builds a server configuration offering TLS 1.3 and 1.2 with the
/// `ring` provider, serving the whole certificate chain.
pub fn load_server_config(
    files: &TlsFiles,
    min_version: TlsMinVersion,
) -> Result<ServerConfig, TlsError> {
    let key_pem = read_file(&files.key)?;
    let separate_cert_pem;
    let cert_pem: &[u8] = if files.is_combined() {
        &key_pem
    } else {
        separate_cert_pem = read_file(&files.cert)?;
        &separate_cert_pem
    };
    let chain = certificate_chain(files, &key_pem, cert_pem)?;
    let key = private_key(&files.key, &key_pem)?;
    build_server_config(files, chain, key, min_version)
}

/// Reads the whole file once so that a file being rewritten is parsed from one
/// snapshot rather than from reads interleaved with the writer.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

/// The chain is every `CERTIFICATE` block of the cert file in file order; when the
/// cert file has none, the key file may be a bundle that carries them.
fn certificate_chain(
    files: &TlsFiles,
    key_pem: &[u8],
    cert_pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = parse_certificates(&files.cert, cert_pem)?;
    if !chain.is_empty() {
        return Ok(chain);
    }
    if !files.is_combined() {
        let from_key_file = parse_certificates(&files.key, key_pem)?;
        if !from_key_file.is_empty() {
            return Ok(from_key_file);
        }
    }
    Err(TlsError::NoCertificate {
        path: files.cert.clone(),
    })
}

fn parse_certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| malformed(path, source))
}

/// Exactly one private key must be present; see [`TlsError::MultiplePrivateKeys`].
fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut keys = PrivateKeyDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| malformed(path, source))?;
    if keys.len() > 1 {
        return Err(TlsError::MultiplePrivateKeys {
            path: path.to_owned(),
            count: keys.len(),
        });
    }
    keys.pop().ok_or_else(|| missing_key(path, pem))
}

/// PEM iteration silently skips block types it does not know, so an encrypted key
/// would otherwise be reported as "no key", which sends the operator looking in the
/// wrong place.
fn missing_key(path: &Path, pem: &[u8]) -> TlsError {
    const ENCRYPTED_MARKER: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    let path = path.to_owned();
    if pem
        .windows(ENCRYPTED_MARKER.len())
        .any(|window| window == ENCRYPTED_MARKER)
    {
        TlsError::EncryptedPrivateKey { path }
    } else {
        TlsError::NoPrivateKey { path }
    }
}

fn malformed(path: &Path, source: pem::Error) -> TlsError {
    TlsError::MalformedPem {
        path: path.to_owned(),
        source,
    }
}

fn build_server_config(
    files: &TlsFiles,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    min_version: TlsMinVersion,
) -> Result<ServerConfig, TlsError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnusablePrivateKey {
            path: files.key.clone(),
            source,
        })?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    match certified_key.keys_match() {
        // `Unknown`: the provider cannot derive the public key, so there is nothing to
        // compare; rustls' own `with_single_cert` accepts that case too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                key: files.key.clone(),
                cert: files.cert.clone(),
            });
        }
        Err(source) => {
            return Err(TlsError::InvalidCertificate {
                path: files.cert.clone(),
                source,
            });
        }
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(min_version.protocol_versions())
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified_key)));
    // Haraka's `honorCipherOrder` defaults to true: our suite order, not the client's.
    config.ignore_client_order = true;
    Ok(config)
}
