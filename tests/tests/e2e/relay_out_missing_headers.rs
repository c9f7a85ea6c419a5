//! Missing `Message-ID`/`Date` on direct submission: swaks submitting with
//! AUTH a message that has neither gets both added; a message relayed for
//! an address in relay_acl_allow (a home server that signed it) arrives at
//! the MX byte for byte as sent, after relay-out's Received lines.

use std::time::Duration;

use postern_tests::backend::Behaviour;
use postern_tests::dns::TestZone;
use postern_tests::outbound::{MxFarm, Outbound, OutboundOptions, ip, wait_until};
use postern_tests::postfix::swaks;

const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "s3cret-for-headers";
/// A message with neither field, as a script or a printer sends it.
const BARE: &str =
    "From: alice@origin.test\r\nTo: u@dest.test\r\nSubject: bare\r\n\r\nno id, no date\r\n";

fn zone() -> TestZone {
    TestZone::new()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", ip(2))
}

/// The header fields (names, lower case) of a delivered message.
fn field_names(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_with_auth_gets_message_id_and_date() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(
        zone(),
        farm.port,
        OutboundOptions {
            // Nobody relays by address: only AUTH lets mail through.
            acl: vec!["10.9.9.9/32".into()],
            files: vec![(
                "auth_flat_file.ini".into(),
                format!("[core]\nmethods=PLAIN\n[users]\nalice={PASSWORD}\n"),
            )],
            ..OutboundOptions::default()
        },
    )
    .await?;
    let port = out.addr.port().to_string();
    let data = BARE.replace("\r\n", "\n");
    let output = tokio::task::spawn_blocking(move || {
        swaks([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            PASSWORD,
            "--from",
            "alice@origin.test",
            "--to",
            "u@dest.test",
            "--data",
            &data,
            "--timeout",
            "10",
        ])
    })
    .await??;
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{transcript}\n{}", out.log());
    assert!(transcript.contains("235 2.7.0"), "{transcript}");
    wait_until(WAIT, "delivery", || farm.get(2).accepted().len() == 1).await?;
    let delivered = &farm.get(2).accepted()[0];
    let names = field_names(&delivered.data);
    assert_eq!(
        names.iter().filter(|n| *n == "message-id").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "date").count(),
        1,
        "{names:?}"
    );
    let text = String::from_utf8_lossy(&delivered.data);
    let id_line = text
        .lines()
        .find(|l| l.starts_with("Message-ID: "))
        .unwrap_or_default();
    assert!(
        id_line.starts_with("Message-ID: <") && id_line.ends_with("@relay-out.test>"),
        "{id_line}"
    );
    // Added at the end of the header section, the body untouched.
    assert!(text.contains("Subject: bare\r\nMessage-ID: <"), "{text}");
    assert!(text.contains("\r\n\r\nno id, no date\r\n"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_relayed_for_the_acl_is_not_touched() -> anyhow::Result<()> {
    let farm = MxFarm::start(2, Behaviour::default()).await?;
    let out = Outbound::start(zone(), farm.port, OutboundOptions::default()).await?;
    let reply = out
        .submit("alice@origin.test", &["u@dest.test"], BARE)
        .await?;
    assert_eq!(reply.code, 250);
    wait_until(WAIT, "delivery", || farm.get(2).accepted().len() == 1).await?;
    let data = farm.get(2).accepted()[0].data.clone();
    assert!(
        data.ends_with(BARE.as_bytes()),
        "{}",
        String::from_utf8_lossy(&data)
    );
    // Before the message: only relay-out's own Received lines.
    let added = String::from_utf8_lossy(&data[..data.len() - BARE.len()]).into_owned();
    assert!(!added.is_empty());
    for line in added.split_terminator("\r\n") {
        assert!(
            line.starts_with("Received: ") || line.starts_with([' ', '\t']),
            "{added}"
        );
    }
    Ok(())
}
