//! DANE for SMTP (RFC 7672): MX hosts whose DNSSEC-signed TLSA records say
//! which certificate they present get STARTTLS required and that
//! certificate checked; a failure defers, never falls back to clear text.
//!
//! DNSSEC is not validated here: relay-out trusts the AD bit of a
//! validating resolver on loopback, as Postfix does (`smtp_dns_support_level
//! = dnssec`). A resolver elsewhere could have its AD bit forged on the way,
//! and validating in-process would duplicate what unbound or
//! systemd-resolved already do with their trust anchors and caches. So DANE
//! is on only when every nameserver is on 127.0.0.0/8 or ::1 and, at start,
//! the SOA of a known signed name (`dane_probe`, the root by default) comes
//! back authenticated. Otherwise one error line says why, and signed zones
//! are treated like unsigned ones: mail keeps flowing under the other
//! policies instead of being deferred as "bogus" (docs/tls-policy.md).
//!
//! Per destination: the MX RRset must be authenticated (a signed NODATA
//! for an implicit MX counts), then each MX host's `_<port>._tcp.<host>`
//! TLSA RRset is looked up; an authenticated, usable set makes that host
//! `dane` (source `tlsa`), an authenticated set of only unusable records
//! makes it `encrypt` (RFC 7672 §2.2: STARTTLS still mandatory), a failed
//! TLSA lookup makes the host unusable (§2.2.2), anything else leaves the
//! host to the next policy.

mod lookup;
mod verify;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use rustls::pki_types::ServerName;
use smtp_core::client::{ClientTls, TlsMode, TlsVerify};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use super::connector::Connector;
use super::mx::{Candidate, ResolveFailure};
use super::tls::{TlsDecision, TlsUse};
use crate::config::{TlsPolicies, TlsPolicy};
use lookup::{Answer, AnswerKind, LookupError, query, usable_tlsa};
use verify::DaneVerifier;

/// The log source of a decision taken from TLSA records.
const SOURCE: &str = "tlsa";

/// How long a check the resolver did not answer stands before the next
/// delivery asks again (the resolver may start after relay-out at boot). A
/// resolver that answers without validating gets no second check.
const RECHECK_AFTER: Duration = Duration::from_secs(300);

/// DANE's state for the process: whether it can be on, and the resolver
/// whose AD bit it trusts.
#[derive(Debug)]
pub struct Dane {
    /// `Err`: why DANE is off before any query (configuration, resolver
    /// not on loopback).
    resolver: Result<SocketAddr, Off>,
    probe: String,
    timeout: Duration,
    /// The check's verdict, and until when it stands (`None`: for good).
    verdict: Mutex<Option<(bool, Option<Instant>)>>,
    /// Authenticated MX and TLSA answers, until their TTL (at most
    /// [`MAX_REUSE`]) runs out: every delivery attempt to a DANE domain
    /// would otherwise ask the resolver again.
    answers: std::sync::Mutex<HashMap<(String, RecordType), (Instant, Answer)>>,
}

/// The longest an answer is reused, whatever its TTL.
const MAX_REUSE: Duration = Duration::from_secs(300);
/// The most answers kept; at this size the cache starts over.
const MAX_ANSWERS: usize = 10_000;

#[derive(Debug, Clone)]
enum Off {
    /// tls_policy.ini `dane=off`: said once as information, not an error.
    Configured,
    Refused(String),
}

/// What DANE decided for one destination's hosts.
#[derive(Debug, Default)]
pub struct HostDecisions {
    by_host: HashMap<String, TlsDecision>,
}

impl HostDecisions {
    /// The decision for `host`, when DANE took one.
    pub fn for_host(&self, host: &str) -> Option<TlsDecision> {
        self.by_host.get(host).copied()
    }

    /// One of them, for the log line of a group no host took.
    pub fn any(&self) -> Option<TlsDecision> {
        self.by_host.values().next().copied()
    }
}

impl Dane {
    /// DANE as tls_policy.ini and the delivery nameservers allow it; no
    /// query is sent until [`Dane::check`].
    pub fn new(policies: &TlsPolicies, nameservers: &[SocketAddr], timeout: Duration) -> Self {
        let resolver = if !policies.dane {
            Err(Off::Configured)
        } else {
            match nameservers.iter().find(|server| !server.ip().is_loopback()) {
                Some(remote) => Err(Off::Refused(format!(
                    "the resolver {remote} is not on loopback, and its DNSSEC verdict (AD bit) could be forged on the way; run a validating resolver (unbound) on 127.0.0.1 and point nameservers= at it"
                ))),
                None => nameservers
                    .first()
                    .copied()
                    .ok_or_else(|| Off::Refused("no nameserver is configured".to_owned())),
            }
        };
        Dane {
            resolver,
            probe: policies.dane_probe.clone(),
            timeout,
            verdict: Mutex::new(None),
            answers: std::sync::Mutex::default(),
        }
    }

    /// `name`'s `rtype` records, from the cache while their TTL lasts.
    async fn ask(
        &self,
        server: SocketAddr,
        name: &str,
        rtype: RecordType,
    ) -> Result<Answer, LookupError> {
        let key = (name.to_owned(), rtype);
        let now = Instant::now();
        if let Some((until, answer)) = self.lock_answers().get(&key)
            && *until > now
        {
            return Ok(answer.clone());
        }
        let answer = query(server, name, rtype, self.timeout).await?;
        if let Some(ttl) = answer.ttl {
            let mut answers = self.lock_answers();
            if answers.len() >= MAX_ANSWERS {
                answers.clear();
            }
            answers.insert(key, (now + ttl.min(MAX_REUSE), answer.clone()));
        }
        Ok(answer)
    }

    fn lock_answers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, RecordType), (Instant, Answer)>> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The start-up check (later calls get its verdict; one that got no
    /// answer is asked again after [`RECHECK_AFTER`]): logs whether DANE is
    /// on, and if not, why.
    pub async fn check(&self) -> bool {
        let mut verdict = self.verdict.lock().await;
        if let Some((on, until)) = *verdict
            && until.is_none_or(|until| Instant::now() < until)
        {
            return on;
        }
        let (on, recheck) = self.probe().await;
        *verdict = Some((on, recheck.then(|| Instant::now() + RECHECK_AFTER)));
        on
    }

    /// (DANE on, worth asking again later).
    async fn probe(&self) -> (bool, bool) {
        let server = match &self.resolver {
            Ok(server) => *server,
            Err(Off::Configured) => {
                info!("DANE is off (tls_policy.ini dane=off): TLSA records are not looked up");
                return (false, false);
            }
            Err(Off::Refused(why)) => {
                error!(
                    "DANE is off: {why}; signed zones are treated as unsigned (tls_policy.ini dane=off silences this)"
                );
                return (false, false);
            }
        };
        match query(server, &self.probe, RecordType::SOA, self.timeout).await {
            Ok(answer) if answer.authenticated => {
                info!(resolver = %server, probe = %self.probe, "DANE is on: the resolver validates DNSSEC");
                (true, false)
            }
            Ok(_) => {
                error!(
                    "DANE is off: the resolver {server} does not validate DNSSEC (the SOA of {} came back without the AD bit); signed zones are treated as unsigned (tls_policy.ini dane=off silences this)",
                    self.probe
                );
                (false, false)
            }
            Err(why) => {
                error!(
                    "DANE is off: the resolver {server} did not answer the DNSSEC check for {} SOA ({why}); signed zones are treated as unsigned until it does (asked again in {} s; tls_policy.ini dane=off silences this)",
                    self.probe,
                    RECHECK_AFTER.as_secs()
                );
                (false, true)
            }
        }
    }

    /// Applies DANE to `domain`'s MX `candidates`: hosts with a usable
    /// authenticated TLSA set get a connector that requires STARTTLS and
    /// checks the certificate against it. A host whose TLSA lookup failed is
    /// dropped; when none is left the destination is deferred.
    pub async fn apply(
        &self,
        domain: &str,
        candidates: Vec<Candidate>,
    ) -> Result<(Vec<Candidate>, HostDecisions), ResolveFailure> {
        let mut decisions = HostDecisions::default();
        if !self.check().await {
            return Ok((candidates, decisions));
        }
        let Ok(server) = self.resolver else {
            return Ok((candidates, decisions));
        };
        // A failed MX query here leaves the domain unsigned for DANE: the
        // MX lookup that found `candidates` succeeded, and a resolver that
        // calls the MX RRset bogus fails that lookup too.
        match self.ask(server, domain, RecordType::MX).await {
            Ok(answer) if answer.authenticated => {}
            _ => return Ok((candidates, decisions)),
        }
        let mut per_host: HashMap<(String, u16), HostTls> = HashMap::new();
        let mut kept = Vec::with_capacity(candidates.len());
        let mut failures = Vec::new();
        for mut candidate in candidates {
            let key = (candidate.host.clone(), candidate.port);
            if !per_host.contains_key(&key) {
                let tls = self.host_tls(server, &candidate).await;
                if let HostTls::Unusable(why) = &tls {
                    warn!(domain, mx = %candidate.host, "not delivering to this host: {why}");
                }
                per_host.insert(key.clone(), tls);
            }
            match &per_host[&key] {
                HostTls::Unsigned => kept.push(candidate),
                HostTls::Use(connector, decision) => {
                    candidate.connector = Arc::clone(connector);
                    decisions.by_host.insert(candidate.host.clone(), *decision);
                    kept.push(candidate);
                }
                HostTls::Unusable(why) => failures.push(why.clone()),
            }
        }
        if kept.is_empty()
            && let Some(why) = failures.into_iter().next()
        {
            return Err(ResolveFailure::temporary("4.7.5", why));
        }
        Ok((kept, decisions))
    }

    async fn host_tls(&self, server: SocketAddr, candidate: &Candidate) -> HostTls {
        let name = format!("_{}._tcp.{}", candidate.port, candidate.host);
        let answer = match self.ask(server, &name, RecordType::TLSA).await {
            Ok(answer) => answer,
            Err(why) => {
                return HostTls::Unusable(format!(
                    "DANE: the TLSA lookup for {name} failed ({why}); {} is not used until it succeeds",
                    candidate.host
                ));
            }
        };
        let AnswerKind::Records(records) = answer.kind else {
            return HostTls::Unsigned;
        };
        if !answer.authenticated {
            return HostTls::Unsigned;
        }
        let usable = usable_tlsa(&records);
        let base = &candidate.connector;
        if usable.is_empty() {
            // RFC 7672 §2.2: TLSA records exist, so STARTTLS is mandatory,
            // but none can authenticate the server.
            return match ClientTls::new(TlsMode::Required, &TlsVerify::Insecure) {
                Ok(tls) => HostTls::Use(
                    Arc::new(base.with_tls(TlsUse::Encrypted, tls)),
                    TlsDecision {
                        policy: TlsPolicy::Encrypt,
                        source: SOURCE,
                    },
                ),
                Err(why) => HostTls::Unusable(format!("DANE: cannot set up TLS: {why}")),
            };
        }
        let host = candidate.host.trim_end_matches('.').to_owned();
        let names: Vec<ServerName<'static>> = ServerName::try_from(host).into_iter().collect();
        let verifier = DaneVerifier::new(usable, names);
        match ClientTls::required_with_check(verifier) {
            Ok(tls) => HostTls::Use(
                Arc::new(base.with_tls(TlsUse::Required, tls)),
                TlsDecision {
                    policy: TlsPolicy::Dane,
                    source: SOURCE,
                },
            ),
            Err(why) => HostTls::Unusable(format!("DANE: cannot set up TLS: {why}")),
        }
    }
}

/// One MX host under DANE.
enum HostTls {
    /// No authenticated TLSA set: the next policy decides.
    Unsigned,
    Use(Arc<Connector>, TlsDecision),
    /// The TLSA lookup failed: the host must not be used (why).
    Unusable(String),
}

/// DANE's line for `--check` and the start-up log.
pub fn describe(policies: &TlsPolicies) -> String {
    if policies.dane {
        format!(
            "DANE: on for MX hosts with DNSSEC-signed TLSA records (STARTTLS required, certificate matched; tls_policy.ini dane), if the nameservers are on loopback and validate (checked at start with the SOA of {:?}, dane_probe)",
            policies.dane_probe
        )
    } else {
        "DANE: off (tls_policy.ini dane=off)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::rdata::{MX, TLSA};
    use hickory_proto::rr::{Name, RData, Record};

    fn policies(dane: bool) -> TlsPolicies {
        TlsPolicies {
            dane,
            ..TlsPolicies::default()
        }
    }

    /// How the fake resolver answers a query of one type: its code, the AD
    /// bit, the records.
    type Answering = fn(RecordType) -> (ResponseCode, bool, Vec<RData>);

    /// A resolver on loopback answering as `answer` says.
    async fn resolver_with(answer: Answering) -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = vec![0; 4096];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                let query = Message::from_vec(&buffer[..len]).unwrap();
                let question = query.queries[0].clone();
                let (code, ad, records) = answer(question.query_type());
                let mut reply = Message::error_msg(query.metadata.id, query.metadata.op_code, code);
                reply.metadata.authentic_data = ad;
                reply.add_query(question.clone());
                for rdata in records {
                    reply.add_answer(Record::from_rdata(question.name().clone(), 60, rdata));
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        addr
    }

    /// A resolver answering NOERROR, no records, with the AD bit as told.
    async fn resolver(ad: bool) -> SocketAddr {
        if ad {
            resolver_with(|_| (ResponseCode::NoError, true, Vec::new())).await
        } else {
            resolver_with(|_| (ResponseCode::NoError, false, Vec::new())).await
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn only_a_validating_resolver_on_loopback_turns_dane_on() {
        let validating = resolver(true).await;
        assert!(
            Dane::new(&policies(true), &[validating], TIMEOUT)
                .check()
                .await
        );
        let plain = resolver(false).await;
        assert!(!Dane::new(&policies(true), &[plain], TIMEOUT).check().await);
        assert!(
            !Dane::new(&policies(false), &[validating], TIMEOUT)
                .check()
                .await,
            "dane=off"
        );
        let remote: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let dane = Dane::new(&policies(true), &[validating, remote], TIMEOUT);
        assert!(!dane.check().await, "one nameserver off loopback");
        assert!(!Dane::new(&policies(true), &[], TIMEOUT).check().await);
    }

    #[tokio::test]
    async fn a_check_without_an_answer_is_asked_again_later_a_refusal_is_not() {
        // A port nobody listens on: the query is refused at once.
        let closed = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let dane = Dane::new(&policies(true), &[closed], TIMEOUT);
        assert!(!dane.check().await);
        let (on, until) = dane.verdict.lock().await.unwrap();
        assert!(!on);
        assert!(until.is_some(), "asked again later");

        let plain = resolver(false).await;
        let dane = Dane::new(&policies(true), &[plain], TIMEOUT);
        assert!(!dane.check().await);
        assert_eq!(*dane.verdict.lock().await, Some((false, None)));
    }

    fn tlsa(usage: u8) -> RData {
        RData::TLSA(TLSA::new(usage.into(), 1.into(), 1.into(), vec![1; 32]))
    }

    /// What `apply` makes of one MX host under the resolver `answer`:
    /// the decision, or the deferral's status.
    async fn decide(answer: Answering) -> Result<Option<TlsDecision>, &'static str> {
        let dane = Dane::new(&policies(true), &[resolver_with(answer).await], TIMEOUT);
        let connector = Arc::new(Connector::plain_for_tests(TlsUse::Opportunistic, true));
        let candidate = Candidate {
            host: "mx.example".into(),
            ip: "192.0.2.1".parse().unwrap(),
            port: 25,
            connector,
        };
        match dane.apply("example", vec![candidate]).await {
            Ok((kept, decisions)) => {
                assert_eq!(kept.len(), 1);
                let decision = decisions.for_host("mx.example");
                let required = kept[0].connector.tls == TlsUse::Required
                    || kept[0].connector.tls == TlsUse::Encrypted;
                assert_eq!(required, decision.is_some(), "{decision:?}");
                assert!(decision.is_none() || !kept[0].connector.fallback_plain);
                Ok(decision)
            }
            Err(failure) => {
                assert!(!failure.permanent, "{failure:?}");
                Err(failure.status)
            }
        }
    }

    #[tokio::test]
    async fn answers_are_reused_while_their_ttl_lasts() {
        static TLSA_QUERIES: std::sync::atomic::AtomicUsize =
            std::sync::atomic::AtomicUsize::new(0);
        let server = resolver_with(|rtype| match rtype {
            RecordType::TLSA => {
                TLSA_QUERIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (ResponseCode::NoError, true, vec![tlsa(3)])
            }
            RecordType::MX => (
                ResponseCode::NoError,
                true,
                vec![RData::MX(MX::new(
                    10,
                    Name::from_ascii("mx.example.").unwrap(),
                ))],
            ),
            _ => (ResponseCode::NoError, true, Vec::new()),
        })
        .await;
        let dane = Dane::new(&policies(true), &[server], TIMEOUT);
        for _ in 0..3 {
            let connector = Arc::new(Connector::plain_for_tests(TlsUse::Opportunistic, true));
            let candidate = Candidate {
                host: "mx.example".into(),
                ip: "192.0.2.1".parse().unwrap(),
                port: 25,
                connector,
            };
            let (_, decisions) = dane.apply("example", vec![candidate]).await.unwrap();
            assert!(decisions.for_host("mx.example").is_some());
        }
        assert_eq!(TLSA_QUERIES.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn each_tlsa_answer_gives_its_policy() {
        let dane = TlsDecision {
            policy: TlsPolicy::Dane,
            source: SOURCE,
        };
        let encrypt = TlsDecision {
            policy: TlsPolicy::Encrypt,
            source: SOURCE,
        };
        // Signed MX, signed usable TLSA: dane.
        let usable = decide(|rtype| match rtype {
            RecordType::TLSA => (ResponseCode::NoError, true, vec![tlsa(1), tlsa(3)]),
            _ => (ResponseCode::NoError, true, Vec::new()),
        });
        assert_eq!(usable.await, Ok(Some(dane)));
        // Only PKIX usages: STARTTLS still required, any certificate.
        let unusable = decide(|rtype| match rtype {
            RecordType::TLSA => (ResponseCode::NoError, true, vec![tlsa(0), tlsa(1)]),
            _ => (ResponseCode::NoError, true, Vec::new()),
        });
        assert_eq!(unusable.await, Ok(Some(encrypt)));
        // TLSA not authenticated: the next policy.
        let insecure_tlsa = decide(|rtype| match rtype {
            RecordType::TLSA => (ResponseCode::NoError, false, vec![tlsa(3)]),
            _ => (ResponseCode::NoError, true, Vec::new()),
        });
        assert_eq!(insecure_tlsa.await, Ok(None));
        // MX not authenticated: TLSA not used even if signed.
        let insecure_mx = decide(|rtype| match rtype {
            RecordType::TLSA => (ResponseCode::NoError, true, vec![tlsa(3)]),
            RecordType::MX => (ResponseCode::NoError, false, Vec::new()),
            _ => (ResponseCode::NoError, true, Vec::new()),
        });
        assert_eq!(insecure_mx.await, Ok(None));
        // The TLSA lookup fails: the host is not used, the mail waits.
        let servfail = decide(|rtype| match rtype {
            RecordType::TLSA => (ResponseCode::ServFail, false, Vec::new()),
            _ => (ResponseCode::NoError, true, Vec::new()),
        });
        assert_eq!(servfail.await, Err("4.7.5"));
    }
}
