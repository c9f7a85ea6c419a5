//! TLS towards the next hop: which use of STARTTLS a host gets, and the
//! order in which one group's hosts are tried with and without it.
//!
//! For MX hosts the one decision point is [`MxTls::for_domain`]: the
//! domain's tls_policy.ini entry (`none`, `may`, `encrypt`, `verify`), else
//! outbound.ini's `enable_tls` (opportunistic, any certificate, as Haraka
//! and Postfix `may`). A route's hops get the route's `tls` (off,
//! opportunistic, or required and verified). The order is: tls_policy.ini,
//! then DANE (per MX host, once the MX hosts are known: `super::dane`,
//! applied in `super::attempt`), then MTA-STS, then `enable_tls`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use smtp_core::client::{ClientTls, ClientTlsError, TlsMode, TlsVerify};
use smtp_core::config::CoreSettings;

use super::connector::Connector;
use super::mx::Candidate;
use crate::config::{OutboundSettings, RouteTls, TlsPolicies, TlsPolicy};

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
    /// `may`'s connector, for a message whose sender asked with
    /// `TLS-Required: No` that TLS policies be ignored (RFC 8689 §4.2.2).
    relaxed: Arc<Connector>,
}

/// Which TLS policy a destination got, and from where, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsDecision {
    pub policy: TlsPolicy,
    pub source: &'static str,
}

/// The source of a policy the admin named for the domain.
const EXPLICIT_SOURCE: &str = "tls_policy.ini";

impl TlsDecision {
    /// Named in tls_policy.ini: DANE and MTA-STS do not override it.
    pub fn is_explicit(&self) -> bool {
        self.source == EXPLICIT_SOURCE
    }
}

impl MxTls {
    /// Builds a connector for the default and for each policy
    /// tls_policy.ini names (a CA file is read now, not per message).
    pub fn new(
        core: &CoreSettings,
        outbound: &OutboundSettings,
        policies: &TlsPolicies,
    ) -> Result<Self, ClientTlsError> {
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
                TlsPolicy::Verify => (TlsUse::Required, Some(verify.clone())),
                // Never named in the file: DANE's connectors are built per
                // host from its TLSA records (courier::dane).
                TlsPolicy::Dane => (TlsUse::Encrypted, None),
            };
            Ok(Arc::new(Connector::mx_with(core, outbound, tls, verify)?))
        };
        let mut by_policy = BTreeMap::new();
        for policy in policies.domains.values() {
            if !by_policy.contains_key(policy) {
                by_policy.insert(*policy, connector(*policy)?);
            }
        }
        Ok(MxTls {
            policies: policies.clone(),
            default: (default_policy, connector(default_policy)?),
            by_policy,
            relaxed: connector(TlsPolicy::May)?,
        })
    }

    /// The connector for `domain`'s MX hosts and why. `tls_not_required`:
    /// the message has `TLS-Required: No`, so a policy that would require
    /// TLS gives way to `may` (source `TLS-Required`).
    pub fn for_domain(
        &self,
        domain: &str,
        tls_not_required: bool,
    ) -> (&Arc<Connector>, TlsDecision) {
        let (connector, decision) = self.by_policy(domain);
        let requires_tls = !matches!(decision.policy, TlsPolicy::None | TlsPolicy::May);
        if tls_not_required && requires_tls {
            let decision = TlsDecision {
                policy: TlsPolicy::May,
                source: "TLS-Required",
            };
            return (&self.relaxed, decision);
        }
        (connector, decision)
    }

    fn by_policy(&self, domain: &str) -> (&Arc<Connector>, TlsDecision) {
        match self.policies.for_domain(domain) {
            Some(policy) => (
                &self.by_policy[&policy],
                TlsDecision {
                    policy,
                    source: EXPLICIT_SOURCE,
                },
            ),
            None => (
                &self.default.1,
                TlsDecision {
                    policy: self.default.0,
                    source: "enable_tls",
                },
            ),
        }
    }
}

/// The TLS policy settings as `--check` and the startup log show them: the
/// default for MX hosts (outbound.ini `enable_tls`), one line per domain
/// tls_policy.ini names, and what REQUIRETLS messages need.
pub fn describe(policies: &TlsPolicies, enable_tls: bool) -> Vec<String> {
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
        TlsPolicy::Verify => format!(
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
        "REQUIRETLS offered after STARTTLS; such messages go only to domains whose policy authenticates the MX ({}) and to MX hosts offering REQUIRETLS, else they are returned (5.7.10, 5.7.30)",
        if authenticated.is_empty() {
            "none configured".to_owned()
        } else {
            authenticated.join(", ")
        }
    ));
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
    fn describe_shows_the_default_each_domain_and_requiretls() {
        let mut policies = TlsPolicies::default();
        let lines = describe(&policies, true);
        assert!(
            lines[0].starts_with("TLS to MX hosts by default: policy=may"),
            "{lines:?}"
        );
        assert!(lines[0].ends_with("enable_tls=true)"), "{lines:?}");
        assert!(lines[1].contains("(none configured)"), "{lines:?}");
        policies
            .domains
            .insert("bank.example".into(), TlsPolicy::Verify);
        policies
            .domains
            .insert("old.example".into(), TlsPolicy::Encrypt);
        let lines = describe(&policies, false);
        assert!(
            lines[0].contains("policy=none (never STARTTLS"),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("TLS to bank.example's MX hosts: policy=verify"));
        assert!(lines[1].contains("the system's CAs"));
        assert!(lines[2].starts_with("TLS to old.example's MX hosts: policy=encrypt"));
        assert!(
            lines[3].contains("authenticates the MX (bank.example)"),
            "{lines:?}"
        );
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
}
