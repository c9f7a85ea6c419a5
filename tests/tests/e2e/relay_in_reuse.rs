//! relay-in keeping a client's backend session for that client's next
//! message: shared within one client connection only, replaced when the
//! client greets anew, closed when idle, and replaced without loss when the
//! backend closed it meanwhile.

use std::time::Duration;

use postern_tests::backend::{Behaviour, EndSession, RecordingBackend};
use postern_tests::relay_in::{ForwardingRelay, greeted};

const MODES: [&str; 2] = ["mode=queue", "mode=live"];

/// The Subject of every message the backend accepted, in order.
fn subjects(backend: &RecordingBackend) -> Vec<String> {
    backend
        .accepted()
        .iter()
        .map(|a| {
            String::from_utf8_lossy(&a.data)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_connection_one_backend_session_never_shared_between_clients()
-> anyhow::Result<()> {
    for mode in MODES {
        let backend = RecordingBackend::start(Behaviour::default()).await?;
        let s = ForwardingRelay::start(backend.addr, mode)?;
        let mut first = greeted(s.v4, "first.example").await?;
        for n in 0..3 {
            let subject = format!("first-{n}");
            let reply = first
                .send_mail(
                    "a@o.example",
                    &["u@example.com"],
                    &format!("Subject: {subject}\n\nx\n"),
                )
                .await?;
            assert_eq!(reply.code, 250, "{mode}: {reply:?}\n{}", s.relay.log());
        }
        assert_eq!(backend.record().connections, 1, "{mode}");
        assert_eq!(backend.lines_starting("XCLIENT").len(), 1, "{mode}");

        // Another client, while the first one's session is still kept: a
        // session of its own, with its own identity.
        let mut second = greeted(s.v6, "second.example").await?;
        let reply = second
            .send_mail("b@o.example", &["u@example.com"], "Subject: second\n\nx\n")
            .await?;
        assert_eq!(reply.code, 250, "{mode}: {reply:?}");
        assert_eq!(backend.record().connections, 2, "{mode}");

        let accepted = backend.accepted();
        assert_eq!(
            subjects(&backend),
            ["first-0", "first-1", "first-2", "second"]
        );
        let first_xclient = accepted[0].xclient.clone().unwrap_or_default();
        assert!(
            first_xclient.contains("HELO=first.example"),
            "{first_xclient}"
        );
        assert!(first_xclient.ends_with("ADDR=127.0.0.1"), "{first_xclient}");
        for message in &accepted[1..3] {
            assert_eq!(message.xclient.as_deref(), Some(first_xclient.as_str()));
            assert_eq!(message.peer, accepted[0].peer, "{mode}: same session");
        }
        let second_xclient = accepted[3].xclient.clone().unwrap_or_default();
        assert!(
            second_xclient.contains("HELO=second.example"),
            "{second_xclient}"
        );
        assert!(
            second_xclient.ends_with("ADDR=IPV6:::1"),
            "{second_xclient}"
        );
        assert_ne!(accepted[3].peer, accepted[0].peer, "{mode}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_greeting_gets_a_new_backend_session_saying_so() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "")?;
    let mut client = greeted(s.v4, "one.example").await?;
    client
        .send_mail("a@o.example", &["u@example.com"], "Subject: one\n\nx\n")
        .await?;
    client.expect("EHLO two.example", 250).await?;
    let reply = client
        .send_mail("a@o.example", &["u@example.com"], "Subject: two\n\nx\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    let accepted = backend.accepted();
    assert_eq!(backend.record().connections, 2);
    let helos: Vec<bool> = accepted
        .iter()
        .zip(["HELO=one.example", "HELO=two.example"])
        .map(|(a, helo)| a.xclient.as_deref().unwrap_or_default().contains(helo))
        .collect();
    assert_eq!(helos, [true, true], "{accepted:?}");
    assert_eq!(accepted[1].ehlos, ["EHLO two.example"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_session_is_closed_and_the_next_message_opens_another() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "")?;
    let mut client = greeted(s.v4, "c.example").await?;
    client
        .send_mail("a@o.example", &["u@example.com"], "Subject: before\n\nx\n")
        .await?;
    assert!(backend.lines_starting("QUIT").is_empty());

    // relay-in keeps an idle session for 2 s; the client stays connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backend.lines_starting("QUIT").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle backend session was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.expect("NOOP", 250).await?;
    let reply = client
        .send_mail("a@o.example", &["u@example.com"], "Subject: after\n\nx\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(backend.record().connections, 2);
    assert_eq!(subjects(&backend), ["before", "after"]);

    // The client leaving closes its kept session at once.
    client.expect("QUIT", 221).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while backend.lines_starting("QUIT").len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kept session outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_backend_ended_is_replaced_and_nothing_is_lost_or_doubled()
-> anyhow::Result<()> {
    for mode in MODES {
        for with_421 in [true, false] {
            let backend = RecordingBackend::start(Behaviour {
                end_session: Some(EndSession {
                    after_messages: 1,
                    with_421,
                }),
                ..Behaviour::default()
            })
            .await?;
            let s = ForwardingRelay::start(backend.addr, mode)?;
            let mut client = greeted(s.v4, "c.example").await?;
            let mut expected = Vec::new();
            for n in 0..4 {
                let subject = format!("m{n}");
                // Let the backend's close arrive before the next message.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let reply = client
                    .send_mail(
                        "a@o.example",
                        &["u@example.com"],
                        &format!("Subject: {subject}\n\nx\n"),
                    )
                    .await?;
                assert_eq!(
                    reply.code,
                    250,
                    "{mode}, 421 {with_421}: {reply:?}\n{}",
                    s.relay.log()
                );
                expected.push(subject);
            }
            assert_eq!(subjects(&backend), expected, "{mode}, 421 {with_421}");
            assert_eq!(backend.record().connections, 4, "{mode}, 421 {with_421}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_in_queue_mode_sends_no_data_and_the_next_message_goes_through()
-> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour {
        rcpt_replies: vec![(
            "unknown@example.com".into(),
            "550 5.1.1 <unknown@example.com>: Recipient address rejected".into(),
        )],
        ..Behaviour::default()
    })
    .await?;
    let s = ForwardingRelay::start(backend.addr, "mode=queue")?;
    let mut client = greeted(s.v4, "c.example").await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    client.expect("RCPT TO:<user@example.com>", 250).await?;
    client.expect("RCPT TO:<unknown@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(b"Subject: refused\r\n\r\nx\r\n").await?;
    let reply = client.command(".").await?;
    assert_eq!(reply.code, 550, "{reply:?}");
    // DATA went out pipelined and got 354; relay-in closed without the dot.
    assert_eq!(backend.lines_starting("DATA").len(), 1);

    let reply = client
        .send_mail("a@o.example", &["user@example.com"], "Subject: fine\n\nx\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(subjects(&backend), ["fine"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_never_carries_a_message_for_another_route() -> anyhow::Result<()> {
    let default = RecordingBackend::start(Behaviour::default()).await?;
    let other = RecordingBackend::start(Behaviour::default()).await?;
    // check_recipient=true makes a domain with its own section local too.
    let routes = format!(
        "check_recipient=true\n[other.test]\nhost=127.0.0.1\nport={}\n",
        other.addr.port()
    );
    let s = ForwardingRelay::start(default.addr, &routes)?;
    let mut client = greeted(s.v4, "c.example").await?;
    for (rcpt, subject) in [
        ("u@example.com", "first"),
        ("u@other.test", "second"),
        ("u@example.com", "third"),
    ] {
        let reply = client
            .send_mail(
                "a@o.example",
                &[rcpt],
                &format!("Subject: {subject}\n\nx\n"),
            )
            .await?;
        assert_eq!(reply.code, 250, "{rcpt}: {reply:?}\n{}", s.relay.log());
    }
    assert_eq!(subjects(&default), ["first", "third"]);
    assert_eq!(subjects(&other), ["second"]);
    // The session kept for example.com was closed when other.test's message
    // needed another backend, and a new one carried the third message.
    assert_eq!(default.record().connections, 2);
    assert_eq!(other.record().connections, 1);
    Ok(())
}
