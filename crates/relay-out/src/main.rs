//! relay-out: Postern's outbound relay. Accepts mail only from the mail
//! server's address (relay_acl_allow), queues it durably, and delivers it to
//! the recipients' MX hosts, retrying and bouncing as Haraka's outbound does.

use std::process::ExitCode;

use clap::Parser;
use relay_out::args::{Cli, Command};
use relay_out::{check, cli, daemon};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Queue { action }) = &cli.command {
        return cli::run(&cli.config, action);
    }
    if let Some(Command::Tlsrpt { action }) = &cli.command {
        return relay_out::tlsrpt::command(&cli.config, action);
    }
    if cli.check {
        let code = smtp_core::app::print_check("relay-out", check::report(&cli.config));
        if cli.probe && code == ExitCode::SUCCESS {
            return check::print_probe(&cli.config);
        }
        return code;
    }
    smtp_core::app::run_daemon("relay-out", daemon::run(&cli.config))
}
