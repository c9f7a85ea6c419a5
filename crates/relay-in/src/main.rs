//! relay-in: Postern's public MX. Accepts mail for the domains in
//! `host_list` and hands each message to the backend mail server with
//! XCLIENT, answering the sender only with the backend's verdict.

mod backup;
mod check;
mod config;
mod forward;
#[cfg(test)]
mod key_coverage;
mod policy;
mod probe;
mod recipients;
mod reuse;
mod verified;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use relay_in::args::{Cli, Command};
use smtp_core::config::{ConfigDir, CoreSettings};
use smtp_core::server::Server;
use tracing::warn;

use crate::config::RelayInSettings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Queue { action }) = &cli.command {
        return backup::queue_command(&cli.config, action);
    }
    if cli.check {
        let code = smtp_core::app::print_check("relay-in", check::report(&cli.config));
        if cli.probe && code == ExitCode::SUCCESS {
            return check::print_probe(&cli.config);
        }
        return code;
    }
    // relay-in only waits on sockets: one CPU, one thread (smtp_core::app::Runtime).
    smtp_core::app::run_daemon_on(
        "relay-in",
        smtp_core::app::Runtime::SingleOnOneCpu,
        run(&cli.config),
    )
}

async fn run(config: &std::path::Path) -> anyhow::Result<()> {
    let dir = ConfigDir::open(config)?;
    let core = CoreSettings::load(&dir)?;
    let settings = RelayInSettings::load(&dir)?;
    for warning in core.warnings.iter().chain(&settings.warnings) {
        warn!("config: {warning}");
    }
    let health = probe::Health::new(probe::Intervals::configured(
        settings.forward.probe_interval,
    ));
    let backup = match settings.forward.mode {
        config::ForwardMode::Spool => Some(backup::BackupSpool::open(&settings.forward.spool)?),
        _ => None,
    };
    smtp_core::app::give_back_freed_memory();
    let forwarder = forward::Forwarder::new(&core.me, settings.forward, &health)?;
    health.watch(forwarder.backends());
    let policy = Arc::new(policy::RelayIn::new(
        settings.local_domains,
        forwarder,
        backup.clone(),
    ));
    let backup_at_exit = backup.clone();
    if let Some(backup) = &backup {
        tokio::spawn(Arc::clone(backup).save_verified_forever());
        tokio::spawn(backup::deliver_forever(
            Arc::clone(backup),
            Arc::clone(&policy),
            core.me.clone(),
        ));
    }
    let reload = {
        let policy = Arc::clone(&policy);
        let config = config.to_path_buf();
        let me = core.me.clone();
        let plugins = Arc::clone(&core.plugins);
        // SIGHUP also flushes the backup spool, as `postqueue -f`.
        Box::new(move || {
            policy.reload(&config, &me, &plugins);
            if let Some(backup) = &backup {
                backup.flush();
            }
        })
    };
    let served = match Server::from_settings(&core, policy) {
        Ok(server) => server.on_reload(reload).run().await.map_err(Into::into),
        Err(error) => Err(anyhow::Error::from(error).context("starting the server")),
    };
    if let Some(backup) = &backup_at_exit {
        backup.release();
    }
    served
}
