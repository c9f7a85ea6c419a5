//! Operating relay-out: SIGHUP and `queue flush` retry deferred mail now,
//! `outbound.ini disabled=true` queues without delivering and is re-read
//! without a restart, the `relay-out queue` tools, and a restart resuming
//! the queue.

use std::time::{Duration, Instant};

use anyhow::Context;

use postern_tests::backend::Behaviour;
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, ip, queue_id, wait_until};

const WAIT: Duration = Duration::from_secs(15);

fn zone() -> TestZone {
    TestZone::new()
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(5))
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", ip(2))
}

fn busy() -> Behaviour {
    Behaviour {
        mail_reply: "451 4.3.0 Come back later".into(),
        ..Behaviour::default()
    }
}

fn disabled() -> OutboundOptions {
    OutboundOptions {
        outbound: "disabled=true\n".into(),
        ..OutboundOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_queue_flush_retry_deferred_mail_now() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, busy()).await?;
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            outbound: "temp_fail_intervals=1h\n".into(),
            ..OutboundOptions::default()
        },
    )
    .await?;
    let first = queue_id(
        &out.submit("a@origin.test", &["u@dest.test"], "Subject: 1\n\nhi\n")
            .await?,
    )?;
    out.wait_for_log(&format!("queue_id={first} domain=dest.test"), WAIT)
        .await?;
    farm.get(2).set(Behaviour::default());
    let flushed_at = Instant::now();
    out.relay.signal(libc::SIGHUP);
    wait_until(WAIT, "delivery after SIGHUP", || {
        farm.get(2).accepted().len() == 1
    })
    .await?;
    assert!(
        flushed_at.elapsed() < Duration::from_secs(5),
        "not the 1 h schedule"
    );
    out.wait_for_log("queue flush: deferred mail is due now", WAIT)
        .await?;

    farm.get(2).set(busy());
    // The session relay-out kept after the first delivery ends, so the
    // next one is a new session with the busy behaviour.
    farm.get(2).end_sessions();
    let second = queue_id(
        &out.submit("a@origin.test", &["v@dest.test"], "Subject: 2\n\nhi\n")
            .await?,
    )?;
    out.wait_for_log(&format!("queue_id={second} domain=dest.test"), WAIT)
        .await?;
    farm.get(2).set(Behaviour::default());
    let (code, output) = out.queue(&["flush"])?;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!(
            "relay-out (PID {}): flush requested",
            out.relay.pid()
        )),
        "{output}"
    );
    wait_until(WAIT, "delivery after queue flush", || {
        farm.get(2).accepted().len() == 2
    })
    .await?;
    assert_eq!(farm.get(2).accepted()[1].rcpts, ["v@dest.test"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_delivery_queues_and_resumes_when_the_file_changes() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, disabled()).await?;
    let reply = out
        .submit("a@origin.test", &["u@dest.test"], "Subject: held\n\nhi\n")
        .await?;
    let id = queue_id(&reply)?;
    flush_reports_held_mail(&out, 1).await?;
    assert!(
        farm.get(2).accepted().is_empty(),
        "nothing leaves while disabled"
    );
    assert_eq!(farm.get(2).record().connections, 0);
    let (_, listing) = out.queue(&["list"])?;
    assert!(listing.contains(&id), "{listing}");

    // No restart, no signal this time: the file is watched.
    out.write_outbound(farm.port, "disabled=false\n")?;
    wait_until(WAIT, "delivery once enabled", || {
        farm.get(2).accepted().len() == 1
    })
    .await?;
    out.wait_for_log("delivery enabled again", WAIT).await?;
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;

    // And back off again.
    out.write_outbound(farm.port, "disabled=true\n")?;
    out.wait_for_log("disabled=true, delivery paused", WAIT)
        .await?;
    out.submit(
        "a@origin.test",
        &["u@dest.test"],
        "Subject: held again\n\nhi\n",
    )
    .await?;
    flush_reports_held_mail(&out, 2).await?;
    assert_eq!(farm.get(2).accepted().len(), 1);
    assert_eq!(farm.get(2).record().connections, 1);
    Ok(())
}

/// Proves that relay-out holds the message it just queued without delivering it: a flush
/// (SIGHUP) makes the dispatcher report what it holds, and it reports one message waiting and
/// none in progress. The message was handed to the dispatcher before its 250 was sent, so the
/// report, which waits behind it, counts it; had delivery started, it would be in progress or
/// done. Even the flush starts no delivery while disabled. `nth` counts the reports so far.
async fn flush_reports_held_mail(out: &Outbound, nth: usize) -> anyhow::Result<()> {
    const HELD: &str =
        "queue flush: deferred mail is due now waiting=1 in_progress=0 disabled=true";
    out.relay.signal(libc::SIGHUP);
    wait_until(WAIT, HELD, || out.log().matches(HELD).count() == nth)
        .await
        .with_context(|| out.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_tools_list_show_delete_and_bounce() -> anyhow::Result<()> {
    let mut farm = MxFarm::start(2, Behaviour::default()).await?;
    farm.add(5, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, disabled()).await?;
    let mut ids = Vec::new();
    for (n, rcpt) in ["one@dest.test", "two@dest.test", "three@dest.test"]
        .iter()
        .enumerate()
    {
        let message = format!("Subject: message {n}\nX-Test: {n}\n\nbody {n}\n");
        ids.push(queue_id(
            &out.submit("a@origin.test", &[rcpt], &message).await?,
        )?);
    }

    let (code, listing) = out.queue(&["list"])?;
    assert_eq!(code, 0, "{listing}");
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("-Queue ID-"), "{listing}");
    for (id, rcpt) in ids
        .iter()
        .zip(["one@dest.test", "two@dest.test", "three@dest.test"])
    {
        let head = lines
            .iter()
            .position(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed:\n{listing}"));
        assert!(lines[head].ends_with(" a@origin.test"), "{}", lines[head]);
        assert_eq!(lines[head + 1].trim(), format!("{rcpt} (pending)"));
    }
    assert!(listing.ends_with("in 3 Requests.\n"), "{listing}");

    let (code, shown) = out.queue(&["show", &ids[0].to_uppercase()])?;
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.starts_with(&format!("Queue ID: {}\n", ids[0])),
        "{shown}"
    );
    assert!(shown.contains("Sender: <a@origin.test>\n"), "{shown}");
    assert!(
        shown.contains("Client: 127.0.0.1 helo=backend.test\n"),
        "{shown}"
    );
    assert!(
        shown.contains("  one@dest.test: pending, 0 attempt(s)"),
        "{shown}"
    );
    assert!(
        shown.contains("\nSubject: message 0\nX-Test: 0\n"),
        "{shown}"
    );
    assert!(!shown.contains("body 0"), "the body is not shown: {shown}");

    let (code, output) = out.queue(&["delete", &ids[1]])?;
    assert_eq!(
        (code, output.as_str()),
        (0, format!("{}: deleted\n", ids[1]).as_str())
    );
    let (code, output) = out.queue(&["show", &ids[1]])?;
    assert_eq!(code, 1);
    assert!(output.contains("no such message"), "{output}");
    let (code, output) = out.queue(&["delete", &ids[1]])?;
    assert_eq!(code, 1, "{output}");
    let (code, output) = out.queue(&["show", "../../etc/passwd"])?;
    assert_eq!(code, 1);
    assert!(output.contains("not a valid queue id"), "{output}");

    let (code, output) = out.queue(&["bounce", &ids[2]])?;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("bounce requested; relay-out (PID"),
        "{output}"
    );
    // Delivery is disabled, yet the bounce is made (and queued) at once.
    wait_until(WAIT, "the bounced message to leave", || {
        !out.queued_ids().contains(&ids[2])
    })
    .await?;
    let (_, listing) = out.queue(&["list"])?;
    assert!(
        !listing.contains(&ids[1]) && !listing.contains(&ids[2]),
        "{listing}"
    );
    assert!(listing.contains(" <>\n"), "the notice is queued: {listing}");
    assert!(listing.contains("a@origin.test (pending)"), "{listing}");
    assert!(listing.contains("in 2 Requests."), "{listing}");

    out.write_outbound(farm.port, "disabled=false\n")?;
    wait_until(WAIT, "delivery of the rest", || {
        farm.get(2).accepted().len() == 1 && farm.get(5).accepted().len() == 1
    })
    .await?;
    assert_eq!(farm.get(2).accepted()[0].rcpts, ["one@dest.test"]);
    let notice = String::from_utf8_lossy(&farm.get(5).accepted()[0].data).into_owned();
    assert!(
        notice.contains("Final-Recipient: rfc822; three@dest.test"),
        "{notice}"
    );
    assert!(notice.contains("relay-out queue bounce"), "{notice}");
    wait_until(WAIT, "an empty queue", || out.queued_ids().is_empty()).await?;
    let (code, listing) = out.queue(&["list"])?;
    assert_eq!((code, listing.as_str()), (0, "Mail queue is empty\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_queue() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let mut out = Outbound::start(zone(), farm.port, disabled()).await?;
    let id = queue_id(
        &out.submit("a@origin.test", &["u@dest.test"], "Subject: kept\n\nhi\n")
            .await?,
    )?;
    let pid_file = out.queue_dir().join("relay-out.pid");
    assert!(pid_file.exists());
    let status = out.relay.stop(WAIT)?;
    assert!(status.success(), "{status:?}");
    assert!(!pid_file.exists(), "a clean exit removes the PID file");
    let (code, output) = out.queue(&["flush"])?;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("not running"), "{output}");

    out.write_outbound(farm.port, "disabled=false\n")?;
    out.restart()?;
    wait_until(WAIT, "delivery after the restart", || {
        farm.get(2).accepted().len() == 1
    })
    .await?;
    out.wait_for_log("queue loaded", WAIT).await?;
    assert!(out.log().contains("messages=1"), "{}", out.log());
    out.wait_for_log(
        &format!("message done, removed from the queue queue_id={id}"),
        WAIT,
    )
    .await?;
    Ok(())
}
