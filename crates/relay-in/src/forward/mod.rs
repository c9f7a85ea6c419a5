//! Forwarding to the backend mail server (Haraka `queue/smtp_forward` and
//! `smtp_proxy`), with Postfix XCLIENT so the backend sees the real client.
//!
//! relay-in has no queue: the sender's reply is the backend's verdict. Every
//! failure on the way (unreachable, timeout, TLS, XCLIENT refused, dropped
//! connection) becomes a `451` so the sender retries; only a backend's own
//! negative reply to MAIL, RCPT or the message is passed on as it is.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | [`Forwarder`]: the routes, opening sessions (AUTH, XCLIENT), notices |
//! | `backend.rs` | [`Backend`]: one client's live session (live and spool mode, reuse) |
//! | `queue.rs` | queue mode's forward at the client's final dot |
//! | `early.rs` | [`EnvelopeToSend`]: queue mode's envelope, sent at the client's DATA |
//! | `replies.rs` | every reply text relay-in gives on the backend's behalf |
//! | `route.rs` | [`PreparedRoute`]: a backend's settings, health and known offer; connecting to it |
//! | `spare.rs` | [`spare::Spare`]: a route's next session, opened before a client needs it |

use std::sync::Arc;
use std::time::Instant;

use smtp_core::client::{
    ClientErrorKind, DsnRecipient, MailOptions, SmtpClient, XclientAttributes, XclientOutcome,
};
use smtp_protocol::address::{ForwardPath, ReversePath};
use smtp_protocol::reply::Reply;
use smtp_protocol::session::{HeloVerb, SessionInfo};
use tracing::{debug, info, warn};

use crate::config::{DomainSelector, ForwardSettings, XclientPolicy};
use crate::probe::{Finding, Health};

mod backend;
mod early;
mod queue;
mod replies;
mod route;
mod spare;

pub use backend::Backend;
pub use early::{EARLY_ENVELOPE_MAX_SIZE, EarlyExchange, EnvelopeToSend};
use replies::xclient_missing;
pub use replies::{failure_reply, split_transaction, spoofed_sender, unavailable};
use route::client_config;
pub use route::{PreparedRoute, RouteKey};

/// With `mode=spool`, the longest wait for a backend connection (or
/// `connect_timeout` if shorter): past it the backend counts as away and
/// the spool answers the sender.
pub const SPOOL_MODE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why [`Forwarder::open_unreported`] opened no session: the sender's
/// reply and what to log and record once the failure is reported.
#[derive(Debug)]
pub struct OpenFailed {
    key: RouteKey,
    reply: Reply,
    cause: Cause,
    /// The backend was not reached: it counts as down until a probe reaches it.
    down: Option<Finding>,
    /// The backend had closed the session (a `421`, or the connection
    /// gone): a spare session left waiting may meet this, and is replaced.
    backend_closed: bool,
}

impl OpenFailed {
    /// The route the session was for.
    pub fn key(&self) -> &RouteKey {
        &self.key
    }
}

/// The log line an open failure gets.
#[derive(Debug)]
enum Cause {
    /// Not tried: the backend is known down (a debug line only: the
    /// transition was logged when it happened).
    KnownDown,
    Warning(String),
}

/// A startup error in smtp_forward.ini's TLS settings.
#[derive(Debug, thiserror::Error)]
#[error("smtp_forward.ini: TLS settings for {host}: {source}")]
pub struct ForwardSetupError {
    host: String,
    source: smtp_core::client::ClientTlsError,
}

/// How an open came by its session, and what it owes the route's spare.
#[derive(Debug, Default)]
struct SpareUse {
    /// The session is the route's spare.
    from_spare: bool,
    /// The session said no EHLO before XCLIENT.
    skipped_ehlo: bool,
    /// Makes the next spare when the opened session ends.
    trigger: Option<spare::SpareTrigger>,
}

/// Opens backend sessions and forwards messages.
#[derive(Debug)]
pub struct Forwarder {
    me: String,
    settings: ForwardSettings,
    routes: Vec<Arc<PreparedRoute>>,
    health: Arc<Health>,
}

/// What came of forwarding one message in queue mode: the sender's reply,
/// and the backend session when it can carry the client's next message.
pub struct Forwarded {
    pub verdict: Result<Reply, Reply>,
    pub reusable: Option<Backend>,
}

impl Forwarder {
    /// Prepares every route; each backend's health is `health`'s record of
    /// it, kept across reloads.
    pub fn new(
        me: &str,
        settings: ForwardSettings,
        health: &Arc<Health>,
    ) -> Result<Self, ForwardSetupError> {
        let mut routes = Vec::new();
        let all = std::iter::once(&settings.default_route).chain(settings.domain_routes.values());
        for route in all {
            if routes
                .iter()
                .any(|p: &Arc<PreparedRoute>| &p.route == route)
            {
                continue;
            }
            let client =
                client_config(me, &settings, route).map_err(|source| ForwardSetupError {
                    host: route.host.clone(),
                    source,
                })?;
            let key = RouteKey::new(&route.host, route.port);
            routes.push(Arc::new(PreparedRoute {
                health: health.backend(&key),
                key,
                route: route.clone(),
                client,
                xclient: settings.xclient,
                spare: spare::Spare::default(),
                offered: std::sync::Mutex::new(None),
                wants_ehlo_first: std::sync::atomic::AtomicBool::new(false),
            }));
        }
        Ok(Self {
            me: me.to_string(),
            settings,
            routes,
            health: Arc::clone(health),
        })
    }

    pub fn settings(&self) -> &ForwardSettings {
        &self.settings
    }

    /// The health records this forwarder's backends are kept in.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// One route per backend (`host:port`), for the probe.
    pub fn backends(&self) -> Vec<Arc<PreparedRoute>> {
        let mut backends: Vec<Arc<PreparedRoute>> = Vec::new();
        for route in &self.routes {
            if !backends.iter().any(|b| b.key == route.key) {
                backends.push(Arc::clone(route));
            }
        }
        backends
    }

    /// Whether the backend for `selector` is known to be down: a connection
    /// to it failed and no probe has reached it since.
    pub fn backend_down(&self, selector: &str) -> bool {
        self.prepared(selector).health.is_down()
    }

    /// Whether `domain` has its own `[domain]` section; with
    /// `check_recipient=true` such domains count as local (Haraka).
    pub fn has_domain_route(&self, domain: &str) -> bool {
        self.settings.domain_routes.contains_key(domain)
    }

    fn prepared(&self, selector: &str) -> &Arc<PreparedRoute> {
        let route = self.settings.route_for(selector);
        self.routes
            .iter()
            .find(|p| &p.route == route)
            .unwrap_or(&self.routes[0])
    }

    /// The route key for a transaction, chosen by `domain_selector` from the
    /// sender or the first recipient.
    pub fn route_key(&self, selector: &str) -> RouteKey {
        self.prepared(selector).key.clone()
    }

    /// Connects, authenticates, then XCLIENT per `xclient=`. AUTH goes
    /// before XCLIENT on purpose: Postfix resets SASL state on XCLIENT, so
    /// the backend never treats an internet client as authenticated.
    pub async fn open(&self, selector: &str, session: &SessionInfo) -> Result<Backend, Reply> {
        match self.open_unreported(selector, session).await {
            Ok(backend) => Ok(backend),
            Err(failure) => Err(self.report(failure, &session.conn_id)),
        }
    }

    /// [`Forwarder::open`] whose failure is only described, not yet logged
    /// nor recorded in the backend's health: queue mode opens the session
    /// while the client is still sending (see `early`), and a failure must
    /// show at the final dot, where it has always shown, with the same
    /// lines and reply ([`Forwarder::report`]).
    pub async fn open_unreported(
        &self,
        selector: &str,
        session: &SessionInfo,
    ) -> Result<Backend, OpenFailed> {
        // XCLIENT comes first on this session (when it is said at all): it
        // shows whether a spare was closed meanwhile, and it may go before
        // any EHLO.
        let xclient_next = self.settings.xclient != XclientPolicy::Off;
        let (mut client, key, spare) = self.connect_unreported(selector, xclient_next).await?;
        let mut xclient = self.xclient(&mut client, session, &key).await;
        let retry = match &xclient {
            Ok(()) => false,
            Err(failure) if failure.backend_closed => spare.from_spare,
            // Refused before any EHLO: perhaps only for that.
            Err(_) => spare.skipped_ehlo,
        };
        if retry {
            debug!(conn = %session.conn_id, backend = %key, "the spare backend session was closed or refused XCLIENT before EHLO; opening a new one");
            client.close();
            (client, _, _) = self.connect_unreported(selector, false).await?;
            xclient = self.xclient(&mut client, session, &key).await;
            // Refused before EHLO and taken after it: say EHLO first from
            // now on. Refused both ways (relay-in not authorised), it was
            // not the missing EHLO.
            if spare.skipped_ehlo
                && xclient.is_ok()
                && !self
                    .prepared(selector)
                    .wants_ehlo_first
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                info!(backend = %key, "the backend did not take XCLIENT before EHLO; sessions say EHLO first from now on");
            }
        }
        if let Err(failure) = xclient {
            // Say goodbye (RFC 5321 4.1.1.10) without making the sender wait
            // for the backend's 221.
            client.close();
            return Err(failure);
        }
        Ok(Backend {
            client,
            key,
            greeting: session.greeting.clone(),
            opened: Instant::now(),
            _next_spare: spare.trigger,
        })
    }

    /// Logs why a session could not be opened, records an unreachable
    /// backend as down, and gives the sender's reply. `conn_id` names the
    /// connection in the log.
    pub fn report(&self, failure: OpenFailed, conn_id: &str) -> Reply {
        let OpenFailed {
            key,
            reply,
            cause,
            down,
            backend_closed: _,
        } = failure;
        match cause {
            Cause::KnownDown => {
                debug!(conn = %conn_id, backend = %key, "not connecting: the backend is down until a probe reaches it")
            }
            Cause::Warning(line) => warn!(conn = %conn_id, backend = %key, "{line}"),
        }
        if let Some(finding) = down
            && let Some(route) = self.routes.iter().find(|route| route.key == key)
        {
            route.record(&finding);
        }
        reply
    }

    /// Connects and authenticates: the session before any client's identity
    /// is given. `conn_id` names the connection in the log.
    async fn connect(
        &self,
        selector: &str,
        conn_id: &str,
    ) -> Result<(SmtpClient, RouteKey), Reply> {
        self.connect_unreported(selector, false)
            .await
            .map(|(client, key, _)| (client, key))
            .map_err(|failure| self.report(failure, conn_id))
    }

    /// Connects and authenticates; when `xclient_next`, takes the route's
    /// spare session if one is ready, or says no EHLO if the backend's offer
    /// is known; says which.
    async fn connect_unreported(
        &self,
        selector: &str,
        xclient_next: bool,
    ) -> Result<(SmtpClient, RouteKey, SpareUse), OpenFailed> {
        let prepared = self.prepared(selector);
        let key = prepared.key.clone();
        if prepared.health.is_down() {
            return Err(OpenFailed {
                key,
                reply: unavailable(),
                cause: Cause::KnownDown,
                down: None,
                backend_closed: false,
            });
        }
        let mut spare = SpareUse::default();
        if xclient_next {
            let (client, trigger) = prepared.spare.take(prepared);
            spare.trigger = trigger;
            if let Some((client, skipped_ehlo)) = client {
                spare.from_spare = true;
                spare.skipped_ehlo = skipped_ehlo;
                return Ok((client, key, spare));
            }
        }
        // XCLIENT comes next: the backend's known offer may stand for EHLO.
        let connected = if xclient_next {
            prepared.connect_for_xclient().await
        } else {
            prepared.connect(&prepared.client).await.map(|c| (c, false))
        };
        let mut client = match connected {
            Ok((client, skipped_ehlo)) => {
                spare.skipped_ehlo = skipped_ehlo;
                client
            }
            Err(failure) => {
                let down = failure
                    .unreachable()
                    .then(|| Finding::Down(failure.cause()));
                return Err(OpenFailed {
                    key,
                    reply: failure.reply(),
                    cause: Cause::Warning(failure.to_string()),
                    down,
                    backend_closed: false,
                });
            }
        };
        if let Err(e) = client.authenticate().await {
            client.quit().await;
            return Err(OpenFailed {
                key,
                reply: failure_reply(&e),
                cause: Cause::Warning(format!("backend AUTH failed: {e}")),
                down: None,
                backend_closed: false,
            });
        }
        Ok((client, key, spare))
    }

    /// Hands the backend a notice relay-in itself owes (a bounce from the
    /// backup spool), from `<>` to `to`. relay-in is the client here, so no
    /// XCLIENT: the backend must let relay-in's address relay (Postfix
    /// `mynetworks`), as a home server's own outbound relay does. The
    /// backend's final reply, or why there is none.
    pub async fn send_notice(
        &self,
        about: &str,
        to: ForwardPath,
        notice: Vec<u8>,
    ) -> Result<Reply, Reply> {
        let conn_id = format!("notice-{about}");
        let selector = match self.settings.domain_selector {
            DomainSelector::RcptTo => to.to_string().trim_matches(['<', '>']).to_owned(),
            DomainSelector::MailFrom => String::new(),
        };
        let (mut client, key) = self.connect(&selector, &conn_id).await?;
        let options = MailOptions {
            size: Some(notice.len() as u64),
            ..MailOptions::default()
        };
        let exchanged = client
            .envelope_and_data(&ReversePath::Null, std::slice::from_ref(&to), options)
            .await;
        let (replies, data) = match exchanged {
            Ok(exchanged) => exchanged,
            Err(e) => {
                warn!(conn = %conn_id, backend = %key, "notice: backend envelope failed: {e}");
                return Err(failure_reply(&e));
            }
        };
        let refusal = std::iter::once(&replies.mail)
            .chain(&replies.rcpts)
            .chain(data.as_ref())
            .find(|reply| !reply.is_positive() && reply.code() != 354)
            .cloned();
        if let Some(refusal) = refusal {
            if data.as_ref().is_some_and(|reply| reply.code() == 354) {
                client.abort_data();
            }
            client.close();
            return Err(refusal);
        }
        let result = client.data_content(notice.as_slice()).await;
        client.close();
        match result {
            Ok(reply) if reply.is_positive() => Ok(reply),
            Ok(reply) => Err(reply),
            Err(e) => Err(failure_reply(&e)),
        }
    }

    async fn xclient(
        &self,
        client: &mut SmtpClient,
        session: &SessionInfo,
        key: &RouteKey,
    ) -> Result<(), OpenFailed> {
        let policy = self.settings.xclient;
        if policy == XclientPolicy::Off {
            return Ok(());
        }
        let greeting = session.greeting.as_ref();
        let helo = greeting
            .map(|g| g.name.clone())
            .unwrap_or_else(|| self.me.clone());
        let attributes = XclientAttributes {
            name: session.client.name.clone(),
            addr: session.client.peer.ip(),
            port: session.client.peer.port(),
            proto: greeting.map(|g| g.verb).unwrap_or(HeloVerb::Ehlo),
            helo: Some(helo.clone()),
            destaddr: session.client.local.ip(),
            destport: session.client.local.port(),
            login: None,
        };
        let failed = |reply, line, backend_closed| OpenFailed {
            key: key.clone(),
            reply,
            cause: Cause::Warning(line),
            down: None,
            backend_closed,
        };
        let problem = match client.xclient(&attributes, &helo).await {
            Ok(XclientOutcome::Accepted) => return Ok(()),
            // The backend is closing the session: no use forwarding without
            // XCLIENT on it, whatever `xclient=` says.
            Ok(XclientOutcome::Refused(reply)) if reply.code() == 421 => {
                let line = format!("XCLIENT failed: the backend is closing the session: {reply}");
                return Err(failed(unavailable(), line, true));
            }
            Ok(XclientOutcome::NotOffered) => "the backend does not offer XCLIENT".to_string(),
            Ok(XclientOutcome::Refused(reply)) => format!("the backend refused XCLIENT: {reply}"),
            Err(e) => {
                let closed = matches!(e.kind(), ClientErrorKind::Closed | ClientErrorKind::Io(_));
                return Err(failed(
                    failure_reply(&e),
                    format!("XCLIENT failed: {e}"),
                    closed,
                ));
            }
        };
        if policy == XclientPolicy::Required {
            return Err(failed(
                xclient_missing(),
                format!(
                    "not forwarding: {problem} (smtp_forward.ini xclient=required; add relay-in's address to Postfix smtpd_authorized_xclient_hosts)"
                ),
                false,
            ));
        }
        warn!(conn = %session.conn_id, backend = %key, "forwarding without the client's address: {problem} (xclient=optional)");
        Ok(())
    }
}

/// The MAIL parameters passed to the backend: each only if the backend offers
/// its extension (DSN's `RET`/`ENVID` included).
pub fn mail_options(envelope: &smtp_protocol::session::Envelope, size: u64) -> MailOptions {
    MailOptions {
        size: Some(size),
        smtputf8: envelope.params.smtputf8,
        eight_bit_mime: envelope.params.body == Some(smtp_protocol::command::Body::EightBitMime),
        ret: envelope.params.ret,
        envid: envelope.params.envid.clone(),
        // relay-in does not offer REQUIRETLS, so no sender asked for it.
        requiretls: false,
    }
}

/// The transaction's recipients with their DSN parameters, which the client
/// sends on only to a backend that offers DSN.
pub fn dsn_recipients(envelope: &smtp_protocol::session::Envelope) -> Vec<DsnRecipient> {
    envelope
        .recipients
        .iter()
        .enumerate()
        .map(|(index, path)| {
            let params = envelope.params_of(index);
            DsnRecipient {
                path: path.clone(),
                notify: params.notify,
                orcpt: params.orcpt,
            }
        })
        .collect()
}
