//! relay-out's one line per delivery attempt, checked field by field for a
//! delivery, a deferral, a bounce and a DNS failure: what Haraka's
//! `delivered`, `deferred` and `bounce` hooks get (host, ip, port, response,
//! delay, mode, recipients, TLS; delay until the next try and the error; the
//! reply and the bounced recipients).

use std::collections::BTreeMap;
use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::dns::TestZone;
use postern_tests::logline::last_attempt;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, ip, queue_id};

const WAIT: Duration = Duration::from_secs(15);

/// Every field a line may carry; each check names the ones it expects, so
/// an unexpected extra field fails too.
const ALL_FIELDS: &[&str] = &[
    "queue_id",
    "domain",
    "mx",
    "ip",
    "port",
    "tls",
    "rcpts",
    "result",
    "reply",
    "mode",
    "auth",
    "route",
    "delivered",
    "deferred",
    "retry_in_s",
    "bounced",
    "response",
    "delay_s",
    "elapsed_ms",
];

fn check(fields: &BTreeMap<String, String>, expected: &[(&str, &str)], present: &[&str]) {
    for (name, value) in expected {
        assert_eq!(
            fields.get(*name).map(String::as_str),
            Some(*value),
            "{name} in {fields:?}"
        );
    }
    for name in ALL_FIELDS {
        let wanted = expected.iter().any(|(n, _)| n == name) || present.contains(name);
        assert_eq!(
            fields.contains_key(*name),
            wanted,
            "field {name} in {fields:?}"
        );
    }
    let delay: f64 = fields["delay_s"].parse().expect("delay_s is a number");
    assert!((0.0..60.0).contains(&delay), "delay_s {delay}");
    let _: u64 = fields["elapsed_ms"]
        .parse()
        .expect("elapsed_ms is a number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_deferral_and_bounce_lines() -> anyhow::Result<()> {
    let refusing = Behaviour {
        rcpt_replies: vec![
            ("busy@dest.test".into(), "450 4.2.0 Mailbox busy".into()),
            ("gone@dest.test".into(), "550 5.1.1 No such user".into()),
        ],
        ..Behaviour::default()
    };
    let mut farm = MxFarm::start(2, refusing).await?;
    farm.add(5, Behaviour::default()).await?;
    let zone = TestZone::new()
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(5))
        .mx("dest.test", 10, "mx1.dest.test")
        .a("mx1.dest.test", ip(2))
        .servfail("broken.test");
    let out = Outbound::start(
        zone,
        farm.port,
        OutboundOptions {
            outbound: "temp_fail_intervals=10m\n".into(),
            ..OutboundOptions::default()
        },
    )
    .await?;
    let port = farm.port.to_string();

    let delivered = queue_id(
        &out.submit("a@origin.test", &["u@dest.test"], "Subject: 1\n\nhi\n")
            .await?,
    )?;
    let deferred = queue_id(
        &out.submit("a@origin.test", &["busy@dest.test"], "Subject: 2\n\nhi\n")
            .await?,
    )?;
    let bounced = queue_id(
        &out.submit("a@origin.test", &["gone@dest.test"], "Subject: 3\n\nhi\n")
            .await?,
    )?;
    let dns = queue_id(
        &out.submit("a@origin.test", &["x@broken.test"], "Subject: 4\n\nhi\n")
            .await?,
    )?;
    for id in [&delivered, &deferred, &bounced, &dns] {
        out.wait_for_log(&format!("delivery attempt queue_id={id} "), WAIT)
            .await?;
    }
    let log = out.log();

    let line = last_attempt(&log, &delivered, &["delivered"]).expect("delivery line");
    check(
        &line,
        &[
            ("queue_id", delivered.as_str()),
            ("domain", "dest.test"),
            ("mx", "mx1.dest.test"),
            ("ip", "127.0.0.2"),
            ("port", port.as_str()),
            ("tls", "false"),
            ("rcpts", "1"),
            ("result", "delivered"),
            ("reply", "250 2.0.0 Ok: queued as BACKEND1"),
            ("mode", "SMTP"),
            ("delivered", "u@dest.test"),
        ],
        &["delay_s", "elapsed_ms"],
    );

    let line = last_attempt(&log, &deferred, &["deferred"]).expect("deferral line");
    check(
        &line,
        &[
            ("queue_id", deferred.as_str()),
            ("domain", "dest.test"),
            ("mx", "mx1.dest.test"),
            ("ip", "127.0.0.2"),
            ("port", port.as_str()),
            ("tls", "false"),
            ("rcpts", "1"),
            ("result", "deferred"),
            ("reply", "450 4.2.0 Mailbox busy"),
            ("mode", "SMTP"),
            ("deferred", "busy@dest.test"),
        ],
        &["retry_in_s", "delay_s", "elapsed_ms"],
    );
    let retry: u64 = line["retry_in_s"].parse()?;
    assert!((530..=660).contains(&retry), "10 minutes ± 10%: {retry}");

    let line = last_attempt(&log, &bounced, &["bounced"]).expect("bounce line");
    check(
        &line,
        &[
            ("queue_id", bounced.as_str()),
            ("domain", "dest.test"),
            ("mx", "mx1.dest.test"),
            ("ip", "127.0.0.2"),
            ("port", port.as_str()),
            ("tls", "false"),
            ("rcpts", "1"),
            ("result", "bounced"),
            ("reply", "550 5.1.1 No such user"),
            ("mode", "SMTP"),
            ("bounced", "gone@dest.test"),
        ],
        &["delay_s", "elapsed_ms"],
    );

    // No host reached: the error is ours, the host fields are `-`.
    let line = last_attempt(&log, &dns, &["deferred"]).expect("DNS deferral line");
    check(
        &line,
        &[
            ("queue_id", dns.as_str()),
            ("domain", "broken.test"),
            ("mx", "-"),
            ("ip", "-"),
            ("port", "-"),
            ("tls", "false"),
            ("rcpts", "1"),
            ("result", "deferred"),
            ("deferred", "x@broken.test"),
        ],
        &["reply", "retry_in_s", "delay_s", "elapsed_ms"],
    );
    assert!(line["reply"].contains("DNS lookup failure"), "{line:?}");
    Ok(())
}
