//! What relay-in knows of each backend's health: a probe (connect, EHLO,
//! QUIT) at startup and then every minute, and every forward's failure to
//! connect.
//!
//! It exists for two failures that senders would otherwise discover one
//! message at a time (issue 14):
//!
//! - A backend that does not offer XCLIENT to relay-in while smtp_forward.ini
//!   says `xclient=required` (the default) gets no mail: every message is
//!   deferred with `451 4.7.0`. Haraka carried on silently without XCLIENT,
//!   so a Mailcow migrated from it has often never authorised the relay. The
//!   probe says so at startup, before any mail, with the Postfix line that
//!   fixes it; `relay-in --check --probe` says it before the switch.
//! - A backend behind a WireGuard tunnel that is down drops packets rather
//!   than refusing them, so each message would wait `connect_timeout` (30 s)
//!   for its `451`. Once a connection to a backend failed, a forward's or a
//!   probe's, senders are answered `451 4.4.1` at once, at RCPT, before they
//!   upload a message that cannot be forwarded; the backend is probed every
//!   2 s meanwhile and mail flows again as soon as a probe reaches it.
//!
//! Each change of a backend's state is logged once (not at every probe) and
//! shown as the `postern_backend_up` and `postern_backend_xclient` gauges.
//! One task per backend probes it, so there is never more than one probe of
//! a backend at a time.
//!
//! [`INTERVAL_ENV`] (`POSTERN_PROBE_INTERVAL_MS`) shortens the intervals. It
//! is meant for tests only: a production relay keeps the defaults.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_core::client::{Capabilities, ClientConfig, StepTimeouts};
use smtp_core::metrics::{BackendLabels, metrics};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::{ForwardSettings, XclientPolicy};
use crate::forward::{PreparedRoute, RouteKey};

/// How often a backend that is down is probed, so that mail flows again
/// soon after it is back.
pub const DOWN_INTERVAL: Duration = Duration::from_secs(2);
/// A probe of a backend already down gives up connecting after this (or
/// `connect_timeout` if shorter): over a tunnel that is up a connection
/// takes milliseconds, and a longer wait would only delay the next probe.
const DOWN_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a probe waits for one reply (or `timeout` if shorter).
const PROBE_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// For tests only: probe every this many milliseconds (and, while a backend
/// is down, at most [`DOWN_INTERVAL`] apart).
pub const INTERVAL_ENV: &str = "POSTERN_PROBE_INTERVAL_MS";

/// What is known of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not probed yet, and no connection failed: mail is tried.
    Unknown = 0,
    /// It answered the last probe and offers XCLIENT.
    Up = 1,
    /// It answered the last probe without offering XCLIENT.
    NoXclient = 2,
    /// A connection to it failed and no probe has reached it since: senders
    /// are deferred at once.
    Down = 3,
}

impl State {
    fn from_u8(value: u8) -> State {
        match value {
            1 => State::Up,
            2 => State::NoXclient,
            3 => State::Down,
            _ => State::Unknown,
        }
    }
}

/// What one look at a backend found.
#[derive(Clone, Debug)]
pub enum Finding {
    /// A session was opened: greeting and EHLO (STARTTLS if configured).
    Answered {
        /// Our end of the connection: the address Postfix must authorise.
        local: SocketAddr,
        xclient: bool,
    },
    /// No session could be opened; the cause.
    Down(String),
}

impl Finding {
    fn state(&self) -> State {
        match self {
            Finding::Answered { xclient: true, .. } => State::Up,
            Finding::Answered { xclient: false, .. } => State::NoXclient,
            Finding::Down(_) => State::Down,
        }
    }
}

/// How often backends are probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intervals {
    pub up: Duration,
    pub down: Duration,
}

/// smtp_forward.ini's shipped `probe_interval` (written once, with the
/// other forwarding defaults) while up, [`DOWN_INTERVAL`] while down.
impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            up: ForwardSettings::default().probe_interval,
            down: DOWN_INTERVAL,
        }
    }
}

impl Intervals {
    /// smtp_forward.ini's `probe_interval` while a backend answers, and at
    /// most [`DOWN_INTERVAL`] while it is down, unless [`INTERVAL_ENV`]
    /// shortens both (tests).
    pub fn configured(probe_interval: Duration) -> Self {
        let setting = std::env::var(INTERVAL_ENV).ok();
        let mut intervals = Intervals::from_setting(setting.as_deref());
        if intervals == Intervals::default() {
            return Intervals {
                up: probe_interval,
                down: probe_interval.min(DOWN_INTERVAL),
            };
        }
        intervals.up = intervals.up.min(probe_interval);
        warn!(
            "{INTERVAL_ENV} is set: backends are probed every {:?} (meant for tests only)",
            intervals.up
        );
        intervals
    }

    /// [`INTERVAL_ENV`]'s value: milliseconds between probes, and at most
    /// [`DOWN_INTERVAL`] while a backend is down. Anything but a positive
    /// number keeps the defaults.
    fn from_setting(milliseconds: Option<&str>) -> Self {
        match milliseconds.and_then(|ms| ms.trim().parse::<u64>().ok()) {
            Some(ms) if ms > 0 => {
                let every = Duration::from_millis(ms);
                Intervals {
                    up: every,
                    down: every.min(DOWN_INTERVAL),
                }
            }
            _ => Intervals::default(),
        }
    }

    fn after(&self, state: State) -> Duration {
        if state == State::Down {
            self.down
        } else {
            self.up
        }
    }
}

/// Every backend's health, by `host:port`; kept across reloads, so a
/// backend's state survives a change of smtp_forward.ini that keeps it.
#[derive(Debug)]
pub struct Health {
    intervals: Intervals,
    backends: Mutex<HashMap<RouteKey, Arc<BackendHealth>>>,
}

/// One backend's health, shared by the routes that lead to it (the
/// forwarder reads and reports) and the task that probes it.
#[derive(Debug)]
pub struct BackendHealth {
    key: RouteKey,
    labels: BackendLabels,
    intervals: Intervals,
    state: AtomicU8,
    /// The route the probe uses: the current settings' (replaced on reload).
    /// `None` once no route leads to this backend: its probe ends.
    target: Mutex<Option<Arc<PreparedRoute>>>,
    /// Whether the probing task was started.
    probing: AtomicBool,
    /// No longer in the settings: its gauges are gone and stay so.
    retired: AtomicBool,
    /// Told when the state or the target changed, so that the probing task
    /// works out its next probe again.
    changed: Notify,
}

impl Health {
    pub fn new(intervals: Intervals) -> Arc<Health> {
        Arc::new(Health {
            intervals,
            backends: Mutex::new(HashMap::new()),
        })
    }

    /// The record of the backend `key`, made on first use.
    pub fn backend(&self, key: &RouteKey) -> Arc<BackendHealth> {
        let mut backends = lock(&self.backends);
        let health = backends.entry(key.clone()).or_insert_with(|| {
            Arc::new(BackendHealth {
                key: key.clone(),
                labels: BackendLabels {
                    backend: key.to_string(),
                },
                intervals: self.intervals,
                state: AtomicU8::new(State::Unknown as u8),
                target: Mutex::new(None),
                probing: AtomicBool::new(false),
                retired: AtomicBool::new(false),
                changed: Notify::new(),
            })
        });
        Arc::clone(health)
    }

    /// Probes the backends of `routes` (the current settings' routes, one
    /// per backend) from now on, each in a task of its own started on its
    /// first call; backends no route leads to any more stop being probed.
    pub fn watch(&self, routes: Vec<Arc<PreparedRoute>>) {
        let mut backends = lock(&self.backends);
        backends.retain(|key, health| {
            let wanted = routes.iter().any(|route| route.key() == key);
            if !wanted {
                health.retire();
            }
            wanted
        });
        for route in routes {
            let health = Arc::clone(route.health());
            backends.insert(route.key().clone(), Arc::clone(&health));
            *lock(&health.target) = Some(route);
            health.changed.notify_one();
            if !health.probing.swap(true, Ordering::SeqCst) {
                tokio::spawn(keep_probing(health));
            }
        }
    }
}

impl BackendHealth {
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::SeqCst))
    }

    /// Whether senders are to be deferred without trying the backend.
    pub fn is_down(&self) -> bool {
        self.state() == State::Down
    }

    /// Takes in what a probe or a forward found; a change of state is
    /// logged, once, as `policy` makes it matter.
    pub fn record(&self, finding: &Finding, policy: XclientPolicy) {
        let new = finding.state();
        let old = State::from_u8(self.state.swap(new as u8, Ordering::SeqCst));
        if !self.retired.load(Ordering::SeqCst) {
            let m = metrics();
            let up = i64::from(new != State::Down);
            m.backend_up.get_or_create(&self.labels).set(up);
            if let Finding::Answered { xclient, .. } = finding {
                m.backend_xclient
                    .get_or_create(&self.labels)
                    .set(i64::from(*xclient));
            }
        }
        if old == new {
            return;
        }
        self.changed.notify_one();
        let (severity, text) = explain(&self.key, finding, policy, self.intervals.down);
        let backend = &self.key;
        match severity {
            Severity::Error => error!(%backend, "{text}"),
            Severity::Warning => warn!(%backend, "{text}"),
            Severity::Info => info!(%backend, "{text}"),
        }
    }

    fn target(&self) -> Option<Arc<PreparedRoute>> {
        lock(&self.target).clone()
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        *lock(&self.target) = None;
        self.changed.notify_one();
        let m = metrics();
        m.backend_up.remove(&self.labels);
        m.backend_xclient.remove(&self.labels);
    }
}

/// The probing task of one backend: probes it, then waits the interval its
/// state calls for, until no route leads to it any more.
async fn keep_probing(health: Arc<BackendHealth>) {
    while let Some(route) = health.target() {
        probe(&route).await;
        drop(route);
        let finished = Instant::now();
        loop {
            let due = finished + health.intervals.after(health.state());
            tokio::select! {
                () = tokio::time::sleep_until(due) => break,
                // A forward found it down (probe sooner), or a reload
                // changed or removed it.
                () = health.changed.notified() => {
                    if health.target().is_none() {
                        return;
                    }
                }
            }
        }
    }
}

/// Opens a session with the backend of `route` as a forward would (connect,
/// greeting, EHLO, STARTTLS if configured; no AUTH, no XCLIENT), records
/// what it found, then says QUIT.
pub async fn probe(route: &PreparedRoute) -> Finding {
    let config = probe_config(route.client_config(), route.health().is_down());
    let (finding, session) = match route.connect(&config).await {
        Ok(client) => match client.local_addr() {
            Some(local) => (
                Finding::Answered {
                    local,
                    xclient: offers_xclient(client.capabilities()),
                },
                Some(client),
            ),
            None => (Finding::Down("the connection was lost".into()), None),
        },
        Err(failure) => (Finding::Down(failure.cause()), None),
    };
    debug!(backend = %route.key(), "probe: {finding:?}");
    // Recorded before QUIT: once the backend sees the session end, relay-in
    // already acts on what it found.
    route.record(&finding);
    if let Some(client) = session {
        client.quit().await;
    }
    finding
}

/// The forward's client settings with a probe's shorter waits.
fn probe_config(forward: &ClientConfig, down: bool) -> ClientConfig {
    let mut config = forward.clone();
    if down {
        config.connect_timeout = config.connect_timeout.min(DOWN_CONNECT_TIMEOUT);
    }
    config.timeouts = StepTimeouts::uniform(config.timeouts.command.min(PROBE_REPLY_TIMEOUT));
    config
}

/// XCLIENT with at least one attribute relay-in can send.
fn offers_xclient(capabilities: &Capabilities) -> bool {
    capabilities
        .xclient
        .as_ref()
        .is_some_and(|attributes| !attributes.is_empty())
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    /// No mail is forwarded to the backend.
    Error,
}

/// What a finding means for mail and what to do about it, in one line: the
/// log's, and `relay-in --check --probe`'s.
pub fn explain(
    key: &RouteKey,
    finding: &Finding,
    policy: XclientPolicy,
    down_interval: Duration,
) -> (Severity, String) {
    match finding {
        Finding::Down(cause) => (
            Severity::Error,
            format!(
                "backend {key} is down ({cause}): senders are answered 451 4.4.1 at once, at RCPT, before they send a message, until a probe reaches it (every {down_interval:?})"
            ),
        ),
        Finding::Answered { local, xclient } => {
            let host = postfix_host(local.ip());
            let fix = format!(
                "add this line to Postfix's main.cf (Mailcow: data/conf/postfix/extra.cf) and restart Postfix: smtpd_authorized_xclient_hosts = {host}"
            );
            match (xclient, policy) {
                (true, XclientPolicy::Off) | (false, XclientPolicy::Off) => (
                    Severity::Info,
                    format!(
                        "backend {key} answers (relay-in connects from {host}); mail is forwarded without XCLIENT (xclient=off)"
                    ),
                ),
                (true, _) => (
                    Severity::Info,
                    format!(
                        "backend {key} answers and offers XCLIENT to relay-in (connecting from {host}); mail is forwarded"
                    ),
                ),
                (false, XclientPolicy::Required) => (
                    Severity::Error,
                    format!(
                        "backend {key} does not offer XCLIENT to relay-in, which connects from {host}: every message for it is deferred with 451 4.7.0 and nothing is forwarded (smtp_forward.ini xclient=required); {fix}"
                    ),
                ),
                (false, XclientPolicy::Optional) => (
                    Severity::Warning,
                    format!(
                        "backend {key} does not offer XCLIENT to relay-in, which connects from {host}: mail is forwarded as if relay-in had sent it (xclient=optional), so the backend's checks never see the real client; {fix}"
                    ),
                ),
            }
        }
    }
}

/// An address as `smtpd_authorized_xclient_hosts` takes it: IPv6 in
/// brackets.
fn postfix_host(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The map holds no invariant a panic elsewhere could break halfway.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RouteKey {
        RouteKey::new("10.0.0.2", 25)
    }

    /// What relay-in connecting from `ip` finds at a backend.
    fn answered_from(ip: &str, xclient: bool) -> Finding {
        Finding::Answered {
            local: SocketAddr::new(ip.parse().unwrap(), 40000),
            xclient,
        }
    }

    fn answered(xclient: bool) -> Finding {
        answered_from("10.0.0.1", xclient)
    }

    #[test]
    fn the_missing_xclient_line_names_the_address_postfix_must_authorise() {
        let (severity, text) = explain(
            &key(),
            &answered(false),
            XclientPolicy::Required,
            DOWN_INTERVAL,
        );
        assert_eq!(severity, Severity::Error);
        assert!(
            text.starts_with("backend 10.0.0.2:25 does not offer XCLIENT"),
            "{text}"
        );
        assert!(text.contains("451 4.7.0"), "{text}");
        // IPv6 in brackets, as Postfix wants it; a mapped IPv4 as IPv4.
        for (local, host) in [
            ("10.0.0.1", "10.0.0.1"),
            ("fd00::1", "[fd00::1]"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
        ] {
            let finding = answered_from(local, false);
            let (_, text) = explain(&key(), &finding, XclientPolicy::Required, DOWN_INTERVAL);
            assert!(
                text.ends_with(&format!("smtpd_authorized_xclient_hosts = {host}")),
                "{text}"
            );
        }
    }

    #[test]
    fn severity_follows_the_xclient_policy() {
        let (without, with) = (answered(false), answered(true));
        let severity = |finding, policy| explain(&key(), finding, policy, DOWN_INTERVAL).0;
        assert_eq!(
            severity(&without, XclientPolicy::Optional),
            Severity::Warning
        );
        assert_eq!(severity(&without, XclientPolicy::Off), Severity::Info);
        assert_eq!(severity(&with, XclientPolicy::Required), Severity::Info);
        let down = Finding::Down("connection refused".into());
        assert_eq!(severity(&down, XclientPolicy::Off), Severity::Error);
    }

    #[test]
    fn the_state_is_the_latest_finding_and_survives_a_reload() {
        let health = Health::new(Intervals::default());
        let backend = health.backend(&key());
        assert_eq!(backend.state(), State::Unknown);
        let down = Finding::Down("timed out".into());
        backend.record(&down, XclientPolicy::Required);
        assert!(backend.is_down());
        backend.record(&answered(false), XclientPolicy::Required);
        assert_eq!(backend.state(), State::NoXclient);
        backend.record(&answered(true), XclientPolicy::Required);
        assert_eq!(backend.state(), State::Up);
        // A reloaded forwarder asks for the same backend: the same record.
        assert!(Arc::ptr_eq(&backend, &health.backend(&key())));
    }

    #[test]
    fn the_test_interval_never_slows_probing_of_a_backend_that_is_down() {
        assert_eq!(Intervals::from_setting(None), Intervals::default());
        assert_eq!(Intervals::from_setting(Some("0")), Intervals::default());
        assert_eq!(Intervals::from_setting(Some("soon")), Intervals::default());
        let short = Intervals::from_setting(Some("100"));
        assert_eq!(short.after(State::Up), Duration::from_millis(100));
        assert_eq!(short.after(State::Down), Duration::from_millis(100));
        let long = Intervals::from_setting(Some("5000"));
        assert_eq!(long.after(State::NoXclient), Duration::from_secs(5));
        assert_eq!(long.after(State::Down), DOWN_INTERVAL);
        assert_eq!(
            Intervals::default().after(State::Unknown),
            Duration::from_secs(60)
        );
    }
}
