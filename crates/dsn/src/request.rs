//! What the sender asked for with DSN's envelope parameters (RFC 3461), as
//! kept in a spool envelope: `RET`/`ENVID` per message, `NOTIFY`/`ORCPT` per
//! recipient.
//!
//! It exists so both relays' spools store these the same way (their wire
//! form, readable in `queue show`) and read them back as checked values. A
//! stored value that no longer parses (a hand-edited file) reads as absent,
//! which means the defaults: failure and delay notices, headers only.

use smtp_protocol::command::{MailParams, RcptParams};
use smtp_protocol::dsn_params::{Envid, Notify, Orcpt, Ret};
use spool::{Envelope, Extras, RecipientState};

/// Keeps the MAIL parameters `RET` and `ENVID` in the envelope.
pub fn store_mail<X: Extras>(params: &MailParams, envelope: &mut Envelope<X>) {
    envelope.ret = params.ret.map(|ret| ret.as_str().to_string());
    envelope.envid = params.envid.as_ref().map(|id| id.as_xtext().to_string());
}

/// Keeps the RCPT parameters `NOTIFY` and `ORCPT` in the recipient's state.
pub fn store_rcpt(params: &RcptParams, recipient: &mut RecipientState) {
    recipient.notify = params.notify.map(Notify::to_param);
    recipient.orcpt = params.orcpt.as_ref().map(ToString::to_string);
}

/// The MAIL parameters to pass on to a next hop that offers DSN.
pub fn mail_params<X: Extras>(envelope: &Envelope<X>) -> MailParams {
    MailParams {
        ret: ret(envelope),
        envid: envid(envelope),
        ..MailParams::default()
    }
}

pub fn ret<X: Extras>(envelope: &Envelope<X>) -> Option<Ret> {
    envelope.ret.as_deref().and_then(|v| Ret::parse(v).ok())
}

pub fn envid<X: Extras>(envelope: &Envelope<X>) -> Option<Envid> {
    envelope.envid.as_deref().and_then(|v| Envid::parse(v).ok())
}

pub fn notify(recipient: &RecipientState) -> Option<Notify> {
    recipient
        .notify
        .as_deref()
        .and_then(|v| Notify::parse(v).ok())
}

pub fn orcpt(recipient: &RecipientState) -> Option<Orcpt> {
    recipient
        .orcpt
        .as_deref()
        .and_then(|v| Orcpt::parse(v).ok())
}

/// The RCPT parameters to pass on for `recipient`.
pub fn rcpt_params(recipient: &RecipientState) -> RcptParams {
    RcptParams {
        notify: notify(recipient),
        orcpt: orcpt(recipient),
        other: Vec::new(),
    }
}

/// Whether the sender wants a notice when this recipient fails.
pub fn wants_failure(recipient: &RecipientState) -> bool {
    Notify::wants_failure(notify(recipient))
}

/// Whether the sender wants a notice while this recipient is delayed.
pub fn wants_delay(recipient: &RecipientState) -> bool {
    Notify::wants_delay(notify(recipient))
}

/// Whether the sender asked to hear of this recipient's delivery.
pub fn wants_success(recipient: &RecipientState) -> bool {
    Notify::wants_success(notify(recipient))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn stored_values_round_trip_and_garbage_reads_as_absent() {
        let mut state = RecipientState::new("a@b.example", SystemTime::now());
        let params = RcptParams {
            notify: Some(Notify::parse("DELAY,SUCCESS").unwrap()),
            orcpt: Some(Orcpt::parse("rfc822;a+2Bx@b.example").unwrap()),
            other: Vec::new(),
        };
        store_rcpt(&params, &mut state);
        assert_eq!(state.notify.as_deref(), Some("SUCCESS,DELAY"));
        assert_eq!(state.orcpt.as_deref(), Some("rfc822;a+2Bx@b.example"));
        assert_eq!(rcpt_params(&state), params);
        assert!(wants_success(&state) && wants_delay(&state) && !wants_failure(&state));
        state.notify = Some("SOMETIMES".into());
        assert_eq!(notify(&state), None);
        assert!(wants_failure(&state));
    }
}
