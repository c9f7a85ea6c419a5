//! The deployment files: the systemd units pass `systemd-analyze verify` and
//! `security` (exposure at most 2.0), `deploy/install.sh` installs the
//! expected tree into a scratch root and changes nothing when run again, and
//! the acme.sh deploy hook writes the combined PEM atomically and reloads
//! both services through `systemctl` (a stub on PATH that records its
//! arguments).
//!
//! Nothing here touches the real system (installs go into temp dirs, units
//! are analysed offline) except deploy::deb, which installs the Debian
//! package for real, only inside the sealed namespace, and purges it. Run as root (the README's test command does): the
//! install sets owners, and the hook gives the PEM group `mail`.
//!
//! The tests live in `deploy/` (one module per deployment file); this root
//! holds what they share.

mod acme_hook;
mod deb;
mod install;
mod units;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, ensure};

/// The two units, with what differs between them.
const UNITS: [(&str, &str); 2] = [
    ("relay-in", "/etc/postern/in"),
    ("relay-out", "/etc/postern/out"),
];

/// Held by the tests that need to know whether the user postern exists:
/// deploy::deb creates and removes it, install.sh's DESTDIR test needs it
/// absent.
static POSTERN_USER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn postern_user_exists() -> anyhow::Result<bool> {
    let output = run(Command::new("getent").args(["passwd", "postern"]))?;
    Ok(!output.stdout.is_empty())
}

/// A user id that exists nowhere: install.sh must apply a numeric owner as
/// given, which proves the chown happened.
const SCRATCH_UID: u32 = 64_999;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn require_root() -> anyhow::Result<()> {
    ensure!(
        postern_tests::process::running_as_root(),
        "this test sets owners and groups: run it as root (the README's .ci/test does)"
    );
    Ok(())
}

fn mail_gid() -> anyhow::Result<u32> {
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some("mail")).then(|| fields.nth(1)?.parse().ok())?
        })
        .context("no group 'mail' in /etc/group")
}

fn run(command: &mut Command) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    Ok(output)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
