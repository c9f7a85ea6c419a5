//! Servers that refuse, stall, close or talk nonsense.

use std::time::{Duration, Instant};

use super::*;
use crate::client::{ClientErrorKind, MailOptions, SmtpClient, Step, StepTimeouts};
use smtp_protocol::reply_parser::ReplyError;

#[tokio::test]
async fn refused_greeting_carries_the_reply() {
    for (banner, code, transient) in [
        ("554 5.7.1 No SMTP service here\r\n", 554, false),
        ("421 4.3.2 Too busy\r\n", 421, true),
    ] {
        let server = FakeServer::start(vec![say(banner)]).await;
        let error = SmtpClient::connect(server.addr, "mx.test", &config())
            .await
            .unwrap_err();
        assert_eq!(error.step(), Step::Greeting);
        assert!(matches!(error.kind(), ClientErrorKind::Rejected(_)));
        assert_eq!(error.reply().map(|r| r.code()), Some(code));
        assert_eq!(error.is_transient(), transient, "{error}");
        server.heard().await;
    }
}

#[tokio::test]
async fn silent_server_times_out_quickly() {
    let server = FakeServer::start(vec![Act::Hang(Duration::from_secs(3))]).await;
    let mut config = config();
    config.timeouts = StepTimeouts {
        greeting: Duration::from_millis(200),
        ..StepTimeouts::default()
    };
    let started = Instant::now();
    let error = SmtpClient::connect(server.addr, "mx.test", &config)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(error.step(), Step::Greeting);
    assert!(matches!(error.kind(), ClientErrorKind::Timeout));
    assert!(error.is_transient());
}

#[tokio::test]
async fn stalled_rcpt_times_out_and_session_becomes_unusable() {
    let mut script = opening(&[]);
    script.extend([
        Act::Hear(1),
        say("250 Ok\r\n"),
        Act::Hear(1),
        Act::Hang(Duration::from_secs(2)),
    ]);
    let server = FakeServer::start(script).await;
    let mut config = config();
    config.timeouts.rcpt = Duration::from_millis(200);
    let mut client = SmtpClient::connect(server.addr, "mx.test", &config)
        .await
        .unwrap();
    let error = client
        .envelope(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>")],
            MailOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.step(), Step::RcptTo);
    assert!(matches!(error.kind(), ClientErrorKind::Timeout));
    let error = client.rset().await.unwrap_err();
    assert!(matches!(error.kind(), ClientErrorKind::Unusable));
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = SmtpClient::connect(addr, "mx.test", &config())
        .await
        .unwrap_err();
    assert_eq!(error.step(), Step::Connect);
    assert!(matches!(error.kind(), ClientErrorKind::Connect(_)));
    assert!(error.is_transient());
    assert!(
        error
            .to_string()
            .starts_with(&format!("SMTP client {addr}: connect: "))
    );
}

#[tokio::test]
async fn source_address_is_used() {
    let mut script = opening(&[]);
    script.push(Act::Hang(Duration::from_millis(50)));
    let server = FakeServer::start(script).await;
    let mut config = config();
    config.source_address = Some("127.0.0.1".parse().unwrap());
    SmtpClient::connect(server.addr, "mx.test", &config)
        .await
        .unwrap();
    server.heard().await;

    // An address of the other family cannot be bound for this peer.
    config.source_address = Some("::1".parse().unwrap());
    let peer = "127.0.0.1:9".parse().unwrap();
    let error = SmtpClient::connect(peer, "mx.test", &config)
        .await
        .unwrap_err();
    assert_eq!(error.step(), Step::Connect);
    assert!(matches!(error.kind(), ClientErrorKind::Connect(_)));
}

#[tokio::test]
async fn server_closing_mid_data_is_an_error() {
    let mut script = opening(&[]);
    script.extend([
        Act::Hear(1),
        say("354 go ahead\r\n"),
        Act::CloseAfterReading(1000),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "mx.test", &config())
        .await
        .unwrap();
    let message = b"x".repeat(4 * 1024 * 1024);
    let error = client.data(&message).await.unwrap_err();
    assert!(
        matches!(error.step(), Step::DataBlock | Step::DataEnd),
        "{error}"
    );
    assert!(
        matches!(
            error.kind(),
            ClientErrorKind::Io(_) | ClientErrorKind::Closed
        ),
        "{error}"
    );
    assert!(error.is_transient());
    server.heard().await;
}

#[tokio::test]
async fn garbage_reply_is_a_protocol_error() {
    let mut script = opening(&[]);
    script.extend([Act::Hear(1), say("250-ok\r\n354 mixed codes\r\n")]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "mx.test", &config())
        .await
        .unwrap();
    let error = client.noop().await.unwrap_err();
    assert!(matches!(
        error.kind(),
        ClientErrorKind::Protocol(ReplyError::InconsistentCode {
            first: 250,
            found: 354
        })
    ));
    assert!(matches!(
        client.noop().await.unwrap_err().kind(),
        ClientErrorKind::Unusable
    ));
}

#[tokio::test]
async fn positive_intermediate_reply_where_none_belongs_is_unexpected() {
    let mut script = opening(&[]);
    script.extend([Act::Hear(1), say("354 what?\r\n")]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "mx.test", &config())
        .await
        .unwrap();
    let error = client
        .rcpt_to(&recipient("<a@example.org>"))
        .await
        .unwrap_err();
    assert!(matches!(error.kind(), ClientErrorKind::UnexpectedReply(_)));
    assert_eq!(error.reply().map(|r| r.code()), Some(354));
}

#[tokio::test]
async fn data_answered_with_250_is_not_taken_as_delivery() {
    let mut script = opening(&[]);
    script.extend([Act::Hear(1), say("250 sure\r\n")]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "mx.test", &config())
        .await
        .unwrap();
    let error = client.data(b"hello\r\n").await.unwrap_err();
    assert_eq!(error.step(), Step::Data);
    assert!(matches!(error.kind(), ClientErrorKind::UnexpectedReply(_)));
}

#[tokio::test]
async fn ehlo_temporary_failure_is_not_retried_as_helo() {
    let script = vec![
        say("220 mx.test\r\n"),
        Act::Hear(1),
        say("421 4.7.0 Go away\r\n"),
    ];
    let server = FakeServer::start(script).await;
    let error = SmtpClient::connect(server.addr, "mx.test", &config())
        .await
        .unwrap_err();
    assert_eq!(error.step(), Step::Ehlo);
    assert!(error.is_transient());
    assert_eq!(server.heard().await.lines, ["EHLO relay.test"]);
}
