//! An IP address as text, written fast.
//!
//! Every message puts its client's address in text four or five times (the
//! HELO reply, `Received:`, XCLIENT's ADDR and DESTADDR, the log line), and
//! std's `Display` for an IPv4 address costs about 1,300 instructions: it
//! goes through the formatter's padding logic once per octet. This writes
//! the same text with one `write_str` (BENCHMARKS.md, issue 19).

use std::fmt;
use std::net::IpAddr;

/// Displays `.0` exactly as `IpAddr`'s `Display` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpText(pub IpAddr);

impl fmt::Display for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IpAddr::V4(v4) = self.0 else {
            return fmt::Display::fmt(&self.0, f);
        };
        if f.width().is_some() || f.precision().is_some() {
            return fmt::Display::fmt(&self.0, f);
        }
        let mut text = [0u8; 15];
        let mut len = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                text[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                text[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                text[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            text[len] = b'0' + octet % 10;
            len += 1;
        }
        // Only ASCII digits and dots were written.
        f.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_std_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.100.9.199",
            "192.0.2.7",
            "::1",
            "2001:db8::25",
            "::ffff:192.0.2.7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText(ip).to_string(), ip.to_string());
            assert_eq!(format!("{:>20}", IpText(ip)), format!("{ip:>20}"));
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 0, octet, 9]);
            assert_eq!(IpText(ip).to_string(), ip.to_string());
        }
    }
}
