//! `ServerTls`: renewals on disk are served from the next handshake, broken files never
//! replace a working certificate.

use std::sync::Arc;

use super::*;
use crate::tls::{ServerTls, TlsError, TlsMinVersion};

fn install(files: &TlsFiles, issued: &Issued) {
    replace_file(&files.key, &issued.key_pem);
    replace_file(&files.cert, &issued.cert_pem);
}

async fn served_by(tls: &ServerTls, trusted: &Issued) -> CertificateDer<'static> {
    served_leaf(
        tls.acceptor().expect("a certificate is available"),
        &trusted.cert_der,
    )
    .await
}

#[test]
fn server_tls_is_shareable_between_connections() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ServerTls>();
}

#[tokio::test]
async fn no_tls_until_the_files_become_valid() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);
    assert!(!tls.is_available());
    assert!(tls.acceptor().is_none());
    assert_eq!(tls.files(), &files);

    let issued = self_signed();
    install(&files, &issued);
    assert!(tls.is_available());
    assert_eq!(served_by(&tls, &issued).await, issued.cert_der);
}

#[tokio::test]
async fn renamed_replacement_is_served_on_the_next_handshake() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let old = self_signed();
    install(&files, &old);
    let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);
    assert_eq!(served_by(&tls, &old).await, old.cert_der);

    let new = self_signed();
    install(&files, &new);
    assert_eq!(served_by(&tls, &new).await, new.cert_der);
}

#[tokio::test]
async fn in_place_rewrite_of_a_combined_file_is_detected() {
    let dir = TlsDir::new();
    let files = dir.combined();
    let old = self_signed();
    rewrite_in_place(&files.cert, &format!("{}{}", old.key_pem, old.cert_pem));
    let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);
    assert_eq!(served_by(&tls, &old).await, old.cert_der);

    let new = self_signed();
    rewrite_in_place(&files.cert, &format!("{}{}", new.key_pem, new.cert_pem));
    assert_eq!(served_by(&tls, &new).await, new.cert_der);
}

#[tokio::test]
async fn broken_replacement_keeps_the_old_certificate_until_fixed() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let old = self_signed();
    install(&files, &old);
    let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);

    // Renewal caught half-way: new key written, certificate not yet.
    let new = self_signed();
    replace_file(&files.key, &new.key_pem);
    assert_eq!(served_by(&tls, &old).await, old.cert_der);
    // Same broken stamp again: still the old certificate, no retry storm.
    assert_eq!(served_by(&tls, &old).await, old.cert_der);
    assert!(tls.is_available());

    // Then a truncated certificate...
    replace_file(&files.cert, &new.cert_pem[..new.cert_pem.len() / 2]);
    assert_eq!(served_by(&tls, &old).await, old.cert_der);

    // ...and finally the complete one.
    replace_file(&files.cert, &new.cert_pem);
    assert_eq!(served_by(&tls, &new).await, new.cert_der);
}

#[tokio::test]
async fn deleted_files_keep_the_old_certificate() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let old = self_signed();
    install(&files, &old);
    let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);

    std::fs::remove_file(&files.cert).unwrap();
    assert_eq!(served_by(&tls, &old).await, old.cert_der);

    let new = self_signed();
    install(&files, &new);
    assert_eq!(served_by(&tls, &new).await, new.cert_der);
}

#[tokio::test]
async fn reload_error_keeps_the_old_certificate() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let old = self_signed();
    install(&files, &old);
    let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);

    replace_file(&files.cert, "garbage");
    let error = tls.reload().expect_err("garbage does not load");
    assert!(
        matches!(&error, TlsError::NoCertificate { path } if *path == files.cert),
        "{error:?}"
    );
    assert!(tls.is_available());
    assert_eq!(served_by(&tls, &old).await, old.cert_der);

    let new = self_signed();
    install(&files, &new);
    tls.reload().expect("valid files reload");
    assert_eq!(served_by(&tls, &new).await, new.cert_der);
}

#[test]
fn reload_without_valid_files_stays_unavailable() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);
    assert!(matches!(tls.reload(), Err(TlsError::Unreadable { .. })));
    assert!(!tls.is_available());
}

#[tokio::test]
async fn concurrent_handshakes_after_renewal_all_get_the_new_certificate() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let old = self_signed();
    install(&files, &old);
    let tls = Arc::new(ServerTls::new(files.clone(), TlsMinVersion::Tls12));
    let new = self_signed();
    install(&files, &new);

    let acceptors: Vec<_> = (0..8)
        .map(|_| {
            let tls = Arc::clone(&tls);
            std::thread::spawn(move || tls.acceptor().expect("available"))
        })
        .collect();
    for acceptor in acceptors {
        let acceptor = acceptor.join().unwrap();
        assert_eq!(served_leaf(acceptor, &new.cert_der).await, new.cert_der);
    }
}

/// Collects formatted log output so tests can count what operators would see.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn a_broken_file_is_logged_once_per_change_and_names_the_file() {
    let dir = TlsDir::new();
    let files = dir.separate();
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .finish();

    tracing::subscriber::with_default(subscriber, || {
        install(&files, &self_signed());
        let tls = ServerTls::new(files.clone(), TlsMinVersion::Tls12);

        replace_file(&files.cert, "garbage");
        for _ in 0..5 {
            assert!(tls.acceptor().is_some());
            assert!(tls.is_available());
        }
        let failures = log.text().matches("reload failed").count();
        assert_eq!(failures, 1, "{}", log.text());
        assert!(log.text().contains(&files.cert.display().to_string()));

        replace_file(&files.cert, "still garbage");
        tls.acceptor();
        tls.acceptor();
        assert_eq!(log.text().matches("reload failed").count(), 2);
    });
}
