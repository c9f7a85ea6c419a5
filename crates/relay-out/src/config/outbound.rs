//! outbound.ini (haraka-behaviour.md §7.1): queue and delivery settings.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use smtp_core::config::endpoint::{NameServers, SMTP_PORT};
use smtp_core::config::values::{
    Keyword, Seconds, SettingValue, optional_setting, parse_decimal, setting,
};
use smtp_core::config::{ConfigDir, ConfigError, files};

use super::retry::{self, Lifetime, MaxTempFailures, SANE_MIN_INTERVAL, TempFailIntervals};

/// Tokio's semaphore limit is far above this; more simultaneous SMTP
/// sessions than this would exhaust file descriptors first anyway.
const MAX_CONCURRENCY: usize = 1_000_000;

/// Value of `received_header` that means "add none" (Haraka's convention).
const RECEIVED_HEADER_DISABLED: &str = "disabled";

/// Delivery settings, typed and defaulted (the defaults are written once,
/// in `OutboundMain`'s `Default` impl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSettings {
    /// Stop delivering; queued mail waits (`disabled`).
    pub disabled: bool,
    /// Simultaneous deliveries (`concurrency_max`).
    pub concurrency_max: usize,
    /// Simultaneous deliveries to one destination domain
    /// (`domain_concurrency_max`; Postern), so one slow or throttling domain
    /// cannot take every slot.
    pub domain_concurrency_max: usize,
    /// Opportunistic STARTTLS (`enable_tls`).
    pub enable_tls: bool,
    /// Retry in plaintext when the TLS handshake fails
    /// (`tls_fallback_plain`; Postern).
    pub tls_fallback_plain: bool,
    /// One queue entry per recipient instead of per domain
    /// (`always_split`).
    pub always_split: bool,
    /// `by` text of the Received header added on delivery; `None` when set
    /// to `disabled` (`received_header`).
    pub received_header: Option<String>,
    /// Connect (and, as in Haraka, idle) timeout (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Deliver to an MX that is this host (`local_mx_ok`).
    pub local_mx_ok: bool,
    /// Use AAAA records (`ipv6_enabled`; Haraka 3.x always does).
    pub ipv6_enabled: bool,
    /// Address family to try first (`inet_prefer`); `v4`/`v6` override the
    /// source self-check.
    pub inet_prefer: InetPrefer,
    /// `maxTempFailures`; only shapes the default schedule.
    pub max_temp_failures: u32,
    /// Delay before each retry as written in `temp_fail_intervals`; `None`
    /// when unset, meaning Haraka's schedule derived from `maxTempFailures`
    /// (see [`crate::courier::retry_timetable::RetryTimetable::from_config`]); empty
    /// (`none`) bounces at the first temporary failure.
    pub temp_fail_intervals: Option<Vec<Duration>>,
    /// Bounce mail still undelivered after this long
    /// (`max_queue_lifetime`; Postern).
    pub max_queue_lifetime: Duration,
    /// Tell the sender a message is still waiting, once per this interval
    /// (`delay_warning_time`, Postfix's name); `None` (0) sends none.
    pub delay_warning_time: Option<Duration>,
    /// Where the queue lives: Haraka's flat file `queue_dir`, else
    /// outbound.ini `queue_dir`, else the default (see [`super::queue_dir`]).
    pub queue_dir: PathBuf,
    /// Resolvers for MX lookups; empty = system resolver (`nameservers`).
    pub nameservers: Vec<SocketAddr>,
    /// Port to deliver to (`remote_port`).
    pub remote_port: u16,
    /// Source address for outgoing connections (`local_address`).
    pub local_address: Option<IpAddr>,
}

/// Which address family to try first when an MX has both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InetPrefer {
    /// Decided by the source self-check (`courier::source_check`): the
    /// resolver's order (IPv6 first) while our IPv6 source has
    /// forward-confirmed reverse DNS, IPv4 only while it has not. Haraka
    /// ships `inet_prefer=default`, so a copied outbound.ini keeps the check.
    Default,
    /// IPv4 first.
    V4,
    /// IPv6 first.
    V6,
}

impl Keyword for InetPrefer {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("default", InetPrefer::Default),
        ("v4", InetPrefer::V4),
        ("v6", InetPrefer::V6),
    ];
}

/// A number of simultaneous deliveries. Zero would mean "never deliver",
/// which is a typo rather than a wish (`disabled=true` says that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Concurrency(usize);

impl SettingValue for Concurrency {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_decimal(text)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| (1..=MAX_CONCURRENCY).contains(&n))
            .map(Concurrency)
            .ok_or_else(|| format!("a whole number from 1 to {MAX_CONCURRENCY}"))
    }
}

/// `delay_warning_time`: a duration, `0` for off. A bare number is hours,
/// as in Postfix, so a value copied from a Postfix main.cf means the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DelayWarning(Option<Duration>);

impl SettingValue for DelayWarning {
    fn from_text(text: &str) -> Result<Self, String> {
        let text = text.trim().to_lowercase();
        let span = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            format!("{text}h")
        } else {
            text
        };
        retry::parse_span(&span, true)
            .map(|span| DelayWarning(Some(span).filter(|span| !span.is_zero())))
            .map_err(|_| {
                "a duration such as 4h, 30m or 10s (a bare number is hours, as in Postfix); 0 turns delay warnings off"
                    .to_owned()
            })
    }
}

/// outbound.ini.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutboundIni {
    main: OutboundMain,
}

/// outbound.ini `[main]` as written, with Haraka's shipped values as
/// defaults. Apart from [`OutboundSettings`] because some keys are read with
/// a grammar of their own (the `SettingValue` newtypes), `received_header`'s
/// `disabled` means none, and `queue_dir` is checked against the flat file.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct OutboundMain {
    #[serde(deserialize_with = "setting")]
    disabled: bool,
    #[serde(deserialize_with = "setting")]
    concurrency_max: Concurrency,
    #[serde(deserialize_with = "setting")]
    domain_concurrency_max: Concurrency,
    #[serde(deserialize_with = "setting")]
    enable_tls: bool,
    #[serde(deserialize_with = "setting")]
    tls_fallback_plain: bool,
    #[serde(deserialize_with = "setting")]
    always_split: bool,
    #[serde(deserialize_with = "setting")]
    received_header: String,
    #[serde(deserialize_with = "setting")]
    connect_timeout: Seconds,
    #[serde(deserialize_with = "setting")]
    local_mx_ok: bool,
    #[serde(deserialize_with = "setting")]
    ipv6_enabled: bool,
    #[serde(deserialize_with = "setting")]
    inet_prefer: InetPrefer,
    // Environment overrides arrive lower-cased, hence the alias.
    #[serde(
        rename = "maxTempFailures",
        alias = "maxtempfailures",
        deserialize_with = "setting"
    )]
    max_temp_failures: MaxTempFailures,
    #[serde(deserialize_with = "optional_setting")]
    temp_fail_intervals: Option<TempFailIntervals>,
    #[serde(deserialize_with = "setting")]
    max_queue_lifetime: Lifetime,
    #[serde(deserialize_with = "setting")]
    delay_warning_time: DelayWarning,
    #[serde(deserialize_with = "optional_setting")]
    queue_dir: Option<String>,
    #[serde(deserialize_with = "setting")]
    nameservers: NameServers,
    #[serde(deserialize_with = "setting")]
    remote_port: u16,
    #[serde(deserialize_with = "optional_setting")]
    local_address: Option<IpAddr>,
}

impl Default for OutboundMain {
    fn default() -> Self {
        Self {
            disabled: false,
            concurrency_max: Concurrency(100),
            // Postfix's default_destination_concurrency_limit.
            domain_concurrency_max: Concurrency(20),
            enable_tls: true,
            tls_fallback_plain: false,
            always_split: false,
            received_header: "Postern outbound".to_owned(),
            connect_timeout: Seconds(Duration::from_secs(30)),
            local_mx_ok: false,
            // Haraka 3.0.4 removed the key and always uses AAAA records;
            // Postern keeps it as a way out for a host without IPv6.
            ipv6_enabled: true,
            inet_prefer: InetPrefer::Default,
            max_temp_failures: MaxTempFailures(13),
            temp_fail_intervals: None,
            max_queue_lifetime: Lifetime(Duration::from_secs(5 * 24 * 60 * 60)),
            // Postfix ships 0 (off) and Haraka has none, but a sender whose
            // mail is stuck (a mistyped domain, a receiver refusing with
            // 4xx) should learn it the same working day, not when the
            // five-day lifetime ends; 4h is the value Postfix's own
            // documentation suggests and sendmail's default
            // (Timeout.queuewarn). NOTIFY=NEVER or NOTIFY without DELAY
            // still turns it off per recipient.
            delay_warning_time: DelayWarning(Some(Duration::from_secs(4 * 60 * 60))),
            queue_dir: None,
            nameservers: NameServers::default(),
            remote_port: SMTP_PORT,
            local_address: None,
        }
    }
}

/// Haraka's pre-3.0 flat files for outbound settings, now outbound.ini keys.
const LEGACY_FILES: &[&str] = &[
    "outbound.disabled",
    "outbound.enable_tls",
    "outbound.temp_fail_intervals",
    "outbound.maxTempFailures",
    "outbound.concurrency_max",
    "outbound.received_header",
];

impl OutboundSettings {
    /// Reads outbound.ini (also on its own, to re-read `disabled` live).
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let main = dir.ini::<OutboundIni>(files::OUTBOUND_INI)?.main;
        for legacy in LEGACY_FILES {
            if let Some(path) = dir.path_of(legacy) {
                dir.warn(format!(
                    "{}: legacy Haraka file is not read; set the key in {} instead",
                    path.display(),
                    files::OUTBOUND_INI
                ));
            }
        }
        if let Some(shortest) = main
            .temp_fail_intervals
            .as_ref()
            .and_then(|intervals| intervals.0.iter().min())
            .filter(|&&shortest| shortest < SANE_MIN_INTERVAL)
        {
            dir.warn(format!(
                "{}: [main] temp_fail_intervals has a delay of {shortest:?}: fine for a test, but a real MX that defers would be retried that often",
                dir.shown(files::OUTBOUND_INI)
            ));
        }
        let queue_dir = super::queue_dir::resolve(dir, main.queue_dir.as_deref())?;
        let received_header = (!main
            .received_header
            .eq_ignore_ascii_case(RECEIVED_HEADER_DISABLED))
        .then_some(main.received_header);
        Ok(Self {
            disabled: main.disabled,
            concurrency_max: main.concurrency_max.0,
            domain_concurrency_max: main.domain_concurrency_max.0,
            enable_tls: main.enable_tls,
            tls_fallback_plain: main.tls_fallback_plain,
            always_split: main.always_split,
            received_header,
            connect_timeout: main.connect_timeout.0,
            local_mx_ok: main.local_mx_ok,
            ipv6_enabled: main.ipv6_enabled,
            inet_prefer: main.inet_prefer,
            max_temp_failures: main.max_temp_failures.0,
            temp_fail_intervals: main.temp_fail_intervals.map(|intervals| intervals.0),
            max_queue_lifetime: main.max_queue_lifetime.0,
            delay_warning_time: main.delay_warning_time.0,
            queue_dir,
            nameservers: main.nameservers.0,
            remote_port: main.remote_port,
            local_address: main.local_address,
        })
    }
}
