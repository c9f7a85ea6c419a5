//! The spare backend session (`crates/relay-in/src/forward/spare.rs`,
//! issue 19): while clients come densely, relay-in keeps one session with
//! the backend connected and greeted but no one's, and the next client's
//! open starts at XCLIENT on it. What must hold: a spare serves exactly one
//! client (one XCLIENT per backend session, carrying that client), an unused
//! spare is closed with QUIT, and a spare the backend closed meanwhile costs
//! the sender nothing. Once the backend's EHLO offer is known (the startup
//! probe), sessions say XCLIENT without an EHLO before it; a backend that
//! will not take that gets EHLO first, and the sender never notices.

use std::collections::HashSet;
use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::outbound::wait_until;
use postern_tests::relay_in::{ForwardingRelay, queue_mode};

/// Postfix's smtp-source: `messages` messages, one connection each, one
/// after another, from 127.0.0.1 (it says HELO).
async fn smtp_source(s: &ForwardingRelay, messages: usize) -> anyhow::Result<()> {
    let addr = s.v4.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("smtp-source")
            .args(["-s", "1", "-m", &messages.to_string(), "-l", "500"])
            .args(["-f", "a@test.local", "-t", "u@example.com", &addr])
            .output()
    })
    .await??;
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(
        output.status.success() && said.trim().is_empty(),
        "smtp-source: {} {said}\n{}",
        output.status,
        s.relay.log()
    );
    Ok(())
}

/// The `PORT=` of an XCLIENT line: which client connection it speaks for.
fn xclient_port(line: &str) -> String {
    line.split_whitespace()
        .find_map(|attribute| attribute.strip_prefix("PORT="))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_spare_serves_one_client_and_the_unused_one_is_closed() -> anyhow::Result<()> {
    const MESSAGES: usize = 8;
    let (backend, s) = queue_mode(Behaviour::default()).await?;
    smtp_source(&s, MESSAGES).await?;

    let accepted = backend.accepted();
    assert_eq!(accepted.len(), MESSAGES, "{}", s.relay.log());
    // One XCLIENT per backend session, each for another client connection,
    // and re-greeted with EHLO (smtp-source said HELO) so MAIL, RCPT and
    // DATA could go in one round trip.
    let xclients = backend.lines_starting("XCLIENT");
    assert_eq!(xclients.len(), MESSAGES, "{xclients:?}");
    let ports: HashSet<String> = xclients.iter().map(|l| xclient_port(l)).collect();
    assert_eq!(
        ports.len(),
        MESSAGES,
        "a session served two clients: {xclients:?}"
    );
    for message in &accepted {
        let xclient = message.xclient.as_deref().unwrap_or_default();
        assert!(xclient.contains("PROTO=SMTP"), "{xclient}");
        // The probe told relay-in what the backend offers: no EHLO before
        // XCLIENT, one after it.
        assert_eq!(message.ehlos.len(), 1, "{:?}", message.ehlos);
        assert!(message.ehlos[0].starts_with("EHLO "), "{:?}", message.ehlos);
    }
    assert_eq!(backend.record().connections, MESSAGES);

    // The last client's open made a spare nobody took: it is closed with a
    // QUIT within the 2 s idle limit, a session without mail, like a probe.
    // Spares that were never used would show here as more such sessions.
    wait_until(Duration::from_secs(6), "the unused spare closed", || {
        let record = backend.record();
        record.in_flight == 0 && record.probes == 2
    })
    .await?;
    let record = backend.record();
    assert_eq!(
        record.sessions,
        1 + MESSAGES + 1,
        "probe, one per message, one spare"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_the_backend_closed_is_replaced_and_the_sender_gets_its_250() -> anyhow::Result<()>
{
    let (backend, s) = queue_mode(Behaviour::default()).await?;
    // Two opens in quick succession make a spare after the second.
    smtp_source(&s, 2).await?;
    wait_until(Duration::from_secs(2), "the spare connected", || {
        let record = backend.record();
        record.sessions == 1 + 2 + 1 && record.in_flight == 1
    })
    .await?;
    // The backend restarts: the spare's connection is gone.
    backend.end_sessions();
    smtp_source(&s, 1).await?;

    assert_eq!(backend.accepted().len(), 3, "{}", s.relay.log());
    s.relay.wait_for_log(
        "the spare backend session was closed or refused XCLIENT before EHLO; opening a new one",
        Duration::from_secs(5),
    )?;
    let log = s.relay.log();
    assert!(!log.contains("XCLIENT failed"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_wants_ehlo_before_xclient_gets_it_and_the_sender_its_250()
-> anyhow::Result<()> {
    let (backend, s) = queue_mode(Behaviour {
        xclient_needs_ehlo: true,
        ..Behaviour::default()
    })
    .await?;
    smtp_source(&s, 3).await?;

    let accepted = backend.accepted();
    assert_eq!(accepted.len(), 3, "{}", s.relay.log());
    for message in &accepted {
        assert_eq!(
            message.ehlos.len(),
            2,
            "EHLO, XCLIENT, EHLO: {:?}",
            message.ehlos
        );
    }
    // Tried once, then never again.
    let log = s.relay.log();
    assert_eq!(
        log.matches("the backend did not take XCLIENT before EHLO")
            .count(),
        1,
        "{log}"
    );
    // The one refused, then one per message.
    assert_eq!(backend.lines_starting("XCLIENT").len(), 4);
    Ok(())
}
