//! Crash safety of relay-in's backup spool (issue 15): 200 messages are
//! sent from one address while the backend is away and relay-in is killed
//! with SIGKILL five times during intake, then five times while it hands the
//! spool to the backend that is back, restarting each time. Every message
//! answered 250 must reach the backend; duplicates are counted.
//!
//! Where a duplicate can come from (relay-in's `backup/delivery.rs`): a kill
//! after the backend's 250 to the data and before the spool recorded it, so
//! at most one per delivery-phase kill per message in flight (at most
//! `spool_concurrency` = 2); or a sender that resends a message whose 250 it
//! never read (an intake kill after the fsync), which the spool then keeps
//! twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_tests::backend::{Accepted, Behaviour, RecordingBackend};
use postern_tests::outbound::wait_until;
use postern_tests::process::Relay;
use postern_tests::relay_in::ForwardingRelay;
use postern_tests::smtp::SmtpClient;

const MESSAGES: usize = 200;
const SENDERS: usize = 4;
const KILLS_PER_PHASE: usize = 5;
const DEADLINE: Duration = Duration::from_secs(180);
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
/// The shipped probe intervals: no test override.
const ENV: &[(&str, &str)] = &[];

fn crash_id(accepted: &Accepted) -> Option<usize> {
    String::from_utf8_lossy(&accepted.data)
        .lines()
        .find_map(|line| line.strip_prefix("X-Crash-Id: "))
        .and_then(|id| id.trim().parse().ok())
}

fn delivered_counts(backend: &RecordingBackend) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for accepted in backend.accepted() {
        if let Some(id) = crash_id(&accepted) {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

/// SIGKILL, then start again on the same spool (the old process is reaped
/// first, so its PID file names no live daemon).
fn crash_and_restart(s: &mut ForwardingRelay) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| {
        s.relay.signal(libc::SIGKILL);
        // SIGTERM to a process already killed: this only reaps it.
        s.relay.stop(Duration::from_secs(10))?;
        let dir = s.dir().to_path_buf();
        s.relay = Relay::start_with_env("relay-in", &dir, s.v4, ENV)?;
        Ok(())
    })
}

/// One message from [`CLIENT`] (numbered `id`, if given); true when it
/// was answered 250.
async fn send(relay: std::net::SocketAddr, id: Option<usize>) -> bool {
    let body = match id {
        Some(id) => format!("Subject: crash {id}\nX-Crash-Id: {id}\n\nmessage {id}\n"),
        None => "Subject: first\n\nthe recipient becomes known\n".to_owned(),
    };
    let attempt = async {
        let mut client = SmtpClient::connect_from(CLIENT, relay).await?;
        if client.read_reply().await?.code != 220 {
            anyhow::bail!("no greeting");
        }
        client.expect("EHLO sender.example", 250).await?;
        let reply = client
            .try_mail("a@sender.example", &["u@example.com"], &body)
            .await?;
        Ok(reply.code == 250)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), attempt).await,
        Ok(Ok(true))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_answered_250_reaches_the_backend_across_sigkills() -> anyhow::Result<()> {
    tokio::time::timeout(DEADLINE, run()).await?
}

async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let spool = tempfile::tempdir()?;
    let mut backend = RecordingBackend::start(Behaviour::default()).await?;
    let mut s = ForwardingRelay::start_with(
        backend.addr,
        &format!("mode=spool\nspool_dir={}\n", spool.path().display()),
        &[],
        ENV,
    )?;
    // The recipient becomes known, and its verification reaches the disk.
    assert!(send(s.v4, None).await, "{}", s.relay.log());
    let store = spool.path().join("verified-recipients");
    wait_until(
        Duration::from_secs(10),
        "the verified store on disk",
        || std::fs::read_to_string(&store).is_ok_and(|text| text.contains("u@example.com")),
    )
    .await?;

    // Phase 1: the backend is away; everything goes to the spool.
    backend.down();
    let todo = Arc::new(Mutex::new((0..MESSAGES).collect::<VecDeque<_>>()));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let attempts = Arc::new(Mutex::new(0usize));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (todo, acknowledged, attempts) = (
            Arc::clone(&todo),
            Arc::clone(&acknowledged),
            Arc::clone(&attempts),
        );
        let relay = s.v4;
        senders.push(tokio::spawn(async move {
            let deadline = Instant::now() + DEADLINE;
            while Instant::now() < deadline {
                let next = todo.lock().unwrap().pop_front();
                let Some(id) = next else {
                    return;
                };
                *attempts.lock().unwrap() += 1;
                if send(relay, Some(id)).await {
                    acknowledged.lock().unwrap().insert(id);
                } else {
                    // Cut off by the kill or refused during the restart:
                    // the sender keeps it and retries, as a real MTA does.
                    todo.lock().unwrap().push_back(id);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let mut intake_kills = 0;
    for threshold in [20, 50, 90, 130, 170] {
        let acknowledged = Arc::clone(&acknowledged);
        wait_until(Duration::from_secs(60), "intake progress", || {
            acknowledged.lock().unwrap().len() >= threshold
        })
        .await?;
        crash_and_restart(&mut s)?;
        intake_kills += 1;
    }
    for sender in senders {
        sender.await?;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(
        acknowledged.len(),
        MESSAGES,
        "every message was answered 250 in the end"
    );
    assert!(
        delivered_counts(&backend).is_empty(),
        "the backend was away"
    );

    // Phase 2: the backend is back; kills while the spool is handed over.
    backend.up().await?;
    let mut delivery_kills = 0;
    for threshold in [10, 40, 80, 120, 160] {
        wait_until(Duration::from_secs(60), "delivery progress", || {
            delivered_counts(&backend).len() >= threshold
        })
        .await?;
        crash_and_restart(&mut s)?;
        delivery_kills += 1;
    }
    wait_until(
        Duration::from_secs(60),
        "every acknowledged message at the backend",
        || {
            let delivered = delivered_counts(&backend);
            acknowledged.iter().all(|id| delivered.contains_key(id))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", s.relay.log()))?;

    let delivered = delivered_counts(&backend);
    let duplicates: usize = delivered.values().map(|count| count - 1).sum();
    println!(
        "backup spool crash test: {MESSAGES} messages answered 250 after {} attempts, \
         {intake_kills} kills during intake, {delivery_kills} during delivery; \
         {} deliveries, {duplicates} duplicate(s), {:.1} s",
        *attempts.lock().unwrap(),
        delivered.values().sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    assert!(delivered.keys().all(|id| *id < MESSAGES));
    // Bound: each intake kill can make a sender resend one message per
    // connection in flight (SENDERS), each delivery kill re-deliver the
    // messages in flight (spool_concurrency, 2).
    assert!(
        duplicates <= KILLS_PER_PHASE * SENDERS + KILLS_PER_PHASE * 2,
        "{duplicates} duplicates"
    );
    Ok(())
}
