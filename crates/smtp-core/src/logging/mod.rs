//! Log output: human-readable lines on stderr, or structured journald
//! entries when systemd runs us.
//!
//! journald goes through `tracing-journald` rather than
//! `systemd-journal-logger`: the latter is a `log` backend and would flatten
//! the fields our events carry (client, id, code) into the message text,
//! while tracing-journald writes each one as its own journal field
//! (`CLIENT=`, `CODE=`), which `journalctl CLIENT=203.0.113.9` can select.
//!
//! The field prefix is off. tracing-journald by default writes every field
//! but `message` as `F_<NAME>` (`F_CLIENT=`), to keep them apart from the
//! journal's own fields; then the names in docs/troubleshooting.md select
//! nothing. Without the prefix a field is its name upper-cased, `.` made
//! `_` (`client` -> `CLIENT`, `queue_id` -> `QUEUE_ID`), and `message` is
//! `MESSAGE`. The price is that a field must not be named like a field the
//! layer or journald already writes (`priority`, `target`, `code_file`,
//! `code_line`, `syslog_identifier`, `message_id`, `errno`): none of ours
//! is. Levels map to `PRIORITY` as tracing-journald does by default: error
//! 3, warn 4, info 5 (notice), debug 6, trace 7; `SYSLOG_IDENTIFIER` is the
//! binary's name. tests/tests/e2e/journald.rs checks the names, one
//! `PRIORITY` per entry and the error, warn, info and debug values on a
//! journal socket of its own.

mod fields;

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `default_level` applies unless `RUST_LOG`
/// says otherwise. Returns where logs go, for the startup line.
pub fn init(default_level: &str) -> &'static str {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal.
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let journald = journald.with_field_prefix(None);
        tracing_subscriber::registry()
            .with(filter)
            .with(journald)
            .init();
        return "journald";
    }
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if std::io::stderr().is_terminal() {
        lines.with_ansi(true).init();
    } else {
        lines
            .with_ansi(false)
            .fmt_fields(fields::PlainFields)
            .init();
    }
    "stderr"
}
