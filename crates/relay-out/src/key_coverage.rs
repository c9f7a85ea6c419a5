//! Every key relay-out's own loaders accept has a reader outside the
//! config modules (issue 13 point 4); see
//! [`smtp_core::config::key_coverage`] for why and how. The files both
//! relays read are smtp-core's test.

use std::path::Path;

use smtp_core::config::key_coverage::{KeyReader, Reader::*, problems};
use smtp_core::config::{ConfigDir, CoreSettings};

use crate::config::RelayOutSettings;

/// Each key and the `RelayOutSettings` field (or path into it) that
/// carries it.
const TABLE: &[KeyReader] = &[
    ("relay.ini", "relay", "acl", Field("relay.acl")),
    ("relay.ini", "relay", "all", Field("relay.all")),
    // Decided while loading: the routes and the RCPT rule they make.
    ("relay.ini", "relay", "force_routing", Field("routes")),
    ("relay.ini", "relay", "dest_domains", Field("dest_domains")),
    ("outbound.ini", "main", "disabled", Field("disabled")),
    (
        "outbound.ini",
        "main",
        "concurrency_max",
        Field("concurrency_max"),
    ),
    (
        "outbound.ini",
        "main",
        "domain_concurrency_max",
        Field("domain_concurrency_max"),
    ),
    ("outbound.ini", "main", "enable_tls", Field("enable_tls")),
    (
        "outbound.ini",
        "main",
        "tls_fallback_plain",
        Field("tls_fallback_plain"),
    ),
    (
        "outbound.ini",
        "main",
        "always_split",
        Field("always_split"),
    ),
    (
        "outbound.ini",
        "main",
        "received_header",
        Field("received_header"),
    ),
    (
        "outbound.ini",
        "main",
        "connect_timeout",
        Field("connect_timeout"),
    ),
    ("outbound.ini", "main", "local_mx_ok", Field("local_mx_ok")),
    (
        "outbound.ini",
        "main",
        "ipv6_enabled",
        Field("ipv6_enabled"),
    ),
    ("outbound.ini", "main", "inet_prefer", Field("inet_prefer")),
    (
        "outbound.ini",
        "main",
        "maxTempFailures",
        Field("max_temp_failures"),
    ),
    // The spelling environment overrides arrive in.
    (
        "outbound.ini",
        "main",
        "maxtempfailures",
        Field("max_temp_failures"),
    ),
    (
        "outbound.ini",
        "main",
        "temp_fail_intervals",
        Field("temp_fail_intervals"),
    ),
    (
        "outbound.ini",
        "main",
        "max_queue_lifetime",
        Field("max_queue_lifetime"),
    ),
    (
        "outbound.ini",
        "main",
        "delay_warning_time",
        Field("delay_warning_time"),
    ),
    ("outbound.ini", "main", "queue_dir", Field("queue_dir")),
    ("outbound.ini", "main", "nameservers", Field("nameservers")),
    ("outbound.ini", "main", "remote_port", Field("remote_port")),
    (
        "outbound.ini",
        "main",
        "local_address",
        Field("local_address"),
    ),
    (
        "shaping.ini",
        "*",
        "max_connections",
        Field("max_connections"),
    ),
    (
        "shaping.ini",
        "*",
        "messages_per_minute",
        Field("messages_per_minute"),
    ),
    ("shaping.ini", "*", "suspend", Field("suspend")),
    (
        "shaping.ini",
        "*",
        "messages_per_connection",
        NotUsed {
            value: "2",
            report: crate::config::MESSAGES_PER_CONNECTION_REPORT,
        },
    ),
    // Read in courier/tls.rs (MxTls): the policy per domain, the CA file.
    (
        "tls_policy.ini",
        "*",
        "policy",
        Field("policies.for_domain"),
    ),
    ("tls_policy.ini", "*", "ca_file", Field("policies.ca_file")),
    // Read in courier/dane/mod.rs (Dane::new): DANE on or off, and the
    // signed name the start-up check asks for.
    ("tls_policy.ini", "*", "dane", Field("policies.dane")),
    (
        "tls_policy.ini",
        "*",
        "dane_probe",
        Field("policies.dane_probe"),
    ),
    // Read in courier/tls.rs (MxTls::new): MTA-STS on/off, the test-only
    // policy host port.
    ("tls_policy.ini", "*", "mta_sts", Field("policies.mta_sts")),
    (
        "tls_policy.ini",
        "*",
        "mta_sts_port",
        Field("policies.mta_sts_port"),
    ),
    // Read in tlsrpt/ (reporter(), TlsRpt::new).
    ("tlsrpt.ini", "main", "enabled", Field("enabled")),
    (
        "tlsrpt.ini",
        "main",
        "organization_name",
        Field("organization_name"),
    ),
    ("tlsrpt.ini", "main", "contact_info", Field("contact_info")),
    ("tlsrpt.ini", "main", "submitter", Field("submitter")),
    ("tlsrpt.ini", "main", "from", Field("from")),
];

#[test]
fn every_key_relay_out_accepts_has_a_reader() {
    let temp = tempfile::tempdir().expect("tempdir");
    let open = || {
        ConfigDir::open(temp.path())
            .expect("open")
            .with_environment(Vec::<(String, String)>::new())
    };
    let core_only = open();
    CoreSettings::load(&core_only).expect("core");
    let dir = open();
    CoreSettings::load(&dir).expect("core");
    RelayOutSettings::load(&dir).expect("relay-out");
    let core_files = core_only.known_keys();
    let known = dir.known_keys();
    let files: Vec<&str> = known
        .keys()
        .map(String::as_str)
        .filter(|file| !core_files.contains_key(*file))
        .collect();
    assert!(!files.is_empty());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let found = problems(&known, &files, TABLE, &workspace, |file, text| {
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::write(temp.path().join(file), text).expect("write");
        let dir = ConfigDir::open(temp.path())
            .expect("open")
            .with_environment(Vec::<(String, String)>::new());
        RelayOutSettings::load(&dir)
            .map(|settings| settings.warnings)
            .unwrap_or_else(|error| vec![error.to_string()])
    });
    assert!(found.is_empty(), "{}", found.join("\n"));
}
