//! DSN (RFC 3461) through relay-out: the parameters reach an MX that offers
//! DSN unchanged; for one that does not, relay-out writes the notices
//! itself: `relayed` for NOTIFY=SUCCESS, `delivered` over LMTP, no bounce
//! for NOTIFY=NEVER, headers only for RET=HDRS and the message for RET=FULL,
//! with ENVID and ORCPT in the report.

use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, host, ip, parse_dsn, wait_until};
use postern_tests::smtp::{ClientReply, SmtpClient};

const WAIT: Duration = Duration::from_secs(15);

/// origin.test's MX (127.0.0.5) receives the notices; dest.test's is 127.0.0.2.
fn zone() -> TestZone {
    TestZone::new()
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(5))
        .mx("dest.test", 10, "mx1.dest.test")
        .a("mx1.dest.test", ip(2))
}

/// One transaction with the exact MAIL and RCPT lines given.
pub async fn submit_lines(
    out: &Outbound,
    mail: &str,
    rcpts: &[&str],
    message: &str,
) -> anyhow::Result<ClientReply> {
    let mut client = SmtpClient::connect(out.addr).await?;
    client.read_reply().await?;
    let ehlo = client.expect("EHLO client.test", 250).await?;
    assert!(
        ehlo.lines.iter().any(|l| &l[4..] == "DSN"),
        "{:?}",
        ehlo.lines
    );
    client.expect(mail, 250).await?;
    for rcpt in rcpts {
        client.expect(rcpt, 250).await?;
    }
    client.expect("DATA", 354).await?;
    let body = message.replace('\n', "\r\n");
    client.send(body.as_bytes()).await?;
    let reply = client.command(".").await?;
    let _ = client.command("QUIT").await;
    Ok(reply)
}

const MESSAGE: &str = "Message-ID: <d1@origin.test>\nSubject: dsn test\n\nTHE BODY LINE\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mx_offering_dsn_receives_the_parameters_unchanged() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(
        2,
        Behaviour {
            dsn: true,
            ..Behaviour::default()
        },
    )
    .await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let reply = submit_lines(
        &out,
        "MAIL FROM:<a@origin.test> RET=HDRS ENVID=QQ+2B314159",
        &["RCPT TO:<u@dest.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;U+2Bx@dest.test"],
        MESSAGE,
    )
    .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "delivery", || farm.get(2).accepted().len() == 1).await?;
    let mx = farm.get(2);
    assert_eq!(
        mx.lines_starting("MAIL FROM"),
        ["MAIL FROM:<a@origin.test> RET=HDRS ENVID=QQ+2B314159"]
    );
    assert_eq!(
        mx.lines_starting("RCPT TO"),
        ["RCPT TO:<u@dest.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;U+2Bx@dest.test"]
    );
    // The MX reports success itself: relay-out sends no notice of its own.
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    out.wait_for_log("message done, removed from the queue", WAIT)
        .await?;
    assert!(farm.get(5).accepted().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dsn_at_the_mx_notify_success_gets_a_relayed_notice() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(2, Behaviour::default()).await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    submit_lines(
        &out,
        "MAIL FROM:<a@origin.test> ENVID=QQ314159",
        &[
            "RCPT TO:<u@dest.test> NOTIFY=SUCCESS ORCPT=rfc822;U@dest.test",
            "RCPT TO:<v@dest.test>",
        ],
        MESSAGE,
    )
    .await?;
    wait_until(WAIT, "the relayed notice", || {
        farm.get(5).accepted().len() == 1
    })
    .await?;
    // The MX without DSN got plain commands (it would answer 555 otherwise).
    let mx = farm.get(2);
    assert_eq!(mx.accepted().len(), 1);
    assert!(
        mx.lines_starting("RCPT TO")
            .iter()
            .all(|l| !l.contains("NOTIFY") && !l.contains("ORCPT")),
        "{:?}",
        mx.lines_starting("RCPT TO")
    );
    let notice = &farm.get(5).accepted()[0];
    assert_eq!(notice.mail_from, "<>");
    assert_eq!(notice.rcpts, ["a@origin.test"]);
    let dsn = parse_dsn(&notice.data)?;
    assert_eq!(dsn.per_message["original-envelope-id"], "QQ314159");
    assert_eq!(
        dsn.recipients.len(),
        1,
        "only u@ asked: {:?}",
        dsn.recipients
    );
    let fields = &dsn.recipients[0];
    assert_eq!(fields["original-recipient"], "rfc822; U@dest.test");
    assert_eq!(fields["final-recipient"], "rfc822; u@dest.test");
    assert_eq!(fields["action"], "relayed");
    assert_eq!(fields["status"], "2.0.0");
    assert_eq!(fields["remote-mta"], "dns; mx1.dest.test");
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lmtp_route_earns_a_delivered_notice() -> anyhow::Result<()> {
    let farm = MxFarm::start(5, Behaviour::default()).await?;
    let lmtp = RecordingBackend::start_on(
        host(8, 0),
        Behaviour {
            xclient: None,
            lmtp: true,
            ..Behaviour::default()
        },
    )
    .await?;
    let nexthop = format!(
        "[domains]\nlists.test = {{ \"action\": \"accept\", \"nexthop\": \"lmtp://127.0.0.8:{}\" }}\n",
        lmtp.addr.port()
    );
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            files: vec![("relay_dest_domains.ini".into(), nexthop)],
            ..OutboundOptions::default()
        },
    )
    .await?;
    submit_lines(
        &out,
        "MAIL FROM:<a@origin.test>",
        &["RCPT TO:<ok@lists.test> NOTIFY=SUCCESS"],
        MESSAGE,
    )
    .await?;
    wait_until(WAIT, "the delivered notice", || {
        farm.get(5).accepted().len() == 1
    })
    .await?;
    assert_eq!(lmtp.accepted().len(), 1);
    let dsn = parse_dsn(&farm.get(5).accepted()[0].data)?;
    assert_eq!(dsn.recipients[0]["action"], "delivered");
    assert_eq!(
        dsn.recipients[0]["final-recipient"],
        "rfc822; ok@lists.test"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_with_notify_never_is_not_bounced() -> anyhow::Result<()> {
    let refusal = "550 5.1.1 No such user";
    let mut farm = MxFarm::start(
        2,
        Behaviour {
            rcpt_replies: vec![
                ("never@dest.test".into(), refusal.into()),
                ("plain@dest.test".into(), refusal.into()),
            ],
            ..Behaviour::default()
        },
    )
    .await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    submit_lines(
        &out,
        "MAIL FROM:<a@origin.test>",
        &[
            "RCPT TO:<never@dest.test> NOTIFY=NEVER",
            "RCPT TO:<plain@dest.test>",
        ],
        MESSAGE,
    )
    .await?;
    // The recipient without NOTIFY is bounced: that notice is the proof
    // the failures were settled, and it must not name the NEVER one.
    wait_until(WAIT, "the bounce", || farm.get(5).accepted().len() == 1).await?;
    let dsn = parse_dsn(&farm.get(5).accepted()[0].data)?;
    assert_eq!(dsn.recipients.len(), 1, "{:?}", dsn.recipients);
    assert_eq!(
        dsn.recipients[0]["final-recipient"],
        "rfc822; plain@dest.test"
    );
    out.wait_for_log("no bounce: the sender asked not to be notified", WAIT)
        .await?;
    assert!(out.log().contains("rcpt=never@dest.test"));

    // NOTIFY=NEVER alone: no notice at all, the message just leaves the queue.
    submit_lines(
        &out,
        "MAIL FROM:<a@origin.test>",
        &["RCPT TO:<never@dest.test> NOTIFY=NEVER"],
        MESSAGE,
    )
    .await?;
    wait_until(WAIT, "the second NOTIFY=NEVER failure", || {
        out.log().matches("no bounce: the sender asked").count() == 2
    })
    .await?;
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    assert_eq!(farm.get(5).accepted().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ret_hdrs_returns_the_headers_only_and_ret_full_the_message() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(
        2,
        Behaviour {
            rcpt_replies: vec![("gone@dest.test".into(), "550 5.1.1 No such user".into())],
            ..Behaviour::default()
        },
    )
    .await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    // (RET, the part returned, whether the body comes back)
    let cases = [
        ("HDRS", "text/rfc822-headers", false),
        ("FULL", "message/rfc822", true),
    ];
    for (count, (ret, part, body)) in cases.into_iter().enumerate() {
        submit_lines(
            &out,
            &format!("MAIL FROM:<a@origin.test> RET={ret}"),
            &["RCPT TO:<gone@dest.test>"],
            MESSAGE,
        )
        .await?;
        wait_until(WAIT, &format!("the RET={ret} bounce"), || {
            farm.get(5).accepted().len() == count + 1
        })
        .await?;
        let dsn = parse_dsn(&farm.get(5).accepted()[count].data)?;
        assert!(dsn.text.contains(&format!("Content-Type: {part}")), "{ret}");
        assert!(dsn.text.contains("\r\nSubject: dsn test\r\n"), "{ret}");
        assert_eq!(
            dsn.text.contains("\r\nTHE BODY LINE\r\n"),
            body,
            "RET={ret}: {}",
            dsn.text
        );
    }
    Ok(())
}

/// outbound.delay_message: Haraka's bounce template form and variables.
const DELAY_TEMPLATE: &str =
    "Subject: Still trying: {subject}\n\nHello from {me}.\n{extended_reason}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_warnings_come_once_per_interval_and_never_for_notify_never() -> anyhow::Result<()> {
    let busy = "451 4.2.0 Mailbox busy, try later";
    let mut farm = MxFarm::start(
        2,
        Behaviour {
            rcpt_replies: vec![
                ("slow@dest.test".into(), busy.into()),
                ("quiet@dest.test".into(), busy.into()),
            ],
            ..Behaviour::default()
        },
    )
    .await?;
    farm.add(5, Behaviour::default()).await?;
    // The queue file keeps times in whole seconds (spool::timestamp), so a
    // warning may come up to a second before the interval is over.
    let interval = Duration::from_secs(3);
    let precision = Duration::from_secs(1);
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            outbound: "temp_fail_intervals=1s*60\ndelay_warning_time=3s\n".into(),
            files: vec![("outbound.delay_message".into(), DELAY_TEMPLATE.into())],
            ..OutboundOptions::default()
        },
    )
    .await?;
    let started = std::time::Instant::now();
    submit_lines(
        &out,
        "MAIL FROM:<a@origin.test>",
        &["RCPT TO:<slow@dest.test>"],
        "Subject: slow one\n\nhi\n",
    )
    .await?;
    submit_lines(
        &out,
        "MAIL FROM:<b@origin.test>",
        &["RCPT TO:<quiet@dest.test> NOTIFY=NEVER"],
        "Subject: quiet one\n\nhi\n",
    )
    .await?;
    let warnings = || farm.get(5).accepted();
    wait_until(WAIT, "the first delay warning", || warnings().len() == 1).await?;
    let first = std::time::Instant::now();
    wait_until(WAIT, "the second delay warning", || warnings().len() == 2).await?;
    let second = std::time::Instant::now();
    // One per interval, although the MX was tried about every second.
    assert!(
        first - started >= interval - precision,
        "{:?}",
        first - started
    );
    assert!(
        second - first >= interval - precision,
        "{:?}",
        second - first
    );
    let slow_attempts = farm.get(2).lines_starting("RCPT TO:<SLOW@").len();
    assert!(slow_attempts >= 3, "{slow_attempts} attempts");

    for warning in warnings() {
        assert_eq!(
            warning.rcpts,
            ["a@origin.test"],
            "none for b@ (NOTIFY=NEVER)"
        );
        let dsn = parse_dsn(&warning.data)?;
        assert_eq!(dsn.headers["subject"], "Still trying: slow one");
        assert_eq!(dsn.recipients.len(), 1);
        let fields = &dsn.recipients[0];
        assert_eq!(fields["action"], "delayed");
        assert_eq!(fields["status"], "4.2.0");
        assert_eq!(fields["final-recipient"], "rfc822; slow@dest.test");
        assert_eq!(fields["diagnostic-code"], format!("smtp; {busy}"));
        assert!(fields.contains_key("will-retry-until"));
        assert!(
            dsn.text.contains(&format!(
                "slow@dest.test: host mx1.dest.test said: {busy} (next attempt: "
            )),
            "{}",
            dsn.text
        );
    }
    // The NOTIFY=NEVER message waited as long, retried as often: no warning.
    let quiet_attempts = farm.get(2).lines_starting("RCPT TO:<QUIET@").len();
    assert!(quiet_attempts >= 3, "{quiet_attempts} attempts");
    assert!(out.log().matches("delay warning queued").count() == 2);
    Ok(())
}
