//! `relay-out queue ...` and `relay-in queue ...` (`list | show ID | flush |
//! delete ID | bounce ID`): the operator's view of a spool, in the habits of
//! Postfix's `mailq` / `postqueue -f` / `postsuper -d`.
//!
//! One implementation for both daemons, so the same words give the same
//! output on relay-out's queue and relay-in's backup spool. Safe while the
//! daemon runs: reads never change anything, `delete` and `bounce` use the
//! spool's concurrent-safe operations, and `flush` only signals the daemon.

use clap::Subcommand;
use std::fmt::Write as _;
use std::process::ExitCode;

use crate::{
    Extras, Listing, MAX_SHOWN_HEADER_BYTES, QueueEntry, QueueId, RecipientStatus, SignalError,
    Spool, SpoolError, format_rfc3339,
};

/// The `queue` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// List queued messages with each recipient's state (like mailq).
    List,
    /// Show one message: envelope, delivery state and headers.
    Show { id: String },
    /// Retry all deferred mail now (SIGHUP to the daemon, like postqueue -f).
    Flush,
    /// Delete a message without notice (like postsuper -d).
    Delete { id: String },
    /// Give up on a message now: its pending recipients bounce to the sender.
    Bounce { id: String },
}

/// Why a queue command failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error("{0}: no such message in the queue")]
    NotQueued(QueueId),
}

/// Runs one queue command on `spool` (opened by the daemon's own rules);
/// prints its result on stdout, or an error on stderr with exit status 1.
pub fn run<X: Extras>(spool: &Spool<X>, command: &QueueCommand) -> ExitCode {
    match execute(spool, command) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{} queue: {error}", spool.daemon());
            ExitCode::FAILURE
        }
    }
}

fn execute<X: Extras>(spool: &Spool<X>, command: &QueueCommand) -> Result<String, CliError> {
    let daemon = spool.daemon();
    match command {
        QueueCommand::List => {
            let listing = spool.list()?;
            for problem in &listing.problems {
                eprintln!("{daemon} queue: warning: {problem}");
            }
            Ok(format_listing(&listing))
        }
        QueueCommand::Show { id } => {
            let id = QueueId::parse(id)?;
            let entry = spool.read_entry(&id).map_err(|e| not_queued(e, &id))?;
            let headers = spool
                .read_headers(&id, MAX_SHOWN_HEADER_BYTES)
                .map_err(|e| not_queued(e, &id))?;
            Ok(format_entry(&entry, &headers))
        }
        QueueCommand::Flush => {
            let pid = spool.send_hangup()?;
            Ok(format!(
                "{daemon} (PID {pid}): flush requested, deferred mail is being retried now\n"
            ))
        }
        QueueCommand::Delete { id } => {
            let id = QueueId::parse(id)?;
            spool.read_envelope(&id).map_err(|e| not_queued(e, &id))?;
            spool.remove(&id)?;
            Ok(format!("{id}: deleted\n"))
        }
        QueueCommand::Bounce { id } => {
            let id = QueueId::parse(id)?;
            spool.request_bounce(&id).map_err(|e| not_queued(e, &id))?;
            Ok(match spool.send_hangup() {
                Ok(pid) => {
                    format!("{id}: bounce requested; {daemon} (PID {pid}) bounces it now\n")
                }
                Err(_) => format!("{id}: bounce requested; it bounces when {daemon} runs\n"),
            })
        }
    }
}

fn not_queued(error: SpoolError, id: &QueueId) -> CliError {
    match error {
        SpoolError::Gone(_) => CliError::NotQueued(id.clone()),
        other => CliError::Spool(other),
    }
}

/// The sender as mailq shows it: `<>` for a bounce.
fn sender<X: Extras>(entry: &QueueEntry<X>) -> &str {
    if entry.envelope.sender.is_empty() {
        "<>"
    } else {
        &entry.envelope.sender
    }
}

fn status_word(status: RecipientStatus) -> &'static str {
    match status {
        RecipientStatus::Pending => "pending",
        RecipientStatus::Delivered => "delivered",
        RecipientStatus::Failed => "failed",
        RecipientStatus::Bounced => "bounced",
    }
}

/// Column where senders and recipients start in `list`.
const ADDRESS_COLUMN: usize = 52;

/// mailq-style listing. A `!` after the id marks a requested bounce.
pub fn format_listing<X: Extras>(listing: &Listing<X>) -> String {
    if listing.entries.is_empty() {
        return "Mail queue is empty\n".to_string();
    }
    let mut out = format!(
        "{:<21}{:>9} {:<20} {}\n",
        "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------"
    );
    let indent = " ".repeat(ADDRESS_COLUMN);
    for entry in &listing.entries {
        let envelope = &entry.envelope;
        let marker = if entry.bounce_requested { "!" } else { " " };
        let _ = writeln!(
            out,
            "{}{marker}{:>9} {:<20} {}",
            envelope.id,
            entry.size,
            format_rfc3339(envelope.arrival),
            sender(entry)
        );
        for recipient in &envelope.recipients {
            let mut state = status_word(recipient.status).to_string();
            if recipient.attempts > 0 {
                let _ = write!(state, ", {} attempt(s)", recipient.attempts);
            }
            // Before the first attempt a recipient is simply due: its time
            // says nothing.
            if let (RecipientStatus::Pending, Some(next), 1..) =
                (recipient.status, recipient.next_attempt, recipient.attempts)
            {
                let _ = write!(state, ", next {}", format_rfc3339(next));
            }
            let _ = writeln!(out, "{indent}{} ({state})", recipient.address);
            if let Some(reply) = &recipient.last_reply {
                let via = recipient
                    .last_mx
                    .as_deref()
                    .map(|mx| format!(" [{mx}]"))
                    .unwrap_or_default();
                let _ = writeln!(out, "{indent}  {reply}{via}");
            }
        }
        out.push('\n');
    }
    let total: u64 = listing.entries.iter().map(|entry| entry.size).sum();
    let count = listing.entries.len();
    let _ = writeln!(
        out,
        "-- {} Kbytes in {count} Request{}.",
        total.div_ceil(1024),
        if count == 1 { "" } else { "s" }
    );
    out
}

/// Everything about one message, then its header section.
pub fn format_entry<X: Extras>(entry: &QueueEntry<X>, headers: &[u8]) -> String {
    let envelope = &entry.envelope;
    let yes_no = |flag: bool| if flag { "yes" } else { "no" };
    let mut out = String::new();
    let _ = writeln!(out, "Queue ID: {}", envelope.id);
    let _ = writeln!(out, "Arrival: {}", format_rfc3339(envelope.arrival));
    let _ = writeln!(out, "Sender: <{}>", envelope.sender);
    let _ = writeln!(out, "Client: {}", envelope.client.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "Size: {} bytes", entry.size);
    let _ = writeln!(out, "SMTPUTF8: {}", yes_no(envelope.smtputf8));
    let _ = writeln!(out, "8BITMIME: {}", yes_no(envelope.eight_bit_mime));
    // RFC 8689: what the sender asked of the TLS on the way.
    let tls_request = if envelope.requiretls {
        "REQUIRETLS"
    } else if envelope.tls_required_no {
        "TLS-Required: No"
    } else {
        "none"
    };
    let _ = writeln!(out, "TLS request: {tls_request}");
    let _ = writeln!(out, "Bounce requested: {}", yes_no(entry.bounce_requested));
    let _ = writeln!(out, "Recipients:");
    for recipient in &envelope.recipients {
        let _ = write!(
            out,
            "  {}: {}, {} attempt(s)",
            recipient.address,
            status_word(recipient.status),
            recipient.attempts
        );
        if let Some(next) = recipient.next_attempt {
            let _ = write!(out, ", next attempt {}", format_rfc3339(next));
        }
        if let Some(mx) = &recipient.last_mx {
            let _ = write!(out, ", last MX {mx}");
        }
        if let Some(reply) = &recipient.last_reply {
            let _ = write!(out, ", last reply: {reply}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Headers:");
    out.push_str(&String::from_utf8_lossy(headers).replace("\r\n", "\n"));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Envelope, RecipientState};
    use std::time::{Duration, SystemTime};

    fn entry() -> QueueEntry {
        let arrival = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut deferred = RecipientState::new("bob@example.net", arrival);
        deferred.attempts = 2;
        deferred.next_attempt = Some(arrival + Duration::from_secs(600));
        deferred.last_reply = Some("450 4.2.0 Mailbox busy".into());
        deferred.last_mx = Some("mx.example.net".into());
        let mut delivered = RecipientState::new("carol@example.com", arrival);
        delivered.status = RecipientStatus::Delivered;
        delivered.attempts = 1;
        delivered.next_attempt = None;
        QueueEntry {
            envelope: Envelope {
                id: QueueId::parse("01hf0000000000000000").expect("id"),
                arrival,
                sender: "alice@example.org".into(),
                recipients: vec![deferred, delivered],
                client: Some("10.0.0.2 helo=mailcow".into()),
                smtputf8: false,
                eight_bit_mime: true,
                ret: None,
                envid: None,
                delay_warned: None,
                requiretls: true,
                tls_required_no: false,
                extras: crate::NoExtras {},
            },
            size: 2048,
            bounce_requested: true,
        }
    }

    #[test]
    fn listing_looks_like_mailq() {
        let listing: Listing = Listing {
            entries: vec![entry()],
            problems: Vec::new(),
        };
        let text = format_listing(&listing);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("-Queue ID-"), "{text}");
        assert_eq!(
            lines[1],
            "01hf0000000000000000!     2048 2023-11-14T22:13:20Z alice@example.org"
        );
        assert_eq!(
            lines[2].trim_start(),
            "bob@example.net (pending, 2 attempt(s), next 2023-11-14T22:23:20Z)"
        );
        assert_eq!(
            lines[3].trim_start(),
            "450 4.2.0 Mailbox busy [mx.example.net]"
        );
        assert_eq!(
            lines[4].trim_start(),
            "carol@example.com (delivered, 1 attempt(s))"
        );
        assert_eq!(lines.last(), Some(&"-- 2 Kbytes in 1 Request."));
        assert_eq!(
            format_listing(&Listing::<crate::NoExtras>::default()),
            "Mail queue is empty\n"
        );
    }

    #[test]
    fn show_gives_the_whole_state_and_the_headers() {
        let text = format_entry(&entry(), b"Subject: hi\r\nFrom: a@b\r\n");
        for expected in [
            "Queue ID: 01hf0000000000000000\n",
            "Sender: <alice@example.org>\n",
            "Client: 10.0.0.2 helo=mailcow\n",
            "Size: 2048 bytes\n",
            "8BITMIME: yes\n",
            "TLS request: REQUIRETLS\n",
            "Bounce requested: yes\n",
            "  bob@example.net: pending, 2 attempt(s), next attempt 2023-11-14T22:23:20Z, last MX mx.example.net, last reply: 450 4.2.0 Mailbox busy\n",
            "  carol@example.com: delivered, 1 attempt(s)\n",
            "Headers:\nSubject: hi\nFrom: a@b\n",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }
}
