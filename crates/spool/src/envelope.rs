//! The envelope: everything about a queued message except its bytes.

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::SpoolError;
use super::id::QueueId;
use super::timestamp::{rfc3339, rfc3339_option};

/// The on-disk format version. Bump it (and keep a reader for the old one)
/// whenever a field changes meaning; adding an optional field does not need a
/// bump because unknown fields are ignored and missing ones take their default.
pub const ENVELOPE_FORMAT_VERSION: u32 = 1;

/// What a spool user may keep in each envelope beside the common fields: a
/// serde type whose fields are written at the top level of the envelope
/// file, next to `sender` and `recipients`. Give them names the common
/// fields do not use, and make them optional (`#[serde(default)]`) so that
/// files written before a field existed still load. Implemented on purpose
/// (`impl Extras for MyExtras {}`), so that no type becomes envelope
/// content by accident.
pub trait Extras:
    Serialize + DeserializeOwned + Clone + fmt::Debug + PartialEq + Eq + Default + Send + Sync + 'static
{
}

/// The extras of a user that has none (relay-out): nothing is written, and
/// whatever unknown fields a file holds are ignored, as before extras existed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoExtras {}

impl Extras for NoExtras {}

/// The SMTP transaction of one queued message plus its delivery state.
///
/// Kept separate from the message bytes so that the frequent state updates
/// after each delivery attempt rewrite a few hundred bytes, never the message,
/// and so the daemon can keep every envelope in memory while the data stays
/// on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "X: Extras")]
pub struct Envelope<X = NoExtras> {
    pub id: QueueId,
    /// When the message was accepted; retry expiry is counted from here.
    #[serde(with = "rfc3339")]
    pub arrival: SystemTime,
    /// The reverse-path, `""` for the null sender `<>` (bounces must never be bounced).
    pub sender: String,
    pub recipients: Vec<RecipientState>,
    /// Who handed us the message (e.g. `"192.0.2.7 helo=backend.example"`), for logs and DSNs.
    #[serde(default)]
    pub client: Option<String>,
    /// `MAIL FROM ... SMTPUTF8` was given: the next hop must support it.
    #[serde(default)]
    pub smtputf8: bool,
    /// `MAIL FROM ... BODY=8BITMIME` was given.
    #[serde(default)]
    pub eight_bit_mime: bool,
    /// DSN `RET=` as received (`FULL` or `HDRS`, RFC 3461): how much of the
    /// message a failure notice returns. Absent in files written before DSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    /// DSN `ENVID=` as received (xtext), echoed in notices and passed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// When the last "delayed" notice for this message was queued, so that
    /// at most one goes out per `delay_warning_time` interval, restarts included.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_option"
    )]
    pub delay_warned: Option<SystemTime>,
    /// `MAIL FROM ... REQUIRETLS` (RFC 8689) was given: every attempt must
    /// use an authenticated TLS policy and a host offering REQUIRETLS.
    /// Absent (false) in files written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requiretls: bool,
    /// The message has `TLS-Required: No` (RFC 8689 §3) and no REQUIRETLS:
    /// the sender asks that TLS policies not stop its delivery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required_no: bool,
    /// The spool user's own fields (see [`Extras`]).
    #[serde(flatten)]
    pub extras: X,
}

/// The delivery state of one recipient. Per recipient, not per message,
/// because one message to several domains succeeds and fails piecewise, and
/// a retry must never resend to a recipient that already got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub address: String,
    pub status: RecipientStatus,
    /// Delivery attempts made so far (temporary failures included).
    #[serde(default)]
    pub attempts: u32,
    /// When the next attempt is due; `None` once the recipient is final.
    #[serde(default, with = "rfc3339_option")]
    pub next_attempt: Option<SystemTime>,
    /// The remote's last reply (or our own error text), shown by `queue list`
    /// and quoted in a bounce.
    #[serde(default)]
    pub last_reply: Option<String>,
    /// The MX host of the last attempt, for the operator.
    #[serde(default)]
    pub last_mx: Option<String>,
    /// `last_reply` is a remote server's own reply (quoted as `smtp;` in a
    /// notice), not our description of a local cause (DNS, unreachable
    /// hosts, expiry).
    #[serde(default)]
    pub reply_is_remote: bool,
    /// The RFC 3463 status a notice about this recipient reports (`5.1.1`).
    /// Kept on disk so a bounce owed at a crash is built the same after restart.
    #[serde(default)]
    pub dsn_status: Option<String>,
    /// DSN `NOTIFY=` as received (`NEVER`, or e.g. `SUCCESS,FAILURE`);
    /// absent: the default (failure and delay notices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// DSN `ORCPT=` as received (`addr-type;xtext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// A delivered recipient whose sender asked for `NOTIFY=SUCCESS` and
    /// whose notice (`relayed` or `delivered`) is not queued yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_notice: Option<String>,
}

/// Where a recipient stands. Serialised in lower case for readability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    /// Not yet delivered; retried at `next_attempt`.
    Pending,
    /// The remote answered 250 after the data: never send again.
    Delivered,
    /// Permanently failed (5xx, or retries expired): owes a bounce, never retried.
    Failed,
    /// Failed, and the sender's notice is queued (or was not owed: the
    /// message was itself a bounce). Nothing is left to do for it.
    Bounced,
}

impl RecipientState {
    /// A recipient just accepted at intake, due for a first attempt right away.
    pub fn new(address: impl Into<String>, now: SystemTime) -> RecipientState {
        RecipientState {
            address: address.into(),
            status: RecipientStatus::Pending,
            attempts: 0,
            next_attempt: Some(now),
            last_reply: None,
            last_mx: None,
            reply_is_remote: false,
            dsn_status: None,
            notify: None,
            orcpt: None,
            success_notice: None,
        }
    }
}

impl<X: Extras> Envelope<X> {
    /// The earliest due attempt among pending recipients, `None` when no
    /// recipient is pending (the message is finished and can be removed).
    pub fn next_attempt(&self) -> Option<SystemTime> {
        self.pending()
            .filter_map(|recipient| recipient.next_attempt)
            .min()
    }

    /// Recipients still to be delivered.
    pub fn pending(&self) -> impl Iterator<Item = &RecipientState> {
        self.recipients
            .iter()
            .filter(|recipient| recipient.status == RecipientStatus::Pending)
    }

    /// True when nothing is left to attempt.
    pub fn is_finished(&self) -> bool {
        self.pending().next().is_none()
    }

    /// Recipients that failed and whose sender has not been notified yet.
    pub fn owing_bounce(&self) -> impl Iterator<Item = &RecipientState> {
        self.recipients
            .iter()
            .filter(|recipient| recipient.status == RecipientStatus::Failed)
    }

    /// Whether a notice is owed: a failure, or a success the sender asked
    /// to hear of.
    pub fn owing_notice(&self) -> bool {
        self.owing_bounce().next().is_some()
            || self.recipients.iter().any(|r| r.success_notice.is_some())
    }

    /// True when the message can leave the queue: nothing to attempt and no
    /// notice owed.
    pub fn is_settled(&self) -> bool {
        self.is_finished() && !self.owing_notice()
    }

    /// The bytes of the envelope file: pretty JSON with a `version` field first.
    pub fn encode(&self) -> Vec<u8> {
        let file = EnvelopeFileOut {
            version: ENVELOPE_FORMAT_VERSION,
            envelope: self,
        };
        // Serialising plain strings, integers and options to a Vec cannot
        // fail; the fallback only exists so that no path can panic.
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parses an envelope file; `path` is only used in the error. Any problem,
    /// including an unknown version, yields [`SpoolError::Corrupt`].
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Envelope<X>, SpoolError> {
        let corrupt = |reason: String| SpoolError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file: EnvelopeFileIn<X> =
            serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
        if file.version != ENVELOPE_FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} is not supported (this relay-out reads version {ENVELOPE_FORMAT_VERSION})",
                file.version
            )));
        }
        if file.envelope.recipients.is_empty() {
            return Err(corrupt("no recipients".to_string()));
        }
        Ok(file.envelope)
    }
}

/// The file layout when writing: the version beside the envelope's own fields.
#[derive(Serialize)]
#[serde(bound = "X: Extras")]
struct EnvelopeFileOut<'a, X> {
    version: u32,
    #[serde(flatten)]
    envelope: &'a Envelope<X>,
}

/// The file layout when reading (owned, hence a separate type).
#[derive(Deserialize)]
#[serde(bound = "X: Extras")]
struct EnvelopeFileIn<X> {
    version: u32,
    #[serde(flatten)]
    envelope: Envelope<X>,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn sample(id: QueueId) -> Envelope {
        let arrival = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Envelope {
            id,
            arrival,
            sender: "alice@example.org".to_string(),
            recipients: vec![
                RecipientState::new("bob@example.net", arrival),
                RecipientState {
                    status: RecipientStatus::Delivered,
                    attempts: 1,
                    next_attempt: None,
                    last_reply: Some("250 2.0.0 Ok: queued as ABC".to_string()),
                    last_mx: Some("mx.example.com".to_string()),
                    reply_is_remote: true,
                    ..RecipientState::new("carol@example.com", arrival)
                },
            ],
            client: Some("192.0.2.7 helo=backend.example".to_string()),
            smtputf8: false,
            eight_bit_mime: true,
            ret: None,
            envid: None,
            delay_warned: None,
            requiretls: false,
            tls_required_no: false,
            extras: NoExtras {},
        }
    }

    #[test]
    fn encoding_is_readable_json_that_round_trips() {
        let envelope = sample(QueueId::generate());
        let bytes = envelope.encode();
        let text = String::from_utf8(bytes.clone()).unwrap_or_default();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(
            text.contains("\"arrival\": \"2023-11-14T22:13:20Z\""),
            "{text}"
        );
        assert!(text.contains("\"status\": \"delivered\""), "{text}");
        let decoded = Envelope::decode(&bytes, Path::new("x.json"));
        assert_eq!(decoded.ok(), Some(envelope));
    }

    #[test]
    fn optional_fields_may_be_missing_and_unknown_fields_are_ignored() {
        let text = r#"{"version":1,"id":"01hf0000000000000000","arrival":"2023-11-14T22:13:20Z",
            "sender":"","recipients":[{"address":"a@b.example","status":"pending"}],"future":42}"#;
        let envelope: Result<Envelope, _> = Envelope::decode(text.as_bytes(), Path::new("x.json"));
        let envelope = envelope.expect("minimal envelope must decode");
        assert_eq!(envelope.sender, "");
        assert_eq!(envelope.recipients[0].attempts, 0);
        assert_eq!(envelope.next_attempt(), None);
        // Files from before DSN: no parameters, nothing owed.
        assert_eq!((envelope.ret.clone(), envelope.envid.clone()), (None, None));
        assert_eq!(envelope.delay_warned, None);
        assert_eq!(envelope.recipients[0].notify, None);
        assert_eq!(envelope.recipients[0].orcpt, None);
        assert!(!envelope.owing_notice());
    }

    #[test]
    fn dsn_fields_round_trip_and_are_omitted_when_absent() {
        let mut envelope = sample(QueueId::generate());
        let plain = String::from_utf8(envelope.encode()).unwrap_or_default();
        assert!(
            !plain.contains("notify") && !plain.contains("ret"),
            "{plain}"
        );
        envelope.ret = Some("HDRS".into());
        envelope.envid = Some("QQ+2B1".into());
        envelope.delay_warned = Some(envelope.arrival);
        envelope.recipients[0].notify = Some("SUCCESS,DELAY".into());
        envelope.recipients[0].orcpt = Some("rfc822;a@b".into());
        envelope.recipients[1].success_notice = Some("relayed".into());
        assert!(envelope.owing_notice());
        let decoded = Envelope::decode(&envelope.encode(), Path::new("x.json"));
        assert_eq!(decoded.ok(), Some(envelope));
    }

    #[test]
    fn bad_envelopes_are_corrupt_not_panics() {
        let good = String::from_utf8(sample(QueueId::generate()).encode()).unwrap_or_default();
        let cases = [
            String::new(),
            "{".to_string(),
            "null".to_string(),
            good[..good.len() / 2].to_string(),
            good.replace("\"version\": 1", "\"version\": 2"),
            good.replace("\"pending\"", "\"maybe\""),
            good.replace("2023-11-14T22:13:20Z", "yesterday"),
            r#"{"version":1,"id":"../../etc/passwd","arrival":"2023-11-14T22:13:20Z","sender":"","recipients":[]}"#
                .to_string(),
            r#"{"version":1,"id":"01hf0000000000000000","arrival":"2023-11-14T22:13:20Z","sender":"","recipients":[]}"#
                .to_string(),
        ];
        for case in cases {
            let result: Result<Envelope, _> =
                Envelope::decode(case.as_bytes(), Path::new("x.json"));
            assert!(
                matches!(result, Err(SpoolError::Corrupt { .. })),
                "{case:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn next_attempt_is_the_earliest_pending_one() {
        let mut envelope = sample(QueueId::generate());
        let later = envelope.arrival + Duration::from_secs(600);
        envelope.recipients[0].next_attempt = Some(later);
        // A final recipient's stale time must not count.
        envelope.recipients[1].next_attempt = Some(envelope.arrival);
        assert_eq!(envelope.next_attempt(), Some(later));
        envelope.recipients[0].status = RecipientStatus::Failed;
        assert!(envelope.is_finished());
        assert!(!envelope.is_settled(), "a bounce is still owed");
        assert_eq!(envelope.next_attempt(), None);
        envelope.recipients[0].status = RecipientStatus::Bounced;
        assert!(envelope.is_settled());
    }

    /// A second spool user's own fields, as relay-in's backup-MX spool will
    /// have: written beside the common ones, optional when reading.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    struct BackupExtras {
        #[serde(default)]
        primary_mx: Option<String>,
    }

    impl Extras for BackupExtras {}

    #[test]
    fn a_user_s_extras_round_trip_and_old_files_load_without_them() {
        let common = sample(QueueId::generate());
        let envelope = Envelope {
            id: common.id.clone(),
            arrival: common.arrival,
            sender: common.sender.clone(),
            recipients: common.recipients.clone(),
            client: common.client.clone(),
            smtputf8: common.smtputf8,
            eight_bit_mime: common.eight_bit_mime,
            ret: None,
            envid: None,
            delay_warned: None,
            requiretls: false,
            tls_required_no: false,
            extras: BackupExtras {
                primary_mx: Some("mx1.example.net".to_string()),
            },
        };
        let bytes = envelope.encode();
        let text = String::from_utf8(bytes.clone()).unwrap_or_default();
        assert!(
            text.contains("\"primary_mx\": \"mx1.example.net\""),
            "{text}"
        );
        let decoded = Envelope::decode(&bytes, Path::new("x.json"));
        assert_eq!(decoded.ok(), Some(envelope));

        // A file written without the extras (by relay-out) still loads.
        let plain = Envelope::<BackupExtras>::decode(&common.encode(), Path::new("x.json"));
        let plain = plain.expect("a file without extras must decode");
        assert_eq!(plain.extras, BackupExtras::default());
        assert_eq!(plain.recipients, common.recipients);
        // And relay-out ignores a user's extras rather than failing.
        let ignored: Result<Envelope, _> = Envelope::decode(&bytes, Path::new("x.json"));
        assert_eq!(ignored.ok(), Some(common));
    }

    #[test]
    fn the_tls_requests_round_trip_and_default_to_false_in_old_files() {
        let mut envelope = sample(QueueId::generate());
        let old = envelope.encode();
        assert!(!String::from_utf8_lossy(&old).contains("requiretls"));
        let decoded = Envelope::<NoExtras>::decode(&old, Path::new("x.json")).expect("old file");
        assert!(!decoded.requiretls && !decoded.tls_required_no);

        envelope.requiretls = true;
        let bytes = envelope.encode();
        assert!(String::from_utf8_lossy(&bytes).contains("\"requiretls\": true"));
        let decoded = Envelope::<NoExtras>::decode(&bytes, Path::new("x.json"));
        assert_eq!(decoded.ok(), Some(envelope));
    }
}
