//! The sink's protocol, sans-IO: what to answer to each command line.

use super::Counters;
use std::sync::atomic::Ordering;

/// The XCLIENT attributes the sink advertises: Postfix's full list, so
/// relay-in sends what it would send to a real backend.
const XCLIENT_ATTRIBUTES: &str = "NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT";

/// What the sink offers; fixed for its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    /// Advertise XCLIENT and accept it (relay-in's default
    /// `xclient=required` needs this).
    pub xclient: bool,
    /// Advertise STARTTLS (the driver has a certificate).
    pub starttls: bool,
}

/// What the driver does after a command's reply is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Command,
    /// The message data follows (after `354`).
    Data,
    /// Send the replies, then the TLS handshake.
    StartTls,
    /// Send the replies, then close.
    Close,
}

/// One sink connection's protocol state.
///
/// It exists so the sink accepts what the programs under test send with
/// the least work: no parsing beyond the verb, no per-message allocation,
/// every reply appended to one output buffer so pipelined commands get
/// their replies in one write.
#[derive(Debug)]
pub struct SinkSession {
    offers: Offers,
    tls_active: bool,
}

impl SinkSession {
    pub fn new(offers: Offers) -> Self {
        SinkSession {
            offers,
            tls_active: false,
        }
    }

    /// The banner, also the reply to XCLIENT (as Postfix does).
    pub fn greeting(out: &mut Vec<u8>) {
        out.extend_from_slice(b"220 sink.bench.test ESMTP postern-bench sink\r\n");
    }

    /// The TLS handshake succeeded: STARTTLS is no longer offered.
    pub fn tls_established(&mut self) {
        self.tls_active = true;
    }

    /// Answers one command line (without its line ending).
    pub fn command(&mut self, line: &[u8], counters: &Counters, out: &mut Vec<u8>) -> Next {
        let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let verb = &line[..verb_len];
        let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
        if is(b"EHLO") {
            out.extend_from_slice(
                b"250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 0\r\n",
            );
            if self.offers.xclient {
                out.extend_from_slice(format!("250-XCLIENT {XCLIENT_ATTRIBUTES}\r\n").as_bytes());
            }
            if self.offers.starttls && !self.tls_active {
                out.extend_from_slice(b"250-STARTTLS\r\n");
            }
            out.extend_from_slice(b"250 ENHANCEDSTATUSCODES\r\n");
        } else if is(b"HELO") {
            out.extend_from_slice(b"250 sink.bench.test\r\n");
        } else if is(b"MAIL") {
            out.extend_from_slice(b"250 2.1.0 Ok\r\n");
        } else if is(b"RCPT") {
            out.extend_from_slice(b"250 2.1.5 Ok\r\n");
        } else if is(b"DATA") {
            out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
            return Next::Data;
        } else if is(b"XCLIENT") && self.offers.xclient {
            Self::greeting(out);
        } else if is(b"STARTTLS") && self.offers.starttls && !self.tls_active {
            out.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
            return Next::StartTls;
        } else if is(b"RSET") || is(b"NOOP") {
            out.extend_from_slice(b"250 2.0.0 Ok\r\n");
        } else if is(b"QUIT") {
            out.extend_from_slice(b"221 2.0.0 Bye\r\n");
            return Next::Close;
        } else if is(b"XSTAT") {
            let stats = counters.snapshot();
            out.extend_from_slice(
                format!(
                    "250 messages={} bytes={} connections={}\r\n",
                    stats.messages, stats.bytes, stats.connections
                )
                .as_bytes(),
            );
        } else {
            out.extend_from_slice(b"502 5.5.2 Command not recognized\r\n");
        }
        Next::Command
    }

    /// A message ended after `octets` of data (end marker included).
    pub fn message_received(octets: usize, counters: &Counters, out: &mut Vec<u8>) {
        counters.messages.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(octets as u64, Ordering::Relaxed);
        out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(offers: Offers, lines: &[&str]) -> (String, Vec<Next>) {
        let counters = Counters::default();
        let mut session = SinkSession::new(offers);
        let mut out = Vec::new();
        let nexts = lines
            .iter()
            .map(|line| session.command(line.as_bytes(), &counters, &mut out))
            .collect();
        (String::from_utf8(out).unwrap(), nexts)
    }

    #[test]
    fn answers_a_pipelined_transaction() {
        let (out, nexts) = run(
            Offers::default(),
            &["EHLO c", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"],
        );
        assert!(out.starts_with("250-sink.bench.test\r\n250-PIPELINING\r\n"));
        assert!(!out.contains("XCLIENT") && !out.contains("STARTTLS"));
        assert!(
            out.ends_with(
                "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            )
        );
        assert_eq!(nexts.last(), Some(&Next::Data));
    }

    #[test]
    fn xclient_and_starttls_only_when_offered() {
        let offers = Offers {
            xclient: true,
            starttls: true,
        };
        let (out, nexts) = run(offers, &["EHLO c", "XCLIENT ADDR=1.2.3.4", "STARTTLS"]);
        assert!(out.contains("250-XCLIENT NAME ADDR") && out.contains("250-STARTTLS\r\n"));
        assert!(out.contains("\r\n220 sink.bench.test ESMTP"));
        assert_eq!(nexts, [Next::Command, Next::Command, Next::StartTls]);
        let (out, nexts) = run(
            Offers::default(),
            &["XCLIENT ADDR=1.2.3.4", "STARTTLS", "quit"],
        );
        assert_eq!(
            out,
            "502 5.5.2 Command not recognized\r\n502 5.5.2 Command not recognized\r\n221 2.0.0 Bye\r\n"
        );
        assert_eq!(nexts[2], Next::Close);
    }

    #[test]
    fn counts_messages_and_reports_them() {
        let counters = Counters::default();
        let mut out = Vec::new();
        SinkSession::message_received(100, &counters, &mut out);
        SinkSession::message_received(50, &counters, &mut out);
        let mut session = SinkSession::new(Offers::default());
        session.command(b"XSTAT", &counters, &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("250 messages=2 bytes=150 connections=0\r\n")
        );
    }

    #[test]
    fn no_starttls_after_tls() {
        let counters = Counters::default();
        let mut session = SinkSession::new(Offers {
            xclient: false,
            starttls: true,
        });
        session.tls_established();
        let mut out = Vec::new();
        assert_eq!(
            session.command(b"STARTTLS", &counters, &mut out),
            Next::Command
        );
        session.command(b"EHLO x", &counters, &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("250-STARTTLS"));
    }
}
