//! Shared fixtures for the TLS tests: a throw-away PKI made with rcgen, files written
//! the way renewal tools write them, and real handshakes over in-memory pipes.

mod load;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::TlsFiles;

const SERVER_NAME: &str = "mail.example.test";

/// A certificate with the PEM texts a test writes to disk.
struct Issued {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
}

/// Root CA -> intermediate -> server leaf, like a public CA's issuance. Clients trust
/// only the root, so a handshake succeeds only when the intermediate is served.
struct Pki {
    root_der: CertificateDer<'static>,
    intermediate: Issued,
    leaf: Issued,
}

impl Pki {
    fn new() -> Pki {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("Postern Test Root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);

        let intermediate_key = KeyPair::generate().unwrap();
        let intermediate_params = ca_params("Postern Test Intermediate");
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .unwrap();
        let intermediate_issuer = Issuer::new(intermediate_params, &intermediate_key);

        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &intermediate_issuer)
            .unwrap();

        Pki {
            root_der: root.der().clone(),
            intermediate: Issued {
                cert_pem: intermediate.pem(),
                cert_der: intermediate.der().clone(),
                key_pem: intermediate_key.serialize_pem(),
            },
            leaf: Issued {
                cert_pem: leaf.pem(),
                cert_der: leaf.der().clone(),
                key_pem: leaf_key.serialize_pem(),
            },
        }
    }

    /// Leaf then intermediate, as `fullchain.pem` files are laid out.
    fn full_chain_pem(&self) -> String {
        format!("{}{}", self.leaf.cert_pem, self.intermediate.cert_pem)
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
}

/// A self-signed server certificate; the client trusts it directly.
fn self_signed() -> Issued {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Issued {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_pem: key.serialize_pem(),
    }
}

/// A temporary directory with `tls_key.pem` / `tls_cert.pem` paths in it.
struct TlsDir {
    dir: tempfile::TempDir,
}

impl TlsDir {
    fn new() -> TlsDir {
        TlsDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn separate(&self) -> TlsFiles {
        TlsFiles {
            key: self.path("tls_key.pem"),
            cert: self.path("tls_cert.pem"),
        }
    }

    fn combined(&self) -> TlsFiles {
        let bundle = self.path("bundle.pem");
        TlsFiles {
            key: bundle.clone(),
            cert: bundle,
        }
    }
}

/// Distinct, increasing modification times for every write, so that change detection
/// does not depend on the file system's timestamp granularity between fast writes.
fn next_mtime() -> SystemTime {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(1_600_000_000 + WRITES.fetch_add(1, Ordering::Relaxed))
}

/// Replaces `path` atomically (write + rename), as acme.sh and certbot do.
fn replace_file(path: &Path, contents: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, contents).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staging)
        .unwrap()
        .set_modified(next_mtime())
        .unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// Rewrites `path` in place (same inode), as `cp new.pem tls_cert.pem` does.
fn rewrite_in_place(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(next_mtime())
        .unwrap();
}

/// What the client saw of a completed handshake.
struct Handshake {
    peer_certificates: Vec<CertificateDer<'static>>,
    version: ProtocolVersion,
}

/// Completes a real handshake against `acceptor` with a client that trusts only
/// `trusted`, panicking if either side fails.
async fn handshake(
    acceptor: TlsAcceptor,
    trusted: &CertificateDer<'static>,
    versions: &[&'static SupportedProtocolVersion],
) -> Handshake {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(drop) });

    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let client_config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client_config));
    let stream = connector
        .connect(ServerName::try_from(SERVER_NAME).unwrap(), client_io)
        .await
        .expect("client handshake");
    server.await.unwrap().expect("server handshake");

    let connection = stream.get_ref().1;
    Handshake {
        peer_certificates: connection.peer_certificates().unwrap().to_vec(),
        version: connection.protocol_version().unwrap(),
    }
}

const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The certificate a default client is served by `acceptor`.
async fn served_leaf(
    acceptor: TlsAcceptor,
    trusted: &CertificateDer<'static>,
) -> CertificateDer<'static> {
    handshake(acceptor, trusted, ALL_VERSIONS)
        .await
        .peer_certificates
        .into_iter()
        .next()
        .unwrap()
}
