//! The machine-readable `message/delivery-status` part (RFC 3464 §2). It must
//! be 7-bit text, so everything from outside is reduced to ASCII here, and a
//! non-ASCII address is written in RFC 6533's `utf-8` xtext form.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::header::{ascii_only, date, field, host};
use super::{Action, Diagnostic, FailedRecipient};

/// RFC 3464 §2.3.6: "smtp" is only for replies an SMTP server sent; causes
/// found locally (DNS, unreachable hosts, expiry) get a private type.
pub const LOCAL_DIAGNOSTIC_TYPE: &str = "X-Postern";

/// Builds the part's content, ending in CRLF.
pub fn delivery_status(
    reporting_mta: &str,
    envid: Option<&str>,
    arrival: SystemTime,
    last_attempt: SystemTime,
    recipients: &[FailedRecipient],
) -> String {
    // RFC 3464 §2.2: Original-Envelope-Id comes first when the sender gave one.
    let mut out = String::new();
    if let Some(envid) = envid.map(ascii_only).filter(|id| !id.is_empty()) {
        out.push_str(&field("Original-Envelope-Id", &envid));
    }
    out.push_str(&field("Reporting-MTA", &format!("dns; {reporting_mta}")));
    out.push_str(&field("Arrival-Date", &date(arrival)));
    for recipient in recipients {
        out.push_str("\r\n");
        if let Some(original) = recipient
            .original_recipient
            .as_deref()
            .map(ascii_only)
            .filter(|value| !value.is_empty())
        {
            out.push_str(&field("Original-Recipient", &original));
        }
        out.push_str(&field(
            "Final-Recipient",
            &final_recipient(&recipient.address),
        ));
        out.push_str(&field("Action", recipient.action.as_str()));
        out.push_str(&field(
            "Status",
            &status(&recipient.status, recipient.action),
        ));
        if let Some(mta) = recipient.remote_mta.as_deref().map(host)
            && !mta.is_empty()
        {
            out.push_str(&field("Remote-MTA", &format!("dns; {mta}")));
        }
        let (kind, text) = match &recipient.diagnostic {
            Diagnostic::Smtp { reply } => ("smtp", reply),
            Diagnostic::Local { text } => (LOCAL_DIAGNOSTIC_TYPE, text),
        };
        let text = ascii_only(text);
        if !text.is_empty() {
            out.push_str(&field("Diagnostic-Code", &format!("{kind}; {text}")));
        }
        out.push_str(&field("Last-Attempt-Date", &date(last_attempt)));
        if let Action::Delayed { will_retry_until } = recipient.action {
            out.push_str(&field("Will-Retry-Until", &date(will_retry_until)));
        }
    }
    out
}

/// `rfc822; addr` for ASCII addresses; `utf-8; ` with `\x{HEX}` escapes
/// (RFC 6533 §3 utf-8-addr-xtext) otherwise, keeping the field 7-bit.
fn final_recipient(address: &str) -> String {
    let address = super::header::one_line(address);
    if address.is_ascii() {
        return format!("rfc822; {address}");
    }
    let mut xtext = String::with_capacity(address.len() * 2);
    for c in address.chars() {
        if c.is_ascii_graphic() && !matches!(c, '+' | '=' | '\\') {
            xtext.push(c);
        } else {
            let _ = write!(xtext, "\\x{{{:02X}}}", u32::from(c));
        }
    }
    format!("utf-8; {xtext}")
}

/// The caller's status code when it is a well-formed RFC 3463 code, else the
/// generic one for the action, so a garbled value never reaches the report.
fn status(code: &str, action: Action) -> String {
    let code = code.trim();
    let mut parts = code.split('.');
    let class = parts.next().unwrap_or_default();
    let well_formed = matches!(class, "2" | "4" | "5")
        && parts
            .by_ref()
            .take(2)
            .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .count()
            == 2
        && parts.next().is_none();
    if well_formed {
        code.to_string()
    } else {
        match action {
            Action::Failed => "5.0.0",
            Action::Delayed { .. } => "4.0.0",
            Action::Relayed | Action::Delivered => "2.0.0",
        }
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_validated() {
        let failed = Action::Failed;
        let delayed = Action::Delayed {
            will_retry_until: SystemTime::UNIX_EPOCH,
        };
        let cases = [
            ("5.1.1", failed, "5.1.1"),
            (" 4.4.1 ", failed, "4.4.1"),
            ("5.123.999", failed, "5.123.999"),
            ("5.1", failed, "5.0.0"),
            ("5.1.1.1", failed, "5.0.0"),
            ("6.1.1", failed, "5.0.0"),
            ("5.1.1\r\nX: y", failed, "5.0.0"),
            ("5.1000.1", delayed, "4.0.0"),
            ("", delayed, "4.0.0"),
        ];
        for (code, action, expected) in cases {
            assert_eq!(status(code, action), expected, "{code:?}");
        }
    }

    #[test]
    fn final_recipient_forms() {
        assert_eq!(final_recipient("a@b.example"), "rfc822; a@b.example");
        assert_eq!(
            final_recipient("j\u{f6}rg+x@b.example"),
            "utf-8; j\\x{F6}rg\\x{2B}x@b.example"
        );
        assert_eq!(final_recipient("a\r\n@b"), "rfc822; a @b");
    }
}
