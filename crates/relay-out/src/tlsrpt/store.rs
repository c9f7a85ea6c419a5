//! The day's session counts, per policy domain and policy, kept in memory
//! and saved to `<queue_dir>/tlsrpt/state.json` so that a restart loses
//! at most the last [`super::SAVE_INTERVAL`] of sessions.
//!
//! Saved with `spool::replace_file_durably` (a temporary file, fsync,
//! rename, fsync of the directory): a crash leaves the old state or the new
//! one, never half.
//! Bounded: at most [`MAX_ENTRIES`] (day, domain) entries,
//! [`MAX_POLICIES`] policies per entry and [`MAX_DETAILS`] distinct failure
//! details per policy (beyond them, failures are still counted in the
//! totals), and entries older than [`MAX_AGE_DAYS`] are dropped unsent.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::dns_record::ReportUri;
use super::result::{Failure, PolicyKey, SessionResult};

pub const MAX_ENTRIES: usize = 20_000;
pub const MAX_POLICIES: usize = 32;
pub const MAX_DETAILS: usize = 64;
pub const MAX_AGE_DAYS: u64 = 7;

/// The state file's name in the TLS-RPT directory.
pub const STATE_FILE: &str = "state.json";

/// One policy's counts for one (day, domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounts {
    pub policy: PolicyKey,
    pub successful: u64,
    pub failed: u64,
    /// Distinct failure details and how many sessions each.
    pub details: Vec<(Failure, u64)>,
}

/// What is owed one policy domain for (part of) one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub day: NaiveDate,
    /// Start of the period this entry covers: the day's start, or later
    /// when part of the day was already reported (`tlsrpt send`).
    pub since: DateTime<Utc>,
    pub domain: String,
    /// Where the domain wants reports, as last looked up.
    pub rua: Vec<ReportUri>,
    pub policies: Vec<PolicyCounts>,
}

/// Everything not yet reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub entries: Vec<Entry>,
    /// The last time a report was sent for the current day ahead of time:
    /// the next entry of that day starts there.
    pub reported_until: Option<DateTime<Utc>>,
}

/// The first instant of `day`, UTC.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

impl State {
    /// Counts one session at `now` for `domain` (which publishes `rua`).
    /// Returns false when a bound made it uncounted.
    pub fn add(
        &mut self,
        now: DateTime<Utc>,
        rua: &[ReportUri],
        policy: &PolicyKey,
        result: &SessionResult,
    ) -> bool {
        let day = now.date_naive();
        let domain = &policy.policy_domain;
        let index = match self
            .entries
            .iter()
            .position(|e| e.day == day && &e.domain == domain)
        {
            Some(index) => index,
            None => {
                if self.entries.len() >= MAX_ENTRIES {
                    return false;
                }
                let since = self
                    .reported_until
                    .filter(|until| until.date_naive() == day)
                    .unwrap_or_else(|| day_start(day));
                self.entries.push(Entry {
                    day,
                    since,
                    domain: domain.clone(),
                    rua: Vec::new(),
                    policies: Vec::new(),
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        rua.clone_into(&mut entry.rua);
        let counts = match entry.policies.iter().position(|p| &p.policy == policy) {
            Some(index) => &mut entry.policies[index],
            None => {
                if entry.policies.len() >= MAX_POLICIES {
                    return false;
                }
                entry.policies.push(PolicyCounts {
                    policy: policy.clone(),
                    successful: 0,
                    failed: 0,
                    details: Vec::new(),
                });
                entry.policies.last_mut().expect("just pushed")
            }
        };
        match result {
            SessionResult::Success => counts.successful += 1,
            SessionResult::Failure(failure) => {
                counts.failed += 1;
                let known = counts.details.iter().position(|(f, _)| f == failure);
                match known {
                    Some(index) => counts.details[index].1 += 1,
                    None if counts.details.len() < MAX_DETAILS => {
                        counts.details.push((failure.clone(), 1));
                    }
                    None => {}
                }
            }
        }
        true
    }

    /// Removes and returns the entries to report at `now`: those of days
    /// before today, and with `today_too` also today's (whose report then
    /// ends at `now`). Entries past [`MAX_AGE_DAYS`] are dropped.
    pub fn take_due(&mut self, now: DateTime<Utc>, today_too: bool) -> Vec<Entry> {
        let today = now.date_naive();
        let oldest = today
            .checked_sub_days(Days::new(MAX_AGE_DAYS))
            .unwrap_or(today);
        self.entries.retain(|e| e.day >= oldest);
        let (due, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| e.day < today || today_too);
        self.entries = kept;
        if today_too {
            self.reported_until = Some(now);
        }
        due
    }

    /// Reads the state file; none yet is an empty state.
    pub fn load(path: &Path) -> Result<State, StoreError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| StoreError::Corrupt {
                path: path.to_owned(),
                error,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(error) => Err(StoreError::Io {
                path: path.to_owned(),
                error,
            }),
        }
    }

    /// Writes the state file atomically (see the module docs).
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        let json = serde_json::to_vec(self).expect("the state serializes");
        spool::replace_file_durably(path, &json).map_err(|source| StoreError::Write {
            path: path.to_owned(),
            source,
        })
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot save {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: spool::SpoolError,
    },
    #[error("{}: not a TLS-RPT state file: {error}", path.display())]
    Corrupt {
        path: PathBuf,
        error: serde_json::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::result::ResultType;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn failure(result_type: ResultType, mx: &str) -> SessionResult {
        SessionResult::Failure(Failure {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: Some(mx.into()),
            receiving_ip: Some("192.0.2.1".parse().unwrap()),
            additional_information: None,
            failure_reason_code: None,
        })
    }

    #[test]
    fn sessions_aggregate_per_day_domain_policy_and_failure() {
        let rua = [ReportUri::Mailto("r@x.test".into())];
        let policy = PolicyKey::no_policy("dest.test");
        let mut state = State::default();
        let t = at("2026-12-06T10:00:00Z");
        assert!(state.add(t, &rua, &policy, &SessionResult::Success));
        assert!(state.add(t, &rua, &policy, &SessionResult::Success));
        let expired = failure(ResultType::CertificateExpired, "mx1.dest.test");
        assert!(state.add(t, &rua, &policy, &expired));
        assert!(state.add(t, &rua, &policy, &expired));
        assert!(state.add(
            t,
            &rua,
            &policy,
            &failure(ResultType::CertificateExpired, "mx2")
        ));
        let other = PolicyKey::no_policy("other.test");
        assert!(state.add(t, &rua, &other, &SessionResult::Success));
        // The next day is another entry.
        assert!(state.add(
            at("2026-12-07T00:00:01Z"),
            &rua,
            &policy,
            &SessionResult::Success
        ));
        assert_eq!(state.entries.len(), 3);
        let dest = &state.entries[0];
        assert_eq!(dest.since, at("2026-12-06T00:00:00Z"));
        assert_eq!(dest.policies.len(), 1);
        let counts = &dest.policies[0];
        assert_eq!((counts.successful, counts.failed), (2, 3));
        assert_eq!(counts.details.len(), 2);
        assert_eq!(counts.details[0].1, 2);

        // On the 7th, only the 6th is due; sending now takes the 7th too,
        // and the 7th's next entry starts where that report ended.
        let now = at("2026-12-07T08:00:00Z");
        assert_eq!(state.take_due(now, false).len(), 2);
        assert_eq!(state.take_due(now, true).len(), 1);
        assert!(state.entries.is_empty());
        state.add(
            at("2026-12-07T09:00:00Z"),
            &rua,
            &policy,
            &SessionResult::Success,
        );
        assert_eq!(state.entries[0].since, now);
    }

    #[test]
    fn bounds_hold_and_totals_stay_right() {
        let rua = [ReportUri::Mailto("r@x.test".into())];
        let policy = PolicyKey::no_policy("dest.test");
        let mut state = State::default();
        let t = at("2026-12-06T10:00:00Z");
        for n in 0..(MAX_DETAILS + 10) {
            state.add(
                t,
                &rua,
                &policy,
                &failure(ResultType::ValidationFailure, &format!("mx{n}")),
            );
        }
        let counts = &state.entries[0].policies[0];
        assert_eq!(counts.failed, (MAX_DETAILS + 10) as u64);
        assert_eq!(counts.details.len(), MAX_DETAILS);
        // Too old to send: dropped.
        state.add(
            at("2026-11-01T10:00:00Z"),
            &rua,
            &policy,
            &SessionResult::Success,
        );
        assert_eq!(state.take_due(t, false).len(), 0);
        assert_eq!(state.entries.len(), 1);
    }

    #[test]
    fn the_state_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tlsrpt").join(STATE_FILE);
        assert_eq!(State::load(&path).unwrap(), State::default());
        let mut state = State::default();
        state.add(
            at("2026-12-06T10:00:00Z"),
            &[ReportUri::Https("https://r.test/".into())],
            &PolicyKey::no_policy("dest.test"),
            &failure(ResultType::StarttlsNotSupported, "mx"),
        );
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), state);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path() != path)
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            State::load(&path),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
