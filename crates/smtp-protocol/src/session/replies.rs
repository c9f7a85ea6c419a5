//! Every reply the server side of a session can send, each text defined once.
//!
//! Codes follow RFC 5321 and enhanced codes RFC 3463; texts follow Haraka's
//! where monitoring may grep for them ("I cannot deliver mail for …",
//! "Too many unrecognized commands").

use crate::reply::{EnhancedCode, Reply};

const fn ec(class: u8, subject: u16, detail: u16) -> Option<EnhancedCode> {
    Some(EnhancedCode::new(class, subject, detail))
}

pub fn greeting(me: &str, custom: &[String], conn_id: &str) -> Reply {
    match custom.split_first() {
        None => Reply::new(220, None, format!("{me} ESMTP Postern ready ({conn_id})")),
        Some((first, rest)) => {
            let mut lines = vec![format!("{me} ESMTP {first} ({conn_id})")];
            lines.extend(rest.iter().cloned());
            Reply::multiline(220, None, lines)
        }
    }
}

pub fn helo(me: &str, remote: &str, message: &str) -> Reply {
    Reply::new(250, None, format!("{me} Hello {remote}, {message}"))
}

pub fn ehlo(me: &str, remote: &str, message: &str, keywords: Vec<String>) -> Reply {
    let mut lines = vec![format!("{me} Hello {remote}, {message}")];
    lines.extend(keywords);
    Reply::multiline(250, None, lines)
}

pub fn ok() -> Reply {
    Reply::new(250, ec(2, 0, 0), "OK")
}

pub fn quit(me: &str, close_message: &str) -> Reply {
    Reply::new(221, ec(2, 0, 0), format!("{me} {close_message}"))
}

pub fn help() -> Reply {
    Reply::new(
        214,
        ec(2, 0, 0),
        "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS",
    )
}

pub fn vrfy() -> Reply {
    Reply::new(
        252,
        ec(2, 5, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

pub fn sender_ok(path: &str) -> Reply {
    Reply::new(250, ec(2, 1, 0), format!("Sender {path} OK"))
}

pub fn recipient_ok(path: &str) -> Reply {
    Reply::new(250, ec(2, 1, 5), format!("Recipient {path} OK"))
}

pub fn start_data() -> Reply {
    Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
}

pub fn message_accepted(txn_id: &str) -> Reply {
    Reply::new(250, ec(2, 0, 0), format!("Message accepted ({txn_id})"))
}

pub fn start_tls() -> Reply {
    Reply::new(220, ec(2, 0, 0), "Ready to start TLS")
}

// --- sequence errors (503 5.5.1) ---

pub fn need_helo() -> Reply {
    Reply::new(503, ec(5, 5, 1), "Use EHLO/HELO before MAIL")
}

pub fn nested_mail() -> Reply {
    Reply::new(503, ec(5, 5, 1), "Nested MAIL command")
}

pub fn need_mail_before_rcpt() -> Reply {
    Reply::new(503, ec(5, 5, 1), "Use MAIL before RCPT")
}

pub fn need_mail_before_data() -> Reply {
    Reply::new(503, ec(5, 5, 1), "Use MAIL before DATA")
}

pub fn need_rcpt_before_data() -> Reply {
    Reply::new(503, ec(5, 5, 1), "Use RCPT before DATA")
}

/// RFC 2920 §3.1: DATA after a pipelined group in which every RCPT failed.
pub fn no_valid_recipients() -> Reply {
    Reply::new(554, ec(5, 5, 1), "No valid recipients")
}

pub fn tls_already_active() -> Reply {
    Reply::new(503, ec(5, 5, 1), "TLS already active")
}

// --- syntax and command errors ---

pub fn unrecognized_command() -> Reply {
    Reply::new(500, ec(5, 5, 1), "Unrecognized command")
}

pub fn not_implemented() -> Reply {
    Reply::new(502, ec(5, 5, 1), "Command not implemented")
}

pub fn line_too_long() -> Reply {
    Reply::new(500, ec(5, 5, 2), "Line too long")
}

pub fn syntax_error(detail: &str) -> Reply {
    Reply::new(501, ec(5, 5, 4), detail.to_string())
}

pub fn bad_sender_address(detail: &str) -> Reply {
    Reply::new(553, ec(5, 1, 7), detail.to_string())
}

pub fn bad_recipient_address(detail: &str) -> Reply {
    Reply::new(553, ec(5, 1, 3), detail.to_string())
}

pub fn bad_parameters(detail: &str) -> Reply {
    Reply::new(555, ec(5, 5, 4), detail.to_string())
}

pub fn parameters_need_ehlo() -> Reply {
    Reply::new(555, ec(5, 5, 4), "Invalid command parameters (use EHLO)")
}

pub fn needs_smtputf8() -> Reply {
    Reply::new(553, ec(5, 6, 7), "Non-ASCII address requires SMTPUTF8")
}

/// `MAIL FROM:<…> REQUIRETLS` in clear text: RFC 8689's "encryption
/// needed" status (5.7.10) with RFC 3207's 530 "issue STARTTLS first".
pub fn requiretls_needs_tls() -> Reply {
    Reply::new(
        530,
        ec(5, 7, 10),
        "REQUIRETLS needs a TLS session: issue STARTTLS first",
    )
}

pub fn tls_not_available() -> Reply {
    Reply::new(454, ec(4, 7, 0), "TLS not available")
}

// --- limits ---

pub fn message_too_big() -> Reply {
    Reply::new(
        552,
        ec(5, 3, 4),
        "Message size exceeds fixed maximum message size",
    )
}

pub fn too_many_recipients() -> Reply {
    Reply::new(452, ec(4, 5, 3), "Too many recipients")
}

pub fn bare_newline() -> Reply {
    Reply::new(
        550,
        ec(5, 5, 2),
        "Message contains bare CR or LF characters; only CRLF line endings are allowed",
    )
}

pub fn mail_loop(count: usize) -> Reply {
    Reply::new(
        554,
        ec(5, 4, 6),
        format!("Too many Received headers ({count}) - possible mail loop"),
    )
}

pub fn too_many_bad_commands(me: &str) -> Reply {
    Reply::new(
        421,
        ec(4, 7, 0),
        format!("{me} Too many unrecognized commands, closing connection"),
    )
}

pub fn timeout(me: &str) -> Reply {
    Reply::new(
        421,
        ec(4, 4, 2),
        format!("{me} Timeout exceeded, closing connection"),
    )
}

pub fn shutting_down(me: &str) -> Reply {
    Reply::new(
        421,
        ec(4, 3, 2),
        format!("{me} Service shutting down, closing connection"),
    )
}

pub fn too_many_connections(me: &str) -> Reply {
    Reply::new(
        421,
        ec(4, 7, 0),
        format!("{me} Too many connections, try again later"),
    )
}

pub fn too_many_connections_from_ip(me: &str) -> Reply {
    Reply::new(
        421,
        ec(4, 7, 0),
        format!("{me} Too many connections from your address, try again later"),
    )
}

pub fn connection_rate_exceeded(me: &str) -> Reply {
    Reply::new(
        421,
        ec(4, 7, 0),
        format!("{me} Too many connections from your address recently, try again later"),
    )
}

pub fn recipient_rate_exceeded() -> Reply {
    Reply::new(
        451,
        ec(4, 7, 1),
        "Too many recipients from your address recently, try again later",
    )
}

// --- PROXY protocol (connection.ini `[haproxy] hosts[]`); Haraka's texts ---

/// A PROXY header from a client that is not a listed proxy.
pub fn proxy_not_allowed(me: &str, client: std::net::IpAddr) -> Reply {
    Reply::new(
        421,
        ec(4, 7, 0),
        format!("{me} PROXY not allowed from {client}"),
    )
}

/// A listed proxy sent no complete header in time.
pub fn proxy_timeout(me: &str) -> Reply {
    Reply::new(421, ec(4, 4, 2), format!("{me} PROXY timeout"))
}

/// A listed proxy sent something that is not a PROXY v1 or v2 header.
pub fn proxy_invalid(me: &str) -> Reply {
    Reply::new(421, ec(4, 5, 2), format!("{me} Invalid PROXY format"))
}

pub fn early_talker(me: &str) -> Reply {
    Reply::new(
        554,
        ec(5, 5, 0),
        format!("{me} SMTP protocol violation: input sent before the greeting"),
    )
}

/// A handler failed in a way it did not turn into a reply (a bug, not a
/// verdict): the sender must retry, never assume success.
pub fn local_error() -> Reply {
    Reply::new(
        451,
        ec(4, 3, 0),
        "Local error in processing, try again later",
    )
}

// --- AUTH (RFC 4954) ---

/// `334` carries a base64 challenge and no enhanced code.
pub fn auth_challenge(base64: String) -> Reply {
    Reply::new(334, None, base64)
}

pub fn auth_succeeded() -> Reply {
    Reply::new(235, ec(2, 7, 0), "Authentication successful")
}

pub fn auth_failed() -> Reply {
    Reply::new(535, ec(5, 7, 8), "Authentication credentials invalid")
}

pub fn auth_temporary_failure() -> Reply {
    Reply::new(
        454,
        ec(4, 7, 0),
        "Temporary authentication failure, try again later",
    )
}

pub fn auth_unknown_mechanism() -> Reply {
    Reply::new(504, ec(5, 5, 4), "Unrecognized authentication type")
}

pub fn auth_already_done() -> Reply {
    Reply::new(503, ec(5, 5, 1), "Already authenticated")
}

pub fn auth_in_transaction() -> Reply {
    Reply::new(
        503,
        ec(5, 5, 1),
        "AUTH not allowed during a mail transaction",
    )
}

pub fn auth_need_ehlo() -> Reply {
    Reply::new(503, ec(5, 5, 1), "Use EHLO before AUTH")
}

pub fn auth_bad_response(detail: &str) -> Reply {
    Reply::new(501, ec(5, 5, 2), format!("Invalid AUTH response: {detail}"))
}

pub fn auth_cancelled() -> Reply {
    Reply::new(501, ec(5, 0, 0), "Authentication cancelled")
}
