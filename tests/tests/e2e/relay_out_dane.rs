//! relay-out's DANE (RFC 7672) against a real DNSSEC world: NSD serving a
//! zone signed at test time, Unbound validating it on loopback
//! (`postern_tests::dnssec`). TLSA records of a signed MX host are
//! enforced; unsigned ones are ignored; a resolver that does not validate
//! turns DANE off with one error line and mail keeps flowing.

use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::dns::TestZone;
use postern_tests::dnssec::{SignedDns, Zone, tlsa_3_1_1};
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, host, queue_id, wait_until};
use postern_tests::tls_mx::StartTlsMx;

const WAIT: Duration = Duration::from_secs(15);

/// A digest that matches no key.
const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The MX hosts: mx1.dane.test (127.0.0.2, TLSA matching), mx3.dane.test
/// (127.0.0.3, TLSA not matching), mx.plain.test (127.0.0.4, unsigned
/// zone, TLSA not matching; also the MX of insecure.plain.test, an unsigned
/// MX RRset pointing into the signed zone), all offering STARTTLS with their own test CA;
/// and mx5.dane.test (127.0.0.5, a plain recording MX without STARTTLS)
/// whose only TLSA record is PKIX-EE(1), which SMTP cannot use.
struct World {
    farm: MxFarm,
    good: StartTlsMx,
    bad: StartTlsMx,
    plain: StartTlsMx,
    dns: SignedDns,
}

async fn world() -> anyhow::Result<World> {
    // The farm only reserves the port (on 127.0.0.9).
    let mut farm = MxFarm::start(9, Behaviour::default()).await?;
    farm.add(5, Behaviour::default()).await?;
    let port = farm.port;
    let good = StartTlsMx::start_on(host(2, port), "mx1.dane.test", false).await?;
    let bad = StartTlsMx::start_on(host(3, port), "mx3.dane.test", false).await?;
    let plain = StartTlsMx::start_on(host(4, port), "mx.plain.test", false).await?;
    let signed = Zone::new("dane.test", true)
        .record("good IN MX 10 mx1")
        .record("mx1 IN A 127.0.0.2")
        .record(&format!(
            "_{port}._tcp.mx1 IN TLSA 3 1 1 {}",
            tlsa_3_1_1(&good.cert_der)?
        ))
        .record("bad IN MX 10 mx3")
        .record("mx3 IN A 127.0.0.3")
        .record(&format!("_{port}._tcp.mx3 IN TLSA 3 1 1 {WRONG}"))
        .record("pkix IN MX 10 mx5")
        .record("mx5 IN A 127.0.0.5")
        .record(&format!("_{port}._tcp.mx5 IN TLSA 1 1 1 {WRONG}"));
    let unsigned = Zone::new("plain.test", false)
        .record("@ IN MX 10 mx")
        .record("mx IN A 127.0.0.4")
        .record(&format!("_{port}._tcp.mx IN TLSA 3 1 1 {WRONG}"))
        .record("insecure IN MX 10 mx3.dane.test.");
    let dns = SignedDns::start(vec![signed, unsigned]).await?;
    Ok(World {
        farm,
        good,
        bad,
        plain,
        dns,
    })
}

/// relay-out resolving through `nameserver`, the DANE check on dane.test,
/// with more tls_policy.ini lines `policy`.
fn options(nameserver: &str, metrics_port: u16, policy: &str) -> OutboundOptions {
    OutboundOptions {
        // The later nameservers= wins over the test DNS the harness sets.
        outbound: format!("temp_fail_intervals=1h\nnameservers={nameserver}\n"),
        files: vec![
            (
                "tls_policy.ini".to_owned(),
                format!("dane_probe = dane.test\n{policy}"),
            ),
            (
                "metrics.ini".to_owned(),
                format!("listen=127.0.0.1:{metrics_port}\n"),
            ),
        ],
        ..OutboundOptions::default()
    }
}

/// The attempt lines of the log that name `mx`.
fn attempt_lines(log: &str, mx: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("delivery attempt") && l.contains(&format!("mx={mx}")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tlsa_is_enforced_and_unsigned_tlsa_ignored() -> anyhow::Result<()> {
    let world = world().await?;
    let metrics_port = postern_tests::process::free_port();
    let out = Outbound::start(
        TestZone::new(),
        world.farm.port,
        options(&world.dns.resolver_setting(), metrics_port, ""),
    )
    .await?;
    out.wait_for_log("DANE is on", WAIT).await?;
    let dir = out.config_dir().display().to_string();
    let (code, check) = postern_tests::process::run("relay-out", &["-c", &dir, "--check"])?;
    assert_eq!(code, 0, "{check}");
    assert!(check.contains("DANE: on"), "{check}");

    // TLSA 3 1 1 matching the MX's key: delivered over TLS under dane.
    out.submit("a@origin.test", &["u@good.dane.test"], "Subject: g\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery to mx1", || world.good.accepted().len() == 1).await?;
    assert!(world.good.accepted()[0].tls);
    out.wait_for_log("mx=mx1.dane.test", WAIT).await?;
    let lines = attempt_lines(&out.log(), "mx1.dane.test");
    assert!(
        lines.iter().any(|l| l.contains("tls=true")
            && l.contains("tls_policy=dane")
            && l.contains("tls_policy_source=tlsa")
            && l.contains("result=delivered")),
        "{lines:#?}"
    );

    // Not matching: deferred with the reason, the MX got nothing.
    let id = queue_id(
        &out.submit("a@origin.test", &["u@bad.dane.test"], "Subject: b\n\nhi\n")
            .await?,
    )?;
    wait_until(WAIT, "the deferral of bad.dane.test", || {
        out.log()
            .lines()
            .any(|l| l.contains("domain=bad.dane.test") && l.contains("result=deferred"))
    })
    .await?;
    assert!(world.bad.accepted().is_empty(), "nothing went to mx3");
    let lines = attempt_lines(&out.log(), "mx3.dane.test");
    assert!(
        lines.iter().any(|l| l.contains("tls_policy=dane")
            && l.contains("tls_policy_source=tlsa")
            && l.contains("DANE: no TLSA record of the MX host matches")),
        "{lines:#?}"
    );
    let (_, shown) = out.queue(&["show", &id])?;
    assert!(
        shown.contains("u@bad.dane.test: pending, 1 attempt(s)")
            && shown.contains("DANE: no TLSA record"),
        "{shown}"
    );

    // A TLSA record in an unsigned zone is not DANE: delivered as by default.
    out.submit("a@origin.test", &["u@plain.test"], "Subject: p\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery to mx.plain.test", || {
        world.plain.accepted().len() == 1
    })
    .await?;
    out.wait_for_log("mx=mx.plain.test", WAIT).await?;
    let lines = attempt_lines(&out.log(), "mx.plain.test");
    assert!(
        lines.iter().any(|l| l.contains("tls_policy=may")
            && l.contains("tls_policy_source=enable_tls")
            && l.contains("result=delivered")),
        "{lines:#?}"
    );

    // Only unusable TLSA records (PKIX-EE): STARTTLS is still mandatory
    // (RFC 7672 §2.2), so an MX without it gets nothing, not clear text.
    out.submit("a@origin.test", &["u@pkix.dane.test"], "Subject: k\n\nhi\n")
        .await?;
    wait_until(WAIT, "the deferral of pkix.dane.test", || {
        out.log()
            .lines()
            .any(|l| l.contains("domain=pkix.dane.test") && l.contains("result=deferred"))
    })
    .await?;
    assert!(
        world.farm.get(5).accepted().is_empty(),
        "nothing in clear text"
    );
    let lines = attempt_lines(&out.log(), "mx5.dane.test");
    assert!(
        lines.iter().any(|l| l.contains("tls_policy=encrypt")
            && l.contains("tls_policy_source=tlsa")
            && l.contains("STARTTLS")),
        "{lines:#?}"
    );

    // An unsigned MX RRset naming a signed MX host: the MX answer could be
    // forged, so its TLSA records are not looked up (RFC 7672 §2.2.1).
    out.submit(
        "a@origin.test",
        &["u@insecure.plain.test"],
        "Subject: i\n\nhi\n",
    )
    .await?;
    wait_until(WAIT, "delivery to mx3 for insecure.plain.test", || {
        world.bad.accepted().len() == 1
    })
    .await?;
    out.wait_for_log("domain=insecure.plain.test mx=mx3.dane.test", WAIT)
        .await?;
    assert!(
        out.log()
            .lines()
            .any(|l| l.contains("domain=insecure.plain.test")
                && l.contains("tls_policy=may")
                && l.contains("result=delivered")),
        "{}",
        out.log()
    );

    let metrics = postern_tests::metrics::scrape(([127, 0, 0, 1], metrics_port).into()).await?;
    for series in [
        "postern_tls_policy_attempts_total{policy=\"dane\",result=\"delivered\"}",
        "postern_tls_policy_attempts_total{policy=\"dane\",result=\"deferred\"}",
    ] {
        assert!(
            postern_tests::metrics::value(&metrics, series) >= 1.0,
            "{series} in:\n{metrics}"
        );
    }
    Ok(())
}

/// relay-out resolving through `nameserver` with tls_policy.ini lines
/// `policy`, once its log says `started`: sends to bad.dane.test (whose
/// signed TLSA does not match mx3) and returns relay-out and mx3's attempt
/// lines after mx3 took the message.
async fn deliver_to_mx3(
    world: &World,
    nameserver: &str,
    policy: &str,
    started: &str,
) -> anyhow::Result<(Outbound, Vec<String>)> {
    let out = Outbound::start(
        TestZone::new(),
        world.farm.port,
        options(nameserver, postern_tests::process::free_port(), policy),
    )
    .await?;
    out.wait_for_log(started, WAIT).await?;
    out.submit("a@origin.test", &["u@bad.dane.test"], "Subject: b\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery to mx3", || world.bad.accepted().len() == 1).await?;
    assert!(world.bad.accepted()[0].tls);
    out.wait_for_log("mx=mx3.dane.test", WAIT).await?;
    let lines = attempt_lines(&out.log(), "mx3.dane.test");
    Ok((out, lines))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_does_not_validate_turns_dane_off_and_mail_flows() -> anyhow::Result<()> {
    let world = world().await?;
    // NSD answers the signed zone but never sets the AD bit. The
    // mismatching TLSA is then not enforced: the zone counts as unsigned.
    let nsd = world.dns.authoritative.to_string();
    let (out, lines) = deliver_to_mx3(&world, &nsd, "", "DANE is off").await?;
    let log = out.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("does not validate DNSSEC")
            && l.contains("dane.test")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.contains("tls_policy=may")
            && l.contains("tls_policy_source=enable_tls")
            && l.contains("result=delivered")),
        "{lines:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_off_in_tls_policy_ini_ignores_signed_tlsa() -> anyhow::Result<()> {
    let world = world().await?;
    let (out, lines) = deliver_to_mx3(
        &world,
        &world.dns.resolver_setting(),
        "dane = off\n",
        "DANE is off (tls_policy.ini dane=off)",
    )
    .await?;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("tls_policy=may") && l.contains("result=delivered")),
        "{lines:#?}"
    );
    let dir = out.config_dir().display().to_string();
    let (code, check) = postern_tests::process::run("relay-out", &["-c", &dir, "--check"])?;
    assert_eq!(code, 0, "{check}");
    assert!(
        check.contains("DANE: off (tls_policy.ini dane=off)"),
        "{check}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_policy_ini_entry_comes_before_dane() -> anyhow::Result<()> {
    let world = world().await?;
    let (_out, lines) = deliver_to_mx3(
        &world,
        &world.dns.resolver_setting(),
        "[bad.dane.test]\npolicy = encrypt\n",
        "DANE is on",
    )
    .await?;
    assert!(
        lines.iter().any(|l| l.contains("tls_policy=encrypt")
            && l.contains("tls_policy_source=tls_policy.ini")
            && l.contains("result=delivered")),
        "{lines:#?}"
    );
    Ok(())
}
