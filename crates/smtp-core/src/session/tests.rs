//! Session tests: scripted SMTP dialogs in `dialogs/*.dialog`, run without
//! sockets against a small in-test policy.
//!
//! Dialog grammar, one directive per line:
//! - `C: text`  a client command line (CRLF is added); in DATA mode, a data line
//! - `C~ text`  raw client bytes, with `\r`, `\n`, `\0` and `\\` escapes, nothing added
//! - `S: text`  the next server reply line, exactly; a trailing `*` matches any rest
//! - `= closed` the session has closed
//! - `= tls`    the TLS handshake completes here
//! - `= tls-available`  a certificate is loaded (before the banner)
//! - `= timeout` / `= shutdown`  the driver's timers fire
//! - `= auth PLAIN LOGIN …`  offer AUTH with these mechanisms (user `alice`,
//!   password `secret`; user `temp` gets a temporary failure)
//! - `= max-recipients N`, `= max-bytes N`, `= max-bad N`, `= max-received N`, `= normalize`
//! - `#` comments and blank lines are ignored.
//!
//! The policy: recipients at `example.com` (and postmaster) are accepted,
//! `temp.example` gets `451 4.3.0`, anything else `550 5.7.1`; senders at
//! `blocked.example` get `550 5.7.1`; a message is accepted unless its sender's
//! local part is `reject`.

use std::sync::Arc;

use super::*;
use crate::address::ForwardPath;
use crate::dns::ClientName;
use crate::policy::{AuthVerdict, Verdict};
use crate::reply::{EnhancedCode, Reply};

fn client() -> ClientInfo {
    ClientInfo {
        peer: "192.0.2.1:40000".parse().unwrap(),
        local: "198.51.100.1:25".parse().unwrap(),
        name: ClientName::Unavailable,
    }
}

fn recipient_policy(rcpt: &ForwardPath) -> Verdict {
    let ForwardPath::Mailbox(mailbox) = rcpt else {
        return Verdict::accept();
    };
    match mailbox.domain().map(|d| d.as_str()) {
        Some("example.com") => Verdict::accept(),
        Some("temp.example") => Verdict::Reject(Reply::new(
            451,
            Some(EnhancedCode::new(4, 3, 0)),
            "Try again later",
        )),
        _ => Verdict::Reject(Reply::new(
            550,
            Some(EnhancedCode::new(5, 7, 1)),
            format!("I cannot deliver mail for {rcpt}"),
        )),
    }
}

fn sender_policy(from: &ReversePath) -> Verdict {
    match from {
        ReversePath::Mailbox(m) if m.domain().is_some_and(|d| d.as_str() == "blocked.example") => {
            Verdict::Reject(Reply::new(
                550,
                Some(EnhancedCode::new(5, 7, 1)),
                "Sender refused",
            ))
        }
        _ => Verdict::accept(),
    }
}

fn message_policy(envelope: &Envelope, message: &[u8]) -> Verdict {
    assert!(
        message.starts_with(b"Received: from "),
        "own Received header first"
    );
    match &envelope.from {
        ReversePath::Mailbox(m) if m.local_part() == "reject" => Verdict::Reject(Reply::new(
            554,
            Some(EnhancedCode::new(5, 7, 1)),
            "Message refused",
        )),
        _ => Verdict::accept(),
    }
}

/// Runs the driver's side of the protocol against the test policy.
struct Runner {
    session: Session,
    output: std::collections::VecDeque<String>,
    delivered: Vec<Vec<u8>>,
}

impl Runner {
    fn new(config: SessionConfig, tls_available: bool) -> Self {
        Self::with_auth(config, tls_available, Vec::new())
    }

    fn with_auth(config: SessionConfig, tls_available: bool, auth: Vec<SaslMechanism>) -> Self {
        let mut session = Session::new(Arc::new(config), client(), "TESTCONN".into());
        session.set_tls_available(tls_available);
        session.set_auth_mechanisms(auth);
        let action = session.greet();
        let mut runner = Self {
            session,
            output: Default::default(),
            delivered: Vec::new(),
        };
        runner.act(action);
        runner
    }

    fn act(&mut self, mut action: Action) {
        loop {
            action = match action {
                Action::CheckSender => {
                    let (from, _) = self.session.pending_sender().unwrap();
                    let verdict = sender_policy(from);
                    self.session.sender_verdict(verdict)
                }
                Action::CheckRecipient => {
                    let verdict = recipient_policy(self.session.pending_recipient().unwrap());
                    self.session.recipient_verdict(verdict)
                }
                Action::DeliverMessage => {
                    let message = self.session.take_message();
                    let verdict = message_policy(self.session.envelope().unwrap(), &message);
                    self.delivered.push(message);
                    self.session.message_verdict(verdict)
                }
                Action::Authenticate => {
                    let credentials = self.session.pending_credentials().unwrap();
                    let verdict = match credentials.user() {
                        "temp" => AuthVerdict::TemporaryFailure,
                        "alice" if credentials.matches("secret") => AuthVerdict::Accepted,
                        _ => AuthVerdict::Rejected,
                    };
                    self.session.auth_verdict(verdict)
                }
                Action::StartTls
                | Action::Close
                | Action::Continue
                | Action::ReceiveData
                | Action::Reset => break,
            };
        }
        let mut wire = Vec::new();
        self.session.write_replies(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        for line in wire.split_terminator("\r\n") {
            self.output.push_back(line.to_string());
        }
    }

    fn input(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.session.is_receiving_data() {
                let (n, action) = self.session.data(bytes);
                bytes = &bytes[n..];
                self.act(action);
            } else {
                let end = bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| p + 1);
                let line = &bytes[..end];
                bytes = &bytes[end..];
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let action = if line.len() + 2 > 512 {
                    self.session.line_too_long()
                } else {
                    self.session.command_line(line)
                };
                self.act(action);
            }
        }
    }
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            other => panic!("bad escape \\{other:?}"),
        }
    }
    out
}

fn run_dialog(name: &str, script: &str) {
    let mut config = SessionConfig::with_host_name("mx.test");
    let mut tls_available = false;
    let mut auth = Vec::new();
    let mut lines = script.lines().enumerate().peekable();
    // Settings come before the first exchange.
    while let Some((_, line)) = lines.peek() {
        let Some(setting) = line.strip_prefix("= ") else {
            if line.trim().is_empty() || line.starts_with('#') {
                lines.next();
                continue;
            }
            break;
        };
        if let Some(names) = setting.strip_prefix("auth ") {
            auth = names
                .split_whitespace()
                .map(|n| SaslMechanism::parse(n).unwrap())
                .collect();
            lines.next();
            continue;
        }
        let mut words = setting.split_whitespace();
        match (
            words.next(),
            words.next().map(|n| n.parse::<usize>().unwrap()),
        ) {
            (Some("tls-available"), None) => tls_available = true,
            (Some("normalize"), None) => config.bare_newline = BareNewlinePolicy::Normalize,
            (Some("max-recipients"), Some(n)) => config.max_recipients = n,
            (Some("max-bytes"), Some(n)) => config.max_message_bytes = n,
            (Some("max-bad"), Some(n)) => config.max_bad_commands = n as u32,
            (Some("max-received"), Some(n)) => config.max_received = n,
            _ => break,
        }
        lines.next();
    }
    let mut runner = Runner::with_auth(config, tls_available, auth);
    for (index, line) in lines {
        let at = format!("{name}:{}", index + 1);
        if let Some(text) = line.strip_prefix("C: ").or((line == "C:").then_some("")) {
            let mut bytes = text.as_bytes().to_vec();
            bytes.extend_from_slice(b"\r\n");
            runner.input(&bytes);
        } else if let Some(text) = line.strip_prefix("C~ ") {
            runner.input(&unescape(text));
        } else if let Some(expected) = line.strip_prefix("S: ") {
            let got = runner
                .output
                .pop_front()
                .unwrap_or_else(|| panic!("{at}: expected {expected:?}, server sent nothing"));
            let matches = match expected.strip_suffix('*') {
                Some(prefix) => got.starts_with(prefix),
                None => got == expected,
            };
            assert!(matches, "{at}: expected {expected:?}, got {got:?}");
        } else if let Some(event) = line.strip_prefix("= ") {
            match event.trim() {
                "closed" => assert!(runner.session.is_closed(), "{at}: session still open"),
                "tls" => {
                    let action = runner.session.tls_established(TlsInfo {
                        protocol: "TLSv1.3".into(),
                        cipher: "TLS13_AES_128_GCM_SHA256".into(),
                    });
                    runner.act(action);
                }
                "timeout" => {
                    let action = runner.session.timeout();
                    runner.act(action);
                }
                "shutdown" => {
                    let action = runner.session.shutdown();
                    runner.act(action);
                }
                other => panic!("{at}: unknown event {other:?}"),
            }
        } else if !(line.trim().is_empty() || line.starts_with('#')) {
            panic!("{at}: cannot read {line:?}");
        }
    }
    assert!(
        runner.output.is_empty(),
        "{name}: unexpected server output {:?}",
        runner.output
    );
}

macro_rules! dialog_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_dialog(
                    stringify!($name),
                    include_str!(concat!("dialogs/", stringify!($name), ".dialog")),
                );
            }
        )*
    };
}

dialog_tests!(
    basic_transaction,
    ehlo_keywords,
    helo_and_params,
    sequence_errors,
    syntax_errors,
    pipelined_group,
    recipients,
    recipient_limit,
    size_limit,
    bare_newline_rejected,
    bare_newline_normalized,
    smuggling_lookalikes,
    starttls,
    bad_command_limit,
    line_too_long,
    timeouts_and_shutdown,
    mail_loop,
    smtputf8,
    misc_commands,
    auth,
);

#[test]
fn message_has_received_header_then_data_byte_for_byte() {
    let mut runner = Runner::new(SessionConfig::with_host_name("mx.test"), false);
    runner.input(
        b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n",
    );
    let body = b"Subject: t\r\n\r\n..leading dot\r\nlong line x\x80\xff\r\n";
    let mut wire = body.to_vec();
    wire.extend_from_slice(b".\r\n");
    runner.input(&wire);
    let message = &runner.delivered[0];
    let text = String::from_utf8_lossy(message);
    assert!(text.starts_with("Received: from client.example ([192.0.2.1])\r\n\tby mx.test (Postern) with ESMTP id TESTCONN.1\r\n\tfor <u@example.com>; "), "{text}");
    let body_start = message
        .windows(12)
        .position(|w| w == b"Subject: t\r\n")
        .unwrap();
    assert_eq!(
        &message[body_start..],
        b"Subject: t\r\n\r\n.leading dot\r\nlong line x\x80\xff\r\n"
    );
}

#[test]
fn transaction_record_is_kept_for_the_log() {
    let mut runner = Runner::new(SessionConfig::with_host_name("mx.test"), false);
    runner.input(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nRCPT TO:<v@example.com>\r\nDATA\r\nhello\r\n.\r\n");
    let record = runner.session.take_finished().unwrap();
    assert_eq!(record.envelope.recipients.len(), 2);
    assert_eq!(record.size, 10);
    assert_eq!(record.reply.code(), 250);
    assert!(runner.session.take_finished().is_none());
}
