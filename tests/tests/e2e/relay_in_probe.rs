//! relay-in probing its backend (issue 14): a backend that does not offer
//! XCLIENT is announced at startup, once, with the Postfix line that fixes
//! it; a backend that drops packets costs the next sender nothing (451 at
//! RCPT, at once); mail flows again once a probe reaches it.

use std::time::{Duration, Instant};

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::metrics::{scrape, value};
use postern_tests::process::{free_port, run};
use postern_tests::relay_in::{ForwardingRelay, greeted};

/// relay-in's test-only probe interval.
const INTERVAL_ENV: &str = "POSTERN_PROBE_INTERVAL_MS";

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `relay-in --check --probe -c DIR`.
fn check_probe(s: &ForwardingRelay) -> anyhow::Result<(i32, String)> {
    let dir = s.dir().display().to_string();
    run("relay-in", &["--check", "--probe", "-c", &dir])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_without_xclient_is_announced_at_startup_once_with_the_postfix_line()
-> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour {
        xclient: None,
        ..Behaviour::default()
    })
    .await?;
    let metrics_port = free_port();
    let started = Instant::now();
    let s = ForwardingRelay::start_with(
        backend.addr,
        "",
        &[("metrics.ini", format!("listen=127.0.0.1:{metrics_port}\n"))],
        &[(INTERVAL_ENV, "100")],
    )?;
    let announced = format!("backend {} does not offer XCLIENT", backend.addr);
    s.relay.wait_for_log(
        &announced,
        Duration::from_secs(5).saturating_sub(started.elapsed()),
    )?;
    let log = s.relay.log();
    let line = log
        .lines()
        .find(|l| l.contains(&announced))
        .unwrap_or_default();
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("451 4.7.0"), "what happens to mail: {line}");
    assert!(
        line.contains("smtpd_authorized_xclient_hosts = 127.0.0.1"),
        "{line}"
    );
    assert_eq!(backend.record().connections, 0, "before any mail");

    // Several more probes find the same: the line is not repeated.
    let probes = backend.probes();
    wait_until("five more probes", Duration::from_secs(10), || {
        backend.probes() >= probes + 5
    })
    .await?;
    let log = s.relay.log();
    assert_eq!(log.matches(&announced).count(), 1, "{log}");

    let metrics = scrape(([127, 0, 0, 1], metrics_port).into()).await?;
    let series = |name: &str| format!("{name}{{backend=\"{}\"}}", backend.addr);
    assert_eq!(
        value(&metrics, &series("postern_backend_up")),
        1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("{} 0", series("postern_backend_xclient"))),
        "{metrics}"
    );

    // --check --probe finds it before the switch, in the same words.
    let (code, output) = check_probe(&s)?;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains(&format!("error: {announced}")), "{output}");
    assert!(
        output.contains("smtpd_authorized_xclient_hosts = 127.0.0.1"),
        "{output}"
    );
    assert!(output.contains("FAILED"), "{output}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probe_passes_a_healthy_backend_and_fails_an_unreachable_one() -> anyhow::Result<()> {
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start(backend.addr, "")?;
    let (code, output) = check_probe(&s)?;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!(
            "probe: backend {} answers and offers XCLIENT",
            backend.addr
        )),
        "{output}"
    );
    assert!(output.contains("OK: every backend answers"), "{output}");

    backend.down();
    let (code, output) = check_probe(&s)?;
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains(&format!("error: backend {} is down", backend.addr)),
        "{output}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_drops_packets_costs_the_next_sender_nothing_and_mail_flows_when_it_is_back()
-> anyhow::Result<()> {
    // The default intervals: a probe at startup, then every minute, and
    // every 2 s while the backend is down.
    for mode in ["mode=queue", "mode=live"] {
        let mut backend = RecordingBackend::start(Behaviour::default()).await?;
        let s = ForwardingRelay::start(backend.addr, mode)?;
        wait_until("the startup probe", Duration::from_secs(5), || {
            backend.probes() == 1
        })
        .await?;
        let mut client = greeted(s.v4, "c.example").await?;
        let reply = client
            .send_mail("a@o.example", &["u@example.com"], "Subject: before\n\nx\n")
            .await?;
        assert_eq!(reply.code, 250, "{mode}: {reply:?}");

        // WireGuard goes down: the backend's packets are dropped. The
        // first sender waits connect_timeout (2 s here) for its 451.
        backend.silence().await?;
        let mut first = greeted(s.v4, "c.example").await?;
        let reply = first
            .try_mail("a@o.example", &["u@example.com"], "Subject: lost\n\nx\n")
            .await?;
        assert!(reply.lines[0].starts_with("451 4.4.1"), "{mode}: {reply:?}");
        let log = s.relay.log();
        let down = format!("backend {} is down", backend.addr);
        assert_eq!(log.matches(&down).count(), 1, "{mode}: {log}");

        // The next sender is answered at once, before it sends any data.
        let mut next = greeted(s.v4, "c.example").await?;
        next.expect("MAIL FROM:<a@o.example>", 250).await?;
        let asked = Instant::now();
        let reply = next.command("RCPT TO:<u@example.com>").await?;
        let took = asked.elapsed();
        assert!(reply.lines[0].starts_with("451 4.4.1"), "{mode}: {reply:?}");
        assert!(took < Duration::from_secs(1), "{mode}: RCPT took {took:?}");

        // The tunnel is back: a probe reaches the backend and mail flows.
        let probes = backend.probes();
        backend.up().await?;
        wait_until(
            "a probe of the backend that is back",
            Duration::from_secs(10),
            || backend.probes() > probes,
        )
        .await?;
        next.expect("RSET", 250).await?;
        let reply = next
            .try_mail("a@o.example", &["u@example.com"], "Subject: after\n\nx\n")
            .await?;
        assert_eq!(reply.code, 250, "{mode}: {reply:?}\n{}", s.relay.log());
        let subjects: Vec<String> = backend
            .accepted()
            .iter()
            .map(|a| String::from_utf8_lossy(&a.data).into_owned())
            .filter_map(|data| {
                data.lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
            })
            .collect();
        assert_eq!(subjects, ["before", "after"], "{mode}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_finds_the_backend_down_before_any_sender_does() -> anyhow::Result<()> {
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = ForwardingRelay::start_with(backend.addr, "", &[], &[(INTERVAL_ENV, "200")])?;
    wait_until("the startup probe", Duration::from_secs(5), || {
        backend.probes() >= 1
    })
    .await?;
    backend.silence().await?;
    // The next probe times out connecting (connect_timeout, 2 s here).
    s.relay.wait_for_log(
        &format!("backend {} is down", backend.addr),
        Duration::from_secs(5),
    )?;
    let mut client = greeted(s.v4, "c.example").await?;
    client.expect("MAIL FROM:<a@o.example>", 250).await?;
    let asked = Instant::now();
    let reply = client.command("RCPT TO:<u@example.com>").await?;
    assert!(reply.lines[0].starts_with("451 4.4.1"), "{reply:?}");
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(backend.record().connections, 0, "no mail session was tried");
    Ok(())
}
