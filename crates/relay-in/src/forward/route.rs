//! A backend route as relay-in uses it: smtp_forward.ini's settings made
//! once into a client configuration, the backend's health, what its EHLO
//! offered, its spare session, and connecting to it.

use std::net::SocketAddr;
use std::sync::Arc;

use smtp_core::client::{
    AuthMechanism as ClientAuth, Capabilities, ClientConfig, ClientError, ClientTls, Credentials,
    SmtpClient, Step, StepTimeouts, TlsMode, TlsVerify,
};
use smtp_protocol::reply::Reply;

use crate::config::{AuthMechanism, ForwardMode, ForwardRoute, ForwardSettings, XclientPolicy};
use crate::probe::{BackendHealth, Finding};

use super::replies::{failure_reply, unavailable};
use super::{SPOOL_MODE_CONNECT_TIMEOUT, spare};

/// A route from smtp_forward.ini with its client settings built once at
/// startup (a CA file is read then, not per message), and what is known of
/// its backend's health.
#[derive(Debug)]
pub struct PreparedRoute {
    pub(super) route: ForwardRoute,
    /// Made once: recipients are checked against it one by one.
    pub(super) key: RouteKey,
    pub(super) client: ClientConfig,
    pub(super) xclient: XclientPolicy,
    pub(super) health: Arc<BackendHealth>,
    /// The session the next client's open starts from, when traffic is dense.
    pub(super) spare: spare::Spare,
    /// What the backend offered in its last EHLO (when it offered XCLIENT):
    /// a session that says XCLIENT first starts from it instead of an EHLO
    /// of its own.
    pub(super) offered: std::sync::Mutex<Option<Capabilities>>,
    /// The backend refused (or failed) XCLIENT said before any EHLO:
    /// sessions say EHLO first from then on.
    pub(super) wants_ehlo_first: std::sync::atomic::AtomicBool,
}

/// Why no session with a backend could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    #[error("cannot resolve backend host: {0}")]
    Resolve(std::io::Error),
    #[error("backend connection failed: {0}")]
    Client(ClientError),
}

impl ConnectFailure {
    /// Whether the backend was not reached at all (no address, no TCP
    /// connection: refused, timed out, unreachable), as opposed to a backend
    /// that answered and then failed.
    pub fn unreachable(&self) -> bool {
        match self {
            ConnectFailure::Resolve(_) => true,
            ConnectFailure::Client(error) => error.step() == Step::Connect,
        }
    }

    /// The cause alone, for a line that already names the backend.
    pub fn cause(&self) -> String {
        match self {
            ConnectFailure::Resolve(error) => format!("cannot resolve its host: {error}"),
            ConnectFailure::Client(error) => error.to_string(),
        }
    }

    pub(super) fn reply(&self) -> Reply {
        match self {
            ConnectFailure::Resolve(_) => unavailable(),
            ConnectFailure::Client(error) => failure_reply(error),
        }
    }
}

impl PreparedRoute {
    pub fn key(&self) -> &RouteKey {
        &self.key
    }

    /// The client settings every forward uses.
    pub fn client_config(&self) -> &ClientConfig {
        &self.client
    }

    pub fn xclient_policy(&self) -> XclientPolicy {
        self.xclient
    }

    pub fn health(&self) -> &Arc<BackendHealth> {
        &self.health
    }

    /// Takes in what a probe or a forward found about this backend.
    pub fn record(&self, finding: &Finding) {
        self.health.record(finding, self.xclient);
    }

    /// Resolves the host and opens a session (greeting, EHLO, STARTTLS per
    /// `config`) with the first of its addresses that answers.
    pub async fn connect(&self, config: &ClientConfig) -> Result<SmtpClient, ConnectFailure> {
        let addrs = resolve(&self.route.host, self.route.port)
            .await
            .map_err(ConnectFailure::Resolve)?;
        let mut last_error = None;
        for addr in addrs {
            match SmtpClient::connect(addr, &self.route.host, config).await {
                Ok(client) => {
                    self.remember_offer(client.capabilities());
                    return Ok(client);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.map_or_else(
            || ConnectFailure::Resolve(std::io::Error::other("no address")),
            ConnectFailure::Client,
        ))
    }

    /// A session whose next command is XCLIENT (a client's open, a spare):
    /// without an EHLO of its own when the backend's offer is known (it said
    /// XCLIENT), XCLIENT is required and the route needs no STARTTLS nor
    /// AUTH, else as [`Self::connect`]. XCLIENT sends the backend back to its
    /// greeting and EHLO follows it anyway, so that first EHLO only told us
    /// what we knew (Postfix takes XCLIENT at any point outside a
    /// transaction; XCLIENT_README). Says whether EHLO was skipped.
    pub(super) async fn connect_for_xclient(&self) -> Result<(SmtpClient, bool), ConnectFailure> {
        // With xclient=optional a refused XCLIENT is carried on from, and
        // that needs the session's own EHLO.
        let known = if self.xclient != XclientPolicy::Required
            || self
                .wants_ehlo_first
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            None
        } else {
            lock_offer(&self.offered).clone()
        };
        if let Some(known) = known {
            let addrs = resolve(&self.route.host, self.route.port)
                .await
                .map_err(ConnectFailure::Resolve)?;
            let mut last_error = None;
            for addr in addrs {
                match SmtpClient::connect_known(addr, &self.client, known.clone()).await {
                    None => break,
                    Some(Ok(client)) => return Ok((client, true)),
                    Some(Err(e)) => last_error = Some(e),
                }
            }
            if let Some(e) = last_error {
                return Err(ConnectFailure::Client(e));
            }
        }
        self.connect(&self.client)
            .await
            .map(|client| (client, false))
    }

    fn remember_offer(&self, offered: &Capabilities) {
        if offered.xclient.is_none() {
            return;
        }
        let mut known = lock_offer(&self.offered);
        if known.as_ref() != Some(offered) {
            *known = Some(offered.clone());
        }
    }
}

fn lock_offer(
    offered: &std::sync::Mutex<Option<Capabilities>>,
) -> std::sync::MutexGuard<'_, Option<Capabilities>> {
    offered.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which backend a recipient goes to; recipients of one transaction must
/// share it (Haraka's split-host deferral).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    host: std::sync::Arc<str>,
    port: u16,
}

impl RouteKey {
    pub fn new(host: &str, port: u16) -> Self {
        RouteKey {
            host: host.into(),
            port,
        }
    }
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

pub(super) fn client_config(
    me: &str,
    settings: &ForwardSettings,
    route: &ForwardRoute,
) -> Result<ClientConfig, smtp_core::client::ClientTlsError> {
    let mut config = ClientConfig::new(me);
    config.connect_timeout = match settings.mode {
        // The spool takes over when the backend is away, so a sender must
        // not wait connect_timeout to learn it: over a tunnel that is up a
        // connection takes milliseconds.
        ForwardMode::Spool => settings.connect_timeout.min(SPOOL_MODE_CONNECT_TIMEOUT),
        ForwardMode::Queue | ForwardMode::Live => settings.connect_timeout,
    };
    config.timeouts = StepTimeouts::uniform(settings.timeout);
    config.tls = if route.enable_tls {
        let verify = match (&settings.ca_file, settings.tls_verify) {
            (_, false) => TlsVerify::Insecure,
            (Some(ca), true) => TlsVerify::CaFile(ca.clone()),
            (None, true) => TlsVerify::SystemRoots,
        };
        ClientTls::new(TlsMode::Opportunistic, &verify)?
    } else {
        ClientTls::off()
    };
    config.auth = route.auth.as_ref().map(|auth| Credentials {
        mechanism: match auth.mechanism {
            AuthMechanism::Plain => ClientAuth::Plain,
            AuthMechanism::Login => ClientAuth::Login,
        },
        user: auth.user.clone(),
        password: auth.pass.clone(),
    });
    Ok(config)
}
