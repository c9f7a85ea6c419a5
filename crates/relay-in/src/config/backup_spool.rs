//! smtp_forward.ini's backup-MX settings (`mode=spool`; Postern's keys).
//!
//! They live apart from the forwarding keys because they describe a second
//! daemon role (keeping mail while the backend is away, issue 15) that
//! Haraka does not have: each key here is Postern's, read from `[main]`
//! only, and reported when set without `mode=spool` (where it would do
//! nothing).

use std::path::{Path, PathBuf};
use std::time::Duration;

use smtp_core::config::retry_schedule::{SANE_MIN_INTERVAL, parse_schedule};
use smtp_core::config::{ConfigDir, ConfigError};

use super::forward::{ForwardMode, ForwardSection};

/// How the backup spool behaves; read only when `mode=spool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// Where spooled messages are kept (`spool_dir`).
    pub dir: PathBuf,
    /// How long a recipient the backend accepted counts as existing
    /// (`verified_ttl`; Postfix's `address_verify_positive_expire_time`).
    pub verified_ttl: Duration,
    /// Refuse with `452 4.3.1` once the spool holds this many bytes
    /// (`spool_max_bytes`).
    pub max_bytes: u64,
    /// ... or this many messages (`spool_max_messages`).
    pub max_messages: u64,
    /// A message still undelivered after this bounces (`max_spool_age`;
    /// Postfix's `maximal_queue_lifetime`).
    pub max_age: Duration,
    /// Messages delivered to the backend at once when it is back
    /// (`spool_concurrency`).
    pub concurrency: usize,
    /// Delays between attempts after the backend answered 4xx
    /// (`spool_retry_intervals`, relay-out's `temp_fail_intervals` syntax);
    /// the last one repeats until `max_spool_age`.
    pub retry_intervals: Vec<Duration>,
}

/// The one place these defaults are written.
impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/spool/postern/in"),
            verified_ttl: Duration::from_secs(31 * 24 * 60 * 60),
            // A small VPS has a few GB of disk; a day's mail of a household
            // fits many times over.
            max_bytes: 1 << 30,
            max_messages: 10_000,
            max_age: Duration::from_secs(5 * 24 * 60 * 60),
            // The backend just came back: a few messages at a time let its
            // filters catch up without a storm.
            concurrency: 2,
            retry_intervals: parse_schedule(DEFAULT_RETRY_INTERVALS)
                .expect("the shipped schedule parses")
                .0,
        }
    }
}

/// After the backend answered 4xx to a spooled message: soon at first (a
/// greylist or a full mailbox clears quickly), then hourly.
pub const DEFAULT_RETRY_INTERVALS: &str = "1m, 5m, 10m, 30m*2, 1h";

/// The most verified recipients kept; an attacker trying addresses against
/// a catch-all backend cannot grow the store past it.
pub const VERIFIED_CAPACITY: usize = 100_000;

impl SpoolSettings {
    /// The keys as `[main]` sets them. `mode` is the resolved forward mode:
    /// without `spool` a key set here is reported, not silently ignored.
    pub(super) fn from_main(
        dir: &ConfigDir,
        shown: &Path,
        main: &ForwardSection,
        mode: ForwardMode,
    ) -> Result<Self, ConfigError> {
        let set: Vec<&str> = main.spool_keys_set();
        if mode != ForwardMode::Spool {
            for key in set {
                dir.warn(format!(
                    "{}: [main] {key} is only used with mode=spool (ignored)",
                    shown.display()
                ));
            }
            return Ok(Self::default());
        }
        let shipped = Self::default();
        let spool_dir = match main.spool_dir.as_deref() {
            None => shipped.dir,
            Some(path) if Path::new(path).is_absolute() => PathBuf::from(path),
            Some(path) => {
                return Err(ConfigError::Inconsistent {
                    path: shown.to_path_buf(),
                    problem: format!(
                        "[main] spool_dir = {path}: must be an absolute path (the daemon's working directory is not the config directory)"
                    ),
                });
            }
        };
        let retry_intervals = main
            .spool_retry_intervals
            .as_ref()
            .map_or(shipped.retry_intervals, |schedule| schedule.0.clone());
        if retry_intervals.is_empty() {
            return Err(ConfigError::Inconsistent {
                path: shown.to_path_buf(),
                problem: "[main] spool_retry_intervals = none: a spooled message needs at least one retry delay".to_owned(),
            });
        }
        if retry_intervals.iter().any(|d| *d < SANE_MIN_INTERVAL) {
            dir.warn(format!(
                "{}: [main] spool_retry_intervals has delays under {} s: the backend is retried that often",
                shown.display(),
                SANE_MIN_INTERVAL.as_secs()
            ));
        }
        let concurrency = main.spool_concurrency.unwrap_or(shipped.concurrency);
        if concurrency == 0 {
            return Err(ConfigError::Inconsistent {
                path: shown.to_path_buf(),
                problem: "[main] spool_concurrency = 0: nothing would ever be delivered".to_owned(),
            });
        }
        Ok(Self {
            dir: spool_dir,
            verified_ttl: main.verified_ttl.map_or(shipped.verified_ttl, |l| l.0),
            max_bytes: main.spool_max_bytes.unwrap_or(shipped.max_bytes),
            max_messages: main.spool_max_messages.unwrap_or(shipped.max_messages),
            max_age: main.max_spool_age.map_or(shipped.max_age, |l| l.0),
            concurrency,
            retry_intervals,
        })
    }

    /// The verified-recipient store's file, beside the spool's messages.
    pub fn verified_store_path(&self) -> PathBuf {
        self.dir.join("verified-recipients")
    }
}
