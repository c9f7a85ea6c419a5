//! The DSN extension's envelope parameters (RFC 3461): `RET` and `ENVID` on
//! MAIL, `NOTIFY` and `ORCPT` on RCPT.
//!
//! It exists so both relays check these parameters the same way, carry them
//! as typed values, and write them back out exactly as received: a next hop
//! that offers DSN must get what the sender asked for, and a queue file keeps
//! their wire form ([`Notify::to_param`] and friends parse again to equal values).

use std::fmt;

use crate::xtext;

/// RFC 3461 §4.4: an `ENVID` longer than this is refused.
pub const MAX_ENVID_CHARS: usize = 100;
/// RFC 3461 §4.2: an `ORCPT` longer than this is refused.
pub const MAX_ORCPT_CHARS: usize = 500;

/// Why a DSN parameter value was refused (always a `501`/`555` for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnParamError {
    #[error("RET must be FULL or HDRS")]
    Ret,
    #[error("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")]
    Notify,
    #[error("ENVID must be xtext of at most 100 characters")]
    Envid,
    #[error("ORCPT must be addr-type;xtext of at most 500 characters")]
    Orcpt,
}

/// `RET=`: how much of the message a `failed` notice carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// The whole message.
    Full,
    /// Its header section only.
    Hdrs,
}

impl Ret {
    pub fn parse(value: &str) -> Result<Ret, DsnParamError> {
        if value.eq_ignore_ascii_case("FULL") {
            Ok(Ret::Full)
        } else if value.eq_ignore_ascii_case("HDRS") {
            Ok(Ret::Hdrs)
        } else {
            Err(DsnParamError::Ret)
        }
    }

    /// The parameter value, `FULL` or `HDRS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// `NOTIFY=`: which events the sender wants to hear about for a recipient.
/// All three false is `NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// `NEVER` alone, or one to three distinct of `SUCCESS`, `FAILURE`,
    /// `DELAY` separated by commas, in any case.
    pub fn parse(value: &str) -> Result<Notify, DsnParamError> {
        if value.eq_ignore_ascii_case("NEVER") {
            return Ok(Notify::NEVER);
        }
        let mut notify = Notify::NEVER;
        for word in value.split(',') {
            let flag = if word.eq_ignore_ascii_case("SUCCESS") {
                &mut notify.success
            } else if word.eq_ignore_ascii_case("FAILURE") {
                &mut notify.failure
            } else if word.eq_ignore_ascii_case("DELAY") {
                &mut notify.delay
            } else {
                return Err(DsnParamError::Notify);
            };
            if std::mem::replace(flag, true) {
                return Err(DsnParamError::Notify);
            }
        }
        Ok(notify)
    }

    pub fn is_never(self) -> bool {
        self == Notify::NEVER
    }

    /// The parameter value: `NEVER` or e.g. `SUCCESS,FAILURE`.
    pub fn to_param(self) -> String {
        if self.is_never() {
            return "NEVER".to_string();
        }
        [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
    }

    /// Whether a `failed` notice is wanted; without `NOTIFY` it is (RFC 3461 §4.1).
    pub fn wants_failure(notify: Option<Notify>) -> bool {
        notify.is_none_or(|n| n.failure)
    }

    /// Whether a `delayed` notice is wanted; without `NOTIFY` it is, as
    /// Postfix and sendmail do.
    pub fn wants_delay(notify: Option<Notify>) -> bool {
        notify.is_none_or(|n| n.delay)
    }

    /// Whether a success notice is wanted: only when asked for.
    pub fn wants_success(notify: Option<Notify>) -> bool {
        notify.is_some_and(|n| n.success)
    }
}

/// `ORCPT=addr-type;xtext`: the recipient as the original sender wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Orcpt {
    /// e.g. `rfc822`, as sent.
    pub addr_type: String,
    /// The address in xtext, as sent (already checked to decode).
    pub xtext: String,
}

impl Orcpt {
    pub fn parse(value: &str) -> Result<Orcpt, DsnParamError> {
        if value.len() > MAX_ORCPT_CHARS {
            return Err(DsnParamError::Orcpt);
        }
        let (addr_type, address) = value.split_once(';').ok_or(DsnParamError::Orcpt)?;
        // addr-type is an RFC 5322 atom; in practice `rfc822` or `utf-8`.
        let atom_ok = !addr_type.is_empty()
            && addr_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b));
        if !atom_ok || address.is_empty() || xtext::decode(address).is_err() {
            return Err(DsnParamError::Orcpt);
        }
        Ok(Orcpt {
            addr_type: addr_type.to_string(),
            xtext: address.to_string(),
        })
    }

    /// The RFC 3464 `Original-Recipient` value: `addr-type; address`, the
    /// address decoded from xtext, with any byte that is not printable ASCII
    /// left in its `+XX` form so the report stays 7-bit.
    pub fn report_value(&self) -> String {
        format!("{}; {}", self.addr_type, printable_decode(&self.xtext))
    }
}

impl fmt::Display for Orcpt {
    /// The parameter value, as received.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{}", self.addr_type, self.xtext)
    }
}

/// `ENVID=xtext`: the sender's identifier for the transaction, echoed in
/// every notice about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Envid(String);

impl Envid {
    pub fn parse(value: &str) -> Result<Envid, DsnParamError> {
        if value.len() > MAX_ENVID_CHARS || xtext::decode(value).is_err() {
            return Err(DsnParamError::Envid);
        }
        Ok(Envid(value.to_string()))
    }

    /// The xtext as received, for passing on.
    pub fn as_xtext(&self) -> &str {
        &self.0
    }

    /// The RFC 3464 `Original-Envelope-Id` value: decoded, non-printable
    /// bytes left as `+XX`.
    pub fn report_value(&self) -> String {
        printable_decode(&self.0)
    }
}

/// Decodes xtext escapes of printable ASCII (other than `+`, kept escaped so
/// the result stays unambiguous) and keeps the rest escaped.
fn printable_decode(text: &str) -> String {
    let Ok(bytes) = xtext::decode(text) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(bytes.len());
    for byte in bytes {
        if byte.is_ascii_graphic() && byte != b'+' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("+{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_forms() {
        assert_eq!(Notify::parse("never"), Ok(Notify::NEVER));
        let all = Notify::parse("delay,SUCCESS,Failure").unwrap();
        assert!(all.success && all.failure && all.delay);
        assert_eq!(all.to_param(), "SUCCESS,FAILURE,DELAY");
        for bad in ["", "NEVER,SUCCESS", "SUCCESS,SUCCESS", "SUCCESS,", "X"] {
            assert_eq!(Notify::parse(bad), Err(DsnParamError::Notify), "{bad}");
        }
        assert!(Notify::wants_failure(None) && Notify::wants_delay(None));
        assert!(!Notify::wants_success(None));
        assert!(!Notify::wants_failure(Some(Notify::NEVER)));
    }

    #[test]
    fn orcpt_and_envid() {
        let orcpt = Orcpt::parse("rfc822;a+2Bb@example.com").unwrap();
        assert_eq!(orcpt.to_string(), "rfc822;a+2Bb@example.com");
        assert_eq!(orcpt.report_value(), "rfc822; a+2Bb@example.com");
        assert_eq!(
            Orcpt::parse("rfc822;x+41@y").unwrap().report_value(),
            "rfc822; xA@y"
        );
        for bad in ["rfc822", ";a@b", "rfc822;", "rfc822;a+4", "rf c;a"] {
            assert_eq!(Orcpt::parse(bad), Err(DsnParamError::Orcpt), "{bad}");
        }
        assert_eq!(Envid::parse("QQ+41+20").unwrap().report_value(), "QQA+20");
        assert!(Envid::parse(&"a".repeat(101)).is_err());
        assert!(Envid::parse("a+zz").is_err());
        assert_eq!(Ret::parse("hdrs"), Ok(Ret::Hdrs));
        assert!(Ret::parse("HEADERS").is_err());
    }
}
