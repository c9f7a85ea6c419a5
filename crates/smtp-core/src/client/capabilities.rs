//! What a server said it supports in its EHLO reply (RFC 5321 §4.1.1.1).

use smtp_protocol::reply::Reply;

use super::xclient::XclientAttribute;

/// The extensions a server advertised, parsed once after each EHLO.
///
/// It exists so that every later decision (pipeline or not, add `SIZE=`,
/// STARTTLS, which AUTH mechanism, which XCLIENT attributes) reads one typed
/// value instead of re-scanning reply text. Keywords are matched without
/// regard to case; unknown ones are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// False after a HELO fallback: no extension may be used at all.
    pub esmtp: bool,
    /// The name the server gave in the first line of its EHLO/HELO reply.
    pub server_name: String,
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: `Some(limit)` when advertised; `Some(0)` means no fixed limit
    /// (a bare `SIZE`, `SIZE 0`, or a limit we could not read).
    pub size: Option<u64>,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// RFC 3461.
    pub dsn: bool,
    /// RFC 3030.
    pub chunking: bool,
    /// RFC 8689.
    pub requiretls: bool,
    /// RFC 4954 mechanisms, upper case, in the order offered, without
    /// duplicates; from `AUTH ...` and the pre-standard `AUTH=...` lines alike.
    pub auth: Vec<String>,
    /// Postfix XCLIENT: `Some` with the attributes we know among those listed
    /// when the keyword is present.
    pub xclient: Option<Vec<XclientAttribute>>,
}

impl Capabilities {
    /// Reads a positive EHLO reply.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut lines = reply.lines();
        let mut capabilities = Capabilities {
            esmtp: true,
            server_name: server_name(lines.next()),
            ..Capabilities::default()
        };
        for line in lines {
            capabilities.add_extension(line);
        }
        capabilities
    }

    /// Reads a positive HELO reply: no extensions.
    pub fn from_helo(reply: &Reply) -> Self {
        Capabilities {
            server_name: server_name(reply.lines().next()),
            ..Capabilities::default()
        }
    }

    /// Whether the server offers this SASL mechanism (any case).
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }

    /// Whether the server takes this XCLIENT attribute.
    pub fn offers_xclient(&self, attribute: XclientAttribute) -> bool {
        self.xclient
            .as_ref()
            .is_some_and(|attributes| attributes.contains(&attribute))
    }

    fn add_extension(&mut self, line: &str) {
        let mut words = line.split_ascii_whitespace();
        let Some(keyword) = words.next() else {
            return;
        };
        // `AUTH=LOGIN PLAIN`: the form some old clients needed, still sent by
        // servers that want to serve them too.
        if let Some((head, first)) = keyword.split_once('=') {
            if head.eq_ignore_ascii_case("AUTH") {
                self.add_auth(std::iter::once(first).chain(words));
            }
            return;
        }
        // Matched in place: an upper-cased copy of each keyword was an
        // allocation per EHLO line, and relay-in reads an EHLO reply per
        // message with a connection per message (BENCHMARKS.md, issue 19).
        let is = |name: &str| keyword.eq_ignore_ascii_case(name);
        if is("PIPELINING") {
            self.pipelining = true;
        } else if is("SIZE") {
            let limit = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            self.size = Some(limit);
        } else if is("STARTTLS") {
            self.starttls = true;
        } else if is("8BITMIME") {
            self.eight_bit_mime = true;
        } else if is("SMTPUTF8") {
            self.smtputf8 = true;
        } else if is("ENHANCEDSTATUSCODES") {
            self.enhanced_status_codes = true;
        } else if is("DSN") {
            self.dsn = true;
        } else if is("CHUNKING") {
            self.chunking = true;
        } else if is("REQUIRETLS") {
            self.requiretls = true;
        } else if is("AUTH") {
            self.add_auth(words);
        } else if is("XCLIENT") {
            let attributes = self.xclient.get_or_insert_with(Vec::new);
            for attribute in words.filter_map(XclientAttribute::parse) {
                if !attributes.contains(&attribute) {
                    attributes.push(attribute);
                }
            }
        }
    }

    fn add_auth<'a>(&mut self, mechanisms: impl Iterator<Item = &'a str>) {
        for mechanism in mechanisms.filter(|m| !m.is_empty()) {
            if !self.offers_auth(mechanism) {
                self.auth.push(mechanism.to_ascii_uppercase());
            }
        }
    }
}

fn server_name(first_line: Option<&str>) -> String {
    first_line
        .and_then(|line| line.split_ascii_whitespace().next())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_protocol::reply_parser::ReplyParser;

    fn parse_reply(wire: &str) -> Reply {
        let mut parser = ReplyParser::new();
        parser.push(wire.as_bytes());
        parser.next_reply().unwrap().unwrap()
    }

    #[test]
    fn real_postfix_ehlo() {
        let reply = parse_reply(
            "250-mail.example.org\r\n\
             250-PIPELINING\r\n\
             250-SIZE 104857600\r\n\
             250-ETRN\r\n\
             250-STARTTLS\r\n\
             250-AUTH PLAIN LOGIN\r\n\
             250-AUTH=PLAIN LOGIN\r\n\
             250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n\
             250-ENHANCEDSTATUSCODES\r\n\
             250-8BITMIME\r\n\
             250-DSN\r\n\
             250-SMTPUTF8\r\n\
             250-REQUIRETLS\r\n\
             250 CHUNKING\r\n",
        );
        let capabilities = Capabilities::from_ehlo(&reply);
        use XclientAttribute::*;
        assert_eq!(
            capabilities,
            Capabilities {
                esmtp: true,
                server_name: "mail.example.org".into(),
                pipelining: true,
                size: Some(104_857_600),
                starttls: true,
                eight_bit_mime: true,
                smtputf8: true,
                enhanced_status_codes: true,
                dsn: true,
                chunking: true,
                requiretls: true,
                auth: vec!["PLAIN".into(), "LOGIN".into()],
                xclient: Some(vec![
                    Name,
                    Addr,
                    Proto,
                    Helo,
                    ReverseName,
                    Port,
                    Login,
                    DestAddr,
                    DestPort
                ]),
            }
        );
        assert!(capabilities.offers_auth("plain"));
        assert!(!capabilities.offers_auth("CRAM-MD5"));
        assert!(capabilities.offers_xclient(DestPort));
    }

    #[test]
    fn extension_variants() {
        type Check = fn(&Capabilities) -> bool;
        let cases: &[(&str, Check)] = &[
            ("250-x\r\n250 size\r\n", |c| c.size == Some(0)),
            ("250-x\r\n250 SIZE 0\r\n", |c| c.size == Some(0)),
            ("250-x\r\n250 SIZE junk\r\n", |c| c.size == Some(0)),
            ("250-x\r\n250 SIZE 1000\r\n", |c| c.size == Some(1000)),
            ("250 x\r\n", |c| c.size.is_none() && c.xclient.is_none()),
            ("250-x\r\n250 auth=login\r\n", |c| c.auth == ["LOGIN"]),
            ("250-x\r\n250 AUTH=\r\n", |c| c.auth.is_empty()),
            ("250-x\r\n250 AUTH\r\n", |c| c.auth.is_empty()),
            ("250-x\r\n250 pipelining\r\n", |c| c.pipelining),
            ("250-x\r\n250 XCLIENT\r\n", |c| {
                c.xclient.as_deref() == Some(&[])
            }),
            ("250-x\r\n250 XCLIENT addr FOO NAME\r\n", |c| {
                c.xclient.as_deref() == Some(&[XclientAttribute::Addr, XclientAttribute::Name])
            }),
            ("250-x\r\n250-AUTH LOGIN\r\n250 AUTH=LOGIN PLAIN\r\n", |c| {
                c.auth == ["LOGIN", "PLAIN"]
            }),
            ("250-x\r\n250 STARTTLSX\r\n", |c| !c.starttls),
            ("250-x\r\n250 \r\n", |c| {
                *c == Capabilities::from_ehlo(&parse_reply("250 x\r\n"))
            }),
        ];
        for (wire, check) in cases {
            let capabilities = Capabilities::from_ehlo(&parse_reply(wire));
            assert!(check(&capabilities), "{wire:?}: {capabilities:?}");
        }
    }

    #[test]
    fn helo_reply_has_no_extensions() {
        let capabilities = Capabilities::from_helo(&parse_reply("250 old.example\r\n"));
        assert!(!capabilities.esmtp);
        assert_eq!(capabilities.server_name, "old.example");
        assert!(!capabilities.pipelining && capabilities.auth.is_empty());
    }
}
