//! The backup-MX mode's memory of which recipients the backend accepted.
//!
//! It exists so that relay-in, while the backend is away, accepts mail only
//! for addresses the backend itself accepted while it was up (issue 15). A
//! recipient never seen accepted is answered `451 4.4.1`: the spool must never
//! hold mail that the home server would refuse later, because relay-in would
//! then owe a bounce to a sender address that may be forged (backscatter),
//! and an open spool would let anyone probe for addresses by its answers.
//! Postfix keeps the same knowledge in its verify cache
//! (`address_verify_positive_expire_time`, 31 days by default).
//!
//! [`VerifiedRecipients`] is the pure part (no clock, no file): times come in
//! as seconds since the Unix epoch and the file format goes through
//! [`VerifiedRecipients::parse`] / [`VerifiedRecipients::render`].
//! [`VerifiedStore`] shares it between connections and writes it to disk.
//!
//! # Durability
//!
//! A new verification is written to disk within [`SAVE_INTERVAL`], not before
//! the sender's 250: losing the last seconds of verifications in a crash only
//! means that those recipients are answered 451 during an outage that starts
//! right after the crash, which is the safe side. A removal (the backend
//! answered 5xx) follows the same path; until it is saved, a crash could
//! bring the address back for at most its remaining `verified_ttl`, and the
//! backend's next answer removes it again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first line of the store's file, so that a stray file is not taken for
/// one and a later format can be told apart.
const FILE_HEADER: &str = "# postern relay-in verified recipients, version 1";

/// A recipient accepted again is rewritten only when its time on disk is at
/// least this old: the answer to "verified within `verified_ttl`?" barely
/// changes, and the store is not rewritten for every message.
const REFRESH_AFTER_SECS: u64 = 24 * 60 * 60;

/// How often [`VerifiedStore::save_if_changed`] is meant to run.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// Recipients the backend accepted, with the last time it did.
///
/// Bounded by `capacity` because a backend with a catch-all address accepts
/// whatever a client tries, and a client may try millions of addresses.
#[derive(Debug, Clone)]
pub struct VerifiedRecipients {
    verified_at: HashMap<String, u64>,
    ttl_secs: u64,
    capacity: usize,
    changed: bool,
}

/// A line of the store's file that could not be read (it is skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub line_number: usize,
    pub text: String,
}

impl VerifiedRecipients {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            verified_at: HashMap::new(),
            ttl_secs: ttl.as_secs(),
            capacity: capacity.max(1),
            changed: false,
        }
    }

    /// Reads the store's file. Lines that are not `<seconds> <address>` are
    /// skipped and returned, so the caller can log them: a damaged store
    /// costs verifications, never the daemon's start.
    pub fn parse(text: &str, ttl: Duration, capacity: usize) -> (Self, Vec<SkippedLine>) {
        let mut store = Self::new(ttl, capacity);
        let mut skipped = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(secs, address)| Some((secs.parse::<u64>().ok()?, address.trim())))
                .filter(|(_, address)| is_plausible_address(address));
            match parsed {
                Some((secs, address)) => {
                    store.insert(address, secs);
                }
                None => skipped.push(SkippedLine {
                    line_number: index + 1,
                    text: line.chars().take(200).collect(),
                }),
            }
        }
        store.changed = false;
        (store, skipped)
    }

    /// The file's text: one `<seconds> <address>` line per recipient, sorted
    /// by address so that two saves of the same store are byte-identical.
    pub fn render(&self) -> String {
        let mut entries: Vec<_> = self.verified_at.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut text = String::with_capacity(FILE_HEADER.len() + 1 + entries.len() * 40);
        text.push_str(FILE_HEADER);
        text.push('\n');
        for (address, secs) in entries {
            text.push_str(&format!("{secs} {address}\n"));
        }
        text
    }

    /// The backend accepted `address` at `now`.
    pub fn record(&mut self, address: &str, now: u64) {
        let key = key_of(address);
        match self.verified_at.get_mut(&key) {
            Some(at) if now.saturating_sub(*at) < REFRESH_AFTER_SECS => {}
            Some(at) => {
                *at = now;
                self.changed = true;
            }
            None => {
                if self.verified_at.len() >= self.capacity {
                    self.make_room(now);
                }
                self.verified_at.insert(key, now);
                self.changed = true;
            }
        }
    }

    /// The backend refused `address` for good (5xx): it is no longer known
    /// to exist. Returns whether it was in the store.
    pub fn forget(&mut self, address: &str) -> bool {
        let removed = self.verified_at.remove(&key_of(address)).is_some();
        self.changed |= removed;
        removed
    }

    /// Whether the backend accepted `address` within `verified_ttl` of `now`.
    pub fn is_verified(&self, address: &str, now: u64) -> bool {
        self.verified_at
            .get(&key_of(address))
            .is_some_and(|at| now.saturating_sub(*at) < self.ttl_secs)
    }

    /// Drops every entry older than `verified_ttl`; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.verified_at.len();
        let ttl = self.ttl_secs;
        self.verified_at
            .retain(|_, at| now.saturating_sub(*at) < ttl);
        let dropped = before - self.verified_at.len();
        self.changed |= dropped > 0;
        dropped
    }

    pub fn len(&self) -> usize {
        self.verified_at.len()
    }

    /// Whether anything changed since the last call (then it must be saved).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    fn insert(&mut self, address: &str, secs: u64) {
        let key = key_of(address);
        if !self.verified_at.contains_key(&key) && self.verified_at.len() >= self.capacity {
            self.make_room(secs);
        }
        let at = self.verified_at.entry(key).or_insert(secs);
        *at = (*at).max(secs);
    }

    /// At capacity: first the expired entries go, then the oldest tenth, so
    /// that a flood of new addresses costs one scan per many insertions.
    fn make_room(&mut self, now: u64) {
        if self.expire(now) > 0 && self.verified_at.len() < self.capacity {
            return;
        }
        let mut times: Vec<u64> = self.verified_at.values().copied().collect();
        let drop_count = (self.capacity / 10).max(1).min(times.len());
        let (_, cutoff, _) = times.select_nth_unstable(drop_count - 1);
        let cutoff = *cutoff;
        let mut to_drop = drop_count;
        self.verified_at.retain(|_, at| {
            if *at <= cutoff && to_drop > 0 {
                to_drop -= 1;
                false
            } else {
                true
            }
        });
        self.changed = true;
    }
}

/// The form an address is remembered under: the domain is case-insensitive
/// (DNS), the local part is kept as given (RFC 5321 §2.4 leaves it to the
/// backend; a miss only costs a 451, the safe side).
fn key_of(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => address.to_owned(),
    }
}

/// Enough to keep a damaged line from becoming an entry: one `@`-separated
/// address without spaces or control characters.
fn is_plausible_address(address: &str) -> bool {
    address.contains('@')
        && !address.is_empty()
        && address.len() <= 320
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The verified-recipient store shared by relay-in's connections, with its
/// file.
#[derive(Debug)]
pub struct VerifiedStore {
    path: PathBuf,
    recipients: Mutex<VerifiedRecipients>,
}

/// Why the store's file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VerifiedStoreError {
    #[error("cannot read the verified-recipient store {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the verified-recipient store {path}: {source}")]
    Write {
        path: PathBuf,
        source: spool::SpoolError,
    },
}

impl VerifiedStore {
    /// Opens the store at `path` (a missing file is an empty store). Returns
    /// the lines it skipped, for the caller to log.
    pub fn open(
        path: &Path,
        ttl: Duration,
        capacity: usize,
    ) -> Result<(Self, Vec<SkippedLine>), VerifiedStoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(VerifiedStoreError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let (mut recipients, skipped) = VerifiedRecipients::parse(&text, ttl, capacity);
        recipients.expire(unix_now());
        let store = Self {
            path: path.to_owned(),
            recipients: Mutex::new(recipients),
        };
        Ok((store, skipped))
    }

    pub fn record(&self, address: &str) {
        self.lock().record(address, unix_now());
    }

    pub fn forget(&self, address: &str) -> bool {
        self.lock().forget(address)
    }

    pub fn is_verified(&self, address: &str) -> bool {
        self.lock().is_verified(address, unix_now())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Writes the file if anything changed since the last save (expired
    /// entries are dropped first). Blocking: run it off the async threads.
    pub fn save_if_changed(&self) -> Result<bool, VerifiedStoreError> {
        let text = {
            let mut recipients = self.lock();
            recipients.expire(unix_now());
            if !recipients.take_changed() {
                return Ok(false);
            }
            recipients.render()
        };
        let outcome = spool::replace_file_durably(&self.path, text.as_bytes());
        if outcome.is_err() {
            // Try again at the next save rather than lose the change.
            self.lock().changed = true;
        }
        outcome
            .map(|()| true)
            .map_err(|source| VerifiedStoreError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VerifiedRecipients> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters (each operation is one insert or remove).
        self.recipients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
