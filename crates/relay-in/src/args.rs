//! relay-in's command line. Public (through the library target) so that the
//! man page generator (crates/man-pages) renders the page from this one
//! definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Command line, as `haraka -c DIR`.
#[derive(Debug, Parser)]
#[command(
    name = "relay-in",
    version,
    about = "Postern inbound relay: public MX that forwards to your mail server with XCLIENT"
)]
pub struct Cli {
    /// Configuration directory (Haraka layout; a Haraka instance directory
    /// holding config/ works too).
    #[arg(
        short = 'c',
        long = "config",
        default_value = "/etc/postern/in",
        global = true
    )]
    pub config: PathBuf,
    /// Check the configuration, print what it means, and exit: 0 if relay-in
    /// would run with it, 1 if not.
    #[arg(long)]
    pub check: bool,
    /// With --check: also connect to each backend once, as relay-in does at
    /// startup, and exit 1 if one cannot be reached or does not offer the
    /// XCLIENT that smtp_forward.ini requires.
    #[arg(long, requires = "check")]
    pub probe: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of running the daemon.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and act on the backup spool (smtp_forward.ini mode=spool;
    /// safe while the daemon runs).
    Queue {
        #[command(subcommand)]
        action: spool::queue_tool::QueueCommand,
    },
}
