//! relay-out routes instead of MX hosts: a smart host with required,
//! verified STARTTLS and AUTH PLAIN (and no mail for a host that cannot
//! authenticate it or whose certificate does not verify), an LMTP route whose
//! per-recipient answers drive the queue, retries and the bounce, and
//! connections from a chosen local address (`bind`, `local_address`).

use std::time::Duration;

use postern_tests::backend::{BackendAuth, Behaviour, RecordingBackend};
use postern_tests::certs::TestCa;
use postern_tests::dns::TestZone;
use postern_tests::logline::last_attempt;
use postern_tests::outbound::{
    MxFarm, Outbound, OutboundOptions, host, ip, parse_dsn, queue_id, wait_until,
};
use postern_tests::sasl::{plain_response, server_tls};

const WAIT: Duration = Duration::from_secs(15);
const USER: &str = "relay-user";
const PASSWORD: &str = "s3cret-Pa55word";

/// origin.test (the senders) has its MX on 127.0.0.5 for bounces; dest.test
/// has an MX (127.0.0.2) that routes must bypass.
fn zone() -> TestZone {
    TestZone::new()
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(5))
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", ip(2))
        .a("smarthost.test", ip(7))
}

/// A recording smart host on 127.0.0.7 with STARTTLS (a certificate for
/// smarthost.test from `ca`) and, when `auth`, AUTH PLAIN LOGIN.
async fn smart_host(ca: &TestCa, auth: bool) -> anyhow::Result<RecordingBackend> {
    let cert = ca.issue("smarthost.test")?;
    RecordingBackend::start_on(
        host(7, 0),
        Behaviour {
            xclient: None,
            starttls: Some(server_tls(&cert)?),
            auth: auth.then(|| BackendAuth {
                mechanisms: "PLAIN LOGIN".into(),
                user: USER.into(),
                password: PASSWORD.into(),
            }),
            ..Behaviour::default()
        },
    )
    .await
}

/// relay-out with `[*]` = the smart host at `port`: TLS required and
/// verified against `ca_pem`, AUTH PLAIN.
async fn through_smart_host(farm_port: u16, port: u16, ca_pem: &str) -> anyhow::Result<Outbound> {
    let routes = format!(
        "; all mail through the provider\n[*]\nhosts = smarthost.test:{port}\ntls = required\n\
         tls_ca = provider-ca.pem\nauth_type = plain\nauth_user = {USER}\nauth_pass = {PASSWORD}\n"
    );
    Outbound::start(
        zone(),
        farm_port,
        OutboundOptions {
            outbound: "temp_fail_intervals=1h\n".into(),
            files: vec![
                ("outbound_routes.ini".into(), routes),
                ("provider-ca.pem".into(), ca_pem.to_string()),
            ],
            ..OutboundOptions::default()
        },
    )
    .await
}

fn assert_no_password(log: &str) {
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    let encoded = plain_response(USER, PASSWORD);
    assert!(
        !log.contains(&encoded),
        "the AUTH PLAIN response is in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_host_gets_auth_plain_only_inside_verified_tls() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let ca = TestCa::new("Provider CA")?;
    let smart = smart_host(&ca, true).await?;
    let out = through_smart_host(farm.port, smart.addr.port(), &ca.cert_pem).await?;

    let id = queue_id(
        &out.submit(
            "a@origin.test",
            &["u@dest.test"],
            "Subject: via smart host\n\nhi\n",
        )
        .await?,
    )?;
    wait_until(WAIT, "delivery to the smart host", || {
        smart.accepted().len() == 1
    })
    .await?;
    let accepted = &smart.accepted()[0];
    assert!(accepted.tls, "the message went over TLS");
    assert_eq!(accepted.auth.as_deref(), Some(USER));
    assert_eq!(accepted.rcpts, ["u@dest.test"]);
    assert!(farm.all_accepted().is_empty(), "the MX was bypassed");

    // STARTTLS came first; AUTH only inside TLS, once, with the right
    // credentials as an AUTH PLAIN initial response.
    let lines = smart.record().lines.clone();
    let starttls = lines
        .iter()
        .position(|l| l == "STARTTLS")
        .expect("STARTTLS");
    let auths: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].to_ascii_uppercase().starts_with("AUTH"))
        .collect();
    assert_eq!(auths.len(), 1, "{lines:?}");
    assert!(auths[0] > starttls, "AUTH before STARTTLS: {lines:?}");
    assert_eq!(
        lines[auths[0]],
        format!("AUTH PLAIN {}", plain_response(USER, PASSWORD))
    );

    out.wait_for_log(
        &format!("message done, removed from the queue queue_id={id}"),
        WAIT,
    )
    .await?;
    let log = out.log();
    let fields = last_attempt(&log, &id, &["delivered"]).expect("delivery line");
    assert_eq!(fields["mx"], "smarthost.test");
    assert_eq!(fields["ip"], "127.0.0.7");
    assert_eq!(fields["port"], smart.addr.port().to_string());
    assert_eq!(fields["tls"], "true");
    assert_eq!(fields["auth"], USER);
    assert_eq!(fields["route"], "outbound_routes.ini [*]");
    assert_eq!(fields["mode"], "SMTP");
    assert_eq!(fields["delivered"], "u@dest.test");
    assert_no_password(&log);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_auth_gets_nothing_and_the_mail_waits() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let ca = TestCa::new("Provider CA")?;
    let smart = smart_host(&ca, false).await?;
    let out = through_smart_host(farm.port, smart.addr.port(), &ca.cert_pem).await?;

    let id = queue_id(
        &out.submit(
            "a@origin.test",
            &["u@dest.test"],
            "Subject: must not leak\n\nhi\n",
        )
        .await?,
    )?;
    out.wait_for_log("not delivering without AUTH", WAIT)
        .await?;
    out.wait_for_log(&format!("queue_id={id} domain=dest.test mx=-"), WAIT)
        .await?;
    let lines = smart.record().lines.clone();
    assert!(
        !lines.iter().any(|l| {
            let upper = l.to_ascii_uppercase();
            upper.starts_with("MAIL") || upper.starts_with("RCPT") || upper == "DATA"
        }),
        "the server got a transaction: {lines:?}"
    );
    assert!(smart.accepted().is_empty());

    let log = out.log();
    let deferred = last_attempt(&log, &id, &["deferred"]).expect("deferral line");
    assert!(
        deferred["reply"].contains("no usable AUTH mechanism"),
        "{deferred:?}"
    );
    assert_eq!(deferred["deferred"], "u@dest.test");
    let (_, shown) = out.queue(&["show", &id])?;
    assert!(
        shown.contains("u@dest.test: pending, 1 attempt(s)"),
        "{shown}"
    );
    assert!(shown.contains("no usable AUTH mechanism"), "{shown}");
    assert_no_password(&log);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_refuses_a_certificate_the_ca_file_does_not_vouch_for() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let provider = TestCa::new("Provider CA")?;
    let impostor = TestCa::new("Impostor CA")?;
    let smart = smart_host(&impostor, true).await?;
    let out = through_smart_host(farm.port, smart.addr.port(), &provider.cert_pem).await?;

    let id = queue_id(
        &out.submit("a@origin.test", &["u@dest.test"], "Subject: x\n\nhi\n")
            .await?,
    )?;
    out.wait_for_log(&format!("queue_id={id} domain=dest.test mx=-"), WAIT)
        .await?;
    let log = out.log();
    let failed = last_attempt(&log, &id, &["host-failed"]).expect("host-failed line");
    assert!(failed["reply"].contains("TLS handshake"), "{failed:?}");
    let lines = smart.record().lines.clone();
    assert!(
        !lines
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with("AUTH")),
        "credentials went to an unverified server: {lines:?}"
    );
    assert!(smart.accepted().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lmtp_route_follows_each_recipients_answer() -> anyhow::Result<()> {
    // Bounces go to origin.test's MX on 127.0.0.5, the farm's port.
    let farm = MxFarm::start(5, Behaviour::default()).await?;
    let reply = |rcpt: &str, reply: &str| (rcpt.to_string(), reply.to_string());
    let lmtp = RecordingBackend::start_on(
        host(8, 0),
        Behaviour {
            xclient: None,
            lmtp: true,
            data_replies: vec![
                reply("busy@lists.test", "452 4.2.2 Mailbox full"),
                reply("gone@lists.test", "550 5.1.1 No such user"),
            ],
            ..Behaviour::default()
        },
    )
    .await?;
    // Haraka's own format: relay_dest_domains.ini nexthop as an lmtp:// URL.
    let nexthop = format!(
        "[domains]\nlists.test = {{ \"action\": \"accept\", \"nexthop\": \"lmtp://127.0.0.8:{}\" }}\n",
        lmtp.addr.port()
    );
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            outbound: "temp_fail_intervals=1h\n".into(),
            files: vec![("relay_dest_domains.ini".into(), nexthop)],
            ..OutboundOptions::default()
        },
    )
    .await?;

    let rcpts = ["ok@lists.test", "busy@lists.test", "gone@lists.test"];
    let id = queue_id(
        &out.submit("a@origin.test", &rcpts, "Subject: lmtp\n\nhi\n")
            .await?,
    )?;
    out.wait_for_log(
        &format!("queue_id={id} domain=lists.test mx=127.0.0.8"),
        WAIT,
    )
    .await?;
    wait_until(WAIT, "the bounce for gone@", || {
        farm.get(5).accepted().len() == 1
    })
    .await?;

    assert_eq!(
        lmtp.record().lines.first().map(String::as_str),
        Some("LHLO relay-out.test")
    );
    assert_eq!(lmtp.accepted().len(), 1);
    assert_eq!(lmtp.accepted()[0].rcpts, ["ok@lists.test"]);

    let log = out.log();
    let fields = last_attempt(&log, &id, &["partial"]).expect("partial line");
    assert_eq!(fields["mode"], "LMTP");
    assert_eq!(
        fields["route"],
        "relay_dest_domains.ini [domains] lists.test"
    );
    assert_eq!(fields["delivered"], "ok@lists.test");
    assert_eq!(fields["deferred"], "busy@lists.test");
    assert_eq!(fields["bounced"], "gone@lists.test");
    assert_eq!(fields["reply"], "452 4.2.2 Mailbox full");
    assert!(fields["response"].starts_with("250 "), "{fields:?}");
    let retry: u64 = fields["retry_in_s"].parse()?;
    assert!((3000..=4000).contains(&retry), "retry in {retry} s");

    let (_, shown) = out.queue(&["show", &id])?;
    assert!(
        shown.contains("ok@lists.test: delivered, 1 attempt(s)"),
        "{shown}"
    );
    assert!(
        shown.contains("busy@lists.test: pending, 1 attempt(s)"),
        "{shown}"
    );
    assert!(shown.contains("452 4.2.2 Mailbox full"), "{shown}");
    assert!(
        shown.contains("gone@lists.test: bounced, 1 attempt(s)"),
        "{shown}"
    );

    // The bounce names only the refused recipient, with the LMTP server's words.
    let bounce = &farm.get(5).accepted()[0];
    assert_eq!(bounce.mail_from, "<>");
    assert_eq!(bounce.rcpts, ["a@origin.test"]);
    let dsn = parse_dsn(&bounce.data)?;
    assert_eq!(dsn.recipients.len(), 1, "{}", dsn.text);
    let failed = &dsn.recipients[0];
    assert_eq!(failed["final-recipient"], "rfc822; gone@lists.test");
    assert_eq!(failed["action"], "failed");
    assert!(failed["status"].starts_with("5.1.1"), "{failed:?}");
    assert!(
        failed["diagnostic-code"].contains("550 5.1.1 No such user"),
        "{failed:?}"
    );

    // The retry sends to the deferred recipient only, and then it is done.
    lmtp.set(Behaviour {
        xclient: None,
        lmtp: true,
        ..Behaviour::default()
    });
    out.queue(&["flush"])?;
    wait_until(WAIT, "the retry", || lmtp.accepted().len() == 2).await?;
    assert_eq!(lmtp.accepted()[1].rcpts, ["busy@lists.test"]);
    out.wait_for_log(
        &format!("message done, removed from the queue queue_id={id}"),
        WAIT,
    )
    .await?;
    let retried = last_attempt(&out.log(), &id, &["delivered"]).expect("retry line");
    assert_eq!(retried["delivered"], "busy@lists.test");
    assert_eq!(retried["rcpts"], "1");
    assert_eq!(farm.get(5).accepted().len(), 1, "no second bounce");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_come_from_the_configured_local_address() -> anyhow::Result<()> {
    // MX delivery from outbound.ini local_address (127.0.0.4), and a route
    // with its own bind (127.0.0.3).
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let routed = RecordingBackend::start_on(host(6, 0), Behaviour::default()).await?;
    let routes = format!(
        "[bound.test]\nhosts = 127.0.0.6:{}\nbind = 127.0.0.3\n",
        routed.addr.port()
    );
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            outbound: "temp_fail_intervals=1h\nlocal_address=127.0.0.4\n".into(),
            files: vec![("outbound_routes.ini".into(), routes)],
            ..OutboundOptions::default()
        },
    )
    .await?;
    out.submit(
        "a@origin.test",
        &["u@dest.test", "v@bound.test"],
        "Subject: from\n\nhi\n",
    )
    .await?;
    wait_until(WAIT, "both deliveries", || {
        farm.get(2).accepted().len() == 1 && routed.accepted().len() == 1
    })
    .await?;
    assert_eq!(farm.get(2).accepted()[0].peer.ip(), ip(4));
    assert_eq!(routed.accepted()[0].peer.ip(), ip(3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_address_this_host_lacks_stops_the_start() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let started = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            outbound: "local_address=192.0.2.44\n".into(),
            ..OutboundOptions::default()
        },
    )
    .await;
    let error = match started {
        Ok(_) => anyhow::bail!("relay-out started with a foreign local_address"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("exited with"), "{error}");
    assert!(
        error.contains(
            "outbound.ini: [main] local_address = '192.0.2.44': not an address of this host"
        ),
        "{error}"
    );

    let bad_bind = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            files: vec![(
                "outbound_routes.ini".into(),
                "[x.test]\nhosts = 127.0.0.6\nbind = 192.0.2.45\n".into(),
            )],
            ..OutboundOptions::default()
        },
    )
    .await;
    let error = match bad_bind {
        Ok(_) => anyhow::bail!("relay-out started with a foreign bind"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains(
            "outbound_routes.ini: [x.test] bind = '192.0.2.45': not an address of this host"
        ),
        "{error}"
    );
    Ok(())
}
