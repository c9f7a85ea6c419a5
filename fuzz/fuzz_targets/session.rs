//! A whole server session, sans IO: fuzz-chosen settings, client input
//! (well-formed commands with fuzzed arguments, raw bytes, messages) and
//! policy verdicts, driven the way `server::connection` drives a session.
//!
//! Checked: nothing panics; every reply is a valid SMTP reply (code 200-599,
//! lines of `ddd-`/`ddd ` ending in CRLF, no other control characters, at
//! most 512 octets) that our own client parser reads back unchanged; the
//! session never reports a driver bug to a correct driver; a delivered message is our `Received:` header
//! followed by exactly what an independent `DataDecoder` makes of the bytes.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use smtp_protocol::reply_parser::ReplyParser;
use smtp_protocol::data::{BareNewlinePolicy, DataDecoder, dot_stuff};
use smtp_protocol::reply::Reply;
use smtp_protocol::sasl::SaslMechanism;
use smtp_protocol::session::{
    Action, AuthVerdict, ClientInfo, ClientName, Envelope, Session, SessionConfig, TlsInfo, Verdict,
    replies,
};

/// The command line limit the server driver applies, CRLF included.
const MAX_LINE: usize = 512;
/// The most octets of one reply line (RFC 5321 §4.5.3.1.5), CRLF included.
const MAX_REPLY_LINE: usize = 512;
/// Config texts are the administrator's, not the attacker's; bounded so
/// that the fuzzer spends its time on the protocol.
const MAX_CONFIG_TEXT: usize = 100;
/// Likewise for the custom banner's line count (a banner of over 100 lines,
/// which only the administrator can configure, is more than our own client
/// parser accepts).
const MAX_GREETING_LINES: usize = 8;

#[derive(Arbitrary, Debug)]
struct Dialogue {
    settings: Settings,
    /// The policy's answers, taken in turn (and reused when they run out).
    verdicts: Vec<Choice>,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Settings {
    max_recipients: u8,
    /// In units of 16 octets, so that the size limit is reached.
    max_message_units: u8,
    max_bad_commands: u8,
    smtputf8: bool,
    normalize: bool,
    add_received: bool,
    max_received: u8,
    tls_available: bool,
    /// Bit 0 PLAIN, bit 1 LOGIN, bit 2 CRAM-MD5.
    auth_mechanisms: u8,
    client_name: Option<String>,
    greeting: Vec<String>,
    helo_message: String,
}

/// One policy answer, read as a sender, recipient, message or AUTH verdict.
#[derive(Arbitrary, Debug, Clone)]
struct Choice {
    accept: bool,
    custom: Option<(u16, String)>,
    auth: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// One command line; CRLF is added.
    Command(Command),
    /// Octets as the client sent them, in one read.
    Bytes(Vec<u8>),
    /// A message, dot-stuffed and terminated the way a client sends it.
    Message(Vec<u8>),
    Timeout,
    Shutdown,
    /// The next STARTTLS handshake fails (the connection ends there).
    FailNextHandshake,
}

#[derive(Arbitrary, Debug)]
enum Command {
    Ehlo(String),
    Helo(String),
    Mail(Address, Vec<Parameter>),
    Rcpt(Address, Vec<Parameter>),
    Data,
    Rset,
    Noop,
    Quit,
    StartTls,
    Vrfy(String),
    Help,
    Xclient(String),
    AuthPlain {
        user: User,
        password: String,
        initial: bool,
    },
    AuthLogin,
    AuthCramMd5,
    /// A SASL response line: base64 of these octets.
    SaslResponse(Vec<u8>),
    SaslCancel,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Address {
    Null,
    Postmaster,
    Mailbox { local: Local, domain: DomainChoice },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Local {
    Plain,
    Reject,
    Utf8,
    Quoted,
    Other(String),
}

/// The test policy's domains, plus anything else.
#[derive(Arbitrary, Debug)]
enum DomainChoice {
    Accepted,
    Temporary,
    Blocked,
    Literal,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Parameter {
    Size(u64),
    Body7Bit,
    Body8BitMime,
    BodyOther(String),
    SmtpUtf8,
    Auth(String),
    Other(String, Option<String>),
}

#[derive(Arbitrary, Debug)]
enum User {
    Alice,
    Temp,
    Other(String),
}

fuzz_target!(|dialogue: Dialogue| {
    Harness::new(&dialogue).run(&dialogue.steps);
});

/// The driver's side, as `server::connection` does it, with checks.
struct Harness {
    session: Session,
    config: Arc<SessionConfig>,
    verdicts: Vec<Choice>,
    next_verdict: usize,
    input: InputBuffer,
    fail_next_handshake: bool,
    /// An independent decoder fed the same DATA octets as the session.
    shadow: Option<(DataDecoder, Vec<u8>)>,
}

impl Harness {
    fn new(dialogue: &Dialogue) -> Self {
        let settings = &dialogue.settings;
        let mut config = SessionConfig::with_host_name("mx.test");
        config.greeting = settings
            .greeting
            .iter()
            .take(MAX_GREETING_LINES)
            .map(|g| bounded(g))
            .collect();
        config.helo_message = bounded(&settings.helo_message);
        config.max_message_bytes = usize::from(settings.max_message_units) * 16;
        config.max_recipients = usize::from(settings.max_recipients);
        config.max_bad_commands = u32::from(settings.max_bad_commands % 20);
        config.smtputf8 = settings.smtputf8;
        config.bare_newline = if settings.normalize {
            BareNewlinePolicy::Normalize
        } else {
            BareNewlinePolicy::Reject
        };
        config.add_received = settings.add_received;
        config.max_received = usize::from(settings.max_received);
        let config = Arc::new(config);

        let client = ClientInfo {
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000),
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 25),
            // A PTR name is chosen by whoever owns the client's address.
            name: match &settings.client_name {
                Some(name) => ClientName::Verified(name.clone()),
                None => ClientName::Unavailable,
            },
            proxy: None,
        };
        let mut session = Session::new(Arc::clone(&config), client, "FUZZCONN".into());
        session.set_tls_available(settings.tls_available);
        let mechanisms = [
            SaslMechanism::Plain,
            SaslMechanism::Login,
            SaslMechanism::CramMd5,
        ];
        session.set_auth_mechanisms(
            mechanisms
                .into_iter()
                .enumerate()
                .filter(|(bit, _)| settings.auth_mechanisms & (1 << bit) != 0)
                .map(|(_, mechanism)| mechanism)
                .collect(),
        );
        Self {
            session,
            config,
            verdicts: dialogue.verdicts.clone(),
            next_verdict: 0,
            input: InputBuffer::default(),
            fail_next_handshake: false,
            shadow: None,
        }
    }

    fn run(mut self, steps: &[Step]) {
        let action = self.session.greet();
        if !self.act(action) {
            return;
        }
        for step in steps {
            let keep_going = match step {
                Step::Command(command) => {
                    let mut line = command.render();
                    line.extend_from_slice(b"\r\n");
                    self.receive(&line)
                }
                Step::Bytes(bytes) => self.receive(bytes),
                Step::Message(message) => {
                    let mut wire = Vec::new();
                    dot_stuff(message, &mut wire);
                    self.receive(&wire)
                }
                Step::Timeout => {
                    let action = self.session.timeout();
                    self.act(action)
                }
                Step::Shutdown => {
                    let action = self.session.shutdown();
                    self.act(action)
                }
                Step::FailNextHandshake => {
                    self.fail_next_handshake = true;
                    true
                }
            };
            if !keep_going {
                return;
            }
        }
    }

    /// One read from the client, processed as far as it goes. False once the
    /// connection is over.
    fn receive(&mut self, bytes: &[u8]) -> bool {
        self.input.data.extend_from_slice(bytes);
        loop {
            let action = if self.session.is_receiving_data() {
                if self.input.data.is_empty() {
                    return true;
                }
                let available = std::mem::take(&mut self.input.data);
                let (consumed, action) = self.session.data(&available);
                assert!(consumed <= available.len());
                self.shadow_feed(&available, consumed);
                self.input.data = available[consumed..].to_vec();
                action
            } else {
                match self.input.next_line(MAX_LINE) {
                    Line::Complete(line) => self.session.command_line(&line),
                    Line::TooLong => self.session.line_too_long(),
                    Line::Incomplete => return true,
                }
            };
            if !self.act(action) {
                return false;
            }
        }
    }

    /// Carries out `action` and what follows from it. False once the
    /// connection is over.
    fn act(&mut self, mut action: Action) -> bool {
        let open = loop {
            action = match action {
                Action::Continue | Action::Reset => break true,
                Action::ReceiveData => {
                    assert!(self.session.is_receiving_data());
                    self.shadow = Some((
                        DataDecoder::new(self.config.max_message_bytes, self.config.bare_newline),
                        Vec::new(),
                    ));
                    break true;
                }
                Action::CheckSender(check) => {
                    let verdict = self.verdict();
                    self.session.sender_verdict(*check, verdict)
                }
                Action::CheckRecipient(check) => {
                    assert!(check.envelope().recipients.len() < self.config.max_recipients);
                    let verdict = self.verdict();
                    self.session.recipient_verdict(check, verdict)
                }
                Action::StampReceived => {
                    assert!(self.config.add_received);
                    self.session.stamp_received("Thu, 1 Jan 2026 12:00:00 +0000")
                }
                Action::DeliverMessage(mut delivery) => {
                    let message = delivery.take_message();
                    self.check_message(delivery.envelope(), &message);
                    let verdict = self.verdict();
                    self.session.message_verdict(delivery, verdict)
                }
                Action::IssueChallenge => self.session.issue_challenge("FUZZNONCE"),
                Action::Authenticate(check) => {
                    let verdict = match self.choice().auth % 3 {
                        0 => AuthVerdict::Accepted,
                        1 => AuthVerdict::Rejected,
                        _ => AuthVerdict::TemporaryFailure,
                    };
                    self.session.auth_verdict(*check, verdict)
                }
                Action::StartTls => {
                    self.check_replies();
                    // CVE-2011-0411: clear-text input after STARTTLS is dropped.
                    self.input = InputBuffer::default();
                    if std::mem::take(&mut self.fail_next_handshake) {
                        return false;
                    }
                    self.session.tls_established(TlsInfo {
                        protocol: "TLSv1.3".into(),
                        cipher: "TLS13_AES_128_GCM_SHA256".into(),
                    })
                }
                Action::Close => {
                    assert!(self.session.is_closed());
                    break false;
                }
            };
        };
        let _ = self.session.take_finished();
        assert!(!self.session.take_out_of_sequence(), "driver bug reported");
        self.check_replies();
        open
    }

    fn choice(&mut self) -> Choice {
        let choice = match self.verdicts.len() {
            0 => None,
            len => self.verdicts.get(self.next_verdict % len).cloned(),
        };
        self.next_verdict += 1;
        choice.unwrap_or(Choice {
            accept: true,
            custom: None,
            auth: 0,
        })
    }

    fn verdict(&mut self) -> Verdict {
        let choice = self.choice();
        match (choice.accept, choice.custom) {
            (true, None) => Verdict::accept(),
            (true, Some((code, text))) => {
                Verdict::Accept(Some(Reply::new(200 + code % 100, None, text)))
            }
            (false, None) => Verdict::Reject(Reply::new(550, None, "no")),
            (false, Some((code, text))) => {
                Verdict::Reject(Reply::new(400 + code % 200, None, text))
            }
        }
    }

    fn shadow_feed(&mut self, available: &[u8], consumed: usize) {
        let Some((decoder, output)) = &mut self.shadow else {
            panic!("DATA octets before ReceiveData");
        };
        let (shadow_consumed, outcome) = decoder.feed(available, output);
        assert_eq!(shadow_consumed, consumed, "session and decoder disagree");
        if outcome.is_some() {
            assert!(!self.session.is_receiving_data());
        }
    }

    /// Our own header (if configured), then exactly the decoded DATA.
    fn check_message(&mut self, envelope: &Envelope, message: &[u8]) {
        let (_, decoded) = self.shadow.take().expect("a message without DATA");
        assert!(!envelope.recipients.is_empty());
        assert!(envelope.recipients.len() <= self.config.max_recipients);
        assert!(
            message.ends_with(&decoded),
            "message does not end with the decoded DATA"
        );
        let header = &message[..message.len() - decoded.len()];
        if !self.config.add_received {
            assert!(header.is_empty());
            return;
        }
        assert!(header.starts_with(b"Received: from "), "{header:?}");
        let text = std::str::from_utf8(header).expect("header is UTF-8");
        let lines = text
            .strip_suffix("\r\n")
            .expect("header ends with CRLF")
            .split("\r\n");
        for (index, line) in lines.enumerate() {
            assert!(index == 0 || line.starts_with('\t'), "{line:?}");
            assert!(
                !line.chars().skip(1).any(char::is_control),
                "control character in header line {line:?}"
            );
        }
    }

    fn check_replies(&mut self) {
        for reply in self.session.take_replies() {
            check_reply(&reply);
        }
    }
}

fn check_reply(reply: &Reply) {
    assert!((200..600).contains(&reply.code()), "{reply:?}");
    assert_ne!(*reply, replies::local_error(), "driver bug reported");
    if let Some(enhanced) = reply.enhanced() {
        assert_eq!(u16::from(enhanced.class), reply.code() / 100, "{reply:?}");
    }
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    let text = String::from_utf8(wire.clone()).expect("reply is UTF-8");
    let lines: Vec<&str> = text
        .strip_suffix("\r\n")
        .expect("reply ends with CRLF")
        .split("\r\n")
        .collect();
    let code = reply.code().to_string();
    for (index, line) in lines.iter().enumerate() {
        assert!(line.len() + 2 <= MAX_REPLY_LINE, "{line:?}");
        assert!(line.starts_with(&code), "{line:?}");
        let separator = if index + 1 == lines.len() { ' ' } else { '-' };
        let rest = &line[3..];
        assert!(
            rest.is_empty() && separator == ' ' || rest.starts_with(separator),
            "{line:?}"
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    let mut parser = ReplyParser::new();
    parser.push(&wire);
    assert_eq!(parser.next_reply(), Ok(Some(reply.clone())), "{text:?}");
    assert!(!parser.has_buffered_input());
}

fn bounded(text: &str) -> String {
    text.chars().take(MAX_CONFIG_TEXT).collect()
}

impl Command {
    fn render(&self) -> Vec<u8> {
        let text = match self {
            Command::Ehlo(name) => format!("EHLO {name}"),
            Command::Helo(name) => format!("HELO {name}"),
            Command::Mail(address, params) => {
                format!("MAIL FROM:{}{}", address.render(), render_params(params))
            }
            Command::Rcpt(address, params) => {
                format!("RCPT TO:{}{}", address.render(), render_params(params))
            }
            Command::Data => "DATA".into(),
            Command::Rset => "RSET".into(),
            Command::Noop => "NOOP".into(),
            Command::Quit => "QUIT".into(),
            Command::StartTls => "STARTTLS".into(),
            Command::Vrfy(text) => format!("VRFY {text}"),
            Command::Help => "HELP".into(),
            Command::Xclient(text) => format!("XCLIENT {text}"),
            Command::AuthPlain {
                user,
                password,
                initial,
            } => {
                let user = match user {
                    User::Alice => "alice",
                    User::Temp => "temp",
                    User::Other(name) => name,
                };
                let response = BASE64.encode(format!("\0{user}\0{password}"));
                if *initial {
                    format!("AUTH PLAIN {response}")
                } else {
                    // The response then comes as the next line.
                    format!("AUTH PLAIN\r\n{response}")
                }
            }
            Command::AuthLogin => "AUTH LOGIN".into(),
            Command::AuthCramMd5 => "AUTH CRAM-MD5".into(),
            Command::SaslResponse(octets) => BASE64.encode(octets),
            Command::SaslCancel => "*".into(),
            Command::Raw(bytes) => return bytes.clone(),
        };
        text.into_bytes()
    }
}

impl Address {
    fn render(&self) -> String {
        match self {
            Address::Null => "<>".into(),
            Address::Postmaster => "<postmaster>".into(),
            Address::Mailbox { local, domain } => {
                let local = match local {
                    Local::Plain => "user",
                    Local::Reject => "reject",
                    Local::Utf8 => "用户",
                    Local::Quoted => "\"a b\\\"c\"",
                    Local::Other(text) => text,
                };
                let domain = match domain {
                    DomainChoice::Accepted => "example.com",
                    DomainChoice::Temporary => "temp.example",
                    DomainChoice::Blocked => "blocked.example",
                    DomainChoice::Literal => "[192.0.2.7]",
                    DomainChoice::Other(text) => text,
                };
                format!("<{local}@{domain}>")
            }
            Address::Raw(text) => text.clone(),
        }
    }
}

fn render_params(params: &[Parameter]) -> String {
    params
        .iter()
        .map(|param| match param {
            Parameter::Size(size) => format!(" SIZE={size}"),
            Parameter::Body7Bit => " BODY=7BIT".into(),
            Parameter::Body8BitMime => " BODY=8BITMIME".into(),
            Parameter::BodyOther(value) => format!(" BODY={value}"),
            Parameter::SmtpUtf8 => " SMTPUTF8".into(),
            Parameter::Auth(value) => format!(" AUTH={value}"),
            Parameter::Other(keyword, None) => format!(" {keyword}"),
            Parameter::Other(keyword, Some(value)) => format!(" {keyword}={value}"),
        })
        .collect()
}

/// The server driver's line splitting (`server::input`, crate-private):
/// lines end at LF (CR before it dropped); a line over the limit is refused
/// once, whole, however many reads it spans.
#[derive(Default)]
struct InputBuffer {
    data: Vec<u8>,
    discarding: bool,
}

enum Line {
    Complete(Vec<u8>),
    TooLong,
    Incomplete,
}

impl InputBuffer {
    fn next_line(&mut self, max_len: usize) -> Line {
        match self.data.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let line: Vec<u8> = self.data.drain(..=lf).collect();
                if std::mem::take(&mut self.discarding) || lf + 1 > max_len {
                    return Line::TooLong;
                }
                let line = &line[..lf];
                Line::Complete(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
            }
            None => {
                if self.discarding || self.data.len() >= max_len {
                    self.discarding = true;
                    self.data.clear();
                }
                Line::Incomplete
            }
        }
    }
}
