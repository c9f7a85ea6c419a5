//! `deploy/install.sh` into scratch roots: the expected tree, owners and
//! modes, a second run that changes nothing, `--prefix`, `--setcap` and
//! `--authbind`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use postern_tests::process::binary;

use super::units::{read_unit, unit_settings, values};
use super::{
    POSTERN_USER, SCRATCH_UID, UNITS, mail_gid, postern_user_exists, repo, require_root, run, text,
};

/// What a file looks like on disk, down to its change time: a second
/// install that "changes nothing" must leave every field as it was.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
    content: Option<Vec<u8>>,
}

fn snapshot(root: &Path) -> anyhow::Result<BTreeMap<PathBuf, Entry>> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir)? {
            let path = item?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let content = if meta.is_file() {
                Some(std::fs::read(&path)?)
            } else {
                None
            };
            if meta.is_dir() {
                pending.push(path.clone());
            }
            entries.insert(
                path.strip_prefix(root)?.to_path_buf(),
                Entry {
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    ctime: (meta.ctime(), meta.ctime_nsec()),
                    content,
                },
            );
        }
    }
    Ok(entries)
}

fn install_sh(root: &Path, extra: &[&str]) -> anyhow::Result<String> {
    let bin_dir = binary("relay-in")
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let output = run(Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .arg("--destdir")
        .arg(root)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--owner")
        .arg(format!("{SCRATCH_UID}:mail"))
        .args(extra)
        .env_remove("DESTDIR")
        .env_remove("PREFIX"))?;
    let report = text(&output);
    ensure!(
        output.status.success(),
        "install.sh failed ({}):\n{report}",
        output.status
    );
    Ok(report)
}

fn assert_node(root: &Path, path: &str, uid: u32, gid: u32, mode: u32) -> anyhow::Result<()> {
    let meta = std::fs::metadata(root.join(path)).with_context(|| format!("{path} is missing"))?;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777),
        (uid, gid, mode),
        "{path}: (uid, gid, mode)"
    );
    Ok(())
}

/// The example configuration files install.sh copies (the READMEs excluded).
fn example_config(dir: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for item in std::fs::read_dir(repo().join(dir))? {
        let name = item?.file_name().to_string_lossy().into_owned();
        if name != "README.md" {
            names.push(name);
        }
    }
    names.sort();
    ensure!(!names.is_empty(), "{dir} is empty");
    Ok(names)
}

#[test]
fn install_into_a_scratch_root_twice() -> anyhow::Result<()> {
    require_root()?;
    let mail = mail_gid()?;
    let scratch = tempfile::tempdir()?;
    let root = scratch.path();
    install_sh(root, &[])?;

    for name in ["relay-in", "relay-out"] {
        let path = format!("usr/local/bin/{name}");
        assert_node(root, &path, 0, 0, 0o755)?;
        assert_eq!(
            std::fs::read(root.join(&path))?,
            std::fs::read(binary(name))?,
            "{path}"
        );
        let unit = format!("etc/systemd/system/{name}.service");
        assert_node(root, &unit, 0, 0, 0o644)?;
        assert_eq!(
            std::fs::read_to_string(root.join(&unit))?,
            read_unit(name)?,
            "{unit}"
        );
    }
    assert_node(
        root,
        "usr/local/share/postern/acme-deploy-hook.sh",
        0,
        0,
        0o755,
    )?;
    for dir in [
        "etc/postern",
        "etc/postern/tls",
        "etc/postern/in",
        "etc/postern/out",
    ] {
        assert_node(root, dir, 0, mail, 0o750)?;
    }
    for (source, instance) in [("config-in", "in"), ("config-out", "out")] {
        let installed: Vec<_> = {
            let mut names: Vec<_> = std::fs::read_dir(root.join("etc/postern").join(instance))?
                .map(|item| item.map(|i| i.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.sort();
            names
        };
        assert_eq!(installed, example_config(source)?, "etc/postern/{instance}");
        for name in installed {
            let path = format!("etc/postern/{instance}/{name}");
            assert_node(root, &path, 0, mail, 0o640)?;
            assert_eq!(
                std::fs::read(root.join(&path))?,
                std::fs::read(repo().join(source).join(&name))?,
                "{path}"
            );
        }
    }
    assert_node(root, "var/spool/postern/queue", SCRATCH_UID, mail, 0o700)?;
    assert_node(root, "var/spool/postern/in", SCRATCH_UID, mail, 0o700)?;
    assert!(
        !root.join("etc/authbind").exists(),
        "authbind only with --authbind"
    );

    // The operator edits a file; the second run must leave it, and
    // everything else, exactly as it is.
    let host_list = root.join("etc/postern/in/host_list");
    std::fs::write(&host_list, "mine.example\n")?;
    let before = snapshot(root)?;
    let report = install_sh(root, &[])?;
    let after = snapshot(root)?;
    assert_eq!(std::fs::read_to_string(&host_list)?, "mine.example\n");
    for (path, entry) in &before {
        assert_eq!(
            Some(entry),
            after.get(path),
            "{} changed on the second run",
            path.display()
        );
    }
    assert_eq!(before.len(), after.len(), "the second run added files");
    for verb in ["installed", "updated", "created", "set the"] {
        assert!(
            !report.contains(&format!("install.sh: {verb}")),
            "the second run reports a change:\n{report}"
        );
    }
    Ok(())
}

#[test]
fn install_with_another_prefix_points_the_units_there() -> anyhow::Result<()> {
    require_root()?;
    let scratch = tempfile::tempdir()?;
    let root = scratch.path();
    install_sh(root, &["--prefix", "/opt/postern"])?;
    for (name, config) in UNITS {
        assert_node(root, &format!("opt/postern/bin/{name}"), 0, 0, 0o755)?;
        let unit =
            std::fs::read_to_string(root.join(format!("etc/systemd/system/{name}.service")))?;
        let settings = unit_settings(&unit);
        assert_eq!(
            values(&settings, "Service", "ExecStart"),
            [format!("/opt/postern/bin/{name} -c {config}").as_str()]
        );
        assert!(!unit.contains("/usr/local/bin"), "{name}: {unit}");
    }
    assert!(!root.join("usr/local/bin").exists());
    Ok(())
}

#[test]
fn install_setcap_and_authbind_variants() -> anyhow::Result<()> {
    require_root()?;
    ensure!(
        Command::new("getcap").arg("--help").output().is_ok(),
        "getcap/setcap not found: install libcap2-bin"
    );
    let mail = mail_gid()?;
    let scratch = tempfile::tempdir()?;
    let root = scratch.path();
    let report = install_sh(root, &["--setcap", "--authbind"])?;
    assert!(
        report.contains("authbind --deep /usr/local/bin/relay-in -c /etc/postern/in"),
        "install.sh must print the authbind command line:\n{report}"
    );

    let caps = |name: &str| -> anyhow::Result<String> {
        let output = run(Command::new("getcap").arg(root.join("usr/local/bin").join(name)))?;
        Ok(text(&output))
    };
    assert!(
        caps("relay-in")?.contains("cap_net_bind_service"),
        "{}",
        caps("relay-in")?
    );
    assert!(
        !caps("relay-out")?.contains("cap_net_bind_service"),
        "relay-out listens on 2526 and needs no capability"
    );
    assert_node(root, "etc/authbind/byport/25", SCRATCH_UID, mail, 0o500)?;

    let before = snapshot(root)?;
    install_sh(root, &["--setcap", "--authbind"])?;
    assert_eq!(before, snapshot(root)?, "the second run changed something");
    Ok(())
}

/// What packagers and CI do: DESTDIR and --prefix with the default owner,
/// on a machine where the user postern does not exist. The spool is left
/// to root and the chown for the target is printed.
#[test]
fn install_into_destdir_without_the_user() -> anyhow::Result<()> {
    require_root()?;
    let _user = POSTERN_USER.lock().unwrap_or_else(|e| e.into_inner());
    ensure!(
        !postern_user_exists()?,
        "the user postern exists on this machine; this test needs it absent"
    );
    let mail = mail_gid()?;
    let scratch = tempfile::tempdir()?;
    let root = scratch.path();
    let bin_dir = binary("relay-in")
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let output = run(Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .args(["--prefix", "/opt/postern", "--bin-dir"])
        .arg(&bin_dir)
        .env("DESTDIR", root)
        .env_remove("PREFIX"))?;
    let report = text(&output);
    ensure!(
        output.status.success(),
        "install.sh failed ({}):\n{report}",
        output.status
    );
    assert!(
        report.contains("chown postern:mail /var/spool/postern/queue /var/spool/postern/in"),
        "install.sh does not say what to apply on the target:\n{report}"
    );
    assert_node(root, "opt/postern/bin/relay-in", 0, 0, 0o755)?;
    assert_node(root, "var/spool/postern/queue", 0, mail, 0o700)?;
    assert_node(root, "var/spool/postern/in", 0, mail, 0o700)?;
    assert_node(root, "etc/postern/in", 0, mail, 0o750)?;
    ensure!(
        !postern_user_exists()?,
        "a DESTDIR install created the user"
    );
    Ok(())
}
