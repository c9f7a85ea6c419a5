//! relay-in's backup-MX mode (issue 15, `mode=spool`): while the backend
//! is away, mail for recipients it accepted before is kept and answered
//! 250, anything else 451; when it is back, the kept mail reaches it with
//! the original client's XCLIENT attributes, and a recipient it then
//! refuses gets the sender a notice through it.
//!
//! The backend goes away with `crash()`, its sessions with it, as a stopped
//! Postfix's do: relay-in may hold a spare session opened just before
//! (`forward/spare.rs`), and a backend that only stopped listening would
//! still take mail on it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use postern_tests::backend::{AfterData, Behaviour, RecordingBackend};
use postern_tests::metrics::{scrape, value};
use postern_tests::outbound::wait_until;
use postern_tests::process::{free_port, run};
use postern_tests::relay_in::ForwardingRelay;
use postern_tests::smtp::{ClientReply, SmtpClient};

/// The sending client's own address, which the backend must see.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));

/// A client from [`CLIENT`] that has said `EHLO helo`.
async fn client(relay: SocketAddr, helo: &str) -> anyhow::Result<SmtpClient> {
    let mut client = SmtpClient::connect_from(CLIENT, relay).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect(&format!("EHLO {helo}"), 250).await?;
    Ok(client)
}

/// relay-in in spool mode with its spool in a directory of the test's.
fn start(
    backend: SocketAddr,
    spool: &std::path::Path,
    extra: &str,
) -> anyhow::Result<ForwardingRelay> {
    start_with_files(backend, spool, extra, &[])
}

fn start_with_files(
    backend: SocketAddr,
    spool: &std::path::Path,
    extra: &str,
    files: &[(&str, String)],
) -> anyhow::Result<ForwardingRelay> {
    ForwardingRelay::start_with(
        backend,
        &format!("mode=spool\nspool_dir={}\n{extra}", spool.display()),
        files,
        &[],
    )
}

/// One message from [`CLIENT`] to u@example.com with `subject`; its reply.
async fn send_one(s: &ForwardingRelay, subject: &str) -> anyhow::Result<ClientReply> {
    let mut c = client(s.v4, "sender.example").await?;
    c.try_mail(
        "a@sender.example",
        &["u@example.com"],
        &format!("Subject: {subject}\n\nx\n"),
    )
    .await
}

/// A message to u@example.com while the backend is up: the backend accepts
/// it, so the recipient becomes known to the spool.
async fn make_known(s: &ForwardingRelay, subject: &str) -> anyhow::Result<()> {
    let reply = send_one(s, subject).await?;
    anyhow::ensure!(reply.code == 250, "{reply:?}");
    Ok(())
}

fn subjects(backend: &RecordingBackend) -> Vec<String> {
    backend
        .accepted()
        .iter()
        .filter_map(|a| {
            String::from_utf8_lossy(&a.data)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_a_known_recipient_is_kept_while_the_backend_is_away_and_arrives_when_it_is_back()
-> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let metrics_port = free_port();
    let s = start_with_files(
        backend.addr,
        spool.path(),
        "",
        &[("metrics.ini", format!("listen=127.0.0.1:{metrics_port}\n"))],
    )?;

    // Up: live, and the backend's acceptance makes the recipient known.
    let mut c = client(s.v4, "sender.example").await?;
    let reply = c
        .send_mail(
            "a@sender.example",
            &["u@example.com"],
            "Subject: live\n\nx\n",
        )
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        reply.text().contains("BACKEND1"),
        "the backend's own 250: {reply:?}"
    );

    // Away: the known recipient is kept, an unseen one deferred.
    backend.crash();
    let mut c = client(s.v4, "sender.example").await?;
    c.expect("MAIL FROM:<a@sender.example>", 250).await?;
    let asked = Instant::now();
    let unseen = c.command("RCPT TO:<nobody@example.com>").await?;
    assert!(unseen.lines[0].starts_with("451 4.4.1"), "{unseen:?}");
    let known = c.command("RCPT TO:<u@example.com>").await?;
    assert_eq!(known.code, 250, "{known:?}\n{}", s.relay.log());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "answered without waiting on the dead backend: {:?}",
        asked.elapsed()
    );
    c.expect("DATA", 354).await?;
    let kept = c.command("Subject: kept\r\n\r\nwhile away\r\n.").await?;
    assert_eq!(kept.code, 250, "{kept:?}\n{}", s.relay.log());
    assert!(
        kept.text().contains("kept until the home server is back"),
        "{kept:?}"
    );
    c.expect("QUIT", 221).await?;
    let files = std::fs::read_dir(spool.path())?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".msg"))
        .count();
    assert_eq!(files, 1, "one message in the spool");
    let gauges = |metrics: &str| {
        (
            value(metrics, "postern_queue_messages"),
            value(metrics, "postern_verified_recipients"),
        )
    };
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut seen = (0.0, 0.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen != (1.0, 1.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = gauges(&scrape(metrics_addr).await?);
    }
    assert_eq!(
        seen,
        (1.0, 1.0),
        "one spooled message, one verified recipient"
    );

    // Back: the kept message arrives, as the original client.
    backend.up().await?;
    wait_until(
        Duration::from_secs(10),
        "the kept message at the backend",
        || subjects(&backend).len() == 2,
    )
    .await?;
    assert_eq!(subjects(&backend), ["live", "kept"]);
    let delivered = backend.accepted().pop().expect("two messages");
    assert_eq!(delivered.rcpts, ["u@example.com"]);
    let xclient = delivered.xclient.unwrap_or_default();
    assert!(xclient.contains("ADDR=127.0.0.5"), "{xclient}");
    assert!(xclient.contains("HELO=sender.example"), "{xclient}");
    s.relay.wait_for_log(
        "message done, removed from the spool",
        Duration::from_secs(5),
    )?;
    let left = std::fs::read_dir(spool.path())?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".msg")
                || name.ends_with(".state")
                || name.ends_with(".eml")
                || name.ends_with(".json")
        })
        .count();
    assert_eq!(left, 0, "the spool is empty after delivery");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_refused_on_return_gets_the_sender_a_notice_through_the_backend()
-> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(backend.addr, spool.path(), "")?;
    make_known(&s, "one").await?;

    backend.crash();
    let reply = send_one(&s, "two").await?;
    assert_eq!(reply.code, 250, "{reply:?}");

    // The mailbox was deleted meanwhile.
    backend.set(Behaviour {
        rcpt_replies: vec![(
            "u@example.com".into(),
            "550 5.1.1 <u@example.com>: Recipient address rejected: User unknown".into(),
        )],
        ..Behaviour::default()
    });
    backend.up().await?;
    wait_until(Duration::from_secs(10), "the notice at the backend", || {
        backend
            .accepted()
            .iter()
            .any(|a| a.mail_from.starts_with("<>") && a.rcpts == ["a@sender.example"])
    })
    .await?;
    let notice = backend
        .accepted()
        .into_iter()
        .find(|a| a.mail_from.starts_with("<>"))
        .expect("found above");
    let text = String::from_utf8_lossy(&notice.data).into_owned();
    assert!(text.contains("multipart/report"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; u@example.com"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{text}");
    assert!(text.contains("User unknown"), "{text}");
    assert!(
        notice.xclient.is_none(),
        "relay-in sends its own notice as itself: {:?}",
        notice.xclient
    );

    // The refusal made the recipient unknown again.
    backend.crash();
    let mut c = client(s.v4, "sender.example").await?;
    c.expect("MAIL FROM:<a@sender.example>", 250).await?;
    let again = c.command("RCPT TO:<u@example.com>").await?;
    assert!(again.lines[0].starts_with("451 4.4.1"), "{again:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_max_messages_refuses_the_next_message_with_452() -> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(backend.addr, spool.path(), "spool_max_messages=3")?;
    make_known(&s, "known").await?;
    backend.crash();
    let mut c = client(s.v4, "sender.example").await?;
    for n in 1..=3 {
        let reply = c
            .try_mail(
                "a@sender.example",
                &["u@example.com"],
                &format!("Subject: kept {n}\n\nx\n"),
            )
            .await?;
        assert_eq!(reply.code, 250, "message {n}: {reply:?}");
    }
    c.expect("MAIL FROM:<a@sender.example>", 250).await?;
    let full = c.command("RCPT TO:<u@example.com>").await?;
    assert!(full.lines[0].starts_with("452 4.3.1"), "{full:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_4xx_on_return_is_retried_and_a_5xx_to_the_data_bounces() -> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(backend.addr, spool.path(), "spool_retry_intervals=1s")?;
    make_known(&s, "known").await?;
    backend.crash();
    let reply = send_one(&s, "later").await?;
    assert_eq!(reply.code, 250, "{reply:?}");

    // Back, but its first session answers the data with a 4xx.
    backend.set(Behaviour {
        first_sessions_data_reply: Some((
            backend.record().connections + 1,
            "451 4.3.0 try again".into(),
        )),
        ..Behaviour::default()
    });
    backend.up().await?;
    s.relay.wait_for_log(
        "deferred by the backend: 451 4.3.0",
        Duration::from_secs(10),
    )?;
    wait_until(Duration::from_secs(10), "the retry's delivery", || {
        subjects(&backend).contains(&"later".to_owned())
    })
    .await?;
    assert_eq!(
        subjects(&backend).iter().filter(|s| *s == "later").count(),
        1,
        "delivered once"
    );
    // A message the backend refuses outright (5xx to the data) bounces.
    backend.crash();
    let reply = send_one(&s, "spam").await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    backend.set(Behaviour {
        after_data: AfterData::Reply("554 5.7.1 Message rejected as spam".into()),
        ..Behaviour::default()
    });
    backend.up().await?;
    // The same backend refuses the notice too (554 to every data): it is
    // dropped, not retried for ever.
    s.relay.wait_for_log(
        "the backend refused the notice, dropped: 554",
        Duration::from_secs(10),
    )?;
    let log = s.relay.log();
    assert!(
        log.contains("the backend refused a recipient: 554 5.7.1"),
        "{log}"
    );
    Ok(())
}

/// The spool id in a `250 ... Queued as ID (...)` reply.
fn queued_id(reply: &ClientReply) -> String {
    let text = reply.text();
    text.split_once("Queued as ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .expect("a queue id")
        .to_owned()
}

/// `relay-in queue ARGS -c DIR`: exit code and output.
fn queue(s: &ForwardingRelay, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let dir = s.dir().display().to_string();
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-c", &dir]);
    run("relay-in", &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_tool_lists_shows_deletes_bounces_and_flushes_the_spool() -> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(backend.addr, spool.path(), "spool_retry_intervals=1s")?;
    let (code, output) = queue(&s, &["list"])?;
    assert_eq!((code, output.as_str()), (0, "Mail queue is empty\n"));

    make_known(&s, "known").await?;
    backend.crash();
    let mut c = client(s.v4, "sender.example").await?;
    let mut ids = Vec::new();
    for subject in ["first", "second"] {
        let reply = c
            .try_mail(
                "a@sender.example",
                &["u@example.com"],
                &format!("Subject: {subject}\n\nx\n"),
            )
            .await?;
        assert_eq!(reply.code, 250, "{reply:?}");
        ids.push(queued_id(&reply));
    }
    let (code, list) = queue(&s, &["list"])?;
    assert_eq!(code, 0, "{list}");
    for id in &ids {
        assert!(list.contains(id.as_str()), "{id} in:\n{list}");
    }
    assert!(list.contains("u@example.com (pending)"), "{list}");
    assert!(list.contains("in 2 Requests."), "{list}");

    let (code, shown) = queue(&s, &["show", &ids[0]])?;
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains(&format!("Queue ID: {}", ids[0])), "{shown}");
    assert!(
        shown.contains("Client: 127.0.0.5 helo=sender.example"),
        "{shown}"
    );
    assert!(shown.contains("Subject: first"), "{shown}");

    let (code, deleted) = queue(&s, &["delete", &ids[1]])?;
    assert_eq!(
        (code, deleted.trim()),
        (0, format!("{}: deleted", ids[1]).as_str())
    );
    let (_, list) = queue(&s, &["list"])?;
    assert!(!list.contains(ids[1].as_str()), "{list}");

    let (code, bounced) = queue(&s, &["bounce", &ids[0]])?;
    assert_eq!(code, 0, "{bounced}");
    assert!(
        bounced.contains("bounce requested; relay-in (PID"),
        "{bounced}"
    );

    // Back: the bounced message owes its sender a notice and is not
    // delivered; the deleted one is gone.
    backend.up().await?;
    let (code, flushed) = queue(&s, &["flush"])?;
    assert_eq!(code, 0, "{flushed}");
    assert!(flushed.contains("flush requested"), "{flushed}");
    wait_until(Duration::from_secs(10), "the notice at the backend", || {
        backend
            .accepted()
            .iter()
            .any(|a| a.mail_from.starts_with("<>"))
    })
    .await?;
    let delivered = subjects(&backend);
    assert!(
        !delivered.iter().any(|s| s == "first" || s == "second"),
        "neither the bounced nor the deleted message was delivered: {delivered:?}"
    );
    let notice = backend
        .accepted()
        .into_iter()
        .find(|a| a.mail_from.starts_with("<>"))
        .expect("found above");
    let text = String::from_utf8_lossy(&notice.data).into_owned();
    assert!(text.contains("cancelled by the administrator"), "{text}");
    s.relay.wait_for_log(
        "message done, removed from the spool",
        Duration::from_secs(5),
    )?;
    let (_, list) = queue(&s, &["list"])?;
    assert_eq!(list, "Mail queue is empty\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_drops_packets_does_not_keep_the_sender_waiting_connect_timeout()
-> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    // Haraka's shipped connect_timeout: 30 s.
    let s = start(backend.addr, spool.path(), "connect_timeout=30")?;
    make_known(&s, "known").await?;

    // WireGuard goes down: packets to the backend are dropped.
    backend.silence().await?;
    let mut c = client(s.v4, "sender.example").await?;
    c.expect("MAIL FROM:<a@sender.example>", 250).await?;
    let asked = Instant::now();
    let reply = c.command("RCPT TO:<u@example.com>").await?;
    let took = asked.elapsed();
    assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());
    assert!(
        took < Duration::from_secs(4),
        "the first sender after the outage waited {took:?}"
    );
    c.expect("DATA", 354).await?;
    let kept = c.command("Subject: kept\r\n\r\nx\r\n.").await?;
    assert_eq!(kept.code, 250, "{kept:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_older_than_verified_ttl_no_longer_opens_the_spool() -> anyhow::Result<()> {
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(backend.addr, spool.path(), "verified_ttl=2s")?;
    // --check shows every spool setting in force, with its key.
    let dir = s.dir().display().to_string();
    let (code, check) = run("relay-in", &["--check", "-c", &dir])?;
    assert_eq!(code, 0, "{check}");
    for line in [
        &format!("spool_dir = {}", spool.path().display()),
        "verified_ttl = 2s",
        "spool_max_messages = 10000, spool_max_bytes = 1073741824 (then 452 4.3.1)",
        "max_spool_age = 5d",
        "spool_concurrency = 2",
        "spool_retry_intervals = 1m, 5m, 10m, 30m, 30m, 1h",
    ] {
        assert!(check.contains(line), "{line:?} missing:\n{check}");
    }

    make_known(&s, "known").await?;
    let verified_at = Instant::now();
    backend.crash();
    // Within the TTL the recipient is known ...
    let mut c = client(s.v4, "sender.example").await?;
    c.expect("MAIL FROM:<a@sender.example>", 250).await?;
    let reply = c.command("RCPT TO:<u@example.com>").await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("RSET", 250).await?;
    anyhow::ensure!(
        verified_at.elapsed() < Duration::from_secs(2),
        "too slow to check within the TTL"
    );
    // ... and once the TTL has run out it is not.
    tokio::time::sleep(
        Duration::from_secs(2).saturating_sub(verified_at.elapsed()) + Duration::from_millis(1100),
    )
    .await;
    c.expect("MAIL FROM:<a@sender.example>", 250).await?;
    let reply = c.command("RCPT TO:<u@example.com>").await?;
    assert!(reply.lines[0].starts_with("451 4.4.1"), "{reply:?}");
    Ok(())
}
