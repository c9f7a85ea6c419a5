//! Hostile input against the real relay-in (issue 8): smuggling, slowloris,
//! recipient floods, oversized data, garbage bytes and TLS garbage, clients
//! vanishing mid-DATA, XCLIENT and AUTH from clients. Each gets the right
//! reply and a log line; the relay never panics, hangs or forwards junk.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::outbound::submit_to;
use postern_tests::process::{Relay, free_port};
use postern_tests::smtp::{ClientReply, SmtpClient};
use tokio::task::JoinSet;

struct Setup {
    _dir: tempfile::TempDir,
    relay: Relay,
    addr: SocketAddr,
}

fn start(backend: SocketAddr, smtp_extra: &str, files: &[(&str, &str)]) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    std::fs::write(
        dir.path().join("smtp.ini"),
        format!("listen=127.0.0.1:{port}\nrdns=off\n{smtp_extra}\n"),
    )?;
    std::fs::write(dir.path().join("me"), "mx.test\n")?;
    std::fs::write(dir.path().join("host_list"), "example.com\n")?;
    std::fs::write(
        dir.path().join("smtp_forward.ini"),
        format!("host=127.0.0.1\nport={}\ntimeout=5\n", backend.port()),
    )?;
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text)?;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let relay = Relay::start("relay-in", dir.path(), addr)?;
    Ok(Setup {
        _dir: dir,
        relay,
        addr,
    })
}

async fn in_data(addr: SocketAddr) -> anyhow::Result<SmtpClient> {
    let mut client = SmtpClient::connect(addr).await?;
    client.read_reply().await?;
    client.expect("EHLO c.example", 250).await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    client.expect("RCPT TO:<u@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    Ok(client)
}

const LOOKALIKES: &[(&str, &[u8])] = &[
    ("lf.lf", b"\n.\n"),
    ("lf.crlf", b"\n.\r\n"),
    ("cr.cr", b"\r.\r"),
    ("crlf.cr", b"\r\n.\r"),
    ("cr.crlf", b"\r.\r\n"),
    ("crlf.lf", b"\r\n.\n"),
    ("crlf-nul.crlf", b"\r\n\x00.\r\n"),
    ("crlf.crcrlf", b"\r\n.\r\r\n"),
];

/// A CR not followed by LF, or an LF not preceded by CR.
fn has_bare_newline(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
            || (b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_messages_never_reach_the_backend() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    for (mode, extra) in [
        ("reject", ""),
        ("normalize", "[main]\nbare_newline=normalize\n"),
    ] {
        let s = start(backend.addr, "", &[("connection.ini", extra)])?;
        for (name, lookalike) in LOOKALIKES {
            let mut client = in_data(s.addr).await?;
            let mut data = b"Subject: first\r\n\r\nhello".to_vec();
            data.extend_from_slice(lookalike);
            data.extend_from_slice(b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n");
            client.send(&data).await?;
            let reply = client.read_reply().await?;
            // A bare CR or LF rejects the message unless normalizing; a
            // lookalike without one (NUL) is just body text.
            let bare = has_bare_newline(lookalike);
            if mode == "reject" && bare {
                assert!(reply.lines[0].starts_with("550 5.5.2"), "{name}: {reply:?}");
            } else {
                assert_eq!(reply.code, 250, "{name}: {reply:?}");
            }
            // Exactly one reply: nothing after the real end was taken as commands.
            client.silent_for(Duration::from_millis(200)).await?;
            client.expect("QUIT", 221).await?;
        }
    }
    let accepted = backend.accepted();
    // Each accepted message arrives once, the would-be second message inside
    // its body: every lookalike in normalize mode, the NUL one in reject mode.
    let without_bare = LOOKALIKES
        .iter()
        .filter(|(_, l)| !has_bare_newline(l))
        .count();
    assert_eq!(
        accepted.len(),
        LOOKALIKES.len() + without_bare,
        "{accepted:?}"
    );
    for message in &accepted {
        assert_eq!(message.mail_from, "<a@o.example>");
        assert_eq!(message.rcpts, ["u@example.com"]);
        assert!(String::from_utf8_lossy(&message.data).contains("smuggled"));
    }
    assert!(backend.lines_starting("MAIL FROM:<evil").is_empty());
    Ok(())
}

/// Drips a byte a second into an unfinished command line, waiting that
/// second for the server's reply each time, until one comes; at most 10
/// bytes (10 s), more than twice the 4 s line deadline.
async fn drip_until_cut(mut client: SmtpClient) -> anyhow::Result<ClientReply> {
    const DRIP: Duration = Duration::from_secs(1);
    const MAX_DRIPS: usize = 10;
    for drip in 0..MAX_DRIPS {
        // A send may fail once the server has closed; its reply is read below.
        let _ = client.send(if drip % 2 == 0 { b"H" } else { b"L" }).await;
        if let Ok(reply) = tokio::time::timeout(DRIP, client.read_reply()).await {
            return reply;
        }
    }
    anyhow::bail!("still connected after {MAX_DRIPS} bytes, one every {DRIP:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_and_does_not_stop_a_normal_client() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(
        backend.addr,
        "inactivity_timeout=4\nmax_connections=3000",
        &[("limit.ini", "[concurrency]\nmax=3000\n")],
    )?;
    // 2,000 clients that drip one byte at a time and never finish a line.
    let mut slow = Vec::new();
    for _ in 0..2000 {
        let mut c = SmtpClient::connect(s.addr).await?;
        assert_eq!(c.read_reply().await?.code, 220);
        c.send(b"E").await?;
        slow.push(c);
    }
    let started = Instant::now();
    let mut normal = SmtpClient::connect_from("127.0.0.2".parse()?, s.addr).await?;
    assert_eq!(normal.read_reply().await?.code, 220);
    normal.expect("EHLO normal.example", 250).await?;
    let reply = normal
        .send_mail("a@o.example", &["u@example.com"], "Subject: normal\n\nok\n")
        .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the normal client waited {:?}",
        started.elapsed()
    );
    // Every 100th dripper keeps dripping, a byte a second, until it is cut:
    // the line deadline (4 s after the greeting), not the last byte, ends it
    // with 421 4.4.2. A deadline that each byte pushed back would never come.
    let mut drippers = JoinSet::new();
    let mut idle = Vec::new();
    for (n, c) in slow.into_iter().enumerate() {
        if n % 100 == 0 {
            drippers.spawn(drip_until_cut(c));
        } else {
            idle.push(c);
        }
    }
    while let Some(dripper) = drippers.join_next().await {
        let reply = dripper??;
        assert!(reply.lines[0].starts_with("421 4.4.2"), "{reply:?}");
    }
    s.relay
        .wait_for_log("inactivity timeout", Duration::from_secs(10))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_recipients_get_452_after_the_limit() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(backend.addr, "", &[])?;
    let mut client = SmtpClient::connect(s.addr).await?;
    client.read_reply().await?;
    client.expect("EHLO c.example", 250).await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    let mut batch = Vec::new();
    for i in 0..20_000 {
        batch.extend_from_slice(format!("RCPT TO:<u{i}@example.com>\r\n").as_bytes());
    }
    client.send(&batch).await?;
    let (mut ok, mut full) = (0, 0);
    for _ in 0..20_000 {
        let reply = client.read_reply().await?;
        match reply.code {
            250 => ok += 1,
            452 => {
                assert!(reply.lines[0].starts_with("452 4.5.3"), "{reply:?}");
                full += 1
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!((ok, full), (1000, 19_000));
    client.expect("RSET", 250).await?;
    Ok(())
}

/// Resident memory of a process, from /proc (VmRSS now, VmHWM the peak).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// 100 MB of DATA over the 25 MiB limit gets 552 5.3.4, is not forwarded,
/// and costs less than 10 MB of memory: past spool_after (1 MiB) the
/// message goes to a temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabytes_over_the_limit_is_refused_and_costs_no_memory() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(backend.addr, "", &[])?;
    let pid = s.relay.pid();
    let before = memory_kib(pid, "VmHWM:");
    let mut client = in_data(s.addr).await?;
    let line = [b'x'; 998];
    let mut chunk = Vec::with_capacity(1 << 20);
    while chunk.len() < (1 << 20) - 1000 {
        chunk.extend_from_slice(&line);
        chunk.extend_from_slice(b"\r\n");
    }
    for _ in 0..100 {
        client.send(&chunk).await?;
    }
    let reply = client.command(".").await?;
    assert!(reply.lines[0].starts_with("552 5.3.4"), "{reply:?}");
    let peak = memory_kib(pid, "VmHWM:");
    assert!(
        peak < before + 10 * 1024,
        "peak RSS went from {before} KiB to {peak} KiB"
    );
    assert!(backend.accepted().is_empty());
    client.expect("NOOP", 250).await?;
    Ok(())
}

/// A 5 MB message goes to disk on the way and arrives byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_is_spilled_to_disk_and_forwarded_intact() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = start(
        backend.addr,
        "",
        &[("connection.ini", "[main]\nspool_after=65536\n")],
    )?;
    let mut client = in_data(s.addr).await?;
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..60_000u32 {
        body.extend_from_slice(
            format!("{i:08} .. line of a big message, with a leading dot below\r\n.x\r\n")
                .as_bytes(),
        );
    }
    let mut wire = Vec::with_capacity(body.len() + 100_000);
    smtp_protocol::data::dot_stuff(&body, &mut wire);
    client.send(&wire).await?;
    let reply = client.read_reply().await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    let accepted = backend.accepted();
    let data = &accepted[0].data;
    let start = data
        .windows(14)
        .position(|w| w == b"Subject: big\r\n")
        .expect("subject");
    assert_eq!(&data[start..], &body[..], "the message changed on its way");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_commands_tls_garbage_and_vanishing_clients() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let ca = postern_tests::certs::TestCa::new("abuse CA")?;
    let dir_pem = tempfile::tempdir()?;
    let pem = dir_pem.path().join("tls.pem");
    ca.issue("mx.test")?.write_combined(&pem)?;
    let tls_ini = format!("key={0}\ncert={0}\n", pem.display());
    let s = start(backend.addr, "", &[("tls.ini", &tls_ini)])?;

    // NUL bytes and invalid UTF-8 in commands: 501, the session goes on.
    let mut client = SmtpClient::connect(s.addr).await?;
    client.read_reply().await?;
    for garbage in [
        &b"HELO \x00evil\r\n"[..],
        b"EHLO \xff\xfe\r\n",
        b"MAIL FROM:<\xc3\x28@x.example>\r\n",
        b"\x00\x00\x00\r\n",
    ] {
        client.send(garbage).await?;
        let reply = client.read_reply().await?;
        assert!(
            matches!(reply.code, 500 | 501 | 503 | 553),
            "{garbage:?}: {reply:?}"
        );
    }
    // XCLIENT and AUTH from a client.
    client.expect("EHLO c.example", 250).await?;
    assert_eq!(client.command("XCLIENT ADDR=203.0.113.1").await?.code, 500);
    assert_eq!(client.command("AUTH PLAIN AGEAYg==").await?.code, 502);

    // Garbage instead of a TLS handshake: that connection ends, others go on.
    let mut tls = SmtpClient::connect(s.addr).await?;
    tls.read_reply().await?;
    tls.expect("EHLO c.example", 250).await?;
    tls.expect("STARTTLS", 220).await?;
    tls.send(b"this is not a TLS ClientHello\r\n\r\n").await?;
    assert!(
        tls.closed_within(Duration::from_secs(5))
            .await
            .unwrap_or(true)
    );
    s.relay
        .wait_for_log("TLS handshake failed", Duration::from_secs(5))?;

    // A client that vanishes mid-DATA: nothing is forwarded.
    let mut vanishing = in_data(s.addr).await?;
    vanishing
        .send(b"Subject: half\r\n\r\nhalf a message")
        .await?;
    drop(vanishing);
    s.relay
        .wait_for_log("connection ended mid-transaction", Duration::from_secs(5))?;

    // Still serving: a message sent after all of that goes through (the
    // backend has it when relay-in says 250), and it is all that reached the
    // backend, although every session above had ended before it began.
    let reply = submit_to(
        s.addr,
        None,
        "after@o.example",
        &["u@example.com"],
        "Subject: after\n\nok\n",
    )
    .await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    let accepted = backend.accepted();
    let (last, before) = accepted.split_last().expect("the message sent after");
    assert_eq!(last.mail_from, "<after@o.example>");
    assert!(before.is_empty(), "{before:?}");
    // The vanishing client's envelope may have reached the backend (queue
    // mode sends it at DATA, while the message arrives); its message did not.
    let mail = backend.lines_starting("MAIL");
    let (last_mail, earlier) = mail.split_last().expect("the MAIL sent after");
    assert!(
        last_mail.starts_with("MAIL FROM:<after@o.example>")
            && earlier
                .iter()
                .all(|l| l.starts_with("MAIL FROM:<a@o.example>")),
        "{mail:?}"
    );
    assert!(!s.relay.log().contains("panicked"), "{}", s.relay.log());
    Ok(())
}
