//! relay-out delivering to recording MX servers found through a test DNS:
//! MX order and fallback, implicit MX, null MX and NXDOMAIN bounces, SERVFAIL
//! deferral, retries after 4xx, 5xx bounces checked field by field, partial
//! recipients, queue lifetime, and double bounces.

use std::time::Duration;

use anyhow::Context;

use postern_tests::backend::{AfterData, Behaviour};
use postern_tests::dns::TestZone;
use postern_tests::outbound::{
    ME, MxFarm, Outbound, OutboundOptions, ip, parse_dsn, queue_id, wait_until,
};
use postern_tests::smtp::SmtpClient;

const WAIT: Duration = Duration::from_secs(15);

/// origin.test is the senders' domain; its MX (127.0.0.5) receives bounces.
fn zone() -> TestZone {
    TestZone::new()
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(5))
        .mx("dest.test", 10, "mx1.dest.test")
        .mx("dest.test", 20, "mx2.dest.test")
        .a("mx1.dest.test", ip(2))
        .a("mx2.dest.test", ip(3))
}

fn refusing(rcpt: &str, reply: &str) -> Behaviour {
    Behaviour {
        rcpt_replies: vec![(rcpt.to_string(), reply.to_string())],
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preferred_mx_first_then_the_next_when_it_is_down() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(2, Behaviour::default()).await?;
    farm.add(3, Behaviour::default()).await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;

    let reply = out
        .submit("a@origin.test", &["u@dest.test"], "Subject: one\n\nhi\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "delivery to mx1", || {
        farm.get(2).accepted().len() == 1
    })
    .await?;
    let accepted = &farm.get(2).accepted()[0];
    assert_eq!(accepted.mail_from, "<a@origin.test>");
    assert_eq!(accepted.rcpts, ["u@dest.test"]);
    assert_eq!(accepted.ehlos, [format!("EHLO {ME}")]);
    let data = String::from_utf8_lossy(&accepted.data);
    // outbound.ini received_header's line first (Haraka's outbound adds
    // it too), then the Received: of relay-out's intake.
    let (outbound_received, rest) = data.split_once("\r\n").unwrap_or_default();
    assert!(
        outbound_received.starts_with("Received: (Postern outbound); "),
        "{data}"
    );
    assert!(
        rest.starts_with("Received: from backend.test ([127.0.0.1])"),
        "{data}"
    );
    assert!(data.ends_with("Subject: one\r\n\r\nhi\r\n"), "{data}");
    assert!(farm.get(3).accepted().is_empty());

    // Gone with its sessions: the one relay-out kept is closed too.
    farm.get_mut(2).crash();
    let reply = out
        .submit("a@origin.test", &["u@dest.test"], "Subject: two\n\nhi\n")
        .await?;
    let id = queue_id(&reply)?;
    wait_until(WAIT, "delivery to mx2", || {
        farm.get(3).accepted().len() == 1
    })
    .await?;
    out.wait_for_log(
        &format!("message done, removed from the queue queue_id={id}"),
        WAIT,
    )
    .await?;
    let log = out.log();
    let attempts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("delivery attempt") && l.contains(&id))
        .collect();
    assert_eq!(attempts.len(), 2, "{log}");
    assert!(
        attempts[0].contains("domain=dest.test mx=mx1.dest.test ip=127.0.0.2")
            && attempts[0].contains("result=host-failed"),
        "{}",
        attempts[0]
    );
    assert!(
        attempts[1].contains("mx=mx2.dest.test ip=127.0.0.3")
            && attempts[1].contains(&format!("port={}", farm.port))
            && attempts[1].contains("tls=false")
            && attempts[1].contains("result=delivered")
            && attempts[1].contains("reply=\"250 2.0.0 Ok: queued as BACKEND1\""),
        "{}",
        attempts[1]
    );
    assert!(
        out.queued_ids().is_empty(),
        "delivered mail leaves the queue"
    );
    Ok(())
}

/// outbound.ini `received_header` names the outbound `Received:` line;
/// `disabled` leaves it out (Haraka's outbound does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_header_sets_or_disables_the_outbound_received_line() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(2, Behaviour::default()).await?;
    farm.add(3, Behaviour::default()).await?;
    for (setting, mx, first_line) in [
        (
            "received_header=Example relay\n",
            2,
            "Received: (Example relay); ",
        ),
        (
            "received_header=disabled\n",
            3,
            "Received: from backend.test ([127.0.0.1])",
        ),
    ] {
        let zone = TestZone::new()
            .mx("dest.test", 10, "mx.dest.test")
            .a("mx.dest.test", ip(mx));
        let options = OutboundOptions {
            outbound: format!("{}{setting}", OutboundOptions::default().outbound),
            ..OutboundOptions::default()
        };
        let out = Outbound::start(zone, farm.port, options).await?;
        let reply = out
            .submit("a@origin.test", &["u@dest.test"], "Subject: r\n\nhi\n")
            .await?;
        assert_eq!(reply.code, 250, "{reply:?}");
        wait_until(WAIT, "delivery", || farm.get(mx).accepted().len() == 1).await?;
        let data = String::from_utf8_lossy(&farm.get(mx).accepted()[0].data).to_string();
        assert!(data.starts_with(first_line), "{setting}: {data}");
        assert_eq!(
            data.matches("Received:").count(),
            if mx == 2 { 2 } else { 1 },
            "{data}"
        );
    }
    Ok(())
}

/// `BODY=8BITMIME` is kept in the queue and given to an MX that offers
/// 8BITMIME (the recording MX does), with the 8-bit data unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_8bitmime_travels_on_to_the_mx() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let mut client = SmtpClient::connect(out.addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO backend.test", 250).await?;
    client
        .expect("MAIL FROM:<a@origin.test> BODY=8BITMIME", 250)
        .await?;
    client.expect("RCPT TO:<u@dest.test>", 250).await?;
    client.expect("DATA", 354).await?;
    client
        .send("Subject: 8\r\n\r\nd\u{e9}j\u{e0} vu\r\n".as_bytes())
        .await?;
    let reply = client.command(".").await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "delivery to mx1", || {
        farm.get(2).accepted().len() == 1
    })
    .await?;
    let accepted = &farm.get(2).accepted()[0];
    assert_eq!(accepted.mail_from, "<a@origin.test> BODY=8BITMIME");
    assert!(String::from_utf8_lossy(&accepted.data).ends_with("d\u{e9}j\u{e0} vu\r\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_without_mx_is_delivered_to_its_address() -> anyhow::Result<()> {
    let farm = MxFarm::start(4, Behaviour::default()).await?;
    let zone = zone().a("plain.test", ip(4));
    let out = Outbound::start(zone, farm.port, OutboundOptions::default()).await?;
    let reply = out
        .submit(
            "a@origin.test",
            &["u@plain.test"],
            "Subject: implicit\n\nhi\n",
        )
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "implicit MX delivery", || {
        farm.get(4).accepted().len() == 1
    })
    .await?;
    out.wait_for_log("domain=plain.test mx=plain.test ip=127.0.0.4", WAIT)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_and_nxdomain_bounce_at_once_and_servfail_waits() -> anyhow::Result<()> {
    let farm = MxFarm::start(5, Behaviour::default()).await?;
    let zone = zone().null_mx("nomail.test").servfail("broken.test");
    let out = Outbound::start(zone, farm.port, OutboundOptions::default()).await?;
    let reply = out
        .submit(
            "a@origin.test",
            &["x@nomail.test", "y@nowhere.test", "z@broken.test"],
            "Subject: nowhere\n\nhi\n",
        )
        .await?;
    let id = queue_id(&reply)?;
    wait_until(WAIT, "the bounce", || farm.get(5).accepted().len() == 1).await?;
    let dsn = parse_dsn(&farm.get(5).accepted()[0].data)?;
    assert_eq!(dsn.recipients.len(), 2, "{}", dsn.text);
    let null_mx = &dsn.recipients[0];
    assert_eq!(null_mx["final-recipient"], "rfc822; x@nomail.test");
    assert_eq!(null_mx["status"], "5.1.10");
    assert!(
        null_mx["diagnostic-code"]
            .starts_with("X-Postern; Domain nomail.test sends and receives no email (null MX")
    );
    assert!(!null_mx.contains_key("remote-mta"), "no server answered");
    let nx = &dsn.recipients[1];
    assert_eq!(nx["final-recipient"], "rfc822; y@nowhere.test");
    assert_eq!(nx["status"], "5.1.2");
    assert_eq!(
        nx["diagnostic-code"],
        "X-Postern; Domain nowhere.test does not exist (NXDOMAIN)"
    );

    // SERVFAIL is temporary: z stays queued, waiting for its retry.
    wait_until(WAIT, "x marked bounced", || {
        out.queue(&["list"])
            .is_ok_and(|(_, listing)| listing.contains("x@nomail.test (bounced"))
    })
    .await?;
    let (code, listing) = out.queue(&["list"])?;
    assert_eq!(code, 0, "{listing}");
    assert!(listing.contains(&id), "{listing}");
    assert!(
        listing.contains("z@broken.test (pending, 1 attempt(s), next "),
        "{listing}"
    );
    assert!(
        listing.contains("DNS lookup failure (MX) for broken.test"),
        "{listing}"
    );
    assert!(
        listing.contains("x@nomail.test (bounced, 1 attempt(s))"),
        "{listing}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_is_retried_on_schedule_then_delivered() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, refusing("u@dest.test", "450 4.2.0 Mailbox busy")).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let reply = out
        .submit("a@origin.test", &["u@dest.test"], "Subject: later\n\nhi\n")
        .await?;
    let id = queue_id(&reply)?;
    out.wait_for_log("result=deferred reply=\"450 4.2.0 Mailbox busy\"", WAIT)
        .await?;
    let deferred_at = std::time::Instant::now();
    farm.get(2).set(Behaviour::default());
    wait_until(WAIT, "the retry", || farm.get(2).accepted().len() == 1).await?;
    let waited = deferred_at.elapsed();
    // temp_fail_intervals=5s with ±10% jitter.
    assert!(
        waited >= Duration::from_millis(4000),
        "retried after {waited:?}"
    );
    let accepted = &farm.get(2).accepted()[0];
    assert_eq!(accepted.rcpts, ["u@dest.test"]);
    out.wait_for_log(
        &format!("message done, removed from the queue queue_id={id}"),
        WAIT,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_bounces_with_every_dsn_field() -> anyhow::Result<()> {
    let refusal = "550 5.1.1 <u@dest.test>: Recipient address rejected: User unknown in virtual mailbox table";
    let mut farm = MxFarm::start(2, refusing("u@dest.test", refusal)).await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let reply = out
        .submit(
            "a@origin.test",
            &["u@dest.test"],
            "Message-ID: <m1@origin.test>\nSubject: gone\n\nhi\n",
        )
        .await?;
    assert_eq!(reply.code, 250);
    wait_until(WAIT, "the bounce", || farm.get(5).accepted().len() == 1).await?;
    let bounce = &farm.get(5).accepted()[0];
    assert_eq!(bounce.mail_from, "<>");
    assert_eq!(bounce.rcpts, ["a@origin.test"]);
    let dsn = parse_dsn(&bounce.data)?;
    assert_eq!(dsn.headers["from"], format!("MAILER-DAEMON@{ME}"));
    assert_eq!(dsn.headers["to"], "<a@origin.test>");
    assert_eq!(dsn.headers["auto-submitted"], "auto-replied");
    assert_eq!(dsn.headers["in-reply-to"], "<m1@origin.test>");
    assert_eq!(dsn.per_message["reporting-mta"], format!("dns; {ME}"));
    assert!(dsn.per_message.contains_key("arrival-date"));
    assert_eq!(dsn.recipients.len(), 1);
    let fields = &dsn.recipients[0];
    assert_eq!(fields["final-recipient"], "rfc822; u@dest.test");
    assert_eq!(fields["action"], "failed");
    assert_eq!(fields["status"], "5.1.1");
    assert_eq!(fields["remote-mta"], "dns; mx1.dest.test");
    assert_eq!(fields["diagnostic-code"], format!("smtp; {refusal}"));
    assert!(fields.contains_key("last-attempt-date"));
    // The human part quotes the server, and the original headers come back.
    assert!(
        dsn.text
            .contains(&format!("host mx1.dest.test said: {refusal}")),
        "{}",
        dsn.text
    );
    assert!(dsn.text.contains("Content-Type: text/rfc822-headers"));
    assert!(dsn.text.contains("\r\nSubject: gone\r\n"), "{}", dsn.text);
    assert!(
        !dsn.text.contains("\r\nhi\r\n"),
        "only the headers are returned"
    );
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounce_template_is_haraka_s_outbound_bounce_message() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(2, refusing("u@dest.test", "550 5.1.1 No such user")).await?;
    farm.add(5, Behaviour::default()).await?;
    let template =
        "Subject: failure notice\n\nHi. This is {me}. Mail for {recipients} failed: {reason}\n";
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            files: vec![("outbound.bounce_message".into(), template.into())],
            ..OutboundOptions::default()
        },
    )
    .await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: t\n\nhi\n")
        .await?;
    wait_until(WAIT, "the bounce", || farm.get(5).accepted().len() == 1).await?;
    let dsn = parse_dsn(&farm.get(5).accepted()[0].data)?;
    assert_eq!(dsn.headers["subject"], "failure notice");
    assert!(
        dsn.text.contains(&format!(
            "Hi. This is {ME}. Mail for u@dest.test failed: host mx1.dest.test said: 550 5.1.1 No such user"
        )),
        "{}",
        dsn.text
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_delivery_keeps_only_the_pending_recipient() -> anyhow::Result<()> {
    let behaviour = Behaviour {
        rcpt_replies: vec![
            ("b@dest.test".into(), "550 5.1.1 No such user b".into()),
            ("c@dest.test".into(), "450 4.2.1 Try c later".into()),
        ],
        ..Behaviour::default()
    };
    let mut farm = MxFarm::start(2, behaviour).await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let reply = out
        .submit(
            "a@origin.test",
            &["a@dest.test", "b@dest.test", "c@dest.test"],
            "Subject: some\n\nhi\n",
        )
        .await?;
    let id = queue_id(&reply)?;
    wait_until(WAIT, "first delivery and the bounce", || {
        farm.get(2).accepted().len() == 1 && farm.get(5).accepted().len() == 1
    })
    .await?;
    assert_eq!(farm.get(2).accepted()[0].rcpts, ["a@dest.test"]);
    let dsn = parse_dsn(&farm.get(5).accepted()[0].data)?;
    assert_eq!(dsn.recipients.len(), 1, "only b bounces");
    assert_eq!(dsn.recipients[0]["final-recipient"], "rfc822; b@dest.test");
    assert_eq!(
        dsn.recipients[0]["diagnostic-code"],
        "smtp; 550 5.1.1 No such user b"
    );

    wait_until(WAIT, "b marked bounced", || {
        out.queue(&["show", &id])
            .is_ok_and(|(_, shown)| shown.contains("  b@dest.test: bounced"))
    })
    .await?;
    let (_, shown) = out.queue(&["show", &id])?;
    assert!(shown.contains("  a@dest.test: delivered"), "{shown}");
    assert!(shown.contains("  b@dest.test: bounced"), "{shown}");
    assert!(
        shown.contains("  c@dest.test: pending, 1 attempt(s)"),
        "{shown}"
    );

    farm.get(2).set(Behaviour::default());
    wait_until(WAIT, "the retry of c", || farm.get(2).accepted().len() == 2).await?;
    assert_eq!(
        farm.get(2).accepted()[1].rcpts,
        ["c@dest.test"],
        "a is not sent again"
    );
    let rcpt_lines = farm.get(2).lines_starting("RCPT TO:<A@");
    assert_eq!(rcpt_lines.len(), 1, "{rcpt_lines:?}");
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    assert_eq!(farm.get(5).accepted().len(), 1, "no second bounce");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_older_than_the_queue_lifetime_bounces() -> anyhow::Result<()> {
    let busy = Behaviour {
        after_data: AfterData::Reply("451 4.3.2 System busy".into()),
        ..Behaviour::default()
    };
    let mut farm = MxFarm::start(2, busy).await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            outbound: "temp_fail_intervals=1h\nmax_queue_lifetime=3\n".into(),
            ..OutboundOptions::default()
        },
    )
    .await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: slow\n\nhi\n")
        .await?;
    // One attempt at once, the last one when the 3 s lifetime ends.
    wait_until(WAIT, "the bounce", || farm.get(5).accepted().len() == 1).await?;
    let dsn = parse_dsn(&farm.get(5).accepted()[0].data)?;
    let fields = &dsn.recipients[0];
    assert_eq!(
        fields["status"], "5.3.2",
        "4.x.x becomes 5.x.x when giving up"
    );
    assert_eq!(fields["diagnostic-code"], "smtp; 451 4.3.2 System busy");
    assert_eq!(farm.get(2).record().connections, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_that_cannot_be_delivered_is_dropped_as_a_double_bounce() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(2, refusing("u@dest.test", "550 5.1.1 No such user")).await?;
    farm.add(5, refusing("a@origin.test", "550 5.1.1 Sender gone too"))
        .await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: x\n\nhi\n")
        .await?;
    out.wait_for_log("double bounce", WAIT).await?;
    let log = out.log();
    let line = log
        .lines()
        .find(|l| l.contains("double bounce"))
        .unwrap_or_default();
    assert!(line.contains("rcpt=a@origin.test"), "{line}");
    assert!(line.contains("550 5.1.1 Sender gone too"), "{line}");
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    assert!(farm.all_accepted().is_empty());

    // A message from <> itself is never bounced either.
    out.submit("", &["u@dest.test"], "Subject: y\n\nhi\n")
        .await?;
    wait_until(WAIT, "the second double bounce", || {
        out.log().matches("double bounce").count() == 2
    })
    .await?;
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    assert!(farm.all_accepted().is_empty());
    Ok(())
}

/// Only as many deliveries start as there are slots, and per destination
/// only a share of them: a backlog for a slow domain must not take every
/// slot, so mail for another domain queued after it goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_domain_s_backlog_does_not_hold_back_another_domain() -> anyhow::Result<()> {
    let slow = Behaviour {
        data_delay: Duration::from_secs(60),
        ..Behaviour::default()
    };
    let mut farm = MxFarm::start(2, slow).await?;
    farm.add(3, Behaviour::default()).await?;
    let zone = zone()
        .mx("slow.test", 10, "mx.slow.test")
        .a("mx.slow.test", ip(2))
        .mx("fast.test", 10, "mx.fast.test")
        .a("mx.fast.test", ip(3));
    // Two sessions, one per domain: at most four delivery tasks, two per
    // domain, so six slow messages would fill every slot if they could.
    let options = OutboundOptions {
        outbound: "temp_fail_intervals=5s*5\nconcurrency_max=2\ndomain_concurrency_max=1\n".into(),
        ..OutboundOptions::default()
    };
    let out = Outbound::start(zone, farm.port, options).await?;
    for n in 0..6 {
        let reply = out
            .submit(
                "a@origin.test",
                &["u@slow.test"],
                &format!("Subject: slow {n}\n\nhi\n"),
            )
            .await?;
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    wait_until(WAIT, "the slow MX to be in its data", || {
        farm.get(2).record().in_flight == 1
    })
    .await?;
    let reply = out
        .submit("a@origin.test", &["u@fast.test"], "Subject: fast\n\nhi\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    wait_until(WAIT, "the fast domain's delivery", || {
        farm.get(3).accepted().len() == 1
    })
    .await
    .with_context(|| out.log())?;
    assert!(
        farm.get(2).accepted().is_empty(),
        "the slow MX has not answered any data yet"
    );
    assert_eq!(farm.get(2).record().max_in_flight, 1);
    Ok(())
}
