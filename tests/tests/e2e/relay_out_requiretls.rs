//! REQUIRETLS (RFC 8689) on relay-out: offered after STARTTLS only, refused
//! in clear text with 530 5.7.10; a REQUIRETLS message goes out only under
//! a TLS policy that authenticates the MX (tls_policy.ini `verify`), to an
//! MX that offers REQUIRETLS and gets it on MAIL FROM, else it is returned
//! with 5.7.10 (no such policy) or 5.7.30 (no host offers it), headers only;
//! `TLS-Required: No` lets a message through a `verify` policy that fails.
//!
//! The sender's domain origin.test has its MX on 127.0.0.5 (a recording
//! server that takes the notices); dest.test's MX is a STARTTLS server on
//! 127.0.0.2 with a certificate from its own test CA.

use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::certs::TestCa;
use postern_tests::dns::TestZone;
use postern_tests::outbound::{
    MxFarm, Outbound, OutboundOptions, host, ip, parse_dsn, queue_id, wait_until,
};
use postern_tests::postfix::swaks;
use postern_tests::smtp::{ClientReply, SmtpClient};
use postern_tests::tls_mx::{StartTlsMx, TlsAccepted, TlsMxOptions};

const WAIT: Duration = Duration::from_secs(15);
/// A line of the original body, which a returned REQUIRETLS message must not carry.
const SECRET: &str = "the-secret-body-line";

fn zone() -> TestZone {
    TestZone::new()
        .mx("dest.test", 10, "mx1.dest.test")
        .a("mx1.dest.test", ip(2))
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(5))
}

/// tls_policy.ini that makes dest.test `verify` against the MX's CA in `mx-ca.pem`.
const VERIFY: &str = "ca_file=mx-ca.pem\n[dest.test]\npolicy=verify\n";

/// What every test starts from: the CA of relay-out's listener certificate
/// (clients verify against it), the directory keeping that certificate, and
/// the farm whose port every MX shares.
struct Fixture {
    ca: TestCa,
    keep: tempfile::TempDir,
    farm: MxFarm,
}

/// A [`Fixture`] whose farm has its first server on 127.0.0.`farm_ip`.
async fn fixture(farm_ip: u8) -> anyhow::Result<Fixture> {
    Ok(Fixture {
        ca: TestCa::new("Postern relay-out CA")?,
        keep: tempfile::tempdir()?,
        farm: MxFarm::start(farm_ip, Behaviour::default()).await?,
    })
}

impl Fixture {
    /// relay-out with a listener certificate and tls_policy.ini `policy`
    /// (with the MX's CA as `mx-ca.pem` when given).
    async fn relay(
        &self,
        policy: &str,
        mx_ca: Option<&str>,
        metrics_port: Option<u16>,
    ) -> anyhow::Result<Outbound> {
        let options = options(&self.ca, &self.keep, policy, mx_ca, metrics_port)?;
        Outbound::start(zone(), self.farm.port, options).await
    }
}

/// The options behind [`Fixture::relay`].
fn options(
    ca: &TestCa,
    keep: &tempfile::TempDir,
    policy: &str,
    mx_ca: Option<&str>,
    metrics_port: Option<u16>,
) -> anyhow::Result<OutboundOptions> {
    let pem = keep.path().join("tls.pem");
    ca.issue("relay-out.test")?.write_combined(&pem)?;
    let mut files = vec![
        (
            "tls.ini".to_owned(),
            format!("key={0}\ncert={0}\n", pem.display()),
        ),
        ("tls_policy.ini".to_owned(), policy.to_owned()),
    ];
    if let Some(mx_ca) = mx_ca {
        files.push(("mx-ca.pem".to_owned(), mx_ca.to_owned()));
    }
    if let Some(port) = metrics_port {
        files.push((
            "metrics.ini".to_owned(),
            format!("listen=127.0.0.1:{port}\n"),
        ));
    }
    Ok(OutboundOptions {
        outbound: "temp_fail_intervals=1h\n".into(),
        files,
        ..OutboundOptions::default()
    })
}

/// Submits over STARTTLS with `MAIL FROM:<a@origin.test> REQUIRETLS RET=FULL`
/// (the DSN's RET=FULL must be disregarded for such a message); returns the
/// reply to the dot.
async fn submit_requiretls(out: &Outbound, ca: &TestCa) -> anyhow::Result<ClientReply> {
    let mut client = SmtpClient::connect(out.addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO client.test", 250).await?;
    client.expect("STARTTLS", 220).await?;
    client.upgrade_tls(&ca.cert_der, "relay-out.test").await?;
    let ehlo = client.expect("EHLO client.test", 250).await?;
    assert!(
        ehlo.lines.iter().any(|l| l.ends_with("REQUIRETLS")),
        "{ehlo:?}"
    );
    client
        .expect("MAIL FROM:<a@origin.test> REQUIRETLS RET=FULL", 250)
        .await?;
    client.expect("RCPT TO:<u@dest.test>", 250).await?;
    client.expect("DATA", 354).await?;
    let body = format!("Subject: confidential\r\n\r\n{SECRET}\r\n");
    client.send(body.as_bytes()).await?;
    let reply = client.command(".").await?;
    let _ = client.command("QUIT").await;
    Ok(reply)
}

/// swaks against `out`'s listener with `args` (and a 10 s timeout), off the
/// async runtime.
async fn swaks_to(out: &Outbound, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let port = out.addr.port().to_string();
    let mut full = vec![
        "--server".to_owned(),
        "127.0.0.1".to_owned(),
        "--port".to_owned(),
        port,
    ];
    full.extend(args.iter().map(|arg| (*arg).to_owned()));
    full.extend(["--timeout".to_owned(), "10".to_owned()]);
    tokio::task::spawn_blocking(move || swaks(full)).await?
}

/// Waits (bounded) for `mx`'s one delivery and returns it.
async fn delivered_to(mx: &StartTlsMx) -> anyhow::Result<TlsAccepted> {
    wait_until(WAIT, "delivery to mx1.dest.test", || {
        mx.accepted().len() == 1
    })
    .await?;
    Ok(mx.accepted().remove(0))
}

/// Checks what RFC 8689 §5 asks of the notice returning the message (its
/// data): headers only, failed with `status` and a diagnostic naming REQUIRETLS.
fn assert_returned(data: &[u8], status: &str) -> anyhow::Result<()> {
    let (returned, diagnostic) = returned_status(data)?;
    assert_eq!(returned, status);
    assert!(diagnostic.contains("REQUIRETLS"), "{diagnostic}");
    Ok(())
}

/// The notice's per-recipient status and diagnostic, after the checks
/// every returned REQUIRETLS message must pass.
fn returned_status(data: &[u8]) -> anyhow::Result<(String, String)> {
    let text = String::from_utf8_lossy(data).into_owned();
    assert!(text.contains("Subject: confidential"), "{text}");
    assert!(
        !text.contains(SECRET),
        "headers only, RET=FULL disregarded:\n{text}"
    );
    let dsn = parse_dsn(data)?;
    let fields = &dsn.recipients[0];
    assert_eq!(fields["action"], "failed");
    Ok((
        fields["status"].clone(),
        fields.get("diagnostic-code").cloned().unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiretls_is_offered_after_starttls_only_and_refused_in_clear_text() -> anyhow::Result<()>
{
    let fx = fixture(5).await?;
    let out = fx.relay("", None, None).await?;

    // swaks: the EHLO reply before STARTTLS has no REQUIRETLS, the one after has.
    let output = swaks_to(
        &out,
        &["--tls", "--quit-after", "HELO", "--helo", "client.test"],
    )
    .await?;
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{transcript}");
    let (before, after) = transcript
        .split_once("TLS started")
        .unwrap_or_else(|| panic!("no TLS in:\n{transcript}"));
    assert!(!before.contains("REQUIRETLS"), "{transcript}");
    assert!(
        after.contains("250-REQUIRETLS") || after.contains("250 REQUIRETLS"),
        "{transcript}"
    );

    // The option in clear text: 530 5.7.10, and nothing is queued.
    let mut client = SmtpClient::connect(out.addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect("EHLO client.test", 250).await?;
    let reply = client
        .command("MAIL FROM:<a@origin.test> REQUIRETLS")
        .await?;
    assert_eq!(reply.code, 530, "{reply:?}");
    assert!(reply.lines[0].starts_with("530 5.7.10 "), "{reply:?}");
    // The session goes on: the same MAIL without the option is taken.
    client.expect("MAIL FROM:<a@origin.test>", 250).await?;
    let _ = client.command("QUIT").await;
    assert!(out.queued_ids().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiretls_without_an_authenticating_policy_is_returned_with_5_7_10() -> anyhow::Result<()>
{
    // The farm only reserves the port; both MXs offer REQUIRETLS.
    let fx = fixture(9).await?;
    let farm = &fx.farm;
    let offering = TlsMxOptions {
        requiretls: true,
        ..TlsMxOptions::default()
    };
    let mx = StartTlsMx::start_with(host(2, farm.port), "mx1.dest.test", offering).await?;
    let origin = StartTlsMx::start_with(host(5, farm.port), "mx.origin.test", offering).await?;
    // No tls_policy.ini entry: dest.test gets the default, `may`.
    let metrics_port = postern_tests::process::free_port();
    let out = fx.relay("", None, Some(metrics_port)).await?;
    let id = queue_id(&submit_requiretls(&out, &fx.ca).await?)?;
    wait_until(WAIT, "the notice to a@origin.test", || {
        origin.accepted().len() == 1
    })
    .await?;
    let notice = &origin.accepted()[0];
    // The notice asks for REQUIRETLS too, where the next hop offers it.
    assert_eq!(notice.mail_from, "MAIL FROM:<> REQUIRETLS");
    assert_returned(&notice.data, "5.7.10")?;
    assert!(mx.accepted().is_empty(), "never sent under `may`");
    out.wait_for_log(&format!("queue_id={id}"), WAIT).await?;
    let log = out.log();
    assert!(
        log.lines().any(|l| l.contains(&format!("queue_id={id}"))
            && l.contains("tls_policy=may")
            && l.contains("tls_policy_source=enable_tls")
            && l.contains("result=bounced")),
        "{log}"
    );
    // Attempts under the default policy are counted too.
    let metrics = postern_tests::metrics::scrape(([127, 0, 0, 1], metrics_port).into()).await?;
    let series = "postern_tls_policy_attempts_total{policy=\"may\",result=\"bounced\"}";
    assert!(
        postern_tests::metrics::value(&metrics, series) >= 1.0,
        "{series} in:\n{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiretls_under_verify_reaches_an_mx_offering_it_with_requiretls_on_mail_from()
-> anyhow::Result<()> {
    let fx = fixture(5).await?;
    let mx = StartTlsMx::start_with(
        host(2, fx.farm.port),
        "mx1.dest.test",
        TlsMxOptions {
            requiretls: true,
            ..TlsMxOptions::default()
        },
    )
    .await?;
    let out = fx.relay(VERIFY, Some(&mx.ca_pem), None).await?;
    // --check shows the TLS policy settings REQUIRETLS depends on.
    let dir = out.config_dir().display().to_string();
    let (code, check) = postern_tests::process::run("relay-out", &["-c", &dir, "--check"])?;
    assert_eq!(code, 0, "{check}");
    for line in [
        "TLS to MX hosts by default: policy=may (STARTTLS when offered, any certificate; outbound.ini enable_tls=true)",
        "TLS to dest.test's MX hosts: policy=verify (STARTTLS required with a certificate for the MX name, verified with ",
        "REQUIRETLS offered after STARTTLS; such messages go only to domains whose policy authenticates the MX (DANE, MTA-STS enforce, or tls_policy.ini verify: dest.test)",
    ] {
        assert!(check.contains(line), "{line}\nnot in:\n{check}");
    }
    submit_requiretls(&out, &fx.ca).await?;
    let accepted = delivered_to(&mx).await?;
    assert!(accepted.tls);
    assert!(
        accepted.mail_from.ends_with(" REQUIRETLS"),
        "{}",
        accepted.mail_from
    );
    out.wait_for_log("result=delivered", WAIT).await?;
    assert!(fx.farm.get(5).accepted().is_empty(), "no notice");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiretls_under_verify_to_an_mx_without_it_is_returned_with_5_7_30() -> anyhow::Result<()>
{
    let fx = fixture(5).await?;
    let farm = &fx.farm;
    let mx = StartTlsMx::start_on(host(2, farm.port), "mx1.dest.test", false).await?;
    let out = fx.relay(VERIFY, Some(&mx.ca_pem), None).await?;
    submit_requiretls(&out, &fx.ca).await?;
    // The notice goes out although mx.origin.test has no REQUIRETLS: a
    // null reverse-path must not get it discarded (RFC 8689 §5).
    wait_until(WAIT, "the notice to a@origin.test", || {
        farm.get(5).accepted().len() == 1
    })
    .await?;
    let notice = &farm.get(5).accepted()[0];
    assert_eq!(notice.mail_from, "<>");
    assert_returned(&notice.data, "5.7.30")?;
    assert!(
        mx.accepted().is_empty(),
        "the MX without REQUIRETLS got nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_no_is_delivered_through_a_verify_policy_that_fails() -> anyhow::Result<()> {
    let fx = fixture(5).await?;
    // relay-out does not trust this MX's CA: `verify` alone would defer.
    let mx = StartTlsMx::start_on(host(2, fx.farm.port), "mx1.dest.test", false).await?;
    let out = fx.relay("[dest.test]\npolicy=verify\n", None, None).await?;
    let output = swaks_to(
        &out,
        &[
            "--from",
            "a@origin.test",
            "--to",
            "u@dest.test",
            "--helo",
            "client.test",
            "--header",
            "TLS-Required: No",
            "--body",
            "report about a TLS problem",
        ],
    )
    .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let accepted = delivered_to(&mx).await?;
    assert!(accepted.tls, "STARTTLS is still used when offered");
    let data = String::from_utf8_lossy(&accepted.data);
    assert!(
        data.contains("TLS-Required: No"),
        "the header stays: {data}"
    );
    out.wait_for_log("result=delivered", WAIT).await?;
    let log = out.log();
    assert!(
        log.lines().any(|l| l.contains("mx=mx1.dest.test")
            && l.contains("tls_policy=may")
            && l.contains("tls_policy_source=TLS-Required")
            && l.contains("result=delivered")),
        "{log}"
    );
    Ok(())
}
