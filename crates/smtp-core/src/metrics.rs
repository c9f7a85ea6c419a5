//! Prometheus metrics, counted always (a few atomics) and served only when
//! `metrics.ini` gives a `listen` address: a scrape endpoint is opt-in.
//!
//! One process-wide registry, because both relays add their own series
//! (relay-in: backend latency; relay-out: queue size and deliveries) to the
//! ones the shared server driver counts.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info};

/// What happened to a connection when it arrived.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ConnectionOutcome {
    Accepted,
    RefusedCap,
    RefusedRate,
    EarlyTalker,
}

/// How a transaction, or a delivery attempt, ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    TempFailed,
    Rejected,
    Delivered,
    Deferred,
    Bounced,
}

/// Label values in Prometheus's lower-case convention.
macro_rules! label_values {
    ($type:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl EncodeLabelValue for $type {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(match self { $(Self::$variant => $text),* })
            }
        }
    };
}

label_values!(ConnectionOutcome {
    Accepted => "accepted",
    RefusedCap => "refused_cap",
    RefusedRate => "refused_rate",
    EarlyTalker => "early_talker",
});

label_values!(Outcome {
    Accepted => "accepted",
    TempFailed => "temp_failed",
    Rejected => "rejected",
    Delivered => "delivered",
    Deferred => "deferred",
    Bounced => "bounced",
});

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub result: ConnectionOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub result: Outcome,
}

/// relay-out's MX TLS policy (`none`, `may`, `encrypt`, `verify`,
/// `mta-sts`) and an attempt's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsPolicyLabels {
    pub policy: String,
    pub result: Outcome,
}

/// An MTA-STS failure: the policy's mode (`enforce`, `testing`, or
/// `unknown` when no policy could be had) and its RFC 8460 result type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MtaStsLabels {
    pub mode: String,
    pub result_type: String,
}

/// relay-out's TLS-RPT: a counted session's result (`successful` or an
/// RFC 8460 result type), or what became of a report (`queued`,
/// `not_sent`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsRptLabels {
    pub result: String,
}

/// relay-in's backend, as `host:port`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

/// relay-out's shaping budget: a shaping.ini section (`*.google.com`) or
/// a destination domain.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

/// Every series Postern exports.
pub struct Metrics {
    registry: Registry,
    pub connections: Family<ConnectionLabels, Counter>,
    pub connections_open: Gauge,
    pub transactions: Family<OutcomeLabels, Counter>,
    pub tls_sessions: Counter,
    pub backend_latency: Histogram,
    pub backend_up: Family<BackendLabels, Gauge>,
    pub backend_xclient: Family<BackendLabels, Gauge>,
    pub queue_messages: Gauge,
    pub queue_oldest_age_seconds: Gauge,
    pub queue_bytes: Gauge,
    pub verified_recipients: Gauge,
    pub delivery_attempts: Family<OutcomeLabels, Counter>,
    pub tls_policy_attempts: Family<TlsPolicyLabels, Counter>,
    pub mta_sts_failures: Family<MtaStsLabels, Counter>,
    pub tlsrpt_sessions: Family<TlsRptLabels, Counter>,
    pub tlsrpt_reports: Family<TlsRptLabels, Counter>,
    pub shaping_concurrency: Family<DestinationLabels, Gauge>,
    pub shaping_suspended: Family<DestinationLabels, Gauge>,
    pub shaping_sessions: Family<DestinationLabels, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("postern");
        let connections = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "connections",
            "Client connections by outcome",
            connections.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let transactions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "transactions",
            "Mail transactions by result",
            transactions.clone(),
        );
        let tls_sessions = Counter::default();
        registry.register(
            "tls_sessions",
            "Client sessions that negotiated TLS",
            tls_sessions.clone(),
        );
        // 5 ms to about 40 s: a backend on the same WireGuard link answers in
        // milliseconds; seconds mean trouble.
        let backend_latency = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 40.0,
        ]);
        registry.register(
            "backend_latency_seconds",
            "relay-in: time from the end of DATA to the backend's verdict",
            backend_latency.clone(),
        );
        let backend_up = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_up",
            "relay-in: 0 if a probe or a forward could not reach the backend and no probe has since, else 1",
            backend_up.clone(),
        );
        let backend_xclient = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_xclient",
            "relay-in: 1 if the backend offered XCLIENT to relay-in when it last answered a probe, 0 if not",
            backend_xclient.clone(),
        );
        let queue_messages = Gauge::default();
        registry.register(
            "queue_messages",
            "relay-out: messages in the queue; relay-in: in the backup spool",
            queue_messages.clone(),
        );
        let queue_oldest_age_seconds = Gauge::default();
        registry.register(
            "queue_oldest_age_seconds",
            "relay-out: age of the oldest queued message; relay-in: of the oldest spooled one",
            queue_oldest_age_seconds.clone(),
        );
        let queue_bytes = Gauge::default();
        registry.register(
            "queue_bytes",
            "relay-in: bytes in the backup spool (spool_max_bytes bounds it)",
            queue_bytes.clone(),
        );
        let verified_recipients = Gauge::default();
        registry.register(
            "verified_recipients",
            "relay-in: recipients the backend accepted within verified_ttl (the backup spool takes mail only for these)",
            verified_recipients.clone(),
        );
        let delivery_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "relay-out: delivery attempts by result",
            delivery_attempts.clone(),
        );
        let shaping_concurrency = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "shaping_concurrency",
            "relay-out: sessions a destination may have at once now (lower than configured after a rate reply); shaping.ini destinations and backed-off ones",
            shaping_concurrency.clone(),
        );
        let shaping_suspended = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "shaping_suspended",
            "relay-out: 1 while a destination rests after a rate reply (421, 4.7.28, 4.7.650), else 0",
            shaping_suspended.clone(),
        );
        let shaping_sessions = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "shaping_sessions",
            "relay-out: sessions counted against a destination's shaping budget now",
            shaping_sessions.clone(),
        );
        let tls_policy_attempts = Family::<TlsPolicyLabels, Counter>::default();
        registry.register(
            "tls_policy_attempts",
            "relay-out: MX delivery attempts by TLS policy (tls_policy.ini, MTA-STS, else enable_tls) and result",
            tls_policy_attempts.clone(),
        );
        let mta_sts_failures = Family::<MtaStsLabels, Counter>::default();
        registry.register(
            "mta_sts_failures",
            "relay-out: MTA-STS failures (policy fetches, and what enforce refused or testing would have) by mode and RFC 8460 result type",
            mta_sts_failures.clone(),
        );
        let tlsrpt_sessions = Family::<TlsRptLabels, Counter>::default();
        registry.register(
            "tlsrpt_sessions",
            "relay-out: MX sessions counted for TLS-RPT (destinations with _smtp._tls) by result",
            tlsrpt_sessions.clone(),
        );
        let tlsrpt_reports = Family::<TlsRptLabels, Counter>::default();
        registry.register(
            "tlsrpt_reports",
            "relay-out: TLS-RPT reports by what became of them (queued: a mailto: report in the queue; posted: an https: report answered 2xx; not_sent: a POST or queue error)",
            tlsrpt_reports.clone(),
        );
        Self {
            registry,
            connections,
            connections_open,
            transactions,
            tls_sessions,
            backend_latency,
            backend_up,
            backend_xclient,
            queue_messages,
            queue_oldest_age_seconds,
            queue_bytes,
            verified_recipients,
            delivery_attempts,
            tls_policy_attempts,
            mta_sts_failures,
            tlsrpt_sessions,
            tlsrpt_reports,
            shaping_concurrency,
            shaping_suspended,
            shaping_sessions,
        }
    }

    pub fn connection(&self, result: ConnectionOutcome) {
        self.connections
            .get_or_create(&ConnectionLabels { result })
            .inc();
    }

    pub fn transaction(&self, result: Outcome) {
        self.transactions
            .get_or_create(&OutcomeLabels { result })
            .inc();
    }

    pub fn delivery_attempt(&self, result: Outcome) {
        self.delivery_attempts
            .get_or_create(&OutcomeLabels { result })
            .inc();
    }

    /// An MX attempt under a TLS policy (`policy` as tls_policy.ini says it).
    pub fn tls_policy_attempt(&self, policy: &str, result: Outcome) {
        self.tls_policy_attempts
            .get_or_create(&TlsPolicyLabels {
                policy: policy.to_owned(),
                result,
            })
            .inc();
    }

    /// An MTA-STS failure (see [`MtaStsLabels`]).
    pub fn mta_sts_failure(&self, mode: &str, result_type: &str) {
        self.mta_sts_failures
            .get_or_create(&MtaStsLabels {
                mode: mode.to_owned(),
                result_type: result_type.to_owned(),
            })
            .inc();
    }

    /// A TLS-RPT session or report (see [`TlsRptLabels`]).
    pub fn tlsrpt(family: &Family<TlsRptLabels, Counter>, result: &str) {
        family
            .get_or_create(&TlsRptLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn backend_answered(&self, took: Duration) {
        self.backend_latency.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Binds the scrape endpoint (an error names the address) and serves
/// `GET /metrics` from a background task. Anything else gets 404.
pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    info!(listen = %listen, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(async move {
                let answer = async {
                    let mut request = [0u8; 2048];
                    let n = stream.read(&mut request).await?;
                    let head = String::from_utf8_lossy(&request[..n]);
                    let response = if head.starts_with("GET /metrics ")
                        || head.starts_with("GET /metrics?")
                    {
                        let body = metrics().encode();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    };
                    stream.write_all(response.as_bytes()).await?;
                    stream.shutdown().await
                };
                if let Err(e) = tokio::time::timeout(Duration::from_secs(5), answer)
                    .await
                    .unwrap_or(Ok(()))
                {
                    debug!(%peer, "metrics request failed: {e}");
                }
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition() {
        let m = Metrics::new();
        m.connection(ConnectionOutcome::Accepted);
        m.transaction(Outcome::Accepted);
        m.backend_answered(Duration::from_millis(20));
        let text = m.encode();
        assert!(
            text.contains("postern_connections_total{result=\"accepted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("postern_transactions_total{result=\"accepted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("postern_backend_latency_seconds_count 1"),
            "{text}"
        );
    }
}
