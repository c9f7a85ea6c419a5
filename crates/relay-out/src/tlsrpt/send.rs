//! Sending what is due: each (day, domain) entry becomes one report, a
//! mail per `mailto:` destination stored in relay-out's own queue. The
//! daemon's timer sends a day's reports once the UTC day is over;
//! `relay-out tlsrpt send` sends everything pending now (through the
//! daemon when it runs, so that one process owns the counts).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use smtp_core::client::TlsVerify;
use smtp_core::config::{ConfigDir, CoreSettings};
use smtp_core::dns::Dns;
use smtp_core::metrics::Metrics;
use spool::{Envelope, QueueId, RecipientState, Spool, SpoolError};
use tracing::{info, warn};

use super::report::{Report, Reporter};
use super::store::{Entry, STATE_FILE, State};
use super::{ReportUri, SAVE_INTERVAL, TlsRpt, state_dir};
use crate::config::RelayOutSettings;
use crate::https_client::HttpsClient;
use crate::queue;

/// The file `tlsrpt send` leaves for the daemon before its SIGHUP.
const REQUEST_FILE: &str = "send-requested";

/// The `tlsrpt` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TlsRptCommand {
    /// Print the pending counts (today's and any day not yet reported).
    Show,
    /// Send every pending report now, today's so far included.
    Send,
}

/// A report for an `https:` destination, to POST.
#[derive(Debug)]
struct ToPost {
    url: String,
    domain: String,
    report_id: String,
    gzipped: Vec<u8>,
}

/// What [`queue_reports`] did.
#[derive(Debug, Default)]
struct Queued {
    /// The mails stored, for the dispatcher.
    stored: Vec<Envelope>,
    /// Entries whose mail could not be stored, to keep for later.
    kept: Vec<Entry>,
    errors: Vec<SpoolError>,
    /// The `https:` destinations' reports.
    to_post: Vec<ToPost>,
}

/// Stores one mail per `mailto:` destination of each entry's report, and
/// lists the reports for `https:` ones.
fn queue_reports(
    spool: &Spool,
    reporter: &Reporter,
    entries: Vec<Entry>,
    now: DateTime<Utc>,
) -> Queued {
    let mut queued = Queued::default();
    let arrival = SystemTime::from(now);
    for entry in entries {
        let report = Report::build(reporter, &entry, now);
        let mut failed = false;
        for uri in &entry.rua {
            match uri {
                ReportUri::Mailto(to) => {
                    let envelope = Envelope {
                        id: QueueId::generate_at(arrival),
                        arrival,
                        sender: reporter.from.clone(),
                        recipients: vec![RecipientState::new(to.clone(), arrival)],
                        client: Some(format!("relay-out: TLS-RPT report for {}", entry.domain)),
                        smtputf8: !to.is_ascii(),
                        eight_bit_mime: false,
                        ret: None,
                        envid: None,
                        delay_warned: None,
                        // A report about TLS failures must get through them
                        // (RFC 8689 §5 names TLS-RPT as its use).
                        requiretls: false,
                        tls_required_no: true,
                        extras: spool::NoExtras {},
                    };
                    match spool.store(&envelope, &report.mail(reporter, to, now)) {
                        Ok(()) => {
                            info!(
                                queue_id = %envelope.id,
                                domain = %entry.domain,
                                to = %to,
                                report_id = %report.report_id,
                                "TLS-RPT report queued"
                            );
                            queued.stored.push(envelope);
                        }
                        Err(error) => {
                            queued.errors.push(error);
                            failed = true;
                        }
                    }
                }
                ReportUri::Https(url) => queued.to_post.push(ToPost {
                    url: url.clone(),
                    domain: entry.domain.clone(),
                    report_id: report.report_id.clone(),
                    gzipped: report.gzip(),
                }),
            }
        }
        if failed {
            queued.kept.push(entry);
        }
    }
    queued
}

/// POSTs each report (see [`super::https`]), logging the outcome; returns
/// how many were posted.
async fn post_reports(
    dns: &Dns,
    client: Result<&HttpsClient, &str>,
    to_post: Vec<ToPost>,
) -> usize {
    let mut posted = 0;
    for report in to_post {
        let result = match client {
            Ok(client) => super::https::post(dns, client, &report.url, &report.gzipped)
                .await
                .map_err(|error| error.to_string()),
            Err(why) => Err(format!("https: reports cannot be posted: {why}")),
        };
        match result {
            Ok(()) => {
                posted += 1;
                Metrics::tlsrpt(&smtp_core::metrics::metrics().tlsrpt_reports, "posted");
                info!(
                    domain = %report.domain,
                    url = %report.url,
                    report_id = %report.report_id,
                    "TLS-RPT report posted"
                );
            }
            Err(error) => {
                Metrics::tlsrpt(&smtp_core::metrics::metrics().tlsrpt_reports, "not_sent");
                warn!(
                    domain = %report.domain,
                    url = %report.url,
                    report_id = %report.report_id,
                    "TLS-RPT: report not posted: {error}"
                );
            }
        }
    }
    posted
}

impl TlsRpt {
    /// The daemon's timer: saves changed counts every [`SAVE_INTERVAL`],
    /// and sends the reports of past days at start and after each UTC
    /// midnight. Runs until aborted.
    pub async fn run(self: Arc<Self>) {
        if !self.enabled {
            return;
        }
        let mut last_day = None;
        loop {
            let today = Utc::now().date_naive();
            if last_day != Some(today) {
                self.send_due(false).await;
                last_day = Some(today);
            }
            self.save_if_changed().await;
            tokio::time::sleep(SAVE_INTERVAL).await;
        }
    }

    /// SIGHUP: sends everything pending now if `tlsrpt send` asked.
    pub fn on_hangup(self: &Arc<Self>) {
        let request = self.dir.join(REQUEST_FILE);
        if !self.enabled || std::fs::remove_file(&request).is_err() {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            info!("TLS-RPT: sending every pending report now (relay-out tlsrpt send)");
            this.send_due(true).await;
        });
    }

    /// Queues the due reports (with `today_too`, today's so far) and saves
    /// the counts that remain.
    async fn send_due(&self, today_too: bool) {
        let now = Utc::now();
        let due = self.state.lock().unwrap().take_due(now, today_too);
        self.dirty.store(true, Ordering::Relaxed);
        if !due.is_empty() {
            let spool = self.spool.clone();
            let reporter = self.reporter.clone();
            let queued =
                tokio::task::spawn_blocking(move || queue_reports(&spool, &reporter, due, now))
                    .await;
            match queued {
                Ok(queued) => {
                    let reports = &smtp_core::metrics::metrics().tlsrpt_reports;
                    for error in queued.errors {
                        Metrics::tlsrpt(reports, "not_sent");
                        warn!("TLS-RPT: cannot queue a report, kept for later: {error}");
                    }
                    self.state.lock().unwrap().entries.extend(queued.kept);
                    for envelope in queued.stored {
                        Metrics::tlsrpt(reports, "queued");
                        self.dispatcher.queued(envelope);
                    }
                    post_reports(
                        &self.dns,
                        self.https.as_ref().map_err(String::as_str),
                        queued.to_post,
                    )
                    .await;
                }
                Err(error) => warn!("TLS-RPT: queueing the reports failed: {error}"),
            }
        }
        self.save_if_changed().await;
    }
}

/// Runs `relay-out tlsrpt …`; errors go to stderr with exit status 1.
pub fn command(config: &Path, command: &TlsRptCommand) -> ExitCode {
    match execute(config, command) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("relay-out tlsrpt: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(config: &Path, command: &TlsRptCommand) -> anyhow::Result<String> {
    let dir = ConfigDir::open(config)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayOutSettings::load(&dir)?;
    let queue_dir = &settings.outbound.queue_dir;
    let state_dir = state_dir(queue_dir);
    let state_path = state_dir.join(STATE_FILE);
    match command {
        TlsRptCommand::Show => Ok(show(&State::load(&state_path)?, settings.tlsrpt.enabled)),
        TlsRptCommand::Send => {
            if !settings.tlsrpt.enabled {
                anyhow::bail!("reporting is off (tlsrpt.ini enabled=false)");
            }
            let spool = queue::open(queue_dir)?;
            if let Some(pid) = spool.running_daemon()? {
                std::fs::create_dir_all(&state_dir)?;
                std::fs::write(state_dir.join(REQUEST_FILE), b"")?;
                spool.send_hangup()?;
                return Ok(format!(
                    "relay-out (PID {pid}): sending every pending TLS-RPT report now (see its log)\n"
                ));
            }
            let reporter = super::reporter(&settings.tlsrpt, &core.me);
            let mut state = State::load(&state_path)?;
            let due = state.take_due(Utc::now(), true);
            let queued = queue_reports(&spool, &reporter, due, Utc::now());
            state.entries.extend(queued.kept);
            state.save(&state_path)?;
            if let Some(error) = queued.errors.into_iter().next() {
                return Err(error.into());
            }
            let mut said = format!(
                "{} TLS-RPT report(s) queued; relay-out sends them when it runs\n",
                queued.stored.len()
            );
            if !queued.to_post.is_empty() {
                let wanted = queued.to_post.len();
                let dns = crate::courier::delivery_dns(&core, &settings.outbound)?;
                let verify = settings
                    .tls_policies
                    .ca_file
                    .clone()
                    .map_or(TlsVerify::SystemRoots, TlsVerify::CaFile);
                let client = super::https::client(&verify)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let posted = runtime.block_on(post_reports(&dns, Ok(&client), queued.to_post));
                said.push_str(&format!(
                    "{posted} of {wanted} https: TLS-RPT report(s) posted\n"
                ));
            }
            Ok(said)
        }
    }
}

/// `tlsrpt show`: one line per (day, domain, policy), then its failures.
fn show(state: &State, enabled: bool) -> String {
    let mut out = String::new();
    if !enabled {
        out.push_str("TLS-RPT reporting is off (tlsrpt.ini enabled=false)\n");
    }
    if state.entries.is_empty() {
        out.push_str("no TLS-RPT counts pending\n");
    }
    for entry in &state.entries {
        for counts in &entry.policies {
            let policy_type = serde_json::to_value(counts.policy.policy_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            out.push_str(&format!(
                "{} {} policy={} successful={} failed={}\n",
                entry.day, entry.domain, policy_type, counts.successful, counts.failed
            ));
            for (failure, count) in &counts.details {
                out.push_str(&format!(
                    "  {} mx={} ip={} sessions={}\n",
                    failure.result_type.as_str(),
                    failure.receiving_mx_hostname.as_deref().unwrap_or("-"),
                    failure
                        .receiving_ip
                        .map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
                    count
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::result::{PolicyKey, SessionResult};

    #[test]
    fn each_mailto_destination_gets_a_queued_mail_and_https_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = queue::open(dir.path()).unwrap();
        let reporter = Reporter {
            organization_name: "o".into(),
            contact_info: "c@out.test".into(),
            submitter: "out.test".into(),
            from: "tlsrpt-noreply@out.test".into(),
        };
        let mut state = State::default();
        let now: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        let rua = [
            ReportUri::Mailto("a@r.test".into()),
            ReportUri::Https("https://r.test/".into()),
            ReportUri::Mailto("b@r.test".into()),
        ];
        state.add(
            now,
            &rua,
            &PolicyKey::no_policy("dest.test"),
            &SessionResult::Success,
        );
        let due = state.take_due(now, true);
        let queued = queue_reports(&spool, &reporter, due, now);
        assert!(queued.kept.is_empty() && queued.errors.is_empty());
        assert_eq!(queued.to_post.len(), 1);
        assert_eq!(queued.to_post[0].url, "https://r.test/");
        let stored = queued.stored;
        let to: Vec<&str> = stored
            .iter()
            .map(|e| e.recipients[0].address.as_str())
            .collect();
        assert_eq!(to, ["a@r.test", "b@r.test"]);
        let listing = spool.list().unwrap();
        assert_eq!(listing.entries.len(), 2);
        let data = spool.read_start(&stored[0].id, 1 << 20).unwrap();
        let text = String::from_utf8(data).unwrap();
        assert!(text.contains("TLS-Report-Domain: dest.test\r\n"), "{text}");
        assert_eq!(stored[0].sender, "tlsrpt-noreply@out.test");
    }
}
