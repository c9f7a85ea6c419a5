//! relay-out keeps an SMTP session open for the next message to the same MX
//! host (`courier::session_cache`): a backlog to one MX goes over a few
//! connections, counted by Postfix's own smtp-sink; a kept session serves
//! only messages whose TLS policy would have opened the same session; an MX
//! that closed the idle session gets the next message on a new one.
//!
//! Needs root and Postfix's smtp-sink (`.ci/install-test-deps`); run sealed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::bench::smtp_sink;
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, host, ip, queue_id, wait_until};
use postern_tests::process::{free_port, running_as_root};
use postern_tests::tls_mx::StartTlsMx;

const WAIT: Duration = Duration::from_secs(20);
const MX_NAME: &str = "mx.dest.test";

/// dest.test and the other domains named, all with one MX on 127.0.0.2.
fn zone(domains: &[&str]) -> TestZone {
    domains
        .iter()
        .fold(TestZone::new(), |zone, domain| zone.mx(domain, 10, MX_NAME))
        .a(MX_NAME, ip(2))
}

/// Postfix's smtp-sink on 127.0.0.2, counting sessions and messages (`-c`).
struct Sink {
    child: Child,
    output: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sink {
    /// `timeout`: smtp-sink's `-t`, how long it waits for a command before
    /// it closes the session.
    async fn start(timeout_seconds: u32) -> anyhow::Result<Sink> {
        let dir = tempfile::tempdir()?;
        let output = dir.path().join("sink.out");
        let port = free_port();
        let mut command = Command::new("/usr/sbin/smtp-sink");
        if running_as_root() {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .args(["-c", "-t", &timeout_seconds.to_string()])
            .arg(host(2, port).to_string())
            .arg("100")
            .stdout(std::fs::File::create(&output)?)
            .stderr(Stdio::null())
            .spawn()?;
        wait_until(WAIT, "smtp-sink listening", || {
            std::net::TcpStream::connect(host(2, port)).is_ok()
        })
        .await?;
        // That probe was a session of its own.
        wait_until(WAIT, "smtp-sink counting the probe", || {
            counter(&output, "sess=") == Some(1)
        })
        .await?;
        Ok(Sink {
            child,
            output,
            port,
            _dir: dir,
        })
    }

    fn messages(&self) -> u64 {
        smtp_sink::messages(&self.output)
    }

    /// Sessions from relay-out (the start-up probe not counted), once
    /// every one has ended: smtp-sink counts a session when it ends.
    async fn sessions(&self) -> anyhow::Result<u64> {
        let port = format!("sport = :{}", self.port);
        wait_until(WAIT, "every session with smtp-sink ended", || {
            Command::new("ss")
                .args(["-Htn", "state", "established", "state", "close-wait"])
                .arg(&port)
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
        })
        .await?;
        Ok(counter(&self.output, "sess=")
            .unwrap_or(0)
            .saturating_sub(1))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `NAME=N` of smtp-sink's `-c` output.
fn counter(output: &Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(output).ok()?;
    let rest = text.rsplit(name).next().filter(|_| text.contains(name))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_to_one_mx_goes_over_a_few_sessions() -> anyhow::Result<()> {
    const MESSAGES: u64 = 30;
    let sink = Sink::start(100).await?;
    let out = Outbound::start(
        zone(&["dest.test"]),
        sink.port,
        OutboundOptions {
            outbound: "disabled=true\ndomain_concurrency_max=2\n".into(),
            ..OutboundOptions::default()
        },
    )
    .await?;
    for n in 0..MESSAGES {
        let reply = out
            .submit(
                "a@origin.test",
                &["u@dest.test"],
                &format!("Subject: {n}\n\nhi\n"),
            )
            .await?;
        queue_id(&reply)?;
    }
    out.write_outbound(sink.port, "domain_concurrency_max=2\n")?;
    let (code, output) = out.queue(&["flush"])?;
    assert_eq!(code, 0, "{output}");
    wait_until(WAIT, "every message at the sink", || {
        sink.messages() >= MESSAGES
    })
    .await?;
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    assert_eq!(sink.messages(), MESSAGES, "no duplicates");
    // Two sessions at once (domain_concurrency_max), each kept for the
    // next message; a slow machine may let one idle past its limit.
    let sessions = sink.sessions().await?;
    assert!(
        (1..=4).contains(&sessions),
        "{MESSAGES} messages over {sessions} sessions"
    );
    let delivered = out
        .log()
        .lines()
        .filter(|l| l.contains("result=delivered"))
        .count();
    assert_eq!(delivered as u64, MESSAGES, "{}", out.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_serves_only_messages_whose_tls_policy_it_meets() -> anyhow::Result<()> {
    // The farm only reserves the port (on 127.0.0.9); the TLS MX takes 127.0.0.2.
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let mx = StartTlsMx::start_on(host(2, farm.port), MX_NAME, false).await?;
    let out = Outbound::start(
        zone(&["plain.test", "may.test", "verify.test"]),
        farm.port,
        OutboundOptions {
            files: vec![
                (
                    "tls_policy.ini".to_owned(),
                    "ca_file=mx-ca.pem\n[plain.test]\npolicy=none\n[verify.test]\npolicy=verify\n"
                        .to_owned(),
                ),
                ("mx-ca.pem".to_owned(), mx.ca_pem.clone()),
            ],
            ..OutboundOptions::default()
        },
    )
    .await?;
    // One after another, each delivered before the next is sent, all to the
    // same MX host: policy none (clear text), may (STARTTLS, certificate not
    // checked), verify (STARTTLS, certificate checked), twice over.
    let domains = ["plain.test", "may.test", "verify.test"];
    for (n, domain) in domains.iter().chain(domains.iter()).enumerate() {
        out.submit(
            "a@origin.test",
            &[&format!("u@{domain}")],
            &format!("Subject: {n}\n\nhi\n"),
        )
        .await?;
        wait_until(WAIT, "delivery", || mx.accepted().len() == n + 1).await?;
    }
    let accepted = mx.accepted();
    let seen: Vec<(&str, bool, usize)> = accepted
        .iter()
        .map(|a| (a.rcpts[0].as_str(), a.tls, a.connection))
        .collect();
    // Each policy's second message came over its first one's session...
    for index in 0..3 {
        assert_eq!(seen[index].2, seen[index + 3].2, "{seen:?}");
    }
    // ...and no policy's session served another policy's message.
    assert_ne!(seen[0].2, seen[1].2, "{seen:?}");
    assert_ne!(seen[1].2, seen[2].2, "{seen:?}");
    assert_ne!(seen[0].2, seen[2].2, "{seen:?}");
    let tls: Vec<bool> = seen.iter().map(|s| s.1).collect();
    assert_eq!(tls, [false, true, true, false, true, true], "{seen:?}");
    let log = out.log();
    for line in log.lines().filter(|l| l.contains("result=delivered")) {
        let policy = ["none", "may", "verify"]
            .into_iter()
            .find(|p| line.contains(&format!("tls_policy={p} ")));
        let domain = ["plain.test", "may.test", "verify.test"]
            .into_iter()
            .find(|d| line.contains(&format!("domain={d}")));
        assert!(
            matches!(
                (domain, policy),
                (Some("plain.test"), Some("none"))
                    | (Some("may.test"), Some("may"))
                    | (Some("verify.test"), Some("verify"))
            ),
            "{line}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_mx_closed_while_idle_is_replaced_by_a_new_one() -> anyhow::Result<()> {
    // smtp-sink closes a session that sends no command for 1 s; relay-out
    // keeps an idle session for 2 s, so the next message finds it closed.
    let sink = Sink::start(1).await?;
    let out = Outbound::start(zone(&["dest.test"]), sink.port, OutboundOptions::default()).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: 1\n\nhi\n")
        .await?;
    wait_until(WAIT, "the first message", || sink.messages() == 1).await?;
    // The sink's timeout: relay-out's end of the connection is left with
    // the sink's FIN unread (CLOSE-WAIT).
    let peer = host(2, sink.port).to_string();
    wait_until(WAIT, "smtp-sink closing the idle session", || {
        Command::new("ss")
            .args(["-Htn", "state", "close-wait", "dst", &peer])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty())
    })
    .await?;
    let second = queue_id(
        &out.submit("a@origin.test", &["u@dest.test"], "Subject: 2\n\nhi\n")
            .await?,
    )?;
    wait_until(WAIT, "the second message", || sink.messages() == 2).await?;
    out.wait_for_log(&format!("queue_id={second} domain=dest.test"), WAIT)
        .await?;
    let log = out.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("queue_id={second}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("kept session closed by the host")),
        "the kept session was tried: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("result=delivered")),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("result=host-failed") || l.contains("result=deferred")),
        "{lines:#?}"
    );
    assert_eq!(sink.sessions().await?, 2);
    assert_eq!(sink.messages(), 2);
    Ok(())
}
