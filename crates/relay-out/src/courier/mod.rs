//! The courier: taking each due message from the spool to the recipients'
//! MX hosts (or to a configured route's hosts), retrying temporary failures
//! on the retry timetable, and bouncing what fails (haraka-behaviour.md §7).
//! This list is the map; read it top to bottom to follow one message.
//!
//! | module | the one thing it does |
//! |---|---|
//! | [`dispatcher`] | the task that owns the due list and starts a courier task per due message, only as many as there are delivery slots |
//! | [`due_list`] | in memory: which message is due when (a compact record each), which ones are out, handed out per destination (rebuilt from the spool at start) |
//! | [`switch`] | outbound.ini `disabled`, re-read without a restart |
//! | [`message`] | one due message's trip: an attempt per destination, state to disk, notices, removal (and where a duplicate can happen) |
//! | [`grouping`] | the due recipients of a message, one group (one SMTP transaction) per destination |
//! | [`limits`] | how many sessions run at once, overall and per destination |
//! | [`shaping`] | shaping.ini budgets per provider, and the back-off on rate replies (421, 4.7.28) |
//! | [`mx`] | where a destination's mail goes: MX, implicit MX, null MX, addresses we refuse |
//! | [`source_check`] | our source addresses' reverse DNS (FCrDNS) self-check, and IPv4-only delivery when IPv6's fails |
//! | [`routes`] | the same for a configured route (smart host, `nexthop`): its hops, in order |
//! | [`connector`] | how to talk to a next hop: AUTH, LMTP, source address, TLS settings |
//! | [`tls`] | the TLS choice (off, opportunistic, required) and the host order with and without it |
//! | [`dane`] | DANE (RFC 7672): TLSA records of DNSSEC-signed MX hosts, the validating-resolver check, the certificate matching |
//! | [`attempt`] | one SMTP/LMTP transaction for one group, host after host |
//! | [`session_cache`] | idle sessions kept for the next message to the same host, and when one may be reused |
//! | [`outcome`] | a reply (or a local failure) turned into a recipient's new queue state |
//! | [`retry_timetable`] | when a temporary failure is tried again, and when the message gives up |
//! | [`notice`] | the bounce (DSN) for failed recipients, queued like any message |
//! | [`log`] | the one log line per attempt |
//!
//! "Route" means only a configured route (outbound_routes.ini, `nexthop`,
//! the smart host) here as in `config::routes`; finding MX hosts is `mx`.
//! The spool itself (files, fsync order, duplicates) is the `spool` crate;
//! the bounce message's text and MIME are `crate::bounce`.

mod attempt;
mod connector;
mod dane;
mod dispatcher;
mod due_list;
mod grouping;
mod limits;
mod log;
mod message;
mod mx;
mod notice;
mod outcome;
pub mod retry_timetable;
mod routes;
mod session_cache;
mod shaping;
pub mod source_check;
mod switch;
mod tls;
mod transaction;
use dane::Dane;
use tls::MxTls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use smtp_core::client::{ClientTlsError, TlsVerify};
use smtp_core::config::{ConfigDir, ConfigError, CoreSettings};
use smtp_core::dns::{Dns, DnsError, DnsSettings};

use crate::config::RelayOutSettings;
use crate::tlsrpt::TlsRpt;
use spool::{Spool, SpoolError};

pub use dispatcher::{Dispatcher, DispatcherHandle, Slots, channel};
pub use due_list::DueList;
pub use source_check::SourceCheck;
pub use switch::DisabledSwitch;

use limits::Limits;
use mx::AddressPolicy;
use outcome::RetryPolicy;
use retry_timetable::RetryTimetable;
use routes::Routing;
use shaping::Shaper;

/// Haraka's bounce template file (header lines, a blank line, body lines).
pub const BOUNCE_TEMPLATE_FILE: &str = "outbound.bounce_message";
/// The delay warning's template, in the same form and with the same
/// variables as [`BOUNCE_TEMPLATE_FILE`] (Haraka has no delay warnings).
pub const DELAY_TEMPLATE_FILE: &str = "outbound.delay_message";

/// Why delivery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DeliverySetupError {
    #[error("cannot set up DNS for delivery: {0}")]
    Dns(#[from] DnsError),
    #[error("cannot set up TLS for delivery: {0}")]
    Tls(#[from] ClientTlsError),
    #[error(transparent)]
    MtaSts(#[from] crate::mta_sts::MtaStsSetupError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Everything delivery tasks share, built once at start.
pub struct Context {
    spool: Spool,
    dns: Dns,
    me: String,
    /// How to talk to MX hosts (outbound.ini).
    /// The MX connectors by TLS policy, and which a domain gets.
    mx_tls: MxTls,
    /// DANE for MX hosts whose TLSA records are DNSSEC-signed.
    dane: Arc<Dane>,
    /// Routes instead of MX hosts, with their connectors.
    routing: Routing,
    always_split: bool,
    addresses: AddressPolicy,
    retry: RetryPolicy,
    limits: Limits,
    /// Per-provider budgets and the back-off on rate replies.
    shaping: Arc<Shaper>,
    disabled: Arc<AtomicBool>,
    bounce_template: Option<String>,
    delay_template: Option<String>,
    /// outbound.ini `delay_warning_time`; `None`: no delay warnings.
    delay_warning: Option<Duration>,
    dispatcher: DispatcherHandle,
    /// TLS-RPT: where each MX session's TLS outcome is counted.
    tlsrpt: Arc<TlsRpt>,
    /// Tasks waiting for a shaping budget (see `dispatcher::Parked`).
    parked: dispatcher::Parked,
    /// Sessions kept for the next message to the same host.
    sessions: Arc<session_cache::SessionCache>,
}

impl Context {
    pub fn new(
        dir: &ConfigDir,
        core: &CoreSettings,
        settings: &RelayOutSettings,
        spool: Spool,
        dispatcher: DispatcherHandle,
        switch: &DisabledSwitch,
    ) -> Result<Context, DeliverySetupError> {
        let outbound = &settings.outbound;
        let dns_settings = delivery_dns_settings(core, outbound);
        let dns = Dns::new(&dns_settings)?;
        // Unreadable resolver settings already failed Dns::new; an empty
        // list here only means DANE has no resolver to trust.
        let nameservers = smtp_core::dns::nameserver_addresses(&dns_settings).unwrap_or_default();
        let tlsrpt = TlsRpt::new(
            &settings.tlsrpt,
            &core.me,
            &outbound.queue_dir,
            dns.clone(),
            spool.clone(),
            dispatcher.clone(),
            &settings
                .tls_policies
                .ca_file
                .clone()
                .map_or(TlsVerify::SystemRoots, TlsVerify::CaFile),
        );
        Ok(Context {
            spool,
            dns,
            me: core.me.clone(),
            mx_tls: MxTls::new(core, outbound, &settings.tls_policies)?,
            dane: Arc::new(Dane::new(
                &settings.tls_policies,
                &nameservers,
                core.dns_timeout,
            )),
            routing: Routing::new(&settings.routes, core, outbound)?,
            always_split: outbound.always_split,
            addresses: AddressPolicy {
                local_mx_ok: outbound.local_mx_ok,
                ipv6_enabled: outbound.ipv6_enabled,
                inet_prefer: outbound.inet_prefer,
                family: Arc::default(),
                listeners: core.listen.clone(),
                remote_port: outbound.remote_port,
                local_address: outbound.local_address,
            },
            retry: RetryPolicy {
                timetable: RetryTimetable::from_config(
                    outbound.temp_fail_intervals.as_deref(),
                    outbound.max_temp_failures,
                ),
                lifetime: outbound.max_queue_lifetime,
            },
            limits: Limits::new(outbound.concurrency_max, outbound.domain_concurrency_max),
            shaping: Arc::new(Shaper::new(
                settings.shaping.clone(),
                outbound.domain_concurrency_max,
            )),
            disabled: switch.flag(),
            bounce_template: template(dir, BOUNCE_TEMPLATE_FILE)?,
            delay_template: template(dir, DELAY_TEMPLATE_FILE)?,
            delay_warning: outbound.delay_warning_time,
            dispatcher,
            tlsrpt,
            parked: dispatcher::Parked::default(),
            sessions: Arc::new(session_cache::SessionCache::new(
                outbound.concurrency_max,
                outbound.domain_concurrency_max,
            )),
        })
    }

    /// DANE's state: start its validation check early, so the verdict is
    /// logged at start rather than at the first delivery.
    pub fn dane(&self) -> Arc<Dane> {
        Arc::clone(&self.dane)
    }

    /// The TLS-RPT reporter, for the daemon's timer and SIGHUP.
    pub fn tlsrpt(&self) -> Arc<TlsRpt> {
        Arc::clone(&self.tlsrpt)
    }

    /// The self-check of `settings`' sources whose verdict this context's
    /// deliveries follow.
    pub fn source_check(&self, settings: &RelayOutSettings) -> SourceCheck {
        SourceCheck::new(
            self.dns.clone(),
            settings,
            Arc::clone(&self.addresses.family),
        )
    }

    fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Runs a spool call (blocking file I/O and fsync) on tokio's blocking
    /// pool, so that a slow disk never stalls the other deliveries.
    async fn spool_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolCallError> {
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || call(&spool)).await {
            Ok(result) => result.map_err(SpoolCallError::Spool),
            Err(error) => Err(SpoolCallError::Task(error)),
        }
    }
}

/// The resolver deliveries use: outbound.ini `nameservers`, else smtp.ini's.
/// Client reverse lookups are never made by it (the self-check's are
/// [`Dns::forward_confirmed_name`]).
pub fn delivery_dns(
    core: &CoreSettings,
    outbound: &crate::config::OutboundSettings,
) -> Result<Dns, DnsError> {
    Dns::new(&delivery_dns_settings(core, outbound))
}

fn delivery_dns_settings(
    core: &CoreSettings,
    outbound: &crate::config::OutboundSettings,
) -> DnsSettings {
    let nameservers = if outbound.nameservers.is_empty() {
        core.nameservers.clone()
    } else {
        outbound.nameservers.clone()
    };
    DnsSettings {
        nameservers,
        timeout: core.dns_timeout,
        reverse_lookups: false,
    }
}

/// Why a [`Context::spool_call`] failed: the call itself, or the task that
/// ran it (it panicked, or the runtime is shutting down). Shown as the
/// inner error, so a log line reads the same either way.
#[derive(Debug, thiserror::Error)]
enum SpoolCallError {
    #[error(transparent)]
    Spool(SpoolError),
    #[error(transparent)]
    Task(tokio::task::JoinError),
}

/// A notice template (`outbound.bounce_message`, `outbound.delay_message`)
/// if present and not blank (Haraka reads it as a whole file). Recorded as
/// used, so `--check` does not call it unknown.
pub fn template(dir: &ConfigDir, file: &str) -> Result<Option<String>, ConfigError> {
    let Some(path) = dir.path_of(file) else {
        return Ok(None);
    };
    let text = read_template(&path)?;
    dir.mark_used(&path);
    Ok(Some(text).filter(|text| !text.trim().is_empty()))
}

fn read_template(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// For the startup log and `--check`: where mail goes, one line for the MX
/// delivery and one per route (the lines after the first are indented).
pub fn describe(settings: &RelayOutSettings, listen: &[SocketAddr]) -> String {
    let outbound = &settings.outbound;
    let mut lines = vec![format!(
        "delivering to port {} with up to {} sessions ({} per domain), STARTTLS {}, local MX {}, {} own listener(s) excluded{}",
        outbound.remote_port,
        outbound.concurrency_max,
        outbound.domain_concurrency_max,
        if outbound.enable_tls {
            "opportunistic"
        } else {
            "off"
        },
        if outbound.local_mx_ok {
            "allowed"
        } else {
            "refused"
        },
        listen.len(),
        outbound
            .local_address
            .map(|ip| format!(", from {ip}"))
            .unwrap_or_default()
    )];
    lines.extend(shaping::describe(&settings.shaping));
    lines.extend(tls::describe(
        &settings.tls_policies,
        settings.outbound.enable_tls,
        &outbound.queue_dir,
    ));
    lines.push(dane::describe(&settings.tls_policies));
    lines.push(if settings.tlsrpt.enabled {
        format!(
            "TLS-RPT: daily reports to the domains that publish _smtp._tls (mailto: and https:), counts in {} (tlsrpt.ini)",
            crate::tlsrpt::state_dir(&outbound.queue_dir).display()
        )
    } else {
        "TLS-RPT: off (tlsrpt.ini enabled=false)".to_owned()
    });
    let routes = &settings.routes;
    lines.extend(
        routes
            .domains()
            .map(|(domain, route)| describe_route(domain, route)),
    );
    if let Some(route) = routes.default_route() {
        lines.push(describe_route("all other mail (smart host)", route));
    }
    lines.join("\n  ")
}

/// `route for example.com: a.test:587, b.test:587 (TLS required, …, SMTP,
/// AUTH as u) — outbound_routes.ini [example.com]`; hops configured
/// together are listed before their common settings.
fn describe_route(what: &str, route: &crate::config::Route) -> String {
    let mut groups: Vec<String> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    for (index, hop) in route.hops.iter().enumerate() {
        let host = match &hop.host {
            crate::config::HopHost::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            host => host.to_string(),
        };
        hosts.push(format!("{host}:{}", hop.port));
        let next_shares = route
            .hops
            .get(index + 1)
            .is_some_and(|next| Arc::ptr_eq(&next.settings, &hop.settings));
        if !next_shares {
            groups.push(format!(
                "{} ({})",
                hosts.join(", "),
                describe_hop_settings(&hop.settings)
            ));
            hosts.clear();
        }
    }
    format!("route for {what}: {} — {}", groups.join(", "), route.origin)
}

fn describe_hop_settings(settings: &crate::config::HopSettings) -> String {
    use crate::config::RouteTls;
    let tls = match &settings.tls {
        RouteTls::Off => "no TLS".to_owned(),
        RouteTls::Opportunistic => "STARTTLS if offered".to_owned(),
        RouteTls::Required { ca_file: None } => {
            "TLS required, verified with the system CAs".to_owned()
        }
        RouteTls::Required {
            ca_file: Some(path),
        } => format!("TLS required, verified with {}", path.display()),
    };
    let mut how = vec![tls, if settings.lmtp { "LMTP" } else { "SMTP" }.to_owned()];
    if let Some(auth) = &settings.auth {
        how.push(format!("AUTH as {}", auth.user));
    }
    if let Some(bind) = settings.bind {
        how.push(format!("from {bind}"));
    }
    how.join(", ")
}
