//! The private Postfix backend ([`Postfix`]) behaves as relay-in's tests rely on: it advertises
//! and honours XCLIENT from loopback, logs the client XCLIENT named, stores accepted mail where
//! the test can read it, and refuses everything else. Instances can share a port on two loopback
//! addresses, as relay-out's tests need of MX hosts, but never share an address.
//!
//! Needs root and the packages of `.ci/install-test-deps`. Run sealed to prove nothing leaves
//! loopback:
//! `unshare -n -- bash -c 'ip link set lo up && cargo test -p postern-tests --test e2e postfix_harness::'`

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use postern_tests::postfix::{Postfix, PostfixOptions};

const WAIT: Duration = Duration::from_secs(10);

/// Just enough of an SMTP client to drive the backend by hand and see its exact replies.
struct Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Session {
    /// Connects and reads the banner.
    fn open(postfix: &Postfix) -> Session {
        let stream = TcpStream::connect(postfix.addr()).expect("connect to the backend");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let writer = stream.try_clone().expect("clone the stream");
        let mut session = Session {
            reader: BufReader::new(stream),
            writer,
        };
        let banner = session.reply();
        assert!(banner[0].starts_with("220 "), "banner {banner:?}");
        session
    }

    /// Reads one reply, all its lines.
    fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("read a reply line");
            assert!(read > 0, "connection closed after {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Sends one command line and returns its reply.
    fn command(&mut self, line: &str) -> Vec<String> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send a command");
        self.reply()
    }

    /// Sends a command and checks the reply's code.
    fn expect(&mut self, line: &str, code: &str) -> Vec<String> {
        let reply = self.command(line);
        assert!(
            reply[0].starts_with(code),
            "{line:?} answered {reply:?}, wanted {code}"
        );
        reply
    }

    /// XCLIENT as relay-in will send it, then EHLO again as the original client.
    fn xclient(&mut self, attributes: &str, helo: &str) {
        let ehlo = self.expect("EHLO relay-in.test", "250");
        assert!(
            ehlo.iter()
                .any(|line| line[4..].starts_with("XCLIENT ") && line.contains(" ADDR")),
            "XCLIENT not advertised: {ehlo:?}"
        );
        self.expect(&format!("XCLIENT {attributes}"), "220");
        self.expect(&format!("EHLO {helo}"), "250");
    }

    /// One complete transaction; returns the reply to the final dot.
    fn send(&mut self, from: &str, to: &str, message: &str) -> Vec<String> {
        self.expect(&format!("MAIL FROM:<{from}>"), "250");
        self.expect(&format!("RCPT TO:<{to}>"), "250");
        self.expect("DATA", "354");
        self.writer
            .write_all(message.as_bytes())
            .expect("send the message");
        self.expect(".", "250")
    }
}

fn message(subject: &str) -> String {
    format!(
        "From: <alice@sender.example>\r\nTo: <user@example.com>\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    )
}

fn backend() -> Postfix {
    Postfix::start(PostfixOptions::xclient_backend(&["example.com"])).expect("Postfix starts")
}

#[test]
fn xclient_ipv4_client_is_logged_and_the_message_stored() {
    let postfix = backend();
    let mut session = Session::open(&postfix);
    session.xclient(
        "NAME=mail.sender.example ADDR=192.0.2.55 HELO=mail.sender.example",
        "mail.sender.example",
    );
    session.send("alice@sender.example", "user@example.com", &message("v4"));
    session.expect("QUIT", "221");

    postfix
        .wait_for_log("client=mail.sender.example[192.0.2.55]", WAIT)
        .expect("the XCLIENT client in the smtpd log");
    let delivered = postfix
        .wait_for_delivered(1, WAIT)
        .expect("the message is stored");
    assert_eq!(delivered.len(), 1);
    let stored = &delivered[0];
    assert_eq!(
        stored.envelope_sender().as_deref(),
        Some("alice@sender.example")
    );
    assert_eq!(
        stored.envelope_recipient().as_deref(),
        Some("user@example.com")
    );
    assert!(
        stored.header("Received").is_some_and(|received| received
            .starts_with("from mail.sender.example (mail.sender.example [192.0.2.55])")),
        "Received names the XCLIENT client: {}",
        stored.text()
    );
    assert_eq!(
        stored.as_sent(),
        message("v4").replace("\r\n", "\n").as_bytes()
    );
}

#[test]
fn xclient_ipv6_client_is_logged() {
    let postfix = backend();
    let mut session = Session::open(&postfix);
    session.xclient(
        "NAME=mail6.sender.example ADDR=IPV6:2001:db8::1",
        "mail6.sender.example",
    );
    session.send("alice@sender.example", "user@example.com", &message("v6"));

    postfix
        .wait_for_log("client=mail6.sender.example[2001:db8::1]", WAIT)
        .expect("the IPv6 XCLIENT client in the smtpd log");
    let delivered = postfix
        .wait_for_delivered(1, WAIT)
        .expect("the message is stored");
    assert_eq!(delivered[0].header("Subject").as_deref(), Some("v6"));
}

#[test]
fn ipv6_address_without_prefix_is_refused_as_postfix_does() {
    let postfix = backend();
    let mut session = Session::open(&postfix);
    session.expect("EHLO relay-in.test", "250");
    let reply = session.expect("XCLIENT ADDR=2001:db8::1", "501");
    assert!(reply[0].contains("Bad ADDR syntax"), "{reply:?}");
}

#[test]
fn other_domains_are_refused_even_from_loopback() {
    let postfix = backend();
    let mut session = Session::open(&postfix);
    session.expect("EHLO relay-in.test", "250");
    session.expect("MAIL FROM:<alice@sender.example>", "250");
    let reply = session.expect("RCPT TO:<user@elsewhere.example>", "554");
    assert!(reply[0].contains("Relay access denied"), "{reply:?}");
}

#[test]
fn xclient_is_refused_when_no_host_is_authorized() {
    let options = PostfixOptions {
        xclient_hosts: String::new(),
        ..PostfixOptions::xclient_backend(&["example.com"])
    };
    let postfix = Postfix::start(options).expect("Postfix starts");
    let mut session = Session::open(&postfix);
    let ehlo = session.expect("EHLO relay-in.test", "250");
    assert!(
        !ehlo.iter().any(|line| line.contains("XCLIENT")),
        "{ehlo:?}"
    );
    session.expect("XCLIENT ADDR=192.0.2.55", "550");
}

#[test]
fn concurrent_instances_keep_their_mail_apart() {
    let first = backend();
    let second = backend();
    assert_ne!(first.addr(), second.addr());
    Session::open(&first).send("a@sender.example", "one@example.com", &message("first"));
    Session::open(&second).send("a@sender.example", "two@example.com", &message("second"));

    let first_mail = first
        .wait_for_delivered(1, WAIT)
        .expect("first stores its message");
    let second_mail = second
        .wait_for_delivered(1, WAIT)
        .expect("second stores its message");
    assert_eq!(
        first_mail[0].envelope_recipient().as_deref(),
        Some("one@example.com")
    );
    assert_eq!(
        second_mail[0].envelope_recipient().as_deref(),
        Some("two@example.com")
    );
    assert_eq!((first_mail.len(), second_mail.len()), (1, 1));
}

#[test]
fn instances_share_a_port_on_two_addresses_but_never_an_address() {
    let on = |listen: SocketAddr| PostfixOptions {
        listen: Some(listen),
        ..PostfixOptions::xclient_backend(&["example.com"])
    };
    let first = Postfix::start(on("127.0.0.2:0".parse().unwrap())).expect("Postfix starts");
    let port = first.addr().port();
    assert_eq!(first.addr(), SocketAddr::from(([127, 0, 0, 2], port)));
    let second_addr = SocketAddr::from(([127, 0, 0, 3], port));
    let second = Postfix::start(on(second_addr)).expect("a second one starts on the same port");
    assert_eq!(second.addr(), second_addr);
    Session::open(&first).send("a@sender.example", "one@example.com", &message("first"));
    Session::open(&second).send("a@sender.example", "two@example.com", &message("second"));
    for (postfix, recipient) in [(&first, "one@example.com"), (&second, "two@example.com")] {
        let stored = postfix.wait_for_delivered(1, WAIT).expect("stored");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].envelope_recipient().as_deref(), Some(recipient));
    }

    let error = Postfix::start(on(first.addr())).expect_err("an address in use is refused");
    assert!(format!("{error:#}").contains("is taken"), "{error:#}");
}

#[test]
fn swaks_can_send_through_xclient() {
    let postfix = backend();
    let output = postfix
        .swaks([
            "--to",
            "user@example.com",
            "--from",
            "bob@sender.example",
            "--helo",
            "swaks.test",
            "--xclient-addr",
            "198.51.100.7",
            "--xclient-name",
            "swaks.sender.example",
        ])
        .expect("swaks runs");
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "swaks failed:\n{transcript}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    postfix
        .wait_for_log("client=swaks.sender.example[198.51.100.7]", WAIT)
        .expect("swaks's XCLIENT client in the log");
    let delivered = postfix
        .wait_for_delivered(1, WAIT)
        .expect("the message is stored");
    assert_eq!(
        delivered[0].envelope_sender().as_deref(),
        Some("bob@sender.example")
    );
}

#[test]
fn dropping_the_instance_stops_and_reaps_it() {
    let postfix = backend();
    let dir = postfix.dir().to_path_buf();
    let pid_file = std::fs::read_to_string(dir.join("spool/pid/master.pid")).expect("master.pid");
    let master = pid_file.trim();
    assert!(
        std::path::Path::new(&format!("/proc/{master}")).exists(),
        "master {master} runs"
    );
    drop(postfix);
    // Reaped, not merely dead: a zombie would still have a /proc entry.
    assert!(
        !std::path::Path::new(&format!("/proc/{master}")).exists(),
        "master {master} left behind"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_broken_configuration_fails_loudly_with_the_log() {
    let options = PostfixOptions {
        extra_main_cf: vec![("mail_owner".into(), "no-such-user".into())],
        ..PostfixOptions::xclient_backend(&["example.com"])
    };
    let error = Postfix::start(options).expect_err("a broken main.cf must not start");
    let text = format!("{error:#}");
    assert!(
        text.contains("unknown user name value: no-such-user"),
        "{text}"
    );
    assert!(text.contains("maillog:"), "{text}");
}
