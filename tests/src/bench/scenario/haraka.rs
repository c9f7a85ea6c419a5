//! Haraka 3 as an outbound relay, for `scenario relay-out-compare`: the
//! program relay-out replaces, started the way its users run it (`haraka -c
//! DIR`, one process), relaying for 127.0.0.0/8 with the `relay` plugin.
//!
//! Haraka is not vendored: it is installed once, outside the repository,
//! with `npm install --prefix /var/cache/postern-bench/haraka Haraka@3`
//! (`--haraka DIR` names another install). The bench writes one plugin of
//! its own into the instance, `bench_routes`: `get_mx` answers the sink for
//! every domain (Haraka's documented way to route outbound mail) and
//! `lookup_rdns` answers `localhost`, because Haraka's core would otherwise
//! ask the system resolver for every client's name, and the bench uses no
//! resolver.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::{Bench, Measured};
use crate::bench::daemon::Daemon;
use crate::process::free_port;

/// Where `npm install --prefix` put Haraka by default.
pub const DEFAULT_INSTALL: &str = "/var/cache/postern-bench/haraka";

/// A running Haraka.
pub struct Haraka {
    pub measured: Measured,
    pub addr: SocketAddr,
}

/// The `haraka` program of an npm install, or an error that says how to
/// install it.
pub fn program(install: &Path) -> anyhow::Result<PathBuf> {
    let program = install.join("node_modules/.bin/haraka");
    if !program.exists() {
        bail!(
            "Haraka is not installed in {}: npm install --prefix {} Haraka@3 (outside the network namespace)",
            install.display(),
            install.display()
        );
    }
    Ok(program)
}

/// The bench's plugin: every domain's MX is the sink; every client's name
/// is `localhost` (no resolver).
fn routes_plugin(sink: SocketAddr) -> String {
    format!(
        "// Written by postern-bench (tests/src/bench/scenario/haraka.rs).\n\
         exports.hook_lookup_rdns = function (next) {{\n    next(OK, 'localhost')\n}}\n\
         exports.hook_get_mx = function (next, hmail, domain) {{\n    \
         next(OK, {{ priority: 10, exchange: '{}', port: {} }})\n}}\n",
        sink.ip(),
        sink.port()
    )
}

/// Creates an instance directory (`haraka -i`, which writes Haraka's
/// default configuration), configures it as an outbound relay to `sink`
/// with its queue in `queue_dir`, and starts it.
pub async fn start(
    bench: &Bench,
    install: &Path,
    queue_dir: &Path,
    sink: SocketAddr,
) -> anyhow::Result<Haraka> {
    let program = program(install)?;
    let dir = bench.daemon_dir("haraka")?.join("instance");
    let created = Command::new(&program)
        .arg("-i")
        .arg(&dir)
        .output()
        .context("running haraka -i")?;
    if !created.status.success() {
        bail!(
            "haraka -i {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("config");
    let files = [
        ("plugins", "bench_routes\nrelay\n".to_string()),
        // nodes=0: one process, no cluster, as relay-out is one process.
        ("smtp.ini", format!("[main]\nlisten={addr}\nnodes=0\n")),
        ("relay.ini", "[relay]\nacl=true\n".to_string()),
        ("relay_acl_allow", "127.0.0.0/8\n".to_string()),
        ("queue_dir", format!("{}\n", queue_dir.display())),
        ("me", "haraka.bench.test\n".to_string()),
        // Haraka logs every transaction at info; notice keeps the log
        // from costing more than relay-out's one line per message would.
        ("log.ini", "[main]\nlevel=notice\n".to_string()),
    ];
    for (name, text) in files {
        std::fs::write(config.join(name), text)?;
    }
    std::fs::write(dir.join("plugins/bench_routes.js"), routes_plugin(sink))?;
    let instance = dir.display().to_string();
    let log = dir.with_file_name("haraka.log");
    let daemon = Daemon::start("haraka", &program, &["-c", &instance], &[], log, addr)?;
    Ok(Haraka {
        measured: Measured::settle(daemon).await?,
        addr,
    })
}
