//! Who may relay through relay-out: Haraka's `relay` plugin ACL.

use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;

use crate::config::RelayOutSettings;

/// The relay decision for a client address, from relay.ini and
/// relay_acl_allow.
#[derive(Debug, Clone)]
pub struct RelayAcl {
    /// relay.ini `all=true` (and `dest_domains` off): everyone may relay
    /// (an open relay).
    open: bool,
    /// relay_acl_allow, when relay.ini `acl=true`; empty otherwise.
    allowed: Vec<IpNetwork>,
}

/// `all=true` on a public address would make an open relay for spammers.
#[derive(Debug, thiserror::Error)]
#[error(
    "relay.ini: [relay] all=true makes an open relay; refusing to start because {0} is not a private or loopback address (listen only on private addresses, or set all=false)"
)]
pub struct OpenRelayOnPublicAddress(SocketAddr);

impl RelayAcl {
    pub fn new(
        settings: &RelayOutSettings,
        listen: &[SocketAddr],
    ) -> Result<Self, OpenRelayOnPublicAddress> {
        if settings.relay.all
            && let Some(public) = listen.iter().find(|addr| !is_private(addr.ip()))
        {
            return Err(OpenRelayOnPublicAddress(*public));
        }
        // Haraka's dest_domains hook runs before `all`'s and answers every
        // recipient of a client outside the ACL, so `all` opens nothing then.
        let open = settings.relay.all && settings.dest_domains.is_none();
        let allowed = if settings.relay.acl {
            settings.acl_allow.clone()
        } else {
            Vec::new()
        };
        Ok(Self { open, allowed })
    }

    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.open || self.allowed.iter().any(|net| net.contains(client))
    }
}

/// Loopback, RFC 1918, RFC 6598 (CGNAT), link-local, IPv6 ULA and link-local.
/// `[::]`/`0.0.0.0` are public: they listen on every interface.
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[&str]) -> RelayAcl {
        RelayAcl {
            open: false,
            allowed: entries.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn ipv4_and_ipv6_networks() {
        let acl = acl(&["10.0.0.2/32", "2001:db8::1/128", "192.168.1.0/24"]);
        for (ip, allowed) in [
            ("10.0.0.2", true),
            ("10.0.0.3", false),
            ("::ffff:10.0.0.2", true),
            ("2001:db8::1", true),
            ("2001:db8::2", false),
            ("192.168.1.77", true),
            ("::1", false),
        ] {
            assert_eq!(acl.allows(ip.parse().unwrap()), allowed, "{ip}");
        }
    }

    #[test]
    fn private_addresses() {
        for (ip, private) in [
            ("10.0.0.1", true),
            ("127.0.0.1", true),
            ("172.16.0.1", true),
            ("100.64.0.1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::1", true),
            ("0.0.0.0", false),
            ("::", false),
            ("203.0.113.1", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_private(ip.parse().unwrap()), private, "{ip}");
        }
    }
}
