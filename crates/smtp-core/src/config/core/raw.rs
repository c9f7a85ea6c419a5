//! The INI files behind [`super::CoreSettings`], as serde reads them.
//!
//! Field names are Haraka's key names and each field is already the type the
//! code uses. The `Default` impl under each section is the one place its
//! keys' defaults are written: Haraka's shipped values, or Postern's for keys
//! Haraka lacks. Keys whose mere presence matters (to prefer them over a
//! legacy key or file) are `Option`s; their default is written where the two
//! sources are combined, in `super`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use smtp_protocol::data::BareNewlinePolicy;

use crate::config::endpoint::{ListenAddresses, NameServers};
use crate::config::error::expected;
use crate::config::ini::IniValue;
use crate::config::values::{
    FractionalSeconds, Keyword, Seconds, SettingValue, optional_setting, optional_text_list,
    setting,
};

/// smtp.ini.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SmtpIni {
    pub main: SmtpMain,
}

/// smtp.ini `[main]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct SmtpMain {
    #[serde(deserialize_with = "setting")]
    pub listen: ListenAddresses,
    #[serde(deserialize_with = "optional_setting")]
    pub listen_host: Option<IpAddr>,
    #[serde(deserialize_with = "optional_setting")]
    pub port: Option<u16>,
    #[serde(deserialize_with = "setting")]
    pub inactivity_timeout: Seconds,
    #[serde(deserialize_with = "setting")]
    pub force_shutdown_timeout: Seconds,
    #[serde(deserialize_with = "setting")]
    pub smtps_port: u16,
    #[serde(deserialize_with = "setting")]
    pub submission_port: u16,
    #[serde(deserialize_with = "setting")]
    pub max_connections: usize,
    #[serde(deserialize_with = "setting")]
    pub nameservers: NameServers,
    #[serde(deserialize_with = "setting")]
    pub rdns: bool,
    #[serde(deserialize_with = "setting")]
    pub dns_timeout: Seconds,
    /// Postern: bind listen addresses that are not (yet) on an interface.
    #[serde(deserialize_with = "setting")]
    pub freebind: bool,
}

impl Default for SmtpMain {
    fn default() -> Self {
        Self {
            listen: ListenAddresses::default(),
            listen_host: None,
            port: None,
            inactivity_timeout: Seconds(Duration::from_secs(300)),
            force_shutdown_timeout: Seconds(Duration::from_secs(30)),
            smtps_port: 465,
            submission_port: 587,
            max_connections: 1000,
            nameservers: NameServers::default(),
            rdns: true,
            dns_timeout: Seconds(crate::dns::DEFAULT_TIMEOUT),
            freebind: false,
        }
    }
}

/// connection.ini.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionIni {
    pub main: ConnectionMain,
    pub headers: ConnectionHeaders,
    pub max: ConnectionMax,
    pub message: ConnectionMessage,
    pub haproxy: ConnectionHaproxy,
}

/// connection.ini `[main]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionMain {
    #[serde(deserialize_with = "setting")]
    pub smtputf8: bool,
    #[serde(deserialize_with = "setting")]
    pub bare_newline: BareNewlinePolicy,
    /// Where large messages go while being received; relative to the
    /// config root.
    #[serde(deserialize_with = "setting")]
    pub spool_dir: PathBuf,
    #[serde(deserialize_with = "setting")]
    pub spool_after: SpoolAfter,
}

impl Default for ConnectionMain {
    fn default() -> Self {
        Self {
            smtputf8: true,
            bare_newline: BareNewlinePolicy::Reject,
            // Haraka's default too.
            spool_dir: std::env::temp_dir(),
            // Haraka never spools; Postern does past 1 MiB, so a few large
            // messages cannot exhaust a small VPS.
            spool_after: SpoolAfter(Some(1024 * 1024)),
        }
    }
}

/// `spool_after`: bytes of a message kept in memory before the rest goes to
/// a temporary file; `None` never (Haraka's -1; 0 is always). A type of its
/// own so that Haraka's -1/0/N grammar is read once, by serde, into what the
/// server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SpoolAfter(pub Option<usize>);

impl SettingValue for SpoolAfter {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim().parse::<i64>() {
            Ok(-1) => Ok(SpoolAfter(None)),
            Ok(n) if n >= 0 => Ok(SpoolAfter(Some(usize::try_from(n).unwrap_or(usize::MAX)))),
            _ => Err("-1 (never), 0 (always) or a number of bytes".to_owned()),
        }
    }
}

/// connection.ini `[headers]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionHeaders {
    #[serde(deserialize_with = "setting")]
    pub add_received: bool,
    #[serde(deserialize_with = "setting")]
    pub max_received: usize,
}

impl Default for ConnectionHeaders {
    fn default() -> Self {
        Self {
            add_received: true,
            max_received: 100,
        }
    }
}

/// connection.ini `[max]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionMax {
    #[serde(deserialize_with = "optional_setting")]
    pub bytes: Option<u64>,
    #[serde(deserialize_with = "setting")]
    pub line_length: usize,
    #[serde(deserialize_with = "setting")]
    pub recipients: usize,
}

impl Default for ConnectionMax {
    fn default() -> Self {
        Self {
            bytes: None,
            line_length: 512,
            recipients: 1000,
        }
    }
}

/// connection.ini `[message]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionMessage {
    #[serde(deserialize_with = "optional_text_list")]
    pub greeting: Option<Vec<String>>,
    #[serde(deserialize_with = "optional_setting")]
    pub helo: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    pub close: Option<String>,
}

/// connection.ini `[haproxy]`: the proxies trusted to send a PROXY header.
/// `None` when `hosts` is not written, so the legacy file `haproxy_hosts`
/// can stand in.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionHaproxy {
    #[serde(deserialize_with = "optional_text_list")]
    pub hosts: Option<Vec<String>>,
}

/// `bare_newline=` is the DATA decoder's own policy type; Haraka passes bare
/// LFs on unchanged, which enables SMTP smuggling.
impl Keyword for BareNewlinePolicy {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("reject", BareNewlinePolicy::Reject),
        ("normalize", BareNewlinePolicy::Normalize),
    ];
}

/// limit.ini (haraka-plugin-limit's section names).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LimitIni {
    pub concurrency: ConcurrencyLimit,
    pub unrecognized_commands: UnrecognizedCommandsLimit,
    /// `[rate_conn]`: connections per client address per interval.
    pub rate_conn: std::collections::BTreeMap<String, String>,
    /// `[rate_rcpt_host]`: recipients per client address per interval.
    pub rate_rcpt_host: std::collections::BTreeMap<String, String>,
}

/// limit.ini `[concurrency]`: connections per client IP.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct ConcurrencyLimit {
    #[serde(deserialize_with = "setting")]
    pub max: usize,
}

/// 50, Postfix's `smtpd_client_connection_count_limit`: a big sender's
/// outbound IP carries many sessions at once (Postfix itself opens up to 20
/// to one destination), and 50 idle sessions cost a few hundred kilobytes.
/// Haraka has no cap unless the limit plugin sets one.
impl Default for ConcurrencyLimit {
    fn default() -> Self {
        Self { max: 50 }
    }
}

/// limit.ini `[unrecognized_commands]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct UnrecognizedCommandsLimit {
    #[serde(deserialize_with = "setting")]
    pub max: usize,
}

impl Default for UnrecognizedCommandsLimit {
    fn default() -> Self {
        Self { max: 10 }
    }
}

/// early_talker.ini.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct EarlyTalkerIni {
    pub main: EarlyTalkerMain,
}

/// early_talker.ini `[main]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct EarlyTalkerMain {
    #[serde(deserialize_with = "setting")]
    pub pause: FractionalSeconds,
    #[serde(deserialize_with = "setting")]
    pub reject: bool,
}

impl Default for EarlyTalkerMain {
    fn default() -> Self {
        Self {
            // Long enough for a bot's bytes to arrive, short enough that a
            // real sender (who waits once a day, see server/pregreet.rs)
            // does not notice. Haraka's plugin holds back every banner for
            // its pause; postscreen's greet wait is 6 s.
            pause: FractionalSeconds(Duration::from_secs(1)),
            reject: true,
        }
    }
}

/// tls.ini.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TlsIni {
    pub main: TlsMain,
    pub no_tls_hosts: NetworkKeys,
}

/// tls.ini `[main]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct TlsMain {
    pub key: Option<IniValue>,
    pub cert: Option<IniValue>,
    // Environment overrides arrive lower-cased, hence the alias.
    #[serde(
        rename = "minVersion",
        alias = "minversion",
        deserialize_with = "setting"
    )]
    pub min_version: TlsMinVersion,
}

impl Default for TlsMain {
    fn default() -> Self {
        Self {
            key: None,
            cert: None,
            min_version: TlsMinVersion::Tls12,
        }
    }
}

pub use crate::tls::TlsMinVersion;

impl Keyword for TlsMinVersion {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("TLSv1.2", TlsMinVersion::Tls12),
        ("TLSv1.3", TlsMinVersion::Tls13),
    ];
}

/// A section whose bare keys are IP addresses or CIDR networks
/// (`[no_tls_hosts]`); values, if any, are ignored as in Haraka.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct NetworkKeys(pub Vec<IpNetwork>);

impl<'de> Deserialize<'de> for NetworkKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(NetworkKeysVisitor)
    }
}

struct NetworkKeysVisitor;

impl<'de> Visitor<'de> for NetworkKeysVisitor {
    type Value = NetworkKeys;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a section of IP addresses or networks")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NetworkKeys, A::Error> {
        // Sorted so the error for several bad keys is deterministic.
        let mut keys = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            // Read, not skipped: a skipped value would count as unread.
            map.next_value::<IniValue>()?;
            keys.insert(key, ());
        }
        keys.into_keys()
            .map(|key| {
                key.parse::<IpNetwork>().map_err(|_| {
                    de::Error::custom(expected(&key, "an IP address or CIDR network as the key"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(NetworkKeys)
    }
}

/// metrics.ini: `listen=ip:port` turns the Prometheus endpoint on.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct MetricsIni {
    pub main: MetricsMain,
}

/// metrics.ini `[main]`; the endpoint is off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct MetricsMain {
    #[serde(deserialize_with = "setting")]
    pub listen: MetricsListen,
}

/// metrics.ini `listen`: an `ip:port`, or a bare port meaning loopback
/// (metrics are for the local Prometheus or a tunnel, never the internet by
/// default); empty means off. A type of its own because a bare port is read
/// differently from smtp.ini `listen`'s.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct MetricsListen(pub Option<SocketAddr>);

impl SettingValue for MetricsListen {
    fn from_text(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(MetricsListen(None));
        }
        text.parse::<SocketAddr>()
            .ok()
            .or_else(|| {
                text.parse::<u16>()
                    .ok()
                    .filter(|port| *port > 0)
                    .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            })
            .map(|address| MetricsListen(Some(address)))
            .ok_or_else(|| "an ip:port such as 127.0.0.1:9125".to_owned())
    }
}
