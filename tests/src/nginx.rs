//! A real HTTPS server (Debian's `nginx-light`) on loopback serving an
//! MTA-STS policy, for relay-out's MTA-STS tests: a private instance from a
//! temporary directory (`-p`, `-e`, its own pid and log files), in the
//! foreground with no master process, so dropping it stops it.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::certs::ServerCert;

/// What the policy URL answers.
#[derive(Debug, Clone)]
pub enum Serve {
    /// `200`, `text/plain`, this body.
    Policy(String),
    /// `301` to this URL (RFC 8461 §3.3: senders must not follow it).
    Redirect(String),
    /// Takes POSTs at this path (TLS-RPT's `rua=https:`), answers `204`,
    /// and keeps each request body as a file ([`PolicyServer::posted`]).
    ReportSink(String),
}

/// A running nginx, stopped when dropped.
pub struct PolicyServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: PathBuf,
}

impl PolicyServer {
    /// Serves `serve` at `https://{host}/.well-known/mta-sts.txt` on `addr`
    /// with `cert` (issued for `host`), files under `dir`; waits until it
    /// accepts TCP.
    pub fn start(
        dir: &Path,
        addr: SocketAddr,
        host: &str,
        cert: &ServerCert,
        serve: &Serve,
    ) -> anyhow::Result<Self> {
        let www = dir.join("www/.well-known");
        std::fs::create_dir_all(&www)?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(dir.join("cert.pem"), &cert.cert_pem)?;
        std::fs::write(dir.join("key.pem"), &cert.key_pem)?;
        let location = match serve {
            Serve::Policy(text) => {
                std::fs::write(www.join("mta-sts.txt"), text)?;
                String::new()
            }
            Serve::Redirect(url) => {
                format!("        location = /.well-known/mta-sts.txt {{ return 301 {url}; }}\n")
            }
            // `return` alone would discard the body unread: proxying to
            // itself makes nginx read it, and client_body_in_file_only
            // keeps it in tmp/.
            Serve::ReportSink(path) => format!(
                "        location = {path} {{ client_body_in_file_only on; proxy_pass https://{addr}/posted; proxy_ssl_verify off; }}\n\
                 \x20       location = /posted {{ return 204; }}\n"
            ),
        };
        let d = dir.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/tmp;\n\
             \x20   types {{ text/plain txt; }}\n    default_type application/octet-stream;\n\
             \x20   server {{\n        listen {addr} ssl;\n        server_name {host};\n\
             \x20       ssl_certificate {d}/cert.pem;\n        ssl_certificate_key {d}/key.pem;\n\
             \x20       root {d}/www;\n{location}    }}\n}}\n"
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning nginx (install it with .ci/install-test-deps)")?;
        let mut server = PolicyServer {
            addr,
            child: Some(child),
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("nginx exited with {status}:\n{}", server.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx did not listen on {addr} within 10 s:\n{}",
                    server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// nginx's error log and access log so far.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("error.log"), read("access.log"))
    }

    /// The requests nginx served (its access log lines).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The request bodies a [`Serve::ReportSink`] kept, oldest first.
    pub fn posted(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("tmp"))
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|path| path.is_file());
        files.sort();
        files
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .collect()
    }

    /// Stops nginx and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop();
    }
}
