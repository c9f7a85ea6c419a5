//! relay-out's opportunistic STARTTLS: used when offered (any certificate),
//! a failed handshake moves on to the next MX, and clear text is tried last
//! only with `tls_fallback_plain=true`.

use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, host, ip, queue_id, wait_until};
use postern_tests::tls_mx::StartTlsMx;

const WAIT: Duration = Duration::from_secs(15);

fn zone() -> TestZone {
    TestZone::new()
        .mx("dest.test", 10, "mx1.dest.test")
        .mx("dest.test", 20, "mx2.dest.test")
        .a("mx1.dest.test", ip(2))
        .a("mx2.dest.test", ip(3))
}

fn options(outbound: &str) -> OutboundOptions {
    OutboundOptions {
        outbound: format!("temp_fail_intervals=1h\n{outbound}"),
        ..OutboundOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_used_when_offered() -> anyhow::Result<()> {
    // The farm only reserves the port (on 127.0.0.9); the TLS MX takes mx1.
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let mx = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", false).await?;
    let out = Outbound::start(zone(), farm.port, options("")).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: secret\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery", || mx.accepted().len() == 1).await?;
    let accepted = &mx.accepted()[0];
    assert!(accepted.tls, "the message went over TLS");
    assert_eq!(accepted.rcpts, ["u@dest.test"]);
    out.wait_for_log("mx=mx1.dest.test ip=127.0.0.2", WAIT)
        .await?;
    let log = out.log();
    assert!(
        log.lines()
            .any(|l| l.contains("mx=mx1.dest.test")
                && l.contains("tls=true rcpts=1 result=delivered")),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handshake_moves_on_to_the_next_mx() -> anyhow::Result<()> {
    let farm = MxFarm::start(3, Behaviour::default()).await?;
    let _broken = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", true).await?;
    let out = Outbound::start(zone(), farm.port, options("")).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: next\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery to mx2", || {
        farm.get(3).accepted().len() == 1
    })
    .await?;
    let log = out.log();
    assert!(
        log.lines().any(|l| l.contains("mx=mx1.dest.test")
            && l.contains("result=host-failed")
            && l.contains("TLS handshake")),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_text_is_the_last_resort_only_when_allowed() -> anyhow::Result<()> {
    let zone = TestZone::new()
        .mx("dest.test", 10, "mx1.dest.test")
        .a("mx1.dest.test", ip(2));

    // Not allowed: the message waits for a retry.
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let broken = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", true).await?;
    let out = Outbound::start(zone.clone(), farm.port, options("")).await?;
    let id = queue_id(
        &out.submit("a@origin.test", &["u@dest.test"], "Subject: wait\n\nhi\n")
            .await?,
    )?;
    out.wait_for_log(&format!("queue_id={id} domain=dest.test"), WAIT)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(broken.accepted().is_empty());
    let (_, shown) = out.queue(&["show", &id])?;
    assert!(
        shown.contains("u@dest.test: pending, 1 attempt(s)"),
        "{shown}"
    );
    assert!(shown.contains("TLS handshake"), "{shown}");
    drop(out);
    drop(broken);

    // Allowed: after every host failed with TLS, the same host in clear.
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let broken = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", true).await?;
    let out = Outbound::start(zone, farm.port, options("tls_fallback_plain=true\n")).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: clear\n\nhi\n")
        .await?;
    wait_until(WAIT, "clear-text delivery", || broken.accepted().len() == 1).await?;
    assert!(!broken.accepted()[0].tls);
    out.wait_for_log("mx=mx1.dest.test ip=127.0.0.2", WAIT)
        .await?;
    out.wait_for_log(
        &format!("port={} tls=false rcpts=1 result=delivered", farm.port),
        WAIT,
    )
    .await?;
    Ok(())
}

/// dest.test with one MX, on 127.0.0.2.
fn one_mx_zone() -> TestZone {
    TestZone::new()
        .mx("dest.test", 10, "mx1.dest.test")
        .a("mx1.dest.test", ip(2))
}

/// relay-out with tls_policy.ini `text` (and the CA file, if given).
fn with_policy(text: &str, ca_pem: Option<&str>) -> OutboundOptions {
    let mut files = vec![("tls_policy.ini".to_owned(), text.to_owned())];
    if let Some(pem) = ca_pem {
        files.push(("mx-ca.pem".to_owned(), pem.to_owned()));
    }
    OutboundOptions {
        files,
        ..options("")
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
async fn tls_policy_verify_defers_an_unverified_certificate_and_delivers_a_verified_one()
-> anyhow::Result<()> {
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let mx = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", false).await?;

    // The MX's certificate is from a CA the system does not know.
    let metrics_port = postern_tests::process::free_port();
    let mut options = with_policy("[dest.test]\npolicy=verify\n", None);
    options.files.push((
        "metrics.ini".to_owned(),
        format!("listen=127.0.0.1:{metrics_port}\n"),
    ));
    let out = Outbound::start(one_mx_zone(), farm.port, options).await?;
    let dir = out.config_dir().display().to_string();
    let (code, check) = postern_tests::process::run("relay-out", &["-c", &dir, "--check"])?;
    assert_eq!(code, 0, "{check}");
    assert!(
        check.contains("TLS to dest.test's MX hosts: policy=verify"),
        "{check}"
    );
    out.submit("a@origin.test", &["u@dest.test"], "Subject: v\n\nhi\n")
        .await?;
    out.wait_for_log("result=deferred", WAIT).await?;
    assert!(mx.accepted().is_empty(), "nothing went to an unverified MX");
    let lines = attempt_lines(&out.log(), "mx1.dest.test");
    assert!(
        lines.iter().any(|l| l.contains("tls_policy=verify")
            && l.contains("tls_policy_source=tls_policy.ini")
            && l.to_ascii_lowercase().contains("certificate")),
        "{lines:#?}"
    );
    let metrics = postern_tests::metrics::scrape(([127, 0, 0, 1], metrics_port).into()).await?;
    let series = "postern_tls_policy_attempts_total{policy=\"verify\",result=\"deferred\"}";
    assert!(
        postern_tests::metrics::value(&metrics, series) >= 1.0,
        "{series} in:\n{metrics}"
    );
    drop(out);

    // Trusting the MX's CA: delivered, verified.
    let out = Outbound::start(
        one_mx_zone(),
        farm.port,
        with_policy(
            "ca_file=mx-ca.pem\n[dest.test]\npolicy=verify\n",
            Some(&mx.ca_pem),
        ),
    )
    .await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: v2\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery", || mx.accepted().len() == 1).await?;
    assert!(mx.accepted()[0].tls);
    out.wait_for_log("result=delivered", WAIT).await?;
    let lines = attempt_lines(&out.log(), "mx1.dest.test");
    assert!(
        lines.iter().any(|l| l.contains("tls=true")
            && l.contains("tls_policy=verify")
            && l.contains("result=delivered")),
        "{lines:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_policy_encrypt_never_falls_back_to_clear_text_and_none_never_starts_tls()
-> anyhow::Result<()> {
    // An MX without STARTTLS under `encrypt`: deferred, even with the
    // clear-text fallback allowed for opportunistic TLS.
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(
        one_mx_zone(),
        farm.port,
        OutboundOptions {
            outbound: "temp_fail_intervals=1h\ntls_fallback_plain=true\n".into(),
            ..with_policy("[dest.test]\npolicy=encrypt\n", None)
        },
    )
    .await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: e\n\nhi\n")
        .await?;
    out.wait_for_log("result=deferred", WAIT).await?;
    assert!(
        farm.get(2).accepted().is_empty(),
        "nothing was sent in clear text"
    );
    let lines = attempt_lines(&out.log(), "mx1.dest.test");
    assert!(
        lines.iter().any(|l| l.contains("tls_policy=encrypt")),
        "{lines:#?}"
    );
    drop(out);
    drop(farm);

    // `none` to an MX that offers STARTTLS: clear text, as asked.
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let mx = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", false).await?;
    let out = Outbound::start(
        one_mx_zone(),
        farm.port,
        with_policy("[dest.test]\npolicy=none\n", None),
    )
    .await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: n\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery", || mx.accepted().len() == 1).await?;
    assert!(!mx.accepted()[0].tls, "policy=none: no STARTTLS");
    out.wait_for_log("tls_policy=none", WAIT).await?;
    Ok(())
}
