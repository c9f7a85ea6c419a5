//! relay-in's lifecycle: systemd notifications and graceful shutdown with
//! transactions in flight.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::process::{Relay, free_port};
use postern_tests::smtp::SmtpClient;

fn config(
    dir: &std::path::Path,
    backend: SocketAddr,
    grace_seconds: u32,
) -> anyhow::Result<SocketAddr> {
    let port = free_port();
    std::fs::write(
        dir.join("smtp.ini"),
        format!("listen=127.0.0.1:{port}\nrdns=off\nforce_shutdown_timeout={grace_seconds}\n"),
    )?;
    std::fs::write(dir.join("me"), "mx.test\n")?;
    std::fs::write(dir.join("host_list"), "example.com\n")?;
    std::fs::write(
        dir.join("smtp_forward.ini"),
        format!("host={}\nport={}\n", backend.ip(), backend.port()),
    )?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_systemd_ready_and_stopping() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let addr = config(dir.path(), backend.addr, 2)?;
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut relay = Relay::start_with_env(
        "relay-in",
        dir.path(),
        addr,
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    )?;
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf)?;
    assert_eq!(std::str::from_utf8(&buf[..n])?.trim(), "READY=1");
    relay.signal(libc::SIGHUP);
    let n = socket.recv(&mut buf)?;
    assert!(std::str::from_utf8(&buf[..n])?.contains("RELOADING=1"));
    let n = socket.recv(&mut buf)?;
    assert_eq!(std::str::from_utf8(&buf[..n])?.trim(), "READY=1");
    let status = tokio::task::spawn_blocking(move || relay.stop(Duration::from_secs(10))).await??;
    let n = socket.recv(&mut buf)?;
    assert_eq!(std::str::from_utf8(&buf[..n])?.trim(), "STOPPING=1");
    assert!(status.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_transaction_in_flight_finish() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let addr = config(dir.path(), backend.addr, 10)?;
    let mut relay = Relay::start("relay-in", dir.path(), addr)?;

    let mut busy = SmtpClient::connect(addr).await?;
    busy.read_reply().await?;
    busy.expect("EHLO c.example", 250).await?;
    busy.expect("MAIL FROM:<a@o.example>", 250).await?;
    busy.expect("RCPT TO:<u@example.com>", 250).await?;
    busy.expect("DATA", 354).await?;
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
        .await?;

    let stopping = tokio::task::spawn_blocking(move || relay.stop(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: no new connections.
    assert!(
        SmtpClient::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );

    busy.send(b"second half\r\n").await?;
    let reply = busy.command(".").await?;
    assert_eq!(reply.code, 250, "{reply:?}");
    // The transaction is over: the server says goodbye.
    let goodbye = busy.read_reply().await?;
    assert!(goodbye.lines[0].starts_with("421 4.3.2"), "{goodbye:?}");
    assert!(stopping.await??.success());
    assert_eq!(backend.accepted().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_outliving_the_grace_period_gets_421() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let addr = config(dir.path(), backend.addr, 1)?;
    let mut relay = Relay::start("relay-in", dir.path(), addr)?;
    let mut slow = SmtpClient::connect(addr).await?;
    slow.read_reply().await?;
    slow.expect("EHLO c.example", 250).await?;
    slow.expect("MAIL FROM:<a@o.example>", 250).await?;
    let stopping = tokio::task::spawn_blocking(move || relay.stop(Duration::from_secs(20)));
    let reply = slow.read_reply().await?;
    assert!(reply.lines[0].starts_with("421 4.3.2"), "{reply:?}");
    assert!(stopping.await??.success());
    assert!(backend.accepted().is_empty());
    Ok(())
}

/// relay-out listens on the WireGuard address, which may not exist yet at
/// boot. With `freebind=true` a listener binds an address that is on no
/// interface (10.0.0.1 here: nothing is sent to it, it is only bound).
#[test]
fn freebind_lets_a_listener_bind_an_address_not_yet_configured() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (port, absent_port) = (free_port(), free_port());
    let probe = SocketAddr::from(([127, 0, 0, 1], port));
    std::fs::write(dir.path().join("host_list"), "example.com\n")?;
    std::fs::write(
        dir.path().join("smtp.ini"),
        format!("listen=127.0.0.1:{port},10.0.0.1:{absent_port}\nrdns=off\nfreebind=true\n"),
    )?;
    let relay = Relay::start("relay-in", dir.path(), probe)?;
    relay.wait_for_log(
        &format!("listen=10.0.0.1:{absent_port}"),
        Duration::from_secs(5),
    )?;
    drop(relay);

    std::fs::write(
        dir.path().join("smtp.ini"),
        format!("listen=127.0.0.1:{port},10.0.0.1:{absent_port}\nrdns=off\n"),
    )?;
    let output = std::process::Command::new(postern_tests::process::binary("relay-in"))
        .args(["-c", &dir.path().display().to_string()])
        .env_remove("JOURNAL_STREAM")
        .output()?;
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&format!("cannot listen on 10.0.0.1:{absent_port}")),
        "{text}"
    );
    Ok(())
}
