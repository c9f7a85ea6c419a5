//! [`CoreSettings`]: what both relays read from a Haraka config directory.

mod convert;
mod haproxy;
pub mod rates;
mod raw;
mod tls;

#[cfg(test)]
mod key_coverage_tests;
#[cfg(test)]
mod tests;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use smtp_protocol::data::BareNewlinePolicy;

pub use raw::TlsMinVersion;
pub use tls::{TlsFiles, TlsSettings};

use self::rates::RateRule;
use super::dir::{ConfigDir, ListFile};
use super::endpoint::SMTP_PORT;
use super::error::ConfigError;
use super::files;
use super::values::parse_decimal;
use raw::{ConnectionIni, EarlyTalkerIni, LimitIni, MetricsIni, SmtpIni, SmtpMain};

/// Haraka's shipped message size limit (connection.ini `[max] bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 26_214_400;
/// Text after `Hello <remote>, ` in the HELO/EHLO reply.
pub const DEFAULT_HELO_MESSAGE: &str = "Postern is at your service.";
/// Text after `221 <me> ` in the QUIT reply (Haraka's wording).
pub const DEFAULT_CLOSE_MESSAGE: &str = "closing connection. Have a jolly good day.";

/// Settings shared by relay-in and relay-out, typed and defaulted.
///
/// Read once at startup so every later use is infallible; each field carries
/// Haraka's shipped default when its file or key is absent (written in the
/// file structs' `Default` impls, `raw.rs`). The SMTP server keeps this
/// value as its configuration; relay-out's delivery reads `me`, `listen` and
/// the DNS fields from it too.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreSettings {
    /// This host's name (file `me`, else the system host name).
    pub me: String,
    /// Addresses to accept SMTP on (smtp.ini `listen`, legacy
    /// `listen_host`/`port` first). Default: every address, on [`SMTP_PORT`].
    pub listen: Vec<SocketAddr>,
    /// Idle time before `421 timeout` (smtp.ini `inactivity_timeout`).
    pub inactivity_timeout: Duration,
    /// Graceful-shutdown window before open sessions are cut
    /// (smtp.ini `force_shutdown_timeout`).
    pub force_shutdown_timeout: Duration,
    /// Listeners on this port speak implicit TLS (smtp.ini `smtps_port`).
    pub smtps_port: u16,
    /// Listeners on this port are for message submission (RFC 6409): a
    /// binary that relays (relay-out) requires AUTH there, as it does on
    /// `smtps_port` (smtp.ini `submission_port`; Postern, so that the
    /// submission port can be moved like `smtps_port`).
    pub submission_port: u16,
    /// Concurrent connections across all clients (smtp.ini
    /// `max_connections`; Postern).
    pub max_connections: usize,
    /// Resolvers to use instead of the system's; empty = system resolver
    /// (smtp.ini `nameservers`; Postern).
    pub nameservers: Vec<SocketAddr>,
    /// Look up the client's reverse DNS name (smtp.ini `rdns`; Postern).
    pub rdns: bool,
    /// Per-query DNS timeout (smtp.ini `dns_timeout`; Postern).
    pub dns_timeout: Duration,
    /// Advertise SMTPUTF8 (connection.ini `[main] smtputf8`, true).
    pub smtputf8: bool,
    /// Bare LF/CR in DATA (connection.ini `[main] bare_newline`, reject).
    pub bare_newline: BareNewlinePolicy,
    /// Add a Received header (connection.ini `[headers] add_received`, true).
    pub add_received: bool,
    /// More Received headers than this is a loop: 550
    /// (connection.ini `[headers] max_received`, 100).
    pub max_received: usize,
    /// SIZE limit in bytes (connection.ini `[max] bytes`, else legacy file
    /// `databytes`, 26214400).
    pub max_bytes: u64,
    /// Longest command line in bytes including CRLF
    /// (connection.ini `[max] line_length`).
    pub max_line_length: usize,
    /// Recipients per transaction (connection.ini `[max] recipients`, 1000;
    /// Postern).
    pub max_recipients: usize,
    /// Custom banner lines (connection.ini `[message] greeting[]`, none).
    pub greeting: Vec<String>,
    /// HELO/EHLO reply text (connection.ini `[message] helo`).
    pub helo_message: String,
    /// QUIT reply text (connection.ini `[message] close`).
    pub close_message: String,
    /// Concurrent connections per client IP (limit.ini `[concurrency] max`).
    pub max_connections_per_ip: usize,
    /// Unrecognised commands before `421` and disconnect
    /// (limit.ini `[unrecognized_commands] max`, 10).
    pub max_unrecognized_commands: usize,
    /// limit.ini `[rate_conn]`: connections per client address per interval.
    pub connection_rate: RateRule,
    /// limit.ini `[rate_rcpt_host]`: recipients per client address per interval.
    pub recipient_rate: RateRule,
    /// smtp.ini `freebind`: listen on addresses not yet configured (IP_FREEBIND),
    /// so relay-out can start before WireGuard brings up 10.0.0.1.
    pub freebind: bool,
    /// connection.ini `spool_after`: bytes of a message kept in memory before
    /// the rest moves to a temporary file in `spool_dir`; `None` never.
    /// Unlike Haraka, Postern spools by default.
    pub spool_after: Option<usize>,
    /// connection.ini `spool_dir` (default: the system's temporary directory).
    pub spool_dir: std::path::PathBuf,
    /// metrics.ini `listen`: where to serve Prometheus metrics; off if unset.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Delay before the banner, to catch clients that talk first
    /// (early_talker.ini `pause`; zero: none).
    pub early_talker_pause: Duration,
    /// Reject clients that talked before the banner
    /// (early_talker.ini `reject`).
    pub early_talker_reject: bool,
    /// Proxies trusted to name the client with a PROXY protocol v1 or v2
    /// header before the greeting (connection.ini `[haproxy] hosts[]`, else
    /// legacy file `haproxy_hosts`; none).
    pub haproxy_hosts: Vec<ipnetwork::IpNetwork>,
    /// Inbound TLS (tls.ini).
    pub tls: TlsSettings,
    /// The plugin list (`plugins`): which of each binary's features are
    /// on. Kept here so a reload (SIGHUP) uses the list read at startup.
    pub plugins: std::sync::Arc<super::plugins::Plugins>,
    /// Non-fatal findings for `--check` and the startup log: ignored keys and
    /// files, missing certificates, legacy files used.
    pub warnings: Vec<String>,
}

impl CoreSettings {
    /// Reads `me`, smtp.ini, connection.ini (and legacy flat files),
    /// limit.ini, early_talker.ini and tls.ini.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let me = dir.me()?;
        let smtp: SmtpIni = dir.ini(files::SMTP_INI)?;
        let connection: ConnectionIni = dir.ini(files::CONNECTION_INI)?;
        let limit: LimitIni = dir.ini(files::LIMIT_INI)?;
        let early_talker: EarlyTalkerIni = dir.ini(files::EARLY_TALKER_INI)?;
        let metrics: MetricsIni = dir.ini(files::METRICS_INI)?;
        let plugins = dir.plugins()?;
        let tls = TlsSettings::load(dir)?;
        let listen = listen_addresses(dir, &smtp.main);
        let max_bytes = max_bytes(dir, connection.max.bytes)?;
        let haproxy_hosts = haproxy::haproxy_hosts(dir, connection.haproxy.hosts)?;

        let message = connection.message;
        let legacy_greeting = legacy_file(
            dir,
            message.greeting.is_some(),
            files::SMTPGREETING,
            "[message] greeting[]",
        )?;
        let greeting = message
            .greeting
            .or_else(|| legacy_greeting.map(|file| file.texts()))
            .unwrap_or_default();
        // A banner is one reply; clients (ours too) refuse replies of more
        // than 100 lines.
        if greeting.len() > MAX_GREETING_LINES {
            return Err(ConfigError::BadValue {
                origin: dir.shown(files::CONNECTION_INI),
                section: "message".to_owned(),
                key: "greeting[]".to_owned(),
                detail: format!(
                    "{} lines: expected at most {MAX_GREETING_LINES}",
                    greeting.len()
                ),
            });
        }
        let legacy_helo = legacy_file(
            dir,
            message.helo.is_some(),
            files::EHLO_HELLO_MESSAGE,
            "[message] helo",
        )?;
        let helo_message = message
            .helo
            .or_else(|| legacy_helo.and_then(|file| file.texts().into_iter().next()))
            .unwrap_or_else(|| DEFAULT_HELO_MESSAGE.to_owned());
        let legacy_close = legacy_file(
            dir,
            message.close.is_some(),
            files::CONNECTION_CLOSE_MESSAGE,
            "[message] close",
        )?;
        let close_message = message
            .close
            .or_else(|| legacy_close.and_then(|file| file.texts().into_iter().next()))
            .unwrap_or_else(|| DEFAULT_CLOSE_MESSAGE.to_owned());

        let main = smtp.main;
        Ok(Self {
            me,
            listen,
            inactivity_timeout: main.inactivity_timeout.0,
            force_shutdown_timeout: main.force_shutdown_timeout.0,
            smtps_port: main.smtps_port,
            submission_port: main.submission_port,
            max_connections: main.max_connections,
            nameservers: main.nameservers.0,
            rdns: main.rdns,
            dns_timeout: main.dns_timeout.0,
            freebind: main.freebind,
            smtputf8: connection.main.smtputf8,
            bare_newline: connection.main.bare_newline,
            add_received: connection.headers.add_received,
            max_received: connection.headers.max_received,
            max_bytes,
            max_line_length: connection.max.line_length,
            max_recipients: connection.max.recipients,
            greeting,
            helo_message,
            close_message,
            max_connections_per_ip: limit.concurrency.max,
            max_unrecognized_commands: limit.unrecognized_commands.max,
            connection_rate: rates(dir, "rate_conn", &limit.rate_conn)?,
            recipient_rate: rates(dir, "rate_rcpt_host", &limit.rate_rcpt_host)?,
            metrics_listen: metrics.main.listen.0,
            spool_after: connection.main.spool_after.0,
            spool_dir: dir.resolve(&connection.main.spool_dir),
            early_talker_pause: early_talker.main.pause.0,
            early_talker_reject: early_talker.main.reject,
            haproxy_hosts,
            tls,
            plugins,
            warnings: dir.take_warnings(),
        })
    }
}

/// Haraka's `get_listen_addrs`: `listen` entries, with the legacy
/// `listen_host:port` pair put first; `[::]:25` when nothing is configured.
fn listen_addresses(dir: &ConfigDir, main: &SmtpMain) -> Vec<SocketAddr> {
    let mut listen = Vec::with_capacity(main.listen.0.len() + 1);
    match (main.listen_host, main.port) {
        (host, Some(port)) => {
            let host = host.unwrap_or(Ipv6Addr::UNSPECIFIED.into());
            listen.push(SocketAddr::new(host, port));
            dir.warn(format!(
                "{}: [main] port (and listen_host) are legacy; write listen={} instead",
                files::SMTP_INI,
                SocketAddr::new(host, port)
            ));
        }
        (Some(host), None) => dir.warn(format!(
            "{}: [main] listen_host={host} is ignored without port (as in Haraka)",
            files::SMTP_INI
        )),
        (None, None) => {}
    }
    listen.extend(main.listen.0.iter().copied());
    if listen.is_empty() {
        listen.push(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), SMTP_PORT));
    }
    listen
}

/// connection.ini `[max] bytes`, else Haraka 3.0's flat file `databytes`.
fn max_bytes(dir: &ConfigDir, from_ini: Option<u64>) -> Result<u64, ConfigError> {
    let legacy = legacy_file(dir, from_ini.is_some(), files::DATABYTES, "[max] bytes")?;
    if let Some(bytes) = from_ini {
        return Ok(bytes);
    }
    let Some(line) = legacy.and_then(|file| file.lines.into_iter().next().map(|l| (file.path, l)))
    else {
        return Ok(DEFAULT_MAX_BYTES);
    };
    let (path, line) = line;
    parse_decimal(&line.text).ok_or(ConfigError::BadEntry {
        path,
        line: line.number,
        entry: line.text,
        expected: "expected a decimal number of bytes".to_owned(),
    })
}

/// Haraka 3.1 moved several flat files into connection.ini. The ini key
/// wins; otherwise the legacy file (if present) is returned for use. Either
/// way its presence is reported so the operator can migrate.
fn legacy_file(
    dir: &ConfigDir,
    ini_is_set: bool,
    legacy_name: &str,
    ini_key: &str,
) -> Result<Option<ListFile>, ConfigError> {
    let Some(path) = dir.path_of(legacy_name) else {
        return Ok(None);
    };
    if ini_is_set {
        dir.mark_used(&path);
        dir.warn(format!(
            "{}: ignored, {} {ini_key} takes precedence",
            path.display(),
            files::CONNECTION_INI
        ));
        return Ok(None);
    }
    dir.warn(format!(
        "{}: legacy Haraka file used; move its value to {} {ini_key}",
        path.display(),
        files::CONNECTION_INI
    ));
    dir.list_file(legacy_name)
}

/// Reads one limit.ini rate section, naming file, section and key on error.
fn rates(
    dir: &ConfigDir,
    section: &str,
    keys: &std::collections::BTreeMap<String, String>,
) -> Result<RateRule, ConfigError> {
    rates::rate_rule(keys).map_err(|(key, detail)| ConfigError::BadValue {
        origin: dir.shown(files::LIMIT_INI),
        section: section.to_owned(),
        key,
        detail,
    })
}

/// Banner lines allowed in `[message] greeting[]`.
const MAX_GREETING_LINES: usize = 50;
