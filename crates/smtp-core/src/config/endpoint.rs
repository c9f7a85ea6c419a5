//! Socket-address lists as Haraka writes them (`listen`, `nameservers`).
//!
//! Haraka accepts `ip:port`, `[v6]:port`, a bare IPv6 address followed by
//! `:port`, a bare port, or an address without a port. It also accepts host
//! names and unix sockets; Postern does not (it binds before resolving
//! anything and has no unix-socket listener), so those are errors that say
//! what to write instead.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::values::{SettingValue, parse_decimal, split_comma_list};

/// SMTP's port (RFC 5321): where Haraka listens when a `listen` entry has
/// none, and where mail goes when a next hop or backend is written without one.
pub const SMTP_PORT: u16 = 25;

/// The port assumed for a name server written without one.
pub const DNS_PORT: u16 = 53;

/// How to read entries that are not a complete `ip:port`.
#[derive(Debug, Clone, Copy)]
pub struct EndpointRules {
    /// Port for entries that name only an address.
    pub default_port: u16,
    /// Whether a bare number means "this port on every address" (`listen`).
    pub bare_port_means_any_address: bool,
}

/// Parses one entry; the error is the expected form, for messages.
pub fn parse_endpoint(entry: &str, rules: EndpointRules) -> Result<SocketAddr, String> {
    if let Ok(address) = entry.parse::<SocketAddr>() {
        return check_port(address);
    }
    if rules.bare_port_means_any_address
        && let Some(port) = parse_decimal(entry)
    {
        return u16::try_from(port)
            .map_err(|_| "a port number from 1 to 65535".to_owned())
            .and_then(|port| check_port(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)));
    }
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<Ipv6Addr>()
    {
        return Ok(SocketAddr::new(ip.into(), rules.default_port));
    }
    // A bare IPv6 address followed by `:port`: the last colon separates them.
    if let Some((address, port)) = entry.rsplit_once(':')
        && let (Ok(ip), Some(port)) = (address.parse::<Ipv6Addr>(), parse_decimal(port))
    {
        let port = u16::try_from(port).map_err(|_| "a port number from 1 to 65535".to_owned())?;
        return check_port(SocketAddr::new(ip.into(), port));
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, rules.default_port));
    }
    Err(if entry.starts_with('/') {
        "an IP address with an optional :port (unix sockets are not supported)".to_owned()
    } else {
        "an IP address with an optional :port (host names are not supported: use an IP address)"
            .to_owned()
    })
}

fn check_port(address: SocketAddr) -> Result<SocketAddr, String> {
    if address.port() == 0 {
        Err("a port number from 1 to 65535".to_owned())
    } else {
        Ok(address)
    }
}

/// Parses a comma list (`\s*,\s*`), naming the first bad entry in the error.
pub fn parse_endpoint_list(text: &str, rules: EndpointRules) -> Result<Vec<SocketAddr>, String> {
    split_comma_list(text)
        .into_iter()
        .map(|entry| {
            parse_endpoint(entry, rules).map_err(|form| {
                if text.contains(',') {
                    format!("a comma-separated list; entry '{entry}' should be {form}")
                } else {
                    form
                }
            })
        })
        .collect()
}

/// `smtp.ini` `listen`: addresses to accept SMTP on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenAddresses(pub Vec<SocketAddr>);

impl SettingValue for ListenAddresses {
    fn from_text(text: &str) -> Result<Self, String> {
        let rules = EndpointRules {
            default_port: SMTP_PORT,
            bare_port_means_any_address: true,
        };
        parse_endpoint_list(text, rules).map(ListenAddresses)
    }
}

/// `nameservers`: resolvers to ask instead of the system's; empty means the
/// system resolver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameServers(pub Vec<SocketAddr>);

impl SettingValue for NameServers {
    fn from_text(text: &str) -> Result<Self, String> {
        let rules = EndpointRules {
            default_port: DNS_PORT,
            bare_port_means_any_address: false,
        };
        parse_endpoint_list(text, rules).map(NameServers)
    }
}

/// A single IP address (e.g. `listen_host`, `local_address`).
impl SettingValue for IpAddr {
    fn from_text(text: &str) -> Result<Self, String> {
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        unbracketed
            .parse()
            .map_err(|_| "an IP address (host names are not supported: use an IP address)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(text: &str) -> Result<Vec<String>, String> {
        ListenAddresses::from_text(text).map(|l| l.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn listen_forms() {
        let cases: &[(&str, &[&str])] = &[
            ("[::]:25", &["[::]:25"]),
            ("[::0]:25", &["[::]:25"]),
            ("0.0.0.0:25", &["0.0.0.0:25"]),
            ("10.0.0.1:2526", &["10.0.0.1:2526"]),
            ("10.0.0.1", &["10.0.0.1:25"]),
            ("2525", &["[::]:2525"]),
            ("[2001:db8::1]", &["[2001:db8::1]:25"]),
            ("2001:db8::1:587", &["[2001:db8::1]:587"]),
            ("::1", &["[::1]:25"]),
            ("::", &["[::]:25"]),
            ("::1:25", &["[::1]:25"]),
            (
                "127.0.0.1:25 ,  [::1]:587,465",
                &["127.0.0.1:25", "[::1]:587", "[::]:465"],
            ),
            ("", &[]),
        ];
        for (input, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(listen(input), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn listen_rejections_say_what_to_do() {
        for bad in [
            "mail.example.com:25",
            "localhost",
            "0.0.0.0:0",
            "0.0.0.0:99999",
            "70000",
        ] {
            assert!(listen(bad).is_err(), "{bad}");
        }
        assert!(
            listen("mail.example.com:25")
                .unwrap_err()
                .contains("use an IP address")
        );
        assert!(
            listen("/run/postern.sock:660")
                .unwrap_err()
                .contains("unix sockets")
        );
        let list_error = listen("10.0.0.1:25, nope").unwrap_err();
        assert!(list_error.contains("entry 'nope'"), "{list_error}");
    }

    #[test]
    fn name_servers_default_to_port_53() {
        let servers = NameServers::from_text("1.1.1.1, [2606:4700::1111]:5353, 2606:4700::1001")
            .expect("valid");
        let rendered: Vec<String> = servers.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "1.1.1.1:53",
                "[2606:4700::1111]:5353",
                "[2606:4700::1001]:53"
            ]
        );
        assert!(NameServers::from_text("53").is_err());
    }
}
