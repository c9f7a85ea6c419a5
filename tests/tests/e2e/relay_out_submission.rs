//! Submission with AUTH on relay-out (seed 000): swaks (and the test
//! client) authenticate over STARTTLS on the 587-style listener, or over
//! implicit TLS on the smtps listener, and relay to a domain although their
//! address is not in relay_acl_allow; without AUTH, with a wrong password, or
//! with AUTH before STARTTLS from an address that is not this host's, they
//! are refused; the password never reaches the log.
//!
//! Clients connect from 127.0.0.9: a loopback address, but not 127.0.0.1,
//! ::1 or the listener's own, so relay-out treats it as remote.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use postern_tests::backend::Behaviour;
use postern_tests::certs::TestCa;
use postern_tests::dns::{TestDns, TestZone};
use postern_tests::outbound::{MxFarm, ip, strip_ansi, wait_until};
use postern_tests::postfix::swaks;
use postern_tests::process::{Relay, free_port};
use postern_tests::sasl::{base64, plain_response};
use postern_tests::smtp::{ClientReply, SmtpClient};

const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "Tr0ub4dor&3-horse";
const WRONG: &str = "wrong-guess-7781";
/// `openssl passwd -6 -salt saltsalt hunter2`: bob's password is stored hashed.
const BOB_HASH: &str = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";

/// relay-out with a main listener, a submission listener (STARTTLS) and
/// an smtps listener (implicit TLS), all on 127.0.0.1; dest.test's MX on
/// 127.0.0.2.
struct World {
    _dir: tempfile::TempDir,
    relay: Relay,
    submission: SocketAddr,
    smtps: SocketAddr,
    farm: MxFarm,
    _dns: TestDns,
    ca: TestCa,
}

impl World {
    async fn start() -> anyhow::Result<World> {
        let farm = MxFarm::start(2, Behaviour::default()).await?;
        let dns = TestDns::start(
            TestZone::new()
                .mx("dest.test", 10, "mx.dest.test")
                .a("mx.dest.test", ip(2)),
        )
        .await?;
        let ca = TestCa::new("Postern submission CA")?;
        let dir = tempfile::tempdir()?;
        let pem = dir.path().join("tls.pem");
        ca.issue("relay-out.test")?.write_combined(&pem)?;
        let (main, sub, smtps) = (free_port(), free_port(), free_port());
        let files = [
            ("me", "relay-out.test\n".to_string()),
            (
                "smtp.ini",
                format!(
                    "listen=127.0.0.1:{main},127.0.0.1:{sub},127.0.0.1:{smtps}\n\
                     submission_port={sub}\nsmtps_port={smtps}\nrdns=off\n"
                ),
            ),
            ("tls.ini", format!("key={0}\ncert={0}\n", pem.display())),
            // Nobody on this host may relay by address.
            ("relay_acl_allow", "10.9.9.9/32\n".to_string()),
            (
                "auth_flat_file.ini",
                format!(
                    "[core]\nmethods=PLAIN,LOGIN\n[users]\nalice={PASSWORD}\nbob={BOB_HASH}\n\
                     carol@origin.test={PASSWORD}\n"
                ),
            ),
            (
                "outbound.ini",
                format!(
                    "nameservers={}\nremote_port={}\nlocal_mx_ok=true\nconnect_timeout=2\n\
                     queue_dir={}\ntemp_fail_intervals=1h\n",
                    dns.nameservers_setting(),
                    farm.port,
                    dir.path().join("queue").display()
                ),
            ),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text)?;
        }
        let relay = Relay::start(
            "relay-out",
            dir.path(),
            SocketAddr::from(([127, 0, 0, 1], main)),
        )?;
        Ok(World {
            _dir: dir,
            relay,
            submission: SocketAddr::from(([127, 0, 0, 1], sub)),
            smtps: SocketAddr::from(([127, 0, 0, 1], smtps)),
            farm,
            _dns: dns,
            ca,
        })
    }

    fn log(&self) -> String {
        strip_ansi(&self.relay.log())
    }

    /// Connects from `source` and reads the greeting.
    async fn connect(&self, source: IpAddr, to: SocketAddr) -> anyhow::Result<SmtpClient> {
        let mut client = SmtpClient::connect_from(source, to).await?;
        let greeting = client.read_reply().await?;
        anyhow::ensure!(greeting.code == 220, "greeting {:?}", greeting.lines);
        Ok(client)
    }

    /// Connects from 127.0.0.9 to the submission listener, upgrades with
    /// STARTTLS and greets again; returns the EHLO reply inside TLS.
    async fn starttls(&self) -> anyhow::Result<(SmtpClient, ClientReply)> {
        let mut client = self.connect(remote(), self.submission).await?;
        client.expect("EHLO client.test", 250).await?;
        client.expect("STARTTLS", 220).await?;
        client
            .upgrade_tls(&self.ca.cert_der, "relay-out.test")
            .await?;
        let ehlo = client.expect("EHLO client.test", 250).await?;
        Ok((client, ehlo))
    }

    fn assert_no_secrets(&self) {
        let log = self.log();
        for secret in [
            PASSWORD.to_string(),
            WRONG.to_string(),
            plain_response("alice", PASSWORD),
            plain_response("alice", WRONG),
            base64(PASSWORD.as_bytes()),
            "hunter2".to_string(),
        ] {
            assert!(!log.contains(&secret), "{secret:?} is in the log:\n{log}");
        }
    }
}

/// A client address on loopback that is not "this host" for the AUTH rule.
fn remote() -> IpAddr {
    IpAddr::V4(ip(9))
}

fn offers_auth(ehlo: &ClientReply) -> bool {
    ehlo.lines.iter().any(|line| line[4..].starts_with("AUTH "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_with_auth_over_starttls_relays_to_any_domain() -> anyhow::Result<()> {
    let world = World::start().await?;
    let port = world.submission.port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        swaks([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--local-interface",
            "127.0.0.9",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            PASSWORD,
            "--from",
            "alice@origin.test",
            "--to",
            "u@dest.test",
            "--helo",
            "client.test",
            "--header",
            "Subject: submitted",
            "--body",
            "hi",
            "--timeout",
            "10",
        ])
    })
    .await??;
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "swaks failed:\n{transcript}\n{}",
        world.log()
    );
    assert!(transcript.contains("235 2.7.0"), "{transcript}");

    wait_until(WAIT, "delivery to dest.test", || {
        world.farm.get(2).accepted().len() == 1
    })
    .await?;
    let accepted = &world.farm.get(2).accepted()[0];
    assert_eq!(accepted.rcpts, ["u@dest.test"]);
    assert_eq!(accepted.mail_from, "<alice@origin.test>");
    let log = world.log();
    assert!(
        log.lines().any(|l| l.contains("authenticated")
            && l.contains("user=alice")
            && l.contains("client=127.0.0.9")),
        "{log}"
    );
    world.assert_no_secrets();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_or_with_a_wrong_password_nothing_is_relayed() -> anyhow::Result<()> {
    let world = World::start().await?;

    // No AUTH at all: MAIL is refused on the submission listener.
    let (mut client, ehlo) = world.starttls().await?;
    assert!(offers_auth(&ehlo), "{:?}", ehlo.lines);
    let refused = client.command("MAIL FROM:<alice@origin.test>").await?;
    assert_eq!(refused.text(), "550 5.7.0 Authentication required");

    // A wrong password: 535 after Haraka's delay, and still no MAIL.
    let started = Instant::now();
    let failed = client
        .command(&format!("AUTH PLAIN {}", plain_response("alice", WRONG)))
        .await?;
    assert_eq!(failed.code, 535, "{:?}", failed.lines);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered at once"
    );
    let refused = client.command("MAIL FROM:<alice@origin.test>").await?;
    assert_eq!(refused.code, 550);

    // AUTH LOGIN as a user whose password is stored hashed works.
    client.expect("AUTH LOGIN", 334).await?;
    client.expect(&base64(b"bob"), 334).await?;
    client.expect(&base64(b"hunter2"), 235).await?;
    client.expect("MAIL FROM:<bob@origin.test>", 250).await?;
    client.expect("RCPT TO:<v@dest.test>", 250).await?;
    let _ = client.command("QUIT").await;

    let log = world.log();
    assert!(
        log.lines()
            .any(|l| l.contains("authentication failed") && l.contains("user=alice")),
        "{log}"
    );
    assert!(world.farm.all_accepted().is_empty());
    world.assert_no_secrets();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_offered_before_tls_only_to_this_host() -> anyhow::Result<()> {
    let world = World::start().await?;

    // From 127.0.0.9 in clear text: no AUTH advertised, none accepted.
    let mut client = world.connect(remote(), world.submission).await?;
    let ehlo = client.expect("EHLO client.test", 250).await?;
    assert!(!offers_auth(&ehlo), "{:?}", ehlo.lines);
    assert!(
        ehlo.lines.iter().any(|l| l.ends_with("STARTTLS")),
        "{:?}",
        ehlo.lines
    );
    let early = client
        .command(&format!("AUTH PLAIN {}", plain_response("alice", PASSWORD)))
        .await?;
    assert!(early.code >= 500, "AUTH before STARTTLS: {:?}", early.lines);
    let refused = client.command("MAIL FROM:<alice@origin.test>").await?;
    assert_eq!(refused.code, 550);
    let _ = client.command("QUIT").await;

    // From 127.0.0.1, the host itself: offered without TLS.
    let mut local = world.connect(IpAddr::V4(ip(1)), world.submission).await?;
    let ehlo = local.expect("EHLO client.test", 250).await?;
    assert!(offers_auth(&ehlo), "{:?}", ehlo.lines);
    local
        .expect(
            &format!("AUTH PLAIN {}", plain_response("alice", PASSWORD)),
            235,
        )
        .await?;
    let _ = local.command("QUIT").await;
    world.assert_no_secrets();
    Ok(())
}

/// auth_flat_file.ini `constrain_sender` (Haraka's default, on): a user
/// named carol@origin.test may send from origin.test and its subdomains,
/// not from another organizational domain; a user without a domain is
/// not constrained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_user_sends_only_from_its_own_domain() -> anyhow::Result<()> {
    let world = World::start().await?;
    let mut local = world.connect(IpAddr::V4(ip(1)), world.submission).await?;
    local.expect("EHLO client.test", 250).await?;
    local
        .expect(
            &format!(
                "AUTH PLAIN {}",
                plain_response("carol@origin.test", PASSWORD)
            ),
            235,
        )
        .await?;
    let refused = local.command("MAIL FROM:<carol@elsewhere.test>").await?;
    assert_eq!(
        refused.lines,
        ["550 5.7.1 Envelope domain 'elsewhere.test' doesn't match AUTH domain 'origin.test'"],
        "{}",
        world.log()
    );
    local
        .expect("MAIL FROM:<carol@lists.origin.test>", 250)
        .await?;
    local.expect("RSET", 250).await?;
    local.expect("MAIL FROM:<>", 250).await?;
    let _ = local.command("QUIT").await;

    let mut alice = world.connect(IpAddr::V4(ip(1)), world.submission).await?;
    alice.expect("EHLO client.test", 250).await?;
    alice
        .expect(
            &format!("AUTH PLAIN {}", plain_response("alice", PASSWORD)),
            235,
        )
        .await?;
    alice
        .expect("MAIL FROM:<alice@elsewhere.test>", 250)
        .await?;
    world.assert_no_secrets();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_on_the_smtps_port_then_auth_and_relay() -> anyhow::Result<()> {
    let world = World::start().await?;
    let mut client = SmtpClient::connect_from(remote(), world.smtps).await?;
    client
        .upgrade_tls(&world.ca.cert_der, "relay-out.test")
        .await?;
    let greeting = client.read_reply().await?;
    assert_eq!(greeting.code, 220, "{:?}", greeting.lines);
    let ehlo = client.expect("EHLO client.test", 250).await?;
    assert!(offers_auth(&ehlo), "{:?}", ehlo.lines);
    assert!(
        !ehlo.lines.iter().any(|l| l.ends_with("STARTTLS")),
        "{:?}",
        ehlo.lines
    );
    client
        .expect(
            &format!("AUTH PLAIN {}", plain_response("alice", PASSWORD)),
            235,
        )
        .await?;
    // RFC 4954 §5: the AUTH= parameter is accepted once AUTH is offered.
    client
        .expect("MAIL FROM:<alice@origin.test> AUTH=<>", 250)
        .await?;
    client.expect("RCPT TO:<w@dest.test>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(b"Subject: 465\r\n\r\nhi\r\n").await?;
    let reply = client.command(".").await?;
    assert_eq!(reply.code, 250, "{:?}", reply.lines);
    wait_until(WAIT, "delivery", || world.farm.get(2).accepted().len() == 1).await?;
    assert_eq!(world.farm.get(2).accepted()[0].rcpts, ["w@dest.test"]);
    world.assert_no_secrets();
    Ok(())
}
