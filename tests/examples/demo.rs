//! The newcomer's demo (`deploy/demo.sh`): both relays on loopback, with the
//! example configurations from `config-in/` and `config-out/` and a few
//! environment overrides, one mail through each. Nothing leaves 127.0.0.0/8.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::dns::{TestDns, TestZone};
use postern_tests::postfix::{Postfix, PostfixOptions};
use postern_tests::process::Relay;
use postern_tests::smtp::SmtpClient;

const RELAY_IN: &str = "127.0.0.1:2525";
const RELAY_OUT: &str = "127.0.0.1:2526";
/// "The internet": the recipient's MX for the outbound demo mail.
const REMOTE_MX: &str = "127.0.0.7:2500";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn step(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

/// Copies an example config directory, so the demo can adjust list files.
fn copy_config(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

fn show_log_lines(relay: &Relay, needles: &[&str]) {
    for line in relay
        .log()
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
    {
        println!("    {line}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    println!("Postern demo: everything runs on 127.0.0.0/8; nothing leaves this machine.");
    println!("Working directory: {}", work.path().display());

    step(
        "Starting a private Postfix as the home mail server (standing in for Mailcow), XCLIENT allowed from loopback",
    );
    let postfix = tokio::task::spawn_blocking(|| {
        Postfix::start(PostfixOptions::xclient_backend(&["example.com"]))
    })
    .await??;
    println!("    Postfix listens on {}", postfix.addr());

    step(&format!(
        "Starting relay-in with config-in/ (overridden: listen {RELAY_IN}, backend {})",
        postfix.addr()
    ));
    let in_dir = work.path().join("in");
    copy_config(&repo().join("config-in"), &in_dir)?;
    let backend_port = postfix.addr().port().to_string();
    let relay_in = Relay::start_with_env(
        "relay-in",
        &in_dir,
        RELAY_IN.parse()?,
        &[
            ("POSTERN_SMTP__MAIN__LISTEN", RELAY_IN),
            ("POSTERN_SMTP__MAIN__RDNS", "off"),
            ("POSTERN_SMTP_FORWARD__MAIN__HOST", "127.0.0.1"),
            ("POSTERN_SMTP_FORWARD__MAIN__PORT", &backend_port),
        ],
    )?;

    step(
        "An internet sender (127.0.0.5, HELO mail.sender.example) sends to user@example.com through relay-in",
    );
    let mut client = SmtpClient::connect_from("127.0.0.5".parse()?, RELAY_IN.parse()?).await?;
    println!("    S: {}", client.read_reply().await?.text());
    client.expect("EHLO mail.sender.example", 250).await?;
    let reply = client
        .send_mail("alice@sender.example", &["user@example.com"], "Subject: Hello through Postern\nFrom: alice@sender.example\nTo: user@example.com\n\nThis came in through relay-in.\n")
        .await?;
    println!("    relay-in answered the sender: {}", reply.text());
    anyhow::ensure!(
        reply.code == 250,
        "relay-in did not accept the demo mail:\n{}",
        relay_in.log()
    );
    show_log_lines(&relay_in, &["message accepted"]);
    let delivered = {
        let postfix = &postfix;
        tokio::task::block_in_place(|| postfix.wait_for_delivered(1, Duration::from_secs(15)))?
    };
    println!("    Postfix logged the real client, thanks to XCLIENT:");
    for line in postfix
        .log()
        .lines()
        .filter(|l| l.contains("client=") && l.contains("127.0.0.5"))
    {
        println!("      {line}");
    }
    println!("    The mail in the mailbox starts with:");
    for line in delivered[0]
        .text()
        .lines()
        .take_while(|l| !l.is_empty())
        .take(12)
    {
        println!("      {line}");
    }

    step(&format!(
        "Starting a DNS server (example.net MX -> {REMOTE_MX}) and a receiving MX there"
    ));
    let remote: SocketAddr = REMOTE_MX.parse()?;
    let mx = RecordingBackend::start_on(
        remote,
        Behaviour {
            xclient: None,
            ..Behaviour::default()
        },
    )
    .await?;
    let dns = TestDns::start(
        TestZone::default()
            .mx("example.net", 10, "mx.example.net")
            .a("mx.example.net", "127.0.0.7".parse()?),
    )
    .await?;

    step(&format!(
        "Starting relay-out with config-out/ (overridden: listen {RELAY_OUT}, relay for 127.0.0.1, DNS {})",
        dns.addr()
    ));
    let out_dir = work.path().join("out");
    copy_config(&repo().join("config-out"), &out_dir)?;
    std::fs::write(
        out_dir.join("relay_acl_allow"),
        "# the demo's home server\n127.0.0.1/32\n",
    )?;
    let queue = work.path().join("queue");
    let nameservers = dns.addr().to_string();
    let remote_port = remote.port().to_string();
    let relay_out = Relay::start_with_env(
        "relay-out",
        &out_dir,
        RELAY_OUT.parse()?,
        &[
            ("POSTERN_SMTP__MAIN__LISTEN", RELAY_OUT),
            (
                "POSTERN_OUTBOUND__MAIN__QUEUE_DIR",
                queue.to_str().context("queue path")?,
            ),
            ("POSTERN_OUTBOUND__MAIN__NAMESERVERS", &nameservers),
            ("POSTERN_OUTBOUND__MAIN__REMOTE_PORT", &remote_port),
            ("POSTERN_OUTBOUND__MAIN__LOCAL_MX_OK", "true"),
        ],
    )?;

    step("The home server (127.0.0.1) sends to friend@example.net through relay-out");
    let mut client = SmtpClient::connect(RELAY_OUT.parse()?).await?;
    client.read_reply().await?;
    client.expect("EHLO home.example.com", 250).await?;
    let reply = client
        .send_mail("user@example.com", &["friend@example.net"], "Subject: Hello from home\nFrom: user@example.com\nTo: friend@example.net\n\nThis went out through relay-out.\n")
        .await?;
    println!("    relay-out answered: {}", reply.text());
    anyhow::ensure!(
        reply.code == 250,
        "relay-out did not queue the demo mail:\n{}",
        relay_out.log()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while mx.accepted().is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not delivered within 20 s:\n{}",
            relay_out.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = &mx.accepted()[0];
    println!(
        "    Delivered to the MX at {} from {}: MAIL FROM {} RCPT {:?}",
        REMOTE_MX,
        accepted.peer.ip(),
        accepted.mail_from,
        accepted.rcpts
    );
    show_log_lines(&relay_out, &["delivered", "Queued", "queued"]);

    step("Done. Both relays and the helpers stop now.");
    println!(
        "    Next: README.md (configuration) and docs/setup.md (a real VPS + WireGuard + Mailcow)."
    );
    Ok(())
}
