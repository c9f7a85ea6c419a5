//! MTA-STS (RFC 8461): which destination domains publish a policy that
//! requires verified TLS to a named set of MX hosts.
//!
//! [`MtaSts::lookup`] is what the courier's TLS decision asks per attempt:
//! one TXT lookup of `_mta-sts.<domain>` (answered from the resolver's cache
//! most of the time), then the cached policy when its id is still the
//! published one, else a fresh fetch. As §5.1 says, a fetch that fails keeps
//! the cached policy in force until it expires, and a domain whose TXT
//! record disappears keeps its cached policy too; without a cached policy,
//! a failed fetch means no policy (logged, and the delivery is opportunistic).
//!
//! Parts: [`txt`] (the TXT record), [`fetch`] (the HTTPS GET and its
//! checks), [`policy`] (the policy text), [`cache`] (memory and disk).

pub mod cache;
pub mod fetch;
pub mod policy;
pub mod txt;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use smtp_core::client::{ClientTlsError, TlsVerify, root_store};
use smtp_core::dns::Dns;
use smtp_core::metrics::metrics;
use tracing::{info, warn};

use crate::https_client::HttpsClient;
use cache::Cache;
pub use policy::{Mode, Policy};

/// How long one policy fetch may take, address lookup to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed fetch, how long the same domain and id wait before the
/// next try: a dead policy host must not cost every message a timeout.
pub const RETRY_FETCH_AFTER: Duration = Duration::from_secs(300);

/// Why MTA-STS cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MtaStsSetupError {
    #[error("cannot set up TLS for MTA-STS policy fetches: {0}")]
    Tls(#[from] ClientTlsError),
    #[error("cannot use the MTA-STS cache directory {}: {source}", dir.display())]
    Cache {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The domain's policy in force, for the courier.
#[derive(Debug, Clone)]
pub struct Found {
    pub domain: String,
    pub id: String,
    pub policy: Arc<Policy>,
    /// What `enforce` would verify MX certificates with, for `testing`.
    verifier: Arc<WebPkiServerVerifier>,
}

impl Found {
    /// Why `enforce` would refuse `host`'s certificate chain `chain` (end
    /// entity first), if it would.
    pub fn certificate_problem(
        &self,
        host: &str,
        chain: &[CertificateDer<'static>],
    ) -> Option<String> {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Some("no certificate".to_owned());
        };
        let name = match ServerName::try_from(host.trim_end_matches('.').to_owned()) {
            Ok(name) => name,
            Err(error) => return Some(format!("invalid MX name: {error}")),
        };
        self.verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .err()
            .map(|error| error.to_string())
    }
}

/// See the module docs. One per process.
#[derive(Debug)]
pub struct MtaSts {
    client: HttpsClient,
    verifier: Arc<WebPkiServerVerifier>,
    cache: Cache,
    port: u16,
    /// (domain, id) of recent failed fetches and when they failed.
    failed: Mutex<HashMap<(String, String), Instant>>,
    /// One fetch per domain at a time; the others wait and use its result.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl MtaSts {
    /// `verify`: what checks policy hosts' certificates (tls_policy.ini
    /// `ca_file`, else the system's CAs); `cache_dir` is created if needed.
    pub fn new(verify: &TlsVerify, cache_dir: &Path, port: u16) -> Result<Self, MtaStsSetupError> {
        let client = HttpsClient::new(verify, FETCH_TIMEOUT, fetch::MAX_POLICY_BYTES)?;
        let roots = root_store(verify)?.unwrap_or_else(rustls::RootCertStore::empty);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|error| ClientTlsError::Config(rustls::Error::General(error.to_string())))?;
        let cache = Cache::open(cache_dir).map_err(|source| MtaStsSetupError::Cache {
            dir: cache_dir.to_owned(),
            source,
        })?;
        Ok(MtaSts {
            client,
            verifier,
            cache,
            port,
            failed: Mutex::default(),
            fetching: Mutex::default(),
        })
    }

    /// The policy in force for `domain` (any mode but `none`), if any, and
    /// the RFC 8460 result type of a policy fetch that failed on the way
    /// (for TLS-RPT; a cached policy may still be in force).
    pub async fn lookup(
        &self,
        dns: &Dns,
        domain: &str,
    ) -> (Option<Found>, Option<crate::tlsrpt::ResultType>) {
        let id = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => txt::policy_id(&records),
            Err(error) => {
                info!(domain, "MTA-STS TXT lookup failed: {error}");
                None
            }
        };
        let cached = self.cache.get(domain);
        let (found, failure) = match (id, cached) {
            (None, cached) => (cached.map(|c| (c.id, c.policy)), None),
            (Some(id), Some(cached)) if cached.id == id => (Some((cached.id, cached.policy)), None),
            (Some(id), cached) => self.refresh(dns, domain, id, cached).await,
        };
        let found = found.filter(|found| found.1.mode != Mode::None);
        let found = found.map(|(id, policy)| Found {
            domain: domain.to_owned(),
            id,
            policy,
            verifier: Arc::clone(&self.verifier),
        });
        (found, failure)
    }

    /// Fetches `domain`'s policy for the published `id`, once at a time per
    /// domain; on failure `cached` stays in force.
    async fn refresh(
        &self,
        dns: &Dns,
        domain: &str,
        id: String,
        cached: Option<cache::Cached>,
    ) -> (
        Option<(String, Arc<Policy>)>,
        Option<crate::tlsrpt::ResultType>,
    ) {
        let keep = |cached: Option<cache::Cached>| (cached.map(|c| (c.id, c.policy)), None);
        let key = (domain.to_owned(), id.clone());
        let recently_failed = |failed: &HashMap<_, Instant>| {
            failed
                .get(&key)
                .is_some_and(|at: &Instant| at.elapsed() < RETRY_FETCH_AFTER)
        };
        if recently_failed(&self.failed.lock().unwrap_or_else(|e| e.into_inner())) {
            return keep(cached);
        }
        let gate = Arc::clone(
            self.fetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(domain.to_owned())
                .or_default(),
        );
        let _turn = gate.lock().await;
        // Another task may have fetched (or failed) while this one waited.
        if let Some(now) = self.cache.get(domain).filter(|c| c.id == id) {
            return (Some((now.id, now.policy)), None);
        }
        if recently_failed(&self.failed.lock().unwrap_or_else(|e| e.into_inner())) {
            return keep(cached);
        }
        let fetched = tokio::time::timeout(
            FETCH_TIMEOUT,
            fetch::fetch(&self.client, dns, domain, self.port),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            Err(fetch::FetchError::Fetch {
                host: format!("mta-sts.{domain}"),
                reason: format!("no policy within {FETCH_TIMEOUT:?}"),
            })
        });
        match fetched {
            Ok((policy, text)) => {
                info!(
                    domain,
                    id = %id,
                    mode = policy.mode.as_str(),
                    mx = %policy.mx.join(","),
                    max_age = policy.max_age.as_secs(),
                    "MTA-STS policy fetched"
                );
                let stored = self.cache.put(domain, &id, &text, policy);
                (Some((stored.id, stored.policy)), None)
            }
            Err(error) => {
                let mode = cached
                    .as_ref()
                    .map_or("unknown", |c| c.policy.mode.as_str());
                metrics().mta_sts_failure(mode, error.result_type());
                warn!(
                    domain,
                    id = %id,
                    result_type = error.result_type(),
                    cached = cached.is_some(),
                    "MTA-STS policy fetch failed ({}): {error}",
                    if cached.is_some() {
                        "the cached policy stays in force"
                    } else {
                        "no policy applies"
                    }
                );
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                failed.retain(|_, at| at.elapsed() < RETRY_FETCH_AFTER);
                failed.insert(key, Instant::now());
                drop(failed);
                (keep(cached).0, Some(error.report_type()))
            }
        }
    }
}
