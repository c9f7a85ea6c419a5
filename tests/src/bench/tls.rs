//! Certificates for the scenarios that use TLS, made at run time with the
//! test CA so no key material lives in the repository.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::client::ClientTls;
use crate::certs::TestCa;

/// The name relay-in's and relay-out's certificates are issued for; the
/// load client checks it.
pub const SERVER_NAME: &str = "mx.bench.test";

/// A CA and the files the daemons read, in the run's work directory.
///
/// It exists so one run uses one CA for every hop: the load client trusts
/// it for relay-in, relay-in trusts it (`ca_file`) for the sink.
pub struct BenchPki {
    ca: TestCa,
    /// Key and certificate for [`SERVER_NAME`], one PEM file.
    pub server_pem: PathBuf,
    /// Key and certificate for the sink, valid for 127.0.0.1.
    pub sink_pem: PathBuf,
    /// The CA certificate alone, for `ca_file`.
    pub ca_pem: PathBuf,
}

impl BenchPki {
    pub fn create(dir: &Path) -> anyhow::Result<BenchPki> {
        let ca = TestCa::new("postern-bench CA")?;
        let server_pem = dir.join("server.pem");
        ca.issue(SERVER_NAME)?.write_combined(&server_pem)?;
        let sink_pem = dir.join("sink.pem");
        ca.issue("127.0.0.1")?.write_combined(&sink_pem)?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, &ca.cert_pem)?;
        Ok(BenchPki {
            ca,
            server_pem,
            sink_pem,
            ca_pem,
        })
    }

    /// The load client's STARTTLS settings, trusting this CA for `name`.
    pub fn client(&self, name: &str) -> anyhow::Result<ClientTls> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert_der.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: ServerName::try_from(name.to_string())?,
        })
    }
}

/// The sink's TLS acceptor from a combined key-and-certificate PEM file.
pub fn acceptor(pem: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(pem)
        .with_context(|| format!("reading {}", pem.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key =
        PrivateKeyDer::from_pem_file(pem).with_context(|| format!("key in {}", pem.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
