//! A real HAProxy (Debian's `haproxy`) in TCP mode in front of a relay, for
//! the PROXY protocol tests: the configuration is written to a temporary
//! directory and the process runs in the foreground (`-db`), with no stats
//! socket, chroot or pid file, so it needs no path outside that directory.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::free_port;

/// What one HAProxy frontend sends its backend before the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `send-proxy`: the v1 text line.
    V1,
    /// `send-proxy-v2`: the binary header.
    V2,
}

/// One frontend: where clients connect, which header goes to the relay and
/// from which source address HAProxy connects to it.
#[derive(Debug, Clone, Copy)]
pub struct Frontend {
    pub bind: SocketAddr,
    pub header: Header,
    pub source: std::net::IpAddr,
}

impl Frontend {
    /// A frontend on a free port of `bind_ip`, connecting from `source`.
    pub fn new(bind_ip: &str, header: Header, source: &str) -> anyhow::Result<Frontend> {
        Ok(Frontend {
            bind: SocketAddr::new(bind_ip.parse()?, free_port()),
            header,
            source: source.parse()?,
        })
    }
}

/// A running HAProxy, killed when dropped; its output goes to a file in the
/// directory for failure messages.
pub struct HaProxy {
    child: Option<Child>,
    log_path: std::path::PathBuf,
}

impl HaProxy {
    /// Starts HAProxy with `frontends`, each forwarding to `relay`, and
    /// waits until every frontend accepts TCP.
    pub fn start(dir: &Path, relay: SocketAddr, frontends: &[Frontend]) -> anyhow::Result<Self> {
        let mut config = String::from(
            "global\n    maxconn 200\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n",
        );
        for (n, frontend) in frontends.iter().enumerate() {
            let send = match frontend.header {
                Header::V1 => "send-proxy",
                Header::V2 => "send-proxy-v2",
            };
            config.push_str(&format!(
                "\nlisten smtp{n}\n    bind {}\n    server relay {relay} source {} {send}\n",
                frontend.bind, frontend.source
            ));
        }
        let config_path = dir.join("haproxy.cfg");
        std::fs::write(&config_path, config)?;
        let log_path = dir.join("haproxy.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning haproxy (install it with .ci/install-test-deps)")?;
        let mut haproxy = HaProxy {
            child: Some(child),
            log_path,
        };
        // A probe through a frontend reaches the relay as a connection that
        // closes after its header: harmless, and it proves the chain is up.
        let deadline = Instant::now() + Duration::from_secs(10);
        for frontend in frontends {
            while TcpStream::connect_timeout(&frontend.bind, Duration::from_millis(200)).is_err() {
                if let Some(status) = haproxy
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    bail!("haproxy exited with {status}:\n{}", haproxy.log());
                }
                if Instant::now() > deadline {
                    bail!(
                        "haproxy did not listen on {} within 10 s:\n{}",
                        frontend.bind,
                        haproxy.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(haproxy)
    }

    /// HAProxy's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
