//! relay-in started against a test backend, for the forwarding tests.

use std::net::SocketAddr;
use std::time::Duration;

use crate::backend::{Behaviour, RecordingBackend};
use crate::outbound::wait_until;
use crate::process::{Relay, free_port};
use crate::smtp::SmtpClient;

/// relay-in listening on 127.0.0.1 and [::1] (one port), forwarding to a
/// test backend; the configuration directory lives as long as this.
pub struct ForwardingRelay {
    dir: tempfile::TempDir,
    pub relay: Relay,
    pub v4: SocketAddr,
    pub v6: SocketAddr,
}

impl ForwardingRelay {
    /// Accepts mail for example.com and forwards it to `backend` with 2 s
    /// timeouts; `forward_extra` adds smtp_forward.ini lines (`mode=live`).
    pub fn start(backend: SocketAddr, forward_extra: &str) -> anyhow::Result<ForwardingRelay> {
        Self::start_with(backend, forward_extra, &[], &[])
    }

    /// As [`Self::start`], with more files in the configuration directory
    /// (`metrics.ini`) and environment variables.
    pub fn start_with(
        backend: SocketAddr,
        forward_extra: &str,
        extra_files: &[(&str, String)],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ForwardingRelay> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let files = [
            (
                "smtp.ini",
                format!("listen=127.0.0.1:{port},[::1]:{port}\nrdns=off\n"),
            ),
            ("me", "mx.test\n".into()),
            ("host_list", "example.com\n".into()),
            (
                "smtp_forward.ini",
                format!(
                    "host={}\nport={}\nconnect_timeout=2\ntimeout=2\n{forward_extra}\n",
                    backend.ip(),
                    backend.port()
                ),
            ),
        ];
        for (name, text) in files.iter().chain(extra_files) {
            std::fs::write(dir.path().join(name), text)?;
        }
        let v4 = SocketAddr::from(([127, 0, 0, 1], port));
        let relay = Relay::start_with_env("relay-in", dir.path(), v4, env)?;
        Ok(ForwardingRelay {
            dir,
            relay,
            v4,
            v6: format!("[::1]:{port}").parse()?,
        })
    }

    /// The configuration directory, for `relay-in --check -c`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A client connection to `addr` that has read the greeting and sent
/// `EHLO helo`.
pub async fn greeted(addr: SocketAddr, helo: &str) -> anyhow::Result<SmtpClient> {
    let mut client = SmtpClient::connect(addr).await?;
    assert_eq!(client.read_reply().await?.code, 220);
    client.expect(&format!("EHLO {helo}"), 250).await?;
    Ok(client)
}

/// A backend behaving as `behaviour` and relay-in in queue mode (the shipped
/// mode) in front of it, after relay-in's startup probe, so that the
/// backend's counters show mail sessions only.
pub async fn queue_mode(
    behaviour: Behaviour,
) -> anyhow::Result<(RecordingBackend, ForwardingRelay)> {
    queue_mode_with(behaviour, &[]).await
}

/// As [`queue_mode`], with more files in relay-in's configuration directory
/// (`databytes`).
pub async fn queue_mode_with(
    behaviour: Behaviour,
    extra_files: &[(&str, String)],
) -> anyhow::Result<(RecordingBackend, ForwardingRelay)> {
    let backend = RecordingBackend::start(behaviour).await?;
    let s = ForwardingRelay::start_with(
        backend.addr,
        "mode=queue\nxclient=required",
        extra_files,
        &[],
    )?;
    wait_until(Duration::from_secs(5), "the startup probe", || {
        backend.probes() == 1 && backend.record().in_flight == 0
    })
    .await?;
    Ok((backend, s))
}
