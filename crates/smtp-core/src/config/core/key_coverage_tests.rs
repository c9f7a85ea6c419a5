//! Every key of the files both relays read (`CoreSettings`) has a reader
//! outside the config modules (issue 13 point 4); see
//! [`crate::config::key_coverage`] for why and how.

use std::path::Path;

use crate::config::key_coverage::{KeyReader, Reader::*, problems};
use crate::config::{ConfigDir, CoreSettings};

/// Each key and the `CoreSettings` field (or path into it) that carries it,
/// or the session setting `convert.rs` makes of it.
const TABLE: &[KeyReader] = &[
    ("smtp.ini", "main", "listen", Field("listen")),
    // Haraka's legacy pair, folded into `listen` when `listen` is unset.
    ("smtp.ini", "main", "listen_host", Field("listen")),
    ("smtp.ini", "main", "port", Field("listen")),
    (
        "smtp.ini",
        "main",
        "inactivity_timeout",
        Field("inactivity_timeout"),
    ),
    (
        "smtp.ini",
        "main",
        "force_shutdown_timeout",
        Field("force_shutdown_timeout"),
    ),
    ("smtp.ini", "main", "smtps_port", Field("smtps_port")),
    (
        "smtp.ini",
        "main",
        "submission_port",
        Field("submission_port"),
    ),
    (
        "smtp.ini",
        "main",
        "max_connections",
        Field("max_connections"),
    ),
    ("smtp.ini", "main", "nameservers", Field("nameservers")),
    ("smtp.ini", "main", "rdns", Field("rdns")),
    ("smtp.ini", "main", "dns_timeout", Field("dns_timeout")),
    ("smtp.ini", "main", "freebind", Field("freebind")),
    ("connection.ini", "main", "smtputf8", Field("smtputf8")),
    ("connection.ini", "haproxy", "hosts", Field("haproxy_hosts")),
    (
        "connection.ini",
        "main",
        "bare_newline",
        Field("bare_newline"),
    ),
    ("connection.ini", "main", "spool_dir", Field("spool_dir")),
    (
        "connection.ini",
        "main",
        "spool_after",
        Field("spool_after"),
    ),
    (
        "connection.ini",
        "headers",
        "add_received",
        Field("add_received"),
    ),
    (
        "connection.ini",
        "headers",
        "max_received",
        Field("max_received"),
    ),
    // Through `convert.rs` into the session's limits.
    ("connection.ini", "max", "bytes", Field("max_message_bytes")),
    (
        "connection.ini",
        "max",
        "line_length",
        Field("max_line_length"),
    ),
    (
        "connection.ini",
        "max",
        "recipients",
        Field("max_recipients"),
    ),
    ("connection.ini", "message", "greeting", Field("greeting")),
    ("connection.ini", "message", "helo", Field("helo_message")),
    ("connection.ini", "message", "close", Field("close_message")),
    (
        "early_talker.ini",
        "main",
        "pause",
        Field("early_talker_pause"),
    ),
    (
        "early_talker.ini",
        "main",
        "reject",
        Field("early_talker_reject"),
    ),
    (
        "limit.ini",
        "concurrency",
        "max",
        Field("max_connections_per_ip"),
    ),
    (
        "limit.ini",
        "unrecognized_commands",
        "max",
        Field("max_bad_commands"),
    ),
    ("limit.ini", "rate_conn", "*", Field("connection_rate")),
    ("limit.ini", "rate_rcpt_host", "*", Field("recipient_rate")),
    ("metrics.ini", "main", "listen", Field("metrics_listen")),
    ("tls.ini", "main", "key", Field("tls.files")),
    ("tls.ini", "main", "cert", Field("tls.files")),
    ("tls.ini", "main", "minVersion", Field("min_version")),
    // The spelling environment overrides arrive in.
    ("tls.ini", "main", "minversion", Field("min_version")),
    ("tls.ini", "no_tls_hosts", "*", Field("no_tls_hosts")),
];

#[test]
fn every_core_key_has_a_reader() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = ConfigDir::open(temp.path())
        .expect("open")
        .with_environment(Vec::<(String, String)>::new());
    CoreSettings::load(&dir).expect("load");
    let known = dir.known_keys();
    let files: Vec<&str> = known.keys().map(String::as_str).collect();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let found = problems(&known, &files, TABLE, &workspace, |_, _| Vec::new());
    assert!(found.is_empty(), "{}", found.join("\n"));
}
