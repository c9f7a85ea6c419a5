//! relay-in and relay-out behind a real HAProxy (connection.ini `[haproxy]
//! hosts[]`): the PROXY header's client address, v1 and v2, is the one
//! XCLIENT, Received, the per-address limits, relay-out's ACL and the logs
//! use; a header from a host that is not listed is refused, as is a listed
//! host's garbage.

use std::net::IpAddr;
use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::dns::TestZone;
use postern_tests::haproxy::{Frontend, HaProxy, Header};
use postern_tests::outbound::{Outbound, OutboundOptions};
use postern_tests::process::free_port;
use postern_tests::relay_in::ForwardingRelay;
use postern_tests::smtp::SmtpClient;

/// HAProxy connects to the relay from 127.0.0.1, the listed proxy;
/// frontends that connect from 127.0.0.2 play a proxy nobody listed.
const LISTED: &str = "127.0.0.1";
const UNLISTED: &str = "127.0.0.2";

fn relay(backend: &RecordingBackend, extra: &[(&str, String)]) -> anyhow::Result<ForwardingRelay> {
    let mut files = vec![(
        "connection.ini",
        format!("[haproxy]\nhosts[] =\nhosts[] = {LISTED}\n"),
    )];
    files.extend(extra.iter().cloned());
    ForwardingRelay::start_with(backend.addr, "", &files, &[])
}

/// A client connected through `frontend` from `source` that has its
/// greeting.
async fn greeted_through(frontend: &Frontend, source: &str) -> anyhow::Result<SmtpClient> {
    let mut client = SmtpClient::connect_from(source.parse()?, frontend.bind).await?;
    let greeting = client.read_reply().await?;
    assert_eq!(greeting.code, 220, "{greeting:?}");
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_and_received_carry_the_client_behind_haproxy_v1_and_v2() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = relay(&backend, &[])?;
    let frontends = [
        Frontend::new("127.0.0.1", Header::V1, LISTED)?,
        Frontend::new("127.0.0.1", Header::V2, LISTED)?,
        Frontend::new("::1", Header::V1, LISTED)?,
    ];
    let haproxy = HaProxy::start(s.dir(), s.v4, &frontends)?;

    let mut ports = Vec::new();
    for (frontend, source) in frontends.iter().zip(["127.0.0.5", "127.0.0.5", "::1"]) {
        let mut client = greeted_through(frontend, source).await?;
        client.expect("EHLO client.example", 250).await?;
        let reply = client
            .send_mail(
                "a@origin.example",
                &["user@example.com"],
                &format!("Subject: {:?}\n\nhello\n", frontend.header),
            )
            .await?;
        assert_eq!(
            reply.code,
            250,
            "{reply:?}\n{}\n{}",
            s.relay.log(),
            haproxy.log()
        );
        ports.push(client.local_addr().port());
        client.expect("QUIT", 221).await?;
    }

    let accepted = backend.accepted();
    assert_eq!(accepted.len(), 3);
    for (n, expected_addr) in ["ADDR=127.0.0.5", "ADDR=127.0.0.5", "ADDR=IPV6:::1"]
        .iter()
        .enumerate()
    {
        let xclient = accepted[n].xclient.as_deref().unwrap_or_default();
        assert!(
            xclient.ends_with(expected_addr),
            "{:?}: {xclient}",
            frontends[n].header
        );
        // PORT= is the client's port, not HAProxy's.
        assert!(
            xclient.contains(&format!(" PORT={} ", ports[n])),
            "{xclient}"
        );
    }
    for message in &accepted[..2] {
        let data = String::from_utf8_lossy(&message.data);
        assert!(
            data.starts_with("Received: from client.example ([127.0.0.5])\r\n"),
            "{data}"
        );
    }
    // The transaction's log line names both the client and the proxy.
    let log = s.relay.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("message accepted"))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].contains("client=127.0.0.5 proxy=127.0.0.1"),
        "{log}"
    );
    assert!(lines[2].contains("client=::1 proxy=127.0.0.1"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_from_a_host_not_listed_is_refused() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let s = relay(&backend, &[])?;
    let frontends = [
        Frontend::new("127.0.0.1", Header::V1, UNLISTED)?,
        Frontend::new("127.0.0.1", Header::V2, UNLISTED)?,
    ];
    let haproxy = HaProxy::start(s.dir(), s.v4, &frontends)?;

    for frontend in &frontends {
        let mut client = SmtpClient::connect_from("127.0.0.5".parse()?, frontend.bind).await?;
        let reply = client.read_reply().await?;
        assert_eq!(
            reply.lines.last().map(String::as_str),
            Some("421 4.7.0 mx.test PROXY not allowed from 127.0.0.2"),
            "{:?}: {reply:?}\n{}\n{}",
            frontend.header,
            s.relay.log(),
            haproxy.log()
        );
        assert!(client.closed_within(Duration::from_secs(5)).await?);
    }

    // A client that waits for the greeting and then sends a PROXY line as
    // a command gets the same refusal (Haraka's path).
    let source: IpAddr = "127.0.0.6".parse()?;
    let mut client = SmtpClient::connect_from(source, s.v4).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    let reply = client
        .command("PROXY TCP4 203.0.113.9 127.0.0.1 40000 25")
        .await?;
    assert_eq!(
        reply.lines,
        ["421 4.7.0 mx.test PROXY not allowed from 127.0.0.6"]
    );
    assert!(client.closed_within(Duration::from_secs(5)).await?);
    assert!(backend.accepted().is_empty());
    Ok(())
}

/// A listed host gets no greeting before its header, and garbage instead
/// of one is refused; the per-address connection cap counts the clients
/// behind the proxy, not the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_proxy_must_send_a_header_and_limits_count_its_clients() -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let limit = ("limit.ini", "[concurrency]\nmax=1\n".to_owned());
    let s = relay(&backend, &[limit])?;
    let dir = s.dir().to_str().unwrap_or_default();
    let (code, check) = postern_tests::process::run("relay-in", &["--check", "-c", dir])?;
    assert_eq!(code, 0, "{check}");
    assert!(
        check.contains("PROXY protocol (v1, v2) required from: 127.0.0.1/32"),
        "{check}"
    );

    let mut direct = SmtpClient::connect_from(LISTED.parse()?, s.v4).await?;
    direct.send(b"EHLO not-a-proxy.example\r\n").await?;
    let reply = direct.read_reply().await?;
    assert_eq!(reply.lines, ["421 4.5.2 mx.test Invalid PROXY format"]);
    assert!(direct.closed_within(Duration::from_secs(5)).await?);
    s.relay.wait_for_log(
        "invalid PROXY header: not a PROXY header",
        Duration::from_secs(5),
    )?;

    let frontend = Frontend::new("127.0.0.1", Header::V2, LISTED)?;
    let _haproxy = HaProxy::start(s.dir(), s.v4, &[frontend])?;
    let mut first = greeted_through(&frontend, "127.0.0.5").await?;
    first.expect("EHLO first.example", 250).await?;
    let mut second = SmtpClient::connect_from("127.0.0.5".parse()?, frontend.bind).await?;
    let reply = second.read_reply().await?;
    assert_eq!(reply.code, 421, "{reply:?}");
    assert!(reply.text().contains("from your address"), "{reply:?}");
    // Another client through the same proxy has its own count.
    let mut other = greeted_through(&frontend, "127.0.0.6").await?;
    other.expect("EHLO other.example", 250).await?;
    first.expect("QUIT", 221).await?;
    other.expect("QUIT", 221).await?;
    Ok(())
}

/// relay-out's relay_acl_allow judges the client behind the proxy: only
/// 127.0.0.5 is listed, and HAProxy itself (127.0.0.1) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_out_acl_judges_the_client_behind_haproxy() -> anyhow::Result<()> {
    let zone = TestZone::new()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", [127, 0, 0, 2].into());
    let options = OutboundOptions {
        acl: vec!["127.0.0.5/32".into()],
        files: vec![(
            "connection.ini".into(),
            format!("[haproxy]\nhosts[] = {LISTED}\n"),
        )],
        ..OutboundOptions::default()
    };
    let out = Outbound::start(zone, free_port(), options).await?;
    let frontend = Frontend::new("127.0.0.1", Header::V1, LISTED)?;
    let _haproxy = HaProxy::start(out.config_dir(), out.addr, &[frontend])?;
    for (source, code) in [("127.0.0.5", 250), ("127.0.0.6", 550)] {
        let mut client = greeted_through(&frontend, source).await?;
        client.expect("EHLO client.test", 250).await?;
        client.expect("MAIL FROM:<a@origin.test>", 250).await?;
        let reply = client.command("RCPT TO:<u@dest.test>").await?;
        assert_eq!(reply.code, code, "{source}: {reply:?}\n{}", out.log());
        client.expect("QUIT", 221).await?;
    }
    Ok(())
}
