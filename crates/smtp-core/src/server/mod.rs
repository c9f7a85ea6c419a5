//! The tokio driver: listeners, one task per connection, limits, signals
//! and graceful shutdown. The protocol itself lives in [`crate::session`].

mod connection;
mod input;
mod limits;
mod listener;
mod rate;
mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::CoreSettings;
use crate::config::core::rates::RateRule;
use crate::dns::Dns;
use crate::policy::MailPolicy;
use crate::session::SessionConfig;
use crate::tls::ServerTls;
use limits::ConnectionLimits;
use shutdown::Phase;

/// How a listener behaves, beyond the protocol settings in
/// [`SessionConfig`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub session: Arc<SessionConfig>,
    /// No complete command line for this long (partial lines do not count,
    /// so a client cannot hold the connection with one byte at a time):
    /// `421 4.4.2` and close.
    pub inactivity_timeout: Duration,
    /// The timeout once the server is over 80% of `max_connections`.
    pub stress_timeout: Duration,
    /// DATA may take the timeout plus one second per this many bytes
    /// received (Postfix `smtpd_min_data_rate`).
    pub min_data_rate: u64,
    /// After SIGTERM, how long transactions in flight may take to finish.
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Command line limit, line ending included.
    pub max_line_length: usize,
    pub early_talker_pause: Duration,
    pub early_talker_reject: bool,
    pub tls_handshake_timeout: Duration,
    /// tls.ini `[no_tls_hosts]`: clients never offered STARTTLS (broken
    /// peers that fail the handshake and would otherwise never deliver).
    pub no_tls_hosts: Vec<ipnetwork::IpNetwork>,
    /// Listeners on these ports speak TLS from the first byte (smtp.ini
    /// `smtps_port`, 465), as Haraka does.
    pub implicit_tls_ports: Vec<u16>,
    /// limit.ini `[rate_conn]`: connections per client address per interval.
    pub connection_rate: RateRule,
    /// limit.ini `[rate_rcpt_host]`: recipients per client address per interval.
    pub recipient_rate: RateRule,
    /// metrics.ini `listen`: the Prometheus endpoint, off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// connection.ini `spool_after`: message bytes kept in memory before the
    /// rest goes to a temporary file in `spool_dir`; `None`: never.
    pub spool_after: Option<usize>,
    pub spool_dir: std::path::PathBuf,
    /// smtp.ini `freebind`: bind listen addresses before they exist on an
    /// interface (IP_FREEBIND), so a boot race with WireGuard is harmless.
    pub freebind: bool,
}

impl ServerConfig {
    /// Haraka's shipped defaults, for tests and as the loader's base.
    pub fn with_session(session: SessionConfig) -> Self {
        Self {
            listen: vec![SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 25))],
            session: Arc::new(session),
            inactivity_timeout: Duration::from_secs(300),
            stress_timeout: Duration::from_secs(10),
            min_data_rate: 500,
            shutdown_grace: Duration::from_secs(30),
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_line_length: 512,
            early_talker_pause: Duration::ZERO,
            early_talker_reject: true,
            tls_handshake_timeout: Duration::from_secs(30),
            no_tls_hosts: Vec::new(),
            implicit_tls_ports: Vec::new(),
            connection_rate: RateRule::default(),
            recipient_rate: RateRule::default(),
            metrics_listen: None,
            spool_after: Some(1024 * 1024),
            spool_dir: std::env::temp_dir(),
            freebind: false,
        }
    }
}

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
    config: ServerConfig,
    policy: Arc<P>,
    tls: Option<Arc<ServerTls>>,
    dns: Option<Dns>,
    limits: Arc<ConnectionLimits>,
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
    pub fn new(
        config: ServerConfig,
        policy: Arc<P>,
        tls: Option<Arc<ServerTls>>,
        dns: Option<Dns>,
    ) -> Self {
        let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
        let connection_rate = rate::RateLimiter::new(config.connection_rate.clone());
        let recipient_rate = rate::RateLimiter::new(config.recipient_rate.clone());
        Self {
            shared: Arc::new(Shared {
                config,
                policy,
                tls,
                dns,
                limits,
                connection_rate,
                recipient_rate,
                log_throttle: rate::LogThrottle::default(),
            }),
            on_reload: None,
        }
    }

    /// The server the core settings describe: TLS from tls.ini, reverse DNS
    /// per `rdns`/`nameservers`.
    pub fn from_settings(core: &CoreSettings, policy: Arc<P>) -> Result<Self, ServerError> {
        let tls = core
            .tls
            .files
            .clone()
            .map(|files| Arc::new(ServerTls::new(files)));
        let dns = if core.rdns {
            Some(Dns::new(&core.dns_settings())?)
        } else {
            None
        };
        Ok(Self::new(core.server_config(), policy, tls, dns))
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
        let grace = self.shared.config.shutdown_grace;
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
