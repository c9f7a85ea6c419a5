//! smtp_forward.ini: where relay-in hands accepted mail on (Haraka's
//! `queue/smtp_forward`, haraka-behaviour.md §3).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use smtp_core::config::domains::normalize_domain;
use smtp_core::config::endpoint::SMTP_PORT;
use smtp_core::config::retry_schedule::{Lifetime, TempFailIntervals};
use smtp_core::config::values::{Keyword, OnOff, Seconds, SettingValue, optional_setting};
use smtp_core::config::{ConfigDir, ConfigError};

use super::backup_spool::SpoolSettings;

/// The port used when smtp_forward.ini (or smtp_proxy.ini) sets none: a
/// Postfix backend listens on SMTP's own.
pub const DEFAULT_FORWARD_PORT: u16 = SMTP_PORT;

/// The port Haraka uses when the instance's smtp_forward.ini or
/// smtp_proxy.ini sets none: its shipped files' `port=2555`, merged under
/// the instance's (Haraka 3.0.0 to 3.1.6).
pub const HARAKA_SHIPPED_FORWARD_PORT: u16 = 2555;

/// Everything about forwarding accepted mail to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSettings {
    /// `[main]` host/port/TLS/auth: used for every domain without a section.
    pub default_route: ForwardRoute,
    /// `[example.com]` (or `[user@example.com]` with `domain_selector=mail_from`)
    /// sections: keys lower-cased, domains in A-label form. Each stands
    /// alone, as Haraka's `cfg[domain]` does: its port (else 25), its
    /// STARTTLS (else off) and its AUTH (else none; `[main]`'s credentials
    /// never go to another host). Only a missing `host` is taken from
    /// `[main]`, where Haraka would connect to localhost.
    pub domain_routes: BTreeMap<String, ForwardRoute>,
    /// TCP connect timeout (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Per-reply timeout during the backend dialogue (`timeout`).
    pub timeout: Duration,
    /// Verify the backend's certificate when `enable_tls` is on
    /// (`tls_verify`; Postern).
    pub tls_verify: bool,
    /// Extra CA bundle for verifying the backend (`ca_file`; Postern),
    /// resolved against the config root.
    pub ca_file: Option<PathBuf>,
    /// Which address picks the route (`domain_selector`).
    pub domain_selector: DomainSelector,
    /// Recipient domains with a section are accepted (`check_recipient`).
    pub check_recipient: bool,
    /// A MAIL FROM domain with a section from a non-relaying client is
    /// refused as spoofed (`check_sender`).
    pub check_sender: bool,
    /// Queue locally before forwarding, or forward during DATA
    /// (`mode`; Postern).
    pub mode: ForwardMode,
    /// Whether XCLIENT must be used with the backend (`xclient`; Postern).
    pub xclient: XclientPolicy,
    /// How often a backend that answers is probed (`probe_interval`;
    /// Postern). A backend that is down is probed more often.
    pub probe_interval: Duration,
    /// The backup spool (`mode=spool` and the `spool_*` keys; Postern).
    pub spool: SpoolSettings,
}

/// What relay-in does without smtp_forward.ini: Haraka's shipped `[main]`
/// where Haraka has the key, Postern's choice where it has not. The one
/// place these defaults are written; a key set in the file replaces one.
impl Default for ForwardSettings {
    fn default() -> Self {
        Self {
            default_route: ForwardRoute::default(),
            domain_routes: BTreeMap::new(),
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(300),
            tls_verify: true,
            ca_file: None,
            domain_selector: DomainSelector::RcptTo,
            check_recipient: false,
            check_sender: false,
            mode: ForwardMode::Queue,
            xclient: XclientPolicy::Required,
            probe_interval: Duration::from_secs(60),
            spool: SpoolSettings::default(),
        }
    }
}

/// One backend to forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRoute {
    /// IP literal (without brackets) or DNS name (`host`).
    pub host: String,
    /// `port`.
    pub port: u16,
    /// Use STARTTLS with the backend (`enable_tls`).
    pub enable_tls: bool,
    /// AUTH credentials (`auth_type`, `auth_user`, `auth_pass`).
    pub auth: Option<ForwardAuth>,
}

/// The backend when neither the section nor `[main]` names one.
impl Default for ForwardRoute {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: DEFAULT_FORWARD_PORT,
            enable_tls: false,
            auth: None,
        }
    }
}

/// Credentials for AUTH to the backend (sent after STARTTLS).
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// `auth_type`.
    pub mechanism: AuthMechanism,
    /// `auth_user`.
    pub user: String,
    /// `auth_pass`.
    pub pass: String,
}

/// Keeps the password out of logs that print settings with `{:?}`.
impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("pass", &"<redacted>")
            .finish()
    }
}

/// The SASL mechanisms Haraka's smtp_client can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    /// AUTH PLAIN.
    Plain,
    /// AUTH LOGIN.
    Login,
}

impl Keyword for AuthMechanism {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("plain", AuthMechanism::Plain),
        ("login", AuthMechanism::Login),
    ];
}

/// Which envelope address chooses the per-domain section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainSelector {
    /// The first recipient's domain.
    RcptTo,
    /// The sender: `[user@domain]`, then `[domain]`.
    MailFrom,
}

impl Keyword for DomainSelector {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("rcpt_to", DomainSelector::RcptTo),
        ("mail_from", DomainSelector::MailFrom),
    ];
}

/// When the backend sees the message relative to the client's DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// Forward the whole transaction after the client's final dot (Haraka's
    /// `queue` hook); the client gets the backend's reply.
    Queue,
    /// Open the backend session at the first recipient and pass each RCPT
    /// through, as Haraka's smtp_proxy does.
    Live,
    /// Live while the backend answers; while it is away, keep mail for
    /// recipients it accepted before in the backup spool (backup MX).
    Spool,
}

impl Keyword for ForwardMode {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("queue", ForwardMode::Queue),
        ("live", ForwardMode::Live),
        ("spool", ForwardMode::Spool),
    ];
}

/// How insistently to pass the client's identity with XCLIENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XclientPolicy {
    /// The backend must accept XCLIENT, else the message is deferred (so
    /// the backend never sees mail as coming from relay-in itself).
    Required,
    /// Use XCLIENT when offered (Haraka's behaviour).
    Optional,
    /// Never send XCLIENT.
    Off,
}

impl Keyword for XclientPolicy {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("required", XclientPolicy::Required),
        ("optional", XclientPolicy::Optional),
        ("off", XclientPolicy::Off),
    ];
}

/// A forward host as written: an IP literal (brackets allowed) or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ForwardHost(pub String);

impl SettingValue for ForwardHost {
    fn from_text(text: &str) -> Result<Self, String> {
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(ForwardHost(ip.to_string()));
        }
        normalize_domain(text)
            .map(ForwardHost)
            .map_err(|_| "a host name or IP address".to_owned())
    }
}

/// One section of smtp_forward.ini as written; `None` = not set there.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(super) struct ForwardSection {
    #[serde(deserialize_with = "optional_setting")]
    pub host: Option<ForwardHost>,
    #[serde(deserialize_with = "optional_setting")]
    pub port: Option<u16>,
    #[serde(deserialize_with = "optional_setting")]
    pub enable_tls: Option<bool>,
    #[serde(deserialize_with = "optional_setting")]
    pub auth_type: Option<AuthMechanism>,
    #[serde(deserialize_with = "optional_setting")]
    pub auth_user: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    pub auth_pass: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    pub enable_outbound: Option<bool>,
    #[serde(deserialize_with = "optional_setting")]
    pub connect_timeout: Option<Seconds>,
    #[serde(deserialize_with = "optional_setting")]
    pub timeout: Option<Seconds>,
    #[serde(deserialize_with = "optional_setting")]
    pub tls_verify: Option<OnOff>,
    #[serde(deserialize_with = "optional_setting")]
    pub ca_file: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    pub domain_selector: Option<DomainSelector>,
    #[serde(deserialize_with = "optional_setting")]
    pub check_recipient: Option<bool>,
    #[serde(deserialize_with = "optional_setting")]
    pub check_sender: Option<bool>,
    #[serde(deserialize_with = "optional_setting")]
    pub mode: Option<ForwardMode>,
    #[serde(deserialize_with = "optional_setting")]
    pub xclient: Option<XclientPolicy>,
    #[serde(deserialize_with = "optional_setting")]
    pub probe_interval: Option<Lifetime>,
    #[serde(deserialize_with = "optional_setting")]
    pub spool_dir: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    pub verified_ttl: Option<Lifetime>,
    #[serde(deserialize_with = "optional_setting")]
    pub spool_max_bytes: Option<u64>,
    #[serde(deserialize_with = "optional_setting")]
    pub spool_max_messages: Option<u64>,
    #[serde(deserialize_with = "optional_setting")]
    pub max_spool_age: Option<Lifetime>,
    #[serde(deserialize_with = "optional_setting")]
    pub spool_concurrency: Option<usize>,
    #[serde(deserialize_with = "optional_setting")]
    pub spool_retry_intervals: Option<TempFailIntervals>,
}

impl ForwardSection {
    /// Names of keys set in a per-domain section that only `[main]` can set.
    fn main_only_keys(&self) -> Vec<&'static str> {
        [
            ("connect_timeout", self.connect_timeout.is_some()),
            ("timeout", self.timeout.is_some()),
            ("tls_verify", self.tls_verify.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("domain_selector", self.domain_selector.is_some()),
            ("check_recipient", self.check_recipient.is_some()),
            ("check_sender", self.check_sender.is_some()),
            ("mode", self.mode.is_some()),
            ("xclient", self.xclient.is_some()),
            ("probe_interval", self.probe_interval.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .chain(self.spool_keys_set())
        .collect()
    }

    /// Names of the backup-spool keys set in this section.
    pub(super) fn spool_keys_set(&self) -> Vec<&'static str> {
        [
            ("spool_dir", self.spool_dir.is_some()),
            ("verified_ttl", self.verified_ttl.is_some()),
            ("spool_max_bytes", self.spool_max_bytes.is_some()),
            ("spool_max_messages", self.spool_max_messages.is_some()),
            ("max_spool_age", self.max_spool_age.is_some()),
            ("spool_concurrency", self.spool_concurrency.is_some()),
            (
                "spool_retry_intervals",
                self.spool_retry_intervals.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// A lower-cased domain as a section is keyed: in A-label form.
fn section_key_of(domain: &str) -> String {
    normalize_domain(domain).unwrap_or_else(|_| domain.to_owned())
}

/// smtp_forward.ini read as a map of sections (`main` plus per-domain ones).
pub(super) type ForwardIni = BTreeMap<String, ForwardSection>;

impl ForwardSettings {
    /// Whether smtp_forward.ini has a `[domain]` section for `domain`: with
    /// `check_sender`, mail from such a domain must not come from outside.
    pub fn has_domain_section(&self, domain: &str) -> bool {
        !self.domain_routes.is_empty()
            && self
                .domain_routes
                .contains_key(&section_key_of(&domain.to_lowercase()))
    }

    /// The route for a message: `selector_address` is the first recipient
    /// or the sender, per [`ForwardSettings::domain_selector`], as
    /// `user@domain` (or just a domain).
    pub fn route_for(&self, selector_address: &str) -> &ForwardRoute {
        // The usual setup has no per-domain section: nothing to look up.
        if self.domain_routes.is_empty() {
            return &self.default_route;
        }
        let lowered = selector_address.to_lowercase();
        let domain = lowered
            .rsplit_once('@')
            .map_or(lowered.as_str(), |(_, d)| d);
        let domain_key = section_key_of(domain);
        let by_address = (self.domain_selector == DomainSelector::MailFrom
            && lowered.contains('@'))
        .then(|| self.domain_routes.get(&lowered))
        .flatten();
        by_address
            .or_else(|| self.domain_routes.get(&domain_key))
            .unwrap_or(&self.default_route)
    }

    /// Builds the settings from the sections of `file` (smtp_forward.ini,
    /// or smtp_proxy.ini's `[main]`), `[main]` possibly completed by the
    /// xclient.ini alias.
    pub(super) fn from_sections(
        dir: &ConfigDir,
        file: &str,
        main: &ForwardSection,
        sections: &ForwardIni,
    ) -> Result<Self, ConfigError> {
        let shown = dir.path_of(file).unwrap_or_else(|| file.into());
        if main.enable_outbound == Some(true) {
            dir.warn(format!(
                "{}: [main] enable_outbound=true is ignored: relay-in never sends mail to the internet (relay-out does)",
                shown.display()
            ));
        }
        let default_route = route(dir, &shown, "main", main, None)?;
        let mut domain_routes = BTreeMap::new();
        for (name, section) in sections.iter().filter(|(name, _)| *name != "main") {
            for key in section.main_only_keys() {
                dir.warn(format!(
                    "{}: [{name}] {key} is only read in [main] (ignored)",
                    shown.display()
                ));
            }
            let Some(key) = route_key(name) else {
                dir.warn(format!(
                    "{}: section [{name}] is not a domain or user@domain (ignored)",
                    shown.display()
                ));
                continue;
            };
            domain_routes.insert(key, route(dir, &shown, name, section, Some(main))?);
        }
        let ca_file = main.ca_file.as_deref().filter(|f| !f.is_empty()).map(|f| {
            let path = dir.resolve(f);
            if path.is_file() {
                dir.mark_used(&path);
            } else {
                dir.warn(format!(
                    "{}: [main] ca_file = {}: file not found",
                    shown.display(),
                    path.display()
                ));
            }
            path
        });
        let shipped = Self::default();
        let mode = main.mode.unwrap_or(shipped.mode);
        let spool = SpoolSettings::from_main(dir, &shown, main, mode)?;
        Ok(Self {
            default_route,
            domain_routes,
            connect_timeout: main
                .connect_timeout
                .map_or(shipped.connect_timeout, |s| s.0),
            timeout: main.timeout.map_or(shipped.timeout, |s| s.0),
            tls_verify: main.tls_verify.map_or(shipped.tls_verify, |on| on.0),
            ca_file,
            domain_selector: main.domain_selector.unwrap_or(shipped.domain_selector),
            check_recipient: main.check_recipient.unwrap_or(shipped.check_recipient),
            check_sender: main.check_sender.unwrap_or(shipped.check_sender),
            mode,
            xclient: main.xclient.unwrap_or(shipped.xclient),
            probe_interval: main.probe_interval.map_or(shipped.probe_interval, |l| l.0),
            spool,
        })
    }
}

/// The lookup key for a per-domain section name: a normalised domain, or
/// `user@domain` lower-cased with the domain normalised.
fn route_key(section: &str) -> Option<String> {
    match section.rsplit_once('@') {
        Some((user, domain)) if !user.is_empty() => Some(format!(
            "{}@{}",
            user.to_lowercase(),
            normalize_domain(domain).ok()?
        )),
        Some(_) => None,
        None => normalize_domain(section).ok(),
    }
}

/// A section's route: its own keys, else the defaults; a per-domain
/// section (`main` given) takes only its missing host from `[main]`.
fn route(
    dir: &ConfigDir,
    shown: &std::path::Path,
    name: &str,
    section: &ForwardSection,
    main: Option<&ForwardSection>,
) -> Result<ForwardRoute, ConfigError> {
    let shipped = ForwardRoute::default();
    let host = match (&section.host, main.and_then(|m| m.host.as_ref())) {
        (Some(host), _) => host.0.clone(),
        (None, Some(main_host)) => {
            dir.warn(format!(
                "{}: [{name}] has no host: Postern forwards to [main]'s host {}, Haraka would connect to localhost",
                shown.display(),
                main_host.0
            ));
            main_host.0.clone()
        }
        (None, None) => shipped.host,
    };
    let port = section.port.unwrap_or(shipped.port);
    let enable_tls = section.enable_tls.unwrap_or(shipped.enable_tls);
    let auth = match (
        section.auth_type,
        section.auth_user.clone(),
        section.auth_pass.clone(),
    ) {
        (Some(mechanism), Some(user), Some(pass)) if !user.is_empty() => Some(ForwardAuth {
            mechanism,
            user,
            pass,
        }),
        // Haraka sends AUTH only when there is a user: an empty or absent
        // auth_user (a common template leftover) means no AUTH there too.
        (Some(_), user, _) if user.as_deref().is_none_or(str::is_empty) => {
            dir.warn(format!(
                "{}: [{name}] auth_type is set without an auth_user: no AUTH is sent, as in Haraka",
                shown.display()
            ));
            None
        }
        (Some(_), _, _) => {
            return Err(ConfigError::Inconsistent {
                path: shown.to_path_buf(),
                problem: format!(
                    "[{name}] auth_type and auth_user are set but auth_pass is missing"
                ),
            });
        }
        (None, None, None) => None,
        (None, _, _) => {
            dir.warn(format!(
                "{}: [{name}] auth_user/auth_pass are ignored without auth_type",
                shown.display()
            ));
            None
        }
    };
    Ok(ForwardRoute {
        host,
        port,
        enable_tls,
        auth,
    })
}
