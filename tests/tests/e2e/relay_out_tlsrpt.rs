//! TLS-RPT (RFC 8460): relay-out counts its TLS sessions with the MX hosts
//! of a domain that publishes `_smtp._tls`, keeps the counts across a
//! restart, and `relay-out tlsrpt send` queues the gzip'ed JSON report to
//! the domain's `rua=mailto:`, which a recording MX then receives.

use std::io::Read as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use flate2::read::GzDecoder;
use postern_tests::backend::Behaviour;
use postern_tests::certs::TestCa;
use postern_tests::dns::TestZone;
use postern_tests::nginx::{PolicyServer, Serve};
use postern_tests::outbound::{ME, MxFarm, Outbound, OutboundOptions, host, ip, wait_until};
use postern_tests::process::run;
use postern_tests::tls_mx::{StartTlsMx, TlsMxOptions};

const WAIT: Duration = Duration::from_secs(20);

/// dest.test: mx1 (127.0.0.2, preferred) and mx2 (127.0.0.3), and its
/// TLS-RPT record; reports.test's MX is 127.0.0.4.
fn zone() -> TestZone {
    TestZone::new()
        .mx("dest.test", 10, "mx1.dest.test")
        .mx("dest.test", 20, "mx2.dest.test")
        .a("mx1.dest.test", ip(2))
        .a("mx2.dest.test", ip(3))
        .txt(
            "_smtp._tls.dest.test",
            "v=TLSRPTv1; rua=mailto:reports@reports.test",
        )
        .txt("dest.test", "v=spf1 -all")
        .mx("reports.test", 10, "mx.reports.test")
        .a("mx.reports.test", ip(4))
}

/// `relay-out tlsrpt ARGS` on `out`'s configuration.
fn tlsrpt(out: &Outbound, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let dir = out.config_dir().display().to_string();
    let mut full = vec!["-c", dir.as_str(), "tlsrpt"];
    full.extend_from_slice(args);
    run("relay-out", &full)
}

/// Polls `tlsrpt show` (bounded) until its output contains `needle`.
async fn wait_for_show(out: &Outbound, needle: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, shown) = tlsrpt(out, &["show"])?;
        anyhow::ensure!(code == 0, "tlsrpt show failed: {shown}");
        if shown.contains(needle) {
            return Ok(shown);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {needle:?} in tlsrpt show:\n{shown}\n{}",
            out.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The body of the MIME part with `content_type`, base64-decoded.
fn attachment(mail: &str, content_type: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let start = mail
        .find(&format!("Content-Type: {content_type}"))
        .ok_or_else(|| anyhow::anyhow!("no {content_type} part in\n{mail}"))?;
    let part = &mail[start..];
    let (headers, body) = part
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no body in the part"))?;
    let body: String = body
        .lines()
        .take_while(|line| !line.starts_with("--"))
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(body.trim())?;
    Ok((headers.to_owned(), bytes))
}

/// A STARTTLS MX on 127.0.0.`last_octet` with a certificate from `ca` for `name`.
async fn mx_issued_by(
    last_octet: u8,
    port: u16,
    ca: &TestCa,
    name: &str,
) -> anyhow::Result<StartTlsMx> {
    StartTlsMx::start_issued_by(host(last_octet, port), ca, name, TlsMxOptions::default()).await
}

/// relay-out's options: dest.test under `verify` against `ca`, plus `extra` files.
fn verify_options(ca: &TestCa, extra: Vec<(String, String)>) -> OutboundOptions {
    let mut files = vec![
        (
            "tls_policy.ini".to_owned(),
            "ca_file=mx-ca.pem\n[dest.test]\npolicy=verify\n".to_owned(),
        ),
        ("mx-ca.pem".to_owned(), ca.cert_pem.clone()),
    ];
    files.extend(extra);
    OutboundOptions {
        outbound: "temp_fail_intervals=1h\n".into(),
        files,
        ..OutboundOptions::default()
    }
}

/// A gzip'ed JSON report: its text (for messages) and its value.
fn gunzip_report(gzipped: &[u8]) -> anyhow::Result<(String, serde_json::Value)> {
    let mut json = String::new();
    GzDecoder::new(gzipped).read_to_string(&mut json)?;
    let report = serde_json::from_str(&json)?;
    Ok((json, report))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_sessions_is_reported_to_the_rua_mailbox() -> anyhow::Result<()> {
    // The recording MX for reports.test; the farm's port is every MX's.
    let farm = MxFarm::start(4, Behaviour::default()).await?;
    let ca = TestCa::new("Postern TLS-RPT test CA")?;
    // mx1's certificate is for another name: certificate-host-mismatch,
    // then mx2 (a valid certificate) takes the message.
    let _mx1 = mx_issued_by(2, farm.port, &ca, "wrong.test").await?;
    let mx2 = mx_issued_by(3, farm.port, &ca, "mx2.dest.test").await?;
    let metrics_port = postern_tests::process::free_port();
    let options = verify_options(
        &ca,
        vec![
            (
                "tlsrpt.ini".to_owned(),
                "organization_name=Postern Test\ncontact_info=tls@relay-out.test\n".to_owned(),
            ),
            (
                "metrics.ini".to_owned(),
                format!("listen=127.0.0.1:{metrics_port}\n"),
            ),
        ],
    );
    let mut out = Outbound::start(zone(), farm.port, options).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: hi\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery to mx2", || mx2.accepted().len() == 1).await?;
    assert!(mx2.accepted()[0].tls);
    let shown = wait_for_show(
        &out,
        "dest.test policy=no-policy-found successful=1 failed=1",
    )
    .await?;
    assert!(
        shown.contains("  certificate-host-mismatch mx=mx1.dest.test ip=127.0.0.2 sessions=1"),
        "{shown}"
    );
    assert!(!shown.contains("reports.test"), "{shown}");
    let metrics = postern_tests::metrics::scrape(([127, 0, 0, 1], metrics_port).into()).await?;
    for result in ["successful", "certificate-host-mismatch"] {
        let series = format!("postern_tlsrpt_sessions_total{{result=\"{result}\"}}");
        assert_eq!(
            postern_tests::metrics::value(&metrics, &series),
            1.0,
            "{metrics}"
        );
    }

    // The counts are on disk: a crash and a restart keep them.
    out.kill()?;
    out.restart()?;
    out.wait_for_log("delivering to port", WAIT).await?;

    let (code, said) = tlsrpt(&out, &["send"])?;
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("sending every pending TLS-RPT report now"),
        "{said}"
    );
    let reports = farm.get(4);
    wait_until(WAIT, "the report at reports.test", || {
        reports.accepted().len() == 1
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", out.log()))?;
    let accepted = &reports.accepted()[0];
    assert_eq!(accepted.rcpts, ["reports@reports.test"]);
    assert_eq!(accepted.mail_from, format!("<tlsrpt-noreply@{ME}>"));
    let mail = String::from_utf8(accepted.data.clone())?;

    // RFC 8460 §5.3's headers.
    let (head, _) = mail.split_once("\r\n\r\n").unwrap();
    let unfolded = head.replace("\r\n ", " ");
    let header = |name: &str| {
        unfolded
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(header("TLS-Report-Domain"), "dest.test");
    assert_eq!(header("TLS-Report-Submitter"), ME);
    assert!(
        header("Content-Type").starts_with("multipart/report; report-type=\"tlsrpt\";"),
        "{head}"
    );
    let subject = header("Subject");
    let prefix = format!("Report Domain: dest.test Submitter: {ME} Report-ID: <");
    assert!(
        subject.starts_with(&prefix) && subject.ends_with('>'),
        "{subject}"
    );
    let report_id = &subject[prefix.len()..subject.len() - 1];

    // The attachment: application/tlsrpt+gzip, named as §5.3 says.
    let (part_headers, gzipped) = attachment(&mail, "application/tlsrpt+gzip")?;
    let file_name = part_headers
        .replace("\r\n ", " ")
        .split("filename=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
        .unwrap_or_default();
    let fields: Vec<&str> = file_name.trim_end_matches(".json.gz").split('!').collect();
    assert!(file_name.ends_with(".json.gz"), "{file_name}");
    assert_eq!(fields[..2], [ME, "dest.test"], "{file_name}");
    let begin: i64 = fields[2].parse()?;
    let end: i64 = fields[3].parse()?;
    assert!(begin % 86_400 == 0 && begin <= end, "{file_name}");
    let (json, report) = gunzip_report(&gzipped)?;

    // RFC 8460 §4's fields and the counts.
    assert_eq!(report["organization-name"], "Postern Test", "{json}");
    assert_eq!(report["contact-info"], "tls@relay-out.test", "{json}");
    assert_eq!(report["report-id"], report_id, "{json}");
    let start = report["date-range"]["start-datetime"]
        .as_str()
        .unwrap_or("");
    let end_time = report["date-range"]["end-datetime"].as_str().unwrap_or("");
    assert!(
        start.ends_with("T00:00:00Z") && end_time.ends_with('Z'),
        "{json}"
    );
    let policies = report["policies"].as_array().cloned().unwrap_or_default();
    assert_eq!(policies.len(), 1, "{json}");
    let policy = &policies[0];
    assert_eq!(
        policy["policy"],
        serde_json::json!({"policy-type": "no-policy-found", "policy-domain": "dest.test"}),
        "{json}"
    );
    assert_eq!(
        policy["summary"],
        serde_json::json!({
            "total-successful-session-count": 1,
            "total-failure-session-count": 1
        }),
        "{json}"
    );
    let details = policy["failure-details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(details.len(), 1, "{json}");
    assert_eq!(
        details[0]["result-type"], "certificate-host-mismatch",
        "{json}"
    );
    assert_eq!(
        details[0]["receiving-mx-hostname"], "mx1.dest.test",
        "{json}"
    );
    assert_eq!(details[0]["receiving-ip"], "127.0.0.2", "{json}");
    assert_eq!(details[0]["sending-mta-ip"], "127.0.0.1", "{json}");
    assert_eq!(details[0]["failed-session-count"], 1, "{json}");

    let metrics = postern_tests::metrics::scrape(([127, 0, 0, 1], metrics_port).into()).await?;
    let queued = "postern_tlsrpt_reports_total{result=\"queued\"}";
    assert_eq!(
        postern_tests::metrics::value(&metrics, queued),
        1.0,
        "{metrics}"
    );

    // Sent, so nothing is pending any more.
    wait_for_show(&out, "no TLS-RPT counts pending").await?;
    Ok(())
}

/// `rua=https:`: the report is POSTed (RFC 8460 §5.4) to a real nginx on
/// loopback, whose certificate relay-out verifies with tls_policy.ini's
/// `ca_file`; the body nginx kept is the gzip'ed JSON report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_posted_to_an_https_rua() -> anyhow::Result<()> {
    let farm = MxFarm::start(9, Behaviour::default()).await?;
    let ca = TestCa::new("Postern TLS-RPT https test CA")?;
    let mx = mx_issued_by(2, farm.port, &ca, "mx1.dest.test").await?;
    let web = tempfile::tempdir()?;
    let web_addr = std::net::SocketAddr::new(ip(5).into(), postern_tests::process::free_port());
    let mut sink = PolicyServer::start(
        web.path(),
        web_addr,
        "reports.test",
        &ca.issue("reports.test")?,
        &Serve::ReportSink("/tlsrpt".into()),
    )?;
    let zone = TestZone::new()
        .mx("dest.test", 10, "mx1.dest.test")
        .a("mx1.dest.test", ip(2))
        .txt(
            "_smtp._tls.dest.test",
            &format!(
                "v=TLSRPTv1; rua=https://reports.test:{}/tlsrpt",
                web_addr.port()
            ),
        )
        .a("reports.test", ip(5));
    let out = Outbound::start(zone, farm.port, verify_options(&ca, Vec::new())).await?;
    out.submit("a@origin.test", &["u@dest.test"], "Subject: hi\n\nhi\n")
        .await?;
    wait_until(WAIT, "delivery to mx1", || mx.accepted().len() == 1).await?;
    wait_for_show(
        &out,
        "dest.test policy=no-policy-found successful=1 failed=0",
    )
    .await?;
    let (code, said) = tlsrpt(&out, &["send"])?;
    assert_eq!(code, 0, "{said}");
    out.wait_for_log("TLS-RPT report posted", WAIT)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", sink.log()))?;
    let requests = sink.requests();
    assert!(
        requests
            .iter()
            .any(|line| line.contains("\"POST /tlsrpt HTTP/1.1\" 204")),
        "{requests:?}"
    );
    let posted = sink.posted();
    assert_eq!(posted.len(), 1, "{}", sink.log());
    let (json, report) = gunzip_report(&posted[0])?;
    let policy = &report["policies"][0];
    assert_eq!(policy["policy"]["policy-domain"], "dest.test", "{json}");
    assert_eq!(
        policy["summary"]["total-successful-session-count"], 1,
        "{json}"
    );
    assert_eq!(
        policy["summary"]["total-failure-session-count"], 0,
        "{json}"
    );
    sink.stop();
    wait_for_show(&out, "no TLS-RPT counts pending").await?;
    Ok(())
}
