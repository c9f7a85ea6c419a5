//! Every key relay-in's own loaders accept has a reader outside the config
//! modules (issue 13 point 4); see [`smtp_core::config::key_coverage`] for
//! why and how. The files both relays read are smtp-core's test.

use std::path::Path;

use smtp_core::config::key_coverage::{KeyReader, Reader::*, problems};
use smtp_core::config::{ConfigDir, CoreSettings};

use crate::config::RelayInSettings;

/// Each key and the `RelayInSettings` field (or path into it) that
/// carries it. smtp_forward.ini's keys are read in `[main]` and in each
/// per-domain section (which takes only the route's keys).
const TABLE: &[KeyReader] = &[
    // The file that replaces host_list.
    (
        "rcpt_to.in_host_list.ini",
        "main",
        "host_list",
        Field("local_domains"),
    ),
    ("smtp_forward.ini", "*", "host", Field("route.host")),
    ("smtp_forward.ini", "*", "port", Field("route.port")),
    (
        "smtp_forward.ini",
        "*",
        "enable_tls",
        Field("route.enable_tls"),
    ),
    ("smtp_forward.ini", "*", "auth_type", Field("route.auth")),
    ("smtp_forward.ini", "*", "auth_user", Field("route.auth")),
    ("smtp_forward.ini", "*", "auth_pass", Field("route.auth")),
    (
        "smtp_forward.ini",
        "*",
        "enable_outbound",
        NotUsed {
            value: "true",
            report: "[main] enable_outbound=true is ignored: relay-in never sends mail to the internet",
        },
    ),
    (
        "smtp_forward.ini",
        "*",
        "connect_timeout",
        Field("connect_timeout"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "timeout",
        Field("settings.timeout"),
    ),
    ("smtp_forward.ini", "*", "tls_verify", Field("tls_verify")),
    ("smtp_forward.ini", "*", "ca_file", Field("ca_file")),
    (
        "smtp_forward.ini",
        "*",
        "domain_selector",
        Field("domain_selector"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "check_recipient",
        Field("check_recipient"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "check_sender",
        Field("check_sender"),
    ),
    ("smtp_forward.ini", "*", "mode", Field("settings.mode")),
    (
        "smtp_forward.ini",
        "*",
        "xclient",
        Field("settings.xclient"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "probe_interval",
        Field("forward.probe_interval"),
    ),
    // The backup spool's (mode=spool), read in backup/.
    ("smtp_forward.ini", "*", "spool_dir", Field("settings.dir")),
    (
        "smtp_forward.ini",
        "*",
        "verified_ttl",
        Field("settings.verified_ttl"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "spool_max_bytes",
        Field("settings.max_bytes"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "spool_max_messages",
        Field("settings.max_messages"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "max_spool_age",
        Field("settings.max_age"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "spool_concurrency",
        Field("settings.concurrency"),
    ),
    (
        "smtp_forward.ini",
        "*",
        "spool_retry_intervals",
        Field("settings.retry_intervals"),
    ),
    // The seed's invented file, mapped onto smtp_forward.ini's keys.
    ("xclient.ini", "main", "enabled", Field("settings.xclient")),
    ("xclient.ini", "main", "forward", Field("settings.xclient")),
    ("xclient.ini", "main", "destination", Field("route.host")),
];

/// A config directory under the system's temporary directory (relay-in
/// has no tempfile dev-dependency), removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(files: &[(&str, &str)]) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "postern-relay-in-keys-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("mkdir");
        for (name, text) in files {
            std::fs::write(path.join(name), text).expect("write");
        }
        Self(path)
    }

    fn open(&self) -> ConfigDir {
        ConfigDir::open(&self.0)
            .expect("open")
            .with_environment(Vec::<(String, String)>::new())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_key_relay_in_accepts_has_a_reader() {
    let empty = TempDir::new(&[]);
    let core_only = empty.open();
    CoreSettings::load(&core_only).expect("core");
    let dir = empty.open();
    CoreSettings::load(&dir).expect("core");
    RelayInSettings::load(&dir).expect("relay-in");
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
        let temp = TempDir::new(&[(file, text), ("host_list", "example.com\n")]);
        RelayInSettings::load(&temp.open())
            .map(|settings| settings.warnings)
            .unwrap_or_else(|error| vec![error.to_string()])
    });
    assert!(found.is_empty(), "{}", found.join("\n"));
}
