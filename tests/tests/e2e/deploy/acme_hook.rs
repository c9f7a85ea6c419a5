//! The acme.sh deploy hook against a test certificate, with a stub
//! `systemctl` on PATH that records its arguments.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, ensure};
use postern_tests::certs::TestCa;
use smtp_core::tls::{TlsFiles, TlsMinVersion, load_server_config};

use super::{mail_gid, repo, require_root, run, text};

/// A directory with a stub `systemctl` that records each call's arguments,
/// one line per call, and succeeds.
struct StubSystemctl {
    dir: tempfile::TempDir,
}

impl StubSystemctl {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("systemctl");
        let log = dir.path().join("calls");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { dir })
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        )
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// acme.sh's files for one certificate, as it hands them to a deploy hook.
struct AcmeFiles {
    dir: tempfile::TempDir,
    key_pem: String,
    fullchain_pem: String,
}

impl AcmeFiles {
    fn issue(domain: &str) -> anyhow::Result<Self> {
        let ca = TestCa::new("Test ACME CA")?;
        let cert = ca.issue(domain)?;
        let dir = tempfile::tempdir()?;
        let fullchain_pem = format!("{}{}", cert.cert_pem, ca.cert_pem);
        std::fs::write(dir.path().join("key"), &cert.key_pem)?;
        std::fs::write(dir.path().join("cer"), &cert.cert_pem)?;
        std::fs::write(dir.path().join("ca"), &ca.cert_pem)?;
        std::fs::write(dir.path().join("fullchain"), &fullchain_pem)?;
        Ok(Self {
            dir,
            key_pem: cert.key_pem,
            fullchain_pem,
        })
    }

    /// `KEY CERT CA FULLCHAIN`, acme.sh's argument order after the domain.
    fn args(&self) -> Vec<PathBuf> {
        ["key", "cer", "ca", "fullchain"]
            .iter()
            .map(|name| self.dir.path().join(name))
            .collect()
    }
}

fn hook() -> PathBuf {
    repo().join("deploy/acme-deploy-hook.sh")
}

fn run_hook(
    stub: &StubSystemctl,
    pem: &Path,
    domain: &str,
    files: &AcmeFiles,
) -> anyhow::Result<Output> {
    run(Command::new("sh")
        .arg(hook())
        .arg(domain)
        .args(files.args())
        .env("PATH", stub.path_env())
        .env("DEPLOY_POSTERN_PEM", pem)
        .env_remove("DEPLOY_POSTERN_GROUP")
        .env_remove("DEPLOY_POSTERN_SERVICES"))
}

#[test]
fn acme_hook_writes_the_combined_pem_and_reloads_both() -> anyhow::Result<()> {
    require_root()?;
    let mail = mail_gid()?;
    let stub = StubSystemctl::new()?;
    let tls = tempfile::tempdir()?;
    let pem = tls.path().join("mail.example.com.pem");
    // The previous certificate, held open like a daemon in mid-read would.
    std::fs::write(&pem, "the old certificate\n")?;
    let old_inode = std::fs::metadata(&pem)?.ino();
    let old_reader = std::fs::File::open(&pem)?;

    let files = AcmeFiles::issue("mail.example.com")?;
    let output = run_hook(&stub, &pem, "mail.example.com", &files)?;
    ensure!(output.status.success(), "hook failed:\n{}", text(&output));

    assert_eq!(
        std::fs::read_to_string(&pem)?,
        format!("{}{}", files.key_pem, files.fullchain_pem),
        "key first, then the full chain"
    );
    let meta = std::fs::metadata(&pem)?;
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), mail, "group mail");
    // Replaced by rename, not rewritten in place: the open handle still
    // reads the old file, and no temporary file is left behind.
    assert_ne!(
        meta.ino(),
        old_inode,
        "the PEM must be replaced by a rename"
    );
    assert_eq!(
        std::io::read_to_string(old_reader)?,
        "the old certificate\n"
    );
    let left: Vec<_> = std::fs::read_dir(tls.path())?
        .map(|item| item.map(|i| i.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(left, [std::ffi::OsString::from("mail.example.com.pem")]);

    // What the daemons will read: one key matching the first of the chain.
    load_server_config(
        &TlsFiles {
            key: pem.clone(),
            cert: pem.clone(),
        },
        TlsMinVersion::Tls12,
    )
    .context("the daemons' TLS loader rejects the combined PEM")?;

    assert_eq!(
        stub.calls(),
        ["try-reload-or-restart relay-in.service relay-out.service"]
    );
    Ok(())
}

#[test]
fn acme_hook_refuses_a_missing_key_and_keeps_the_old_pem() -> anyhow::Result<()> {
    require_root()?;
    let stub = StubSystemctl::new()?;
    let tls = tempfile::tempdir()?;
    let pem = tls.path().join("mail.example.com.pem");
    std::fs::write(&pem, "the old certificate\n")?;
    let files = AcmeFiles::issue("mail.example.com")?;
    std::fs::write(files.dir.path().join("key"), "")?;

    let output = run_hook(&stub, &pem, "mail.example.com", &files)?;
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("no private key"),
        "{}",
        text(&output)
    );
    assert_eq!(std::fs::read_to_string(&pem)?, "the old certificate\n");
    assert_eq!(
        std::fs::read_dir(tls.path())?.count(),
        1,
        "no temporary file left"
    );
    assert!(
        stub.calls().is_empty(),
        "nothing to reload: {:?}",
        stub.calls()
    );
    Ok(())
}

/// acme.sh sources the hook into its own shell and calls `<hook>_deploy`
/// with its helper functions defined; the hook must neither run its
/// command-line part nor exit that shell, and it saves its settings with
/// `_savedeployconf` for renewals.
#[test]
fn acme_hook_works_when_sourced_by_acme_sh() -> anyhow::Result<()> {
    require_root()?;
    let stub = StubSystemctl::new()?;
    let tls = tempfile::tempdir()?;
    let files = AcmeFiles::issue("mail.example.com")?;
    let saved = tls.path().join("saved");
    let script = format!(
        r#"
_info() {{ echo "info: $*"; }}
_err() {{ echo "err: $*" >&2; }}
_debug() {{ :; }}
_savedomainconf() {{ :; }}
_getdeployconf() {{ :; }}
_savedeployconf() {{ echo "$1=$2" >> '{saved}'; }}
. '{hook}'
DEPLOY_POSTERN_PEM='{pem_dir}/mail.example.com.pem'
DEPLOY_POSTERN_SERVICES=relay-in
haraka_deploy mail.example.com '{key}' '{cer}' '{ca}' '{fullchain}' || exit 3
echo still-in-acme.sh
"#,
        saved = saved.display(),
        hook = hook().display(),
        pem_dir = tls.path().display(),
        key = files.args()[0].display(),
        cer = files.args()[1].display(),
        ca = files.args()[2].display(),
        fullchain = files.args()[3].display(),
    );
    let output = run(Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PATH", stub.path_env())
        .env_remove("DEPLOY_POSTERN_PEM")
        .env_remove("DEPLOY_POSTERN_SERVICES"))?;
    let report = text(&output);
    assert!(
        output.status.success() && report.contains("still-in-acme.sh"),
        "{report}"
    );
    assert!(
        report.contains("info: postern: wrote"),
        "uses acme.sh's _info:\n{report}"
    );
    assert_eq!(stub.calls(), ["try-reload-or-restart relay-in.service"]);
    let saved = std::fs::read_to_string(&saved)?;
    assert!(
        saved.contains(&format!(
            "DEPLOY_POSTERN_PEM={}/mail.example.com.pem",
            tls.path().display()
        )) && saved.contains("DEPLOY_POSTERN_SERVICES=relay-in"),
        "settings saved for renewals:\n{saved}"
    );
    Ok(())
}
