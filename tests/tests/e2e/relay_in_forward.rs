//! relay-in forwarding to a recording backend: the exact XCLIENT dialogue,
//! XCLIENT policies, queue and live modes, recipient tricks, and fault
//! injection counted on both sides.

use std::collections::HashSet;
use std::time::Duration;

use postern_tests::backend::{AfterData, BackendAuth, Behaviour, RecordingBackend};
use postern_tests::relay_in::{ForwardingRelay, greeted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_carries_the_client_ipv4_and_ipv6_then_ehlo_with_its_helo() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "")?;
    let port = s.v4.port();

    let mut client = greeted(s.v4, "client+tag=x.example").await?;
    let reply = client
        .send_mail(
            "a@origin.example",
            &["user@example.com"],
            "Subject: v4\n\nhello\n",
        )
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());
    let v4_port = client.local_addr().port();

    let mut client6 = greeted(s.v6, "six.example").await?;
    let reply = client6
        .send_mail(
            "a@origin.example",
            &["user@example.com"],
            "Subject: v6\n\nhello\n",
        )
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    let v6_port = client6.local_addr().port();

    let accepted = backend.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(
        accepted[0].xclient.as_deref(),
        Some(format!("XCLIENT PROTO=ESMTP HELO=client+2Btag+3Dx.example REVERSE_NAME=[UNAVAILABLE] PORT={v4_port} DESTADDR=127.0.0.1 DESTPORT={port} NAME=[UNAVAILABLE] ADDR=127.0.0.1").as_str())
    );
    // The startup probe's EHLO told relay-in what the backend offers: the
    // session says XCLIENT first, then EHLO as the client.
    assert_eq!(accepted[0].ehlos, ["EHLO client+tag=x.example"]);
    assert_eq!(
        accepted[1].xclient.as_deref(),
        Some(format!("XCLIENT PROTO=ESMTP HELO=six.example REVERSE_NAME=[UNAVAILABLE] PORT={v6_port} DESTADDR=IPV6:::1 DESTPORT={port} NAME=[UNAVAILABLE] ADDR=IPV6:::1").as_str())
    );
    assert_eq!(accepted[1].ehlos, ["EHLO six.example"]);
    // Our Received: header comes first, then the client's message unchanged.
    let data = String::from_utf8_lossy(&accepted[0].data);
    assert!(data.starts_with("Received: from client+tag=x.example ([127.0.0.1])\r\n\tby mx.test (Postern) with ESMTP id "), "{data}");
    assert!(data.ends_with("Subject: v4\r\n\r\nhello\r\n"), "{data}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_advertised_attributes_are_sent() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour {
        xclient: Some("ADDR HELO".into()),
        ..Behaviour::default()
    })
    .await?;
    let s = ForwardingRelay::start(backend.addr, "")?;
    let mut client = greeted(s.v4, "c.example").await?;
    assert_eq!(
        client
            .send_mail("a@o.example", &["u@example.com"], "x")
            .await?
            .code,
        250
    );
    assert_eq!(
        backend.accepted()[0].xclient.as_deref(),
        Some("XCLIENT HELO=c.example ADDR=127.0.0.1")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_off_sends_none() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "xclient=off")?;
    let mut client = greeted(s.v4, "c.example").await?;
    assert_eq!(
        client
            .send_mail("a@o.example", &["u@example.com"], "x")
            .await?
            .code,
        250
    );
    assert!(backend.lines_starting("XCLIENT").is_empty());
    assert_eq!(backend.accepted()[0].ehlos, ["EHLO mx.test"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_required_refuses_to_forward_without_it() -> anyhow::Result<()> {
    for behaviour in [
        Behaviour {
            xclient: None,
            ..Behaviour::default()
        },
        Behaviour {
            xclient_reply: "550 5.7.0 Error: insufficient authorization".into(),
            ..Behaviour::default()
        },
    ] {
        let backend = RecordingBackend::start(behaviour).await?;
        let s = ForwardingRelay::start(backend.addr, "xclient=required")?;
        let mut client = greeted(s.v4, "c.example").await?;
        let reply = client
            .send_mail("a@o.example", &["u@example.com"], "x")
            .await?;
        assert!(reply.lines[0].starts_with("451 4.7.0"), "{reply:?}");
        assert!(backend.accepted().is_empty());
        assert!(
            backend.lines_starting("MAIL").is_empty(),
            "nothing may be forwarded"
        );
    }
    // optional: forwarded anyway, with a warning in the log.
    let backend = RecordingBackend::start(Behaviour {
        xclient: None,
        ..Behaviour::default()
    })
    .await?;
    let s = ForwardingRelay::start(backend.addr, "xclient=optional")?;
    let mut client = greeted(s.v4, "c.example").await?;
    assert_eq!(
        client
            .send_mail("a@o.example", &["u@example.com"], "x")
            .await?
            .code,
        250
    );
    s.relay.wait_for_log(
        "forwarding without the client's address",
        Duration::from_secs(5),
    )?;
    Ok(())
}

fn refusing_backend() -> Behaviour {
    Behaviour {
        rcpt_replies: vec![
            (
                "unknown@example.com".into(),
                "550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown".into(),
            ),
            (
                "full@example.com".into(),
                "452 4.2.2 <full@example.com>: Mailbox full".into(),
            ),
        ],
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_passes_the_backends_rcpt_verdicts() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(refusing_backend()).await?;
    let s = ForwardingRelay::start(backend.addr, "mode=live")?;
    let mut client = greeted(s.v4, "c.example").await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    let unknown = client.command("RCPT TO:<unknown@example.com>").await?;
    assert_eq!(
        unknown.lines,
        ["550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown"]
    );
    let full = client.command("RCPT TO:<full@example.com>").await?;
    assert_eq!(full.lines, ["452 4.2.2 <full@example.com>: Mailbox full"]);
    client.expect("RCPT TO:<user@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(b"Subject: live\r\n\r\nhi\r\n").await?;
    let reply = client.command(".").await?;
    assert!(
        reply.lines[0].starts_with("250 2.0.0 Ok: queued as BACKEND1 ("),
        "{reply:?}"
    );
    let accepted = backend.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].rcpts, ["user@example.com"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_mode_replies_like_haraka_and_fails_the_message_on_a_refused_recipient()
-> anyhow::Result<()> {
    let backend = RecordingBackend::start(refusing_backend()).await?;
    let s = ForwardingRelay::start(backend.addr, "mode=queue")?;
    let mut client = greeted(s.v4, "c.example").await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    let rcpt = client.command("RCPT TO:<unknown@example.com>").await?;
    assert_eq!(rcpt.lines, ["250 2.1.5 Recipient <unknown@example.com> OK"]);
    client.expect("RCPT TO:<user@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(b"Subject: q\r\n\r\nhi\r\n").await?;
    let reply = client.command(".").await?;
    assert!(
        reply.lines[0].starts_with("550 5.1.1 <unknown@example.com>: "),
        "{reply:?}"
    );
    assert!(
        backend.accepted().is_empty(),
        "no DATA may be sent when a recipient is refused"
    );

    // All accepted: the backend's 250 text comes back with our transaction id.
    let mut client = greeted(s.v4, "c.example").await?;
    let reply = client
        .send_mail("a@o.example", &["u1@example.com", "u2@example.com"], "x")
        .await?;
    assert!(
        reply.lines[0].starts_with("250 2.0.0 Ok: queued as BACKEND1 ("),
        "{reply:?}"
    );
    assert_eq!(
        backend.accepted()[0].rcpts,
        ["u1@example.com", "u2@example.com"]
    );
    Ok(())
}

/// RFC 6152 and 6531 on the way to the backend, which offers 8BITMIME and
/// not SMTPUTF8 (as a Postfix with `smtputf8_enable = no` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_8bitmime_travels_on_and_smtputf8_is_refused_where_not_offered() -> anyhow::Result<()>
{
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "")?;
    let mut client = greeted(s.v4, "c.example").await?;
    client
        .expect("MAIL FROM:<a@o.example> BODY=8BITMIME", 250)
        .await?;
    client.expect("RCPT TO:<user@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client
        .send("Subject: caf\u{e9}\r\n\r\nd\u{e9}j\u{e0} vu\r\n".as_bytes())
        .await?;
    let reply = client.command(".").await?;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());
    let accepted = backend.accepted();
    assert_eq!(accepted[0].mail_from, "<a@o.example> BODY=8BITMIME");
    assert!(String::from_utf8_lossy(&accepted[0].data).ends_with("d\u{e9}j\u{e0} vu\r\n"));

    // Queue mode (the default) learns at the end of the data that the
    // backend cannot take it: a permanent refusal, never a 4xx that the
    // sender would retry for days.
    let mut client = greeted(s.v4, "c.example").await?;
    client
        .expect("MAIL FROM:<j\u{f6}rg@o.example> SMTPUTF8", 250)
        .await?;
    client.expect("RCPT TO:<user@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(b"Subject: x\r\n\r\nhi\r\n").await?;
    let reply = client.command(".").await?;
    assert!(reply.lines[0].starts_with("553 5.6.7 "), "{reply:?}");
    assert_eq!(
        backend.accepted().len(),
        1,
        "nothing more reached the backend"
    );
    Ok(())
}

/// A per-domain smtp_forward.ini section stands alone, as in Haraka:
/// `[main]`'s AUTH credentials never go to the section's host, even when
/// that host offers AUTH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_domain_host_never_gets_the_main_backends_credentials() -> anyhow::Result<()> {
    let offers_auth = || Behaviour {
        auth: Some(BackendAuth {
            mechanisms: "PLAIN LOGIN".into(),
            user: "main-user".into(),
            password: "main-secret".into(),
        }),
        ..Behaviour::default()
    };
    let main = RecordingBackend::start(offers_auth()).await?;
    let other = RecordingBackend::start(offers_auth()).await?;
    let s = ForwardingRelay::start(
        main.addr,
        &format!(
            "auth_type=plain\nauth_user=main-user\nauth_pass=main-secret\n\
             [example.com]\nhost={}\nport={}\n",
            other.addr.ip(),
            other.addr.port()
        ),
    )?;
    let mut client = greeted(s.v4, "c.example").await?;
    let reply = client
        .send_mail("a@o.example", &["user@example.com"], "Subject: x\n\nhi\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());
    assert_eq!(other.accepted().len(), 1);
    assert!(main.accepted().is_empty());
    assert_eq!(other.lines_starting("AUTH"), Vec::<String>::new());
    Ok(())
}

/// smtp_forward.ini `check_sender`, as Haraka: a MAIL FROM in a domain that
/// has its own section is refused from the internet; other senders pass,
/// and without the key the same sender passes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sender_refuses_a_sender_in_a_domain_with_a_section() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let section = format!(
        "[example.com]\nhost={}\nport={}\n",
        backend.addr.ip(),
        backend.addr.port()
    );
    let checking = ForwardingRelay::start(backend.addr, &format!("check_sender=true\n{section}"))?;
    let mut client = greeted(checking.v4, "c.example").await?;
    let reply = client.command("MAIL FROM:<boss@Example.COM>").await?;
    assert_eq!(
        reply.lines,
        ["550 5.7.1 Spoofed MAIL FROM"],
        "{}",
        checking.relay.log()
    );
    client.expect("MAIL FROM:<a@o.example>", 250).await?;

    let trusting = ForwardingRelay::start(backend.addr, &section)?;
    let mut client = greeted(trusting.v4, "c.example").await?;
    client.expect("MAIL FROM:<boss@example.com>", 250).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_tricks_are_refused_and_never_forwarded() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "mode=live")?;
    let mut client = greeted(s.v4, "c.example").await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    for rcpt in [
        "<user@evil.org>",
        "<user@example.com@evil.org>",
        "<@example.com:user@evil.org>",
        "<\"user@evil.org\"@example.com>",
        "<user@evil.org.>",
        "<user%evil.org@example.com>",
        "<user@[127.0.0.1]>",
    ] {
        let reply = client.command(&format!("RCPT TO:{rcpt}")).await?;
        assert!(reply.code >= 500, "{rcpt}: {reply:?}");
    }
    assert!(
        backend.lines_starting("RCPT").is_empty(),
        "{:?}",
        backend.record().lines
    );
    for rcpt in ["<USER@EXAMPLE.COM>", "<user@example.com.>"] {
        client.expect(&format!("RCPT TO:{rcpt}"), 250).await?;
    }
    let rcpts = backend.lines_starting("RCPT");
    assert_eq!(
        rcpts,
        ["RCPT TO:<USER@EXAMPLE.COM>", "RCPT TO:<user@example.com>"]
    );
    Ok(())
}

/// The failure the backend shows for one batch of messages.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    Down,
    TempFail,
    PermFail,
    HangAfterData,
    CloseMidData,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "timeout=1\nconnect_timeout=1")?;
    let plan = [
        (Fault::None, 40),
        (Fault::Down, 30),
        (Fault::TempFail, 30),
        (Fault::None, 20),
        (Fault::PermFail, 30),
        (Fault::CloseMidData, 30),
        (Fault::HangAfterData, 10),
        (Fault::None, 10),
    ];
    let mut told_ok = HashSet::new();
    let mut told_fail = HashSet::new();
    let mut n = 0;
    let mut previous = Fault::None;
    for (fault, count) in plan {
        let behaviour = match fault {
            Fault::None | Fault::Down => Behaviour::default(),
            Fault::TempFail => Behaviour {
                after_data: AfterData::Reply("451 4.3.0 Error: queue file write error".into()),
                ..Behaviour::default()
            },
            Fault::PermFail => Behaviour {
                after_data: AfterData::Reply("554 5.7.1 Rejected by policy".into()),
                ..Behaviour::default()
            },
            Fault::HangAfterData => Behaviour {
                after_data: AfterData::Hang,
                ..Behaviour::default()
            },
            Fault::CloseMidData => Behaviour {
                close_mid_data: true,
                ..Behaviour::default()
            },
        };
        backend.set(behaviour);
        // The fault applies to every session from now on, as a backend's own
        // trouble would: a session opened in the previous phase (relay-in's
        // spare, `forward/spare.rs`) must not carry that phase's behaviour.
        backend.end_sessions();
        let probes = backend.probes();
        if matches!(fault, Fault::Down) {
            backend.crash();
        } else {
            backend.up().await?;
        }
        if matches!(previous, Fault::Down) && !matches!(fault, Fault::Down) {
            // relay-in defers senders at once while the backend is down, and
            // forwards again once a probe reached it (every 2 s meanwhile).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while backend.probes() == probes {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no probe reached the backend:\n{}",
                    s.relay.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Ten senders at a time.
        let mut batch = tokio::task::JoinSet::new();
        for i in 0..count {
            let id = format!("msg-{:03}", n + i);
            let addr = s.v4;
            batch.spawn(async move {
                let mut client = greeted(addr, "c.example").await?;
                let reply = client
                    .try_mail(
                        "a@o.example",
                        &["u@example.com"],
                        &format!("Subject: {id}\n\n{id}\n"),
                    )
                    .await?;
                anyhow::Ok((id, reply))
            });
            if batch.len() >= 10 {
                let (id, reply) = batch.join_next().await.unwrap()??;
                record(&mut told_ok, &mut told_fail, fault, id, reply.code);
            }
        }
        while let Some(result) = batch.join_next().await {
            let (id, reply) = result??;
            record(&mut told_ok, &mut told_fail, fault, id, reply.code);
        }
        n += count;
        previous = fault;
    }
    assert_eq!(told_ok.len() + told_fail.len(), 200);

    let mut at_backend: Vec<String> = backend
        .accepted()
        .iter()
        .map(|a| {
            let data = String::from_utf8_lossy(&a.data);
            data.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    at_backend.sort();
    let unique: HashSet<_> = at_backend.iter().cloned().collect();
    assert_eq!(unique.len(), at_backend.len(), "duplicates at the backend");
    assert_eq!(
        unique, told_ok,
        "told 250 but missing at the backend, or there but not told 250"
    );
    assert!(told_fail.is_disjoint(&unique));
    assert_eq!(told_ok.len(), 70, "only the healthy batches succeed");
    Ok(())
}

fn record(
    ok: &mut HashSet<String>,
    fail: &mut HashSet<String>,
    fault: Fault,
    id: String,
    code: u16,
) {
    match code {
        250 => {
            ok.insert(id);
        }
        400..=599 => {
            // A fault must never look permanent unless the backend said so.
            if !matches!(fault, Fault::PermFail) {
                assert!(code < 500, "{id}: {code} during {fault:?}");
            }
            fail.insert(id);
        }
        other => panic!("{id}: unexpected reply {other}"),
    }
}

/// DSN through relay-in in every mode: the RCPT's NOTIFY and ORCPT, and
/// MAIL's RET and ENVID, reach a backend that offers DSN unchanged. In live
/// and spool mode the backend's RCPT goes out while the client's RCPT is
/// answered, so the parameters must reach the policy then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_reach_the_backend_in_every_mode() -> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    for mode in [
        "mode=queue".to_owned(),
        "mode=live".to_owned(),
        format!("mode=spool\nspool_dir={}", spool.path().display()),
    ] {
        let backend = RecordingBackend::start(Behaviour {
            dsn: true,
            ..Behaviour::default()
        })
        .await?;
        let s = ForwardingRelay::start(backend.addr, &mode)?;
        let mut client = greeted(s.v4, "c.example").await?;
        client
            .expect("MAIL FROM:<a@o.example> RET=HDRS ENVID=QQ+2B1", 250)
            .await?;
        client
            .expect(
                "RCPT TO:<u@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;U@example.com",
                250,
            )
            .await?;
        client.expect("DATA", 354).await?;
        let reply = client.command("Subject: dsn\r\n\r\nx\r\n.").await?;
        assert_eq!(reply.code, 250, "{mode}: {reply:?}");
        assert_eq!(
            backend.lines_starting("RCPT TO"),
            ["RCPT TO:<u@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;U@example.com"],
            "{mode}"
        );
        let mail = backend.lines_starting("MAIL FROM");
        assert!(
            mail.len() == 1 && mail[0].contains("RET=HDRS") && mail[0].contains("ENVID=QQ+2B1"),
            "{mode}: {mail:?}"
        );
    }
    Ok(())
}
