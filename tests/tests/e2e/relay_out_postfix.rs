//! relay-out between two real Postfix instances, in the place it has in production: a home mail
//! server (Mailcow's role: `relayhost = [relay-out]`, mail put in with its `sendmail`) relays
//! through relay-out, which finds the recipient's MX, another Postfix, through the test DNS
//! (MX record, then A record). What the MX stores is judged byte for byte, and a refusal from
//! the MX comes back to the home server as relay-out's delivery status notification.
//!
//! Needs root and the packages of `.ci/install-test-deps`; run sealed, as the README says.

use std::sync::Arc;
use std::time::Duration;

use postern_tests::dns::TestZone;
use postern_tests::outbound::{ME, Outbound, OutboundOptions, host, ip, parse_dsn, wait_until};
use postern_tests::postfix::{DeliveredMessage, Postfix, PostfixOptions};

const WAIT: Duration = Duration::from_secs(20);

/// The home server: 127.0.0.5, the MX of the senders' domain, where bounces go.
const HOME: u8 = 5;
const HOME_NAME: &str = "home.origin.test";
/// The recipients' MX: 127.0.0.2, on the same port as the home server (relay-out's
/// `remote_port` is one port for every MX host).
const MX: u8 = 2;
const MX_NAME: &str = "mx.dest.test";

/// The one mailbox of dest.test; any other local part is unknown there.
const MAILBOX: &str = "user@dest.test";
const SENDER: &str = "alice@origin.test";

fn zone() -> TestZone {
    TestZone::new()
        .mx("origin.test", 10, "mx.origin.test")
        .a("mx.origin.test", ip(HOME))
        .mx("dest.test", 10, MX_NAME)
        .a(MX_NAME, ip(MX))
}

/// The home Postfix, relay-out and the MX Postfix, wired as in production.
struct World {
    home: Arc<Postfix>,
    out: Outbound,
    mx: Arc<Postfix>,
}

impl World {
    async fn start() -> anyhow::Result<World> {
        // The MX first: its free port on 127.0.0.2 becomes relay-out's `remote_port` and the
        // home server's port on 127.0.0.5.
        let mx = start_postfix(PostfixOptions {
            relay_domains: vec!["dest.test".into()],
            mailboxes: vec![MAILBOX.into()],
            listen: Some(host(MX, 0)),
            extra_main_cf: vec![("myhostname".into(), MX_NAME.into())],
            ..PostfixOptions::default()
        })
        .await?;
        let port = mx.addr().port();
        // Only the home server may relay: the ACL names its address and nothing else.
        let out = Outbound::start(
            zone(),
            port,
            OutboundOptions {
                acl: vec![format!("{}/32", ip(HOME))],
                ..OutboundOptions::default()
            },
        )
        .await?;
        let home = start_postfix(PostfixOptions {
            relay_domains: vec!["origin.test".into()],
            listen: Some(host(HOME, port)),
            relayhost: Some(out.addr),
            extra_main_cf: vec![("myhostname".into(), HOME_NAME.into())],
            ..PostfixOptions::default()
        })
        .await?;
        Ok(World {
            home: Arc::new(home),
            out,
            mx: Arc::new(mx),
        })
    }

    /// The home server's `sendmail`, as a Mailcow user's mail enters it.
    async fn send(&self, to: &str, message: &str) -> anyhow::Result<()> {
        let home = Arc::clone(&self.home);
        let (to, message) = (to.to_string(), message.to_string());
        tokio::task::spawn_blocking(move || home.sendmail(SENDER, &[&to], message.as_bytes()))
            .await?
    }

    /// Everything the logs say, for failure messages.
    fn logs(&self) -> String {
        format!(
            "home maillog:\n{}\nrelay-out log:\n{}\nMX maillog:\n{}",
            self.home.log(),
            self.out.log(),
            self.mx.log()
        )
    }
}

// Postfix's blocking calls run off the runtime, which serves the test DNS meanwhile.

async fn start_postfix(options: PostfixOptions) -> anyhow::Result<Postfix> {
    tokio::task::spawn_blocking(move || Postfix::start(options)).await?
}

async fn stored(postfix: &Arc<Postfix>, count: usize) -> anyhow::Result<Vec<DeliveredMessage>> {
    let postfix = Arc::clone(postfix);
    tokio::task::spawn_blocking(move || postfix.wait_for_delivered(count, WAIT)).await?
}

async fn logged(postfix: &Arc<Postfix>, needle: &str) -> anyhow::Result<String> {
    let (postfix, needle) = (Arc::clone(postfix), needle.to_string());
    tokio::task::spawn_blocking(move || postfix.wait_for_log(&needle, WAIT)).await?
}

/// The names of the header fields at the top of `text`, in order.
fn field_names(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|line| !line.is_empty())
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split_once(':').map(|(name, _)| name))
        .collect()
}

/// Mail from the home server arrives at the MX as it was written: every header the sender wrote,
/// in order, and the body byte for byte (dot-stuffed lines included), below exactly one
/// `Received:` per hop (home, relay-out, MX), relay-out's outbound one (outbound.ini
/// `received_header`, as Haraka's outbound adds) and the MX's delivery headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_from_the_home_postfix_reaches_the_mx_postfix_intact() -> anyhow::Result<()> {
    let world = World::start().await?;
    let message = format!(
        "From: Alice <{SENDER}>\n\
         To: <{MAILBOX}>\n\
         Subject: through relay-out\n\
         Date: Mon, 02 Mar 2026 10:00:00 +0000\n\
         Message-ID: <intact@origin.test>\n\
         X-Postern-Test: home to MX\n\
         \n\
         Hello from the home server.\n\
         .a line that starts with a dot\n\
         ..and one with two\n\
         .\n\
         \ttabbed, trailing space \n\
         last line\n"
    );
    world.send(MAILBOX, &message).await?;

    let delivered = stored(&world.mx, 1)
        .await
        .map_err(|e| e.context(world.logs()))?;
    assert_eq!(delivered.len(), 1, "{}", world.logs());
    let stored = &delivered[0];
    let text = stored.text();
    assert_eq!(stored.envelope_sender().as_deref(), Some(SENDER), "{text}");
    assert_eq!(
        stored.envelope_recipient().as_deref(),
        Some(MAILBOX),
        "{text}"
    );
    assert!(
        text.ends_with(&message),
        "the message changed on its way:\n{text}"
    );
    let added = &text[..text.len() - message.len()];
    assert_eq!(
        field_names(added),
        [
            "Return-Path",
            "X-Original-To",
            "Delivered-To",
            "Received",
            "Received",
            "Received",
            "Received"
        ],
        "{text}"
    );
    let received = stored.headers("Received");
    assert!(
        received[0].starts_with(&format!(
            "from {ME} (unknown [127.0.0.1]) by {MX_NAME} (Postfix)"
        )),
        "{received:?}"
    );
    assert!(
        received[1].starts_with("(Postern outbound); "),
        "relay-out's outbound Received: {received:?}"
    );
    assert!(
        received[2].starts_with(&format!("from {HOME_NAME} ([{}])", ip(HOME)))
            && received[2].contains(&format!("by {ME} (Postern)")),
        "relay-out names the home server and its address: {received:?}"
    );
    assert!(
        received[3].starts_with(&format!("by {HOME_NAME} (Postfix, from userid 0)")),
        "{received:?}"
    );

    // Each hop's own account: the home server handed it to relay-out, which found the MX through
    // DNS and delivered it there.
    let home_log = world.home.log();
    let sent = home_log
        .lines()
        .find(|line| line.contains(&format!("to=<{MAILBOX}>")) && line.contains("status=sent"))
        .unwrap_or_else(|| panic!("no status=sent in the home maillog:\n{home_log}"));
    assert!(
        sent.contains(&format!(
            "relay=127.0.0.1[127.0.0.1]:{}",
            world.out.addr.port()
        )),
        "{sent}"
    );
    let queued = sent
        .split("Queued as ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("relay-out's queue id not in {sent}"));
    world
        .out
        .wait_for_log(
            &format!("message done, removed from the queue queue_id={queued}"),
            WAIT,
        )
        .await?;
    let log = world.out.log();
    let attempt = log
        .lines()
        .find(|line| line.contains("delivery attempt") && line.contains(queued))
        .unwrap_or_else(|| panic!("no delivery attempt for {queued}:\n{log}"));
    assert!(
        attempt.contains(&format!("domain=dest.test mx={MX_NAME} ip={}", ip(MX)))
            && attempt.contains("result=delivered"),
        "{attempt}"
    );
    Ok(())
}

/// An unknown recipient at the MX (its 550 at RCPT) makes relay-out bounce, and the RFC 3464
/// report reaches the sender's domain's MX, the home server, which stores it: a
/// multipart/report naming the failed recipient with status 5.1.1 and the MX's own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_the_mx_postfix_bounces_back_to_the_home_postfix() -> anyhow::Result<()> {
    let world = World::start().await?;
    let unknown = "nobody@dest.test";
    let message = format!(
        "From: Alice <{SENDER}>\n\
         To: <{unknown}>\n\
         Subject: to nobody\n\
         Date: Mon, 02 Mar 2026 10:05:00 +0000\n\
         Message-ID: <bounce@origin.test>\n\
         \n\
         Is anybody there?\n"
    );
    world.send(unknown, &message).await?;

    let refusal = format!(
        "550 5.1.1 <{unknown}>: Recipient address rejected: User unknown in virtual mailbox table"
    );
    // The MX refused it at RCPT, and that session is over (Postfix's "disconnect" line counts
    // the refused RCPT): the MX stored nothing. The bounce is back home.
    logged(
        &world.mx,
        &format!(
            "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: {refusal}; \
             from=<{SENDER}> to=<{unknown}> proto=ESMTP helo=<{ME}>"
        ),
    )
    .await
    .map_err(|e| e.context(world.logs()))?;
    logged(&world.mx, " rcpt=0/1 ").await?;
    let bounces = stored(&world.home, 1)
        .await
        .map_err(|e| e.context(world.logs()))?;
    assert!(world.mx.delivered().is_empty(), "{}", world.logs());
    assert_eq!(bounces.len(), 1, "{}", world.logs());
    let bounce = &bounces[0];
    assert_eq!(bounce.envelope_sender().as_deref(), Some(""), "from <>");
    assert_eq!(bounce.envelope_recipient().as_deref(), Some(SENDER));
    assert!(
        bounce.headers("Received")[0].starts_with(&format!(
            "from {ME} (unknown [127.0.0.1]) by {HOME_NAME} (Postfix)"
        )),
        "it came from relay-out: {}",
        bounce.text()
    );
    // Postfix stores LF lines; the report parser reads the CRLF of the wire.
    let dsn = parse_dsn(bounce.text().replace('\n', "\r\n").as_bytes())?;
    assert!(
        dsn.headers["content-type"].starts_with("multipart/report; report-type=delivery-status"),
        "{}",
        dsn.text
    );
    assert_eq!(dsn.headers["from"], format!("MAILER-DAEMON@{ME}"));
    assert_eq!(dsn.headers["in-reply-to"], "<bounce@origin.test>");
    assert_eq!(dsn.recipients.len(), 1, "{}", dsn.text);
    let fields = &dsn.recipients[0];
    assert_eq!(fields["final-recipient"], format!("rfc822; {unknown}"));
    assert_eq!(fields["action"], "failed");
    assert_eq!(fields["status"], "5.1.1");
    assert_eq!(fields["remote-mta"], format!("dns; {MX_NAME}"));
    assert_eq!(fields["diagnostic-code"], format!("smtp; {refusal}"));
    assert!(
        dsn.text.contains("\r\nSubject: to nobody\r\n"),
        "the original headers come back: {}",
        dsn.text
    );
    wait_until(WAIT, "relay-out's queue to empty", || {
        world.out.queued_ids().is_empty()
    })
    .await?;
    Ok(())
}
