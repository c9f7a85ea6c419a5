//! Server-side TLS for STARTTLS (and SMTPS): loading `tls.ini`'s certificate files and
//! swapping in a renewed certificate without a restart.
//!
//! Haraka never reloads its default certificate when the PEM files change (see the
//! behaviour notes, §2), so a renewal silently keeps serving the expiring one until
//! somebody restarts it. Here every STARTTLS first `stat()`s the two files and reloads
//! if they changed, and SIGHUP can force a reload. A broken new file never replaces a
//! working certificate.

mod load;
mod stamp;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

pub use load::{TlsError, TlsFiles, load_server_config};
use stamp::FilesStamp;

/// The oldest TLS version offered to clients (tls.ini `minVersion`); older
/// ones are not supported at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsMinVersion {
    /// TLS 1.2 (Node's and Haraka's default).
    Tls12,
    /// TLS 1.3 only: a TLS 1.2 handshake is refused.
    Tls13,
}

impl TlsMinVersion {
    /// The versions a server configuration enables, newest first.
    pub fn protocol_versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static FROM_TLS12: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsMinVersion::Tls12 => &FROM_TLS12,
            TlsMinVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

/// The certificate currently served, shared by every connection of a listener.
///
/// It exists so that renewal needs neither a restart nor a background watcher: the
/// check rides on the handshakes themselves, so a replaced certificate is used from
/// the very next STARTTLS.
pub struct ServerTls {
    files: TlsFiles,
    min_version: TlsMinVersion,
    current: RwLock<Loaded>,
    /// Serialises loads so that a burst of handshakes right after a renewal reads the
    /// files once instead of once per connection. Never taken by the fast path.
    load_gate: Mutex<()>,
}

/// What the last load attempt left behind.
struct Loaded {
    /// The last configuration that loaded successfully; kept across failed reloads.
    config: Option<Arc<ServerConfig>>,
    /// The file stamp of the last attempt, successful or not. A failed attempt records
    /// it too, so a broken file is reported once rather than on every handshake, while
    /// any further change to the files (the writer finishing) triggers a retry.
    attempted: Option<FilesStamp>,
}

impl ServerTls {
    /// Loads the certificate for the first time. A failure is logged, and STARTTLS is
    /// not offered until the files become valid, as Haraka does without `tls_valid`.
    pub fn new(files: TlsFiles, min_version: TlsMinVersion) -> ServerTls {
        let tls = ServerTls {
            files,
            min_version,
            current: RwLock::new(Loaded {
                config: None,
                attempted: None,
            }),
            load_gate: Mutex::new(()),
        };
        tls.refresh();
        tls
    }

    /// The acceptor for one handshake, using the files as they are now (reloaded first
    /// if they changed on disk). `None` when no valid certificate was ever loaded.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.refresh().map(TlsAcceptor::from)
    }

    /// Reloads unconditionally (SIGHUP). On error the previous certificate stays in
    /// service and the error is returned for the caller to report; it is not logged
    /// here.
    pub fn reload(&self) -> Result<(), TlsError> {
        let _gate = self
            .load_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stamp = FilesStamp::of(&self.files);
        match load_server_config(&self.files, self.min_version) {
            Ok(config) => {
                self.record_attempt(stamp, Some(Arc::new(config)));
                self.log_loaded();
                Ok(())
            }
            Err(error) => {
                self.record_attempt(stamp, None);
                Err(error)
            }
        }
    }

    /// Whether STARTTLS can be advertised now. Checks the files like
    /// [`acceptor`](Self::acceptor) does, so that a certificate installed after start-up
    /// is advertised without waiting for a STARTTLS that could never be offered.
    ///
    /// Asked on every connection, so it reads the files' stamp only while no
    /// certificate was ever loaded (waiting for the admin to fix them): once
    /// one is in service it stays so, since a broken renewal never replaces
    /// it, and the renewal check itself rides on the handshake
    /// ([`Self::acceptor`]). That saves a `stat()` per connection.
    pub fn is_available(&self) -> bool {
        let loaded = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .is_some();
        loaded || self.refresh().is_some()
    }

    /// The files this certificate is loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Returns the configuration to use now, loading the files first if their stamp
    /// differs from the last attempt.
    fn refresh(&self) -> Option<Arc<ServerConfig>> {
        let stamp = FilesStamp::of(&self.files);
        if let Some(config) = self.config_if_attempted(stamp) {
            return config;
        }
        let _gate = self
            .load_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another handshake may have loaded this very stamp while we waited.
        if let Some(config) = self.config_if_attempted(stamp) {
            return config;
        }
        match load_server_config(&self.files, self.min_version) {
            Ok(config) => {
                let config = Arc::new(config);
                self.record_attempt(stamp, Some(Arc::clone(&config)));
                self.log_loaded();
                Some(config)
            }
            Err(error) => {
                let kept = self.record_attempt(stamp, None);
                if kept.is_some() {
                    tracing::error!(
                        %error,
                        "TLS certificate reload failed; still serving the previous certificate"
                    );
                } else {
                    tracing::error!(
                        %error,
                        "TLS certificate unusable; STARTTLS is not offered until the files are fixed"
                    );
                }
                kept
            }
        }
    }

    /// `Some(current config)` when `stamp` was already attempted, `None` when the files
    /// changed since and must be loaded.
    fn config_if_attempted(&self, stamp: FilesStamp) -> Option<Option<Arc<ServerConfig>>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (current.attempted == Some(stamp)).then(|| current.config.clone())
    }

    /// Remembers that `stamp` was attempted and, when `loaded` is a new configuration,
    /// puts it in service. Returns the configuration now served.
    fn record_attempt(
        &self,
        stamp: FilesStamp,
        loaded: Option<Arc<ServerConfig>>,
    ) -> Option<Arc<ServerConfig>> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        current.attempted = Some(stamp);
        if loaded.is_some() {
            current.config = loaded;
        }
        current.config.clone()
    }

    fn log_loaded(&self) {
        tracing::info!(
            key = %self.files.key.display(),
            cert = %self.files.cert.display(),
            "TLS certificate loaded"
        );
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field(
                "available",
                &self
                    .current
                    .read()
                    .map(|c| c.config.is_some())
                    .unwrap_or(false),
            )
            .finish()
    }
}
