//! The opt-in Prometheus endpoint: scraped after mail went through both
//! relays, its counters have moved.

use std::net::SocketAddr;
use std::time::Duration;

use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::metrics::{scrape, value};
use postern_tests::process::{Relay, free_port};
use postern_tests::smtp::SmtpClient;

async fn send(addr: SocketAddr, rcpt: &str) -> anyhow::Result<u16> {
    let mut client = SmtpClient::connect(addr).await?;
    client.read_reply().await?;
    client.expect("EHLO c.example", 250).await?;
    Ok(client
        .send_mail("a@o.example", &[rcpt], "Subject: m\n\nx\n")
        .await?
        .code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_when_mail_goes_through_both_relays() -> anyhow::Result<()> {
    // relay-in in front of a recording backend.
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let in_dir = tempfile::tempdir()?;
    let (in_port, in_metrics) = (free_port(), free_port());
    std::fs::write(
        in_dir.path().join("smtp.ini"),
        format!("listen=127.0.0.1:{in_port}\nrdns=off\n"),
    )?;
    std::fs::write(in_dir.path().join("host_list"), "example.com\n")?;
    std::fs::write(
        in_dir.path().join("smtp_forward.ini"),
        format!("host=127.0.0.1\nport={}\n", backend.addr.port()),
    )?;
    std::fs::write(
        in_dir.path().join("metrics.ini"),
        format!("listen=127.0.0.1:{in_metrics}\n"),
    )?;
    let in_addr = SocketAddr::from(([127, 0, 0, 1], in_port));
    let _relay_in = Relay::start("relay-in", in_dir.path(), in_addr)?;
    let in_metrics = SocketAddr::from(([127, 0, 0, 1], in_metrics));

    let before = scrape(in_metrics).await?;
    assert_eq!(send(in_addr, "u@example.com").await?, 250);
    assert_eq!(
        send(in_addr, "u@elsewhere.example").await.ok(),
        None,
        "the second RCPT is refused"
    );
    let after = scrape(in_metrics).await?;
    let accepted = "postern_transactions_total{result=\"accepted\"}";
    assert_eq!(
        value(&after, accepted) - value(&before, accepted),
        1.0,
        "{after}"
    );
    assert!(
        value(&after, "postern_connections_total{result=\"accepted\"}") >= 2.0,
        "{after}"
    );
    assert_eq!(
        value(&after, "postern_backend_latency_seconds_count"),
        1.0,
        "{after}"
    );

    // relay-out takes a message into its queue.
    let out_dir = tempfile::tempdir()?;
    let (out_port, out_metrics) = (free_port(), free_port());
    std::fs::write(
        out_dir.path().join("smtp.ini"),
        format!("listen=127.0.0.1:{out_port}\nrdns=off\n"),
    )?;
    std::fs::write(out_dir.path().join("relay_acl_allow"), "127.0.0.1/32\n")?;
    std::fs::write(
        out_dir.path().join("outbound.ini"),
        format!(
            "queue_dir={}\ndisabled=true\n",
            out_dir.path().join("queue").display()
        ),
    )?;
    std::fs::write(
        out_dir.path().join("metrics.ini"),
        format!("listen=127.0.0.1:{out_metrics}\n"),
    )?;
    let out_addr = SocketAddr::from(([127, 0, 0, 1], out_port));
    let _relay_out = Relay::start("relay-out", out_dir.path(), out_addr)?;
    assert_eq!(send(out_addr, "friend@example.net").await?, 250);
    let out_metrics = SocketAddr::from(([127, 0, 0, 1], out_metrics));
    let out = scrape(out_metrics).await?;
    assert_eq!(value(&out, accepted), 1.0, "{out}");
    // Delivery is disabled: the message waits in the queue, and the queue
    // gauges (refreshed every second) show it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let out = scrape(out_metrics).await?;
        if value(&out, "postern_queue_messages") == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue gauge never showed the message:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
