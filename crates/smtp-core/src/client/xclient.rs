//! Building Postfix XCLIENT commands (XCLIENT_README; peers-and-specs §1), sans-IO.
//!
//! relay-in forwards accepted mail to the backend Postfix; XCLIENT makes that
//! Postfix apply its restrictions, milters and `Received:` header to the
//! original client instead of to relay-in.

use std::net::IpAddr;

use smtp_protocol::ip_text::IpText;
use smtp_protocol::session::ClientName;
use smtp_protocol::session::HeloVerb;
use smtp_protocol::xtext;

/// Postfix's limit for a whole XCLIENT command line, CRLF included
/// (XCLIENT_README, note 1).
pub const MAX_XCLIENT_LINE: usize = 512;

/// Postfix answers `501 attribute value too long` above this many octets of
/// (encoded) value.
const MAX_VALUE_LEN: usize = 255;

const UNAVAILABLE: &str = "[UNAVAILABLE]";
const TEMPORARILY_UNAVAILABLE: &str = "[TEMPUNAVAIL]";

/// An XCLIENT attribute name. It exists because Postfix refuses a whole
/// command (501) for one attribute it does not know, so we may only send the
/// ones listed in its EHLO reply, and need them as comparable values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XclientAttribute {
    Name,
    ReverseName,
    Addr,
    Port,
    Proto,
    Helo,
    Login,
    DestAddr,
    DestPort,
}

impl XclientAttribute {
    /// The name as written in the command.
    pub fn keyword(self) -> &'static str {
        match self {
            XclientAttribute::Name => "NAME",
            XclientAttribute::ReverseName => "REVERSE_NAME",
            XclientAttribute::Addr => "ADDR",
            XclientAttribute::Port => "PORT",
            XclientAttribute::Proto => "PROTO",
            XclientAttribute::Helo => "HELO",
            XclientAttribute::Login => "LOGIN",
            XclientAttribute::DestAddr => "DESTADDR",
            XclientAttribute::DestPort => "DESTPORT",
        }
    }

    /// Reads an attribute name from an EHLO `XCLIENT` line (any case).
    pub fn parse(keyword: &str) -> Option<Self> {
        const ALL: [XclientAttribute; 9] = [
            XclientAttribute::Name,
            XclientAttribute::ReverseName,
            XclientAttribute::Addr,
            XclientAttribute::Port,
            XclientAttribute::Proto,
            XclientAttribute::Helo,
            XclientAttribute::Login,
            XclientAttribute::DestAddr,
            XclientAttribute::DestPort,
        ];
        ALL.into_iter()
            .find(|attribute| attribute.keyword().eq_ignore_ascii_case(keyword))
    }
}

/// What relay-in knows about the original client, to be handed to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XclientAttributes {
    /// The reverse lookup result: a verified name becomes `NAME=`; an
    /// unverified one only `REVERSE_NAME=` (with `NAME=[UNAVAILABLE]`), as
    /// Postfix itself would record it. Only `Dns::client_name` should make
    /// these values: the name is sent as is, and Postfix refuses the whole
    /// command if it is not a valid host name.
    pub name: ClientName,
    pub addr: IpAddr,
    pub port: u16,
    /// Sent as `PROTO=SMTP` or `PROTO=ESMTP`.
    pub proto: HeloVerb,
    /// The client's HELO/EHLO argument; omitted when the client sent none.
    pub helo: Option<String>,
    /// The address and port the client connected to (relay-in's listener).
    pub destaddr: IpAddr,
    pub destport: u16,
    /// The client's SASL login, if it authenticated. Postfix treats the
    /// session as authenticated by it, so leave it `None` unless relay-in did
    /// authenticate the client.
    pub login: Option<String>,
}

impl XclientAttributes {
    /// Every attribute with its xtext value, NAME and ADDR last as the README
    /// asks; `None` entries are attributes we have no value for.
    fn values(&self) -> [(XclientAttribute, Option<String>); 9] {
        use XclientAttribute::*;
        let (name, reverse_name) = match &self.name {
            ClientName::Verified(name) => (name.as_str(), name.as_str()),
            ClientName::Unverified(name) => (UNAVAILABLE, name.as_str()),
            ClientName::Unavailable => (UNAVAILABLE, UNAVAILABLE),
            ClientName::TempUnavailable => (TEMPORARILY_UNAVAILABLE, TEMPORARILY_UNAVAILABLE),
        };
        let proto = match self.proto {
            HeloVerb::Helo => "SMTP",
            HeloVerb::Ehlo => "ESMTP",
        };
        [
            (Proto, Some(proto.to_owned())),
            (Helo, self.helo.as_deref().map(encode_bounded)),
            (ReverseName, Some(encode_bounded(reverse_name))),
            (Port, Some(self.port.to_string())),
            (Login, self.login.as_deref().map(encode_bounded)),
            (DestAddr, Some(address_value(self.destaddr))),
            (DestPort, Some(self.destport.to_string())),
            (Name, Some(encode_bounded(name))),
            (Addr, Some(address_value(self.addr))),
        ]
    }
}

/// The xtext of `value`, or `[UNAVAILABLE]` when that would exceed Postfix's
/// 255-octet limit: an over-long HELO or login must not cost the whole XCLIENT.
fn encode_bounded(value: &str) -> String {
    let encoded = xtext::encode(value.as_bytes());
    if encoded.len() > MAX_VALUE_LEN {
        UNAVAILABLE.to_owned()
    } else {
        encoded
    }
}

/// `192.0.2.1`, or `IPV6:2001:db8::1` (Postfix refuses IPv6 without the
/// prefix). IPv4-mapped IPv6 addresses are sent as the IPv4 address they are.
fn address_value(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpText(IpAddr::V4(v4)).to_string(),
        IpAddr::V6(v6) => format!("IPV6:{v6}"),
    }
}

/// The XCLIENT command lines (without CRLF) that send every attribute the
/// server advertised, in as few commands as fit in [`MAX_XCLIENT_LINE`]
/// octets each. NAME and ADDR travel together in the last one, because once
/// they change, Postfix re-checks whether we may send XCLIENT at all. Empty
/// when none of our attributes is advertised.
pub fn xclient_commands(
    attributes: &XclientAttributes,
    advertised: &[XclientAttribute],
) -> Vec<String> {
    let parameters: Vec<(XclientAttribute, String)> = attributes
        .values()
        .into_iter()
        .filter(|(attribute, _)| advertised.contains(attribute))
        .filter_map(|(attribute, value)| {
            value.map(|value| (attribute, format!("{}={value}", attribute.keyword())))
        })
        .collect();

    // NAME and ADDR form one unit so that no split separates them.
    let mut units: Vec<Vec<String>> = Vec::new();
    let mut identity: Vec<String> = Vec::new();
    for (attribute, parameter) in parameters {
        match attribute {
            XclientAttribute::Name | XclientAttribute::Addr => identity.push(parameter),
            _ => units.push(vec![parameter]),
        }
    }
    if !identity.is_empty() {
        units.push(identity);
    }

    const PREFIX: &str = "XCLIENT";
    let room = MAX_XCLIENT_LINE - "\r\n".len();
    let mut commands: Vec<String> = Vec::new();
    let mut current = String::new();
    for unit in units {
        let unit_len: usize = unit.iter().map(|p| p.len() + 1).sum();
        if !current.is_empty() && current.len() + unit_len > room {
            commands.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(PREFIX);
        }
        for parameter in unit {
            current.push(' ');
            current.push_str(&parameter);
        }
    }
    if !current.is_empty() {
        commands.push(current);
    }
    commands
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::XclientAttribute::*;
    use super::*;

    const POSTFIX: [XclientAttribute; 9] = [
        Name,
        Addr,
        Proto,
        Helo,
        ReverseName,
        Port,
        Login,
        DestAddr,
        DestPort,
    ];

    fn attributes() -> XclientAttributes {
        XclientAttributes {
            name: ClientName::Verified("client.example".into()),
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            port: 40123,
            proto: HeloVerb::Ehlo,
            helo: Some("client.example".into()),
            destaddr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            destport: 25,
            login: None,
        }
    }

    #[test]
    fn ipv4_all_attributes_in_one_command_name_and_addr_last() {
        assert_eq!(
            xclient_commands(&attributes(), &POSTFIX),
            [
                "XCLIENT PROTO=ESMTP HELO=client.example REVERSE_NAME=client.example PORT=40123 \
              DESTADDR=198.51.100.1 DESTPORT=25 NAME=client.example ADDR=192.0.2.7"
            ]
        );
    }

    #[test]
    fn ipv6_addresses_carry_the_prefix() {
        let mut attrs = attributes();
        attrs.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        attrs.destaddr = "2001:db8::25".parse().unwrap();
        assert_eq!(
            xclient_commands(&attrs, &[Addr, DestAddr]),
            ["XCLIENT DESTADDR=IPV6:2001:db8::25 ADDR=IPV6:::1"]
        );
        attrs.addr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(
            xclient_commands(&attrs, &[Addr]),
            ["XCLIENT ADDR=192.0.2.9"]
        );
    }

    #[test]
    fn only_advertised_attributes_are_sent() {
        assert_eq!(
            xclient_commands(&attributes(), &[Name, Addr, Proto, Helo]),
            ["XCLIENT PROTO=ESMTP HELO=client.example NAME=client.example ADDR=192.0.2.7"]
        );
        assert!(xclient_commands(&attributes(), &[]).is_empty());
    }

    #[test]
    fn values_are_xtext_encoded() {
        let mut attrs = attributes();
        attrs.helo = Some("my host+x=y".into());
        attrs.login = Some("user@example.com".into());
        attrs.proto = HeloVerb::Helo;
        assert_eq!(
            xclient_commands(&attrs, &[Helo, Login, Proto]),
            ["XCLIENT PROTO=SMTP HELO=my+20host+2Bx+3Dy LOGIN=user@example.com"]
        );
    }

    #[test]
    fn unknown_names() {
        let cases = [
            (
                ClientName::Unverified("ptr.example".into()),
                "XCLIENT REVERSE_NAME=ptr.example NAME=[UNAVAILABLE]",
            ),
            (
                ClientName::Unavailable,
                "XCLIENT REVERSE_NAME=[UNAVAILABLE] NAME=[UNAVAILABLE]",
            ),
            (
                ClientName::TempUnavailable,
                "XCLIENT REVERSE_NAME=[TEMPUNAVAIL] NAME=[TEMPUNAVAIL]",
            ),
        ];
        for (name, expected) in cases {
            let mut attrs = attributes();
            attrs.name = name;
            assert_eq!(xclient_commands(&attrs, &[Name, ReverseName]), [expected]);
        }
    }

    #[test]
    fn over_long_values_become_unavailable() {
        let mut attrs = attributes();
        attrs.helo = Some("+".repeat(100)); // 300 octets once encoded
        attrs.login = Some("u".repeat(MAX_VALUE_LEN));
        assert_eq!(
            xclient_commands(&attrs, &[Helo, Login]),
            [format!(
                "XCLIENT HELO=[UNAVAILABLE] LOGIN={}",
                "u".repeat(MAX_VALUE_LEN)
            )]
        );
    }

    #[test]
    fn long_commands_are_split_at_512_octets_keeping_name_and_addr_together() {
        let long_name = format!("{}.example", vec!["a".repeat(63); 3].join("."));
        let mut attrs = attributes();
        attrs.helo = Some("h".repeat(MAX_VALUE_LEN));
        attrs.login = Some("l".repeat(MAX_VALUE_LEN));
        attrs.name = ClientName::Verified(long_name.clone());
        attrs.addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let commands = xclient_commands(&attrs, &POSTFIX);

        assert!(commands.len() >= 3, "{commands:#?}");
        for command in &commands {
            assert!(command.len() + 2 <= MAX_XCLIENT_LINE, "{command}");
            assert!(command.starts_with("XCLIENT "));
        }
        let last = commands.last().unwrap();
        assert!(last.ends_with(&format!("NAME={long_name} ADDR=IPV6:2001:db8:1:2:3:4:5:6")));
        // Every attribute is sent exactly once, across the commands.
        let parameters: Vec<&str> = commands.iter().flat_map(|c| c.split(' ').skip(1)).collect();
        assert_eq!(parameters.len(), POSTFIX.len());
        for attribute in POSTFIX {
            let prefix = format!("{}=", attribute.keyword());
            assert_eq!(
                parameters.iter().filter(|p| p.starts_with(&prefix)).count(),
                1,
                "{prefix}"
            );
        }
    }

    #[test]
    fn attribute_names_parse_in_any_case() {
        for attribute in POSTFIX {
            assert_eq!(
                XclientAttribute::parse(attribute.keyword()),
                Some(attribute)
            );
            let lower = attribute.keyword().to_ascii_lowercase();
            assert_eq!(XclientAttribute::parse(&lower), Some(attribute));
        }
        assert_eq!(XclientAttribute::parse("SOURCE"), None);
    }
}
