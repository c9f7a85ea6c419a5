//! relay-out: Postern's outbound relay. Accepts mail only from the mail
//! server's address (relay_acl_allow), queues it durably, and delivers it to
//! the recipients' MX hosts, retrying and bouncing as Haraka's outbound does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use relay_out::{check, cli, daemon};

/// Command line, as `haraka -c DIR`, plus the queue tools.
#[derive(Debug, Parser)]
#[command(
    name = "relay-out",
    version,
    about = "Postern outbound relay: queues mail from your mail server and delivers it to the internet"
)]
struct Cli {
    /// Configuration directory (Haraka layout; a Haraka instance directory
    /// holding config/ works too).
    #[arg(
        short = 'c',
        long = "config",
        default_value = "/etc/postern/out",
        global = true
    )]
    config: PathBuf,
    /// Check the configuration, print what it means, and exit: 0 if relay-out
    /// would run with it, 1 if not.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do instead of running the daemon.
#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and act on the queue (safe while the daemon runs).
    Queue {
        #[command(subcommand)]
        action: cli::QueueCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Queue { action }) = &cli.command {
        return cli::run(&cli.config, action);
    }
    if cli.check {
        return smtp_core::app::print_check("relay-out", check::report(&cli.config));
    }
    smtp_core::app::run_daemon("relay-out", daemon::run(&cli.config))
}
