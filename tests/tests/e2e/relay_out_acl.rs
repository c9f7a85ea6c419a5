//! relay-out's intake: who may relay (relay_acl_allow, IPv4 and IPv6),
//! durable `250 Queued as`, `451 4.3.0` when the queue cannot be written,
//! and loop protection (too many Received headers; never delivering to its
//! own listeners).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::dns::TestZone;
use postern_tests::outbound::{
    MxFarm, Outbound, OutboundOptions, host, ip, parse_dsn, queue_id, submit_to, wait_until,
};
use postern_tests::smtp::SmtpClient;

const WAIT: Duration = Duration::from_secs(15);

fn zone() -> TestZone {
    TestZone::new()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", ip(2))
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(5))
}

/// MAIL then RCPT from `source` (or the default address); returns the RCPT reply.
async fn rcpt_reply(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<(u16, String)> {
    let mut client = match source {
        Some(source) => SmtpClient::connect_from(source, addr).await?,
        None => SmtpClient::connect(addr).await?,
    };
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO client.test", 250).await?;
    client.expect("MAIL FROM:<a@origin.test>", 250).await?;
    let reply = client.command("RCPT TO:<u@dest.test>").await?;
    Ok((reply.code, reply.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_clients_may_relay_over_ipv4_and_ipv6() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            listen_v6: true,
            ..OutboundOptions::default()
        },
    )
    .await?;

    let reply = out
        .submit("a@origin.test", &["u@dest.test"], "Subject: acl\n\nhi\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        reply.text().starts_with("250 2.0.0 Queued as "),
        "{reply:?}"
    );
    wait_until(WAIT, "delivery", || farm.get(2).accepted().len() == 1).await?;

    for source in [Some(IpAddr::from(ip(2))), None] {
        let target = if source.is_some() {
            out.addr
        } else {
            out.addr_v6
        };
        let (code, text) = rcpt_reply(target, source).await?;
        assert_eq!(code, 550, "{text}");
        assert!(text.starts_with("550 5.7.1 "), "{text}");
    }
    out.wait_for_log("relay refused: client not in relay_acl_allow", WAIT)
        .await?;
    assert_eq!(farm.get(2).accepted().len(), 1, "nothing refused was sent");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_ipv6_host_may_relay() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            acl: vec!["::1/128".into()],
            listen_v6: true,
            ..OutboundOptions::default()
        },
    )
    .await?;
    let reply = submit_to(
        out.addr_v6,
        None,
        "a@origin.test",
        &["u@dest.test"],
        "Subject: v6\n\nhi\n",
    )
    .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "delivery", || farm.get(2).accepted().len() == 1).await?;
    let (code, text) = rcpt_reply(out.addr, None).await?;
    assert_eq!(code, 550, "127.0.0.1 is not listed: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_cannot_be_written_answers_451_and_keeps_nothing() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(2, Behaviour::default()).await?;
    farm.get_mut(2).down();
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let queue = out.queue_dir();
    let moved = out.config_dir().join("queue.moved");
    std::fs::rename(&queue, &moved)?;
    // A file where the directory was: every write in it fails, even as root.
    std::fs::write(&queue, b"not a directory")?;
    let reply = out
        .submit("a@origin.test", &["u@dest.test"], "Subject: full\n\nhi\n")
        .await?;
    assert!(reply.text().starts_with("451 4.3.0 "), "{reply:?}");
    out.wait_for_log("cannot queue the message", WAIT).await?;

    std::fs::remove_file(&queue)?;
    std::fs::rename(&moved, &queue)?;
    let reply = out
        .submit("a@origin.test", &["u@dest.test"], "Subject: ok\n\nhi\n")
        .await?;
    let id = queue_id(&reply)?;
    assert_eq!(
        out.queued_ids(),
        [id],
        "only the acknowledged message is queued"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_received_headers_is_a_loop() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let hops = |n: usize| "Received: from hop by hop; Thu, 1 Jan 2026 00:00:00 +0000\n".repeat(n);

    let looping = format!("{}Subject: loop\n\nhi\n", hops(101));
    let reply = out
        .submit("a@origin.test", &["u@dest.test"], &looping)
        .await?;
    assert!(reply.text().starts_with("554 5.4.6 "), "{reply:?}");

    let fine = format!("{}Subject: long way\n\nhi\n", hops(100));
    let reply = out.submit("a@origin.test", &["u@dest.test"], &fine).await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "delivery", || farm.get(2).accepted().len() == 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_whose_mx_is_relay_out_itself_bounces_instead_of_looping() -> anyhow::Result<()> {
    let farm = MxFarm::start(5, Behaviour::default()).await?;
    // relay-out also listens on 127.0.0.1 at the port it delivers to, and
    // loop.test's MX points there.
    let zone = zone()
        .mx("loop.test", 10, "mx.loop.test")
        .a("mx.loop.test", ip(1));
    let out = Outbound::start(
        zone,
        farm.port,
        OutboundOptions {
            listen_extra: vec![host(1, farm.port)],
            ..OutboundOptions::default()
        },
    )
    .await?;
    let reply = out
        .submit("a@origin.test", &["u@loop.test"], "Subject: self\n\nhi\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "the bounce", || farm.get(5).accepted().len() == 1).await?;
    let bounce = &farm.get(5).accepted()[0];
    assert_eq!(bounce.mail_from, "<>");
    let dsn = parse_dsn(&bounce.data)?;
    assert_eq!(dsn.recipients[0]["status"], "5.4.6");
    assert!(
        dsn.recipients[0]["diagnostic-code"].contains("loops back to myself"),
        "{:?}",
        dsn.recipients[0]
    );
    let log = out.log();
    assert!(log.contains("domain=loop.test mx=- ip=- "), "{log}");
    assert!(
        !log.contains("ip=127.0.0.1 "),
        "relay-out connected to itself:\n{log}"
    );
    Ok(())
}

/// The home server (relay_acl_allow) gets the whole greeting at once; any
/// other client gets the pregreet test's `220-` line first (issue 14's
/// postscreen-style greeting), as Haraka's early_talker skips relaying
/// clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_server_is_greeted_without_the_pregreet_wait() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let mut home = SmtpClient::connect(out.addr).await?;
    let first = home.read_line(WAIT).await?.unwrap_or_default();
    assert!(first.starts_with("220 "), "one-line greeting: {first:?}");

    let mut stranger = SmtpClient::connect_from(IpAddr::from(ip(2)), out.addr).await?;
    let first = stranger.read_line(WAIT).await?.unwrap_or_default();
    assert!(first.starts_with("220-"), "pregreet line: {first:?}");
    Ok(())
}

/// The home server's Postfix opens many sessions at once, all from one
/// address: as Postfix exempts `$mynetworks` from its per-client limits,
/// relay-out does not hold a `relay_acl_allow` client to the per-address
/// cap (50 by default). Postfix's own `smtp-source` with 80 sessions at
/// once, shipped limits: every message is accepted and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_server_is_not_held_to_the_per_address_cap() -> anyhow::Result<()> {
    const MESSAGES: usize = 400;
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let addr = out.addr;
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("smtp-source")
            .args(["-s", "80", "-m", &MESSAGES.to_string(), "-l", "2000"])
            .args(["-f", "a@origin.test", "-t", "u@dest.test"])
            .arg(addr.to_string())
            .output()
    })
    .await??;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "smtp-source: {} {said}\n{}",
        output.status,
        out.log()
    );
    let mx = farm.get(2);
    wait_until(Duration::from_secs(60), "every message at the MX", || {
        mx.accepted().len() >= MESSAGES
    })
    .await?;
    assert_eq!(mx.accepted().len(), MESSAGES);
    assert!(!out.log().contains("connection refused"), "{}", out.log());
    Ok(())
}
