//! The XCLIENT dialogue with a Postfix-like backend.

use std::net::IpAddr;

use super::*;
use crate::client::{ClientErrorKind, SmtpClient, XclientAttributes, XclientOutcome};
use smtp_protocol::session::ClientName;
use smtp_protocol::session::HeloVerb;

const POSTFIX_XCLIENT: &str =
    "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT";

fn attributes(addr: &str, proto: HeloVerb) -> XclientAttributes {
    XclientAttributes {
        name: ClientName::Verified("client.example".into()),
        addr: addr.parse::<IpAddr>().unwrap(),
        port: 50123,
        proto,
        helo: Some("client.example".into()),
        destaddr: "10.8.0.2".parse().unwrap(),
        destport: 25,
        login: None,
    }
}

#[tokio::test]
async fn accepted_xclient_greets_again_as_the_client() {
    let mut script = opening(&["PIPELINING", POSTFIX_XCLIENT, "8BITMIME"]);
    script.extend([
        Act::Hear(1),
        say("220 backend.test ESMTP Postfix\r\n"),
        Act::Hear(1),
        say("250-backend.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let outcome = client
        .xclient(&attributes("2001:db8::7", HeloVerb::Ehlo), "client.example")
        .await
        .unwrap();
    assert_eq!(outcome, XclientOutcome::Accepted);
    // The capabilities are those of the EHLO after XCLIENT.
    assert!(client.capabilities().smtputf8);
    assert!(client.capabilities().xclient.is_none());
    assert_eq!(
        server.heard().await.lines,
        [
            "EHLO relay.test",
            "XCLIENT PROTO=ESMTP HELO=client.example REVERSE_NAME=client.example PORT=50123 \
             DESTADDR=10.8.0.2 DESTPORT=25 NAME=client.example ADDR=IPV6:2001:db8::7",
            "EHLO client.example",
        ]
    );
}

/// A client that said HELO is still re-greeted with EHLO (Haraka does the
/// same): a HELO session would forbid pipelining to the backend. XCLIENT
/// still tells the backend what the client said.
#[tokio::test]
async fn helo_client_is_reintroduced_with_ehlo_so_pipelining_stays() {
    let mut script = opening(&["XCLIENT ADDR PROTO HELO"]);
    script.extend([
        Act::Hear(1),
        say("220 backend.test ESMTP Postfix\r\n"),
        Act::Hear(1),
        say("250-backend.test\r\n250 PIPELINING\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let mut attrs = attributes("192.0.2.7", HeloVerb::Helo);
    attrs.helo = Some("odd name+1".into());
    let outcome = client.xclient(&attrs, "odd name+1").await.unwrap();
    assert_eq!(outcome, XclientOutcome::Accepted);
    assert!(client.capabilities().pipelining);
    assert_eq!(
        server.heard().await.lines[1..],
        [
            "XCLIENT PROTO=SMTP HELO=odd+20name+2B1 ADDR=192.0.2.7",
            "EHLO odd name+1",
        ]
    );
}

#[tokio::test]
async fn refused_xclient_is_reported_not_ignored() {
    let mut script = opening(&[POSTFIX_XCLIENT]);
    script.extend([
        Act::Hear(1),
        say("550 5.7.0 Error: insufficient authorization\r\n"),
        Act::Hear(1),
        say("221 2.0.0 Bye\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let outcome = client
        .xclient(&attributes("192.0.2.7", HeloVerb::Ehlo), "client.example")
        .await
        .unwrap();
    let XclientOutcome::Refused(reply) = outcome else {
        panic!("expected a refusal, got {outcome:?}");
    };
    assert_eq!(
        reply.to_string(),
        "550 5.7.0 Error: insufficient authorization"
    );
    // The session is still in step.
    client.quit().await;
    assert_eq!(server.heard().await.lines[2], "QUIT");
}

#[tokio::test]
async fn not_offered_sends_nothing() {
    let server = FakeServer::start(opening(&["PIPELINING"])).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let outcome = client
        .xclient(&attributes("192.0.2.7", HeloVerb::Ehlo), "client.example")
        .await
        .unwrap();
    assert_eq!(outcome, XclientOutcome::NotOffered);
    assert_eq!(server.heard().await.lines, ["EHLO relay.test"]);
}

#[tokio::test]
async fn split_xclient_expects_220_after_each_command() {
    let mut script = opening(&[POSTFIX_XCLIENT]);
    script.extend([
        Act::Hear(1),
        say("220 backend.test ESMTP\r\n"),
        Act::Hear(1),
        say("220 backend.test ESMTP\r\n"),
        Act::Hear(1),
        say("220 backend.test ESMTP\r\n"),
        Act::Hear(1),
        say("220 backend.test ESMTP\r\n"),
        Act::Hear(1),
        say("250 backend.test\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let mut attrs = attributes("192.0.2.7", HeloVerb::Ehlo);
    attrs.helo = Some("h".repeat(250));
    attrs.login = Some("l".repeat(250));
    attrs.name = ClientName::Verified(format!("{}.example", vec!["n".repeat(60); 4].join(".")));
    let outcome = client.xclient(&attrs, "h").await.unwrap();
    assert_eq!(outcome, XclientOutcome::Accepted);
    let lines = server.heard().await.lines;
    // Four commands: no two of the long values fit in 512 octets together.
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(
        lines[1..5]
            .iter()
            .all(|line| line.starts_with("XCLIENT ") && line.len() <= 510)
    );
    assert!(lines[4].ends_with(" ADDR=192.0.2.7"));
    assert!(lines[4].contains(" NAME=nnn"));
    assert_eq!(lines[5], "EHLO h");
}

#[tokio::test]
async fn xclient_on_a_broken_session_is_refused_locally() {
    let mut script = opening(&[POSTFIX_XCLIENT]);
    script.extend([Act::Hear(1), say("garbage\r\n")]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let attrs = attributes("192.0.2.7", HeloVerb::Ehlo);
    let error = client.xclient(&attrs, "client.example").await.unwrap_err();
    assert!(matches!(error.kind(), ClientErrorKind::Protocol(_)));
    let error = client.xclient(&attrs, "client.example").await.unwrap_err();
    assert!(matches!(error.kind(), ClientErrorKind::Unusable));
}
