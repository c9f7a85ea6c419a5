//! The MTA-STS policy cache (RFC 8461 §5.1): each domain's last good policy
//! with its id and when it expires, in memory and on disk so that a restart
//! does not forget a policy (an attacker who blocks the policy host after a
//! restart must not turn `enforce` into "no policy").
//!
//! On disk: one JSON file per domain in `<queue_dir>/mta-sts/` (the queue
//! scanner ignores the directory), read once at startup, written with
//! `spool::replace_file_durably`: a crash leaves the old or the new file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::policy::Policy;

/// The directory under the queue directory that holds the cache.
pub const CACHE_DIR: &str = "mta-sts";

/// One domain's cached policy.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The TXT record's id when the policy was fetched.
    pub id: String,
    pub policy: Arc<Policy>,
    pub expires: SystemTime,
}

/// The file format; the policy is kept as text and parsed again on load,
/// so the parser stays the one judge of what a policy is.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    domain: String,
    id: String,
    /// Seconds since the epoch.
    fetched: u64,
    policy: String,
}

/// See the module docs.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    entries: Mutex<HashMap<String, Cached>>,
}

impl Cache {
    /// Creates the directory if needed and loads every unexpired entry; a
    /// file that does not parse is logged and ignored.
    pub fn open(dir: &Path) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir)?;
        let mut entries = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match load(&path) {
                Ok(Some((domain, cached))) => {
                    entries.insert(domain, cached);
                }
                Ok(None) => {}
                Err(reason) => {
                    warn!(file = %path.display(), "ignoring an MTA-STS cache file: {reason}")
                }
            }
        }
        Ok(Cache {
            dir: dir.to_owned(),
            entries: Mutex::new(entries),
        })
    }

    /// `domain`'s policy if one is cached and has not expired.
    pub fn get(&self, domain: &str) -> Option<Cached> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(domain)
            .filter(|c| c.expires > SystemTime::now())
            .cloned()
    }

    /// Keeps a freshly fetched policy; failing to write the file is logged
    /// (the policy still counts until the restart).
    pub fn put(&self, domain: &str, id: &str, text: &str, policy: Policy) -> Cached {
        let fetched = SystemTime::now();
        let cached = Cached {
            id: id.to_owned(),
            expires: fetched + policy.max_age,
            policy: Arc::new(policy),
        };
        let stored = Stored {
            domain: domain.to_owned(),
            id: id.to_owned(),
            fetched: fetched
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            policy: text.to_owned(),
        };
        if let Err(error) = self.write(domain, &stored) {
            warn!(domain, dir = %self.dir.display(), "cannot write the MTA-STS cache: {error}");
        }
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_owned(), cached.clone());
        cached
    }

    fn write(&self, domain: &str, stored: &Stored) -> std::io::Result<()> {
        // Domains reach here normalized (A-labels); refuse anything that
        // could leave the directory all the same.
        if domain.is_empty() || domain.starts_with('.') || domain.contains(['/', '\\']) {
            return Err(std::io::Error::other("not a domain name"));
        }
        let path = self.dir.join(format!("{domain}.json"));
        spool::replace_file_durably(&path, &serde_json::to_vec(stored)?)
            .map_err(std::io::Error::other)
    }
}

fn load(path: &Path) -> Result<Option<(String, Cached)>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let policy = Policy::parse(&stored.policy).map_err(|e| e.to_string())?;
    let expires = UNIX_EPOCH + Duration::from_secs(stored.fetched) + policy.max_age;
    if expires <= SystemTime::now() {
        return Ok(None);
    }
    Ok(Some((
        stored.domain,
        Cached {
            id: stored.id,
            policy: Arc::new(policy),
            expires,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_survives_reopening_and_expires() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(CACHE_DIR);
        let text = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n";
        let cache = Cache::open(&dir).unwrap();
        cache.put("example.com", "id1", text, Policy::parse(text).unwrap());
        let reopened = Cache::open(&dir).unwrap();
        let cached = reopened.get("example.com").expect("cached");
        assert_eq!(cached.id, "id1");
        assert!(cached.policy.matches("mx.example.com"));
        assert!(reopened.get("example.org").is_none());

        let short = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 0\n";
        cache.put("example.net", "id2", short, Policy::parse(short).unwrap());
        assert!(
            cache.get("example.net").is_none(),
            "max_age 0 is expired at once"
        );
        assert!(Cache::open(&dir).unwrap().get("example.net").is_none());
        std::fs::write(dir.join("junk.json"), "{").unwrap();
        assert!(Cache::open(&dir).unwrap().get("example.com").is_some());
    }
}
