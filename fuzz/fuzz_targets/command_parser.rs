//! `Command::parse` on arbitrary bytes: it must never panic; every error text
//! must be fit to follow a reply code (printable ASCII only); and every
//! command it accepts must survive a round trip through its canonical
//! written form, so the parsed value carries everything the line meant.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_protocol::command::{Body, Command, MailParams, RcptParams};

fuzz_target!(|line: &[u8]| {
    match Command::parse(line) {
        Ok(command) => check_accepted(line, &command),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "error text {text:?} for {line:?}"
            );
            let code = error.reply().code();
            assert!((500..600).contains(&code), "{code}");
        }
    }
});

fn check_accepted(line: &[u8], command: &Command) {
    // The verb is the line's first word, in any case.
    let verb = command.verb();
    let head = line.get(..verb.len()).expect("line shorter than its verb");
    assert!(
        head.eq_ignore_ascii_case(verb.as_bytes()),
        "{line:?} is not {verb}"
    );
    assert!(
        matches!(line.get(verb.len()), None | Some(b' ')),
        "{line:?}"
    );

    let canonical = canonical_line(command);
    let again = Command::parse(canonical.as_bytes())
        .unwrap_or_else(|e| panic!("{line:?} -> {canonical:?} does not parse: {e}"));
    assert_eq!(&again, command, "{line:?} -> {canonical:?}");
}

/// The command written out the way a careful client would send it.
fn canonical_line(command: &Command) -> String {
    match command {
        Command::Helo(name) => format!("HELO {name}"),
        Command::Ehlo(name) => format!("EHLO {name}"),
        Command::Mail { from, params } => format!("MAIL FROM:{from}{}", mail_params(params)),
        Command::Rcpt { to, params } => format!("RCPT TO:{to}{}", rcpt_params(params)),
        Command::Vrfy(text) => format!("VRFY {text}"),
        Command::Help(None) => "HELP".to_owned(),
        Command::Help(Some(topic)) => format!("HELP {topic}"),
        Command::Auth {
            mechanism,
            initial_response: None,
        } => format!("AUTH {mechanism}"),
        Command::Auth {
            mechanism,
            initial_response: Some(response),
        } => format!("AUTH {mechanism} {response}"),
        Command::Xclient(arguments) if arguments.is_empty() => "XCLIENT".to_owned(),
        Command::Xclient(arguments) => format!("XCLIENT {arguments}"),
        // DATA, RSET, NOOP (whose argument is dropped), QUIT, STARTTLS.
        other => other.verb().to_owned(),
    }
}

fn mail_params(params: &MailParams) -> String {
    let mut text = String::new();
    if let Some(size) = params.size {
        text.push_str(&format!(" SIZE={size}"));
    }
    match params.body {
        Some(Body::SevenBit) => text.push_str(" BODY=7BIT"),
        Some(Body::EightBitMime) => text.push_str(" BODY=8BITMIME"),
        None => {}
    }
    if params.smtputf8 {
        text.push_str(" SMTPUTF8");
    }
    if let Some(auth) = &params.auth {
        text.push_str(&format!(" AUTH={auth}"));
    }
    if let Some(ret) = params.ret {
        text.push_str(&format!(" RET={}", ret.as_str()));
    }
    if let Some(envid) = &params.envid {
        text.push_str(&format!(" ENVID={}", envid.as_xtext()));
    }
    text + &other_params(&params.other)
}

fn rcpt_params(params: &RcptParams) -> String {
    let mut text = String::new();
    if let Some(notify) = params.notify {
        text.push_str(&format!(" NOTIFY={}", notify.to_param()));
    }
    if let Some(orcpt) = &params.orcpt {
        // The Display form is the value as received, checked as xtext.
        text.push_str(&format!(" ORCPT={orcpt}"));
    }
    text + &other_params(&params.other)
}

fn other_params(other: &[(String, Option<String>)]) -> String {
    other
        .iter()
        .map(|(keyword, value)| match value {
            Some(value) => format!(" {keyword}={value}"),
            None => format!(" {keyword}"),
        })
        .collect()
}
