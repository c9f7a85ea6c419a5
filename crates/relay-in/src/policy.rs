//! relay-in's decisions: which recipients to accept, and forwarding each
//! message to the backend in `queue` or `live` mode.

use std::path::Path;
use std::sync::{Arc, RwLock};

use smtp_core::config::{ConfigDir, Plugins};

use smtp_core::message::Message;
use smtp_core::policy::{ConnectionPolicy, MailPolicy};
use smtp_protocol::address::{ForwardPath, ReversePath};
use smtp_protocol::command::{MailParams, RcptParams};
use smtp_protocol::reply::{EnhancedCode, Reply};
use smtp_protocol::session::{ClientInfo, Envelope, SessionInfo, Verdict};
use tracing::{error, info, warn};

use crate::backup::{self, BackupSpool, KeepError};
use crate::config::{DomainSelector, ForwardMode, ForwardSettings, LocalDomains, RelayInSettings};
use crate::forward::{self, Backend, Forwarder, RouteKey};
use crate::recipients::{self, Refusal};
use crate::reuse::KeptBackend;
use smtp_core::client::DsnRecipient;

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
    forwarder: Arc<Forwarder>,
    /// The backup spool with `mode=spool`; opened once at start (a reload
    /// cannot move it).
    backup: Option<Arc<BackupSpool>>,
}

impl RelayIn {
    pub fn new(
        domains: LocalDomains,
        forwarder: Forwarder,
        backup: Option<Arc<BackupSpool>>,
    ) -> Self {
        Self {
            shared: RwLock::new(Arc::new(Shared {
                domains,
                forwarder: Arc::new(forwarder),
                backup,
            })),
        }
    }

    /// The forwarder of the current settings (the backup spool's delivery
    /// takes it anew for every message, so a reload applies to it too).
    pub fn current_forwarder(&self) -> Arc<Forwarder> {
        Arc::clone(&self.current().forwarder)
    }

    /// Re-reads host_list, host_list_regex and smtp_forward.ini (or
    /// smtp_proxy.ini) (SIGHUP), with the plugin list read at startup, as
    /// Haraka loads plugins only when it starts. A file that does not load
    /// keeps the old settings and logs why. The backends' health carries
    /// over; a new backend is probed at once.
    pub fn reload(&self, config: &Path, me: &str, plugins: &Arc<Plugins>) {
        let current = self.current();
        let health = Arc::clone(current.forwarder.health());
        let loaded = ConfigDir::open(config)
            .and_then(|dir| RelayInSettings::load(&dir.with_plugins(Arc::clone(plugins))))
            .map_err(anyhow::Error::from)
            .and_then(|settings| {
                restart_needed(current.forwarder.settings(), &settings.forward);
                let forwarder = Forwarder::new(me, settings.forward, &health)?;
                Ok(Shared {
                    domains: settings.local_domains,
                    forwarder: Arc::new(forwarder),
                    backup: current.backup.clone(),
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

/// Warns about the changes of smtp_forward.ini that a reload cannot apply:
/// the daemon's role and its spool are set up once, at start.
fn restart_needed(old: &ForwardSettings, new: &ForwardSettings) {
    let spool_role = |s: &ForwardSettings| s.mode == ForwardMode::Spool;
    if spool_role(old) != spool_role(new) || (spool_role(new) && old.spool != new.spool) {
        warn!(
            "smtp_forward.ini: mode=spool and the spool_* settings take effect at the next restart; the running spool keeps its settings"
        );
    }
    if old.probe_interval != new.probe_interval {
        warn!("smtp_forward.ini: probe_interval takes effect at the next restart");
    }
}

/// One client connection: the route its transaction is bound to, in live
/// mode the backend session opened for it, and between transactions the
/// session kept for the client's next message.
pub struct RelayInConnection {
    shared: Arc<Shared>,
    route: Option<RouteKey>,
    /// Boxed: a backend session is about 600 bytes, which every idle
    /// connection's task carried inline (BENCHMARKS.md, issue 19).
    live: Option<Box<Backend>>,
    kept: KeptBackend,
    /// `mode=spool`: this transaction goes to the backup spool (decided at
    /// its first recipient, while the backend was away).
    spooling: bool,
}

/// Why live mode could not open the transaction with the backend.
enum LiveRefusal {
    /// No session could be set up (unreachable, TLS, AUTH, XCLIENT, 421):
    /// with `mode=spool` the spool takes over.
    Away(Reply),
    /// The backend answered MAIL FROM with a refusal: its verdict.
    Verdict(Reply),
}

impl LiveRefusal {
    fn reply(self) -> Reply {
        match self {
            LiveRefusal::Away(reply) | LiveRefusal::Verdict(reply) => reply,
        }
    }
}

impl MailPolicy for RelayIn {
    type Connection = RelayInConnection;

    fn connect(&self, _client: &ClientInfo) -> RelayInConnection {
        RelayInConnection {
            shared: self.current(),
            route: None,
            live: None,
            kept: KeptBackend::default(),
            spooling: false,
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
pub fn selector(selector: DomainSelector, from: &ReversePath, rcpt: &ForwardPath) -> String {
    match (selector, rcpt, from) {
        (DomainSelector::MailFrom, _, ReversePath::Mailbox(m)) => m.to_string(),
        (DomainSelector::MailFrom, _, ReversePath::Null) => String::new(),
        (DomainSelector::RcptTo, ForwardPath::Mailbox(m), _) => m.to_string(),
        (DomainSelector::RcptTo, ForwardPath::Postmaster(_), _) => String::new(),
    }
}

impl RelayInConnection {
    /// Queue mode opens the backend session at the first accepted
    /// recipient, while the client sends the rest of its envelope and its
    /// message (`reuse`): only MAIL, RCPT, DATA and the content are left for
    /// after its final dot. Live mode opens it at the first
    /// recipient anyway; spool mode must decide at each recipient whether
    /// the backend is there.
    fn opens_early(&self) -> bool {
        self.shared.forwarder.settings().mode == ForwardMode::Queue && self.shared.backup.is_none()
    }

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
    ) -> Result<&mut Backend, LiveRefusal> {
        if self.live.is_none() {
            let mut reused = self.kept.take_for(key, session);
            let options = forward::mail_options(envelope, 0);
            let (backend, mail) = loop {
                let (mut backend, was_kept) = match reused.take() {
                    Some(backend) => (backend, true),
                    None => match self.shared.forwarder.open(selector, session).await {
                        Ok(backend) => (backend, false),
                        Err(reply) => return Err(LiveRefusal::Away(reply)),
                    },
                };
                let mail = backend.mail_from(&envelope.from, options.clone()).await;
                if was_kept && backend.closed_while_kept(session, mail.as_ref()) {
                    backend.abandon();
                    continue;
                }
                match mail {
                    Ok(mail) => break (backend, mail),
                    Err(e) => {
                        warn!(conn = %session.conn_id, backend = %key, "backend MAIL failed: {e}");
                        return Err(LiveRefusal::Away(forward::failure_reply(&e)));
                    }
                }
            };
            if !mail.is_positive() {
                if mail.code() == 421 {
                    backend.abandon();
                    return Err(LiveRefusal::Away(mail));
                }
                self.kept.keep(backend);
                return Err(LiveRefusal::Verdict(mail));
            }
            self.live = Some(Box::new(backend));
        }
        Ok(self.live.as_deref_mut().expect("just opened"))
    }
}

impl RelayInConnection {
    /// `mode=spool`: live while the backend answers, recording what it
    /// accepts; the spool for verified recipients while it is away.
    async fn rcpt_spool_mode(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        rcpt: &DsnRecipient,
        selector: &str,
        key: RouteKey,
        backup: &BackupSpool,
    ) -> Verdict {
        let DsnRecipient {
            path: rcpt_path, ..
        } = rcpt;
        if self.spooling {
            return self.spool_recipient(session, rcpt_path, key, backup);
        }
        if self.live.is_none() && self.shared.forwarder.backend_down(selector) {
            return self.spool_recipient(session, rcpt_path, key, backup);
        }
        let backend = match self.live_backend(session, envelope, selector, &key).await {
            Ok(backend) => backend,
            // Only a transaction with nothing accepted live yet may switch.
            Err(LiveRefusal::Away(_)) if envelope.recipients.is_empty() => {
                return self.spool_recipient(session, rcpt_path, key, backup);
            }
            Err(refusal) => return Verdict::Reject(refusal.reply()),
        };
        let address = backup::stored_recipient(rcpt_path);
        match backend.rcpt_to(rcpt).await {
            Ok(reply) if reply.is_positive() => backup.verified().record(&address),
            Ok(reply) => {
                if reply.is_permanent() && backup.verified().forget(&address) {
                    info!(conn = %session.conn_id, rcpt = %rcpt_path, "recipient no longer verified: the backend refused it: {reply}");
                }
                return Verdict::Reject(reply);
            }
            Err(reply) => return Verdict::Reject(reply),
        }
        self.route = Some(key);
        Verdict::accept()
    }

    /// The backend is away: a recipient it accepted within `verified_ttl`
    /// is taken for the spool, any other deferred (never accept what might
    /// bounce).
    fn spool_recipient(
        &mut self,
        session: &SessionInfo,
        rcpt: &ForwardPath,
        key: RouteKey,
        backup: &BackupSpool,
    ) -> Verdict {
        if !backup
            .verified()
            .is_verified(&backup::stored_recipient(rcpt))
        {
            info!(conn = %session.conn_id, client = %session.client.peer.ip(), rcpt = %rcpt, backend = %key, "recipient deferred: the backend is away and never accepted this recipient (backup spool)");
            return Verdict::Reject(forward::unavailable());
        }
        if !backup.has_room_for(0) {
            warn!(conn = %session.conn_id, rcpt = %rcpt, "recipient deferred: the backup spool is full (spool_max_messages / spool_max_bytes)");
            return Verdict::Reject(backup::spool_full());
        }
        self.spooling = true;
        self.route = Some(key);
        Verdict::accept()
    }
}

/// Writes a transaction taken while the backend was away to the spool.
async fn keep_in_spool(
    backup: &Arc<BackupSpool>,
    session: &SessionInfo,
    envelope: &Envelope,
    message: Message,
) -> Verdict {
    let size = message.len();
    match backup.keep(session, envelope, message).await {
        Ok(id) => {
            info!(conn = %session.conn_id, txn = %envelope.id, queue_id = %id, from = %envelope.from, rcpts = envelope.recipients.len(), size, "message spooled: the backend is away");
            Verdict::Accept(Some(backup::spooled(&id)))
        }
        Err(KeepError::Full { messages, bytes }) => {
            warn!(conn = %session.conn_id, txn = %envelope.id, messages, bytes, size, "message deferred: the backup spool is full");
            Verdict::Reject(backup::spool_full())
        }
        Err(error) => {
            error!(conn = %session.conn_id, txn = %envelope.id, "cannot spool the message: {error}");
            Verdict::Reject(backup::spool_failed())
        }
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
        params: &RcptParams,
    ) -> Verdict {
        // What live and spool mode pass on at once: the DSN parameters too
        // (queue mode sends the envelope's copy after DATA).
        let with_params = || DsnRecipient {
            path: rcpt.clone(),
            notify: params.notify,
            orcpt: params.orcpt.clone(),
        };
        if let Err(refusal) = self.is_local(rcpt) {
            info!(conn = %session.conn_id, client = %session.client.peer.ip(), rcpt = %rcpt, reason = refusal.reason(), "recipient refused");
            return Verdict::Reject(not_ours(rcpt));
        }
        let settings = self.shared.forwarder.settings();
        let selector = selector(settings.domain_selector, &envelope.from, rcpt);
        let key = self.shared.forwarder.route_key(&selector);
        // At the first recipient accepted, not at MAIL: the route is known
        // then, and a client whose every recipient is refused (a common
        // sight on a public MX) costs the backend nothing.
        let open_early_now = envelope.recipients.is_empty() && self.opens_early();
        if !envelope.recipients.is_empty() && self.route.as_ref().is_some_and(|first| *first != key)
        {
            info!(conn = %session.conn_id, rcpt = %rcpt, route = %key, "recipient deferred: its route differs from the transaction's");
            return Verdict::Reject(forward::split_transaction());
        }
        // Before DATA, so that no sender uploads a message that cannot be
        // forwarded, and at once: a backend behind a tunnel that is down
        // would make every sender wait connect_timeout. (A live session
        // already open for this transaction shows it is reachable.)
        if let Some(backup) = self.shared.backup.clone()
            && settings.mode == ForwardMode::Spool
        {
            let rcpt = with_params();
            let spool_mode =
                self.rcpt_spool_mode(session, envelope, &rcpt, &selector, key, &backup);
            return Box::pin(spool_mode).await;
        }
        if self.live.is_none() && self.shared.forwarder.backend_down(&selector) {
            info!(conn = %session.conn_id, rcpt = %rcpt, backend = %key, "recipient deferred: the backend is down");
            return Verdict::Reject(forward::unavailable());
        }
        if settings.mode == ForwardMode::Live {
            // Boxed, as every path of one mode only: inline, each made this
            // future (which smtp-core boxes, hence copies, for every RCPT in
            // every mode) as large as the largest (BENCHMARKS.md, issue 19).
            let opened = Box::pin(self.live_backend(session, envelope, &selector, &key)).await;
            let backend = match opened {
                Ok(backend) => backend,
                Err(refusal) => return Verdict::Reject(refusal.reply()),
            };
            match backend.rcpt_to(&with_params()).await {
                Ok(reply) if reply.is_positive() => {}
                Ok(reply) | Err(reply) => return Verdict::Reject(reply),
            }
        }
        if open_early_now {
            self.kept
                .open_early(&self.shared.forwarder, selector, session);
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
        if std::mem::take(&mut self.spooling)
            && let Some(backup) = self.shared.backup.clone()
        {
            // Boxed: see `rcpt_to`.
            return Box::pin(keep_in_spool(&backup, session, envelope, message)).await;
        }
        let started = std::time::Instant::now();
        let result = match self.live.take() {
            Some(mut backend) => {
                let verdict = Box::pin(backend.finish(session, envelope, &message)).await;
                self.kept.keep(*backend);
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
                match self.kept.opened(&key).await {
                    Err(failure) => Err(self.shared.forwarder.report(failure, &session.conn_id)),
                    Ok(()) => {
                        let early = self.kept.early_exchange(&envelope.id).await;
                        let reused = self.kept.take_for(&key, session);
                        // Boxed: see `rcpt_to`; this future held the
                        // forward twice over, 26 KB in all, before.
                        let forward = self
                            .shared
                            .forwarder
                            .forward(session, envelope, &selector, &message, reused, early);
                        let forwarded = Box::pin(forward).await;
                        if let Some(backend) = forwarded.reusable {
                            self.kept.keep(backend);
                        }
                        forwarded.verdict
                    }
                }
            }
        };
        smtp_core::metrics::metrics().backend_answered(started.elapsed());
        match result {
            Ok(reply) => Verdict::Accept(Some(reply)),
            Err(reply) => Verdict::Reject(reply),
        }
    }

    /// Queue mode: the envelope goes to the backend now, on the session
    /// opened early (or kept), while the message arrives
    /// (`forward/early.rs`), unless the client declared a large message.
    fn data_started(&mut self, session: &SessionInfo, envelope: &Envelope) {
        if !self.opens_early() {
            return;
        }
        let Some(key) = self.route.clone() else {
            return;
        };
        if envelope
            .params
            .size
            .is_some_and(|size| size > forward::EARLY_ENVELOPE_MAX_SIZE)
        {
            return;
        }
        self.kept.begin_transaction(key, session, envelope);
    }

    fn reset(&mut self) {
        self.kept.cancel_transaction();
        self.route = None;
        self.spooling = false;
        if let Some(backend) = self.live.take() {
            (*backend).abandon();
        }
    }

    fn poll_background(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.kept.poll_background(cx)
    }
}
