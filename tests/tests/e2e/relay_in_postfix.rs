//! relay-in in front of a real Postfix (Debian's package, a private
//! instance on loopback with `smtpd_authorized_xclient_hosts`): Postfix must
//! see the original client's address and HELO, not relay-in's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use postern_tests::outbound::wait_until;
use postern_tests::postfix::{Postfix, PostfixOptions};
use postern_tests::process::{Relay, free_port};
use postern_tests::smtp::SmtpClient;

const WAIT: Duration = Duration::from_secs(15);

async fn send_from(
    source: IpAddr,
    relay: SocketAddr,
    helo: &str,
    subject: &str,
) -> anyhow::Result<u16> {
    let mut client = SmtpClient::connect_from(source, relay).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect(&format!("EHLO {helo}"), 250).await?;
    let reply = client
        .send_mail(
            "sender@origin.example",
            &["user@example.com"],
            &format!("Subject: {subject}\n\nhello\n"),
        )
        .await?;
    Ok(reply.code)
}

/// relay-in's configuration for a Postfix backend: the shipped defaults
/// (XCLIENT required among them) but for a loopback listener (127.0.0.1,
/// and [::1] with `v6`), reverse DNS off, and example.com as its domain.
fn relay_in_dir(postfix: &Postfix, v6: bool) -> anyhow::Result<(tempfile::TempDir, u16)> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let listen = match v6 {
        true => format!("127.0.0.1:{port},[::1]:{port}"),
        false => format!("127.0.0.1:{port}"),
    };
    std::fs::write(
        dir.path().join("smtp.ini"),
        format!("listen={listen}\nrdns=off\n"),
    )?;
    std::fs::write(dir.path().join("me"), "mx.test\n")?;
    std::fs::write(dir.path().join("host_list"), "example.com\n")?;
    std::fs::write(
        dir.path().join("smtp_forward.ini"),
        format!("host=127.0.0.1\nport={}\n", postfix.addr().port()),
    )?;
    Ok((dir, port))
}

/// A private Postfix taking XCLIENT for `domains`, and relay-in in front of
/// it with [`relay_in_dir`]'s configuration, listening on the address
/// returned (and on [::1] at the same port with `v6`). The directory is
/// relay-in's configuration: keep it until the end of the test.
async fn postfix_behind_relay_in(
    domains: &'static [&'static str],
    v6: bool,
) -> anyhow::Result<(Postfix, Relay, SocketAddr, tempfile::TempDir)> {
    let postfix = tokio::task::spawn_blocking(move || {
        Postfix::start(PostfixOptions::xclient_backend(domains))
    })
    .await??;
    let (dir, port) = relay_in_dir(&postfix, v6)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let relay = Relay::start("relay-in", dir.path(), addr)?;
    Ok((postfix, relay, addr, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_sees_the_real_client_address_and_helo() -> anyhow::Result<()> {
    let (postfix, relay, v4, _dir) = postfix_behind_relay_in(&["example.com"], true).await?;
    let port = v4.port();

    let code = send_from("127.0.0.5".parse()?, v4, "mail.sender.example", "from v4").await?;
    assert_eq!(code, 250, "{}\n{}", relay.log(), postfix.log());
    let v6: SocketAddr = format!("[::1]:{port}").parse()?;
    let code = send_from("::1".parse()?, v6, "six.sender.example", "from v6").await?;
    assert_eq!(code, 250, "{}\n{}", relay.log(), postfix.log());

    let postfix = std::sync::Arc::new(postfix);
    let p = std::sync::Arc::clone(&postfix);
    let delivered = tokio::task::spawn_blocking(move || p.wait_for_delivered(2, WAIT)).await??;
    let log = postfix.log();
    // Postfix's smtpd logs the XCLIENT identity (NAME unknown: rdns is off).
    assert!(log.contains("client=unknown[127.0.0.5]"), "{log}");
    assert!(log.contains("client=unknown[::1]"), "{log}");

    for (subject, helo, addr) in [
        ("from v4", "mail.sender.example", "127.0.0.5"),
        ("from v6", "six.sender.example", "IPv6:::1"),
    ] {
        let message = delivered
            .iter()
            .find(|m| m.header("Subject").as_deref() == Some(subject))
            .unwrap_or_else(|| panic!("{subject} not delivered"));
        let received = message.headers("Received");
        // Postfix's own Received: names the client's HELO and address ...
        let by_postfix = &received[0];
        assert!(
            by_postfix.contains(&format!("from {helo} (unknown [{addr}])")),
            "{received:?}"
        );
        // ... and relay-in's Received: is below it.
        assert!(
            received.iter().any(|r| r.contains("by mx.test (Postern)")),
            "{received:?}"
        );
        assert!(
            !by_postfix.contains("127.0.0.1"),
            "Postfix saw relay-in's address: {by_postfix}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_without_xclient_permission_gets_nothing() -> anyhow::Result<()> {
    let options = PostfixOptions {
        xclient_hosts: String::new(),
        ..PostfixOptions::xclient_backend(&["example.com"])
    };
    let postfix = tokio::task::spawn_blocking(move || Postfix::start(options)).await??;
    let (dir, port) = relay_in_dir(&postfix, false)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _relay = Relay::start("relay-in", dir.path(), addr)?;
    let mut client = SmtpClient::connect(addr).await?;
    client.read_reply().await?;
    client.expect("EHLO c.example", 250).await?;
    let reply = client
        .send_mail("a@o.example", &["user@example.com"], "x")
        .await?;
    assert!(reply.lines[0].starts_with("451 4.7.0"), "{reply:?}");
    // Postfix counts a session's commands when it ends ("disconnect from ...
    // ehlo=1 ..."; the harness's banner probe says no EHLO). Two sessions
    // come from relay-in: its backend probe at start-up and the forward
    // attempt. Both are over, with no MAIL, RCPT or DATA, so nothing was
    // queued to be stored, and both said QUIT rather than hanging up.
    let sessions = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|line| line.contains(" ehlo="))
            .map(str::to_string)
            .collect()
    };
    wait_until(WAIT, "relay-in's two sessions end at Postfix", || {
        sessions(&postfix.log()).len() >= 2
    })
    .await?;
    let log = postfix.log();
    for session in sessions(&log) {
        assert!(
            session.contains("disconnect from unknown[127.0.0.1] ")
                && session.contains(" quit=1")
                && !session.contains(" mail=")
                && !session.contains(" rcpt=")
                && !session.contains(" data="),
            "{log}"
        );
    }
    assert!(!log.contains("lost connection"), "{log}");
    assert!(postfix.delivered().is_empty());
    Ok(())
}

/// A big sender as it is: Postfix's own `smtp-source`, 20 sessions at once
/// from one address, one connection per message, against relay-in with its
/// shipped limits, in front of a real Postfix. Every message is answered 250
/// and stored by Postfix exactly once (each under its own relay-in id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_source_twenty_sessions_from_one_address_all_arrive_once() -> anyhow::Result<()> {
    const MESSAGES: usize = 2000;
    let (postfix, relay, addr, _dir) = postfix_behind_relay_in(&["example.com"], false).await?;

    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("smtp-source")
            .args(["-s", "20", "-m", &MESSAGES.to_string(), "-l", "2000"])
            .args(["-f", "a@test.local", "-t", "user@example.com"])
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
        relay.log()
    );

    let postfix = std::sync::Arc::new(postfix);
    let p = std::sync::Arc::clone(&postfix);
    let delivered = tokio::task::spawn_blocking(move || {
        p.wait_for_delivered(MESSAGES, Duration::from_secs(120))
    })
    .await??;
    let ids: std::collections::HashSet<String> = delivered
        .iter()
        .filter_map(|m| {
            m.headers("Received")
                .into_iter()
                .find(|r| r.contains("(Postern)"))?
                .split(" id ")
                .nth(1)?
                .split(';')
                .next()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(delivered.len(), MESSAGES);
    assert_eq!(
        ids.len(),
        MESSAGES,
        "a message arrived twice or without our Received:"
    );
    let log = relay.log();
    assert!(!log.contains("connection refused"), "{log}");
    Ok(())
}

/// Issue 15's acceptance with a real Postfix backend: mail for a recipient
/// Postfix accepted before is kept while Postfix is stopped, arrives once it
/// runs again (within the 2 s down-probe of the shipped defaults plus 5 s),
/// and Postfix sees the original client and HELO, not relay-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_spool_keeps_mail_while_postfix_is_stopped_and_delivers_it_as_the_original_client()
-> anyhow::Result<()> {
    let mut postfix = tokio::task::spawn_blocking(|| {
        Postfix::start(PostfixOptions::xclient_backend(&["example.com"]))
    })
    .await??;
    let (dir, port) = relay_in_dir(&postfix, false)?;
    let spool = tempfile::tempdir()?;
    let forward = std::fs::read_to_string(dir.path().join("smtp_forward.ini"))?;
    std::fs::write(
        dir.path().join("smtp_forward.ini"),
        format!(
            "{forward}mode=spool\nspool_dir={}\n",
            spool.path().display()
        ),
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let relay = Relay::start("relay-in", dir.path(), addr)?;
    let client: IpAddr = "127.0.0.5".parse()?;

    let code = send_from(client, addr, "mail.sender.example", "live").await?;
    assert_eq!(code, 250, "{}\n{}", relay.log(), postfix.log());
    // Postfix is stopped only once it is done with that message: stopped
    // between its mailbox write and the queue file's removal, it delivers
    // the message again when it starts (seen once: "live" twice, and the
    // wait below ended before "kept" came).
    postfix.wait_for_log(": removed", WAIT)?;

    postfix = tokio::task::spawn_blocking(move || {
        postfix.stop();
        postfix
    })
    .await?;
    let code = send_from(client, addr, "mail.sender.example", "kept").await?;
    assert_eq!(code, 250, "{}", relay.log());
    let mut unseen = SmtpClient::connect_from(client, addr).await?;
    unseen.read_reply().await?;
    unseen.expect("EHLO mail.sender.example", 250).await?;
    let reply = unseen
        .try_mail("sender@origin.example", &["nobody@example.com"], "x")
        .await?;
    assert!(reply.lines[0].starts_with("451 4.4.1"), "{reply:?}");

    let postfix = tokio::task::spawn_blocking(move || {
        postfix.start_again()?;
        Ok::<_, anyhow::Error>(postfix)
    })
    .await??;
    let postfix = std::sync::Arc::new(postfix);
    let p = std::sync::Arc::clone(&postfix);
    let delivered =
        tokio::task::spawn_blocking(move || p.wait_for_delivered(2, Duration::from_secs(2 + 5)))
            .await?
            .map_err(|e| anyhow::anyhow!("{e:#}\n{}", relay.log()))?;
    let kept = delivered
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("kept"))
        .unwrap_or_else(|| {
            let subjects: Vec<_> = delivered.iter().map(|m| m.header("Subject")).collect();
            panic!(
                "the kept message did not arrive; Postfix has {subjects:?}\n{}",
                relay.log()
            )
        });
    let received = kept.headers("Received");
    assert!(
        received[0].contains("from mail.sender.example (unknown [127.0.0.5])"),
        "{received:?}"
    );
    assert!(
        postfix.log().matches("client=unknown[127.0.0.5]").count() >= 2,
        "{}",
        postfix.log()
    );
    Ok(())
}

/// DSN through relay-in: RET, ENVID, NOTIFY and ORCPT reach Postfix (which
/// offers DSN) unchanged, so Postfix's own success notice for the delivery
/// carries the sender's ENVID and ORCPT and comes back with headers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_reach_postfix_and_its_notice_honours_them() -> anyhow::Result<()> {
    // origin.example is local to Postfix too, so its notice to the sender
    // is stored where the test can read it.
    let (postfix, relay, addr, _dir) =
        postfix_behind_relay_in(&["example.com", "origin.example"], false).await?;

    let mut client = SmtpClient::connect(addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    let ehlo = client.expect("EHLO mail.sender.example", 250).await?;
    assert!(ehlo.lines.iter().any(|l| &l[4..] == "DSN"), "{ehlo:?}");
    client
        .expect(
            "MAIL FROM:<sender@origin.example> RET=HDRS ENVID=QQ+2B314159",
            250,
        )
        .await?;
    client
        .expect(
            "RCPT TO:<user@example.com> NOTIFY=SUCCESS ORCPT=rfc822;User@example.com",
            250,
        )
        .await?;
    client.expect("DATA", 354).await?;
    client
        .send(b"Subject: dsn through relay-in\r\n\r\nSECRET BODY\r\n")
        .await?;
    let reply = client.command(".").await?;
    assert_eq!(
        reply.code,
        250,
        "{reply:?}\n{}\n{}",
        relay.log(),
        postfix.log()
    );
    let _ = client.command("QUIT").await;

    // The message, then Postfix's "delivered" notice to the sender.
    let postfix = std::sync::Arc::new(postfix);
    let p = std::sync::Arc::clone(&postfix);
    let delivered = tokio::task::spawn_blocking(move || p.wait_for_delivered(2, WAIT)).await??;
    let notice = delivered
        .iter()
        .find(|m| m.envelope_sender().as_deref() == Some(""))
        .unwrap_or_else(|| panic!("no notice among {delivered:?}\n{}", postfix.log()));
    let text = String::from_utf8_lossy(&notice.raw);
    assert!(text.contains("Original-Envelope-Id: QQ+314159"), "{text}");
    assert!(
        text.contains("Original-Recipient: rfc822;User@example.com"),
        "{text}"
    );
    assert!(text.contains("Action: delivered"), "{text}");
    assert!(text.contains("Subject: dsn through relay-in"), "{text}");
    assert!(!text.contains("SECRET BODY"), "RET=HDRS: {text}");
    assert!(
        postfix
            .log()
            .contains("sender delivery status notification"),
        "{}",
        postfix.log()
    );
    Ok(())
}

/// Queue mode sends the envelope at the client's DATA. A client that leaves
/// in the middle of its message after that: the real Postfix had the
/// envelope (its queue file was opened for the real client), loses the
/// connection in DATA and delivers nothing; the next client's message
/// arrives, alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_message_after_its_envelope_went_gets_nothing_delivered()
-> anyhow::Result<()> {
    let (postfix, relay, addr, _dir) = postfix_behind_relay_in(&["example.com"], false).await?;

    let mut leaving = SmtpClient::connect_from("127.0.0.6".parse()?, addr).await?;
    assert_eq!(leaving.read_reply().await?.code, 220);
    leaving.expect("EHLO leaving.example", 250).await?;
    leaving.expect("MAIL FROM:<a@origin.example>", 250).await?;
    leaving.expect("RCPT TO:<user@example.com>", 250).await?;
    leaving.expect("DATA", 354).await?;
    leaving.send(b"Subject: cut short\r\n\r\npart").await?;
    // Postfix opened the transaction for the real client: the envelope went.
    postfix.wait_for_log("client=unknown[127.0.0.6]", WAIT)?;
    drop(leaving);
    postfix.wait_for_log("lost connection after DATA", WAIT)?;

    let code = send_from("127.0.0.7".parse()?, addr, "after.example", "after").await?;
    assert_eq!(code, 250, "{}\n{}", relay.log(), postfix.log());
    let postfix = std::sync::Arc::new(postfix);
    let p = std::sync::Arc::clone(&postfix);
    let delivered = tokio::task::spawn_blocking(move || p.wait_for_delivered(1, WAIT)).await??;
    let subjects: Vec<_> = delivered.iter().map(|m| m.header("Subject")).collect();
    assert_eq!(subjects, [Some("after".to_string())], "{}", postfix.log());
    Ok(())
}
