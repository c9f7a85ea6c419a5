//! The tokio driver: listeners, one task per connection, limits, signals
//! and graceful shutdown. The protocol itself lives in [`smtp_protocol::session`].

mod connection;
mod input;
mod limits;
mod listener;
mod log;
mod pregreet;
pub mod proxy_protocol;
mod rate;
mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::CoreSettings;
use crate::dns::Dns;
use crate::policy::MailPolicy;
use crate::tls::ServerTls;
use limits::ConnectionLimits;
use shutdown::Phase;
use smtp_protocol::session::SessionConfig;

/// Without a complete command line for this long while the server is over
/// 80% of `max_connections`, a client is cut off (Postfix's
/// `smtpd_timeout` under stress), whatever smtp.ini `inactivity_timeout` says.
const STRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// DATA may take the inactivity timeout plus one second per this many bytes
/// received (Postfix's `smtpd_min_data_rate`), so a large message at a decent
/// rate is never cut while a trickle is.
const MIN_DATA_RATE_BYTES_PER_SECOND: u64 = 500;

/// How long a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not run; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("cannot install the {0} signal handler: {1}")]
    Signal(&'static str, std::io::Error),
}

/// What every connection task shares.
struct Shared<P: MailPolicy> {
    /// The settings as read: listeners, limits, timeouts, TLS exceptions.
    config: CoreSettings,
    /// The protocol engine's part of `config`, built once for all sessions.
    session: Arc<SessionConfig>,
    policy: Arc<P>,
    tls: Option<Arc<ServerTls>>,
    dns: Option<Dns>,
    limits: Arc<ConnectionLimits>,
    pregreet: pregreet::PregreetTest,
    connection_rate: Option<rate::RateLimiter>,
    recipient_rate: Option<rate::RateLimiter>,
    log_throttle: rate::LogThrottle,
}

/// Called on SIGHUP, after the certificate reload, so a binary can re-read
/// its own files (relay-in's `host_list`, relay-out's ACL and queue flush).
pub type ReloadHook = Box<dyn Fn() + Send + Sync>;

/// An SMTP server for one [`MailPolicy`], ready to bind.
pub struct Server<P: MailPolicy> {
    shared: Arc<Shared<P>>,
    on_reload: Option<ReloadHook>,
}

impl<P: MailPolicy> Server<P> {
    /// The server the core settings describe: TLS from tls.ini, reverse DNS
    /// per `rdns`/`nameservers`.
    pub fn from_settings(core: &CoreSettings, policy: Arc<P>) -> Result<Self, ServerError> {
        let tls = core
            .tls
            .files
            .clone()
            .map(|files| Arc::new(ServerTls::new(files, core.tls.min_version)));
        let dns = if core.rdns {
            Some(Dns::new(&core.dns_settings())?)
        } else {
            None
        };
        let mut session = core.session_config();
        session.requiretls = policy.offers_requiretls();
        Ok(Self {
            shared: Arc::new(Shared {
                config: core.clone(),
                session: Arc::new(session),
                policy,
                tls,
                dns,
                limits: ConnectionLimits::new(core.max_connections, core.max_connections_per_ip),
                pregreet: pregreet::PregreetTest::new(core.early_talker_pause),
                connection_rate: rate::RateLimiter::new(core.connection_rate.clone()),
                recipient_rate: rate::RateLimiter::new(core.recipient_rate.clone()),
                log_throttle: rate::LogThrottle::default(),
            }),
            on_reload: None,
        })
    }

    pub fn on_reload(mut self, hook: ReloadHook) -> Self {
        self.on_reload = Some(hook);
        self
    }

    /// Binds every listen address, tells systemd it is ready, and serves until
    /// SIGTERM or SIGINT; then drains (see [`Phase`]).
    pub async fn run(self) -> Result<(), ServerError> {
        let mut sigterm =
            signal(SignalKind::terminate()).map_err(|e| ServerError::Signal("SIGTERM", e))?;
        let mut sigint =
            signal(SignalKind::interrupt()).map_err(|e| ServerError::Signal("SIGINT", e))?;
        let mut sighup =
            signal(SignalKind::hangup()).map_err(|e| ServerError::Signal("SIGHUP", e))?;

        let mut listeners = Vec::new();
        for &addr in &self.shared.config.listen {
            let listener = listener::bind(addr, self.shared.config.freebind)
                .map_err(|source| ServerError::Bind { addr, source })?;
            info!(listen = %addr, "listening");
            listeners.push(listener);
        }

        if let Some(addr) = self.shared.config.metrics_listen {
            crate::metrics::serve(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
        }

        let (shutdown_tx, shutdown_rx) = shutdown::channel();
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        for listener in listeners {
            tokio::spawn(listener::accept_loop(
                listener,
                Arc::clone(&self.shared),
                shutdown_rx.clone(),
                done_tx.clone(),
            ));
        }
        drop(done_tx);
        notify(&[sd_notify::NotifyState::Ready]);

        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM received: shutting down"); break }
                _ = sigint.recv() => { info!("SIGINT received: shutting down"); break }
                _ = sighup.recv() => self.reload(),
            }
        }

        notify(&[sd_notify::NotifyState::Stopping]);
        shutdown_tx.set(Phase::Draining);
        let grace = self.shared.config.force_shutdown_timeout;
        if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
            warn!(
                grace_seconds = grace.as_secs(),
                "transactions still running after the grace period: closing them"
            );
            shutdown_tx.set(Phase::Forced);
            let _ = tokio::time::timeout(Duration::from_secs(5), done_rx.recv()).await;
        }
        info!("stopped");
        Ok(())
    }

    fn reload(&self) {
        info!("SIGHUP received: reloading");
        notify(&[sd_notify::NotifyState::Reloading]);
        if let Some(tls) = &self.shared.tls
            && let Err(e) = tls.reload()
        {
            error!("certificate reload failed, keeping the old one: {e}");
        }
        if let Some(hook) = &self.on_reload {
            hook();
        }
        notify(&[sd_notify::NotifyState::Ready]);
    }
}

/// sd_notify is a no-op without `NOTIFY_SOCKET`; a failure to reach systemd
/// is worth a line but never fatal.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!("cannot notify systemd: {e}");
    }
}
