//! The `plugins` file decides what each relay does, as in Haraka: written
//! config directories with commented-out plugins, custom plugins and
//! smtp_proxy.ini, driven through the real binaries.

use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::certs::TestCa;
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, ip};
use postern_tests::process::{Relay, free_port, run};
use postern_tests::relay_in::{ForwardingRelay, greeted};
use postern_tests::sasl::plain_response;
use postern_tests::smtp::SmtpClient;

const WAIT: Duration = Duration::from_secs(10);

/// `queue/smtp_proxy` forwards live to smtp_proxy.ini's host: the
/// backend's RCPT verdicts reach the client, and smtp_forward.ini's host
/// (a second backend) is never contacted. The custom plugin is named at
/// startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_proxy_forwards_live_to_smtp_proxy_ini() -> anyhow::Result<()> {
    let proxy = RecordingBackend::start(Behaviour {
        rcpt_replies: vec![(
            "unknown@example.com".into(),
            "550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown".into(),
        )],
        ..Behaviour::default()
    })
    .await?;
    let forward = RecordingBackend::start(Behaviour::default()).await?;
    let plugins = "# the seed's list, with a proxy instead of smtp_forward\nmy_greylist\nrcpt_to.in_host_list\n#queue/smtp_forward\nqueue/smtp_proxy\n";
    let proxy_ini = format!(
        "host={}\nport={}\nconnect_timeout=2\ntimeout=2\n",
        proxy.addr.ip(),
        proxy.addr.port()
    );
    let s = ForwardingRelay::start_with(
        forward.addr,
        "",
        &[
            ("plugins", plugins.to_owned()),
            ("smtp_proxy.ini", proxy_ini),
        ],
        &[],
    )?;
    s.relay.wait_for_log(
        "line 2: my_greylist: relay-in does not run this plugin",
        WAIT,
    )?;

    let mut client = greeted(s.v4, "c.example").await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    let unknown = client.command("RCPT TO:<unknown@example.com>").await?;
    assert_eq!(
        unknown.lines,
        ["550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown"],
        "the backend's verdict at RCPT: live mode"
    );
    client.expect("RCPT TO:<user@example.com>", 250).await?;
    client.expect("DATA", 354).await?;
    client.send(b"Subject: proxied\r\n\r\nhi\r\n").await?;
    let reply = client.command(".").await?;
    assert_eq!(reply.code, 250, "{reply:?}\n{}", s.relay.log());

    let accepted = proxy.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].rcpts, ["user@example.com"]);
    assert!(
        accepted[0].xclient.is_some(),
        "XCLIENT as with smtp_forward"
    );
    let record = forward.record();
    assert!(
        record.lines.is_empty() && record.probes == 0,
        "smtp_forward.ini's host is not a backend: {record:?}"
    );

    let (code, output) = run(
        "relay-in",
        &["--check", "-c", &s.dir().display().to_string()],
    )?;
    assert_eq!(code, 0, "{output}");
    for expected in [
        &format!("forwards to: {}", proxy.addr) as &str,
        "(live mode, XCLIENT required), from smtp_proxy.ini",
        "not read: smtp_forward.ini (queue/smtp_forward is off, see plugins)",
        "line 2: my_greylist: relay-in does not run this plugin: not a plugin Postern knows",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    Ok(())
}

/// The instance replaced rcpt_to.in_host_list by a plugin of its own: the
/// host_list domains are not accepted, and nothing reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_in_host_list_the_host_list_domains_are_refused() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start_with(
        backend.addr,
        "",
        &[(
            "plugins",
            "tls\n# rcpt_to.in_host_list\nrcpt_to.my_ldap\nqueue/smtp_forward\n".to_owned(),
        )],
        &[],
    )?;
    s.relay.wait_for_log(
        "line 3: rcpt_to.my_ldap: relay-in does not run this plugin: relay-in accepts recipients only with rcpt_to.in_host_list",
        WAIT,
    )?;
    let mut client = greeted(s.v4, "c.example").await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    let reply = client.command("RCPT TO:<user@example.com>").await?;
    assert!(reply.lines[0].starts_with("550 5.7.1"), "{reply:?}");
    assert!(backend.lines_starting("RCPT").is_empty());
    Ok(())
}

/// `--check` of a Haraka list naming queue/smtp_forward whose file sets no
/// port: Haraka's shipped smtp_forward.ini says 2555, Postern uses 25. And
/// a directory without a plugins file says so in one line.
#[test]
fn check_explains_the_forward_port_and_a_missing_list() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("plugins"),
        "rcpt_to.in_host_list\nqueue/smtp_forward\n",
    )?;
    std::fs::write(dir.path().join("smtp_forward.ini"), "host=10.0.0.2\n")?;
    std::fs::write(dir.path().join("host_list"), "example.com\n")?;
    let shown = dir.path().display().to_string();
    let (code, output) = run("relay-in", &["--check", "-c", &shown])?;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("note: smtp_forward.ini sets no port: Haraka would have used 2555 (its shipped smtp_forward.ini), Postern uses 25"),
        "{output}"
    );
    assert!(
        output.contains("forwards to: 10.0.0.2:25 (STARTTLS off, AUTH off) (queue mode"),
        "{output}"
    );

    std::fs::remove_file(dir.path().join("plugins"))?;
    let (code, output) = run("relay-in", &["--check", "-c", &shown])?;
    assert_eq!(code, 0, "{output}");
    let plugin_lines: Vec<&str> = output.lines().filter(|l| l.contains("plugins")).collect();
    assert_eq!(
        plugin_lines,
        [
            "  plugins: no plugins file; relay-in's defaults: rcpt_to.in_host_list, queue/smtp_forward, tls"
        ],
        "{output}"
    );
    assert!(!output.contains("2555"), "{output}");
    Ok(())
}

/// relay-in with no queue plugin and relay-out with neither relay nor
/// auth/flat_file refuse to start, naming `plugins`.
#[test]
fn a_list_that_leaves_nothing_to_do_stops_the_binary() -> anyhow::Result<()> {
    for (binary, list, problem) in [
        (
            "relay-in",
            "rcpt_to.in_host_list\ntls\n# queue/smtp_forward\n",
            "plugins: lists neither queue/smtp_forward nor queue/smtp_proxy: relay-in would have nothing to do",
        ),
        (
            "relay-out",
            "# relay\ntls\n",
            "plugins: lists neither relay nor auth/flat_file, so no client may relay: relay-out would have nothing to do",
        ),
    ] {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        std::fs::write(dir.path().join("plugins"), list)?;
        std::fs::write(
            dir.path().join("smtp.ini"),
            format!("listen=127.0.0.1:{port}\nrdns=off\n"),
        )?;
        std::fs::write(dir.path().join("relay_acl_allow"), "127.0.0.1\n")?;
        std::fs::write(dir.path().join("outbound.ini"), "queue_dir=queue\n")?;
        let started = Relay::start(binary, dir.path(), ([127, 0, 0, 1], port).into());
        let error = format!("{:#}", started.err().expect("must not start"));
        assert!(error.contains("during startup"), "{error}");
        assert!(error.contains(problem), "{binary}: {error}");

        let (code, output) = run(
            binary,
            &["--check", "-c", &dir.path().display().to_string()],
        )?;
        assert_eq!(code, 1, "{output}");
        assert!(output.contains(problem), "{output}");
    }
    Ok(())
}

/// relay is commented out in `plugins`: the client in relay_acl_allow may
/// not relay, while a user of auth/flat_file may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_out_without_relay_relays_for_nobody_by_address() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let zone = TestZone::new()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", ip(2));
    let out = Outbound::start(
        zone,
        farm.port,
        OutboundOptions {
            files: vec![
                ("plugins".into(), "# relay\nauth/flat_file\n".into()),
                (
                    "auth_flat_file.ini".into(),
                    "[core]\nmethods=PLAIN\n[users]\nalice=secret\n".into(),
                ),
            ],
            ..OutboundOptions::default()
        },
    )
    .await?;
    out.wait_for_log(
        "plugins: relay is not listed: no client relays by address",
        WAIT,
    )
    .await?;

    let mut client = SmtpClient::connect(out.addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO client.test", 250).await?;
    client.expect("MAIL FROM:<a@origin.test>", 250).await?;
    let refused = client.command("RCPT TO:<u@dest.test>").await?;
    assert!(refused.lines[0].starts_with("550 5.7.1"), "{refused:?}");
    client.expect("RSET", 250).await?;
    client
        .expect(
            &format!("AUTH PLAIN {}", plain_response("alice", "secret")),
            235,
        )
        .await?;
    client.expect("MAIL FROM:<a@origin.test>", 250).await?;
    client.expect("RCPT TO:<u@dest.test>", 250).await?;
    out.wait_for_log("relay refused: client not in relay_acl_allow", WAIT)
        .await?;
    Ok(())
}

/// tls.ini holds a certificate, but `tls` is commented out in `plugins`:
/// no STARTTLS, as Haraka's core would not advertise it without the
/// plugin. Listed, it is offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_offered_only_when_tls_is_listed() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let certs = tempfile::tempdir()?;
    let pem = certs.path().join("tls.pem");
    TestCa::new("plugins CA")?
        .issue("mx.test")?
        .write_combined(&pem)?;
    let tls_ini = format!("key={0}\ncert={0}\n", pem.display());
    for (list, offered) in [
        ("rcpt_to.in_host_list\n# tls\nqueue/smtp_forward\n", false),
        ("rcpt_to.in_host_list\ntls\nqueue/smtp_forward\n", true),
    ] {
        let s = ForwardingRelay::start_with(
            backend.addr,
            "",
            &[("plugins", list.to_owned()), ("tls.ini", tls_ini.clone())],
            &[],
        )?;
        let mut client = SmtpClient::connect(s.v4).await?;
        assert_eq!(client.read_reply().await?.code, 220);
        let ehlo = client.expect("EHLO c.example", 250).await?;
        let starttls = ehlo.lines.iter().any(|l| l.ends_with("STARTTLS"));
        assert_eq!(starttls, offered, "{list}: {ehlo:?}");
        if !offered {
            let refused = client.command("STARTTLS").await?;
            assert_eq!(refused.lines, ["454 4.7.0 TLS not available"]);
            s.relay
                .wait_for_log("plugins: tls is not listed: STARTTLS is not offered", WAIT)?;
        }
    }
    Ok(())
}
