//! AUTH PLAIN and LOGIN, octet for octet.

use super::*;
use crate::client::{AuthMechanism, ClientErrorKind, Credentials, SmtpClient, Step};

fn config_with(mechanism: AuthMechanism) -> ClientConfig {
    let mut config = config();
    config.auth = Some(Credentials {
        mechanism,
        user: "user".into(),
        password: "pass".into(),
    });
    config
}

#[tokio::test]
async fn auth_plain_sends_one_initial_response() {
    let mut script = opening(&["AUTH LOGIN PLAIN"]);
    script.extend([Act::Hear(1), say("235 2.7.0 Authentication successful\r\n")]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(
        server.addr,
        "smarthost.test",
        &config_with(AuthMechanism::Any),
    )
    .await
    .unwrap();
    client.authenticate().await.unwrap();
    assert_eq!(server.heard().await.lines[1], "AUTH PLAIN AHVzZXIAcGFzcw==");
}

#[tokio::test]
async fn auth_login_answers_both_challenges() {
    let mut script = opening(&["AUTH=LOGIN"]);
    script.extend([
        Act::Hear(1),
        say("334 VXNlcm5hbWU6\r\n"),
        Act::Hear(1),
        say("334 UGFzc3dvcmQ6\r\n"),
        Act::Hear(1),
        say("235 2.7.0 Authentication successful\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(
        server.addr,
        "smarthost.test",
        &config_with(AuthMechanism::Any),
    )
    .await
    .unwrap();
    client.authenticate().await.unwrap();
    assert_eq!(
        server.heard().await.lines[1..],
        ["AUTH LOGIN", "dXNlcg==", "cGFzcw=="]
    );
}

#[tokio::test]
async fn failed_auth_carries_the_reply_and_is_transient() {
    let mut script = opening(&["AUTH PLAIN"]);
    script.extend([
        Act::Hear(1),
        say("535 5.7.8 Error: authentication failed\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(
        server.addr,
        "smarthost.test",
        &config_with(AuthMechanism::Plain),
    )
    .await
    .unwrap();
    let error = client.authenticate().await.unwrap_err();
    assert_eq!(error.step(), Step::Auth);
    assert_eq!(error.reply().map(|r| r.code()), Some(535));
    assert!(error.is_transient());
    assert!(!error.to_string().contains("pass"), "{error}");
}

#[tokio::test]
async fn no_compatible_mechanism_sends_nothing() {
    let server = FakeServer::start(opening(&["AUTH CRAM-MD5"])).await;
    let mut client = SmtpClient::connect(
        server.addr,
        "smarthost.test",
        &config_with(AuthMechanism::Login),
    )
    .await
    .unwrap();
    let error = client.authenticate().await.unwrap_err();
    let ClientErrorKind::AuthNotOffered { offered } = error.kind() else {
        panic!("unexpected {error}");
    };
    assert_eq!(offered, &["CRAM-MD5"]);
    assert_eq!(server.heard().await.lines, ["EHLO relay.test"]);
}

#[tokio::test]
async fn without_credentials_authenticate_does_nothing() {
    let server = FakeServer::start(opening(&["AUTH PLAIN"])).await;
    let mut client = SmtpClient::connect(server.addr, "smarthost.test", &config())
        .await
        .unwrap();
    client.authenticate().await.unwrap();
    assert_eq!(server.heard().await.lines, ["EHLO relay.test"]);
}
