//! relay-in under journald: the entries it sends carry the field names that
//! docs/troubleshooting.md tells the administrator to select on (`CLIENT`,
//! `ID`, `CODE`, `CONN`, `BACKEND`, `RCPT`, …, with no `F_` prefix), a
//! `MESSAGE`, the `PRIORITY` of their level and `SYSLOG_IDENTIFIER=relay-in`.
//!
//! The real binary runs in a private mount namespace where
//! `/run/systemd/journal` is a bind mount of a temp dir holding the test's
//! own datagram socket ([`JournalSocket`]), with `JOURNAL_STREAM` set as
//! systemd sets it; the host's journald never sees anything. Needs root
//! (the README's test command runs the suite as root) and `unshare`.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::journal::{Entry, JournalSocket, valid_field_name};
use postern_tests::process::{binary, free_port, running_as_root};
use postern_tests::relay_in::greeted;

/// How long any one expected entry may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

/// Mounts the journal dir ($1) on /run/systemd/journal, then becomes the
/// daemon ($2 -c $3). Where the host has no /run/systemd/journal, a tmpfs
/// over /run/systemd (or /run) provides the mount point, inside the
/// namespace only.
const IN_PRIVATE_JOURNAL: &str = r#"set -e
if [ ! -d /run/systemd/journal ]; then
    if [ -d /run/systemd ]; then
        mount -t tmpfs -o mode=0755 postern-test /run/systemd
    else
        mount -t tmpfs -o mode=0755 postern-test /run
        mkdir /run/systemd
    fi
    mkdir /run/systemd/journal
fi
mount --bind "$1" /run/systemd/journal
exec "$2" -c "$3"
"#;

/// The daemon, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts relay-in as systemd would with `StandardError=journal`: stderr
/// is a stream whose `<device>:<inode>` is in `JOURNAL_STREAM` (here a file,
/// which also catches anything written before logging is set up).
fn start_under_journal(journal: &JournalSocket, config: &Path) -> anyhow::Result<Daemon> {
    let stderr_path = config.join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path)?;
    let stream = stderr.metadata()?;
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(IN_PRIVATE_JOURNAL)
        .arg("sh")
        .arg(journal.dir())
        .arg(binary("relay-in"))
        .arg(config)
        .env(
            "JOURNAL_STREAM",
            format!("{}:{}", stream.dev(), stream.ino()),
        )
        .env("RUST_LOG", "debug")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("spawning unshare (util-linux)")?;
    Ok(Daemon(child))
}

/// Waits for `what`; on failure, adds the daemon's stderr (where it logs
/// if it could not reach the journal socket).
fn expect(
    journal: &mut JournalSocket,
    config: &Path,
    what: &str,
    wanted: impl Fn(&Entry) -> bool,
) -> anyhow::Result<Entry> {
    tokio::task::block_in_place(|| journal.wait_for(what, WAIT, wanted)).with_context(|| {
        let stderr = std::fs::read_to_string(config.join("stderr.log")).unwrap_or_default();
        format!("relay-in's stderr:\n{stderr}")
    })
}

fn field(entry: &Entry, name: &str) -> anyhow::Result<String> {
    entry
        .get(name)
        .with_context(|| format!("no {name} field in: {entry}"))
}

/// Waits until nothing accepts connections on `addr` any more.
fn wait_refused(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        ensure!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_in_logs_the_documented_fields_to_journald() -> anyhow::Result<()> {
    ensure!(
        running_as_root(),
        "this test mounts in a private namespace: run it as root (the README's test command does)"
    );
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path();
    let port = free_port();
    let missing = config.join("missing.pem");
    let files = [
        (
            "smtp.ini",
            format!("listen=127.0.0.1:{port}\nrdns=off\nforce_shutdown_timeout=3\n"),
        ),
        ("me", "mx.test\n".into()),
        ("host_list", "example.com\n".into()),
        (
            "smtp_forward.ini",
            format!(
                "host={}\nport={}\nconnect_timeout=2\ntimeout=2\n",
                backend.addr.ip(),
                backend.addr.port()
            ),
        ),
        // A certificate that is not there: an error-level entry at start.
        ("tls.ini", format!("key={0}\ncert={0}\n", missing.display())),
    ];
    for (name, text) in files {
        std::fs::write(config.join(name), text)?;
    }
    let mut journal = JournalSocket::bind()?;
    let mut daemon = start_under_journal(&journal, config)?;
    let j = &mut journal;

    // Start: info is PRIORITY 5 (notice), error 3, and the first line says
    // the journal is where logs go.
    let starting = expect(j, config, "the startup line", |e| {
        e.message() == "relay-in starting"
    })?;
    assert_eq!(field(&starting, "LOGS")?, "journald", "{starting}");
    assert_eq!(field(&starting, "PRIORITY")?, "5", "{starting}");
    let tls = expect(j, config, "the unusable certificate", |e| {
        e.message().starts_with("TLS certificate unusable")
    })?;
    assert_eq!(field(&tls, "PRIORITY")?, "3", "{tls}");
    assert!(
        field(&tls, "ERROR")?.contains(&*missing.to_string_lossy()),
        "{tls}"
    );
    let listening = expect(j, config, "the listener", |e| e.message() == "listening")?;
    assert_eq!(field(&listening, "LISTEN")?, format!("127.0.0.1:{port}"));

    // One connection: a refused recipient, then a message the backend takes.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut client = greeted(addr, "client.example").await?;
    let peer = client.local_addr();
    let opened = expect(j, config, "the connection (debug)", |e| {
        e.message() == "connection opened"
            && e.get("CLIENT") == Some(peer.ip().to_string())
            && e.get("PORT") == Some(peer.port().to_string())
    })?;
    assert_eq!(field(&opened, "PRIORITY")?, "6", "debug is informational");
    let conn = field(&opened, "CONN")?;
    client.expect("MAIL FROM:<a@sender.example>", 250).await?;
    client.expect("RCPT TO:<x@elsewhere.example>", 550).await?;
    let refused = expect(j, config, "the refused recipient", |e| {
        e.message() == "recipient refused" && e.get("CONN") == Some(conn.clone())
    })?;
    assert_eq!(field(&refused, "CLIENT")?, "127.0.0.1");
    assert_eq!(field(&refused, "RCPT")?, "<x@elsewhere.example>");
    assert_eq!(field(&refused, "PRIORITY")?, "5");
    field(&refused, "REASON")?;
    client.expect("RCPT TO:<u@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(b"Subject: journald\r\n\r\nhello\r\n").await?;
    let reply = client.command(".").await?;
    ensure!(reply.code == 250, "the message was not accepted: {reply:?}");
    // `250 2.0.0 Ok: queued as BACKEND1 (<id>)`: what the sender quotes.
    let text = reply.text();
    let id = text
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .with_context(|| format!("no transaction id in {text:?}"))?;
    let accepted = expect(j, config, "the accepted message", |e| {
        e.message().starts_with("message accepted: 250")
    })?;
    assert_eq!(
        field(&accepted, "ID")?,
        id,
        "journalctl ID=<id from the reply>"
    );
    assert_eq!(field(&accepted, "CLIENT")?, "127.0.0.1");
    assert_eq!(field(&accepted, "CODE")?, "250");
    assert_eq!(field(&accepted, "CONN")?, conn);
    assert_eq!(field(&accepted, "HELO")?, "client.example");
    assert_eq!(field(&accepted, "FROM")?, "<a@sender.example>");
    assert_eq!(field(&accepted, "RCPTS")?, "<u@example.com>");
    assert_eq!(field(&accepted, "TLS")?, "no");
    assert_eq!(field(&accepted, "PRIORITY")?, "5");
    client.expect("QUIT", 221).await?;

    // The backend gone: warn is PRIORITY 4, and the 451 is logged with its code.
    backend.down();
    tokio::task::block_in_place(|| wait_refused(backend.addr))?;
    let mut client = greeted(addr, "client.example").await?;
    let reply = client
        .send_mail("a@sender.example", &["u@example.com"], "hello\n")
        .await?;
    ensure!(
        reply.code == 451,
        "expected 451 with the backend down: {reply:?}"
    );
    let failed = expect(j, config, "the failed backend connection", |e| {
        e.message().starts_with("backend connection failed")
    })?;
    assert_eq!(field(&failed, "PRIORITY")?, "4", "{failed}");
    assert_eq!(field(&failed, "BACKEND")?, backend.addr.to_string());
    let conn_2 = field(&failed, "CONN")?;
    assert_ne!(conn_2, conn);
    let rejected = expect(j, config, "the rejected message", |e| {
        e.message().starts_with("message rejected: 451")
    })?;
    assert_eq!(field(&rejected, "CODE")?, "451");
    assert_eq!(field(&rejected, "CONN")?, conn_2);
    assert_ne!(field(&rejected, "ID")?, id);

    // Shutdown still goes to the journal.
    // SAFETY: kill(2) on our own child's pid (unshare and sh exec into relay-in).
    unsafe {
        libc::kill(daemon.0.id() as i32, libc::SIGTERM);
    }
    expect(j, config, "the last line", |e| e.message() == "stopped")?;
    let status = tokio::task::block_in_place(|| daemon.0.wait())?;
    ensure!(status.success(), "relay-in exited with {status}");

    // Every entry: names journald keeps, none with tracing-journald's
    // default `F_` prefix, a message, a priority, who sent it.
    let mut names = std::collections::BTreeSet::new();
    for entry in journal.received() {
        for name in entry.names() {
            ensure!(valid_field_name(name), "journald drops {name:?}: {entry}");
            ensure!(!name.starts_with("F_"), "prefixed field {name:?}: {entry}");
            names.insert(name.to_owned());
        }
        ensure!(!entry.message().is_empty(), "no MESSAGE: {entry}");
        ensure!(
            entry.all("PRIORITY").len() == 1
                && matches!(
                    entry.get("PRIORITY").as_deref(),
                    Some("3" | "4" | "5" | "6")
                ),
            "PRIORITY: {entry}"
        );
        ensure!(
            entry.all("SYSLOG_IDENTIFIER") == ["relay-in"],
            "SYSLOG_IDENTIFIER: {entry}"
        );
    }
    // The fields docs/troubleshooting.md names for `journalctl FIELD=…`.
    for documented in ["CONN", "CLIENT", "ID", "CODE", "BACKEND", "RCPT"] {
        if !names.contains(documented) {
            bail!("no entry carried {documented}; names seen: {names:?}");
        }
    }
    Ok(())
}
