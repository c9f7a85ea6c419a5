//! A relay-out under test with its world: a [`TestDns`] it resolves through
//! (`outbound.ini nameservers=`), recording MX servers on 127.0.0.x sharing
//! one port (`remote_port`), and helpers to submit mail, read the queue CLI
//! and take delivery status notifications apart.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::backend::{Accepted, Behaviour, RecordingBackend};
use crate::dns::{TestDns, TestZone};
use crate::process::{Relay, free_port, run};
use crate::smtp::{ClientReply, SmtpClient};

/// The name relay-out uses in EHLO and bounces.
pub const ME: &str = "relay-out.test";

/// What a test varies in relay-out's configuration.
#[derive(Debug, Clone)]
pub struct OutboundOptions {
    /// relay_acl_allow lines.
    pub acl: Vec<String>,
    /// Extra outbound.ini lines.
    pub outbound: String,
    /// Also listen on [::1].
    pub listen_v6: bool,
    /// More `listen` entries (e.g. one on the MX port, to check that
    /// relay-out never delivers to itself).
    pub listen_extra: Vec<SocketAddr>,
    /// Extra files (name, content).
    pub files: Vec<(String, String)>,
    /// Environment variables for relay-out (e.g. the source self-check's
    /// probe targets).
    pub env: Vec<(&'static str, String)>,
}

impl Default for OutboundOptions {
    fn default() -> Self {
        OutboundOptions {
            acl: vec!["127.0.0.1/32".into()],
            outbound: "temp_fail_intervals=5s*5\n".into(),
            listen_v6: false,
            listen_extra: Vec::new(),
            files: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// Where MX farms take their port: below the ephemeral range.
const FARM_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// MX servers on 127.0.0.x, all on the same port (relay-out's `remote_port`
/// is one value for every host).
pub struct MxFarm {
    pub port: u16,
    servers: BTreeMap<u8, RecordingBackend>,
}

impl MxFarm {
    /// Picks a port by binding the first server (on 127.0.0.`first`).
    ///
    /// The port comes from below the kernel's ephemeral range (32768 and
    /// up): servers added later on other 127.0.0.x addresses must find it
    /// free there too, and tests that connect *from* those addresses (from
    /// 127.0.0.5, say) hold ephemeral ports on them. A port the kernel
    /// handed out with port 0 could be such a client's port already.
    pub async fn start(first: u8, behaviour: Behaviour) -> anyhow::Result<MxFarm> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let spread = std::process::id().wrapping_mul(7919);
        let mut last_error = None;
        for _ in 0..200 {
            let step = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = FARM_PORTS.start
                + (spread.wrapping_add(step.wrapping_mul(104_729)) % FARM_PORTS.len() as u32)
                    as u16;
            match RecordingBackend::start_on(host(first, port), behaviour.clone()).await {
                Ok(server) => {
                    let mut servers = BTreeMap::new();
                    servers.insert(first, server);
                    return Ok(MxFarm { port, servers });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("tried at least once"))
    }

    /// Adds a server on 127.0.0.`last_octet` at the farm's port.
    pub async fn add(&mut self, last_octet: u8, behaviour: Behaviour) -> anyhow::Result<()> {
        let server = RecordingBackend::start_on(host(last_octet, self.port), behaviour).await?;
        self.servers.insert(last_octet, server);
        Ok(())
    }

    pub fn get(&self, last_octet: u8) -> &RecordingBackend {
        &self.servers[&last_octet]
    }

    pub fn get_mut(&mut self, last_octet: u8) -> &mut RecordingBackend {
        self.servers
            .get_mut(&last_octet)
            .expect("no MX server on that address")
    }

    /// Every server with the last octet of its address.
    pub fn servers(&self) -> impl Iterator<Item = (u8, &RecordingBackend)> {
        self.servers.iter().map(|(octet, server)| (*octet, server))
    }

    /// Every message accepted by any server.
    pub fn all_accepted(&self) -> Vec<Accepted> {
        self.servers.values().flat_map(|s| s.accepted()).collect()
    }
}

/// 127.0.0.`last_octet`:`port`.
pub fn host(last_octet: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last_octet], port))
}

/// 127.0.0.`last_octet`.
pub fn ip(last_octet: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, last_octet)
}

/// A running relay-out and its DNS.
pub struct Outbound {
    pub dir: tempfile::TempDir,
    pub relay: Relay,
    /// 127.0.0.1:port.
    pub addr: SocketAddr,
    /// [::1]:port when listening there.
    pub addr_v6: SocketAddr,
    pub dns: TestDns,
    env: Vec<(&'static str, String)>,
}

impl Outbound {
    /// Writes the configuration and starts relay-out, delivering to
    /// `mx_port` and resolving through a [`TestDns`] serving `zone`.
    pub async fn start(
        zone: TestZone,
        mx_port: u16,
        options: OutboundOptions,
    ) -> anyhow::Result<Outbound> {
        let dns = TestDns::start(zone).await?;
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut listen = format!("127.0.0.1:{port}");
        if options.listen_v6 {
            listen.push_str(&format!(",[::1]:{port}"));
        }
        for extra in &options.listen_extra {
            listen.push_str(&format!(",{extra}"));
        }
        let mut files = vec![
            (
                "smtp.ini".to_string(),
                format!("listen={listen}\nrdns=off\n"),
            ),
            ("me".to_string(), format!("{ME}\n")),
            ("relay_acl_allow".to_string(), options.acl.join("\n") + "\n"),
            (
                "outbound.ini".to_string(),
                format!(
                    "nameservers={}\nremote_port={mx_port}\nlocal_mx_ok=true\nconnect_timeout=2\nqueue_dir={}\n{}",
                    dns.nameservers_setting(),
                    dir.path().join("queue").display(),
                    options.outbound
                ),
            ),
        ];
        files.extend(options.files);
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text)?;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let relay = start_relay(dir.path(), addr, &options.env)?;
        Ok(Outbound {
            dir,
            relay,
            addr,
            addr_v6: format!("[::1]:{port}").parse()?,
            dns,
            env: options.env,
        })
    }

    /// SIGKILL, as a crash or power loss would end it, and reap it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.relay.signal(libc::SIGKILL);
        self.relay.stop(Duration::from_secs(10))?;
        Ok(())
    }

    /// Starts relay-out again on the same directory; the previous process
    /// must be gone ([`Outbound::kill`] or `relay.stop`).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.relay = start_relay(self.dir.path(), self.addr, &self.env)?;
        Ok(())
    }

    /// relay-out's log so far without terminal colour codes, so tests can
    /// look for `field=value`.
    pub fn log(&self) -> String {
        strip_ansi(&self.relay.log())
    }

    /// Waits (bounded) until the plain log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> anyhow::Result<()> {
        wait_until(within, needle, || self.log().contains(needle))
            .await
            .with_context(|| self.log())
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("queue")
    }

    /// Rewrites outbound.ini keeping the test wiring (DNS, port, queue).
    pub fn write_outbound(&self, mx_port: u16, extra: &str) -> anyhow::Result<()> {
        std::fs::write(
            self.dir.path().join("outbound.ini"),
            format!(
                "nameservers={}\nremote_port={mx_port}\nlocal_mx_ok=true\nconnect_timeout=2\nqueue_dir={}\n{extra}",
                self.dns.nameservers_setting(),
                self.queue_dir().display()
            ),
        )?;
        Ok(())
    }

    /// `relay-out -c DIR queue ARGS...`: (exit status, stdout + stderr).
    pub fn queue(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let dir = self.dir.path().display().to_string();
        let mut full = vec!["-c", dir.as_str(), "queue"];
        full.extend_from_slice(args);
        run("relay-out", &full)
    }

    /// Submits one message from 127.0.0.1 and returns the reply to the dot.
    pub async fn submit(
        &self,
        from: &str,
        rcpts: &[&str],
        message: &str,
    ) -> anyhow::Result<ClientReply> {
        submit_to(self.addr, None, from, rcpts, message).await
    }

    /// Ids of the messages in the queue directory (message files, and the
    /// envelope files of the layout before them; not the spares).
    pub fn queued_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.queue_dir())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| !spool::is_spare_file(&e.path()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|n| {
                        n.strip_suffix(".msg")
                            .or_else(|| n.strip_suffix(".json"))
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

fn start_relay(
    dir: &Path,
    addr: SocketAddr,
    env: &[(&'static str, String)],
) -> anyhow::Result<Relay> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Relay::start_with_env("relay-out", dir, addr, &env)
}

/// One whole transaction on a new connection (optionally from `source`).
pub async fn submit_to(
    addr: SocketAddr,
    source: Option<IpAddr>,
    from: &str,
    rcpts: &[&str],
    message: &str,
) -> anyhow::Result<ClientReply> {
    let mut client = match source {
        Some(source) => SmtpClient::connect_from(source, addr).await?,
        None => SmtpClient::connect(addr).await?,
    };
    let greeting = client.read_reply().await?;
    if greeting.code != 220 {
        bail!("greeting {:?}", greeting.lines);
    }
    client.expect("EHLO backend.test", 250).await?;
    let reply = client.send_mail(from, rcpts, message).await?;
    let _ = client.command("QUIT").await;
    Ok(reply)
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The queue id in a `250 2.0.0 Queued as <id>` reply.
pub fn queue_id(reply: &ClientReply) -> anyhow::Result<String> {
    let text = reply.text();
    text.rsplit("Queued as ")
        .next()
        .filter(|_| reply.code == 250 && text.contains("Queued as "))
        .map(|id| id.trim().to_string())
        .with_context(|| format!("not a queued reply: {text}"))
}

/// Polls `condition` every 50 ms until it holds or `within` passes.
pub async fn wait_until(
    within: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A delivery status notification taken apart: the fields of the
/// `message/delivery-status` part (per message, then one map per
/// recipient) and the message's own header fields.
#[derive(Debug, Clone)]
pub struct Dsn {
    pub headers: BTreeMap<String, String>,
    pub per_message: BTreeMap<String, String>,
    pub recipients: Vec<BTreeMap<String, String>>,
    pub text: String,
}

/// Parses a bounce as delivered (CRLF lines). Field names are lower-cased.
pub fn parse_dsn(data: &[u8]) -> anyhow::Result<Dsn> {
    let text = String::from_utf8_lossy(data).into_owned();
    let (head, _) = text
        .split_once("\r\n\r\n")
        .context("no header/body separator")?;
    let headers = fields(head);
    let content_type = headers
        .get("content-type")
        .context("no Content-Type")?
        .clone();
    if !content_type.starts_with("multipart/report; report-type=delivery-status") {
        bail!("not a delivery report: {content_type}");
    }
    let boundary = content_type
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no boundary")?;
    let part = text
        .split(&format!("--{boundary}"))
        .find(|part| part.contains("Content-Type: message/delivery-status"))
        .context("no message/delivery-status part")?;
    let (_, status) = part
        .split_once("\r\n\r\n")
        .context("delivery-status part without body")?;
    let mut blocks = status
        .trim()
        .split("\r\n\r\n")
        .map(fields)
        .collect::<Vec<_>>()
        .into_iter();
    let per_message = blocks.next().unwrap_or_default();
    Ok(Dsn {
        headers,
        per_message,
        recipients: blocks.collect(),
        text,
    })
}

/// `Name: value` lines (folded lines joined) into a map with lower-case keys.
fn fields(block: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in block.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = last.as_ref().and_then(|name| map.get_mut(name)) {
                let value: &mut String = value;
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            map.insert(name.clone(), value.trim().to_string());
            last = Some(name);
        }
    }
    map
}
