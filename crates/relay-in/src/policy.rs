//! relay-in's decisions: which recipients to accept, and forwarding each
//! message to the backend in `queue` or `live` mode.

use std::path::Path;
use std::sync::{Arc, RwLock};

use smtp_core::config::{ConfigDir, Plugins};

use smtp_core::message::Message;
use smtp_core::policy::{ConnectionPolicy, MailPolicy};
use smtp_protocol::address::{ForwardPath, ReversePath};
use smtp_protocol::command::MailParams;
use smtp_protocol::reply::{EnhancedCode, Reply};
use smtp_protocol::session::{ClientInfo, Envelope, SessionInfo, Verdict};
use tracing::{error, info, warn};

use crate::config::{DomainSelector, ForwardMode, LocalDomains, RelayInSettings};
use crate::forward::{self, Backend, Forwarder, RouteKey};
use crate::recipients::{self, Refusal};
use crate::reuse::KeptBackend;

/// relay-in's [`MailPolicy`]: hands each connection the current settings.
/// SIGHUP swaps them; connections already open keep the ones they started
/// with, so no transaction sees two different routes.
#[derive(Debug)]
pub struct RelayIn {
    shared: RwLock<Arc<Shared>>,
}

/// What every connection reads.
#[derive(Debug)]
struct Shared {
    domains: LocalDomains,
    forwarder: Forwarder,
}

impl RelayIn {
    pub fn new(domains: LocalDomains, forwarder: Forwarder) -> Self {
        Self {
            shared: RwLock::new(Arc::new(Shared { domains, forwarder })),
        }
    }

    /// Re-reads host_list, host_list_regex and smtp_forward.ini (or
    /// smtp_proxy.ini) (SIGHUP), with the plugin list read at startup, as
    /// Haraka loads plugins only when it starts. A file that does not load
    /// keeps the old settings and logs why. The backends' health carries
    /// over; a new backend is probed at once.
    pub fn reload(&self, config: &Path, me: &str, plugins: &Arc<Plugins>) {
        let health = Arc::clone(self.current().forwarder.health());
        let loaded = ConfigDir::open(config)
            .and_then(|dir| RelayInSettings::load(&dir.with_plugins(Arc::clone(plugins))))
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                let forwarder = Forwarder::new(me, settings.forward, &health)?;
                Ok(Shared {
                    domains: settings.local_domains,
                    forwarder,
                })
            });
        match loaded {
            Ok(shared) => {
                health.watch(shared.forwarder.backends());
                *self.shared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(shared);
                info!("reloaded host_list, host_list_regex and smtp_forward.ini");
            }
            Err(e) => error!("reload failed, keeping the previous settings: {e:#}"),
        }
    }

    fn current(&self) -> Arc<Shared> {
        Arc::clone(&self.shared.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One client connection: the route its transaction is bound to, in live
/// mode the backend session opened for it, and between transactions the
/// session kept for the client's next message.
pub struct RelayInConnection {
    shared: Arc<Shared>,
    route: Option<RouteKey>,
    live: Option<Backend>,
    kept: KeptBackend,
}

impl MailPolicy for RelayIn {
    type Connection = RelayInConnection;

    fn connect(&self, _client: &ClientInfo) -> RelayInConnection {
        RelayInConnection {
            shared: self.current(),
            route: None,
            live: None,
            kept: KeptBackend::default(),
        }
    }
}

/// Haraka's text, so existing log filters keep working.
fn not_ours(rcpt: &ForwardPath) -> Reply {
    Reply::new(
        550,
        Some(EnhancedCode::new(5, 7, 1)),
        format!("I cannot deliver mail for {rcpt}"),
    )
}

/// The address `domain_selector` routes by.
fn selector(selector: DomainSelector, from: &ReversePath, rcpt: &ForwardPath) -> String {
    match (selector, rcpt, from) {
        (DomainSelector::MailFrom, _, ReversePath::Mailbox(m)) => m.to_string(),
        (DomainSelector::MailFrom, _, ReversePath::Null) => String::new(),
        (DomainSelector::RcptTo, ForwardPath::Mailbox(m), _) => m.to_string(),
        (DomainSelector::RcptTo, ForwardPath::Postmaster(_), _) => String::new(),
    }
}

impl RelayInConnection {
    fn is_local(&self, rcpt: &ForwardPath) -> Result<(), Refusal> {
        let result = recipients::check(&self.shared.domains, rcpt);
        if result == Err(Refusal::NotLocal) && self.shared.forwarder.settings().check_recipient {
            let domain = match rcpt {
                ForwardPath::Mailbox(m) => m.domain().map(|d| d.as_str().to_string()),
                ForwardPath::Postmaster(_) => None,
            };
            if domain.is_some_and(|d| self.shared.forwarder.has_domain_route(&d)) {
                return Ok(());
            }
        }
        result
    }

    /// Live mode: the backend session for this transaction, with its MAIL
    /// FROM sent on the first recipient (the route is known then): the
    /// client's kept session if it serves this route, else a new one.
    async fn live_backend(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        selector: &str,
        key: &RouteKey,
    ) -> Result<&mut Backend, Reply> {
        if self.live.is_none() {
            let mut reused = self.kept.take_for(key, session);
            let options = forward::mail_options(envelope, 0);
            let (backend, mail) = loop {
                let (mut backend, was_kept) = match reused.take() {
                    Some(backend) => (backend, true),
                    None => (self.shared.forwarder.open(selector, session).await?, false),
                };
                let mail = backend.mail_from(&envelope.from, options).await;
                if was_kept && backend.closed_while_kept(session, mail.as_ref()) {
                    backend.abandon();
                    continue;
                }
                match mail {
                    Ok(mail) => break (backend, mail),
                    Err(e) => {
                        warn!(conn = %session.conn_id, backend = %key, "backend MAIL failed: {e}");
                        return Err(forward::failure_reply(&e));
                    }
                }
            };
            if !mail.is_positive() {
                if mail.code() == 421 {
                    backend.abandon();
                } else {
                    self.kept.keep(backend);
                }
                return Err(mail);
            }
            self.live = Some(backend);
        }
        Ok(self.live.as_mut().expect("just opened"))
    }
}

impl ConnectionPolicy for RelayInConnection {
    async fn mail_from(
        &mut self,
        session: &SessionInfo,
        from: &ReversePath,
        _params: &MailParams,
    ) -> Verdict {
        let settings = self.shared.forwarder.settings();
        if let ReversePath::Mailbox(mailbox) = from
            && settings.check_sender
            && let Some(domain) = mailbox.domain()
            && settings.has_domain_section(domain.as_str())
        {
            info!(conn = %session.conn_id, client = %session.client.peer.ip(), from = %from, "sender refused: its domain has an smtp_forward.ini section (check_sender)");
            return Verdict::Reject(forward::spoofed_sender());
        }
        Verdict::accept()
    }

    async fn rcpt_to(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        rcpt: &ForwardPath,
    ) -> Verdict {
        if let Err(refusal) = self.is_local(rcpt) {
            info!(conn = %session.conn_id, client = %session.client.peer.ip(), rcpt = %rcpt, reason = refusal.reason(), "recipient refused");
            return Verdict::Reject(not_ours(rcpt));
        }
        let settings = self.shared.forwarder.settings();
        let selector = selector(settings.domain_selector, &envelope.from, rcpt);
        let key = self.shared.forwarder.route_key(&selector);
        if !envelope.recipients.is_empty() && self.route.as_ref().is_some_and(|first| *first != key)
        {
            info!(conn = %session.conn_id, rcpt = %rcpt, route = %key, "recipient deferred: its route differs from the transaction's");
            return Verdict::Reject(forward::split_transaction());
        }
        // Before DATA, so that no sender uploads a message that cannot be
        // forwarded, and at once: a backend behind a tunnel that is down
        // would make every sender wait connect_timeout. (A live session
        // already open for this transaction shows it is reachable.)
        if self.live.is_none() && self.shared.forwarder.backend_down(&selector) {
            info!(conn = %session.conn_id, rcpt = %rcpt, backend = %key, "recipient deferred: the backend is down");
            return Verdict::Reject(forward::unavailable());
        }
        if settings.mode == ForwardMode::Live {
            let backend = match self.live_backend(session, envelope, &selector, &key).await {
                Ok(backend) => backend,
                Err(reply) => return Verdict::Reject(reply),
            };
            match backend.rcpt_to(rcpt).await {
                Ok(reply) if reply.is_positive() => {}
                Ok(reply) | Err(reply) => return Verdict::Reject(reply),
            }
        }
        self.route = Some(key);
        Verdict::accept()
    }

    async fn message(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        message: Message,
    ) -> Verdict {
        self.route = None;
        let started = std::time::Instant::now();
        let result = match self.live.take() {
            Some(mut backend) => {
                let verdict = backend.finish(session, envelope, &message).await;
                self.kept.keep(backend);
                verdict
            }
            None => {
                let settings = self.shared.forwarder.settings();
                let first = envelope
                    .recipients
                    .first()
                    .cloned()
                    .unwrap_or(ForwardPath::Postmaster("postmaster".into()));
                let selector = selector(settings.domain_selector, &envelope.from, &first);
                let key = self.shared.forwarder.route_key(&selector);
                let reused = self.kept.take_for(&key, session);
                let forwarded = self
                    .shared
                    .forwarder
                    .forward(session, envelope, &selector, &message, reused)
                    .await;
                if let Some(backend) = forwarded.reusable {
                    self.kept.keep(backend);
                }
                forwarded.verdict
            }
        };
        smtp_core::metrics::metrics().backend_answered(started.elapsed());
        match result {
            Ok(reply) => Verdict::Accept(Some(reply)),
            Err(reply) => Verdict::Reject(reply),
        }
    }

    fn reset(&mut self) {
        self.route = None;
        if let Some(backend) = self.live.take() {
            backend.abandon();
        }
    }
}
