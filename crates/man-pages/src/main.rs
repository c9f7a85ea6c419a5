//! `postern-man-pages DIR`: writes relay-in.8 and relay-out.8, and a page per
//! subcommand (relay-in-queue.8, relay-in-queue-list.8, ...) that the
//! SUBCOMMANDS sections point to, into DIR. clap_mangen renders them from the
//! binaries' own clap definitions, so the pages cannot drift from `--help`.
//! A separate binary, so the daemons carry neither the generator nor a
//! hidden option for it.
//!
//! Section 8 (system administration): the Debian package installs both
//! daemons in /usr/sbin.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::CommandFactory;

/// The section the pages are written for, and their file suffix.
const SECTION: &str = "8";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        bail!("usage: postern-man-pages DIR (writes relay-in.{SECTION} and relay-out.{SECTION})");
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for command in [
        relay_in::args::Cli::command(),
        relay_out::args::Cli::command(),
    ] {
        write_pages(&dir, command)?;
    }
    Ok(())
}

/// Writes the page of `command` and, recursively, of its subcommands, each
/// named as clap_mangen's SUBCOMMANDS section refers to it (parent-child).
fn write_pages(dir: &Path, command: clap::Command) -> anyhow::Result<()> {
    // `help` as a subcommand only repeats --help: no page, and no reference
    // to a page that does not exist.
    let command = command.disable_help_subcommand(true);
    let name = command.get_name().to_string();
    let path = dir.join(format!("{name}.{SECTION}"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section(SECTION)
        .source(format!("Postern {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        // Leaked: clap takes an owned name only with its `string` feature,
        // which would rebuild clap for the whole workspace; this process
        // writes a handful of pages and exits.
        let sub_name: &'static str = format!("{name}-{}", sub.get_name()).leak();
        write_pages(dir, sub.clone().name(sub_name))?;
    }
    Ok(())
}
