//! STARTTLS against a fake server with a throw-away CA made by rcgen.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;
use crate::client::{ClientErrorKind, ClientTls, SmtpClient, Step, TlsMode, TlsVerify};

const SERVER_NAME: &str = "mx.test";

/// A CA file the client can trust and a server acceptor with a leaf it issued.
struct Pki {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    acceptor: TlsAcceptor,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Postern client test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            _dir: dir,
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
        }
    }

    fn client_config(&self, mode: TlsMode) -> ClientConfig {
        let mut config = config();
        config.tls = ClientTls::new(mode, &TlsVerify::CaFile(self.ca_file.clone())).unwrap();
        config
    }
}

/// Opening with STARTTLS offered, the upgrade, and the EHLO inside TLS.
fn starttls_script(acceptor: TlsAcceptor) -> Vec<Act> {
    let mut script = opening(&["PIPELINING", "STARTTLS"]);
    script.extend([
        Act::Hear(1),
        say("220 2.0.0 Ready to start TLS\r\n"),
        Act::StartTls(acceptor),
        Act::Hear(1),
        say("250-mx.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"),
        Act::Hear(1),
        say("250 2.0.0 Ok\r\n"),
    ]);
    script
}

#[tokio::test]
async fn required_tls_with_a_private_ca() {
    let pki = Pki::new();
    let server = FakeServer::start(starttls_script(pki.acceptor.clone())).await;
    let mut client = SmtpClient::connect(
        server.addr,
        SERVER_NAME,
        &pki.client_config(TlsMode::Required),
    )
    .await
    .unwrap();
    assert!(client.is_tls());
    // Only what the server said inside TLS counts.
    assert!(!client.capabilities().starttls);
    assert_eq!(client.capabilities().auth, ["PLAIN"]);
    assert_eq!(client.noop().await.unwrap().code(), 250);
    assert_eq!(
        server.heard().await.lines,
        ["EHLO relay.test", "STARTTLS", "EHLO relay.test", "NOOP"]
    );
}

#[tokio::test]
async fn opportunistic_tls_upgrades_when_offered() {
    let pki = Pki::new();
    let server = FakeServer::start(starttls_script(pki.acceptor.clone())).await;
    let mut client = SmtpClient::connect(
        server.addr,
        SERVER_NAME,
        &pki.client_config(TlsMode::Opportunistic),
    )
    .await
    .unwrap();
    assert!(client.is_tls());
    client.noop().await.unwrap();
    server.heard().await;
}

#[tokio::test]
async fn insecure_verification_accepts_an_unknown_ca() {
    let pki = Pki::new();
    let server = FakeServer::start(starttls_script(pki.acceptor.clone())).await;
    let mut config = config();
    config.tls = ClientTls::new(TlsMode::Opportunistic, &TlsVerify::Insecure).unwrap();
    // Not even the name matches; opportunistic delivery takes it anyway.
    let mut client = SmtpClient::connect(server.addr, "other.test", &config)
        .await
        .unwrap();
    assert!(client.is_tls());
    client.noop().await.unwrap();
    server.heard().await;
}

#[tokio::test]
async fn untrusted_certificate_fails_the_handshake() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = FakeServer::start(starttls_script(pki.acceptor.clone())).await;
    let error = SmtpClient::connect(
        server.addr,
        SERVER_NAME,
        &other.client_config(TlsMode::Opportunistic),
    )
    .await
    .unwrap_err();
    assert_eq!(error.step(), Step::TlsHandshake);
    assert!(
        matches!(error.kind(), ClientErrorKind::TlsHandshake(_)),
        "{error}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn opportunistic_tls_continues_in_clear_when_refused() {
    let pki = Pki::new();
    let mut script = opening(&["STARTTLS"]);
    script.extend([
        Act::Hear(1),
        say("454 4.7.0 TLS not available due to local problem\r\n"),
        Act::Hear(1),
        say("250 2.0.0 Ok\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(
        server.addr,
        SERVER_NAME,
        &pki.client_config(TlsMode::Opportunistic),
    )
    .await
    .unwrap();
    assert!(!client.is_tls());
    client.noop().await.unwrap();
    assert_eq!(
        server.heard().await.lines,
        ["EHLO relay.test", "STARTTLS", "NOOP"]
    );
}

#[tokio::test]
async fn required_tls_refused_is_an_error() {
    let pki = Pki::new();
    let mut script = opening(&["STARTTLS"]);
    script.extend([Act::Hear(1), say("454 4.7.0 TLS not available\r\n")]);
    let server = FakeServer::start(script).await;
    let error = SmtpClient::connect(
        server.addr,
        SERVER_NAME,
        &pki.client_config(TlsMode::Required),
    )
    .await
    .unwrap_err();
    assert_eq!(error.step(), Step::StartTls);
    assert_eq!(error.reply().map(|r| r.code()), Some(454));
    server.heard().await;
}

#[tokio::test]
async fn required_tls_not_offered_is_an_error() {
    let pki = Pki::new();
    let server = FakeServer::start(opening(&["PIPELINING"])).await;
    let error = SmtpClient::connect(
        server.addr,
        SERVER_NAME,
        &pki.client_config(TlsMode::Required),
    )
    .await
    .unwrap_err();
    assert!(matches!(error.kind(), ClientErrorKind::TlsNotOffered));
    assert!(error.is_transient());
    assert_eq!(server.heard().await.lines, ["EHLO relay.test"]);
}

#[tokio::test]
async fn octets_before_the_handshake_are_refused() {
    let pki = Pki::new();
    let mut script = opening(&["STARTTLS"]);
    script.extend([
        Act::Hear(1),
        say("220 2.0.0 Ready to start TLS\r\n250 injected\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let error = SmtpClient::connect(
        server.addr,
        SERVER_NAME,
        &pki.client_config(TlsMode::Required),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error.kind(), ClientErrorKind::PrematureTlsData),
        "{error}"
    );
    server.heard().await;
}
