//! TLS-RPT (RFC 8460): counting each day's TLS sessions with the MX hosts
//! of destinations that ask for reports, and sending them the daily
//! aggregate report.
//!
//! | file | the one thing it does |
//! |---|---|
//! | [`result`] | the RFC's policy types and result types, and today's client errors classified |
//! | [`dns_record`] | `_smtp._tls.<domain>` TXT: strict parse (`v=TLSRPTv1; rua=mailto:…,https:…`), cached an hour |
//! | [`store`] | the counts per (UTC day, policy domain, policy), on disk across restarts |
//! | [`report`] | the JSON report, gzip'ed, and the mail that carries it (RFC 8460 §4, §5.3) |
//! | [`send`] | reports due → mails in relay-out's own queue; the daemon's timer; `tlsrpt show/send` |
//! | [`https`] | `rua=https:` POST through `crate::https_client` |
//!
//! # Recording API (for MTA-STS and DANE too)
//!
//! Every TLS session with an MX host is reported once through
//! [`TlsRpt::record`]`(policy, result)`:
//!
//! - `policy` is a [`PolicyKey`]: `policy_type` ([`PolicyType::Sts`],
//!   [`PolicyType::Tlsa`], or [`PolicyType::NoPolicyFound`] for tls_policy.ini
//!   and the opportunistic default, as RFC 8460 §4.4 says), `policy_string`
//!   (MTA-STS: the policy's lines; DANE: the TLSA records in presentation
//!   form; else empty), `policy_domain` (the recipient domain) and
//!   `mx_host` (MTA-STS: the policy's `mx` patterns; DANE: the MX host).
//!   [`PolicyKey::no_policy`] builds the third kind.
//! - `result` is [`SessionResult::Success`] (STARTTLS done and the policy
//!   met) or [`SessionResult::Failure`] with a [`Failure`]: the
//!   [`ResultType`] and where (`sending_mta_ip`, `receiving_mx_hostname`,
//!   `receiving_ip`, optional `failure_reason_code`). A policy that fails
//!   before any session (an MTA-STS fetch error) is reported the same way,
//!   without an MX.
//!
//! It returns at once: the destination's `_smtp._tls` record is looked up
//! (cached) in a task of its own, and nothing is counted for domains that
//! publish none. The courier records today's sessions in
//! `courier::attempt` (policy `no-policy-found`): a STARTTLS session is a
//! success; no STARTTLS under `encrypt`/`verify` is `starttls-not-supported`;
//! a certificate for another name `certificate-host-mismatch`; expired
//! `certificate-expired`; unknown issuer `certificate-not-trusted`; any other
//! failed handshake `validation-failure`. A clear-text session under `may`
//! or `none` is not a TLS session and is not counted.
//!
//! # State, timing, sending
//!
//! The counts live in memory and are saved every [`SAVE_INTERVAL`] (when
//! changed) and at shutdown to `<queue_dir>/tlsrpt/state.json` (see
//! [`store`] for the atomic write and the bounds). The queue's own scan
//! ignores the subdirectory. Once the UTC day is over, the daemon sends each
//! domain its report for the day: a `mailto:` report is a message in
//! relay-out's own queue (retried and bounced like any other, from
//! tlsrpt.ini `from`); an `https:` report is POSTed (see [`https`]).
//! `relay-out tlsrpt send` asks the running daemon (a request file and
//! SIGHUP) to send every pending report now, today's so far included;
//! without a daemon it queues them itself. `relay-out tlsrpt show` prints
//! the saved counts.

pub mod dns_record;
pub mod https;
pub mod report;
pub mod result;
mod send;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use smtp_core::dns::Dns;
use spool::Spool;
use tracing::warn;

pub use dns_record::{ReportUri, Rua};
pub use report::Reporter;
pub use result::{Failure, PolicyKey, PolicyType, ResultType, SessionResult, classify, sending_ip};
pub use send::{TlsRptCommand, command};

use crate::config::TlsRptSettings;
use crate::courier::DispatcherHandle;
use dns_record::RecordCache;
use store::State;

/// How often changed counts are saved (and the day's end noticed).
pub const SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// The TLS-RPT directory under the queue directory.
pub fn state_dir(queue_dir: &Path) -> PathBuf {
    queue_dir.join("tlsrpt")
}

/// Who the reports are from: tlsrpt.ini, else defaults from `me`.
pub fn reporter(settings: &TlsRptSettings, me: &str) -> Reporter {
    Reporter {
        organization_name: settings
            .organization_name
            .clone()
            .unwrap_or_else(|| me.to_owned()),
        contact_info: settings
            .contact_info
            .clone()
            .unwrap_or_else(|| format!("postmaster@{me}")),
        submitter: settings.submitter.clone().unwrap_or_else(|| me.to_owned()),
        from: settings
            .from
            .clone()
            .unwrap_or_else(|| format!("tlsrpt-noreply@{me}")),
    }
}

/// The daemon's reporter: the counts, the record cache, and what sending
/// needs. One per process, shared by the courier's tasks.
pub struct TlsRpt {
    enabled: bool,
    reporter: Reporter,
    dir: PathBuf,
    dns: Dns,
    records: RecordCache,
    state: Mutex<State>,
    dirty: AtomicBool,
    spool: Spool,
    dispatcher: DispatcherHandle,
    /// What `https:` reports are POSTed with (why not, when it could not
    /// be built).
    https: Result<crate::https_client::HttpsClient, String>,
}

impl std::fmt::Debug for TlsRpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRpt")
            .field("enabled", &self.enabled)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TlsRpt {
    /// Loads the saved counts. An unreadable state file is logged and
    /// started over (reports are worth less than delivery).
    pub fn new(
        settings: &TlsRptSettings,
        me: &str,
        queue_dir: &Path,
        dns: Dns,
        spool: Spool,
        dispatcher: DispatcherHandle,
        verify: &smtp_core::client::TlsVerify,
    ) -> Arc<TlsRpt> {
        let https = https::client(verify).map_err(|error| {
            warn!("TLS-RPT: https: reports cannot be posted: {error}");
            error.to_string()
        });
        let dir = state_dir(queue_dir);
        let state = if settings.enabled {
            State::load(&dir.join(store::STATE_FILE)).unwrap_or_else(|error| {
                warn!("TLS-RPT: {error}; starting with no counts");
                State::default()
            })
        } else {
            State::default()
        };
        Arc::new(TlsRpt {
            enabled: settings.enabled,
            reporter: reporter(settings, me),
            dir,
            dns,
            records: RecordCache::default(),
            state: Mutex::new(state),
            dirty: AtomicBool::new(false),
            spool,
            dispatcher,
            https,
        })
    }

    /// Counts one session (see the module docs). Returns at once.
    pub fn record(self: &Arc<Self>, policy: PolicyKey, result: SessionResult) {
        if !self.enabled {
            return;
        }
        match self.records.cached(&policy.policy_domain) {
            Some(Some(rua)) => self.count(&rua, &policy, &result),
            Some(None) => {}
            // Not known yet: the lookup must not hold up the delivery.
            None => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    if let Some(rua) = this.records.lookup(&this.dns, &policy.policy_domain).await {
                        this.count(&rua, &policy, &result);
                    }
                });
            }
        }
    }

    /// Whether a session with `domain`'s MX hosts may be counted: false when
    /// reporting is off or the domain is known to publish no `_smtp._tls`
    /// record, so the caller need not build the policy key (the common
    /// case, on the per-message path).
    pub fn may_count(&self, domain: &str) -> bool {
        self.enabled
            && !matches!(
                self.records.cached(domain.trim_end_matches('.')),
                Some(None)
            )
    }

    fn count(&self, rua: &Rua, policy: &PolicyKey, result: &SessionResult) {
        let counted = self
            .state
            .lock()
            .unwrap()
            .add(Utc::now(), &rua.uris, policy, result);
        if counted {
            let metrics = smtp_core::metrics::metrics();
            let label = match result {
                SessionResult::Success => "successful",
                SessionResult::Failure(failure) => failure.result_type.as_str(),
            };
            smtp_core::metrics::Metrics::tlsrpt(&metrics.tlsrpt_sessions, label);
            self.dirty.store(true, Ordering::Relaxed);
        } else {
            warn!(
                domain = %policy.policy_domain,
                "TLS-RPT: session not counted: the state's size bound is reached"
            );
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join(store::STATE_FILE)
    }

    /// Saves the counts if they changed since the last save.
    pub async fn save_if_changed(&self) {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let state = self.state.lock().unwrap().clone();
        let path = self.state_path();
        let saved = tokio::task::spawn_blocking(move || state.save(&path)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.dirty.store(true, Ordering::Relaxed);
                warn!("TLS-RPT: cannot save the counts: {error}");
            }
            Err(error) => warn!("TLS-RPT: cannot save the counts: {error}"),
        }
    }
}
