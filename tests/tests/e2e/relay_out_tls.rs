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
