//! A DNSSEC world on loopback for relay-out's DANE tests: a real
//! authoritative server (NSD) serving zones signed at test time with
//! `ldns-signzone`, and a real validating resolver (Unbound) that trusts the
//! test zone's key and forwards to NSD, both from private temp configs on
//! free ports.
//!
//! Real servers rather than hickory's, because what DANE depends on is a
//! validating resolver's AD bit, and the in-process test DNS
//! ([`crate::dns`]) neither signs nor validates. The Debian packages'
//! own services are never used: each instance runs in the foreground from
//! its own config, pid file and ports, and is killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::process::free_port;

/// One zone NSD serves: its origin and records (zone-file lines relative to
/// the origin), signed or not.
pub struct Zone {
    pub origin: String,
    pub records: Vec<String>,
    pub signed: bool,
}

impl Zone {
    pub fn new(origin: &str, signed: bool) -> Self {
        Zone {
            origin: origin.trim_end_matches('.').to_owned(),
            records: Vec::new(),
            signed,
        }
    }

    /// Adds a zone-file line (`mx1 IN A 127.0.0.2`).
    pub fn record(mut self, line: &str) -> Self {
        self.records.push(line.to_owned());
        self
    }
}

/// NSD and Unbound running for some zones.
pub struct SignedDns {
    _dir: tempfile::TempDir,
    nsd: Child,
    unbound: Child,
    /// NSD: authoritative, answers without validating (no AD bit ever).
    pub authoritative: SocketAddr,
    /// Unbound: validates the signed zones with their keys as trust anchors.
    pub resolver: SocketAddr,
}

impl SignedDns {
    /// Signs the `signed` zones, starts NSD and Unbound, and returns once
    /// Unbound answers the first signed zone's SOA with the AD bit (or the
    /// first zone's SOA when none is signed).
    pub async fn start(zones: Vec<Zone>) -> anyhow::Result<SignedDns> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let nsd_port = free_port();
        let unbound_port = free_port();
        let mut anchors = Vec::new();
        let mut nsd_zones = String::new();
        let mut stubs = String::new();
        for zone in &zones {
            let file = root.join(format!("{}.zone", zone.origin));
            std::fs::write(&file, zone_text(zone))?;
            let served = if zone.signed {
                let (signed, anchor) = sign(root, &zone.origin, &file)?;
                anchors.push(anchor);
                signed
            } else {
                file
            };
            nsd_zones.push_str(&format!(
                "zone:\n  name: \"{}\"\n  zonefile: \"{}\"\n",
                zone.origin,
                served.display()
            ));
            stubs.push_str(&format!(
                "stub-zone:\n  name: \"{}\"\n  stub-addr: 127.0.0.1@{nsd_port}\n",
                zone.origin
            ));
        }
        let nsd_conf = root.join("nsd.conf");
        std::fs::write(
            &nsd_conf,
            format!(
                "server:\n  ip-address: 127.0.0.1\n  port: {nsd_port}\n  ip4-only: yes\n  server-count: 1\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{dir}\"\n  pidfile: \"{dir}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{dir}/xfrd.state\"\n  zonelistfile: \"{dir}/zone.list\"\n  xfrdir: \"{dir}\"\n  logfile: \"{dir}/nsd.log\"\n  verbosity: 1\nremote-control:\n  control-enable: no\n{nsd_zones}",
                dir = root.display()
            ),
        )?;
        let anchor_lines: String = anchors
            .iter()
            .map(|file| format!("  trust-anchor-file: \"{}\"\n", file.display()))
            .collect();
        let unbound_conf = root.join("unbound.conf");
        // `test.` is one of Unbound's default local zones (RFC 6761): it
        // must be lifted for the stubs to be asked.
        std::fs::write(
            &unbound_conf,
            format!(
                "server:\n  interface: 127.0.0.1\n  port: {unbound_port}\n  do-ip6: no\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  use-syslog: no\n  logfile: \"{dir}/unbound.log\"\n  verbosity: 1\n  val-log-level: 2\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  local-zone: \"test.\" nodefault\n  module-config: \"validator iterator\"\n{anchor_lines}remote-control:\n  control-enable: no\n{stubs}",
                dir = root.display()
            ),
        )?;
        let nsd = spawn("nsd", &["-d", "-c", &nsd_conf.display().to_string()], root)?;
        let mut dns = SignedDns {
            nsd,
            unbound: spawn(
                "unbound",
                &["-d", "-c", &unbound_conf.display().to_string()],
                root,
            )?,
            authoritative: SocketAddr::from(([127, 0, 0, 1], nsd_port)),
            resolver: SocketAddr::from(([127, 0, 0, 1], unbound_port)),
            _dir: dir,
        };
        let probe = zones
            .iter()
            .find(|zone| zone.signed)
            .or(zones.first())
            .context("no zone")?;
        dns.wait_ready(&probe.origin, probe.signed).await?;
        Ok(dns)
    }

    /// Waits (bounded) until Unbound answers `origin` SOA, authenticated
    /// when `signed`.
    async fn wait_ready(&mut self, origin: &str, signed: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::from("no answer yet");
        for _ in 0..400 {
            if Instant::now() > deadline {
                break;
            }
            let exited = [
                ("nsd", self.nsd.try_wait()?),
                ("unbound", self.unbound.try_wait()?),
            ];
            if let Some((name, Some(status))) = exited.iter().find(|(_, status)| status.is_some()) {
                bail!("{name} exited with {status}: {}", self.logs());
            }
            match ask(self.resolver, origin, RecordType::SOA).await {
                Ok(reply)
                    if !reply.answers.is_empty() && (!signed || reply.metadata.authentic_data) =>
                {
                    return Ok(());
                }
                Ok(reply) => {
                    last = format!(
                        "{:?}, AD={}",
                        reply.metadata.response_code, reply.metadata.authentic_data
                    )
                }
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "Unbound did not validate {origin} SOA ({last}): {}",
            self.logs()
        )
    }

    /// `nameservers=` for relay-out, pointing at the validating resolver.
    pub fn resolver_setting(&self) -> String {
        self.resolver.to_string()
    }

    /// NSD's and Unbound's logs, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self._dir.path().join(name)).unwrap_or_default();
        format!(
            "--- nsd.log\n{}--- unbound.log\n{}",
            read("nsd.log"),
            read("unbound.log")
        )
    }
}

impl Drop for SignedDns {
    fn drop(&mut self) {
        for child in [&mut self.nsd, &mut self.unbound] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn zone_text(zone: &Zone) -> String {
    let mut text = format!(
        "$ORIGIN {origin}.\n$TTL 300\n@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n@ IN NS ns.{origin}.\nns IN A 127.0.0.1\n",
        origin = zone.origin
    );
    for line in &zone.records {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Makes a KSK and a ZSK for `origin` in `dir` and signs `file` with them:
/// (the signed zone file, the trust anchor file for Unbound).
fn sign(dir: &Path, origin: &str, file: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let keygen = |ksk: bool| -> anyhow::Result<String> {
        let mut args = vec!["-a", "ECDSAP256SHA256", "-r", "/dev/urandom"];
        if ksk {
            args.push("-k");
        }
        args.push(origin);
        let output = Command::new("ldns-keygen")
            .args(&args)
            .current_dir(dir)
            .output()
            .context("running ldns-keygen (package ldnsutils)")?;
        if !output.status.success() {
            bail!(
                "ldns-keygen failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_owned())
    };
    let ksk = keygen(true)?;
    let zsk = keygen(false)?;
    let signed = dir.join(format!("{origin}.zone.signed"));
    let output = Command::new("ldns-signzone")
        .arg("-f")
        .arg(&signed)
        .arg("-o")
        .arg(origin)
        .arg(file)
        .arg(&zsk)
        .arg(&ksk)
        .current_dir(dir)
        .output()
        .context("running ldns-signzone (package ldnsutils)")?;
    if !output.status.success() {
        bail!(
            "ldns-signzone failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((signed, dir.join(format!("{ksk}.ds"))))
}

fn spawn(program: &str, args: &[&str], dir: &Path) -> anyhow::Result<Child> {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program} (see .ci/install-test-deps)"))
}

/// One query with DO set, as a test checks what a resolver says.
pub async fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> anyhow::Result<Message> {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(1232);
    message.set_edns(edns);
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    message.add_query(Query::query(Name::from_ascii(&fqdn)?, rtype));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    socket.send(&message.to_vec()?).await?;
    let mut buffer = vec![0; 65535];
    let len = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buffer))
        .await
        .context("no answer")??;
    Ok(Message::from_vec(&buffer[..len])?)
}

/// TLSA 3 1 1 data for a certificate: SHA-256 of its SubjectPublicKeyInfo,
/// in hex as a zone file writes it.
pub fn tlsa_3_1_1(cert: &rustls_pki_types::CertificateDer<'_>) -> anyhow::Result<String> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        parsed.subject_public_key_info().as_ref(),
    );
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}
