//! relay-out: Postern's outbound relay. Accepts mail only from the mail
//! server's address (relay_acl_allow), queues it durably, and delivers it to
//! the recipients' MX hosts.

mod acl;
// Not used by the daemon yet; the queue runner will build notices and
// schedule retries with them.
#[allow(dead_code)]
mod bounce;
mod check;
mod config;
mod policy;
// The delivery loop and the `queue` CLI that use the spool are not written yet.
#[allow(dead_code, unused_imports)]
mod queue;
#[allow(dead_code)]
mod schedule;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use smtp_core::config::{ConfigDir, CoreSettings};
use smtp_core::server::Server;
use tracing::warn;

use crate::config::RelayOutSettings;

/// Command line, as `haraka -c DIR`.
#[derive(Debug, Parser)]
#[command(
    name = "relay-out",
    version,
    about = "Postern outbound relay: queues mail from your mail server and delivers it to the internet"
)]
struct Cli {
    /// Configuration directory (Haraka layout; a Haraka instance directory
    /// holding config/ works too).
    #[arg(short = 'c', long = "config", default_value = "/etc/postern/out")]
    config: PathBuf,
    /// Check the configuration, print what it means, and exit: 0 if relay-out
    /// would run with it, 1 if not.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.check {
        return smtp_core::app::print_check("relay-out", check::report(&cli.config));
    }
    smtp_core::app::run_daemon("relay-out", run(&cli.config))
}

async fn run(config: &std::path::Path) -> anyhow::Result<()> {
    let dir = ConfigDir::open(config)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayOutSettings::load(&dir)?;
    for warning in core.warnings.iter().chain(&settings.warnings) {
        warn!("config: {warning}");
    }
    let acl = acl::RelayAcl::new(&settings, &core.listen)?;
    let policy = Arc::new(policy::RelayOut::new(acl));
    Server::from_settings(&core, policy)
        .context("starting the server")?
        .run()
        .await?;
    Ok(())
}
