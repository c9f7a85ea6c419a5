//! relay-in as a process: certificate reload, early talkers, shutdown,
//! and `--check` on real directories.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::certs::TestCa;
use postern_tests::process::{Relay, free_port, run};
use postern_tests::smtp::SmtpClient;

/// A relay-in config directory on a free loopback port, with a certificate.
struct Setup {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    ca: TestCa,
}

fn setup(extra: &[(&str, &str)]) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let ca = TestCa::new("Postern test CA")?;
    let pem = dir.path().join("tls.pem");
    ca.issue("mx.test")?.write_combined(&pem)?;
    let files = [
        (
            "smtp.ini",
            format!("listen=127.0.0.1:{port}\nrdns=off\nforce_shutdown_timeout=3\n"),
        ),
        ("me", "mx.test\n".to_string()),
        ("host_list", "example.com\n".to_string()),
        ("tls.ini", format!("key={0}\ncert={0}\n", pem.display())),
        ("smtp_forward.ini", "host=127.0.0.1\nport=9\n".to_string()),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text)?;
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text)?;
    }
    Ok(Setup {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
        ca,
    })
}

/// smtp_forward.ini for `backend`.
fn forwarding_to(backend: &RecordingBackend) -> String {
    format!("host=127.0.0.1\nport={}\n", backend.addr.port())
}

async fn greet_and_starttls(
    addr: SocketAddr,
    ca: &TestCa,
) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    let mut client = SmtpClient::connect(addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO c.example", 250).await?;
    client.expect("STARTTLS", 220).await?;
    client.upgrade_tls(&ca.cert_der, "mx.test").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_replaced_on_disk_is_served_on_the_next_handshake() -> anyhow::Result<()> {
    let s = setup(&[])?;
    let _relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let first = greet_and_starttls(s.addr, &s.ca).await?;

    // acme.sh renewal: a new key and certificate written over the old file.
    let renewed = s.ca.issue("mx.test")?;
    renewed.write_combined(&s.dir.path().join("tls.pem"))?;
    let second = greet_and_starttls(s.addr, &s.ca).await?;

    assert_ne!(first[0], second[0], "the old certificate is still served");
    assert_eq!(second[0], renewed.cert_der);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_certificate_file_keeps_the_old_one() -> anyhow::Result<()> {
    let s = setup(&[])?;
    let relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let first = greet_and_starttls(s.addr, &s.ca).await?;
    std::fs::write(s.dir.path().join("tls.pem"), "-----BEGIN garbage\n")?;
    let second = greet_and_starttls(s.addr, &s.ca).await?;
    assert_eq!(first[0], second[0]);
    relay.wait_for_log("tls.pem", Duration::from_secs(5))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_speaking_before_the_banner_is_refused() -> anyhow::Result<()> {
    let s = setup(&[("early_talker.ini", "pause=0.5\n")])?;
    let relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let mut client = SmtpClient::connect(s.addr).await?;
    client.send(b"EHLO impatient.example\r\n").await?;
    let reply = client.read_reply().await?;
    assert_eq!(reply.code, 554, "{reply:?}");
    assert!(client.closed_within(Duration::from_secs(5)).await?);
    relay.wait_for_log("early talker", Duration::from_secs(5))?;

    // A client that waits for the banner is served normally.
    let mut polite = SmtpClient::connect(s.addr).await?;
    assert_eq!(polite.read_reply().await?.code, 220);
    polite.expect("EHLO polite.example", 250).await?;
    Ok(())
}

/// With the shipped `early_talker.ini` (none): a client that says EHLO the
/// moment it connects is caught every time, not when its bytes happen to
/// arrive before a look; a patient client waits for the greeting once, and
/// its next connection gets it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_talkers_are_caught_every_time_and_a_patient_client_waits_once() -> anyhow::Result<()>
{
    let s = setup(&[])?;
    let relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    for attempt in 0..20 {
        let mut client = SmtpClient::connect(s.addr).await?;
        client.send(b"EHLO impatient.example\r\n").await?;
        let reply = client.read_reply().await?;
        assert_eq!(reply.code, 554, "try {attempt}: {reply:?}");
        assert_eq!(reply.lines[0], "220-mx.test ESMTP", "{reply:?}");
        assert!(client.closed_within(Duration::from_secs(5)).await?);
    }
    // Each refusal is logged before the connection closes.
    let log = relay.log();
    assert_eq!(log.matches("early talker refused").count(), 20, "{log}");

    // The default wait is 1 s (config/core/raw.rs): the first connection
    // from a new address sits through it, the next one does not.
    let patient: std::net::IpAddr = "127.0.0.3".parse()?;
    let started = std::time::Instant::now();
    let mut first = SmtpClient::connect_from(patient, s.addr).await?;
    let greeting = first.read_reply().await?;
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{greeting:?}"
    );
    first.expect("QUIT", 221).await?;

    let started = std::time::Instant::now();
    let mut second = SmtpClient::connect_from(patient, s.addr).await?;
    let greeting = second.read_reply().await?;
    let waited = started.elapsed();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(greeting.lines[0], "220-mx.test ESMTP", "{greeting:?}");
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    second.expect("EHLO patient.example", 250).await?;
    Ok(())
}

/// `openssl s_client -starttls smtp` against `tls.ini minVersion=TLSv1.3`:
/// a TLS 1.2 handshake is refused, TLS 1.3 is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_tls13_refuses_openssl_with_tls12() -> anyhow::Result<()> {
    let s = setup(&[])?;
    let tls_ini = std::fs::read_to_string(s.dir.path().join("tls.ini"))?;
    std::fs::write(
        s.dir.path().join("tls.ini"),
        format!("{tls_ini}minVersion=TLSv1.3\n"),
    )?;
    let _relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let s_client = |version: &'static str| {
        let addr = s.addr.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args(["s_client", "-starttls", "smtp", "-connect", &addr, version])
                .stdin(std::process::Stdio::null())
                .output()
        })
    };
    let tls12 = s_client("-tls1_2").await??;
    let said = String::from_utf8_lossy(&tls12.stdout).to_string()
        + &String::from_utf8_lossy(&tls12.stderr);
    assert!(!tls12.status.success(), "TLS 1.2 was served:\n{said}");
    assert!(said.contains("alert"), "{said}");
    let tls13 = s_client("-tls1_3").await??;
    let said = String::from_utf8_lossy(&tls13.stdout).to_string()
        + &String::from_utf8_lossy(&tls13.stderr);
    assert!(tls13.status.success(), "{said}");
    assert!(
        said.contains("Protocol  : TLSv1.3") || said.contains("TLSv1.3"),
        "{said}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_goodbye_to_idle_clients_and_exits_cleanly() -> anyhow::Result<()> {
    let s = setup(&[])?;
    let mut relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let mut client = SmtpClient::connect(s.addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO c.example", 250).await?;
    let status = tokio::task::spawn_blocking(move || relay.stop(Duration::from_secs(10))).await??;
    let reply = client.read_reply().await?;
    assert_eq!(reply.code, 421, "{reply:?}");
    assert!(reply.lines[0].starts_with("421 4.3.2"), "{reply:?}");
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_cap_answers_421() -> anyhow::Result<()> {
    let s = setup(&[("limit.ini", "[concurrency]\nmax=2\n")])?;
    let _relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = SmtpClient::connect(s.addr).await?;
        assert_eq!(c.read_reply().await?.code, 220);
        held.push(c);
    }
    let mut third = SmtpClient::connect(s.addr).await?;
    let reply = third.read_reply().await?;
    assert!(reply.lines[0].starts_with("421 4.7.0"), "{reply:?}");
    Ok(())
}

/// A client that keeps to the cap is never refused: its slot is free again
/// once its QUIT is answered, even when it reconnects at once (before the
/// server's task for the old connection has closed its socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_is_given_back_when_quit_is_answered() -> anyhow::Result<()> {
    let s = setup(&[("limit.ini", "[concurrency]\nmax=1\n")])?;
    let relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    // The start-up check connected and hung up without a word; only once
    // relay-in has seen that is the one slot free for the rounds below.
    relay.wait_for_log("client left before the greeting", Duration::from_secs(5))?;
    for round in 0..200 {
        let mut c = SmtpClient::connect(s.addr).await?;
        let greeting = c.read_reply().await?;
        assert_eq!(
            greeting.code,
            220,
            "round {round}: {greeting:?}\n{}",
            relay.log()
        );
        c.expect("QUIT", 221).await?;
    }
    Ok(())
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .display()
        .to_string()
}

/// A directory holding both relays' files (Haraka's haraka-in and
/// haraka-out merged): each binary's `--check` names the other's files as
/// the other's, so every file is accounted for.
#[test]
fn check_names_the_other_binarys_files() -> anyhow::Result<()> {
    let s = setup(&[
        ("relay_acl_allow", "10.0.0.2/32\n"),
        ("outbound.ini", "concurrency_max=10\n"),
    ])?;
    let dir = s.dir.path().display().to_string();
    let (code, output) = run("relay-in", &["--check", "-c", &dir])?;
    assert_eq!(code, 0, "{output}");
    for file in ["relay_acl_allow", "outbound.ini"] {
        assert!(
            output.contains(&format!("read by relay-out, not by relay-in: {file}")),
            "{output}"
        );
    }
    let (_, output) = run("relay-out", &["--check", "-c", &dir])?;
    assert!(
        output.contains("read by relay-in, not by relay-out: smtp_forward.ini"),
        "{output}"
    );
    Ok(())
}

#[test]
fn check_accepts_the_example_and_seed_configurations() -> anyhow::Result<()> {
    for (binary, dir) in [
        ("relay-in", repo("config-in")),
        ("relay-out", repo("config-out")),
        ("relay-in", repo("tests/fixtures/seed-haraka-in")),
        ("relay-out", repo("tests/fixtures/seed-haraka-out")),
    ] {
        let (code, output) = run(binary, &["--check", "-c", &dir])?;
        assert_eq!(code, 0, "{binary} --check -c {dir}:\n{output}");
        assert!(
            output.contains(&format!("OK: {binary} will run")),
            "{output}"
        );
    }
    Ok(())
}

#[test]
fn check_names_the_file_and_key_of_a_wrong_value() -> anyhow::Result<()> {
    let s = setup(&[("connection.ini", "[max]\nbytes=lots\n")])?;
    let (code, output) = run(
        "relay-in",
        &["--check", "-c", &s.dir.path().display().to_string()],
    )?;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("connection.ini"), "{output}");
    assert!(output.contains("bytes"), "{output}");
    assert!(output.contains("lots"), "{output}");
    Ok(())
}

#[test]
fn a_wrong_value_stops_startup_naming_file_and_key() -> anyhow::Result<()> {
    let s = setup(&[("smtp.ini", "listen=127.0.0.1:notaport\n")])?;
    let (code, output) = run("relay-in", &["-c", &s.dir.path().display().to_string()])?;
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("smtp.ini") && output.contains("listen"),
        "{output}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_host_list_and_a_broken_file_keeps_the_old_one() -> anyhow::Result<()> {
    // A backend that answers: recipients are deferred while it is down.
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = setup(&[("smtp_forward.ini", &forwarding_to(&backend))])?;
    let relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let rcpt_code = |rcpt: &'static str| {
        let addr = s.addr;
        async move {
            let mut c = SmtpClient::connect(addr).await?;
            c.read_reply().await?;
            c.expect("EHLO c.example", 250).await?;
            c.expect("MAIL FROM:<a@o.example>", 250).await?;
            anyhow::Ok(c.command(&format!("RCPT TO:<{rcpt}>")).await?.code)
        }
    };
    assert_eq!(rcpt_code("u@added.example").await?, 550);

    std::fs::write(
        s.dir.path().join("host_list"),
        "example.com\nadded.example\n",
    )?;
    relay.signal(libc::SIGHUP);
    relay.wait_for_log("reloaded host_list", Duration::from_secs(5))?;
    assert_eq!(rcpt_code("u@added.example").await?, 250);

    std::fs::write(s.dir.path().join("host_list_regex"), "(unclosed\n")?;
    relay.signal(libc::SIGHUP);
    relay.wait_for_log(
        "reload failed, keeping the previous settings",
        Duration::from_secs(5),
    )?;
    assert_eq!(rcpt_code("u@added.example").await?, 250);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_client_address_are_enforced_and_logged_once() -> anyhow::Result<()> {
    // Relay::start's connection check is the first of the four allowed.
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = setup(&[
        (
            "limit.ini",
            "[rate_conn]\ndefault=4/60s\n[rate_rcpt_host]\ndefault=2/60s\n",
        ),
        ("smtp_forward.ini", &forwarding_to(&backend)),
    ])?;
    let relay = Relay::start("relay-in", s.dir.path(), s.addr)?;
    let mut client = SmtpClient::connect(s.addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO c.example", 250).await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    client.expect("RCPT TO:<u1@example.com>", 250).await?;
    client.expect("RCPT TO:<u2@example.com>", 250).await?;
    for n in 3..6 {
        let reply = client
            .command(&format!("RCPT TO:<u{n}@example.com>"))
            .await?;
        assert!(reply.lines[0].starts_with("451 4.7.1"), "{reply:?}");
    }
    for _ in 0..2 {
        let mut c = SmtpClient::connect(s.addr).await?;
        assert_eq!(c.read_reply().await?.code, 220);
    }
    for _ in 0..3 {
        let mut refused = SmtpClient::connect(s.addr).await?;
        let reply = refused.read_reply().await?;
        assert!(reply.lines[0].starts_with("421 4.7.0"), "{reply:?}");
    }
    relay.wait_for_log("[rate_conn] exceeded", Duration::from_secs(5))?;
    let log = relay.log();
    assert_eq!(log.matches("[rate_conn] exceeded").count(), 1, "{log}");
    assert_eq!(log.matches("[rate_rcpt_host] exceeded").count(), 1, "{log}");
    Ok(())
}

#[test]
fn migration_check_explains_the_seeds_haraka_directories() -> anyhow::Result<()> {
    let (code, output) = run(
        "relay-in",
        &["--check", "-c", &repo("tests/fixtures/seed-haraka-in")],
    )?;
    assert_eq!(code, 0, "{output}");
    for expected in [
        "forwards to: 10.0.0.2:25",
        "accepts mail for: example.com",
        "read: plugins/smtp_forward.ini",
        "read: plugins/tls.ini",
        "xclient.ini: enabled=true is not a Haraka setting",
        "xclient.ini: forward=true is not a Haraka setting",
        "xclient.ini: destination=10.0.0.2:25 is not a Haraka setting",
        "read: config",
        "config): xclient, queue/smtp_forward, rcpt_to.in_host_list, tls",
        "config: line 6: xclient: relay-in does not run this plugin",
        "OK: relay-in will run with this configuration.",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    let (code, output) = run(
        "relay-out",
        &["--check", "-c", &repo("tests/fixtures/seed-haraka-out")],
    )?;
    assert_eq!(code, 0, "{output}");
    for expected in [
        "relays for: 10.0.0.2/32",
        "read: relay_acl_allow",
        "read: plugins",
        "plugins): relay, tls",
        "OK: relay-out will run",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    Ok(())
}

#[test]
fn a_haraka_instance_directory_holding_config_works() -> anyhow::Result<()> {
    let instance = tempfile::tempdir()?;
    let config = instance.path().join("config");
    std::fs::create_dir(&config)?;
    std::fs::write(config.join("host_list"), "instance.example\n")?;
    std::fs::write(config.join("smtp.ini"), "listen=127.0.0.1:2599\n")?;
    let (code, output) = run(
        "relay-in",
        &["--check", "-c", &instance.path().display().to_string()],
    )?;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("accepts mail for: instance.example"),
        "{output}"
    );
    assert!(output.contains("listens on: 127.0.0.1:2599"), "{output}");
    Ok(())
}
