//! relay-out's decisions: who may relay (an address in relay_acl_allow, or
//! a client that authenticated; see [`crate::submission`]), and taking a
//! message into the queue (durable intake).
//!
//! A message is answered `250 2.0.0 Queued as <id>` only after the spool
//! returned from storing it, i.e. after its data and envelope files and the
//! directory are fsynced; any storage failure (full disk included) answers
//! `451 4.3.0`, so the sender keeps the message and retries. (Haraka answers
//! a permanent 550 there, bouncing mail for a local fault.)
//!
//! Loop protection at intake is the session's: a message with more than
//! connection.ini `max_received` (100) `Received:` headers is refused with
//! `554 5.4.6` before it reaches [`ConnectionPolicy::message`].

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use smtp_core::message::Message;
use smtp_core::policy::{ConnectionPolicy, MailPolicy};
use smtp_protocol::address::{ForwardPath, ReversePath};
use smtp_protocol::command::{Body, MailParams, RcptParams};
use smtp_protocol::reply::{EnhancedCode, Reply};
use smtp_protocol::sasl::{Credentials, SaslMechanism};
use smtp_protocol::session::{AuthVerdict, ClientInfo, Envelope, SessionInfo, Verdict};
use tracing::{error, info};

use crate::acl::RelayAcl;
use crate::config::{DestAction, DestDomains};
use crate::courier::DispatcherHandle;
use crate::requiretls;
use crate::submission::{Submission, missing_headers};
use spool::{QueueId, RecipientState, Spool, SpoolError};

/// relay-out's [`MailPolicy`].
#[derive(Debug)]
pub struct RelayOut {
    acl: Arc<RelayAcl>,
    dest_domains: Option<Arc<DestDomains>>,
    intake: Arc<Intake>,
    submission: Arc<Submission>,
}

/// Where accepted messages go: the spool, then the dispatcher's due list.
#[derive(Debug)]
pub struct Intake {
    pub spool: Spool,
    pub dispatcher: DispatcherHandle,
    /// outbound.ini `received_header`: the text of the `Received: (…);
    /// <date>` line put before each queued message, as Haraka's outbound
    /// adds it; `None` when `disabled`.
    pub received_header: Option<String>,
    /// Our host name, for the `Message-ID` given to submitted mail without one.
    pub me: String,
}

impl RelayOut {
    /// `dest_domains`: relay_dest_domains.ini's actions when relay.ini
    /// `dest_domains` is on.
    pub fn new(
        acl: RelayAcl,
        dest_domains: Option<DestDomains>,
        intake: Intake,
        submission: Arc<Submission>,
    ) -> Self {
        Self {
            acl: Arc::new(acl),
            dest_domains: dest_domains.map(Arc::new),
            intake: Arc::new(intake),
            submission,
        }
    }
}

/// Per-connection state: whether this client's address may relay and
/// whether it came in on a submission listener, decided once.
#[derive(Debug)]
pub struct RelayOutConnection {
    /// In relay_acl_allow (an authenticated session may relay too).
    acl_allowed: bool,
    /// On `submission_port` or `smtps_port`: AUTH (or the ACL) before MAIL.
    submission_listener: bool,
    dest_domains: Option<Arc<DestDomains>>,
    intake: Arc<Intake>,
    submission: Arc<Submission>,
}

impl MailPolicy for RelayOut {
    type Connection = RelayOutConnection;

    fn connect(&self, client: &ClientInfo) -> RelayOutConnection {
        RelayOutConnection {
            acl_allowed: self.acl.allows(client.peer.ip()),
            submission_listener: self.submission.is_submission_listener(client.local),
            dest_domains: self.dest_domains.clone(),
            intake: Arc::clone(&self.intake),
            submission: Arc::clone(&self.submission),
        }
    }

    /// The home server (relay_acl_allow) is trusted to relay: no pregreet
    /// wait (each of its connections would otherwise wait `early_talker.ini`
    /// `pause` once a day), and no per-address cap (its Postfix opens up to
    /// `default_destination_concurrency_limit` sessions, all from one
    /// address).
    fn trusts(&self, client: std::net::IpAddr) -> bool {
        self.acl.allows(client)
    }

    /// The courier keeps REQUIRETLS's promise (see [`crate::requiretls`]).
    fn offers_requiretls(&self) -> bool {
        true
    }
}

impl RelayOutConnection {
    fn may_relay(&self, session: &SessionInfo) -> bool {
        self.acl_allowed || session.authenticated.is_some()
    }

    /// RCPT from a client that may not relay: refused, unless relay.ini
    /// `dest_domains` is on and relay_dest_domains.ini accepts the
    /// recipient's domain (see [`crate::config::DestDomains`]). Unlike
    /// Haraka, an accepted recipient does not make the rest of the
    /// connection a relaying one: each recipient is judged on its own.
    fn dest_domain_verdict(&self, session: &SessionInfo, rcpt: &ForwardPath) -> Verdict {
        let client = session.client.peer.ip();
        let Some(dest_domains) = &self.dest_domains else {
            info!(conn = %session.conn_id, %client, rcpt = %rcpt, "relay refused: client not in relay_acl_allow and not authenticated");
            return Verdict::Reject(Reply::new(
                550,
                Some(EnhancedCode::new(5, 7, 1)),
                "Relay access denied",
            ));
        };
        let domain = rcpt.mailbox().and_then(|mailbox| mailbox.domain());
        let action = domain.map_or(DestAction::Deny, |domain| {
            dest_domains.action(domain.as_str())
        });
        let text = match action {
            DestAction::Accept => {
                info!(conn = %session.conn_id, %client, rcpt = %rcpt, "recipient accepted: its domain is accepted in relay_dest_domains.ini");
                return Verdict::accept();
            }
            DestAction::Deny => "You are not allowed to relay",
            DestAction::NotAccepted => "Mail for that recipient is not accepted here.",
        };
        info!(conn = %session.conn_id, %client, rcpt = %rcpt, "relay refused: client not in relay_acl_allow and not authenticated, and relay_dest_domains.ini does not accept the recipient's domain");
        Verdict::Reject(Reply::new(550, Some(EnhancedCode::new(5, 7, 1)), text))
    }
}

impl ConnectionPolicy for RelayOutConnection {
    async fn mail_from(
        &mut self,
        session: &SessionInfo,
        from: &ReversePath,
        _params: &MailParams,
    ) -> Verdict {
        let sender_domain = match from {
            ReversePath::Mailbox(mailbox) => mailbox.domain().map(|d| d.as_str().to_owned()),
            ReversePath::Null => None,
        };
        if let Some(refusal) = self
            .submission
            .sender_refusal(session, sender_domain.as_deref())
        {
            info!(conn = %session.conn_id, user = session.authenticated.as_deref().unwrap_or_default(), from = %from, "MAIL refused: not in the authenticated user's domain (auth_flat_file.ini constrain_sender)");
            return Verdict::Reject(refusal);
        }
        if self.submission_listener && !self.may_relay(session) {
            info!(conn = %session.conn_id, client = %session.client.peer.ip(), local = %session.client.local, "MAIL refused on a submission listener: not authenticated");
            return Verdict::Reject(Reply::new(
                550,
                Some(EnhancedCode::new(5, 7, 0)),
                "Authentication required",
            ));
        }
        Verdict::accept()
    }

    async fn rcpt_to(
        &mut self,
        session: &SessionInfo,
        _envelope: &Envelope,
        rcpt: &ForwardPath,
        _params: &RcptParams,
    ) -> Verdict {
        if !self.may_relay(session) {
            return self.dest_domain_verdict(session, rcpt);
        }
        if rcpt.mailbox().is_none() {
            // relay-out has no local mailboxes: a bare <postmaster> has
            // nowhere to go.
            return Verdict::Reject(Reply::new(
                550,
                Some(EnhancedCode::new(5, 1, 1)),
                "relay-out only relays to addresses with a domain",
            ));
        }
        Verdict::accept()
    }

    fn auth_mechanisms(&self, session: &SessionInfo) -> Vec<SaslMechanism> {
        self.submission.mechanisms(session)
    }

    async fn authenticate(
        &mut self,
        session: &SessionInfo,
        credentials: &Credentials,
    ) -> AuthVerdict {
        self.submission.authenticate(session, credentials).await
    }

    async fn message(
        &mut self,
        session: &SessionInfo,
        envelope: &Envelope,
        message: Message,
    ) -> Verdict {
        let spool = self.intake.spool.clone();
        // A spare's id when one is ready: the message is then written into
        // that file, one data sync and no new name to sync.
        let id = spool.new_id();
        let queued = queued_envelope(session, envelope, SystemTime::now(), id.clone());
        let size = message.len();
        let outbound_received = self.intake.received_header.as_ref().map(|text| {
            format!(
                "Received: ({text}); {}\r\n",
                chrono::Local::now().to_rfc2822()
            )
        });
        // Direct submission (AUTH) gets a Message-ID and Date if it has
        // none; mail relayed for an ACL address is never touched.
        let completion = session.authenticated.is_some().then(|| {
            (
                format!("<{id}@{}>", self.intake.me),
                chrono::Local::now().to_rfc2822(),
            )
        });
        // Large messages arrive in a temporary file: copied into the spool
        // from there, never held in memory whole.
        let stored = tokio::task::spawn_blocking(move || {
            let read_failure = |source| SpoolError::Io {
                operation: "read back the received message",
                path: spool.dir().to_path_buf(),
                source,
            };
            let mut queued = queued;
            // RFC 8689 §4.1: with REQUIRETLS the header is ignored.
            queued.tls_required_no = !queued.requiretls
                && requiretls::says_tls_not_required(&message).map_err(read_failure)?;
            let mut reader = message.reader().map_err(read_failure)?;
            let head = match &completion {
                Some((message_id, date)) => {
                    missing_headers::complete_head(&mut reader, message_id, date)
                        .map_err(read_failure)?
                }
                None => Vec::new(),
            };
            let first = outbound_received.unwrap_or_default();
            let mut reader = Read::chain(Read::chain(first.as_bytes(), head.as_slice()), reader);
            spool.store_from(&queued, &mut reader).map(|_| queued)
        })
        .await;
        match stored {
            Ok(Ok(queued)) => {
                info!(
                    conn = %session.conn_id,
                    txn = %envelope.id,
                    queue_id = %id,
                    from = %envelope.from,
                    rcpts = queued.recipients.len(),
                    size,
                    requiretls = queued.requiretls,
                    tls_required_no = queued.tls_required_no,
                    "queued"
                );
                self.intake.dispatcher.queued(queued);
                Verdict::Accept(Some(Reply::new(
                    250,
                    Some(EnhancedCode::new(2, 0, 0)),
                    format!("Queued as {id}"),
                )))
            }
            Ok(Err(failure)) => {
                error!(conn = %session.conn_id, txn = %envelope.id, error = %failure, "cannot queue the message");
                storage_failure()
            }
            Err(failure) => {
                error!(conn = %session.conn_id, txn = %envelope.id, error = %failure, "cannot queue the message");
                storage_failure()
            }
        }
    }
}

/// The queue envelope for an accepted transaction, every recipient due now.
fn queued_envelope(
    session: &SessionInfo,
    envelope: &Envelope,
    now: SystemTime,
    id: QueueId,
) -> spool::Envelope {
    let sender = match &envelope.from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(mailbox) => mailbox.to_string(),
    };
    let helo = session
        .greeting
        .as_ref()
        .map_or("-", |greeting| greeting.name.as_str());
    let mut queued = spool::Envelope {
        id,
        arrival: now,
        sender,
        recipients: envelope
            .recipients
            .iter()
            .enumerate()
            .filter_map(|(index, rcpt)| Some((index, rcpt.mailbox()?)))
            .map(|(index, mailbox)| {
                let mut state = RecipientState::new(mailbox.to_string(), now);
                dsn::request::store_rcpt(&envelope.params_of(index), &mut state);
                state
            })
            .collect(),
        client: Some(match &session.authenticated {
            Some(user) => format!("{} helo={helo} auth={user}", session.client.peer.ip()),
            None => format!("{} helo={helo}", session.client.peer.ip()),
        }),
        smtputf8: envelope.params.smtputf8,
        eight_bit_mime: envelope.params.body == Some(Body::EightBitMime),
        ret: None,
        envid: None,
        delay_warned: None,
        requiretls: envelope.params.requiretls,
        tls_required_no: false,
        extras: spool::NoExtras {},
    };
    dsn::request::store_mail(&envelope.params, &mut queued);
    queued
}

fn storage_failure() -> Verdict {
    Verdict::Reject(Reply::new(
        451,
        Some(EnhancedCode::new(4, 3, 0)),
        "Cannot queue the message now, try again later",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_core::config::{ConfigDir, CoreSettings};
    use smtp_protocol::address::{parse_forward_path, parse_reverse_path};
    use smtp_protocol::session::{ClientInfo, ClientName, Greeting, HeloVerb};

    fn session() -> SessionInfo {
        SessionInfo {
            conn_id: "C1".into(),
            client: ClientInfo {
                peer: "10.0.0.2:40000".parse().unwrap(),
                local: "10.0.0.1:2526".parse().unwrap(),
                name: ClientName::Unavailable,
                proxy: None,
            },
            greeting: Some(Greeting {
                verb: HeloVerb::Ehlo,
                name: "mailcow.lan".into(),
            }),
            tls: None,
            authenticated: None,
        }
    }

    fn transaction(from: &str, rcpts: &[&str], params: MailParams) -> Envelope {
        Envelope {
            id: "C1.1".into(),
            from: parse_reverse_path(from).unwrap(),
            params,
            recipients: rcpts
                .iter()
                .map(|r| parse_forward_path(r).unwrap())
                .collect(),
            recipient_params: Vec::new(),
        }
    }

    #[test]
    fn the_queue_envelope_keeps_the_transaction_in_wire_form() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let params = MailParams {
            body: Some(Body::EightBitMime),
            smtputf8: true,
            ..MailParams::default()
        };
        let txn = transaction(
            "<Alice@Example.ORG>",
            &["<bob@x.test>", "<Carol@Y.test>"],
            params,
        );
        let queued = queued_envelope(&session(), &txn, now, QueueId::generate_at(now));
        assert_eq!(queued.sender, "Alice@Example.ORG");
        let rcpts: Vec<&str> = queued
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(rcpts, ["bob@x.test", "Carol@Y.test"]);
        assert!(
            queued
                .recipients
                .iter()
                .all(|r| r.next_attempt == Some(now))
        );
        assert_eq!(queued.arrival, now);
        assert_eq!(queued.client.as_deref(), Some("10.0.0.2 helo=mailcow.lan"));
        assert!(queued.smtputf8 && queued.eight_bit_mime);

        let bounce = queued_envelope(
            &session(),
            &transaction("<>", &["<a@b.test>"], MailParams::default()),
            now,
            QueueId::generate_at(now),
        );
        assert_eq!(bounce.sender, "", "the null sender stays null");
        assert!(!bounce.smtputf8 && !bounce.eight_bit_mime);
    }

    /// relay-out's policy for a config directory holding `files`, with a
    /// spool in `queue`.
    fn policy(files: &[(&str, &str)], queue: &std::path::Path) -> RelayOut {
        let temp = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(temp.path().join(name), text).expect("write");
        }
        let dir = ConfigDir::open(temp.path())
            .expect("open")
            .with_environment(Vec::<(String, String)>::new());
        let core = CoreSettings::load(&dir).expect("core");
        let settings = crate::config::RelayOutSettings::load(&dir).expect("settings");
        let acl = RelayAcl::new(&settings, &core.listen).expect("acl");
        let (dispatcher, _inbox) = crate::courier::channel();
        let intake = Intake {
            spool: crate::queue::open(queue).expect("spool"),
            dispatcher,
            received_header: settings.outbound.received_header.clone(),
            me: core.me.clone(),
        };
        RelayOut::new(
            acl,
            settings.dest_domains,
            intake,
            Arc::new(Submission::new(settings.auth_users, &core)),
        )
    }

    fn client_session(peer: &str, local: &str, user: Option<&str>) -> SessionInfo {
        let mut session = session();
        session.client.peer = peer.parse().unwrap();
        session.client.local = local.parse().unwrap();
        session.authenticated = user.map(str::to_owned);
        session
    }

    fn code(verdict: &Verdict) -> u16 {
        match verdict {
            Verdict::Accept(_) => 250,
            Verdict::Reject(reply) => reply.code(),
        }
    }

    #[tokio::test]
    async fn submission_listeners_need_auth_or_the_acl_and_auth_relays_anywhere() {
        let queue = tempfile::tempdir().expect("tempdir");
        let policy = policy(
            &[
                ("smtp.ini", "listen=127.0.0.1:2525,127.0.0.1:587\n"),
                ("relay_acl_allow", "10.0.0.2/32\n"),
                ("auth_flat_file.ini", "[users]\nalice=pw\n"),
            ],
            queue.path(),
        );
        let from = parse_reverse_path("<a@origin.test>").unwrap();
        let rcpt = parse_forward_path("<u@elsewhere.test>").unwrap();
        let envelope = transaction("<a@origin.test>", &[], MailParams::default());
        // (client, listener, authenticated user, MAIL code, RCPT code)
        let cases = [
            ("127.0.0.9:4000", "127.0.0.1:587", None, 550, 550),
            ("127.0.0.9:4000", "127.0.0.1:587", Some("alice"), 250, 250),
            ("10.0.0.2:4000", "127.0.0.1:587", None, 250, 250),
            ("127.0.0.9:4000", "127.0.0.1:2525", None, 250, 550),
            ("127.0.0.9:4000", "127.0.0.1:2525", Some("alice"), 250, 250),
        ];
        for (peer, local, user, mail, rcpt_code) in cases {
            let session = client_session(peer, local, user);
            let mut connection = policy.connect(&session.client);
            let verdict = connection
                .mail_from(&session, &from, &MailParams::default())
                .await;
            assert_eq!(code(&verdict), mail, "MAIL {peer} -> {local} as {user:?}");
            if let Verdict::Reject(reply) = &verdict {
                assert_eq!(reply.to_string(), "550 5.7.0 Authentication required");
            }
            let verdict = connection
                .rcpt_to(&session, &envelope, &rcpt, &RcptParams::default())
                .await;
            assert_eq!(
                code(&verdict),
                rcpt_code,
                "RCPT {peer} -> {local} as {user:?}"
            );
        }
    }

    /// relay.ini `dest_domains=true`: a client outside the ACL gets each
    /// recipient judged by its domain, with Haraka's replies; accepting one
    /// does not open relaying for the next (Haraka's would); the ACL client
    /// and an authenticated one relay anywhere.
    #[tokio::test]
    async fn dest_domains_decide_rcpt_for_clients_that_may_not_relay() {
        let queue = tempfile::tempdir().expect("tempdir");
        let policy = policy(
            &[
                ("smtp.ini", "listen=127.0.0.1:2525\n"),
                ("relay_acl_allow", "10.0.0.2/32\n"),
                ("relay.ini", "[relay]\ndest_domains=true\nall=true\n"),
                (
                    "relay_dest_domains.ini",
                    "[domains]\naccept.test={\"action\":\"accept\"}\ncontinue.test={\"action\":\"continue\"}\n\
                     deny.test={\"action\":\"deny\"}\nodd.test={\"action\":\"drop\"}\n",
                ),
            ],
            queue.path(),
        );
        let envelope = transaction("<a@origin.test>", &[], MailParams::default());
        let outsider = client_session("127.0.0.9:4000", "127.0.0.1:2525", None);
        let mut connection = policy.connect(&outsider.client);
        for (rcpt, reply) in [
            ("<u@Accept.Test>", None),
            (
                "<u@elsewhere.test>",
                Some("550 5.7.1 You are not allowed to relay"),
            ),
            ("<u@continue.test>", None),
            (
                "<u@deny.test>",
                Some("550 5.7.1 You are not allowed to relay"),
            ),
            (
                "<u@odd.test>",
                Some("550 5.7.1 Mail for that recipient is not accepted here."),
            ),
            (
                "<u@[127.0.0.1]>",
                Some("550 5.7.1 You are not allowed to relay"),
            ),
            (
                "<postmaster>",
                Some("550 5.7.1 You are not allowed to relay"),
            ),
        ] {
            let verdict = connection
                .rcpt_to(
                    &outsider,
                    &envelope,
                    &parse_forward_path(rcpt).unwrap(),
                    &RcptParams::default(),
                )
                .await;
            match (reply, &verdict) {
                (None, Verdict::Accept(_)) => {}
                (Some(text), Verdict::Reject(got)) => assert_eq!(got.to_string(), text, "{rcpt}"),
                _ => panic!("{rcpt}: {verdict:?}"),
            }
        }
        for (peer, user) in [("10.0.0.2:4000", None), ("127.0.0.9:4000", Some("alice"))] {
            let session = client_session(peer, "127.0.0.1:2525", user);
            let mut connection = policy.connect(&session.client);
            let rcpt = parse_forward_path("<u@elsewhere.test>").unwrap();
            let verdict = connection
                .rcpt_to(&session, &envelope, &rcpt, &RcptParams::default())
                .await;
            assert_eq!(code(&verdict), 250, "{peer} {user:?}");
        }
    }

    #[test]
    fn the_queue_envelope_names_the_authenticated_user() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let mut session = session();
        session.authenticated = Some("alice".into());
        let txn = transaction("<a@origin.test>", &["<b@x.test>"], MailParams::default());
        let queued = queued_envelope(&session, &txn, now, QueueId::generate_at(now));
        assert_eq!(
            queued.client.as_deref(),
            Some("10.0.0.2 helo=mailcow.lan auth=alice")
        );
    }
}
