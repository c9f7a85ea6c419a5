//! What each Haraka plugin name means for Postern: a feature it implements
//! (on only when listed), a protection built in (always on), or a plugin it
//! does not run, with what it does instead. One table, so the startup log,
//! `--check` and the docs say the same thing.

use crate::config::files::{self, Binary};

/// A Postern feature that Haraka provides with a plugin: on when its plugin
/// is listed (or, without a list, by the role defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// `rcpt_to.in_host_list`: relay-in accepts the `host_list` domains.
    InHostList,
    /// `queue/smtp_forward`: relay-in forwards per smtp_forward.ini.
    SmtpForward,
    /// `queue/smtp_proxy`: relay-in forwards live per smtp_proxy.ini.
    SmtpProxy,
    /// `tls`: STARTTLS is offered (both binaries).
    Tls,
    /// `relay`: relay-out relays for relay_acl_allow (relay.ini).
    Relay,
    /// `auth/flat_file`: relay-out offers AUTH to auth_flat_file.ini users.
    AuthFlatFile,
}

impl Feature {
    /// Every feature, in `--check`'s order.
    pub const ALL: [Feature; 6] = [
        Feature::InHostList,
        Feature::SmtpForward,
        Feature::SmtpProxy,
        Feature::Tls,
        Feature::Relay,
        Feature::AuthFlatFile,
    ];

    /// The Haraka plugin name.
    pub fn plugin(self) -> &'static str {
        match self {
            Feature::InHostList => "rcpt_to.in_host_list",
            Feature::SmtpForward => "queue/smtp_forward",
            Feature::SmtpProxy => "queue/smtp_proxy",
            Feature::Tls => "tls",
            Feature::Relay => "relay",
            Feature::AuthFlatFile => "auth/flat_file",
        }
    }

    /// The binary that implements it; `None` for both.
    pub fn binary(self) -> Option<Binary> {
        match self {
            Feature::InHostList | Feature::SmtpForward | Feature::SmtpProxy => {
                Some(Binary::RelayIn)
            }
            Feature::Tls => None,
            Feature::Relay | Feature::AuthFlatFile => Some(Binary::RelayOut),
        }
    }

    /// The files only this feature reads, so `--check` can say they are not
    /// read when it is off. (tls.ini is also read for implicit TLS and
    /// delivery, which Haraka's core does without the plugin.)
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Feature::InHostList => &[
                files::HOST_LIST,
                files::HOST_LIST_REGEX,
                files::RCPT_TO_IN_HOST_LIST_INI,
            ],
            Feature::SmtpForward => &[files::SMTP_FORWARD_INI],
            Feature::SmtpProxy => &[files::SMTP_PROXY_INI],
            Feature::Tls => &[],
            Feature::Relay => &[
                files::RELAY_INI,
                files::RELAY_ACL_ALLOW,
                files::RELAY_DEST_DOMAINS_INI,
            ],
            Feature::AuthFlatFile => &[files::AUTH_FLAT_FILE_INI],
        }
    }

    /// The files whose presence shows the directory means to use it, so
    /// that it being off deserves a warning: its own files, and tls.ini
    /// for `tls`.
    pub fn configured_by(self) -> &'static [&'static str] {
        match self {
            Feature::Tls => &[files::TLS_INI],
            other => other.files(),
        }
    }

    /// What the binary does without it.
    pub fn when_off(self) -> &'static str {
        match self {
            Feature::InHostList => {
                "no recipient is accepted by host_list (only <postmaster>, and smtp_forward.ini domain sections with check_recipient)"
            }
            Feature::SmtpForward => "smtp_forward.ini is not the forward target",
            Feature::SmtpProxy => "smtp_proxy.ini is not the forward target",
            Feature::Tls => {
                "STARTTLS is not offered (smtps_port still speaks TLS, as in Haraka's core)"
            }
            Feature::Relay => "no client relays by address (relay_acl_allow)",
            Feature::AuthFlatFile => "AUTH is not offered",
        }
    }
}

/// What a plugin name means for Postern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// A feature Postern implements, on only when listed.
    Feature(Feature),
    /// A protection built into Postern, on whether listed or not; the
    /// text names its files.
    BuiltIn(&'static str),
    /// A Haraka plugin Postern does not run; see [`instead`].
    NotRun(Kind),
    /// Not a plugin Haraka ships or Postern knows: the instance's own.
    Custom,
}

/// Families of Haraka plugins Postern does not run, each with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Spam, virus, sender and content checks.
    Filter,
    /// `rcpt_to.*` and other recipient plugins.
    Recipients,
    /// `queue/*` and other queue plugins.
    Queue,
    /// `auth/*` and other AUTH plugins.
    Auth,
    /// Accepting XCLIENT from clients.
    Xclient,
    /// Load shedding.
    TooBusy,
    /// Process titles, status, logging, profiling.
    Operations,
}

/// Built-in protections that Haraka provides with plugins: on in Postern
/// whatever the list says, because turning them off would only expose the
/// relay (the simplest honest choice; docs/haraka-differences.md).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("limit", "limit.ini, connection.ini [max]"),
    ("early_talker", "early_talker.ini"),
];

/// Haraka's `plugins.deprecated` (plugins.js): old names it loads as the
/// new ones, with a notice.
const DEPRECATED: &[(&str, &str)] = &[
    ("auth/auth_ldap", "auth-ldap"),
    ("backscatterer", "dns-list"),
    ("connect.asn", "asn"),
    ("connect.fcrdns", "fcrdns"),
    ("connect.geoip", "geoip"),
    ("connect.p0f", "p0f"),
    ("connect.rdns_access", "access"),
    ("data.nomsgid", "headers"),
    ("data.noreceived", "headers"),
    ("data.rfc5322_header_checks", "headers"),
    ("data.headers", "headers"),
    ("dkim_sign", "dkim"),
    ("dkim_verify", "dkim"),
    ("data.uribl", "uribl"),
    ("dnsbl", "dns-list"),
    ("dnswl", "dns-list"),
    ("log.syslog", "syslog"),
    ("mail_from.access", "access"),
    ("mail_from.blocklist", "access"),
    ("mail_from.nobounces", "bounce"),
    ("max_unrecognized_commands", "limit"),
    ("rate_limit", "limit"),
    ("rcpt_to.access", "access"),
    ("rcpt_to.blocklist", "access"),
    ("rcpt_to.ldap", "rcpt-ldap"),
    ("rcpt_to.max_count", "limit"),
    ("rcpt_to.qmail_deliverable", "qmail-deliverable"),
    ("rdns.regexp", "access"),
    ("relay_acl", "relay"),
    ("relay_all", "relay"),
    ("relay_force_routing", "relay"),
];

/// Haraka plugins (shipped or in the haraka-plugin-* registry) that check
/// or change mail.
const FILTERS: &[&str] = &[
    "access",
    "asn",
    "attachment",
    "avg",
    "block_me",
    "bounce",
    "clamd",
    "data.signatures",
    "dcc",
    "delay_deny",
    "dkim",
    "dns-list",
    "esets",
    "fcrdns",
    "geoip",
    "greylist",
    "headers",
    "helo.checks",
    "karma",
    "known-senders",
    "mail_from.is_resolvable",
    "messagesniffer",
    "p0f",
    "prevent_credential_leaks",
    "rspamd",
    "spamassassin",
    "spf",
    "tarpit",
    "uribl",
];

/// Haraka plugins about the running process rather than mail.
const OPERATIONS: &[&str] = &[
    "process_title",
    "profile",
    "record_envelope_addresses",
    "reseed_rng",
    "status",
    "syslog",
    "watch",
];

/// The name Haraka loads for a line, and a note when it is not the name
/// written: Haraka drops `haraka-plugin-` and replaces deprecated names. A
/// `plugins/` prefix or `.js` suffix Haraka would not find at all (it stops
/// with "No plugin with this name found"); Postern reads the plugin meant
/// and says so.
pub(super) fn normalise(written: &str) -> (String, Option<String>) {
    let mut name = written
        .strip_prefix("haraka-plugin-")
        .unwrap_or(written)
        .to_owned();
    let mut note = None;
    let bare = name.strip_prefix("plugins/").unwrap_or(&name);
    let bare = bare.strip_suffix(".js").unwrap_or(bare).to_owned();
    if bare != name {
        note = Some(format!(
            "{written}: Haraka would not find this name (it looks plugins up as plugins/NAME.js) and would not start; read as {bare}"
        ));
        name = bare;
    }
    if let Some((_, new)) = DEPRECATED.iter().find(|(old, _)| *old == name) {
        note = Some(format!(
            "{written} has been replaced by {new} in Haraka (which loads {new}); read as {new}"
        ));
        name = (*new).to_owned();
    }
    (name, note)
}

/// What a normalised name means.
pub fn meaning(name: &str) -> Meaning {
    if let Some(feature) = Feature::ALL.into_iter().find(|f| f.plugin() == name) {
        return Meaning::Feature(feature);
    }
    if let Some((_, files)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
        return Meaning::BuiltIn(files);
    }
    let kind = if FILTERS.contains(&name) {
        Kind::Filter
    } else if OPERATIONS.contains(&name) {
        Kind::Operations
    } else if name == "xclient" {
        Kind::Xclient
    } else if name == "toobusy" {
        Kind::TooBusy
    } else if name.starts_with("rcpt_to.")
        || ["qmail-deliverable", "rcpt-ldap", "recipient-routes"].contains(&name)
    {
        Kind::Recipients
    } else if name.starts_with("queue/") {
        Kind::Queue
    } else if name.starts_with("auth/") || name.starts_with("auth-") {
        Kind::Auth
    } else {
        return Meaning::Custom;
    };
    Meaning::NotRun(kind)
}

/// What `binary` does instead of running a plugin that means `meaning`
/// (a feature here is the other binary's).
pub fn instead(meaning: Meaning, binary: Binary) -> &'static str {
    use Binary::{RelayIn, RelayOut};
    match (meaning, binary) {
        (Meaning::Feature(Feature::Relay), _) => {
            "relay-in never relays; relaying for relay_acl_allow is relay-out's"
        }
        (Meaning::Feature(Feature::InHostList), _) => {
            "relay-out takes no mail for host_list domains from outside; that is relay-in's"
        }
        (Meaning::Feature(_) | Meaning::NotRun(Kind::Auth), RelayIn) => {
            "relay-in offers no AUTH and never relays"
        }
        (Meaning::Feature(_) | Meaning::NotRun(Kind::Queue), RelayOut) => {
            "relay-out queues every message it accepts (outbound.ini queue_dir) and delivers it to the recipients' MX hosts"
        }
        (Meaning::NotRun(Kind::Queue), RelayIn) => {
            "relay-in forwards only by SMTP, with queue/smtp_forward or queue/smtp_proxy"
        }
        (Meaning::NotRun(Kind::Auth), RelayOut) => {
            "AUTH users come only from auth_flat_file.ini, with auth/flat_file"
        }
        (Meaning::NotRun(Kind::Filter), RelayIn) => {
            "Postern does not filter mail; relay-in passes the client's address and HELO to the backend with XCLIENT, so the backend's own checks (Postfix restrictions, rspamd) judge it"
        }
        (Meaning::NotRun(Kind::Filter), RelayOut) => {
            "Postern does not filter mail; relay-out takes mail only from clients that may relay (relay_acl_allow with relay, users of auth/flat_file)"
        }
        (Meaning::NotRun(Kind::Recipients), RelayIn) => {
            "relay-in accepts recipients only with rcpt_to.in_host_list (host_list, host_list_regex) and smtp_forward.ini check_recipient"
        }
        (Meaning::NotRun(Kind::Recipients), RelayOut) => {
            "relay-out accepts any recipient from a client that may relay"
        }
        (Meaning::NotRun(Kind::Xclient), RelayIn) => {
            "relay-in never accepts XCLIENT from clients; it sends XCLIENT to the backend (smtp_forward.ini xclient)"
        }
        (Meaning::NotRun(Kind::Xclient), RelayOut) => {
            "relay-out never accepts XCLIENT from clients"
        }
        (Meaning::NotRun(Kind::TooBusy), _) => {
            "Postern caps connections instead (smtp.ini max_connections, limit.ini [concurrency] max)"
        }
        (Meaning::NotRun(Kind::Operations), _) => {
            "not needed: Postern logs to stderr or journald (RUST_LOG sets the level) and serves metrics (metrics.ini)"
        }
        (Meaning::Custom, _) => {
            "not a plugin Postern knows (a custom plugin?); Postern runs no plugins and nothing replaces it"
        }
        (Meaning::BuiltIn(_), _) => "built in and always on",
    }
}
