//! connection.ini `[haproxy] hosts[]`, or Haraka 3.0's flat file
//! `haproxy_hosts`: the proxies whose PROXY header is believed (the server
//! side is `server/proxy_protocol.rs`).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::legacy_file;
use crate::config::dir::ConfigDir;
use crate::config::error::{ConfigError, expected};
use crate::config::files;

/// What a host entry must look like, for error messages.
const FORM: &str = "an IP address or CIDR network such as 192.0.2.4 or 2001:db8::/64";

/// The trusted proxies: `[haproxy] hosts[]` when written (even empty, as in
/// the shipped file), else the legacy file, else none.
pub(super) fn haproxy_hosts(
    dir: &ConfigDir,
    from_ini: Option<Vec<String>>,
) -> Result<Vec<IpNetwork>, ConfigError> {
    let legacy = legacy_file(
        dir,
        from_ini.is_some(),
        files::HAPROXY_HOSTS,
        "[haproxy] hosts[]",
    )?;
    let mut hosts = Vec::new();
    if let Some(entries) = from_ini {
        let origin = dir.shown(files::CONNECTION_INI);
        for entry in entries {
            let host = parse_host(&entry).map_err(|_| ConfigError::BadValue {
                origin: origin.clone(),
                section: "haproxy".to_owned(),
                key: "hosts[]".to_owned(),
                detail: expected(&entry, FORM),
            })?;
            if let Some(host) = host {
                warn_bare_ipv6(dir, &origin, &entry, host);
                hosts.push(host);
            }
        }
    } else if let Some(file) = legacy {
        for line in file.lines {
            let host = parse_host(&line.text).map_err(|_| ConfigError::BadEntry {
                path: file.path.clone(),
                line: line.number,
                entry: line.text.clone(),
                expected: format!("expected {FORM}"),
            })?;
            if let Some(host) = host {
                let origin = format!("{}: line {}", file.path.display(), line.number);
                warn_bare_ipv6(dir, &origin, &line.text, host);
                hosts.push(host);
            }
        }
    }
    Ok(hosts)
}

/// One entry: an address (a single host) or a CIDR network; an IPv6
/// address may be bracketed, as in the shipped file's examples
/// (`[2001:db8::1]`). Empty entries (the shipped `hosts[] =`) are skipped,
/// as Haraka skips them.
fn parse_host(entry: &str) -> Result<Option<IpNetwork>, ()> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Ok(None);
    }
    let (address, prefix) = match entry.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry, None),
    };
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let address: IpAddr = address.parse().map_err(|_| ())?;
    let network = match prefix {
        None => IpNetwork::from(address),
        Some(prefix) => {
            let prefix: u8 = prefix.parse().map_err(|_| ())?;
            IpNetwork::new(address, prefix).map_err(|_| ())?
        }
    };
    Ok(Some(network))
}

/// Haraka reads a bare IPv6 address as its /64; Postern trusts only that
/// address, and says so, since a proxy that is not listed loses its
/// clients' addresses (its PROXY header is refused).
fn warn_bare_ipv6(dir: &ConfigDir, origin: &str, entry: &str, host: IpNetwork) {
    if host.is_ipv6() && !entry.contains('/') {
        dir.warn(format!(
            "{origin}: [haproxy] hosts {entry} means only that address (/128); Haraka read it as its /64"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_addresses_networks_or_bracketed_ipv6() {
        let net = |s: &str| Some(s.parse::<IpNetwork>().unwrap());
        assert_eq!(parse_host(""), Ok(None));
        assert_eq!(parse_host("  "), Ok(None));
        assert_eq!(parse_host("192.0.2.4"), Ok(net("192.0.2.4/32")));
        assert_eq!(parse_host("192.0.2.0/24"), Ok(net("192.0.2.0/24")));
        assert_eq!(parse_host("[2001:db8::1]"), Ok(net("2001:db8::1/128")));
        assert_eq!(parse_host("2001:db8::/64"), Ok(net("2001:db8::/64")));
        assert_eq!(parse_host("[2001:db8::]/48"), Ok(net("2001:db8::/48")));
        for bad in [
            "proxy.example",
            "192.0.2.4/33",
            "192.0.2.4/",
            "[192.0.2.4",
            "1.2.3",
        ] {
            assert_eq!(parse_host(bad), Err(()), "{bad}");
        }
    }
}
