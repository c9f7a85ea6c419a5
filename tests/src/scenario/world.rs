//! A scenario's `world` file: the DNS the relay resolves through and the
//! recording MX servers it delivers to (relay-in: its backend), so a
//! scenario states its whole surroundings in one small file.
//!
//! One statement a line; `#` comments and blank lines are ignored:
//!
//! | line | meaning |
//! | --- | --- |
//! | `mx NAME PREF EXCHANGE` | an MX record |
//! | `a NAME IP` | an A record |
//! | `null-mx NAME` | the RFC 7505 null MX |
//! | `servfail NAME` | every query for NAME answers SERVFAIL |
//! | `server IP` | a recording MX on IP (127.0.0.x) at `{{MX_PORT}}`, accepting everything |
//! | `refuse IP ADDRESS REPLY…` | that server answers `RCPT TO:<ADDRESS>` with REPLY |
//! | `defer IP N REPLY…` | that server answers the data of its first N sessions with REPLY |
//!
//! Names missing from the DNS answer NXDOMAIN. All servers share one port,
//! as relay-out's `remote_port` is one value for every host.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dialog_script::ParseError;

use crate::backend::Behaviour;
use crate::dns::{TestDns, TestZone};
use crate::outbound::MxFarm;
use crate::process::free_port;

/// A parsed `world` file, not started yet.
#[derive(Debug, Default)]
pub struct World {
    zone: TestZone,
    /// Recording MX servers by the last octet of their 127.0.0.x address.
    servers: BTreeMap<u8, Behaviour>,
}

/// A started world: the DNS and the MX servers, stopped when dropped.
pub struct RunningWorld {
    pub dns: TestDns,
    /// None when the world has no `server` line.
    pub farm: Option<MxFarm>,
    /// The farm's port, or an unused one when there is no server.
    pub mx_port: u16,
}

impl World {
    pub fn parse(text: &str) -> Result<World, ParseError> {
        let mut world = World::default();
        for (index, line) in text.lines().enumerate() {
            let error = |message: String| ParseError {
                line: index + 1,
                message,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["mx", name, preference, exchange] => {
                    let preference = preference
                        .parse()
                        .map_err(|_| error(format!("bad MX preference {preference:?}")))?;
                    world.zone = std::mem::take(&mut world.zone).mx(name, preference, exchange);
                }
                ["a", name, ip] => {
                    let ip: Ipv4Addr = ip
                        .parse()
                        .map_err(|_| error(format!("bad IPv4 address {ip:?}")))?;
                    world.zone = std::mem::take(&mut world.zone).a(name, ip);
                }
                ["null-mx", name] => world.zone = std::mem::take(&mut world.zone).null_mx(name),
                ["servfail", name] => world.zone = std::mem::take(&mut world.zone).servfail(name),
                ["server", ip] => {
                    let octet = server_octet(ip).map_err(error)?;
                    world.servers.insert(octet, Behaviour::default());
                }
                ["refuse", ip, address, reply @ ..] if !reply.is_empty() => {
                    let server = world.server(ip).map_err(error)?;
                    server
                        .rcpt_replies
                        .push((address.to_string(), reply.join(" ")));
                }
                ["defer", ip, sessions, reply @ ..] if !reply.is_empty() => {
                    let sessions = sessions
                        .parse()
                        .map_err(|_| error(format!("bad session count {sessions:?}")))?;
                    let server = world.server(ip).map_err(error)?;
                    server.first_sessions_data_reply = Some((sessions, reply.join(" ")));
                }
                _ => return Err(error(format!("cannot read {line:?}"))),
            }
        }
        Ok(world)
    }

    /// The behaviour of the server a `server IP` line declared.
    fn server(&mut self, ip: &str) -> Result<&mut Behaviour, String> {
        let octet = server_octet(ip)?;
        self.servers
            .get_mut(&octet)
            .ok_or_else(|| format!("no `server {ip}` line before this one"))
    }

    /// Starts the DNS and every MX server.
    pub async fn start(self) -> anyhow::Result<RunningWorld> {
        let dns = TestDns::start(self.zone).await?;
        let mut servers = self.servers.into_iter();
        let farm = match servers.next() {
            Some((first, behaviour)) => {
                let mut farm = MxFarm::start(first, behaviour).await?;
                for (octet, behaviour) in servers {
                    farm.add(octet, behaviour).await?;
                }
                Some(farm)
            }
            None => None,
        };
        let mx_port = farm.as_ref().map_or_else(free_port, |farm| farm.port);
        Ok(RunningWorld { dns, farm, mx_port })
    }
}

/// The last octet of a 127.0.0.x server address.
pub fn server_octet(ip: &str) -> Result<u8, String> {
    match ip.parse::<Ipv4Addr>().map(|ip| ip.octets()) {
        Ok([127, 0, 0, octet]) if octet != 0 => Ok(octet),
        _ => Err(format!("{ip:?} is not a 127.0.0.x server address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_with_their_behaviour() {
        let world = World::parse(
            "# dest.test\nmx dest.test 10 mx1.dest.test\na mx1.dest.test 127.0.0.2\n\n\
             server 127.0.0.2\nrefuse 127.0.0.2 u@dest.test 550 5.1.1 No such user\n\
             defer 127.0.0.2 1 451 4.3.2 System busy\nserver 127.0.0.5\n",
        )
        .unwrap();
        assert_eq!(world.servers.keys().copied().collect::<Vec<_>>(), [2, 5]);
        let two = &world.servers[&2];
        assert_eq!(
            two.rcpt_replies,
            [(
                "u@dest.test".to_string(),
                "550 5.1.1 No such user".to_string()
            )]
        );
        assert_eq!(
            two.first_sessions_data_reply,
            Some((1, "451 4.3.2 System busy".to_string()))
        );
        assert!(world.servers[&5].rcpt_replies.is_empty());
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, line, needle) in [
            (
                "server 127.0.0.2\nrefuse 127.0.0.3 u@x 550 no\n",
                2,
                "no `server 127.0.0.3`",
            ),
            ("server 10.0.0.2\n", 1, "not a 127.0.0.x"),
            ("mx dest.test ten mx1\n", 1, "bad MX preference"),
            ("\nsevrer 127.0.0.2\n", 2, "cannot read"),
            ("server 127.0.0.2\ndefer 127.0.0.2 1\n", 2, "cannot read"),
        ] {
            let error = World::parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(needle), "{text:?}: {error}");
        }
    }
}
