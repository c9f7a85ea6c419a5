//! `load_server_config`: file layouts Haraka users have, and errors that name the
//! file at fault.

use std::path::Path;
use std::sync::Arc;

use rustls::ProtocolVersion;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::tls::{TlsError, TlsMinVersion, load_server_config};

fn acceptor_for(files: &TlsFiles) -> TlsAcceptor {
    TlsAcceptor::from(Arc::new(
        load_server_config(files, TlsMinVersion::Tls12).expect("config loads"),
    ))
}

fn load_error(files: &TlsFiles) -> TlsError {
    match load_server_config(files, TlsMinVersion::Tls12) {
        Ok(_) => panic!("expected {files:?} to be rejected"),
        Err(error) => error,
    }
}

fn assert_names(error: &TlsError, path: &Path) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "{message:?} should name {}",
        path.display()
    );
}

#[tokio::test]
async fn separate_key_and_cert_files() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();
    replace_file(&files.key, &issued.key_pem);
    replace_file(&files.cert, &issued.cert_pem);

    let served = served_leaf(acceptor_for(&files), &issued.cert_der).await;
    assert_eq!(served, issued.cert_der);
}

#[tokio::test]
async fn separate_files_serve_the_whole_chain() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let pki = Pki::new();
    replace_file(&files.key, &pki.leaf.key_pem);
    replace_file(&files.cert, &pki.full_chain_pem());

    let seen = handshake(acceptor_for(&files), &pki.root_der, ALL_VERSIONS).await;
    assert_eq!(
        seen.peer_certificates,
        vec![pki.leaf.cert_der.clone(), pki.intermediate.cert_der.clone()]
    );
}

#[tokio::test]
async fn combined_file_with_key_first() {
    let dir = TlsDir::new();
    let files = dir.combined();
    let pki = Pki::new();
    replace_file(
        &files.key,
        &format!("{}{}", pki.leaf.key_pem, pki.full_chain_pem()),
    );

    let seen = handshake(acceptor_for(&files), &pki.root_der, ALL_VERSIONS).await;
    assert_eq!(seen.peer_certificates.len(), 2);
    assert_eq!(seen.peer_certificates[0], pki.leaf.cert_der);
}

#[tokio::test]
async fn combined_file_with_key_last() {
    let dir = TlsDir::new();
    let files = dir.combined();
    let pki = Pki::new();
    replace_file(
        &files.key,
        &format!("{}{}", pki.full_chain_pem(), pki.leaf.key_pem),
    );

    let seen = handshake(acceptor_for(&files), &pki.root_der, ALL_VERSIONS).await;
    assert_eq!(seen.peer_certificates.len(), 2);
    assert_eq!(seen.peer_certificates[0], pki.leaf.cert_der);
}

#[tokio::test]
async fn combined_file_with_key_between_certificates() {
    let dir = TlsDir::new();
    let files = dir.combined();
    let pki = Pki::new();
    let bundle = format!(
        "{}{}{}",
        pki.leaf.cert_pem, pki.leaf.key_pem, pki.intermediate.cert_pem
    );
    replace_file(&files.key, &bundle);

    let seen = handshake(acceptor_for(&files), &pki.root_der, ALL_VERSIONS).await;
    assert_eq!(seen.peer_certificates.len(), 2);
}

#[tokio::test]
async fn certificates_come_from_the_key_file_when_the_cert_file_has_none() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let pki = Pki::new();
    replace_file(
        &files.key,
        &format!("{}{}", pki.leaf.key_pem, pki.full_chain_pem()),
    );
    replace_file(&files.cert, "# certificates are in the key file\n");

    let seen = handshake(acceptor_for(&files), &pki.root_der, ALL_VERSIONS).await;
    assert_eq!(seen.peer_certificates.len(), 2);
}

#[tokio::test]
async fn tls12_and_tls13_are_both_offered() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();
    replace_file(&files.key, &issued.key_pem);
    replace_file(&files.cert, &issued.cert_pem);

    let tls13 = handshake(acceptor_for(&files), &issued.cert_der, ALL_VERSIONS).await;
    assert_eq!(tls13.version, ProtocolVersion::TLSv1_3);
    let tls12 = handshake(
        acceptor_for(&files),
        &issued.cert_der,
        &[&rustls::version::TLS12],
    )
    .await;
    assert_eq!(tls12.version, ProtocolVersion::TLSv1_2);
}

/// tls.ini `minVersion=TLSv1.3`: a client that offers only TLS 1.2 is
/// refused, one that offers 1.3 is served.
#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_handshake() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();
    replace_file(&files.key, &issued.key_pem);
    replace_file(&files.cert, &issued.cert_pem);
    let only13 = || {
        TlsAcceptor::from(Arc::new(
            load_server_config(&files, TlsMinVersion::Tls13).expect("config loads"),
        ))
    };
    let tls13 = handshake(only13(), &issued.cert_der, ALL_VERSIONS).await;
    assert_eq!(tls13.version, ProtocolVersion::TLSv1_3);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = only13();
    let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(drop) });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(issued.cert_der.clone()).unwrap();
    let tls12_client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = tokio_rustls::TlsConnector::from(Arc::new(tls12_client))
        .connect(
            rustls_pki_types::ServerName::try_from(SERVER_NAME).unwrap(),
            client_io,
        )
        .await;
    assert!(client.is_err(), "the client completed a TLS 1.2 handshake");
    assert!(
        server.await.unwrap().is_err(),
        "the server accepted TLS 1.2"
    );
}

#[test]
fn sec1_ec_private_key_is_accepted() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let sec1 = pkcs8_ec_to_sec1(key.serialized_der());
    replace_file(&files.key, &pem_block("EC PRIVATE KEY", sec1));
    replace_file(&files.cert, &cert.pem());

    load_server_config(&files, TlsMinVersion::Tls12).expect("SEC1 key loads");
}

#[test]
fn pkcs1_rsa_block_is_read_as_the_private_key() {
    // ring cannot generate RSA keys; a recognised but undecodable PKCS#1 block proves
    // the label is read as a key rather than skipped ("no private key").
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();
    replace_file(
        &files.key,
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    );
    replace_file(&files.cert, &issued.cert_pem);

    let error = load_error(&files);
    assert!(
        matches!(error, TlsError::UnusablePrivateKey { .. }),
        "{error:?}"
    );
    assert_names(&error, &files.key);
}

#[test]
fn missing_files_are_named() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();

    let error = load_error(&files);
    assert!(
        matches!(&error, TlsError::Unreadable { path, .. } if *path == files.key),
        "{error:?}"
    );
    assert_names(&error, &files.key);

    replace_file(&files.key, &issued.key_pem);
    let error = load_error(&files);
    assert!(
        matches!(&error, TlsError::Unreadable { path, .. } if *path == files.cert),
        "{error:?}"
    );
    assert_names(&error, &files.cert);
}

#[test]
fn garbage_cert_file_has_no_certificate() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();
    replace_file(&files.key, &issued.key_pem);
    replace_file(&files.cert, "this is not a certificate\n\u{0}\u{1}\u{ff}");

    let error = load_error(&files);
    assert!(
        matches!(&error, TlsError::NoCertificate { path } if *path == files.cert),
        "{error:?}"
    );
    assert_names(&error, &files.cert);
}

#[test]
fn garbage_key_file_has_no_private_key() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();
    replace_file(&files.key, "garbage");
    replace_file(&files.cert, &issued.cert_pem);

    let error = load_error(&files);
    assert!(
        matches!(&error, TlsError::NoPrivateKey { path } if *path == files.key),
        "{error:?}"
    );
    assert_names(&error, &files.key);
}

#[test]
fn truncated_pem_is_malformed() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let issued = self_signed();
    replace_file(&files.key, &issued.key_pem);
    let half = &issued.cert_pem[..issued.cert_pem.len() / 2];
    replace_file(&files.cert, half);

    let error = load_error(&files);
    assert!(
        matches!(&error, TlsError::MalformedPem { path, .. } if *path == files.cert),
        "{error:?}"
    );
    assert_names(&error, &files.cert);
}

#[test]
fn mismatched_key_names_both_files() {
    let dir = TlsDir::new();
    let files = dir.separate();
    replace_file(&files.key, &self_signed().key_pem);
    replace_file(&files.cert, &self_signed().cert_pem);

    let error = load_error(&files);
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    assert_names(&error, &files.key);
    assert_names(&error, &files.cert);
}

#[test]
fn chain_not_starting_with_the_server_certificate_is_a_mismatch() {
    let dir = TlsDir::new();
    let files = dir.combined();
    let pki = Pki::new();
    let bundle = format!(
        "{}{}{}",
        pki.intermediate.cert_pem, pki.leaf.cert_pem, pki.leaf.key_pem
    );
    replace_file(&files.key, &bundle);

    assert!(matches!(load_error(&files), TlsError::KeyMismatch { .. }));
}

#[test]
fn more_than_one_private_key_is_rejected() {
    let dir = TlsDir::new();
    let files = dir.combined();
    let pki = Pki::new();
    let bundle = format!(
        "{}{}{}",
        pki.leaf.key_pem,
        pki.full_chain_pem(),
        pki.intermediate.key_pem
    );
    replace_file(&files.key, &bundle);

    let error = load_error(&files);
    assert!(
        matches!(&error, TlsError::MultiplePrivateKeys { path, count: 2 } if *path == files.key),
        "{error:?}"
    );
    assert_names(&error, &files.key);
}

#[test]
fn encrypted_private_key_gets_its_own_error() {
    let dir = TlsDir::new();
    let files = dir.separate();
    replace_file(
        &files.key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    replace_file(&files.cert, &self_signed().cert_pem);

    let error = load_error(&files);
    assert!(
        matches!(error, TlsError::EncryptedPrivateKey { .. }),
        "{error:?}"
    );
    assert_names(&error, &files.key);
}

/// Extracts the SEC1 `ECPrivateKey` that a PKCS#8 `PrivateKeyInfo` wraps:
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }`.
fn pkcs8_ec_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (private_key_info, _) = der_element(pkcs8, 0x30);
    let (_, rest) = der_element(private_key_info, 0x02);
    let (_, rest) = der_element(rest, 0x30);
    let (sec1, _) = der_element(rest, 0x04);
    sec1.to_vec()
}

/// Splits one DER element with the expected `tag` into (contents, rest).
fn der_element(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag);
    let (length, header) = match input[1] {
        short if short < 0x80 => (usize::from(short), 2),
        0x81 => (usize::from(input[2]), 3),
        0x82 => (usize::from(u16::from_be_bytes([input[2], input[3]])), 4),
        other => panic!("unexpected DER length byte {other:#x}"),
    };
    (&input[header..header + length], &input[header + length..])
}

fn pem_block(label: &str, der: Vec<u8>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::new();
    for chunk in der.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let group = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for position in 0..4 {
            if position <= chunk.len() {
                let index = (group >> (18 - 6 * position)) & 0x3f;
                base64.push(char::from(ALPHABET[index as usize]));
            } else {
                base64.push('=');
            }
        }
    }
    let lines: Vec<&str> = base64
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
