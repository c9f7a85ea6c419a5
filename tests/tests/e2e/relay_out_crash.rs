//! Crash safety: 500 messages are submitted while relay-out is killed with
//! SIGKILL at random (seeded) moments during intake, then killed again at
//! random moments while it delivers, restarting each time. Every message
//! that got a 250 must reach the sinks at least once; duplicates are
//! allowed (at-least-once delivery) and counted.
//!
//! The seed is printed; `POSTERN_CRASH_SEED=<n>` replays a run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_tests::backend::{Accepted, Behaviour};
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, ip, submit_to, wait_until};

const MESSAGES: usize = 500;
const SENDERS: usize = 8;
const KILLS_PER_PHASE: usize = 5;
/// Bound on the whole test.
const DEADLINE: Duration = Duration::from_secs(240);

/// xorshift64*: a seeded, dependency-free random source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// `count` distinct sorted thresholds in `low..high`.
    fn thresholds(&mut self, count: usize, low: usize, high: usize) -> Vec<usize> {
        let mut picked = BTreeSet::new();
        while picked.len() < count {
            picked.insert(low + self.below((high - low) as u64) as usize);
        }
        picked.into_iter().collect()
    }
}

/// Ids waiting to be (re)submitted, and ids that got a 250.
#[derive(Default)]
struct Intake {
    todo: VecDeque<usize>,
    acknowledged: BTreeSet<usize>,
    attempts: usize,
}

fn crash_id(accepted: &Accepted) -> Option<usize> {
    String::from_utf8_lossy(&accepted.data)
        .lines()
        .find_map(|line| line.strip_prefix("X-Crash-Id: "))
        .and_then(|id| id.trim().parse().ok())
}

/// relay-out's transaction id in its own Received header: two deliveries
/// with the same one are a delivery duplicate, with different ones the
/// message was queued twice (the client resent it after a kill).
fn intake_id(accepted: &Accepted) -> Option<String> {
    let data = String::from_utf8_lossy(&accepted.data);
    let line = data.lines().find(|line| line.contains(" with ESMTP id "))?;
    line.split(" with ESMTP id ")
        .nth(1)
        .map(|id| id.trim().to_string())
}

fn delivered_counts(farm: &MxFarm) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for accepted in farm.all_accepted() {
        if let Some(id) = crash_id(&accepted) {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

/// SIGKILL, then start again on the same queue (blocking the current worker
/// thread only, so senders and sinks keep running).
fn crash_and_restart(out: &mut Outbound) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| {
        out.kill()?;
        out.restart()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_sigkill_during_intake_and_delivery()
-> anyhow::Result<()> {
    tokio::time::timeout(DEADLINE, run()).await?
}

async fn run() -> anyhow::Result<()> {
    let seed = std::env::var("POSTERN_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x5eed_cafe_u64);
    println!("crash test seed: {seed} (set POSTERN_CRASH_SEED to replay)");
    let mut rng = Rng(seed | 1);
    let started = Instant::now();

    let mut farm = MxFarm::start(2, Behaviour::default()).await?;
    farm.add(3, Behaviour::default()).await?;
    let zone = TestZone::new()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", ip(2))
        .mx("other.test", 10, "mx.other.test")
        .a("mx.other.test", ip(3));
    // Phase 1 only queues: every kill lands in intake.
    let mut out = Outbound::start(
        zone,
        farm.port,
        OutboundOptions {
            outbound: "disabled=true\ntemp_fail_intervals=5s*50\n".into(),
            ..OutboundOptions::default()
        },
    )
    .await?;

    let intake = Arc::new(Mutex::new(Intake {
        todo: (0..MESSAGES).collect(),
        ..Intake::default()
    }));
    let addr = out.addr;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let intake = Arc::clone(&intake);
        senders.push(tokio::spawn(async move {
            loop {
                let next = intake.lock().unwrap().todo.pop_front();
                let Some(id) = next else {
                    if intake.lock().unwrap().acknowledged.len() == MESSAGES {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let rcpt = if id % 2 == 0 {
                    format!("user{id}@dest.test")
                } else {
                    format!("user{id}@other.test")
                };
                let message = format!("Subject: crash {id}\nX-Crash-Id: {id}\n\nmessage {id}\n");
                let sent = tokio::time::timeout(
                    Duration::from_secs(10),
                    submit_to(addr, None, "sender@origin.test", &[&rcpt], &message),
                )
                .await;
                let acknowledged = matches!(&sent, Ok(Ok(reply)) if reply.code == 250);
                {
                    let mut state = intake.lock().unwrap();
                    state.attempts += 1;
                    if acknowledged {
                        state.acknowledged.insert(id);
                    } else {
                        // Refused, cut off by the kill, or nobody listening
                        // during the restart: the client keeps it and retries.
                        state.todo.push_back(id);
                    }
                }
                if !acknowledged {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    let mut intake_kills = 0;
    for threshold in rng.thresholds(KILLS_PER_PHASE, MESSAGES / 20, MESSAGES * 9 / 10) {
        let intake = Arc::clone(&intake);
        wait_until(Duration::from_secs(60), "intake progress", || {
            intake.lock().unwrap().acknowledged.len() >= threshold
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
        crash_and_restart(&mut out)?;
        intake_kills += 1;
    }
    for sender in senders {
        sender.await?;
    }
    let (acknowledged, attempts) = {
        let state = intake.lock().unwrap();
        (state.acknowledged.clone(), state.attempts)
    };
    assert_eq!(acknowledged.len(), MESSAGES);
    assert!(farm.all_accepted().is_empty(), "delivery was disabled");

    // Phase 2: deliver, with kills at random points of the delivery.
    out.write_outbound(farm.port, "temp_fail_intervals=5s*50\n")?;
    crash_and_restart(&mut out)?;
    let mut delivery_kills = 0;
    for threshold in rng.thresholds(KILLS_PER_PHASE, MESSAGES / 20, MESSAGES * 9 / 10) {
        wait_until(Duration::from_secs(60), "delivery progress", || {
            delivered_counts(&farm).len() >= threshold
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
        crash_and_restart(&mut out)?;
        delivery_kills += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let delivered = delivered_counts(&farm);
        let missing: Vec<usize> = acknowledged
            .iter()
            .filter(|id| !delivered.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged messages never delivered (seed {seed}), e.g. {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            out.queue(&["list"]).map(|(_, l)| l).unwrap_or_default()
        );
        // Anything deferred by a cut connection is retried now.
        out.relay.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_until(Duration::from_secs(30), "an empty queue", || {
        out.queued_ids().is_empty()
    })
    .await?;

    let delivered = delivered_counts(&farm);
    let duplicates: usize = delivered.values().map(|count| count - 1).sum();
    let total: usize = delivered.values().sum();
    let intakes: BTreeSet<String> = farm.all_accepted().iter().filter_map(intake_id).collect();
    println!(
        "crash test: {MESSAGES} messages acknowledged after {attempts} submissions, \
         {intake_kills} kills during intake, {delivery_kills} during delivery; \
         {total} deliveries, {duplicates} duplicate(s) ({} queued twice by a resending \
         client, {} delivered twice after a kill), {:.1} s",
        intakes.len() - MESSAGES,
        total - intakes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(intake_kills >= KILLS_PER_PHASE && delivery_kills >= KILLS_PER_PHASE);
    assert!(
        delivered.keys().all(|id| *id < MESSAGES),
        "only submitted messages arrive"
    );
    Ok(())
}
