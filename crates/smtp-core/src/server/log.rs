//! The log lines of a session that a mail administrator greps for: one per
//! transaction, the AUTH outcome, and a session's report that its driver
//! fed it input out of sequence.
//!
//! The session state machine does no logging (it is sans-IO: no sockets,
//! no clocks, no log sink); it reports what happened, and the driver writes
//! it here, with the connection's fields.

use tracing::{error, info, warn};

use smtp_protocol::ip_text::IpText;
use smtp_protocol::sasl::Credentials;
use smtp_protocol::session::TransactionRecord;
use smtp_protocol::session::{AuthVerdict, SessionInfo};

/// The one line per transaction.
pub(super) fn transaction(info: &SessionInfo, record: &TransactionRecord) {
    let envelope = &record.envelope;
    let rcpts: Vec<String> = envelope.recipients.iter().map(|r| r.to_string()).collect();
    let tls = info
        .tls
        .as_ref()
        .map(|t| t.protocol.as_str())
        .unwrap_or("no");
    let helo = info
        .greeting
        .as_ref()
        .map(|g| g.name.as_str())
        .unwrap_or("");
    let outcome = if record.reply.is_positive() {
        "accepted"
    } else {
        "rejected"
    };
    info!(
        conn = %info.conn_id,
        id = %envelope.id,
        client = %IpText(info.client.peer.ip()),
        proxy = info.client.proxy.map(tracing::field::display),
        helo = %helo,
        from = %envelope.from,
        rcpts = %rcpts.join(","),
        size = record.size,
        tls = %tls,
        code = record.reply.code(),
        "message {outcome}: {}",
        record.reply
    );
}

/// The policy's AUTH verdict. The user name only: credentials never reach
/// a log.
pub(super) fn authentication(info: &SessionInfo, credentials: &Credentials, verdict: AuthVerdict) {
    match verdict {
        AuthVerdict::Accepted => {
            info!(conn = %info.conn_id, client = %info.client.peer.ip(), proxy = info.client.proxy.map(tracing::field::display), user = %credentials.user(), "authenticated")
        }
        _ => {
            warn!(conn = %info.conn_id, client = %info.client.peer.ip(), proxy = info.client.proxy.map(tracing::field::display), user = %credentials.user(), ?verdict, "authentication failed")
        }
    }
}

/// [`Session::take_out_of_sequence`](smtp_protocol::session::Session::take_out_of_sequence)
/// said the driver fed the session input it did not expect.
pub(super) fn out_of_sequence(info: &SessionInfo) {
    error!(conn = %info.conn_id, "session input out of sequence (driver bug)");
}
