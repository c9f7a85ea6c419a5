//! What a spooled message keeps of the client that sent it, and the session
//! rebuilt from it for the delivery.
//!
//! It exists because a spooled message reaches the home server hours after
//! its sender left: the backend's checks (SPF, RBLs, rDNS, rspamd) must still
//! see that sender, not relay-in, so the delivery's XCLIENT carries these
//! stored attributes exactly as the live forward would have.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use smtp_protocol::address::{ForwardPath, ReversePath, parse_forward_path, parse_reverse_path};
use smtp_protocol::command::{Body, MailParams};
use smtp_protocol::session::{
    ClientInfo, ClientName, Envelope, Greeting, HeloVerb, SessionInfo, TlsInfo,
};
use spool::{Extras, QueueId, RecipientState};

/// relay-in's own fields in a spool envelope file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolExtras {
    /// The client that sent the message; `None` only in a file written by
    /// hand (then the delivery goes without XCLIENT attributes of a client).
    #[serde(default)]
    pub original_client: Option<OriginalClient>,
}

impl Extras for SpoolExtras {}

/// The sending client as XCLIENT and `Received:` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalClient {
    /// The connection's id in relay-in's log, to follow a message from its
    /// arrival to its delivery.
    pub conn_id: String,
    pub addr: SocketAddr,
    /// The address the client connected to (XCLIENT DESTADDR/DESTPORT).
    pub local: SocketAddr,
    pub name: StoredName,
    /// `EHLO` or `HELO`, and the name given.
    pub helo_verb: String,
    pub helo: Option<String>,
    /// TLS protocol and cipher, when the client used STARTTLS.
    #[serde(default)]
    pub tls: Option<(String, String)>,
    /// The PROXY-protocol proxy the client came through, if any (logs).
    #[serde(default)]
    pub proxy: Option<IpAddr>,
}

/// [`ClientName`] in the file's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "name")]
pub enum StoredName {
    Verified(String),
    Unverified(String),
    Unavailable,
    TempUnavailable,
}

impl OriginalClient {
    pub fn capture(session: &SessionInfo) -> OriginalClient {
        let name = match &session.client.name {
            ClientName::Verified(name) => StoredName::Verified(name.clone()),
            ClientName::Unverified(name) => StoredName::Unverified(name.clone()),
            ClientName::Unavailable => StoredName::Unavailable,
            ClientName::TempUnavailable => StoredName::TempUnavailable,
        };
        let greeting = session.greeting.as_ref();
        OriginalClient {
            conn_id: session.conn_id.clone(),
            addr: session.client.peer,
            local: session.client.local,
            name,
            helo_verb: match greeting.map(|g| g.verb) {
                Some(HeloVerb::Helo) => "HELO".to_owned(),
                _ => "EHLO".to_owned(),
            },
            helo: greeting.map(|g| g.name.clone()),
            tls: session
                .tls
                .as_ref()
                .map(|tls| (tls.protocol.clone(), tls.cipher.clone())),
            proxy: session.client.proxy,
        }
    }

    /// The session the delivery forwards as: the original client's, with a
    /// connection id that names the spooled message.
    pub fn session(&self, id: &QueueId) -> SessionInfo {
        let name = match &self.name {
            StoredName::Verified(name) => ClientName::Verified(name.clone()),
            StoredName::Unverified(name) => ClientName::Unverified(name.clone()),
            StoredName::Unavailable => ClientName::Unavailable,
            StoredName::TempUnavailable => ClientName::TempUnavailable,
        };
        let verb = if self.helo_verb.eq_ignore_ascii_case("HELO") {
            HeloVerb::Helo
        } else {
            HeloVerb::Ehlo
        };
        SessionInfo {
            conn_id: format!("spool-{id}"),
            client: ClientInfo {
                peer: self.addr,
                local: self.local,
                name,
                proxy: self.proxy,
            },
            greeting: self.helo.as_ref().map(|name| Greeting {
                verb,
                name: name.clone(),
            }),
            tls: self.tls.as_ref().map(|(protocol, cipher)| TlsInfo {
                protocol: protocol.clone(),
                cipher: cipher.clone(),
            }),
            authenticated: None,
        }
    }
}

/// A recipient as the spool file writes it: the address without brackets
/// (`postmaster` as the client sent it).
pub fn stored_recipient(rcpt: &ForwardPath) -> String {
    match rcpt {
        ForwardPath::Postmaster(as_sent) => as_sent.clone(),
        ForwardPath::Mailbox(mailbox) => mailbox.to_string(),
    }
}

/// The spool envelope of an accepted transaction, every recipient due now.
pub fn spooled_envelope(
    session: &SessionInfo,
    envelope: &Envelope,
    now: SystemTime,
) -> spool::Envelope<SpoolExtras> {
    let original = OriginalClient::capture(session);
    let mut stored = spool::Envelope {
        id: QueueId::generate_at(now),
        arrival: now,
        sender: match &envelope.from {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(mailbox) => mailbox.to_string(),
        },
        recipients: envelope
            .recipients
            .iter()
            .enumerate()
            .map(|(index, rcpt)| {
                let mut state = RecipientState::new(stored_recipient(rcpt), now);
                dsn::request::store_rcpt(&envelope.params_of(index), &mut state);
                state
            })
            .collect(),
        client: Some(format!(
            "{} helo={}",
            original.addr.ip(),
            original.helo.as_deref().unwrap_or("-")
        )),
        smtputf8: envelope.params.smtputf8,
        eight_bit_mime: envelope.params.body == Some(Body::EightBitMime),
        ret: None,
        envid: None,
        delay_warned: None,
        requiretls: false,
        tls_required_no: false,
        extras: SpoolExtras {
            original_client: Some(original),
        },
    };
    dsn::request::store_mail(&envelope.params, &mut stored);
    stored
}

/// The SMTP transaction to replay for `recipients` of a spooled message.
/// `None` when the file's addresses do not parse (a damaged or hand-edited
/// file: the caller sets the message aside rather than guess).
pub fn replayed_envelope(
    stored: &spool::Envelope<SpoolExtras>,
    recipients_states: &[&RecipientState],
) -> Option<Envelope> {
    let from = parse_reverse_path(&format!("<{}>", stored.sender)).ok()?;
    let recipients = recipients_states
        .iter()
        .map(|state| parse_forward_path(&format!("<{}>", state.address)).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Envelope {
        id: stored.id.to_string(),
        from,
        params: MailParams {
            smtputf8: stored.smtputf8,
            body: stored.eight_bit_mime.then_some(Body::EightBitMime),
            ..dsn::request::mail_params(stored)
        },
        recipients,
        recipient_params: recipients_states
            .iter()
            .map(|state| dsn::request::rcpt_params(state))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionInfo {
        SessionInfo {
            conn_id: "c1".into(),
            client: ClientInfo {
                peer: "192.0.2.5:40000".parse().unwrap(),
                local: "198.51.100.1:25".parse().unwrap(),
                name: ClientName::Unverified("mail.example.net".into()),
                proxy: Some("127.0.0.1".parse().unwrap()),
            },
            greeting: Some(Greeting {
                verb: HeloVerb::Helo,
                name: "mail.example.net".into(),
            }),
            tls: Some(TlsInfo {
                protocol: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
            }),
            authenticated: None,
        }
    }

    #[test]
    fn the_client_survives_the_spool_file() {
        let captured = OriginalClient::capture(&session());
        let json = serde_json::to_string(&captured).unwrap();
        let read: OriginalClient = serde_json::from_str(&json).unwrap();
        assert_eq!(read, captured);
        let id = QueueId::generate();
        let replayed = read.session(&id);
        assert_eq!(replayed.client.peer, session().client.peer);
        assert_eq!(replayed.client.local, session().client.local);
        assert_eq!(replayed.client.name, session().client.name);
        assert_eq!(replayed.greeting, session().greeting);
        assert_eq!(replayed.tls, session().tls);
        assert_eq!(replayed.client.proxy, session().client.proxy);
        assert_eq!(replayed.conn_id, format!("spool-{id}"));
    }

    #[test]
    fn the_transaction_replays_with_its_parameters() {
        use smtp_protocol::command::RcptParams;
        use smtp_protocol::dsn_params::{Envid, Notify, Orcpt, Ret};

        let envelope = Envelope {
            id: "t1".into(),
            from: parse_reverse_path("<a@example.net>").unwrap(),
            params: MailParams {
                smtputf8: true,
                body: Some(Body::EightBitMime),
                ret: Some(Ret::Hdrs),
                envid: Some(Envid::parse("ID+2B1").unwrap()),
                ..MailParams::default()
            },
            recipients: vec![
                parse_forward_path("<b@example.com>").unwrap(),
                parse_forward_path("<Postmaster>").unwrap(),
            ],
            recipient_params: vec![RcptParams {
                notify: Some(Notify::NEVER),
                orcpt: Some(Orcpt::parse("rfc822;B@example.com").unwrap()),
                other: Vec::new(),
            }],
        };
        let stored = spooled_envelope(&session(), &envelope, SystemTime::now());
        assert_eq!(stored.recipients[1].address, "Postmaster");
        let all: Vec<&RecipientState> = stored.recipients.iter().collect();
        let replayed = replayed_envelope(&stored, &all).unwrap();
        assert_eq!(replayed.from, envelope.from);
        assert_eq!(replayed.recipients, envelope.recipients);
        assert!(replayed.params.smtputf8);
        assert_eq!(replayed.params.body, Some(Body::EightBitMime));
        assert_eq!(replayed.params.ret, envelope.params.ret);
        assert_eq!(replayed.params.envid, envelope.params.envid);
        assert_eq!(replayed.recipient_params[0], envelope.recipient_params[0]);
        assert_eq!(replayed.recipient_params[1], RcptParams::default());

        let mut null = stored.clone();
        null.sender = String::new();
        assert_eq!(
            replayed_envelope(&null, &all).unwrap().from,
            ReversePath::Null
        );
    }
}
