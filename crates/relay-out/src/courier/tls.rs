//! TLS towards the next hop: which use of STARTTLS a host gets, and the
//! order in which one group's hosts are tried with and without it.
//!
//! For MX hosts the one decision point is [`MxTls::for_domain`], in this
//! order (issue 16 point 1): the domain's tls_policy.ini entry (`none`,
//! `may`, `encrypt`, `verify`); DANE (per MX host, once the MX hosts are
//! known: `super::dane`, applied in `super::attempt` when the decision
//! [`TlsDecision::lets_dane_decide`]); the domain's MTA-STS policy in `enforce` mode (`mta-sts`: verified STARTTLS,
//! and only the MX hosts the policy names); else outbound.ini's
//! `enable_tls` (opportunistic, any certificate, as Haraka and Postfix
//! `may`), which is also what a `testing` MTA-STS policy gets, with what
//! would have failed logged. A message with `TLS-Required: No` (RFC 8689
//! §4.2.2) gets `may` whatever the rest says. A route's hops get the route's `tls` (off,
//! opportunistic, or required and verified).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use smtp_core::client::{ClientTls, ClientTlsError, SmtpClient, TlsMode, TlsVerify};
use smtp_core::config::CoreSettings;
use smtp_core::dns::Dns;
use smtp_core::metrics::metrics;
use tracing::warn;

use super::DeliverySetupError;
use super::connector::Connector;
use super::mx::{Candidate, Destination, ResolveFailure};
use crate::config::{OutboundSettings, RouteTls, TlsPolicies, TlsPolicy};
use crate::mta_sts::{self, Mode, MtaSts};

/// `tls_policy_source` of a tls_policy.ini entry.
pub const SOURCE_TLS_POLICY_INI: &str = "tls_policy.ini";
/// `tls_policy_source` of the outbound default.
pub const SOURCE_DEFAULT: &str = "enable_tls";
/// `tls_policy_source` of an MTA-STS policy in `enforce` mode.
pub const SOURCE_MTA_STS: &str = "mta-sts";
/// `tls_policy_source` of the default applied under an MTA-STS policy in
/// `testing` mode (would-be failures are logged).
pub const SOURCE_MTA_STS_TESTING: &str = "mta-sts-testing";
/// `tls_policy_source` of `may` for a message with `TLS-Required: No`.
pub const SOURCE_TLS_REQUIRED_NO: &str = "TLS-Required";

/// Whether STARTTLS is used, and what a failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsUse {
    Off,
    /// When offered; a failed handshake moves on (and, with
    /// `tls_fallback_plain`, comes back in clear text last).
    Opportunistic,
    /// Always, verified; a host without it is not used.
    Required,
    /// Always, any certificate (tls_policy.ini `encrypt`); a host without
    /// it is not used, and never in clear text.
    Encrypted,
}

impl TlsUse {
    /// A route's hops: their `tls`, and the CA file that verifies them when
    /// TLS is required (`None`: the system's CAs).
    pub fn for_route(tls: &RouteTls) -> (Self, Option<TlsVerify>) {
        match tls {
            RouteTls::Off => (TlsUse::Off, None),
            RouteTls::Opportunistic => (TlsUse::Opportunistic, None),
            RouteTls::Required { ca_file } => (
                TlsUse::Required,
                Some(
                    ca_file
                        .clone()
                        .map_or(TlsVerify::SystemRoots, TlsVerify::CaFile),
                ),
            ),
        }
    }

    /// The client TLS setup for sessions with STARTTLS: opportunistic
    /// accepts any certificate, required verifies with `verify` (else the
    /// system's CAs). Built at startup, where reading a CA file can fail.
    pub fn client_tls(self, verify: Option<&TlsVerify>) -> Result<ClientTls, ClientTlsError> {
        match self {
            TlsUse::Off => Ok(ClientTls::off()),
            TlsUse::Opportunistic => ClientTls::new(TlsMode::Opportunistic, &TlsVerify::Insecure),
            TlsUse::Required => {
                ClientTls::new(TlsMode::Required, verify.unwrap_or(&TlsVerify::SystemRoots))
            }
            TlsUse::Encrypted => ClientTls::new(TlsMode::Required, &TlsVerify::Insecure),
        }
    }
}

/// The MX connectors, one per TLS policy in use, and which one a
/// destination domain gets: the decision and its source are logged on every
/// attempt line (`tls_policy=verify source=tls_policy.ini`).
#[derive(Debug)]
pub struct MxTls {
    policies: TlsPolicies,
    default: (TlsPolicy, Arc<Connector>),
    by_policy: BTreeMap<TlsPolicy, Arc<Connector>>,
    /// `None` with tls_policy.ini `mta_sts=false`.
    mta_sts: Option<MtaSts>,
    /// `may`'s connector, for a message whose sender asked with
    /// `TLS-Required: No` that TLS policies be ignored (RFC 8689 §4.2.2).
    relaxed: Arc<Connector>,
}

/// What [`MxTls::for_domain`] decided for one destination.
#[derive(Debug, Clone)]
pub struct MxDecision {
    pub connector: Arc<Connector>,
    pub decision: TlsDecision,
    /// The MTA-STS policy behind an `mta-sts` or `mta-sts-testing` decision.
    pub sts: Option<mta_sts::Found>,
    /// A policy fetch for this destination failed now (RFC 8460 result
    /// type), for TLS-RPT.
    pub sts_fetch_failure: Option<crate::tlsrpt::ResultType>,
}

/// Which TLS policy a destination got, and from where, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsDecision {
    pub policy: TlsPolicy,
    pub source: &'static str,
}

impl TlsDecision {
    /// Named in tls_policy.ini: DANE and MTA-STS do not override it.
    pub fn is_explicit(&self) -> bool {
        self.source == SOURCE_TLS_POLICY_INI
    }

    /// DANE may still decide per MX host: not for a tls_policy.ini entry,
    /// nor for a message with `TLS-Required: No`.
    pub fn lets_dane_decide(&self) -> bool {
        !self.is_explicit() && self.source != SOURCE_TLS_REQUIRED_NO
    }
}

impl MxTls {
    /// Builds a connector for the default and for each policy
    /// tls_policy.ini names (a CA file is read now, not per message).
    pub fn new(
        core: &CoreSettings,
        outbound: &OutboundSettings,
        policies: &TlsPolicies,
    ) -> Result<Self, DeliverySetupError> {
        let default_policy = if outbound.enable_tls {
            TlsPolicy::May
        } else {
            TlsPolicy::None
        };
        let ca_file = policies.ca_file.clone();
        let verify = ca_file.map_or(TlsVerify::SystemRoots, TlsVerify::CaFile);
        let connector = |policy: TlsPolicy| -> Result<Arc<Connector>, ClientTlsError> {
            let (tls, verify) = match policy {
                TlsPolicy::None => (TlsUse::Off, None),
                TlsPolicy::May => (TlsUse::Opportunistic, None),
                TlsPolicy::Encrypt => (TlsUse::Encrypted, None),
                // RFC 8461 §4.2: STARTTLS and a certificate valid for the
                // MX name, like `verify` (the host check is in `admit`).
                TlsPolicy::Verify | TlsPolicy::MtaSts => (TlsUse::Required, Some(verify.clone())),
                // Never named in the file: DANE's connectors are built per
                // host from its TLSA records (courier::dane).
                TlsPolicy::Dane => (TlsUse::Encrypted, None),
            };
            Ok(Arc::new(Connector::mx_with(core, outbound, tls, verify)?))
        };
        let mut by_policy = BTreeMap::new();
        let mta_sts_policy = policies.mta_sts.then_some(&TlsPolicy::MtaSts);
        for policy in policies.domains.values().chain(mta_sts_policy) {
            if !by_policy.contains_key(policy) {
                by_policy.insert(*policy, connector(*policy)?);
            }
        }
        let mta_sts = if policies.mta_sts {
            let cache_dir = outbound.queue_dir.join(mta_sts::cache::CACHE_DIR);
            Some(MtaSts::new(&verify, &cache_dir, policies.mta_sts_port)?)
        } else {
            None
        };
        Ok(MxTls {
            policies: policies.clone(),
            default: (default_policy, connector(default_policy)?),
            by_policy,
            mta_sts,
            relaxed: connector(TlsPolicy::May)?,
        })
    }

    /// The connector MX hosts are resolved with while the decision is
    /// being made ([`MxDecision::admit`] puts the decided one in).
    pub fn default_connector(&self) -> &Arc<Connector> {
        &self.default.1
    }

    /// The connector for `destination`'s MX hosts and why.
    /// `tls_not_required`: the message has `TLS-Required: No`, so a policy
    /// that would require TLS gives way to `may` (source `TLS-Required`).
    pub async fn for_domain(
        &self,
        dns: &Dns,
        destination: &Destination,
        tls_not_required: bool,
    ) -> MxDecision {
        let decision = self.by_policy(dns, destination).await;
        let requires_tls = !matches!(decision.decision.policy, TlsPolicy::None | TlsPolicy::May);
        if tls_not_required && requires_tls {
            return MxDecision {
                connector: Arc::clone(&self.relaxed),
                decision: TlsDecision {
                    policy: TlsPolicy::May,
                    source: SOURCE_TLS_REQUIRED_NO,
                },
                sts: None,
                sts_fetch_failure: None,
            };
        }
        decision
    }

    async fn by_policy(&self, dns: &Dns, destination: &Destination) -> MxDecision {
        let decided = |policy: TlsPolicy, source, sts| MxDecision {
            connector: Arc::clone(&self.by_policy[&policy]),
            decision: TlsDecision { policy, source },
            sts,
            sts_fetch_failure: None,
        };
        let default = |source, sts| MxDecision {
            connector: Arc::clone(&self.default.1),
            decision: TlsDecision {
                policy: self.default.0,
                source,
            },
            sts,
            sts_fetch_failure: None,
        };
        let Destination::Domain(domain) = destination else {
            return default(SOURCE_DEFAULT, None);
        };
        if let Some(policy) = self.policies.for_domain(domain) {
            return decided(policy, SOURCE_TLS_POLICY_INI, None);
        }
        // DANE comes next, per MX host, once they are known (attempt.rs):
        // a host with DNSSEC-authenticated TLSA records gets `dane` over
        // whatever is decided below.
        let Some(sts) = &self.mta_sts else {
            return default(SOURCE_DEFAULT, None);
        };
        let (found, sts_fetch_failure) = sts.lookup(dns, domain).await;
        let decision = match found {
            Some(found) if found.policy.mode == Mode::Enforce => {
                decided(TlsPolicy::MtaSts, SOURCE_MTA_STS, Some(found))
            }
            Some(found) => default(SOURCE_MTA_STS_TESTING, Some(found)),
            None => default(SOURCE_DEFAULT, None),
        };
        MxDecision {
            sts_fetch_failure,
            ..decision
        }
    }
}

impl MxDecision {
    /// The MX hosts this decision lets be tried, each with this decision's
    /// connector (they were resolved alongside the decision, with the
    /// default one): under an `enforce` policy only those its `mx` patterns
    /// name (none: deferred, naming them); under `testing` all, with the
    /// ones that would not be used logged.
    pub fn admit(
        &self,
        queue_id: &str,
        mut candidates: Vec<Candidate>,
    ) -> Result<Vec<Candidate>, ResolveFailure> {
        for candidate in &mut candidates {
            candidate.connector = Arc::clone(&self.connector);
        }
        let Some(found) = &self.sts else {
            return Ok(candidates);
        };
        let (allowed, refused): (Vec<Candidate>, Vec<Candidate>) = candidates
            .into_iter()
            .partition(|c| found.policy.matches(&c.host));
        let mut refused_hosts: Vec<&str> = refused.iter().map(|c| c.host.as_str()).collect();
        refused_hosts.dedup();
        if !refused_hosts.is_empty() {
            metrics().mta_sts_failure(found.policy.mode.as_str(), "validation-failure");
        }
        if found.policy.mode != Mode::Enforce {
            if !refused_hosts.is_empty() {
                warn!(
                    queue_id,
                    domain = %found.domain,
                    mta_sts_id = %found.id,
                    result_type = "validation-failure",
                    "MTA-STS testing policy: MX host(s) {} not in the policy's mx list ({}); delivered anyway, enforce would not use them",
                    refused_hosts.join(", "),
                    found.policy.mx.join(", ")
                );
            }
            return Ok(allowed.into_iter().chain(refused).collect());
        }
        if allowed.is_empty() {
            return Err(ResolveFailure::temporary(
                "4.7.5",
                format!(
                    "MTA-STS policy of {} (enforce, id {}) allows none of its MX hosts: {} not in the policy's mx list ({})",
                    found.domain,
                    found.id,
                    refused_hosts.join(", "),
                    found.policy.mx.join(", ")
                ),
            ));
        }
        if !refused_hosts.is_empty() {
            warn!(
                queue_id,
                domain = %found.domain,
                "MTA-STS enforce: not using MX host(s) {} (not in the policy's mx list)",
                refused_hosts.join(", ")
            );
        }
        Ok(allowed)
    }

    /// The MX hosts when DANE decided for some of them: those with TLSA
    /// records keep DANE's connector, the others get this decision's
    /// (RFC 8461 §2: DANE and MTA-STS do not combine, so no `mx` filter).
    pub fn beside_dane(
        &self,
        mut candidates: Vec<Candidate>,
        dane: &super::dane::HostDecisions,
    ) -> Vec<Candidate> {
        for candidate in &mut candidates {
            if dane.for_host(&candidate.host).is_none() {
                candidate.connector = Arc::clone(&self.connector);
            }
        }
        candidates
    }

    /// Under a `testing` policy, logs a session that enforce would have
    /// refused: no STARTTLS, or a certificate not valid for the MX name.
    pub fn note_session(&self, queue_id: &str, host: &str, client: &SmtpClient) {
        let Some(found) = self.sts.as_ref().filter(|f| f.policy.mode == Mode::Testing) else {
            return;
        };
        let problem = match client.peer_certificates() {
            None if !client.is_tls() => {
                Some(("starttls-not-supported", "was used without TLS".to_owned()))
            }
            chain => found
                .certificate_problem(host, chain.unwrap_or_default())
                .map(|reason| {
                    (
                        "validation-failure",
                        format!("has a certificate enforce would refuse ({reason})"),
                    )
                }),
        };
        if let Some((result_type, what)) = problem {
            metrics().mta_sts_failure(Mode::Testing.as_str(), result_type);
            warn!(
                queue_id,
                domain = %found.domain,
                mx = host,
                mta_sts_id = %found.id,
                result_type,
                "MTA-STS testing policy: {host} {what}; enforce would have deferred"
            );
        }
    }
}

/// The TLS policy settings as `--check` and the startup log show them: the
/// default for MX hosts (outbound.ini `enable_tls`), one line per domain
/// tls_policy.ini names, MTA-STS, and what REQUIRETLS messages need.
pub fn describe(
    policies: &TlsPolicies,
    enable_tls: bool,
    queue_dir: &std::path::Path,
) -> Vec<String> {
    let verify_with = policies.ca_file.as_ref().map_or_else(
        || "the system's CAs".to_owned(),
        |file| file.display().to_string(),
    );
    let meaning = |policy: TlsPolicy| match policy {
        TlsPolicy::None => "never STARTTLS".to_owned(),
        TlsPolicy::May => "STARTTLS when offered, any certificate".to_owned(),
        TlsPolicy::Encrypt => {
            "STARTTLS required (else deferred, never clear text), any certificate".to_owned()
        }
        TlsPolicy::Verify | TlsPolicy::MtaSts => format!(
            "STARTTLS required with a certificate for the MX name, verified with {verify_with} (else deferred)"
        ),
        TlsPolicy::Dane => "STARTTLS required, certificate matched against TLSA".to_owned(),
    };
    let default = if enable_tls {
        TlsPolicy::May
    } else {
        TlsPolicy::None
    };
    let mut lines = vec![format!(
        "TLS to MX hosts by default: policy={} ({}; outbound.ini enable_tls={})",
        default.as_str(),
        meaning(default),
        enable_tls
    )];
    lines.extend(policies.domains.iter().map(|(domain, policy)| {
        format!(
            "TLS to {domain}'s MX hosts: policy={} ({}; tls_policy.ini)",
            policy.as_str(),
            meaning(*policy)
        )
    }));
    let authenticated: Vec<&str> = policies
        .domains
        .iter()
        .filter(|(_, policy)| policy.authenticates_host())
        .map(|(domain, _)| domain.as_str())
        .collect();
    lines.push(format!(
        "REQUIRETLS offered after STARTTLS; such messages go only to domains whose policy authenticates the MX (DANE, MTA-STS enforce, or tls_policy.ini verify: {}) and to MX hosts offering REQUIRETLS, else they are returned (5.7.10, 5.7.30)",
        if authenticated.is_empty() {
            "none configured".to_owned()
        } else {
            authenticated.join(", ")
        }
    ));
    lines.push(if policies.mta_sts {
        let port = if policies.mta_sts_port == crate::config::MTA_STS_PORT {
            String::new()
        } else {
            format!(
                ", policy hosts on port {} (TEST-ONLY mta_sts_port)",
                policies.mta_sts_port
            )
        };
        format!(
            "MTA-STS: on for domains without a tls_policy.ini section: an enforce policy gives policy=mta-sts (STARTTLS, certificate verified with {verify_with}, only the policy's MX hosts; else deferred), testing is logged only; cache {}{port} (tls_policy.ini mta_sts)",
            queue_dir.join(mta_sts::cache::CACHE_DIR).display()
        )
    } else {
        "MTA-STS: off (tls_policy.ini mta_sts=false)".to_owned()
    });
    lines
}

/// The order in which hosts are tried for one group: every candidate with
/// STARTTLS unless its connector has TLS off (opportunistic: used when
/// offered; required: verified), and, only when its connector allows the
/// clear-text fallback (`tls_fallback_plain`, never for required TLS), each
/// host whose TLS handshake failed once more in clear text after all others
/// were tried (a failed handshake moves on to the next host first, as
/// Haraka does).
#[derive(Debug)]
pub struct HostOrder {
    queue: VecDeque<(Candidate, bool)>,
    retried_plain: Vec<Candidate>,
}

impl HostOrder {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        HostOrder {
            queue: candidates
                .into_iter()
                .map(|c| {
                    let tls = c.connector.starts_with_tls();
                    (c, tls)
                })
                .collect(),
            retried_plain: Vec::new(),
        }
    }

    /// The next host to try and whether to use STARTTLS.
    pub fn next_attempt(&mut self) -> Option<(Candidate, bool)> {
        self.queue.pop_front()
    }

    /// The TLS handshake with `candidate` failed: queue a clear-text retry
    /// at the end if allowed (once per host).
    pub fn tls_failed(&mut self, candidate: &Candidate) {
        if candidate.connector.fallback_plain && !self.retried_plain.contains(candidate) {
            self.retried_plain.push(candidate.clone());
            self.queue.push_back((candidate.clone(), false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TlsPolicies, TlsPolicy};
    use crate::courier::connector::Connector;
    use std::sync::Arc;

    fn candidate(host: &str, ip: &str, connector: &Arc<Connector>) -> Candidate {
        Candidate {
            host: host.into(),
            ip: ip.parse().unwrap(),
            port: 25,
            connector: Arc::clone(connector),
        }
    }

    fn drain(order: &mut HostOrder, tls_fails: &[&str]) -> Vec<(String, bool)> {
        let mut tried = Vec::new();
        while let Some((candidate, tls)) = order.next_attempt() {
            tried.push((candidate.host.clone(), tls));
            if tls && tls_fails.contains(&candidate.host.as_str()) {
                order.tls_failed(&candidate);
            }
        }
        tried
    }

    #[test]
    fn tls_failures_move_on_then_fall_back_to_clear_text_only_if_allowed() {
        let hosts = |tls, fallback| {
            let connector = Arc::new(Connector::plain_for_tests(tls, fallback));
            vec![
                candidate("a", "192.0.2.1", &connector),
                candidate("b", "192.0.2.2", &connector),
            ]
        };
        let owned = |list: &[(&str, bool)]| -> Vec<(String, bool)> {
            list.iter().map(|(h, t)| (h.to_string(), *t)).collect()
        };
        let mut strict = HostOrder::new(hosts(TlsUse::Opportunistic, false));
        assert_eq!(
            drain(&mut strict, &["a", "b"]),
            owned(&[("a", true), ("b", true)])
        );

        let mut lenient = HostOrder::new(hosts(TlsUse::Opportunistic, true));
        assert_eq!(
            drain(&mut lenient, &["a"]),
            owned(&[("a", true), ("b", true), ("a", false)])
        );

        let mut clear = HostOrder::new(hosts(TlsUse::Off, true));
        assert_eq!(
            drain(&mut clear, &["a"]),
            owned(&[("a", false), ("b", false)])
        );

        let mut required = HostOrder::new(hosts(TlsUse::Required, false));
        assert_eq!(
            drain(&mut required, &["a", "b"]),
            owned(&[("a", true), ("b", true)])
        );
    }

    #[test]
    fn describe_shows_the_default_each_domain_and_requiretls() {
        let mut policies = TlsPolicies::default();
        let lines = describe(&policies, true, std::path::Path::new("/q"));
        assert!(
            lines[0].starts_with("TLS to MX hosts by default: policy=may"),
            "{lines:?}"
        );
        assert!(lines[0].ends_with("enable_tls=true)"), "{lines:?}");
        assert!(lines[1].contains("none configured)"), "{lines:?}");
        policies
            .domains
            .insert("bank.example".into(), TlsPolicy::Verify);
        policies
            .domains
            .insert("old.example".into(), TlsPolicy::Encrypt);
        let lines = describe(&policies, false, std::path::Path::new("/q"));
        assert!(
            lines[0].contains("policy=none (never STARTTLS"),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("TLS to bank.example's MX hosts: policy=verify"));
        assert!(lines[1].contains("the system's CAs"));
        assert!(lines[2].starts_with("TLS to old.example's MX hosts: policy=encrypt"));
        assert!(
            lines[3].contains("tls_policy.ini verify: bank.example)"),
            "{lines:?}"
        );
    }
}
