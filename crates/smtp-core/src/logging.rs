//! Log output: human-readable lines on stderr, or structured journald
//! entries when systemd runs us.
//!
//! journald goes through `tracing-journald` rather than
//! `systemd-journal-logger`: the latter is a `log` backend and would flatten
//! the fields our events carry (client, id, code) into the message text,
//! while tracing-journald writes each one as its own journal field
//! (`CLIENT=`, `CODE=`), which `journalctl CLIENT=203.0.113.9` can select.

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
        tracing_subscriber::registry()
            .with(filter)
            .with(journald)
            .init();
        return "journald";
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    "stderr"
}
