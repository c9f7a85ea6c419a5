//! The names of every file Postern reads from a Haraka config directory.
//!
//! Kept in one list, shared by both binaries, because `--check` reports the
//! files in a directory that *neither* binary reads: relay-in must not call
//! relay-out's `relay_acl_allow` unknown just because it does not read it.

/// `me`: this host's name in banners and Received headers (both binaries).
pub const ME: &str = "me";
/// Listener and process settings (both binaries).
pub const SMTP_INI: &str = "smtp.ini";
/// Protocol limits and fixed reply texts (both binaries).
pub const CONNECTION_INI: &str = "connection.ini";
/// Haraka before 3.1: message size limit, now `connection.ini` `[max] bytes`.
pub const DATABYTES: &str = "databytes";
/// Haraka before 3.1: banner text, now `connection.ini` `[message] greeting[]`.
pub const SMTPGREETING: &str = "smtpgreeting";
/// Haraka before 3.1: HELO reply text, now `connection.ini` `[message] helo`.
pub const EHLO_HELLO_MESSAGE: &str = "ehlo_hello_message";
/// Haraka before 3.1: QUIT reply text, now `connection.ini` `[message] close`.
pub const CONNECTION_CLOSE_MESSAGE: &str = "connection_close_message";
/// Haraka before 3.1: trusted PROXY senders, now `connection.ini`
/// `[haproxy] hosts[]`.
pub const HAPROXY_HOSTS: &str = "haproxy_hosts";
/// Per-client concurrency and unrecognised-command limits (both binaries).
pub const LIMIT_INI: &str = "limit.ini";
/// Banner delay and pipelining-before-banner rejection (both binaries).
pub const EARLY_TALKER_INI: &str = "early_talker.ini";
/// The opt-in Prometheus endpoint (Postern; both binaries).
pub const METRICS_INI: &str = "metrics.ini";
/// Certificate, key and STARTTLS exceptions (both binaries).
pub const TLS_INI: &str = "tls.ini";
/// Haraka's default private key file name.
pub const TLS_KEY_PEM: &str = "tls_key.pem";
/// Haraka's default certificate file name.
pub const TLS_CERT_PEM: &str = "tls_cert.pem";
/// Domains accepted for delivery (relay-in; relay-out reports it as not
/// used, as Haraka's relay and outbound do not read it).
pub const HOST_LIST: &str = "host_list";
/// Regular expressions of accepted domains (relay-in).
pub const HOST_LIST_REGEX: &str = "host_list_regex";
/// The seed setup's pointer to an alternative `host_list` (relay-in).
pub const RCPT_TO_IN_HOST_LIST_INI: &str = "rcpt_to.in_host_list.ini";
/// The backend to forward accepted mail to (relay-in).
pub const SMTP_FORWARD_INI: &str = "smtp_forward.ini";
/// The live forward target of Haraka's `queue/smtp_proxy` (relay-in).
pub const SMTP_PROXY_INI: &str = "smtp_proxy.ini";
/// The seed setup's invented XCLIENT switches (relay-in).
pub const XCLIENT_INI: &str = "xclient.ini";
/// Who may relay and how (relay-out).
pub const RELAY_INI: &str = "relay.ini";
/// Client networks allowed to relay (relay-out).
pub const RELAY_ACL_ALLOW: &str = "relay_acl_allow";
/// Per-destination relay actions and next hops (relay-out).
pub const RELAY_DEST_DOMAINS_INI: &str = "relay_dest_domains.ini";
/// Queue and delivery settings (relay-out).
pub const OUTBOUND_INI: &str = "outbound.ini";
/// Haraka's flat file naming the queue directory (relay-out).
pub const QUEUE_DIR: &str = "queue_dir";
/// Fixed next hops per destination domain, smart host `[*]` (relay-out;
/// Postern's, for what relay_dest_domains.ini `nexthop` cannot say).
pub const OUTBOUND_ROUTES_INI: &str = "outbound_routes.ini";
/// Users who may authenticate to submit mail (relay-out; Haraka's
/// `auth/flat_file` plugin file).
pub const AUTH_FLAT_FILE_INI: &str = "auth_flat_file.ini";
/// Per-destination sending budgets: connections, messages per minute
/// (relay-out; Postern's).
pub const SHAPING_INI: &str = "shaping.ini";
/// Per-destination TLS policy for MX delivery (relay-out; Postern's, like
/// Postfix's `smtp_tls_policy_maps`).
pub const TLS_POLICY_INI: &str = "tls_policy.ini";
/// TLS-RPT (RFC 8460) reporting: who the reports are from, on or off
/// (relay-out; Postern's).
pub const TLSRPT_INI: &str = "tlsrpt.ini";

/// Haraka's list of plugins to load: it decides which features are on
/// (see [`super::plugins`]). Read from the root only, as Haraka does.
pub const PLUGINS: &str = "plugins";
/// The seed guide's `config` file: its `[plugins]` section is the plugin
/// list when there is no `plugins` file.
pub const SEED_CONFIG: &str = "config";

/// Every file either binary reads; anything else in the directory is ignored.
/// (`plugins` and `config` are not here: they are reported as read, or,
/// for a `config` shadowed by `plugins`, as not used.)
pub const KNOWN_FILES: &[&str] = &[
    ME,
    METRICS_INI,
    SMTP_INI,
    CONNECTION_INI,
    DATABYTES,
    SMTPGREETING,
    EHLO_HELLO_MESSAGE,
    CONNECTION_CLOSE_MESSAGE,
    HAPROXY_HOSTS,
    LIMIT_INI,
    EARLY_TALKER_INI,
    TLS_INI,
    TLS_KEY_PEM,
    TLS_CERT_PEM,
    HOST_LIST,
    HOST_LIST_REGEX,
    RCPT_TO_IN_HOST_LIST_INI,
    SMTP_FORWARD_INI,
    SMTP_PROXY_INI,
    XCLIENT_INI,
    RELAY_INI,
    RELAY_ACL_ALLOW,
    RELAY_DEST_DOMAINS_INI,
    OUTBOUND_INI,
    QUEUE_DIR,
    OUTBOUND_ROUTES_INI,
    AUTH_FLAT_FILE_INI,
    SHAPING_INI,
    TLS_POLICY_INI,
    TLSRPT_INI,
];

/// Files only relay-in reads: relay-out's `--check` names them as relay-in's.
pub const RELAY_IN_ONLY: &[&str] = &[
    HOST_LIST,
    HOST_LIST_REGEX,
    RCPT_TO_IN_HOST_LIST_INI,
    SMTP_FORWARD_INI,
    SMTP_PROXY_INI,
    XCLIENT_INI,
];

/// Files only relay-out reads: relay-in's `--check` names them as relay-out's.
pub const RELAY_OUT_ONLY: &[&str] = &[
    RELAY_INI,
    RELAY_ACL_ALLOW,
    RELAY_DEST_DOMAINS_INI,
    OUTBOUND_INI,
    QUEUE_DIR,
    OUTBOUND_ROUTES_INI,
    AUTH_FLAT_FILE_INI,
    SHAPING_INI,
    TLS_POLICY_INI,
    TLSRPT_INI,
];

/// Which binary is checking a directory, so that the other's files are
/// named as the other's rather than skipped in silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    RelayIn,
    RelayOut,
}

impl Binary {
    pub fn name(self) -> &'static str {
        match self {
            Binary::RelayIn => "relay-in",
            Binary::RelayOut => "relay-out",
        }
    }

    /// The other binary, and the files only it reads.
    pub fn other(self) -> (Binary, &'static [&'static str]) {
        match self {
            Binary::RelayIn => (Binary::RelayOut, RELAY_OUT_ONLY),
            Binary::RelayOut => (Binary::RelayIn, RELAY_IN_ONLY),
        }
    }
}

/// Haraka files Postern deliberately does not read, and why: `--check`
/// tells a migrating administrator what happens to each.
pub const HARAKA_NOT_USED: &[(&str, &str)] = &[
    ("README.md", "documentation"),
    (
        "config",
        "not a Haraka file (the seed guide's [server]/[plugins] summary): the plugins file takes precedence; listen comes from smtp.ini",
    ),
    (
        "xclient.hosts",
        "relay-in never accepts XCLIENT from clients; it sends XCLIENT to the backend",
    ),
    (
        "log.ini",
        "logging goes to stderr or journald; RUST_LOG sets the level",
    ),
    (
        "loglevel",
        "logging goes to stderr or journald; RUST_LOG sets the level",
    ),
    (
        "internalcmd_key",
        "not needed: relay-out queue flush signals the daemon directly",
    ),
    (
        "plugin_timeout",
        "no plugins; backend and delivery timeouts are in smtp_forward.ini and outbound.ini",
    ),
    (
        "dhparams.pem",
        "rustls negotiates ECDHE only; no DH parameters",
    ),
];
