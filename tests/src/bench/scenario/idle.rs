//! `scenario idle`: thousands of idle connections held open on relay-in,
//! its memory with them, and how soon a new client is served meanwhile.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{Bench, check_idle_rss, smtp_ini, targets, tls_ini};
use crate::bench::client::{Connection, Outcome, connect};
use crate::bench::daemon::raise_file_limit;
use crate::bench::message::WireMessage;
use crate::bench::reply::parse_reply;
use crate::bench::report::ScenarioReport;
use crate::bench::sink::Offers;
use crate::bench::tls::SERVER_NAME;
use crate::process::free_port;

/// Connections opened at once: enough to be quick, few enough that the
/// listen backlog never overflows (a dropped SYN costs a second).
const OPENING_BATCH: usize = 256;
/// How long one idle connection may take to be greeted and answered.
const GREETING_TIMEOUT: Duration = Duration::from_secs(30);
/// New clients tried while the idle connections are held.
const PROBES: usize = 10;
/// The bound on serving a new client beside the idle ones.
const MAX_NEW_CLIENT_MS: f64 = 100.0;
/// Open files the bench needs beyond one per connection.
const SPARE_FILES: u64 = 1024;

/// The address of idle connection `index` with `per_address` to an address:
/// 127.2.0.1, 127.2.0.2, … (250 per /24), apart from the load sources.
fn idle_source(index: usize, per_address: usize) -> IpAddr {
    let n = index / per_address.max(1);
    IpAddr::V4(Ipv4Addr::new(
        127,
        2 + (n / 62_500) as u8,
        ((n / 250) % 250) as u8,
        (n % 250) as u8 + 1,
    ))
}

/// Connects, reads the greeting, says EHLO and reads the reply, then holds
/// the socket: a client that has greeted and gone quiet, as a slow sender
/// between commands or a bot that never goes on.
async fn idle_connection(target: SocketAddr, source: IpAddr) -> anyhow::Result<TcpStream> {
    let mut tcp = connect(target, Some(source), GREETING_TIMEOUT).await?;
    let exchange = async {
        let mut input = Vec::new();
        expect_reply(&mut tcp, &mut input, 220).await?;
        tcp.write_all(b"EHLO idle.bench.test\r\n").await?;
        expect_reply(&mut tcp, &mut input, 250).await
    };
    tokio::time::timeout(GREETING_TIMEOUT, exchange).await??;
    Ok(tcp)
}

/// Reads one reply and fails unless it has `code`.
async fn expect_reply(tcp: &mut TcpStream, input: &mut Vec<u8>, code: u16) -> anyhow::Result<()> {
    let mut chunk = [0u8; 512];
    loop {
        if let Some(frame) = parse_reply(input)? {
            let text = String::from_utf8_lossy(&input[..frame.len])
                .trim_end()
                .to_string();
            input.drain(..frame.len);
            if frame.code != code {
                bail!("expected {code}, got {text}");
            }
            return Ok(());
        }
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed while waiting for {code}");
        }
        input.extend_from_slice(&chunk[..n]);
    }
}

pub async fn run(
    bench: &Bench,
    connections: usize,
    per_address: usize,
) -> anyhow::Result<ScenarioReport> {
    let files = raise_file_limit(connections as u64 + SPARE_FILES)?;
    let (_sink, sink_addr) = bench
        .start_sink(Offers {
            xclient: true,
            starttls: false,
        })
        .await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // Twice the connections: relay-in shortens its timeouts above 80% of
    // max_connections, which would end the idle connections early.
    let smtp = smtp_ini(
        addr,
        &format!("max_connections={}\n", (connections * 2).max(1000)),
    );
    let files_in = [
        ("smtp.ini", smtp),
        ("limit.ini", format!("[concurrency]\nmax={per_address}\n")),
        ("me", format!("{SERVER_NAME}\n")),
        ("host_list", "example.com\n".to_string()),
        (
            "smtp_forward.ini",
            format!("host=127.0.0.1\nport={}\n", sink_addr.port()),
        ),
        ("tls.ini", tls_ini(&bench.pki()?.server_pem)),
    ];
    let (mut relay, _) = bench.start_relay("relay-in", &files_in, addr).await?;

    // One untimed session from each address first, as senders that have
    // talked to this server before: an address's first connection of the
    // day sits through relay-in's pregreet wait (early_talker.ini pause),
    // which is not what this scenario measures.
    let mut sources: Vec<IpAddr> = (0..connections)
        .step_by(per_address.max(1))
        .map(|index| idle_source(index, per_address))
        .collect();
    sources.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut warm_up = JoinSet::new();
    for source in sources {
        warm_up.spawn(async move {
            if let Ok(conn) = Connection::open(addr, Some(source), None, GREETING_TIMEOUT).await {
                conn.quit().await;
            }
        });
    }
    while warm_up.join_next().await.is_some() {}

    let opening = Instant::now();
    let mut held = Vec::with_capacity(connections);
    let mut failures = 0usize;
    let mut first_error = None;
    for batch_start in (0..connections).step_by(OPENING_BATCH) {
        let mut batch = JoinSet::new();
        for index in batch_start..(batch_start + OPENING_BATCH).min(connections) {
            batch.spawn(idle_connection(addr, idle_source(index, per_address)));
        }
        while let Some(joined) = batch.join_next().await {
            match joined.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(stream) => held.push(stream),
                Err(error) => {
                    failures += 1;
                    first_error.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
    let opening_seconds = opening.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_idle = relay.daemon.memory()?;

    let message = WireMessage::new(2048);
    let mut greeted_ms = Vec::new();
    let mut served_ms = Vec::new();
    for _ in 0..PROBES {
        let started = Instant::now();
        let mut conn = Connection::open(
            addr,
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            None,
            GREETING_TIMEOUT,
        )
        .await?;
        greeted_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        match conn.send(&message.wire).await? {
            Outcome::Delivered(_) => served_ms.push(started.elapsed().as_secs_f64() * 1000.0),
            Outcome::Refused(text) => bail!("new client refused beside idle connections: {text}"),
        }
        conn.quit().await;
    }
    let still_open = held.len();
    drop(held);

    let mut report = ScenarioReport {
        scenario: "relay-in idle connections".to_string(),
        command: format!(
            "postern-bench scenario idle --connections {connections} --per-address {per_address}"
        ),
        ..ScenarioReport::default()
    };
    let kb_per_connection =
        (with_idle.now_kb.saturating_sub(relay.idle.now_kb)) as f64 / still_open.max(1) as f64;
    let rss_mb = with_idle.now_kb as f64 / 1024.0;
    let worst_greeting = greeted_ms.iter().copied().fold(0.0, f64::max);
    let worst_served = served_ms.iter().copied().fold(0.0, f64::max);
    report.fact("open-file limit", files as f64, "");
    report.fact("idle connections held", still_open as f64, "");
    report.fact("connections that failed to open", failures as f64, "");
    report.fact("time to open them", opening_seconds, "s");
    report.fact(
        "relay-in RSS before",
        relay.idle.now_kb as f64 / 1024.0,
        "MB",
    );
    report.fact("relay-in RSS with the idle connections", rss_mb, "MB");
    report.fact("relay-in peak RSS", with_idle.peak_kb as f64 / 1024.0, "MB");
    report.fact("memory per idle connection", kb_per_connection, "KiB");
    report.fact(
        "new client: connect to EHLO reply, worst of 10",
        worst_greeting,
        "ms",
    );
    report.fact(
        "new client: connect to message accepted, worst of 10",
        worst_served,
        "ms",
    );
    if let Some(error) = first_error {
        report.fact(&format!("first failure: {error}"), 0.0, "");
    }
    report.check(
        &format!("all {connections} connections open"),
        format!("{still_open} open, {failures} failed"),
        still_open == connections,
    );
    report.check(
        &format!(
            "relay-in RSS with {connections} idle connections < {} MB",
            targets::TEN_THOUSAND_IDLE_RSS_MB
        ),
        format!("{rss_mb:.1} MB"),
        rss_mb < targets::TEN_THOUSAND_IDLE_RSS_MB,
    );
    report.check(
        &format!("a new client is served within {MAX_NEW_CLIENT_MS} ms"),
        format!("EHLO answered in {worst_greeting:.1} ms, message accepted in {worst_served:.1} ms (worst of {PROBES})"),
        worst_greeting < MAX_NEW_CLIENT_MS,
    );
    check_idle_rss(&mut report, &[&relay]);
    if !relay.daemon.is_running() {
        bail!("relay-in died during the run:\n{}", relay.daemon.log_tail());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_sources_are_distinct_loopback_addresses() {
        assert_eq!(idle_source(0, 100), IpAddr::V4(Ipv4Addr::new(127, 2, 0, 1)));
        assert_eq!(
            idle_source(99, 100),
            IpAddr::V4(Ipv4Addr::new(127, 2, 0, 1))
        );
        assert_eq!(
            idle_source(100, 100),
            IpAddr::V4(Ipv4Addr::new(127, 2, 0, 2))
        );
        assert_eq!(
            idle_source(250 * 100, 100),
            IpAddr::V4(Ipv4Addr::new(127, 2, 1, 1))
        );
        let last = idle_source(100_000 * 100, 100);
        assert!(matches!(last, IpAddr::V4(v4) if v4.is_loopback()));
    }
}
