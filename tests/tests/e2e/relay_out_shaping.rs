//! relay-out's provider-aware shaping (shaping.ini, issue 17 point 4): 200
//! messages to 20 domains hosted at one provider (MX hosts under one
//! suffix) never open more than the budget's `max_connections` sessions at
//! that MX; a `421 4.7.28` to every second session makes the budget back
//! off (logged, in the metrics) and recover; another destination's mail
//! goes through at full speed meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::dns::TestZone;
use postern_tests::metrics::{scrape, value};
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, ip, submit_to, wait_until};
use postern_tests::process::free_port;

const RETRIES: &str = "temp_fail_intervals=1s*60\n";
const WAIT: Duration = Duration::from_secs(60);
const DOMAINS: usize = 20;
const PER_DOMAIN: usize = 10;
/// The provider's MX (one server: it sees every session of the budget).
const PROVIDER: u8 = 10;
const OTHER: u8 = 11;
const RATE_REPLY: &str =
    "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail";
const CONCURRENCY: &str = "postern_shaping_concurrency{destination=\"*.provider.test\"}";
const SUSPENDED: &str = "postern_shaping_suspended{destination=\"*.provider.test\"}";

/// d0.test .. d19.test, each with its own MX host name under
/// .provider.test, all at one address; other.test elsewhere.
fn zone() -> TestZone {
    let mut zone = TestZone::new()
        .mx("other.test", 10, "mx.other.test")
        .a("mx.other.test", ip(OTHER));
    for n in 0..DOMAINS {
        let mx = format!("mx{n}.provider.test");
        zone = zone.mx(&format!("d{n}.test"), 10, &mx).a(&mx, ip(PROVIDER));
    }
    zone
}

fn slow(delay_ms: u64) -> Behaviour {
    Behaviour {
        data_delay: Duration::from_millis(delay_ms),
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_budget_caps_sessions_backs_off_on_421_and_spares_others() -> anyhow::Result<()>
{
    let mut farm = MxFarm::start(
        PROVIDER,
        Behaviour {
            rate_reply_every: Some((2, RATE_REPLY.to_owned())),
            ..slow(50)
        },
    )
    .await?;
    farm.add(OTHER, slow(500)).await?;
    let metrics_port = free_port();
    let options = OutboundOptions {
        // Queued while delivery is off, then released at once: a burst.
        outbound: format!("disabled=true\n{RETRIES}"),
        files: vec![
            (
                "shaping.ini".into(),
                "[*.provider.test]\nmax_connections = 3\nsuspend = 6s\n".into(),
            ),
            (
                "metrics.ini".into(),
                format!("listen=127.0.0.1:{metrics_port}\n"),
            ),
        ],
        ..OutboundOptions::default()
    };
    let out = Outbound::start(zone(), farm.port, options).await?;
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let before = scrape(metrics).await?;
    assert_eq!(value(&before, CONCURRENCY), 3.0, "{before}");

    for round in 0..PER_DOMAIN {
        for domain in 0..DOMAINS {
            let reply = out
                .submit(
                    "a@origin.test",
                    &[&format!("u{round}@d{domain}.test")],
                    "Subject: burst\n\nhi\n",
                )
                .await?;
            assert_eq!(reply.code, 250, "{reply:?}");
        }
    }

    out.write_outbound(farm.port, RETRIES)?;

    // The second session got the 421: the budget halved and rests.
    out.wait_for_log("shaping: rate reply; concurrency 3 -> 1", WAIT)
        .await?;
    metric_becomes(metrics, CONCURRENCY, 1.0).await?;
    metric_becomes(metrics, SUSPENDED, 1.0).await?;
    // The provider stops rate-limiting new sessions.
    farm.get(PROVIDER).set(slow(50));

    // Meanwhile another destination gets its mail, in parallel sessions
    // (more than the provider's budget), before the provider resumes.
    let mut submissions = tokio::task::JoinSet::new();
    for n in 0..10 {
        let addr = out.addr;
        submissions.spawn(async move {
            submit_to(
                addr,
                None,
                "a@origin.test",
                &[&format!("v{n}@other.test")],
                "Subject: other\n\nhi\n",
            )
            .await
        });
    }
    while let Some(reply) = submissions.join_next().await {
        assert_eq!(reply??.code, 250);
    }
    wait_until(WAIT, "other.test's 10 messages", || {
        farm.get(OTHER).accepted().len() == 10
    })
    .await?;
    assert!(
        !out.log().contains("shaping: destination resumed"),
        "other.test waited for the provider's suspension:\n{}",
        out.log()
    );
    let other_parallel = farm.get(OTHER).record().max_in_flight;
    assert!(
        other_parallel > 3,
        "other.test sessions at once: {other_parallel}"
    );

    // The provider resumes and climbs back step by step.
    out.wait_for_log("shaping: destination resumed", WAIT)
        .await?;
    out.wait_for_log("shaping: recovering; concurrency 1 -> 2", WAIT)
        .await?;
    out.wait_for_log("shaping: recovering; concurrency 2 -> 3", WAIT)
        .await?;
    wait_until(WAIT, "all 200 messages at the provider", || {
        farm.get(PROVIDER).accepted().len() == DOMAINS * PER_DOMAIN
    })
    .await
    .map_err(|error| anyhow::anyhow!("{error}\n{}", out.log()))?;
    metric_becomes(metrics, CONCURRENCY, 3.0).await?;
    metric_becomes(metrics, SUSPENDED, 0.0).await?;

    let record = farm.get(PROVIDER).record();
    for line in out.log().lines().filter(|line| line.contains("shaping: ")) {
        eprintln!("{line}");
    }
    eprintln!(
        "provider: {} sessions, at most {} at once; other.test: at most {other_parallel} at once",
        record.sessions, record.max_in_flight
    );
    assert_eq!(
        record.max_in_flight, 3,
        "sessions at once at the provider's MX (budget 3)"
    );
    assert!(
        record.sessions >= DOMAINS * PER_DOMAIN,
        "{}",
        record.sessions
    );
    Ok(())
}

/// Waits (bounded) until `series` reads `expected` (the gauge is set just
/// after the log line a test waits for).
async fn metric_becomes(metrics: SocketAddr, series: &str, expected: f64) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..100 {
        last = scrape(metrics).await?;
        if value(&last, series) == expected {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{series} never became {expected}:\n{last}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_shaping_in_force() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("relay_acl_allow"), "127.0.0.1/32\n")?;
    std::fs::write(
        dir.path().join("outbound.ini"),
        format!("queue_dir={}\n", dir.path().join("queue").display()),
    )?;
    std::fs::write(
        dir.path().join("shaping.ini"),
        "[*.google.com]\nmax_connections = 5\nmessages_per_minute = 120\n\n[example.org]\nmax_connections = 2\nmessages_per_connection = 10\n",
    )?;
    let dir_text = dir.path().display().to_string();
    let (status, output) = postern_tests::process::run("relay-out", &["-c", &dir_text, "--check"])?;
    assert_eq!(status, 0, "{output}");
    assert!(
        output.contains("shaping [*.google.com] for every domain whose MX host ends in .google.com: up to 5 sessions at once, 120 messages per minute"),
        "{output}"
    );
    assert!(
        output.contains("shaping [example.org] for domain example.org: up to 2 sessions at once"),
        "{output}"
    );
    assert!(
        output.contains("messages_per_connection has no effect"),
        "{output}"
    );
    Ok(())
}
