//! Queue mode opens the client's backend session at its first accepted
//! recipient, while the client still sends DATA and the message, so that
//! only MAIL, RCPT, DATA and the content are left after its final dot
//! (issue 19). What must not change: the client's 250 still follows the
//! backend's, XCLIENT still carries the real client, a failed open still
//! answers at the dot as before, a client that leaves before its dot leaves
//! no backend session, and no client gets more than one.

use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::outbound::wait_until;
use postern_tests::relay_in::{greeted, queue_mode, queue_mode_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_opens_before_the_dot_and_carries_the_real_client() -> anyhow::Result<()> {
    let (backend, s) = queue_mode(Behaviour::default()).await?;
    let mut client = greeted(s.v4, "early.example").await?;
    let port = client.local_addr().port();
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    client.expect("RCPT TO:<u@example.com>", 250).await?;
    // The client has not said DATA: the backend is already told who it is.
    wait_until(Duration::from_secs(5), "XCLIENT before DATA", || {
        !backend.lines_starting("XCLIENT").is_empty()
    })
    .await?;
    assert!(
        backend.lines_starting("MAIL").is_empty(),
        "nothing before the dot"
    );
    client.expect("DATA", 354).await?;
    client.send(b"Subject: early\r\n\r\nx\r\n").await?;
    let reply = client.command(".").await?;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());
    assert!(
        reply.lines[0].contains("BACKEND1"),
        "the backend's 250: {reply:?}"
    );

    let accepted = backend.accepted();
    assert_eq!(accepted.len(), 1);
    let xclient = accepted[0].xclient.clone().unwrap_or_default();
    for attribute in [
        "HELO=early.example".to_string(),
        "ADDR=127.0.0.1".to_string(),
        format!("PORT={port}"),
        "PROTO=ESMTP".to_string(),
    ] {
        assert!(xclient.contains(&attribute), "{attribute} in {xclient}");
    }
    assert_eq!(backend.record().connections, 1);
    Ok(())
}

/// How a client leaves a transaction before its dot.
#[derive(Debug, Clone, Copy)]
enum Leaving {
    Quit,
    Drop,
    /// RSET, staying connected: the session is closed like a kept one,
    /// after 2 s idle (`reuse::IDLE_LIMIT`).
    RsetAndStay,
    /// RSET, then QUIT.
    RsetQuit,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_its_dot_leaves_no_backend_session_and_nothing_delivered()
-> anyhow::Result<()> {
    for leaving in [
        Leaving::Quit,
        Leaving::Drop,
        Leaving::RsetAndStay,
        Leaving::RsetQuit,
    ] {
        let (backend, s) = queue_mode(Behaviour::default()).await?;
        let mut client = greeted(s.v4, "c.example").await?;
        client.expect("MAIL FROM:<a@o.example>", 250).await?;
        client.expect("RCPT TO:<u@example.com>", 250).await?;
        // The early session is open (XCLIENT answered, greeted again).
        wait_until(Duration::from_secs(5), "the early session", || {
            backend.lines_starting("XCLIENT").len() == 1
        })
        .await?;
        match leaving {
            Leaving::Quit => {
                client.expect("QUIT", 221).await?;
            }
            Leaving::Drop => drop(client),
            Leaving::RsetAndStay | Leaving::RsetQuit => {
                client.expect("RSET", 250).await?;
                if matches!(leaving, Leaving::RsetQuit) {
                    client.expect("QUIT", 221).await?;
                } else {
                    // Within the idle limit plus margin, while connected.
                    wait_until(
                        Duration::from_secs(6),
                        "the idle early session closed",
                        || backend.record().in_flight == 0,
                    )
                    .await?;
                    client.expect("NOOP", 250).await?;
                }
            }
        }
        wait_until(
            Duration::from_secs(5),
            &format!("{leaving:?}: the backend session closed"),
            || backend.record().in_flight == 0,
        )
        .await?;
        assert!(backend.accepted().is_empty(), "{leaving:?}");
        assert!(backend.lines_starting("MAIL").is_empty(), "{leaving:?}");
        let record = backend.record();
        assert_eq!(record.sessions, 2, "{leaving:?}: the probe and one session");
        assert_eq!(record.max_in_flight, 1, "{leaving:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_restarting_its_transaction_holds_one_backend_session_at_most()
-> anyhow::Result<()> {
    let (backend, s) = queue_mode(Behaviour::default()).await?;
    let mut client = greeted(s.v4, "c.example").await?;
    // As fast as the client can: the opens still in flight are not doubled.
    for _ in 0..30 {
        client.expect("MAIL FROM:<a@o.example>", 250).await?;
        client.expect("RCPT TO:<u@example.com>", 250).await?;
        client.expect("RSET", 250).await?;
    }
    let reply = client
        .send_mail("a@o.example", &["u@example.com"], "Subject: last\n\nx\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(backend.accepted().len(), 1);
    client.expect("QUIT", 221).await?;
    wait_until(Duration::from_secs(5), "the session closed", || {
        backend.record().in_flight == 0
    })
    .await?;
    let record = backend.record();
    assert_eq!(record.sessions, 2, "the probe and one session");
    assert_eq!(record.max_in_flight, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_early_open_answers_at_the_dot_as_before() -> anyhow::Result<()> {
    // The backend stops listening after the startup probe: RCPT cannot know
    // it, the dot answers 451 4.4.1 and the backend is marked down once.
    let (mut backend, s) = queue_mode(Behaviour::default()).await?;
    backend.down();
    let mut client = greeted(s.v4, "c.example").await?;
    let reply = client
        .send_mail("a@o.example", &["u@example.com"], "Subject: down\n\nx\n")
        .await?;
    assert_eq!(
        reply.lines,
        ["451 4.4.1 Backend mail server unavailable, try again later"],
        "{}",
        s.relay.log()
    );
    let log = s.relay.log();
    let down = format!("backend {} is down", backend.addr);
    assert_eq!(log.matches(&down).count(), 1, "{log}");
    assert_eq!(log.matches("backend connection failed").count(), 1, "{log}");

    // XCLIENT refused (relay-in's address not authorised): 451 4.7.0 at
    // the dot, and the reason in the log, once.
    let (backend, s) = queue_mode(Behaviour {
        xclient_reply: "550 5.7.0 Error: insufficient authorization".into(),
        ..Behaviour::default()
    })
    .await?;
    let mut client = greeted(s.v4, "c.example").await?;
    let reply = client
        .send_mail("a@o.example", &["u@example.com"], "Subject: refused\n\nx\n")
        .await?;
    assert!(reply.lines[0].starts_with("451 4.7.0"), "{reply:?}");
    let log = s.relay.log();
    assert_eq!(
        log.matches("not forwarding: the backend refused XCLIENT")
            .count(),
        1,
        "{log}"
    );
    // Refused with and without an EHLO before it: not taken for a backend
    // that wants EHLO first.
    assert!(!log.contains("did not take XCLIENT before EHLO"), "{log}");
    assert!(backend.accepted().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_recipients_are_all_refused_costs_the_backend_nothing() -> anyhow::Result<()>
{
    let (backend, s) = queue_mode(Behaviour::default()).await?;
    let mut refused = greeted(s.v4, "spam.example").await?;
    refused.expect("MAIL FROM:<a@o.example>", 250).await?;
    refused.expect("RCPT TO:<u@elsewhere.example>", 550).await?;
    refused.expect("QUIT", 221).await?;
    // A client that does get a recipient accepted afterwards: its session
    // is the only one the backend sees besides the startup probe.
    let mut accepted = greeted(s.v4, "c.example").await?;
    let reply = accepted
        .send_mail("a@o.example", &["u@example.com"], "Subject: fine\n\nx\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    let record = backend.record();
    assert_eq!(
        record.sessions, 2,
        "the probe and the accepted client's session"
    );
    assert!(
        record
            .lines
            .iter()
            .all(|l| !l.contains("HELO=spam.example")),
        "{:?}",
        record.lines
    );
    Ok(())
}

/// Queue mode sends the envelope at the client's DATA, on the session
/// opened early: MAIL, RCPT and DATA reach the backend before the client's
/// dot, which then waits for the content's round trip alone. The client's
/// 250 is still the backend's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_goes_at_data_and_the_dot_sends_the_content() -> anyhow::Result<()> {
    let (backend, s) = queue_mode(Behaviour::default()).await?;
    let mut client = greeted(s.v4, "c.example").await?;
    for round in 0..2 {
        // The message is not finished: the backend has the envelope.
        begin_message(
            &mut client,
            &backend,
            b"Subject: early envelope\r\n\r\n",
            round + 1,
        )
        .await?;
        assert_eq!(backend.lines_starting("MAIL").len(), round + 1);
        assert_eq!(backend.accepted().len(), round, "nothing delivered yet");
        client.send(b"body\r\n").await?;
        let reply = client.command(".").await?;
        assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());
        assert!(reply.lines[0].contains("BACKEND1"), "{reply:?}");
        let accepted = backend.accepted();
        assert_eq!(accepted.len(), round + 1);
        let data = String::from_utf8_lossy(&accepted[round].data).into_owned();
        assert!(
            data.contains("Subject: early envelope\r\n\r\nbody\r\n"),
            "{data}"
        );
    }
    // Both messages on the one session (the second on the kept session).
    assert_eq!(backend.record().sessions, 2, "the probe and one session");
    Ok(())
}

/// A transaction relay-in does not forward after its envelope went at
/// DATA (the client leaves mid-message, or its message is refused at the
/// dot) delivers nothing: the backend waiting for the content loses the
/// connection instead. The next message on the connection goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_forwarded_after_its_envelope_went_delivers_nothing() -> anyhow::Result<()> {
    let (backend, s) =
        queue_mode_with(Behaviour::default(), &[("databytes", "2000\n".to_string())]).await?;

    // The client leaves in the middle of its message.
    let mut leaving = greeted(s.v4, "c.example").await?;
    begin_message(&mut leaving, &backend, b"Subject: cut short\r\n\r\npart", 1).await?;
    drop(leaving);
    wait_until(Duration::from_secs(5), "the backend session closed", || {
        backend.record().in_flight == 0
    })
    .await?;
    assert!(backend.accepted().is_empty());

    // Too large for databytes: refused at the dot, after its envelope went.
    let mut client = greeted(s.v4, "c.example").await?;
    begin_message(&mut client, &backend, b"Subject: too large\r\n\r\n", 2).await?;
    let line = [b'x'; 98];
    for _ in 0..40 {
        client.send(&line).await?;
        client.send(b"\r\n").await?;
    }
    let reply = client.command(".").await?;
    assert!(reply.lines[0].starts_with("552"), "{reply:?}");
    // The next message on the same connection is forwarded, once.
    let reply = client
        .send_mail("a@o.example", &["u@example.com"], "Subject: small\n\nx\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());
    let accepted = backend.accepted();
    assert_eq!(accepted.len(), 1, "only the small one");
    assert!(String::from_utf8_lossy(&accepted[0].data).contains("Subject: small"));
    client.expect("QUIT", 221).await?;
    wait_until(
        Duration::from_secs(5),
        "every backend session closed",
        || backend.record().in_flight == 0,
    )
    .await?;
    Ok(())
}

/// MAIL, RCPT, DATA and the start of a message, then waits until the
/// backend has had `data_commands` DATA commands in all: the envelope went
/// before the message was finished.
async fn begin_message(
    client: &mut postern_tests::smtp::SmtpClient,
    backend: &RecordingBackend,
    start: &[u8],
    data_commands: usize,
) -> anyhow::Result<()> {
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    client.expect("RCPT TO:<u@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(start).await?;
    wait_until(
        Duration::from_secs(5),
        "the envelope at the backend",
        || backend.lines_starting("DATA").len() == data_commands,
    )
    .await
}
