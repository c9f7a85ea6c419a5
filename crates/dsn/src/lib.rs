//! Delivery status notifications (RFC 3464 inside an RFC 6522
//! `multipart/report`): the message relay-out sends back to a sender when it
//! gives up on recipients, or warns that delivery is delayed.
//!
//! A crate of its own because both relays owe notices: relay-out for the
//! MX deliveries it gives up on, relay-in for mail its backup spool could
//! not hand to the home server. It knows nothing of queues or sockets: it
//! turns a description of what failed into the notice's bytes.
//!
//! The notice quotes each remote server's own reply (Haraka users asked for
//! this: bounces that only said "Some recipients failed" were useless) and
//! renders Haraka's `outbound.bounce_message` template, so an existing Haraka
//! config produces familiar text.
//!
//! Formatted by hand rather than with mail-builder: its 2.x line depends on
//! encodify, whose rust-version (1.89) is above the workspace's 1.88, and the
//! report's fields, folding and boundary rules are simpler to get exactly
//! right directly than through a general builder.

mod encoding;
mod header;
mod original;
mod report;
pub mod request;
mod template;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use rand::Rng;
use rand::distr::Alphanumeric;

use encoding::quoted_printable;
use header::{field, host, one_line, text_field};
use original::Original;
use template::{Rendered, Variables};

/// RFC 5322's hard limit on a line, CRLF excluded.
const MAX_LINE: usize = 998;

const DEFAULT_FAILED_SUBJECT: &str = "Undelivered Mail Returned to Sender";
const DEFAULT_DELAYED_SUBJECT: &str = "Delayed Mail (still being retried)";
const DEFAULT_SUCCESS_SUBJECT: &str = "Successful Mail Delivery Report";

/// The largest message a `RET=FULL` notice returns whole; a larger one is
/// returned as headers only. Postfix's `bounce_size_limit` default, for the
/// same reason: a notice must not cost the sender's mailbox a second copy of
/// a huge attachment.
pub const MAX_RETURNED_MESSAGE: usize = 50_000;

/// Our own header fields; a template may not override them, so every notice
/// stays a well-formed, correctly addressed report.
const OWNED_FIELDS: &[&str] = &[
    "Date",
    "From",
    "To",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Everything a notice is built from; the caller has already decided that
/// one is due (and dropped double bounces, whose sender is empty).
pub struct BounceInput<'a> {
    /// Our host name: `Reporting-MTA`, `From: MAILER-DAEMON@<me>`, Message-ID.
    pub me: &'a str,
    /// The envelope sender of the original message, the notice's recipient.
    pub original_sender: &'a str,
    pub arrival: SystemTime,
    /// The original message as the sender submitted it (not dot-stuffed), or
    /// at least its header section. Only the header section is attached,
    /// as Haraka does, unless `return_full` says otherwise.
    pub original_message: &'a [u8],
    /// DSN `RET=FULL`: attach `original_message` whole (`message/rfc822`),
    /// when it is the complete message, at most [`MAX_RETURNED_MESSAGE`]
    /// octets and has no line over 998 octets; otherwise headers only.
    pub return_full: bool,
    /// DSN `ENVID=` in its report form (`Original-Envelope-Id`).
    pub envid: Option<&'a str>,
    pub recipients: &'a [FailedRecipient],
    /// The template: `outbound.bounce_message` for failures,
    /// `outbound.delay_message` for delay warnings, if configured and non-empty.
    pub template: Option<&'a str>,
    /// Haraka's `{pid}` variable.
    pub pid: u32,
}

/// One recipient the notice reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    pub address: String,
    /// DSN `ORCPT=` in its report form (`rfc822; a@b`), for `Original-Recipient`.
    pub original_recipient: Option<String>,
    pub action: Action,
    /// An RFC 3463 code such as `5.1.1`; a malformed one is reported as
    /// `5.0.0` (failed) or `4.0.0` (delayed).
    pub status: String,
    /// The MX host that gave the answer, if any server was reached.
    pub remote_mta: Option<String>,
    pub diagnostic: Diagnostic,
    /// For a delayed recipient: when the next attempt is due (told in the
    /// human text).
    pub next_attempt: Option<SystemTime>,
}

/// What the notice says happened to a recipient (RFC 3464 §2.3.3 `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Given up; no further attempts.
    Failed,
    /// Still queued; `will_retry_until` is when we will give up.
    Delayed { will_retry_until: SystemTime },
    /// Handed to a next hop that does not offer DSN (RFC 3461 §5.2.2):
    /// the sender asked for `NOTIFY=SUCCESS` and nobody further on will tell.
    Relayed,
    /// Handed to the final delivery agent (an LMTP route).
    Delivered,
}

impl Action {
    /// The RFC 3464 `Action` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed { .. } => "delayed",
            Action::Relayed => "relayed",
            Action::Delivered => "delivered",
        }
    }

    fn is_success(self) -> bool {
        matches!(self, Action::Relayed | Action::Delivered)
    }
}

/// Why delivery did not happen, kept apart by source because RFC 3464 labels
/// the two differently and users need to know who said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnostic {
    /// A remote server's reply, exactly as received (multi-line replies may
    /// keep their line breaks; they are unfolded into one field).
    Smtp { reply: String },
    /// No server answered: null MX, NXDOMAIN, every MX unreachable, queue
    /// lifetime expired. A text naming the cause.
    Local { text: String },
}

/// The notice's view of a recipient a spool marked failed (its last reply,
/// whether a remote server gave it, and the RFC 3463 status kept for it).
pub fn failed_recipient(recipient: &spool::RecipientState) -> FailedRecipient {
    let text = recipient
        .last_reply
        .clone()
        .unwrap_or_else(|| "delivery failed".to_string());
    let (diagnostic, remote_mta) = if recipient.reply_is_remote {
        (Diagnostic::Smtp { reply: text }, recipient.last_mx.clone())
    } else {
        (Diagnostic::Local { text }, None)
    };
    FailedRecipient {
        address: recipient.address.clone(),
        original_recipient: request::orcpt(recipient).map(|orcpt| orcpt.report_value()),
        action: Action::Failed,
        status: recipient
            .dsn_status
            .clone()
            .unwrap_or_else(|| "5.0.0".to_string()),
        remote_mta,
        diagnostic,
        next_attempt: None,
    }
}

/// The notice's view of a recipient still waiting in a spool, for a delay
/// warning: its last reply and when it is tried next.
pub fn delayed_recipient(
    recipient: &spool::RecipientState,
    will_retry_until: SystemTime,
) -> FailedRecipient {
    let mut notice = failed_recipient(recipient);
    notice.action = Action::Delayed { will_retry_until };
    notice.status = recipient
        .dsn_status
        .clone()
        .unwrap_or_else(|| "4.0.0".to_string());
    if recipient.last_reply.is_none() {
        notice.diagnostic = Diagnostic::Local {
            text: "not yet delivered".to_string(),
        };
    }
    notice.next_attempt = recipient.next_attempt;
    notice
}

/// The notice's view of a recipient handed on (`relayed`, `delivered`),
/// quoting the reply that took it.
pub fn success_recipient(recipient: &spool::RecipientState, action: Action) -> FailedRecipient {
    let mut notice = failed_recipient(recipient);
    notice.action = action;
    notice.status = recipient
        .dsn_status
        .clone()
        .filter(|status| status.starts_with("2."))
        .unwrap_or_else(|| "2.0.0".to_string());
    notice
}

/// Builds the complete notice (CRLF line endings, no line over 998 octets),
/// ready to queue with `MAIL FROM:<>` to `original_sender`.
pub fn build_bounce(input: &BounceInput) -> Vec<u8> {
    build_bounce_at(input, SystemTime::now(), &mut rand::rng())
}

/// [`build_bounce`] with the clock and randomness supplied, for tests and for
/// callers that want the report's dates to match their own records.
pub fn build_bounce_at(input: &BounceInput, now: SystemTime, rng: &mut impl Rng) -> Vec<u8> {
    let original = Original::parse(input.original_message);
    let me = host(input.me);
    let message_id = format!("<{}@{me}>", random_token(rng, 24));
    let any_failed = input
        .recipients
        .iter()
        .any(|r| matches!(r.action, Action::Failed));
    let all_delayed = input
        .recipients
        .iter()
        .all(|r| matches!(r.action, Action::Delayed { .. }))
        && !input.recipients.is_empty();
    let kind = if any_failed || input.recipients.is_empty() {
        Kind::Failed
    } else if all_delayed {
        Kind::Delayed
    } else if input.recipients.iter().all(|r| r.action.is_success()) {
        Kind::Success
    } else {
        Kind::Delayed
    };

    let variables = variables(input, &original, &me, &message_id, now);
    let template = match input.template.filter(|t| !t.trim().is_empty()) {
        Some(configured) => configured,
        None => match kind {
            Kind::Failed => template::BUILTIN_FAILED,
            Kind::Delayed => template::BUILTIN_DELAYED,
            Kind::Success => template::BUILTIN_SUCCESS,
        },
    };
    let rendered = template::render(template, &variables);

    let parts = [
        notification_part(&rendered),
        (
            "Content-Description: Delivery report\r\n\
             Content-Type: message/delivery-status\r\n"
                .to_string(),
            report::delivery_status(&me, input.envid, input.arrival, now, input.recipients)
                .into_bytes(),
        ),
        returned_part(input, original.header_section, kind),
    ];
    let boundary = loop {
        let candidate = format!("=_postern_{}", random_token(rng, 24));
        if !parts
            .iter()
            .any(|(_, body)| contains(body, candidate.as_bytes()))
        {
            break candidate;
        }
    };

    let mut out = String::new();
    for (name, value) in &rendered.headers {
        if !OWNED_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            out.push_str(&text_field(name, value));
        }
    }
    let subject = rendered
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("Subject"))
        .map(|(_, value)| one_line(value))
        .filter(|value| !value.is_empty());
    let default_subject = match kind {
        Kind::Failed => DEFAULT_FAILED_SUBJECT,
        Kind::Delayed => DEFAULT_DELAYED_SUBJECT,
        Kind::Success => DEFAULT_SUCCESS_SUBJECT,
    };
    out.push_str(&field("Date", &header::date(now)));
    out.push_str(&field("From", &format!("MAILER-DAEMON@{me}")));
    out.push_str(&field("To", &format!("<{}>", input.original_sender)));
    out.push_str(&text_field(
        "Subject",
        subject.as_deref().unwrap_or(default_subject),
    ));
    out.push_str(&field("Message-ID", &message_id));
    if let Some(id) = &original.message_id {
        out.push_str(&field("In-Reply-To", id));
        out.push_str(&field("References", id));
    }
    out.push_str(&field("Auto-Submitted", "auto-replied"));
    out.push_str(&field("MIME-Version", "1.0"));
    out.push_str(&field(
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    ));
    out.push_str("\r\nThis is a MIME-encapsulated message.\r\n");

    let mut message = out.into_bytes();
    for (headers, body) in parts {
        message.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        message.extend_from_slice(headers.as_bytes());
        message.extend_from_slice(b"\r\n");
        message.extend_from_slice(&body);
    }
    message.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    message
}

/// What a notice is mainly about, which picks its default text and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failed,
    Delayed,
    Success,
}

/// Haraka's variables, with `reason`/`extended_reason` quoting each remote
/// server's own reply.
fn variables(
    input: &BounceInput,
    original: &Original,
    me: &str,
    message_id: &str,
    now: SystemTime,
) -> Variables {
    let mut reasons: Vec<String> = Vec::new();
    for recipient in input.recipients {
        let reason = human_reason(recipient);
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    let extended_reason = input
        .recipients
        .iter()
        .map(|r| format!("{}: {}", one_line(&r.address), human_reason(r)))
        .collect::<Vec<_>>()
        .join("\n");
    let recipients = input
        .recipients
        .iter()
        .map(|r| one_line(&r.address))
        .collect::<Vec<_>>()
        .join(", ");
    Variables::new(vec![
        ("pid", input.pid.to_string()),
        ("date", header::date(now)),
        ("me", me.to_string()),
        ("from", "<>".to_string()),
        ("to", one_line(input.original_sender)),
        ("msgid", message_id.to_string()),
        ("subject", original.subject.clone()),
        ("recipients", recipients),
        ("reason", reasons.join("; ")),
        ("extended_reason", extended_reason),
    ])
}

/// One line a person can act on: who answered, and what they said (and,
/// for a delay, when the next attempt is).
fn human_reason(recipient: &FailedRecipient) -> String {
    let said = said(recipient);
    match recipient.next_attempt {
        Some(next) if matches!(recipient.action, Action::Delayed { .. }) => {
            format!("{said} (next attempt: {})", header::date(next))
        }
        _ => said,
    }
}

fn said(recipient: &FailedRecipient) -> String {
    match (&recipient.diagnostic, &recipient.remote_mta) {
        (Diagnostic::Smtp { reply }, Some(mta)) => {
            format!("host {} said: {}", host(mta), one_line(reply))
        }
        (Diagnostic::Smtp { reply }, None) => {
            format!("the remote server said: {}", one_line(reply))
        }
        (Diagnostic::Local { text }, _) => one_line(text),
    }
}

/// The human-readable first part. 7-bit when it can be; otherwise
/// quoted-printable UTF-8, which also keeps overlong lines legal.
fn notification_part(rendered: &Rendered) -> (String, Vec<u8>) {
    let mut text = String::new();
    let mut fits = true;
    for line in &rendered.body {
        let clean: String = line
            .chars()
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
            .collect();
        fits &= clean.len() <= MAX_LINE;
        text.push_str(&clean);
        text.push_str("\r\n");
    }
    let headers = "Content-Description: Notification\r\n";
    if fits && text.is_ascii() {
        (
            format!(
                "{headers}Content-Type: text/plain; charset=us-ascii\r\n\
                 Content-Transfer-Encoding: 7bit\r\n"
            ),
            text.into_bytes(),
        )
    } else {
        (
            format!(
                "{headers}Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n"
            ),
            quoted_printable(text.as_bytes()),
        )
    }
}

/// The third part: the whole message when `RET=FULL` asked for it and it
/// can be returned as is, else the header section.
fn returned_part(input: &BounceInput, header_section: &[u8], kind: Kind) -> (String, Vec<u8>) {
    let message = input.original_message;
    let returnable = input.return_full
        && kind == Kind::Failed
        && message.len() <= MAX_RETURNED_MESSAGE
        && message
            .split(|&b| b == b'\n')
            .all(|line| line.len() <= MAX_LINE + 1);
    if !returnable {
        return headers_part(header_section, kind);
    }
    let mut text = Vec::with_capacity(message.len() + 64);
    let mut lines: Vec<&[u8]> = message.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for line in lines {
        text.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        text.extend_from_slice(b"\r\n");
    }
    // message/rfc822 allows no encoding but 7bit/8bit (RFC 2046 §5.2.1);
    // an 8-bit message makes the notice 8BITMIME, which the caller sees.
    let encoding = if text.is_ascii() { "7bit" } else { "8bit" };
    (
        format!(
            "Content-Description: Undelivered Message\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: {encoding}\r\n"
        ),
        text,
    )
}

/// The original header section as `text/rfc822-headers`, with its line ends
/// made CRLF. Sent as is when it is clean 7-bit text, else quoted-printable,
/// which carries 8-bit bytes, stray CRs and overlong lines intact but legal.
fn headers_part(header_section: &[u8], kind: Kind) -> (String, Vec<u8>) {
    let mut text = Vec::with_capacity(header_section.len() + 16);
    let mut clean = true;
    let mut lines: Vec<&[u8]> = header_section.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        clean &= line.len() <= MAX_LINE
            && line
                .iter()
                .all(|&b| b == b'\t' || (b.is_ascii() && !b.is_ascii_control()));
        text.extend_from_slice(line);
        text.extend_from_slice(b"\r\n");
    }
    let description = match kind {
        Kind::Delayed => "Content-Description: Delayed message headers\r\n",
        Kind::Failed => "Content-Description: Undelivered message headers\r\n",
        Kind::Success => "Content-Description: Message headers\r\n",
    };
    if clean {
        (
            format!("{description}Content-Type: text/rfc822-headers\r\n"),
            text,
        )
    } else {
        (
            format!(
                "{description}Content-Type: text/rfc822-headers\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n"
            ),
            quoted_printable(&text),
        )
    }
}

fn random_token(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(rng.sample(Alphanumeric)))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
