//! relay-out's command line. Public so that the man page generator
//! (crates/man-pages) renders the page from this one definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cli;

/// Command line, as `haraka -c DIR`, plus the queue tools.
#[derive(Debug, Parser)]
#[command(
    name = "relay-out",
    version,
    about = "Postern outbound relay: queues mail from your mail server and delivers it to the internet"
)]
pub struct Cli {
    /// Configuration directory (Haraka layout; a Haraka instance directory
    /// holding config/ works too).
    #[arg(
        short = 'c',
        long = "config",
        default_value = "/etc/postern/out",
        global = true
    )]
    pub config: PathBuf,
    /// Check the configuration, print what it means, and exit: 0 if relay-out
    /// would run with it, 1 if not.
    #[arg(long)]
    pub check: bool,
    /// With --check: also check the reverse DNS of the source address of
    /// each address family (its PTR must resolve back to it), as relay-out
    /// does at startup and daily, and exit 1 if the IPv4 one fails.
    #[arg(long, requires = "check")]
    pub probe: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of running the daemon.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and act on the queue (safe while the daemon runs).
    Queue {
        #[command(subcommand)]
        action: cli::QueueCommand,
    },
    /// TLS-RPT (RFC 8460): the pending counts, or send the reports now.
    Tlsrpt {
        #[command(subcommand)]
        action: crate::tlsrpt::TlsRptCommand,
    },
}
