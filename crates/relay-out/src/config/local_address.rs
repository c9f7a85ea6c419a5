//! Checking that a source address for outgoing connections (outbound.ini
//! `local_address`, a route's `bind`) belongs to this host.
//!
//! On a VPS with several addresses the operator picks the one whose PTR
//! matches `me`. A typo there would otherwise surface only as every
//! delivery failing with "cannot assign requested address"; binding a
//! socket to it once at startup turns that into a startup error naming the
//! file and key.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Fails (with the detail for a config error) unless `ip` is a specific
/// address of one of this host's interfaces.
pub fn ensure_local(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(
            "expected one address of this host, not a wildcard or multicast address".into(),
        );
    }
    // Binding a UDP socket sends nothing and needs no privileges, but the
    // kernel refuses an address no interface has (EADDRNOTAVAIL).
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .map(drop)
        .map_err(|error| format!("not an address of this host (binding to it fails: {error})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_of_this_host_pass() {
        assert_eq!(ensure_local("127.0.0.1".parse().unwrap()), Ok(()));
        // All of 127/8 is loopback on Linux; tests bind 127.0.0.x freely.
        assert_eq!(ensure_local("127.0.0.3".parse().unwrap()), Ok(()));
        for bad in ["192.0.2.1", "0.0.0.0", "::", "224.0.0.1"] {
            let error = ensure_local(bad.parse().unwrap()).expect_err(bad);
            assert!(
                error.contains("not an address of this host") || error.contains("wildcard"),
                "{bad}: {error}"
            );
        }
    }
}
