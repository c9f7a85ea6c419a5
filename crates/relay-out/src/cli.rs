//! `relay-out queue ...`: the spool crate's queue tool on relay-out's queue,
//! found through the configuration as the daemon finds it.

use std::path::Path;
use std::process::ExitCode;

use smtp_core::config::ConfigDir;
pub use spool::queue_tool::QueueCommand;

use crate::config::RelayOutSettings;
use crate::queue;

/// Runs one queue command; an unreadable configuration or queue is an
/// error on stderr with exit status 1.
pub fn run(config: &Path, command: &QueueCommand) -> ExitCode {
    let opened = ConfigDir::open(config)
        .and_then(|dir| RelayOutSettings::load(&dir))
        .map_err(anyhow::Error::from)
        .and_then(|settings| Ok(queue::open(&settings.outbound.queue_dir)?));
    match opened {
        Ok(spool) => spool::queue_tool::run(&spool, command),
        Err(error) => {
            eprintln!("relay-out queue: {error:#}");
            ExitCode::FAILURE
        }
    }
}
