//! End-to-end checks of whole notices: each is taken apart with a small
//! MIME reader written for these tests (independent of the builder) and every
//! field the RFCs and Haraka compatibility require is checked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

mod reader;
use reader::*;

// ---- fixtures ----

const ORIGINAL: &[u8] = b"Received: from backend by relay\r\n\
Message-ID: <orig-1@sender.example>\r\n\
From: Alice <alice@sender.example>\r\n\
To: bob@dest.example\r\n\
Subject: Quarterly report\r\n\
\r\n\
SECRET BODY TEXT\r\n";

fn arrival() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn now() -> SystemTime {
    arrival() + Duration::from_secs(3600)
}

fn smtp_failure(address: &str, reply: &str) -> FailedRecipient {
    FailedRecipient {
        address: address.to_string(),
        original_recipient: None,
        next_attempt: None,
        action: Action::Failed,
        status: "5.1.1".to_string(),
        remote_mta: Some("mx1.dest.example".to_string()),
        diagnostic: Diagnostic::Smtp {
            reply: reply.to_string(),
        },
    }
}

fn null_mx(address: &str) -> FailedRecipient {
    FailedRecipient {
        address: address.to_string(),
        original_recipient: None,
        next_attempt: None,
        action: Action::Failed,
        status: "5.1.2".to_string(),
        remote_mta: None,
        diagnostic: Diagnostic::Local {
            text: "Domain null.example sends and receives no email (NULL MX)".to_string(),
        },
    }
}

fn build(original: &[u8], recipients: &[FailedRecipient], template: Option<&str>) -> Vec<u8> {
    let input = BounceInput {
        template,
        ..input(recipients, original)
    };
    build_bounce_at(&input, now(), &mut StdRng::seed_from_u64(9))
}

const REPLY: &str = "550 5.1.1 <bob@dest.example>: Recipient address rejected";

// ---- tests ----

#[test]
fn single_smtp_failure_has_every_required_field() {
    let notice = Notice::parse(&build(
        ORIGINAL,
        &[smtp_failure("bob@dest.example", REPLY)],
        None,
    ));
    let f = &notice.fields;
    assert_eq!(must(f, "From"), "MAILER-DAEMON@relay.example");
    assert_eq!(must(f, "To"), "<alice@sender.example>");
    assert_eq!(must(f, "Subject"), "Undelivered Mail Returned to Sender");
    assert_eq!(timestamp(must(f, "Date")), 1_700_003_600);
    let id = must(f, "Message-ID");
    let local = id
        .strip_prefix('<')
        .unwrap()
        .strip_suffix("@relay.example>")
        .unwrap();
    assert!(local.len() == 24 && local.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(must(f, "Auto-Submitted"), "auto-replied");
    assert_eq!(must(f, "MIME-Version"), "1.0");
    assert_eq!(
        must(f, "Content-Type"),
        format!(
            "multipart/report; report-type=delivery-status; boundary=\"{}\"",
            notice.boundary
        )
    );
    assert_eq!(must(f, "In-Reply-To"), "<orig-1@sender.example>");
    assert_eq!(must(f, "References"), "<orig-1@sender.example>");

    assert_eq!(notice.parts.len(), 3);
    let human = &notice.parts[0];
    assert_eq!(
        must(&human.fields, "Content-Type"),
        "text/plain; charset=us-ascii"
    );
    let text = notice.text();
    assert!(text.contains("relay.example"));
    assert!(text.contains("Subject: Quarterly report"));
    assert!(text.contains(&format!(
        "bob@dest.example: host mx1.dest.example said: {REPLY}"
    )));

    let (per_message, recipients) = notice.report();
    assert_eq!(must(&per_message, "Reporting-MTA"), "dns; relay.example");
    assert_eq!(timestamp(must(&per_message, "Arrival-Date")), 1_700_000_000);
    assert_eq!(recipients.len(), 1);
    let r = &recipients[0];
    assert_eq!(must(r, "Final-Recipient"), "rfc822; bob@dest.example");
    assert_eq!(must(r, "Action"), "failed");
    assert_eq!(must(r, "Status"), "5.1.1");
    assert_eq!(must(r, "Remote-MTA"), "dns; mx1.dest.example");
    assert_eq!(must(r, "Diagnostic-Code"), format!("smtp; {REPLY}"));
    assert_eq!(timestamp(must(r, "Last-Attempt-Date")), 1_700_003_600);
    assert_eq!(get(r, "Will-Retry-Until"), None);

    let headers = &notice.parts[2];
    assert_eq!(must(&headers.fields, "Content-Type"), "text/rfc822-headers");
    assert_eq!(get(&headers.fields, "Content-Transfer-Encoding"), None);
    let header_section = &ORIGINAL[..find(ORIGINAL, b"\r\n\r\n").unwrap() + 2];
    assert_eq!(headers.body, header_section);
    assert!(find(&build(ORIGINAL, &[], None), b"SECRET BODY").is_none());
}

#[test]
fn smtp_and_local_causes_side_by_side() {
    let recipients = [
        smtp_failure("bob@dest.example", REPLY),
        null_mx("carol@null.example"),
    ];
    let notice = Notice::parse(&build(ORIGINAL, &recipients, None));
    let (_, groups) = notice.report();
    assert_eq!(groups.len(), 2);
    assert_eq!(
        must(&groups[0], "Diagnostic-Code"),
        format!("smtp; {REPLY}")
    );
    let local = &groups[1];
    assert_eq!(must(local, "Final-Recipient"), "rfc822; carol@null.example");
    assert_eq!(must(local, "Action"), "failed");
    assert_eq!(must(local, "Status"), "5.1.2");
    assert_eq!(get(local, "Remote-MTA"), None);
    assert_eq!(
        must(local, "Diagnostic-Code"),
        "X-Postern; Domain null.example sends and receives no email (NULL MX)"
    );
    let text = notice.text();
    assert!(text.contains(&format!("host mx1.dest.example said: {REPLY}")));
    assert!(text.contains("carol@null.example: Domain null.example sends and receives no email"));
}

#[test]
fn delayed_notice() {
    let until = arrival() + Duration::from_secs(5 * 86_400);
    let delayed = FailedRecipient {
        action: Action::Delayed {
            will_retry_until: until,
        },
        status: "4.4.1".to_string(),
        diagnostic: Diagnostic::Local {
            text: "Tried all MXs: connection timed out".to_string(),
        },
        ..smtp_failure("bob@dest.example", "")
    };
    let notice = Notice::parse(&build(ORIGINAL, &[delayed], None));
    assert_eq!(
        must(&notice.fields, "Subject"),
        "Delayed Mail (still being retried)"
    );
    assert!(notice.text().contains("will be retried"));
    let (_, groups) = notice.report();
    let r = &groups[0];
    assert_eq!(must(r, "Action"), "delayed");
    assert_eq!(must(r, "Status"), "4.4.1");
    assert_eq!(must(r, "Remote-MTA"), "dns; mx1.dest.example");
    assert_eq!(
        must(r, "Diagnostic-Code"),
        "X-Postern; Tried all MXs: connection timed out"
    );
    assert_eq!(timestamp(must(r, "Will-Retry-Until")), 1_700_432_000);
    assert_eq!(
        must(&notice.parts[2].fields, "Content-Description"),
        "Delayed message headers"
    );
}

/// Haraka's shipped template plus every variable and an unknown one.
const HARAKA_TEMPLATE: &str = "Received: (Haraka {pid} invoked for bounce); {date}\n\
Date: {date}\n\
From: MAILER-DAEMON@{me}\n\
To: {to}\n\
Auto-Submitted: auto-replied\n\
Subject: failure notice: {subject}\n\
Message-Id: {msgid}\n\
\n\
Hi. This is the Haraka Mailer program at {me}.\n\
pid={pid}\n\
date={date}\n\
from={from}\n\
to={to}\n\
msgid={msgid}\n\
subject={subject}\n\
recipients={recipients}\n\
reason={reason}\n\
unknown={nonsense}\n\
{extended_reason}\n";

#[test]
fn haraka_template_with_all_variables() {
    let recipients = [
        smtp_failure("bob@dest.example", REPLY),
        null_mx("carol@null.example"),
    ];
    let notice = Notice::parse(&build(ORIGINAL, &recipients, Some(HARAKA_TEMPLATE)));
    let f = &notice.fields;
    let message_id = must(f, "Message-ID");
    assert_eq!(must(f, "Subject"), "failure notice: Quarterly report");
    assert_eq!(must(f, "From"), "MAILER-DAEMON@relay.example");
    assert_eq!(must(f, "To"), "<alice@sender.example>");
    let received = must(f, "Received");
    assert!(received.starts_with("(Haraka 4321 invoked for bounce); "));
    assert_eq!(
        timestamp(received.split("; ").nth(1).unwrap()),
        1_700_003_600
    );

    let text = notice.text();
    let lines: Vec<&str> = text.split("\r\n").collect();
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing in {text}"))
    };
    assert_eq!(
        lines[0],
        "Hi. This is the Haraka Mailer program at relay.example."
    );
    assert_eq!(value("pid"), "4321");
    assert_eq!(timestamp(value("date")), 1_700_003_600);
    assert_eq!(value("from"), "<>");
    assert_eq!(value("to"), "alice@sender.example");
    assert_eq!(value("msgid"), message_id);
    assert_eq!(value("subject"), "Quarterly report");
    assert_eq!(value("recipients"), "bob@dest.example, carol@null.example");
    assert_eq!(
        value("reason"),
        format!(
            "host mx1.dest.example said: {REPLY}; \
             Domain null.example sends and receives no email (NULL MX)"
        )
    );
    assert_eq!(value("unknown"), "?");
    assert!(
        lines.contains(&format!("bob@dest.example: host mx1.dest.example said: {REPLY}").as_str())
    );
    assert!(lines.contains(
        &"carol@null.example: Domain null.example sends and receives no email (NULL MX)"
    ));
}

#[test]
fn subject_injection_attempts_stay_inside_one_field() {
    let attempts: [&[u8]; 4] = [
        b"Subject: hi\rBcc: evil@x.example\r\n\r\nbody",
        b"Subject: =?utf-8?q?hi=0D=0ABcc:_evil@x.example?=\r\n\r\nbody",
        b"Subject: hi =?utf-8?b?DQpCY2M6IGV2aWxAeC5leGFtcGxl?=\r\n\r\nbody",
        b"Subject: hi\xe2\x80\xa8Bcc: evil@x.example\x00\r\n\r\nbody",
    ];
    let template = "Subject: Re: {subject}\n\n{subject}\n";
    for original in attempts {
        let message = build(
            original,
            &[smtp_failure("b@d.example", REPLY)],
            Some(template),
        );
        let notice = Notice::parse(&message);
        assert_eq!(get(&notice.fields, "Bcc"), None);
        let subject = must(&notice.fields, "Subject");
        assert!(subject.starts_with("Re: hi"), "{subject}");
        assert!(notice.text().starts_with("hi"));
        // The attachment keeps what the sender wrote, encoded if it is not clean.
        let header_end = find(original, b"\r\n\r\n").unwrap() + 2;
        assert_eq!(decoded(&notice.parts[2]), &original[..header_end]);
        let head_end = find(&message, b"\r\n\r\n").unwrap();
        assert!(find(&message[..head_end], b"\r\nBcc").is_none());
    }
}

#[test]
fn long_diagnostics_fold_and_unfold_to_the_reply() {
    let words = "550-5.7.1 This message was rejected because a very long policy text ".repeat(40);
    let reply = format!("{words}\r\n550 5.7.1 end");
    let endless = format!("550 {}", "x".repeat(2500));
    let recipients = [
        smtp_failure("a@d.example", &reply),
        smtp_failure("b@d.example", &endless),
    ];
    let message = build(ORIGINAL, &recipients, None);
    let notice = Notice::parse(&message);
    let body = String::from_utf8(notice.parts[1].body.clone()).unwrap();
    assert!(body.split("\r\n").all(|l| l.len() <= 998));
    assert!(body.split("\r\n").filter(|l| l.starts_with(' ')).count() > 30);
    let (_, groups) = notice.report();
    let expected = format!("smtp; {} 550 5.7.1 end", words.trim_end());
    assert_eq!(must(&groups[0], "Diagnostic-Code"), expected);
    let cut = must(&groups[1], "Diagnostic-Code").replace(' ', "");
    assert_eq!(cut, format!("smtp;550{}", "x".repeat(2500)));
    // The human part carries the whole reply on long lines: it must switch to
    // quoted-printable to stay legal.
    assert_eq!(
        get(&notice.parts[0].fields, "Content-Transfer-Encoding"),
        Some("quoted-printable")
    );
    assert!(notice.text().contains(&"x".repeat(2500)));
}

#[test]
fn original_without_message_id_gets_no_threading_fields() {
    let original = b"Subject: no id\r\n\r\nbody";
    let notice = Notice::parse(&build(original, &[null_mx("c@null.example")], None));
    assert_eq!(get(&notice.fields, "References"), None);
    assert_eq!(get(&notice.fields, "In-Reply-To"), None);
    assert_eq!(notice.parts[2].body, b"Subject: no id\r\n");
}

#[test]
fn non_ascii_original_is_encoded_not_mangled() {
    let original =
        "Subject: =?utf-8?q?caf=C3=A9?=\r\nX-Raw: na\u{ef}ve\r\nX-Bare: a\rb\r\n\r\nbody";
    let recipient = FailedRecipient {
        address: "j\u{f6}rg@dest.example".to_string(),
        original_recipient: None,
        next_attempt: None,
        ..smtp_failure("", "550 5.1.1 unknown user \u{fc}ber")
    };
    let notice = Notice::parse(&build(original.as_bytes(), &[recipient], None));
    assert_eq!(
        must(&notice.fields, "Subject"),
        "Undelivered Mail Returned to Sender"
    );
    let text = notice.text();
    assert!(text.contains("Subject: caf\u{e9}"));
    assert!(text.contains("unknown user \u{fc}ber"));
    assert_eq!(
        must(&notice.parts[0].fields, "Content-Type"),
        "text/plain; charset=utf-8"
    );
    let (_, groups) = notice.report();
    assert_eq!(
        must(&groups[0], "Final-Recipient"),
        "utf-8; j\\x{F6}rg@dest.example"
    );
    assert_eq!(
        must(&groups[0], "Diagnostic-Code"),
        "smtp; 550 5.1.1 unknown user ?ber"
    );
    let headers = &notice.parts[2];
    assert_eq!(
        get(&headers.fields, "Content-Transfer-Encoding"),
        Some("quoted-printable")
    );
    let header_end = original.find("\r\n\r\n").unwrap() + 2;
    assert_eq!(decoded(headers), &original.as_bytes()[..header_end]);
}

#[test]
fn template_subject_with_non_ascii_is_encoded() {
    let original = b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n";
    let message = build(
        original,
        &[null_mx("c@n.example")],
        Some("Subject: {subject}\n\nx\n"),
    );
    let notice = Notice::parse(&message);
    assert_eq!(must(&notice.fields, "Subject"), "=?UTF-8?B?Y2Fmw6k=?=");
}

#[test]
fn boundary_never_occurs_in_the_content() {
    let first = Notice::parse(&build(ORIGINAL, &[null_mx("c@n.example")], None));
    // Same seed, so the first candidate is the boundary just seen; the original
    // now contains it and another one must be chosen.
    let original = format!("X-Trap: --{}\r\n\r\n", first.boundary);
    let message = build(original.as_bytes(), &[null_mx("c@n.example")], None);
    let second = Notice::parse(&message);
    assert_ne!(second.boundary, first.boundary);
    assert_eq!(second.parts.len(), 3);
}

#[test]
fn empty_template_falls_back_to_builtin_text() {
    for template in [Some(""), Some(" \n\n"), None] {
        let notice = Notice::parse(&build(ORIGINAL, &[null_mx("c@n.example")], template));
        assert!(notice.text().contains("could not be delivered"));
    }
}

#[test]
fn hostile_inputs_never_break_the_wire_format() {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(1234);
    let alphabet = b"\r\n\t :;<>\"=?_-.aZ09\x00\x7f\xc3\xa9\xff";
    let noise = |rng: &mut StdRng, len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect()
    };
    for round in 0..200 {
        let len = rng.random_range(0..3000);
        let original = noise(&mut rng, len);
        let text = |rng: &mut StdRng| String::from_utf8_lossy(&noise(rng, 1200)).into_owned();
        let recipients = [
            FailedRecipient {
                address: text(&mut rng),
                original_recipient: None,
                next_attempt: None,
                action: Action::Failed,
                status: text(&mut rng),
                remote_mta: Some(text(&mut rng)),
                diagnostic: Diagnostic::Smtp {
                    reply: text(&mut rng),
                },
            },
            FailedRecipient {
                address: text(&mut rng),
                original_recipient: None,
                next_attempt: None,
                action: Action::Delayed {
                    will_retry_until: UNIX_EPOCH + Duration::from_secs(u64::MAX / 4),
                },
                status: "4.4.7".to_string(),
                remote_mta: None,
                diagnostic: Diagnostic::Local {
                    text: text(&mut rng),
                },
            },
        ];
        let template = text(&mut rng);
        let me = text(&mut rng);
        let sender = text(&mut rng);
        let input = BounceInput {
            me: &me,
            original_sender: &sender,
            arrival: UNIX_EPOCH - Duration::from_secs(5),
            original_message: &original,
            return_full: false,
            envid: None,
            recipients: &recipients,
            template: (round % 2 == 0).then_some(template.as_str()),
            pid: round,
        };
        let notice = Notice::parse(&build_bounce_at(&input, now(), &mut rng));
        assert_eq!(notice.parts.len(), 3);
        let (_, groups) = notice.report();
        assert_eq!(groups.len(), 2);
    }
}

#[test]
fn default_entry_point_uses_the_clock() {
    let input = BounceInput {
        me: "relay.example",
        original_sender: "a@b.example",
        arrival: arrival(),
        original_message: ORIGINAL,
        return_full: false,
        envid: None,
        recipients: &[null_mx("c@n.example")],
        template: None,
        pid: 1,
    };
    let notice = Notice::parse(&build_bounce(&input));
    let sent = timestamp(must(&notice.fields, "Date"));
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((wall - sent).abs() < 60);
}

#[test]
fn a_spool_recipient_remote_replies_name_the_mta_local_causes_do_not() {
    let mut recipient = spool::RecipientState::new("bob@example.net", SystemTime::UNIX_EPOCH);
    recipient.status = spool::RecipientStatus::Failed;
    recipient.last_reply = Some("550 5.1.1 No such user".into());
    recipient.last_mx = Some("mx1.example.net".into());
    recipient.reply_is_remote = true;
    recipient.dsn_status = Some("5.1.1".into());
    let remote = failed_recipient(&recipient);
    assert_eq!(remote.status, "5.1.1");
    assert_eq!(remote.remote_mta.as_deref(), Some("mx1.example.net"));
    assert_eq!(
        remote.diagnostic,
        Diagnostic::Smtp {
            reply: "550 5.1.1 No such user".into()
        }
    );

    recipient.reply_is_remote = false;
    recipient.last_reply = Some("Domain example.net sends and receives no email".into());
    recipient.dsn_status = None;
    let local = failed_recipient(&recipient);
    assert_eq!(local.remote_mta, None);
    assert_eq!(local.status, "5.0.0");
    assert!(matches!(local.diagnostic, Diagnostic::Local { .. }));
}

fn build_with(input: BounceInput) -> Notice {
    Notice::parse(&build_bounce_at(
        &input,
        now(),
        &mut StdRng::seed_from_u64(9),
    ))
}

fn input<'a>(recipients: &'a [FailedRecipient], original: &'a [u8]) -> BounceInput<'a> {
    BounceInput {
        me: "relay.example",
        original_sender: "alice@sender.example",
        arrival: arrival(),
        original_message: original,
        return_full: false,
        envid: None,
        recipients,
        template: None,
        pid: 4321,
    }
}

#[test]
fn envid_and_orcpt_appear_as_rfc_3464_fields() {
    let recipient = FailedRecipient {
        original_recipient: Some("rfc822; Bob@Dest.example".to_string()),
        ..smtp_failure("bob@dest.example", REPLY)
    };
    let notice = build_with(BounceInput {
        envid: Some("QQ314159"),
        ..input(std::slice::from_ref(&recipient), ORIGINAL)
    });
    let (per_message, recipients) = notice.report();
    assert_eq!(must(&per_message, "Original-Envelope-Id"), "QQ314159");
    assert_eq!(
        must(&recipients[0], "Original-Recipient"),
        "rfc822; Bob@Dest.example"
    );
    // Without them, neither field is written.
    let plain = build_with(input(std::slice::from_ref(&recipient), ORIGINAL));
    let (per_message, _) = plain.report();
    assert_eq!(get(&per_message, "Original-Envelope-Id"), None);
}

#[test]
fn ret_full_returns_the_whole_message_and_hdrs_only_the_header_section() {
    let failed = [smtp_failure("bob@dest.example", REPLY)];
    let full = build_with(BounceInput {
        return_full: true,
        ..input(&failed, ORIGINAL)
    });
    let returned = &full.parts[2];
    assert_eq!(must(&returned.fields, "Content-Type"), "message/rfc822");
    assert!(find(&returned.body, b"SECRET BODY TEXT").is_some());

    let headers = build_with(input(&failed, ORIGINAL));
    assert_eq!(
        must(&headers.parts[2].fields, "Content-Type"),
        "text/rfc822-headers"
    );
    assert!(find(&headers.parts[2].body, b"SECRET BODY TEXT").is_none());

    // Too big to return: headers only, as Postfix's bounce_size_limit.
    let mut huge = ORIGINAL.to_vec();
    huge.extend(std::iter::repeat_n(b"x\r\n".as_slice(), MAX_RETURNED_MESSAGE / 3).flatten());
    let capped = build_with(BounceInput {
        return_full: true,
        ..input(&failed, &huge)
    });
    assert_eq!(
        must(&capped.parts[2].fields, "Content-Type"),
        "text/rfc822-headers"
    );
}

#[test]
fn relayed_and_delivered_notices() {
    let relayed = FailedRecipient {
        action: Action::Relayed,
        status: "2.0.0".to_string(),
        diagnostic: Diagnostic::Smtp {
            reply: "250 2.0.0 Ok: queued as 4XyZ".to_string(),
        },
        ..smtp_failure("bob@dest.example", "")
    };
    let delivered = FailedRecipient {
        action: Action::Delivered,
        address: "carol@dest.example".to_string(),
        ..relayed.clone()
    };
    let notice = build_with(input(&[relayed, delivered], ORIGINAL));
    assert_eq!(
        must(&notice.fields, "Subject"),
        "Successful Mail Delivery Report"
    );
    let (_, recipients) = notice.report();
    assert_eq!(must(&recipients[0], "Action"), "relayed");
    assert_eq!(must(&recipients[1], "Action"), "delivered");
    assert_eq!(must(&recipients[0], "Status"), "2.0.0");
    assert!(notice.text().contains("successfully delivered"));
}

#[test]
fn delayed_text_names_the_reply_and_the_next_attempt() {
    let delayed = FailedRecipient {
        action: Action::Delayed {
            will_retry_until: arrival() + Duration::from_secs(86_400),
        },
        status: "4.2.0".to_string(),
        next_attempt: Some(now() + Duration::from_secs(600)),
        ..smtp_failure("bob@dest.example", "451 4.2.0 try later")
    };
    let notice = build_with(input(&[delayed], ORIGINAL));
    let text = notice.text();
    assert!(
        text.contains("host mx1.dest.example said: 451 4.2.0 try later (next attempt: "),
        "{text}"
    );
    assert!(text.contains(&header::date(now() + Duration::from_secs(600))));
}
