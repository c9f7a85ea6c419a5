//! Whole transactions: envelope (pipelined or not), DATA, RSET, QUIT.

use std::time::Duration;

use super::*;
use crate::client::{ClientErrorKind, MailOptions, SmtpClient, Step};
use smtp_protocol::reply::EnhancedCode;

#[tokio::test]
async fn full_pipelined_transaction() {
    let mut script = opening(&["PIPELINING", "SIZE 1000000", "8BITMIME", "SMTPUTF8"]);
    script.extend([
        // MAIL and both RCPTs must arrive before we answer any of them.
        Act::Hear(3),
        say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@example.org>: User unknown\r\n"),
        Act::Hear(1),
        say("354 End data with <CR><LF>.<CR><LF>\r\n"),
        Act::HearData,
        say("250 2.0.0 Ok: queued as ABC123\r\n"),
        Act::Hear(1),
        say("221 2.0.0 Bye\r\n"),
    ]);
    let server = FakeServer::start(script).await;

    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    assert!(client.capabilities().pipelining);
    assert!(!client.is_tls());
    assert_eq!(client.peer_addr(), server.addr);

    let options = MailOptions {
        size: Some(1234),
        smtputf8: true,
        eight_bit_mime: true,
        ..MailOptions::default()
    };
    let replies = client
        .envelope(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>"), recipient("<b@example.org>")],
            options,
        )
        .await
        .unwrap();
    assert_eq!(replies.mail.code(), 250);
    assert_eq!(
        replies.rcpts.iter().map(|r| r.code()).collect::<Vec<_>>(),
        [250, 550]
    );
    assert_eq!(
        replies.rcpts[1].enhanced(),
        Some(EnhancedCode::new(5, 1, 1))
    );
    assert!(replies.any_accepted());

    let reply = client.data(b"Subject: hi\r\n\r\nhello\r\n").await.unwrap();
    assert_eq!(reply.to_string(), "250 2.0.0 Ok: queued as ABC123");
    client.quit().await;

    let heard = server.heard().await;
    assert_eq!(
        heard.lines,
        [
            "EHLO relay.test",
            "MAIL FROM:<s@example.com> SIZE=1234 BODY=8BITMIME SMTPUTF8",
            "RCPT TO:<a@example.org>",
            "RCPT TO:<b@example.org>",
            "DATA",
            "QUIT",
        ]
    );
    assert_eq!(heard.data, [b"Subject: hi\r\n\r\nhello\r\n.\r\n".to_vec()]);
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let mut script = opening(&["8BITMIME"]);
    script.extend([
        Act::Hear(1),
        Act::Silence(Duration::from_millis(200)),
        say("250 2.1.0 Ok\r\n"),
        Act::Hear(1),
        Act::Silence(Duration::from_millis(200)),
        say("451 4.3.0 Try later\r\n"),
        Act::Hear(1),
        say("250 2.1.5 Ok\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let replies = client
        .envelope(
            &sender("<>"),
            &[recipient("<a@example.org>"), recipient("<Postmaster>")],
            MailOptions {
                // SIZE is not advertised, so it is not sent.
                size: Some(10),
                smtputf8: false,
                eight_bit_mime: false,
                ..MailOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        replies.rcpts.iter().map(|r| r.code()).collect::<Vec<_>>(),
        [451, 250]
    );
    let heard = server.heard().await;
    assert_eq!(
        heard.lines[1..],
        [
            "MAIL FROM:<>",
            "RCPT TO:<a@example.org>",
            "RCPT TO:<Postmaster>"
        ]
    );
}

#[tokio::test]
async fn refused_mail_leaves_no_recipient_replies() {
    let mut script = opening(&["PIPELINING"]);
    script.extend([
        Act::Hear(2),
        say("550 5.7.1 Sender rejected\r\n503 5.5.1 Error: need MAIL command\r\n"),
        Act::Hear(1),
        say("250 2.0.0 Ok\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let replies = client
        .envelope(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>")],
            MailOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(replies.mail.code(), 550);
    assert!(replies.rcpts.is_empty());
    assert!(!replies.any_accepted());
    // The session is still in step: RSET gets its own reply.
    assert_eq!(client.rset().await.unwrap().code(), 250);
    assert_eq!(server.heard().await.lines[3], "RSET");
}

#[tokio::test]
async fn single_steps_for_live_mode() {
    let mut script = opening(&["PIPELINING"]);
    script.extend([
        Act::Hear(1),
        say("250 2.1.0 Ok\r\n"),
        Act::Hear(1),
        say("250 2.1.5 Ok\r\n"),
        Act::Hear(1),
        say("554 5.5.1 Error: no valid recipients\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let mail = client
        .mail_from(&sender("<s@example.com>"), MailOptions::default())
        .await
        .unwrap();
    assert_eq!(mail.code(), 250);
    let rcpt = client.rcpt_to(&recipient("<a@example.org>")).await.unwrap();
    assert_eq!(rcpt.code(), 250);
    // A refused DATA is returned as is, and no content is sent.
    let reply = client.data(b"never sent\r\n").await.unwrap();
    assert_eq!(reply.code(), 554);
    let heard = server.heard().await;
    assert!(heard.data.is_empty());
}

#[tokio::test]
async fn helo_fallback_when_ehlo_is_not_recognised() {
    let script = vec![
        say("220 old.test SMTP\r\n"),
        Act::Hear(1),
        say("502 5.5.2 Error: command not recognized\r\n"),
        Act::Hear(1),
        say("250 old.test\r\n"),
    ];
    let server = FakeServer::start(script).await;
    let client = SmtpClient::connect(server.addr, "old.test", &config())
        .await
        .unwrap();
    assert!(!client.capabilities().esmtp);
    assert_eq!(client.capabilities().server_name, "old.test");
    assert_eq!(
        server.heard().await.lines,
        ["EHLO relay.test", "HELO relay.test"]
    );
}

#[tokio::test]
async fn eight_bit_mime_not_offered_sends_the_message_without_the_parameter() {
    let mut script = opening(&["PIPELINING"]);
    script.extend([Act::Hear(2), say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n")]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let replies = client
        .envelope(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>")],
            MailOptions {
                eight_bit_mime: true,
                ..MailOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(replies.any_accepted());
    assert_eq!(
        server.heard().await.lines[1..],
        ["MAIL FROM:<s@example.com>", "RCPT TO:<a@example.org>"]
    );
}

#[tokio::test]
async fn smtputf8_needed_but_not_offered_sends_nothing() {
    let server = FakeServer::start(opening(&["PIPELINING"])).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let error = client
        .envelope(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>")],
            MailOptions {
                size: None,
                smtputf8: true,
                eight_bit_mime: false,
                ..MailOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error.kind(), ClientErrorKind::SmtpUtf8NotOffered));
    assert_eq!(error.step(), Step::MailFrom);
    assert!(!error.is_transient());
    assert_eq!(server.heard().await.lines, ["EHLO relay.test"]);
}

#[tokio::test]
async fn requiretls_is_never_sent_in_clear_text_even_when_offered() {
    // A server that lists REQUIRETLS without TLS (a downgrade): nothing is sent.
    let server = FakeServer::start(opening(&["REQUIRETLS"])).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let error = client
        .envelope(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>")],
            MailOptions {
                requiretls: true,
                ..MailOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(
        error.kind(),
        ClientErrorKind::RequireTlsNotOffered
    ));
    assert_eq!(error.step(), Step::MailFrom);
    assert!(!error.is_transient());
    assert_eq!(server.heard().await.lines, ["EHLO relay.test"]);
}

/// A backend that takes one message (`354`, the data, `250`), and a client
/// connected to it.
async fn one_message_session() -> (FakeServer, SmtpClient) {
    let mut script = opening(&[]);
    script.extend([
        Act::Hear(1),
        say("354 go ahead\r\n"),
        Act::HearData,
        say("250 2.0.0 Ok\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    (server, client)
}

#[tokio::test]
async fn message_is_dot_stuffed() {
    let (server, mut client) = one_message_session().await;
    let message =
        b".starts with a dot\r\nbody\r\n.\r\nafter a lone dot\r\n..two\r\nbare\n.lf\r\nend";
    let reply = client.data(message).await.unwrap();
    assert_eq!(reply.code(), 250);
    let heard = server.heard().await;
    assert_eq!(
        heard.data,
        [b"..starts with a dot\r\nbody\r\n..\r\nafter a lone dot\r\n...two\r\nbare\n..lf\r\nend\r\n.\r\n"
            .to_vec()]
    );
}

/// A message in memory goes out in runs taken from where it lies; the
/// bytes on the wire are exactly the stuffed message whatever the runs'
/// lengths: many dot lines (short runs, gathered), long runs between dots,
/// dots on either side of the last piece's start, none at the very end.
#[tokio::test]
async fn large_message_in_memory_is_stuffed_from_where_it_lies() {
    let long = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    let mut message = Vec::new();
    message.extend_from_slice(&b".dot line\r\n".repeat(3_000));
    message.extend_from_slice(&long.repeat(2_000));
    message.extend_from_slice(b".\r\n");
    message.extend_from_slice(&long.repeat(1_000));
    message.extend_from_slice(b"..\r\n");
    message.extend_from_slice(&long.repeat(1_000));
    // The last 16 KiB (the piece sent with the terminator) starts with a
    // dot at a line start, and ends without a line break.
    let mut last = b".x\r\n.".to_vec();
    while last.len() < 16 * 1024 {
        last.extend_from_slice(long);
    }
    last.truncate(16 * 1024);
    message.extend_from_slice(&last);
    let (server, mut client) = one_message_session().await;
    assert_eq!(client.data(&message).await.unwrap().code(), 250);
    let heard = server.heard().await;
    let mut expected = Vec::new();
    smtp_protocol::data::dot_stuff(&message, &mut expected);
    assert_eq!(heard.data[0].len(), expected.len());
    assert!(heard.data[0] == expected);
}

#[tokio::test]
async fn large_message_is_streamed_in_pieces() {
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    let message: Vec<u8> = line.repeat(20_000); // about 1.4 MB, many data chunks
    let (server, mut client) = one_message_session().await;
    assert_eq!(
        client.data_from(message.as_slice()).await.unwrap().code(),
        250
    );
    let heard = server.heard().await;
    let mut expected = message.clone();
    expected.extend_from_slice(b".\r\n");
    assert_eq!(heard.data[0].len(), expected.len());
    assert!(heard.data[0] == expected);
}

#[tokio::test]
async fn lmtp_greets_with_lhlo_and_reads_a_reply_per_accepted_recipient() {
    let mut script = opening(&["PIPELINING"]);
    script.extend([
        Act::Hear(4),
        say(
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@example.org> unknown\r\n250 2.1.5 Ok\r\n",
        ),
        Act::Hear(1),
        say("354 go ahead\r\n"),
        Act::HearData,
        // One answer for each accepted recipient: a and c.
        say("250 2.0.0 <a@example.org> delivered\r\n452 4.2.2 <c@example.org> mailbox full\r\n"),
        Act::Hear(1),
        say("221 2.0.0 Bye\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut lmtp = config();
    lmtp.lmtp = true;
    let mut client = SmtpClient::connect(server.addr, "lmtp.test", &lmtp)
        .await
        .unwrap();
    let replies = client
        .envelope(
            &sender("<s@example.com>"),
            &[
                recipient("<a@example.org>"),
                recipient("<b@example.org>"),
                recipient("<c@example.org>"),
            ],
            MailOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        replies.rcpts.iter().map(|r| r.code()).collect::<Vec<_>>(),
        [250, 550, 250]
    );
    let per_recipient = client
        .data_per_recipient(&b"Subject: x\r\n\r\nhi\r\n"[..])
        .await
        .unwrap();
    assert_eq!(
        per_recipient.iter().map(|r| r.code()).collect::<Vec<_>>(),
        [250, 452]
    );
    client.quit().await;
    assert_eq!(server.heard().await.lines[0], "LHLO relay.test");
}

#[tokio::test]
async fn smtp_data_per_recipient_repeats_the_single_verdict() {
    let mut script = opening(&["PIPELINING"]);
    script.extend([
        Act::Hear(3),
        say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"),
        Act::Hear(1),
        say("354 go ahead\r\n"),
        Act::HearData,
        say("250 2.0.0 queued\r\n"),
        Act::Hear(1),
        say("221 2.0.0 Bye\r\n"),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "mx.test", &config())
        .await
        .unwrap();
    client
        .envelope(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>"), recipient("<b@example.org>")],
            MailOptions::default(),
        )
        .await
        .unwrap();
    let replies = client.data_per_recipient(&b"x\r\n"[..]).await.unwrap();
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|r| r.code() == 250));
    client.quit().await;
}

#[tokio::test]
async fn data_ends_the_pipelined_envelope_and_the_session_carries_a_second_message() {
    let mut script = opening(&["PIPELINING"]);
    for queued in ["A1", "A2"] {
        script.extend([
            // MAIL, RCPT and DATA arrive before we answer any of them.
            Act::Hear(3),
            say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n"),
            Act::HearData,
            say(&format!("250 2.0.0 Ok: queued as {queued}\r\n")),
        ]);
    }
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    for (body, queued) in [(&b"one\r\n"[..], "A1"), (&b"two\r\n"[..], "A2")] {
        let (replies, data) = client
            .envelope_and_data(
                &sender("<s@example.com>"),
                &[recipient("<a@example.org>")],
                MailOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(replies.rcpts.len(), 1);
        assert_eq!(data.map(|r| r.code()), Some(354));
        let reply = client.data_content(body).await.unwrap();
        assert_eq!(
            reply.to_string(),
            format!("250 2.0.0 Ok: queued as {queued}")
        );
        assert!(client.is_usable());
    }
    let heard = server.heard().await;
    assert_eq!(
        heard.lines[1..],
        [
            "MAIL FROM:<s@example.com>",
            "RCPT TO:<a@example.org>",
            "DATA",
            "MAIL FROM:<s@example.com>",
            "RCPT TO:<a@example.org>",
            "DATA",
        ]
    );
    assert_eq!(
        heard.data,
        [b"one\r\n.\r\n".to_vec(), b"two\r\n.\r\n".to_vec()]
    );
}

#[tokio::test]
async fn an_aborted_data_sends_no_content_and_retires_the_session() {
    let mut script = opening(&["PIPELINING"]);
    script.extend([
        Act::Hear(4),
        say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.0 Mailbox busy\r\n354 Go ahead\r\n"),
        // No content, no final dot, not even QUIT: only the close.
        Act::ExpectClose,
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let (replies, data) = client
        .envelope_and_data(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>"), recipient("<b@example.org>")],
            MailOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        replies.rcpts.iter().map(|r| r.code()).collect::<Vec<_>>(),
        [250, 450]
    );
    assert_eq!(data.map(|r| r.code()), Some(354));
    client.abort_data();
    assert!(!client.is_usable());
    client.quit().await;
    let heard = server.heard().await;
    assert_eq!(heard.lines.last().map(String::as_str), Some("DATA"));
    assert!(heard.data.is_empty());
}

#[tokio::test]
async fn without_pipelining_data_follows_only_a_fully_accepted_envelope() {
    let mut script = opening(&[]);
    script.extend([
        Act::Hear(1),
        say("250 2.1.0 Ok\r\n"),
        Act::Hear(1),
        say("550 5.1.1 Unknown\r\n"),
        // No DATA may follow: the script would hear it and fail the test.
        Act::Silence(Duration::from_millis(200)),
    ]);
    let server = FakeServer::start(script).await;
    let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
        .await
        .unwrap();
    let (replies, data) = client
        .envelope_and_data(
            &sender("<s@example.com>"),
            &[recipient("<a@example.org>")],
            MailOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(replies.rcpts[0].code(), 550);
    assert_eq!(data, None);
    assert!(client.is_usable());
    let heard = server.heard().await;
    assert_eq!(
        heard.lines[1..],
        ["MAIL FROM:<s@example.com>", "RCPT TO:<a@example.org>"]
    );
}

/// A message larger than two pieces, with dot lines everywhere, is stuffed
/// alike whether it is in memory or read from a file.
#[tokio::test]
async fn large_messages_are_stuffed_alike_from_memory_and_from_a_file() {
    let lines: Vec<String> = (0..6000)
        .map(|i| {
            if i % 3 == 0 {
                format!(".dot line {i} {}", "x".repeat(i % 50))
            } else {
                format!("line {i} {}", "y".repeat(i % 70))
            }
        })
        .collect();
    let message = format!("{}\r\n", lines.join("\r\n"));
    assert!(message.len() > 3 * 64 * 1024);
    let stuffed: Vec<String> = lines
        .iter()
        .map(|l| match l.strip_prefix('.') {
            Some(_) => format!(".{l}"),
            None => l.clone(),
        })
        .collect();
    let expected = format!("{}\r\n.\r\n", stuffed.join("\r\n")).into_bytes();

    let file_path = std::env::temp_dir().join(format!("postern-content-{}", std::process::id()));
    std::fs::write(&file_path, &message).unwrap();
    for from_file in [false, true] {
        let mut script = opening(&[]);
        script.extend([
            Act::Hear(1),
            say("354 Go ahead\r\n"),
            Act::HearData,
            say("250 2.0.0 Ok\r\n"),
        ]);
        let server = FakeServer::start(script).await;
        let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
            .await
            .unwrap();
        let reply = if from_file {
            let file = tokio::fs::File::open(&file_path).await.unwrap();
            client.data_from(file).await.unwrap()
        } else {
            client.data(message.as_bytes()).await.unwrap()
        };
        assert_eq!(reply.code(), 250);
        let heard = server.heard().await;
        assert!(heard.data[0] == expected, "from_file={from_file}");
    }
    std::fs::remove_file(&file_path).unwrap();
}

/// DSN parameters reach a server that offers DSN unchanged, and a server
/// that does not never sees them (it would answer 555).
#[tokio::test]
async fn dsn_parameters_only_to_a_server_that_offers_dsn() {
    use crate::client::DsnRecipient;
    use smtp_protocol::dsn_params::{Envid, Notify, Orcpt, Ret};

    let rcpts = [DsnRecipient {
        path: recipient("<a@example.org>"),
        notify: Some(Notify::parse("SUCCESS,DELAY").unwrap()),
        orcpt: Some(Orcpt::parse("rfc822;A+2Bx@example.org").unwrap()),
    }];
    let options = MailOptions {
        ret: Some(Ret::Hdrs),
        envid: Some(Envid::parse("QQ+2B314").unwrap()),
        ..MailOptions::default()
    };
    for offered in [true, false] {
        let keywords: &[&str] = if offered {
            &["PIPELINING", "DSN"]
        } else {
            &["PIPELINING"]
        };
        let mut script = opening(keywords);
        script.extend([
            Act::Hear(2),
            say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
            Act::Hear(1),
            say("221 2.0.0 Bye\r\n"),
        ]);
        let server = FakeServer::start(script).await;
        let mut client = SmtpClient::connect(server.addr, "backend.test", &config())
            .await
            .unwrap();
        let replies = client
            .envelope(&sender("<s@example.com>"), &rcpts, options.clone())
            .await
            .unwrap();
        assert!(replies.any_accepted());
        client.quit().await;
        let heard = server.heard().await;
        let expected: [&str; 2] = if offered {
            [
                "MAIL FROM:<s@example.com> RET=HDRS ENVID=QQ+2B314",
                "RCPT TO:<a@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;A+2Bx@example.org",
            ]
        } else {
            ["MAIL FROM:<s@example.com>", "RCPT TO:<a@example.org>"]
        };
        assert_eq!(heard.lines[1..3], expected, "DSN offered: {offered}");
    }
}
