//! relay-out's MTA-STS (RFC 8461, issue 16 point 2): the `_mta-sts` TXT
//! record from the test DNS, the policy from a real nginx on loopback with a
//! certificate of a test CA that relay-out trusts through tls_policy.ini
//! `ca_file`, on the TEST-ONLY `mta_sts_port`.

use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::certs::TestCa;
use postern_tests::dns::TestZone;
use postern_tests::nginx::{PolicyServer, Serve};
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, host, ip, wait_until};
use postern_tests::process::free_port;
use postern_tests::tls_mx::StartTlsMx;

const WAIT: Duration = Duration::from_secs(15);
const POLICY_HOST: &str = "mta-sts.dest.test";
/// The policy host's address (the MX hosts are 127.0.0.2 and .3).
const POLICY_IP: u8 = 5;

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// dest.test with its MX mx1.dest.test on 127.0.0.2, an MTA-STS TXT record
/// and the policy host.
fn zone() -> TestZone {
    TestZone::new()
        .mx("dest.test", 10, "mx1.dest.test")
        .a("mx1.dest.test", ip(2))
        .txt("_mta-sts.dest.test", "v=STSv1; id=20261206T1;")
        .txt(
            "_smtp._tls.dest.test",
            "v=TLSRPTv1; rua=mailto:tlsrpt@origin.test",
        )
        .a(POLICY_HOST, ip(POLICY_IP))
}

/// Polls `relay-out tlsrpt show` (bounded) until it contains `needle`.
async fn wait_for_tlsrpt(out: &Outbound, needle: &str) -> anyhow::Result<String> {
    let dir = out.config_dir().display().to_string();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (code, shown) =
            postern_tests::process::run("relay-out", &["-c", dir.as_str(), "tlsrpt", "show"])?;
        anyhow::ensure!(code == 0, "tlsrpt show failed: {shown}");
        if shown.contains(needle) {
            return Ok(shown);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in tlsrpt show:\n{shown}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The policy host (nginx with a certificate of its own test CA) and what
/// relay-out needs to trust it and the MX: tls_policy.ini and the CA file.
struct Setup {
    _dir: tempfile::TempDir,
    server: PolicyServer,
    options: OutboundOptions,
}

fn setup(serve: Serve, mx_ca_pem: &str) -> anyhow::Result<Setup> {
    setup_trusting(serve, mx_ca_pem, true)
}

/// [`setup`], with the policy host's CA trusted or not.
fn setup_trusting(serve: Serve, mx_ca_pem: &str, trust_policy_host: bool) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("Postern MTA-STS policy host CA")?;
    let cert = ca.issue(POLICY_HOST)?;
    let port = free_port();
    let server = PolicyServer::start(
        dir.path(),
        host(POLICY_IP, port),
        POLICY_HOST,
        &cert,
        &serve,
    )?;
    let options = OutboundOptions {
        outbound: "temp_fail_intervals=1h\n".into(),
        files: vec![
            (
                "tls_policy.ini".into(),
                format!("ca_file=trusted-cas.pem\nmta_sts_port={port}\n"),
            ),
            (
                "trusted-cas.pem".into(),
                if trust_policy_host {
                    format!("{mx_ca_pem}{}", ca.cert_pem)
                } else {
                    mx_ca_pem.to_owned()
                },
            ),
        ],
        ..OutboundOptions::default()
    };
    Ok(Setup {
        _dir: dir,
        server,
        options,
    })
}

/// `options` with the metrics endpoint on, and its address.
fn with_metrics(options: &OutboundOptions) -> (OutboundOptions, std::net::SocketAddr) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut options = options.clone();
    options
        .files
        .push(("metrics.ini".to_owned(), format!("listen={addr}\n")));
    (options, addr)
}

fn attempt_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("delivery attempt") && l.contains("domain=dest.test"))
        .collect()
}

/// Some dest.test delivery attempt line of `log` contains every one of `parts`.
fn attempt_logged(log: &str, parts: &[&str]) -> bool {
    attempt_lines(log)
        .iter()
        .any(|l| parts.iter().all(|part| l.contains(part)))
}

/// The STARTTLS MX mx1.dest.test on 127.0.0.2, on the port of a farm that
/// only reserves it (its own server is on 127.0.0.9).
async fn starttls_mx() -> anyhow::Result<(MxFarm, StartTlsMx)> {
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let mx = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", false).await?;
    Ok((farm, mx))
}

/// mx1.dest.test as the farm's server on 127.0.0.2 (no STARTTLS), and the
/// policy host serving `serve` (its CA trusted or not).
async fn clear_text_mx(serve: Serve, trust_policy_host: bool) -> anyhow::Result<(MxFarm, Setup)> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let ca = TestCa::new("unused MX CA")?;
    let setup = setup_trusting(serve, &ca.cert_pem, trust_policy_host)?;
    Ok((farm, setup))
}

/// Submits a message to `rcpt` (at dest.test), waits (bounded) until `delivered`
/// holds and relay-out logs the delivery; returns relay-out's log.
async fn submit_until_delivered(
    out: &Outbound,
    rcpt: &str,
    subject: &str,
    delivered: impl Fn() -> bool,
) -> anyhow::Result<String> {
    let data = format!("Subject: {subject}\n\nhi\n");
    out.submit("a@origin.test", &[rcpt], &data).await?;
    wait_until(WAIT, "delivery", delivered).await?;
    out.wait_for_log("result=delivered", WAIT).await?;
    Ok(out.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_delivers_over_verified_tls_to_a_listed_mx_and_survives_a_restart()
-> anyhow::Result<()> {
    let (farm, mx) = starttls_mx().await?;
    let mut setup = setup(
        Serve::Policy(policy("enforce", "mx1.dest.test")),
        &mx.ca_pem,
    )?;
    let mut out = Outbound::start(zone(), farm.port, setup.options.clone()).await?;
    let log =
        submit_until_delivered(&out, "u@dest.test", "sts", || mx.accepted().len() == 1).await?;
    assert!(mx.accepted()[0].tls);
    assert!(
        attempt_logged(
            &log,
            &[
                "tls_policy=mta-sts",
                "tls_policy_source=mta-sts",
                "result=delivered"
            ]
        ),
        "{log}"
    );
    assert!(log.contains("MTA-STS policy fetched"), "{log}");
    assert_eq!(setup.server.requests().len(), 1, "{}", setup.server.log());
    assert!(
        out.queue_dir().join("mta-sts/dest.test.json").is_file(),
        "the policy is cached on disk"
    );

    // The policy host goes away; after a restart the cached policy is
    // still enforced (no fetch is even tried: the TXT id is unchanged).
    setup.server.stop();
    out.relay.stop(WAIT)?;
    out.restart()?;
    let log =
        submit_until_delivered(&out, "v@dest.test", "cached", || mx.accepted().len() == 2).await?;
    assert!(
        attempt_logged(&log, &["tls_policy=mta-sts", "result=delivered"]),
        "{log}"
    );
    assert!(!log.contains("MTA-STS policy fetch"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_defers_when_the_mx_is_not_in_the_policy() -> anyhow::Result<()> {
    let (farm, mx) = starttls_mx().await?;
    let setup = setup(
        Serve::Policy(policy("enforce", "*.mail.dest.test")),
        &mx.ca_pem,
    )?;
    let (options, metrics) = with_metrics(&setup.options);
    let out = Outbound::start(zone(), farm.port, options).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: no\n\nhi\n")
        .await?;
    out.wait_for_log("result=deferred", WAIT).await?;
    let scraped = postern_tests::metrics::scrape(metrics).await?;
    let series =
        "postern_mta_sts_failures_total{mode=\"enforce\",result_type=\"validation-failure\"}";
    assert_eq!(
        postern_tests::metrics::value(&scraped, series),
        1.0,
        "{scraped}"
    );
    let log = out.log();
    assert!(
        attempt_lines(&log).iter().any(|l| l.contains("tls_policy=mta-sts")
            && l.contains("result=deferred")
            && l.contains("allows none of its MX hosts: mx1.dest.test not in the policy's mx list (*.mail.dest.test)")),
        "{log}"
    );
    // The reason is decided before any connection: the MX saw nothing.
    assert!(mx.accepted().is_empty());
    // TLS-RPT counts it against the sts policy, naming the MX.
    let shown = wait_for_tlsrpt(&out, "  validation-failure mx=mx1.dest.test").await?;
    assert!(shown.contains("dest.test policy=sts"), "{shown}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_never_falls_back_to_clear_text() -> anyhow::Result<()> {
    // mx1.dest.test is the farm's server on 127.0.0.2: no STARTTLS.
    let (farm, setup) =
        clear_text_mx(Serve::Policy(policy("enforce", "mx1.dest.test")), true).await?;
    let (options, metrics) = with_metrics(&setup.options);
    let out = Outbound::start(zone(), farm.port, options).await?;
    let dir = out.config_dir().display().to_string();
    let (code, check) = postern_tests::process::run("relay-out", &["-c", &dir, "--check"])?;
    assert_eq!(code, 0, "{check}");
    assert!(
        check.contains("MTA-STS: on for domains without a tls_policy.ini section")
            && check.contains("(TEST-ONLY mta_sts_port)"),
        "{check}"
    );
    out.submit("a@origin.test", &["u@dest.test"], "Subject: clear?\n\nhi\n")
        .await?;
    out.wait_for_log("result=deferred", WAIT).await?;
    let scraped = postern_tests::metrics::scrape(metrics).await?;
    let series = "postern_tls_policy_attempts_total{policy=\"mta-sts\",result=\"deferred\"}";
    assert!(
        postern_tests::metrics::value(&scraped, series) >= 1.0,
        "{scraped}"
    );
    let log = out.log();
    let lines = attempt_lines(&log);
    assert!(
        lines.iter().any(|l| l.contains("mx=mx1.dest.test")
            && l.contains("result=host-failed")
            && l.contains("tls_policy=mta-sts")
            && l.contains("STARTTLS")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.contains("result=deferred")), "{log}");
    assert!(
        farm.get(2).lines_starting("MAIL").is_empty(),
        "no clear-text transaction"
    );
    assert!(farm.get(2).accepted().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_delivers_and_logs_what_enforce_would_refuse() -> anyhow::Result<()> {
    // The MX is not in the policy and has no STARTTLS: both would fail.
    let (farm, setup) =
        clear_text_mx(Serve::Policy(policy("testing", "mx9.dest.test")), true).await?;
    let out = Outbound::start(zone(), farm.port, setup.options.clone()).await?;
    let log = submit_until_delivered(&out, "u@dest.test", "testing", || {
        farm.get(2).accepted().len() == 1
    })
    .await?;
    assert!(
        attempt_logged(
            &log,
            &[
                "tls_policy=may",
                "tls_policy_source=mta-sts-testing",
                "result=delivered"
            ]
        ),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("MTA-STS testing policy")
            && l.contains("mx1.dest.test not in the policy's mx list")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("result_type=\"starttls-not-supported\"")
                && l.contains("enforce would have deferred")),
        "{log}"
    );
    Ok(())
}

/// A policy fetch that fails as `serve` makes it (policy host trusted or
/// not): the failure is logged with `expected` in its line, and with no
/// cached policy the mail goes out as without MTA-STS (the farm's MX on
/// 127.0.0.2 has no STARTTLS, so an enforce policy would have deferred).
/// Returns the policy server's setup, for its request log.
async fn fetch_fails_and_no_policy_applies(
    serve: Serve,
    trust_policy_host: bool,
    expected: &[&str],
) -> anyhow::Result<Setup> {
    let (farm, setup) = clear_text_mx(serve, trust_policy_host).await?;
    let out = Outbound::start(zone(), farm.port, setup.options.clone()).await?;
    let log = submit_until_delivered(&out, "u@dest.test", "no policy", || {
        farm.get(2).accepted().len() == 1
    })
    .await?;
    assert!(
        log.lines()
            .any(|l| l.contains("MTA-STS policy fetch failed")
                && expected.iter().all(|part| l.contains(part))),
        "{expected:?} in {log}"
    );
    assert!(
        attempt_logged(&log, &["tls_policy_source=enable_tls", "result=delivered"]),
        "{log}"
    );
    // The failed fetch is counted for the domain's TLS-RPT report as an
    // RFC 8460 §4.3.2 policy failure of type `sts`.
    let result_type = log
        .lines()
        .find(|l| l.contains("MTA-STS policy fetch failed"))
        .and_then(|l| l.split("result_type=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    assert!(result_type.starts_with("sts-"), "{log}");
    let shown = wait_for_tlsrpt(&out, "dest.test policy=sts").await?;
    assert!(
        shown.contains(&format!("  {result_type} ")),
        "{result_type} in {shown}"
    );
    Ok(setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_refused_and_without_a_cached_policy_none_applies() -> anyhow::Result<()> {
    let setup = fetch_fails_and_no_policy_applies(
        Serve::Redirect(format!("https://{POLICY_HOST}/elsewhere.txt")),
        true,
        &[
            "result_type=\"sts-policy-fetch-error\"",
            "redirect to \"https://mta-sts.dest.test/elsewhere.txt\" refused",
        ],
    )
    .await?;
    assert_eq!(
        setup.server.requests().len(),
        1,
        "the redirect was not followed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_host_with_an_untrusted_certificate_gives_no_policy() -> anyhow::Result<()> {
    fetch_fails_and_no_policy_applies(
        Serve::Policy(policy("enforce", "mx1.dest.test")),
        false,
        &["result_type=\"sts-webpki-invalid\"", "no valid certificate"],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_over_64_kib_is_refused() -> anyhow::Result<()> {
    // A valid enforce policy padded with an unknown key past the bound.
    let padded = format!(
        "{}x_padding: {}\r\n",
        policy("enforce", "mx1.dest.test"),
        "a".repeat(70 * 1024)
    );
    fetch_fails_and_no_policy_applies(
        Serve::Policy(padded),
        true,
        &["response body larger than 65536 bytes"],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_logs_a_certificate_that_enforce_would_refuse() -> anyhow::Result<()> {
    let (farm, mx) = starttls_mx().await?;
    // The MX's CA is not among the trusted ones.
    let setup = setup(Serve::Policy(policy("testing", "mx1.dest.test")), "")?;
    let out = Outbound::start(zone(), farm.port, setup.options.clone()).await?;
    let log =
        submit_until_delivered(&out, "u@dest.test", "cert", || mx.accepted().len() == 1).await?;
    assert!(mx.accepted()[0].tls);
    assert!(
        log.lines().any(|l| l.contains(
            "MTA-STS testing policy: mx1.dest.test has a certificate enforce would refuse"
        ) && l.contains("result_type=\"validation-failure\"")),
        "{log}"
    );
    assert!(!log.contains("not in the policy's mx list"), "{log}");
    Ok(())
}
