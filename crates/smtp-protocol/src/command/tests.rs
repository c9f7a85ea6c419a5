//! Table-driven tests of every command, valid and invalid.

use super::*;
use crate::address::AddressError;
use crate::dsn_params::{DsnParamError, Envid, Notify, Orcpt, Ret};

fn from(path: &str) -> ReversePath {
    parse_reverse_path(path).unwrap()
}

fn to(path: &str) -> ForwardPath {
    parse_forward_path(path).unwrap()
}

fn mail(path: &str, params: MailParams) -> Command {
    Command::Mail {
        from: from(path),
        params,
    }
}

fn rcpt(path: &str, other: &[(&str, Option<&str>)]) -> Command {
    Command::Rcpt {
        to: to(path),
        params: RcptParams {
            other: other
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                .collect(),
            ..RcptParams::default()
        },
    }
}

fn no_params() -> MailParams {
    MailParams::default()
}

fn auth(mechanism: &str, initial_response: Option<&str>) -> Command {
    Command::Auth {
        mechanism: mechanism.to_owned(),
        initial_response: initial_response.map(str::to_owned),
    }
}

#[test]
fn valid_commands() {
    let cases: Vec<(&str, Command)> = vec![
        (
            "HELO client.example",
            Command::Helo("client.example".into()),
        ),
        (
            "helo client.example",
            Command::Helo("client.example".into()),
        ),
        (
            "EHLO client.example",
            Command::Ehlo("client.example".into()),
        ),
        (
            "EhLo Client.Example",
            Command::Ehlo("Client.Example".into()),
        ),
        ("EHLO [192.0.2.1]", Command::Ehlo("[192.0.2.1]".into())),
        (
            "EHLO client.example extra words",
            Command::Ehlo("client.example".into()),
        ),
        (
            "EHLO  client.example  ",
            Command::Ehlo("client.example".into()),
        ),
        (
            "MAIL FROM:<a@b.example>",
            mail("<a@b.example>", no_params()),
        ),
        (
            "mail from:<a@b.example>",
            mail("<a@b.example>", no_params()),
        ),
        (
            "Mail From:<a@b.example>",
            mail("<a@b.example>", no_params()),
        ),
        (
            "MAIL FROM:<>",
            Command::Mail {
                from: ReversePath::Null,
                params: no_params(),
            },
        ),
        (
            "MAIL FROM: <a@b.example>",
            mail("<a@b.example>", no_params()),
        ),
        ("MAIL FROM:a@b.example", mail("<a@b.example>", no_params())),
        (
            "MAIL FROM:a@b.example SIZE=10",
            mail(
                "<a@b.example>",
                MailParams {
                    size: Some(10),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> ",
            mail("<a@b.example>", no_params()),
        ),
        (
            "MAIL FROM:<@r.example:a@b.example>",
            mail("<a@b.example>", no_params()),
        ),
        (
            "MAIL FROM:<\"a b>\"@b.example> SIZE=1",
            mail(
                "<\"a b>\"@b.example>",
                MailParams {
                    size: Some(1),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<用户@例子.广告> SMTPUTF8",
            mail(
                "<用户@例子.广告>",
                MailParams {
                    smtputf8: true,
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=0",
            mail(
                "<a@b.example>",
                MailParams {
                    size: Some(0),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> size=18446744073709551615",
            mail(
                "<a@b.example>",
                MailParams {
                    size: Some(u64::MAX),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> BODY=7BIT",
            mail(
                "<a@b.example>",
                MailParams {
                    body: Some(Body::SevenBit),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> body=8bitmime",
            mail(
                "<a@b.example>",
                MailParams {
                    body: Some(Body::EightBitMime),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> smtputf8",
            mail(
                "<a@b.example>",
                MailParams {
                    smtputf8: true,
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> AUTH=<>",
            mail(
                "<a@b.example>",
                MailParams {
                    auth: Some("<>".into()),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> AUTH=a+2Bb@c.example",
            mail(
                "<a@b.example>",
                MailParams {
                    auth: Some("a+2Bb@c.example".into()),
                    ..no_params()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example>  SIZE=5   BODY=8BITMIME SMTPUTF8 ret=HDRS ENVID=x+2B requiretls X-FLAG",
            mail(
                "<a@b.example>",
                MailParams {
                    size: Some(5),
                    body: Some(Body::EightBitMime),
                    smtputf8: true,
                    auth: None,
                    ret: Some(Ret::Hdrs),
                    envid: Some(Envid::parse("x+2B").unwrap()),
                    requiretls: true,
                    other: vec![("X-FLAG".into(), None)],
                },
            ),
        ),
        ("RCPT TO:<a@b.example>", rcpt("<a@b.example>", &[])),
        ("rcpt to:<a@b.example>", rcpt("<a@b.example>", &[])),
        ("RCPT TO: <a@b.example>", rcpt("<a@b.example>", &[])),
        ("RCPT TO:a@b.example", rcpt("<a@b.example>", &[])),
        ("RCPT TO:<postmaster>", rcpt("<postmaster>", &[])),
        (
            "RCPT TO:<PostMaster>",
            Command::Rcpt {
                to: ForwardPath::Postmaster("PostMaster".into()),
                params: RcptParams::default(),
            },
        ),
        ("RCPT TO:postmaster", rcpt("<postmaster>", &[])),
        (
            "RCPT TO:<@r.example:a@b.example>",
            rcpt("<a@b.example>", &[]),
        ),
        ("RCPT TO:<a@[192.0.2.1]>", rcpt("<a@[192.0.2.1]>", &[])),
        (
            "RCPT TO:<a@[IPv6:2001:db8::1]>",
            rcpt("<a@[IPv6:2001:db8::1]>", &[]),
        ),
        (
            "RCPT TO:<a@b.example> notify=SUCCESS,FAILURE ORCPT=rfc822;a@b.example",
            Command::Rcpt {
                to: to("<a@b.example>"),
                params: RcptParams {
                    notify: Some(Notify::parse("SUCCESS,FAILURE").unwrap()),
                    orcpt: Some(Orcpt::parse("rfc822;a@b.example").unwrap()),
                    other: Vec::new(),
                },
            },
        ),
        ("DATA", Command::Data),
        ("data", Command::Data),
        ("DATA ", Command::Data),
        ("RSET", Command::Rset),
        ("rset", Command::Rset),
        ("NOOP", Command::Noop),
        ("noop anything at all", Command::Noop),
        ("QUIT", Command::Quit),
        ("Quit", Command::Quit),
        ("STARTTLS", Command::StartTls),
        ("starttls", Command::StartTls),
        ("VRFY postmaster", Command::Vrfy("postmaster".into())),
        ("vrfy John Smith", Command::Vrfy("John Smith".into())),
        ("HELP", Command::Help(None)),
        ("help MAIL", Command::Help(Some("MAIL".into()))),
        ("AUTH PLAIN", auth("PLAIN", None)),
        (
            "auth plain AGFsaWNlAHNlY3JldA==",
            auth("PLAIN", Some("AGFsaWNlAHNlY3JldA==")),
        ),
        ("AUTH EXTERNAL =", auth("EXTERNAL", Some("="))),
        ("AUTH CRAM-MD5", auth("CRAM-MD5", None)),
        ("AUTH SCRAM-SHA-256", auth("SCRAM-SHA-256", None)),
        (
            "XCLIENT ADDR=192.0.2.1 NAME=spoofed.example",
            Command::Xclient("ADDR=192.0.2.1 NAME=spoofed.example".into()),
        ),
        ("xclient", Command::Xclient(String::new())),
        (
            "PROXY TCP4 192.0.2.1 198.51.100.1 40000 25",
            Command::Proxy("TCP4 192.0.2.1 198.51.100.1 40000 25".into()),
        ),
    ];
    for (line, expected) in cases {
        let parsed = Command::parse(line.as_bytes());
        assert_eq!(parsed.as_ref(), Ok(&expected), "{line:?}");
        assert_eq!(
            expected.verb(),
            line.split(' ').next().unwrap().to_ascii_uppercase(),
            "{line:?}"
        );
    }
}

#[test]
fn mail_keeps_address_wire_form() {
    let Ok(Command::Mail { from, .. }) = Command::parse(b"MAIL FROM:<USER@Example.COM.>") else {
        panic!("MAIL should parse");
    };
    assert_eq!(from.to_string(), "<USER@Example.COM>");
    let mailbox = from.mailbox().unwrap();
    assert_eq!(mailbox.domain().unwrap().as_str(), "example.com");
    assert!(!mailbox.is_utf8());
}

fn unrecognized(verb: &str) -> CommandError {
    CommandError::Unrecognized { verb: verb.into() }
}

fn param(error: ParameterError) -> CommandError {
    CommandError::InvalidParameter(error)
}

#[test]
fn invalid_commands() {
    let mail_syntax = CommandError::Syntax { usage: MAIL_USAGE };
    let rcpt_syntax = CommandError::Syntax { usage: RCPT_USAGE };
    let auth_syntax = CommandError::Syntax { usage: AUTH_USAGE };
    let cases: Vec<(&[u8], CommandError)> = vec![
        (b"", CommandError::EmptyLine),
        (b"   ", CommandError::EmptyLine),
        (b"FOO bar", unrecognized("FOO")),
        (b"EXPN list", unrecognized("EXPN")),
        (b"BDAT 100 LAST", unrecognized("BDAT")),
        (b"ETRN example.com", unrecognized("ETRN")),
        (b"GET / HTTP/1.1", unrecognized("GET")),
        (b" MAIL FROM:<a@b.example>", unrecognized("")),
        (b"MAIL:FROM:<a@b.example>", unrecognized("MAIL:FROM:<a@b.e")),
        (
            b"VERYLONGVERBTHATGOESONANDON",
            unrecognized("VERYLONGVERBTHAT"),
        ),
        (b"H\xc3\xa9LO x", unrecognized("H??LO")),
        (b"\xff\xfe", unrecognized("??")),
        (b"QUIT\0", CommandError::ControlCharacter { byte: 0 }),
        (b"\0", CommandError::ControlCharacter { byte: 0 }),
        (b"NOOP \r", CommandError::ControlCharacter { byte: b'\r' }),
        (b"NOOP \n", CommandError::ControlCharacter { byte: b'\n' }),
        (
            b"MAIL\tFROM:<a@b.example>",
            CommandError::ControlCharacter { byte: b'\t' },
        ),
        (
            b"MAIL FROM:<\"a\tb\"@b.example>",
            CommandError::ControlCharacter { byte: b'\t' },
        ),
        (
            b"RCPT TO:<a@b.example>\x7f",
            CommandError::ControlCharacter { byte: 0x7f },
        ),
        (
            b"RCPT TO:<a@b\x1b.example>",
            CommandError::ControlCharacter { byte: 0x1b },
        ),
        (
            b"HELO h\xc3\xa9.example",
            CommandError::NonAscii { verb: "HELO" },
        ),
        (b"EHLO \xff", CommandError::NonAscii { verb: "EHLO" }),
        (b"NOOP \xff", CommandError::NonAscii { verb: "NOOP" }),
        (b"VRFY j\xc3\xb6rg", CommandError::NonAscii { verb: "VRFY" }),
        (
            b"MAIL FROM:<a\xff@b.example>",
            CommandError::InvalidUtf8 { verb: "MAIL" },
        ),
        (
            b"RCPT TO:<a\xc3@b.example>",
            CommandError::InvalidUtf8 { verb: "RCPT" },
        ),
        (b"QUIT x", CommandError::NoArgumentsAllowed { verb: "QUIT" }),
        (b"RSET x", CommandError::NoArgumentsAllowed { verb: "RSET" }),
        (b"DATA x", CommandError::NoArgumentsAllowed { verb: "DATA" }),
        (
            b"STARTTLS x",
            CommandError::NoArgumentsAllowed { verb: "STARTTLS" },
        ),
        (b"HELO", CommandError::MissingArgument { verb: "HELO" }),
        (b"EHLO", CommandError::MissingArgument { verb: "EHLO" }),
        (b"EHLO   ", CommandError::MissingArgument { verb: "EHLO" }),
        (b"VRFY", CommandError::MissingArgument { verb: "VRFY" }),
        (b"AUTH", CommandError::MissingArgument { verb: "AUTH" }),
        (b"MAIL", mail_syntax.clone()),
        (b"MAIL FROM", mail_syntax.clone()),
        (b"MAIL FROM:", mail_syntax.clone()),
        (b"MAIL FROM: ", mail_syntax.clone()),
        (b"MAIL TO:<a@b.example>", mail_syntax.clone()),
        (b"MAIL FROM :<a@b.example>", mail_syntax.clone()),
        (b"MAIL FROM:<a@b.example>SIZE=1", mail_syntax.clone()),
        (b"RCPT", rcpt_syntax.clone()),
        (b"RCPT FROM:<a@b.example>", rcpt_syntax.clone()),
        (b"RCPT TO:", rcpt_syntax.clone()),
        (b"RCPT TO:<a@b.example>x", rcpt_syntax),
        (b"AUTH PLAIN abc def", auth_syntax.clone()),
        (b"AUTH PL@IN", auth_syntax.clone()),
        (b"AUTH THIS-MECHANISM-IS-TOO-LONG", auth_syntax.clone()),
        (b"AUTH PLAIN not*base64", auth_syntax),
        (
            b"MAIL FROM:<a@b.example",
            CommandError::InvalidSender(AddressError::UnterminatedPath),
        ),
        (
            b"MAIL FROM:<user@example.com@evil.org>",
            CommandError::InvalidSender(AddressError::MultipleAt),
        ),
        (
            b"MAIL FROM:<a b@c.example>",
            CommandError::InvalidSender(AddressError::InvalidLocalPartCharacter { found: ' ' }),
        ),
        (
            b"MAIL FROM:<a..b@c.example>",
            CommandError::InvalidSender(AddressError::MisplacedDot),
        ),
        (
            b"MAIL FROM:<postmaster>",
            CommandError::InvalidSender(AddressError::MissingAt),
        ),
        (
            b"MAIL FROM:a@b.example>",
            CommandError::InvalidSender(AddressError::TextAfterPath),
        ),
        (
            b"RCPT TO:<>",
            CommandError::InvalidRecipient(AddressError::NullForwardPath),
        ),
        (
            b"RCPT TO:<a@-bad-.example>",
            CommandError::InvalidRecipient(AddressError::DomainLabelHyphen),
        ),
        (
            b"RCPT TO:<\"unbalanced@b.example>",
            CommandError::InvalidRecipient(AddressError::UnterminatedPath),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE",
            param(ParameterError::MissingValue { keyword: "SIZE" }),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=",
            param(ParameterError::EmptyValue {
                keyword: "SIZE".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=abc",
            param(ParameterError::InvalidSize),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=-1",
            param(ParameterError::InvalidSize),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=+1",
            param(ParameterError::InvalidSize),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=18446744073709551616",
            param(ParameterError::InvalidSize),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=1 size=2",
            param(ParameterError::Duplicate {
                keyword: "SIZE".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> X=1 x",
            param(ParameterError::Duplicate {
                keyword: "X".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> BODY=BINARYMIME",
            param(ParameterError::UnsupportedBody),
        ),
        (
            b"MAIL FROM:<a@b.example> BODY",
            param(ParameterError::MissingValue { keyword: "BODY" }),
        ),
        (
            b"MAIL FROM:<a@b.example> SMTPUTF8=yes",
            param(ParameterError::UnexpectedValue {
                keyword: "SMTPUTF8",
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> AUTH",
            param(ParameterError::MissingValue { keyword: "AUTH" }),
        ),
        (
            b"MAIL FROM:<a@b.example> REQUIRETLS=yes",
            param(ParameterError::UnexpectedValue {
                keyword: "REQUIRETLS",
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> REQUIRETLS requiretls",
            param(ParameterError::Duplicate {
                keyword: "REQUIRETLS".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> =x",
            param(ParameterError::Malformed {
                parameter: "=x".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> -X=1",
            param(ParameterError::Malformed {
                parameter: "-X=1".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> X=a=b",
            param(ParameterError::Malformed {
                parameter: "X=a=b".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> X_Y=1",
            param(ParameterError::Malformed {
                parameter: "X_Y=1".into(),
            }),
        ),
        (
            b"MAIL FROM:<a@b.example> X=\xc3\xa9",
            param(ParameterError::NonAscii),
        ),
        (
            b"RCPT TO:<a@b.example> NOTIFY=NEVER notify=NEVER",
            param(ParameterError::Duplicate {
                keyword: "NOTIFY".into(),
            }),
        ),
        (
            b"RCPT TO:<a@b.example> ORCPT=",
            param(ParameterError::EmptyValue {
                keyword: "ORCPT".into(),
            }),
        ),
        (
            b"RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS",
            param(ParameterError::Dsn(DsnParamError::Notify)),
        ),
        (
            b"RCPT TO:<a@b.example> ORCPT=a@b.example",
            param(ParameterError::Dsn(DsnParamError::Orcpt)),
        ),
        (
            b"RCPT TO:<a@b.example> NOTIFY",
            param(ParameterError::MissingValue { keyword: "NOTIFY" }),
        ),
        (
            b"MAIL FROM:<a@b.example> RET=ALL",
            param(ParameterError::Dsn(DsnParamError::Ret)),
        ),
        (
            b"MAIL FROM:<a@b.example> ENVID=a+4",
            param(ParameterError::Dsn(DsnParamError::Envid)),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line),
            Err(expected),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn every_error_maps_to_its_reply() {
    let cases: Vec<(&[u8], u16, &str)> = vec![
        (b"", 500, "5.5.1"),
        (b"FOO", 500, "5.5.1"),
        (b"NOOP \0", 501, "5.5.4"),
        (b"HELO \xff", 501, "5.5.4"),
        (b"MAIL FROM:<\xff@x.example>", 501, "5.5.4"),
        (b"QUIT now", 501, "5.5.4"),
        (b"EHLO", 501, "5.5.4"),
        (b"MAIL TO:<a@b.example>", 501, "5.5.4"),
        (b"MAIL FROM:<a..b@x.example>", 553, "5.1.7"),
        (b"RCPT TO:<a..b@x.example>", 553, "5.1.3"),
        (b"MAIL FROM:<a@x.example> SIZE=x", 555, "5.5.4"),
    ];
    for (line, code, enhanced) in cases {
        let reply = Command::parse(line).unwrap_err().reply();
        assert_eq!(
            (reply.code(), reply.enhanced_code()),
            (code, enhanced),
            "{line:?}"
        );
    }
}

#[test]
fn error_texts_are_fit_for_replies() {
    let samples: [&[u8]; 6] = [
        b"FOO",
        b"MAIL FROM:<a\x1b@b>",
        b"MAIL FROM:<a\xc2\x85b@x.example>",
        b"RCPT TO:<\"\xe2\x80\xa8\"@x.example>",
        b"MAIL FROM:<a@b.example> X=1 x",
        b"EHLO",
    ];
    for line in samples {
        let text = Command::parse(line).unwrap_err().to_string();
        assert!(!text.is_empty());
        assert!(
            text.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
            "{text:?}"
        );
    }
    assert_eq!(
        Command::parse(b"MAIL FROM:<a..b@x.example>")
            .unwrap_err()
            .to_string(),
        "invalid sender address: misplaced '.' in local part"
    );
}
