//! relay.ini `dest_domains=true` (Haraka's relay plugin): a client outside
//! relay_acl_allow may send to the domains relay_dest_domains.ini accepts,
//! and the mail goes where Haraka would send it: the entry's `nexthop`
//! (force_routing, on by default), else the domain's MX. Denied and unlisted
//! domains get Haraka's `550 You are not allowed to relay`, an unknown
//! action its `550 Mail for that recipient is not accepted here.`
//!
//! Clients connect from 127.0.0.1, which this relay-out's ACL does not list.

use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, host, ip, wait_until};
use postern_tests::postfix::swaks;
use postern_tests::smtp::SmtpClient;

const WAIT: Duration = Duration::from_secs(15);

/// Every destination has an MX on 127.0.0.2, which only mx-routed.test's
/// mail may reach.
fn zone() -> TestZone {
    let mut zone = TestZone::new().a("mx.test", ip(2));
    for domain in [
        "nexthop.test",
        "mx-routed.test",
        "deny.test",
        "odd.test",
        "elsewhere.test",
    ] {
        zone = zone.mx(domain, 10, "mx.test");
    }
    zone
}

/// relay-out relaying only for 10.0.0.2, with `dest_domains` on:
/// nexthop.test goes to `next_hop`, mx-routed.test to its MX.
async fn relay_out(farm_port: u16, next_hop: &RecordingBackend) -> anyhow::Result<Outbound> {
    let domains = format!(
        "; who else may send where\n[domains]\n\
         nexthop.test = {{\"action\":\"accept\",\"nexthop\":\"127.0.0.7:{}\"}}\n\
         mx-routed.test = {{\"action\":\"continue\"}}\n\
         deny.test = {{\"action\":\"deny\",\"nexthop\":\"127.0.0.7:{}\"}}\n\
         odd.test = {{\"action\":\"reject\"}}\n",
        next_hop.addr.port(),
        next_hop.addr.port()
    );
    Outbound::start(
        zone(),
        farm_port,
        OutboundOptions {
            acl: vec!["10.0.0.2/32".into()],
            files: vec![
                ("relay.ini".into(), "[relay]\ndest_domains=true\n".into()),
                ("relay_dest_domains.ini".into(), domains),
            ],
            ..OutboundOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_sends_to_an_accepted_domain_which_goes_to_its_nexthop() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let next_hop = RecordingBackend::start_on(host(7, 0), Behaviour::default()).await?;
    let out = relay_out(farm.port, &next_hop).await?;
    let port = out.addr.port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        swaks([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "someone@origin.test",
            "--to",
            "u@NextHop.test",
            "--helo",
            "client.test",
            "--header",
            "Subject: to an accepted domain",
            "--body",
            "hi",
            "--timeout",
            "10",
        ])
    })
    .await??;
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "swaks failed:\n{transcript}\n{}",
        out.log()
    );
    assert!(transcript.contains("250 2.0.0 Queued as "), "{transcript}");

    wait_until(WAIT, "delivery to the nexthop", || {
        next_hop.accepted().len() == 1
    })
    .await?;
    assert_eq!(next_hop.accepted()[0].rcpts, ["u@NextHop.test"]);
    assert!(farm.all_accepted().is_empty(), "the MX was bypassed");
    out.wait_for_log(
        "recipient accepted: its domain is accepted in relay_dest_domains.ini",
        WAIT,
    )
    .await?;
    Ok(())
}

/// One transaction: each recipient is judged on its own domain, and an
/// accepted one does not open relaying for the next (Haraka's would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recipient_is_judged_by_its_domain() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let next_hop = RecordingBackend::start_on(host(7, 0), Behaviour::default()).await?;
    let out = relay_out(farm.port, &next_hop).await?;

    let mut client = SmtpClient::connect(out.addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO client.test", 250).await?;
    client
        .expect("MAIL FROM:<someone@origin.test>", 250)
        .await?;
    for (rcpt, reply) in [
        ("u@mx-routed.test", "250 "),
        ("u@elsewhere.test", "550 5.7.1 You are not allowed to relay"),
        ("u@deny.test", "550 5.7.1 You are not allowed to relay"),
        (
            "u@odd.test",
            "550 5.7.1 Mail for that recipient is not accepted here.",
        ),
        ("u@nexthop.test", "250 "),
    ] {
        let got = client.command(&format!("RCPT TO:<{rcpt}>")).await?;
        assert!(got.text().starts_with(reply), "{rcpt}: {got:?}");
    }
    client.expect("DATA", 354).await?;
    let done = client
        .command("Subject: two accepted\r\n\r\nhi\r\n.")
        .await?;
    assert_eq!(done.code, 250, "{done:?}");
    let _ = client.command("QUIT").await;

    wait_until(WAIT, "delivery to the MX and the nexthop", || {
        farm.get(2).accepted().len() == 1 && next_hop.accepted().len() == 1
    })
    .await?;
    assert_eq!(farm.get(2).accepted()[0].rcpts, ["u@mx-routed.test"]);
    assert_eq!(next_hop.accepted()[0].rcpts, ["u@nexthop.test"]);
    Ok(())
}
