//! The deployment files: the systemd units pass `systemd-analyze verify` and
//! `security` (exposure at most 2.0), `deploy/install.sh` installs the
//! expected tree into a scratch root and changes nothing when run again, and
//! the acme.sh deploy hook writes the combined PEM atomically and reloads
//! both services through `systemctl` (a stub on PATH that records its
//! arguments).
//!
//! Nothing here touches the real system: installs go into temp dirs, units
//! are analysed offline. Run as root (the README's test command does): the
//! install sets owners, and the hook gives the PEM group `mail`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail, ensure};
use postern_tests::certs::TestCa;
use postern_tests::process::binary;
use smtp_core::tls::{TlsFiles, load_server_config};

/// The two units, with what differs between them.
const UNITS: [(&str, &str); 2] = [
    ("relay-in", "/etc/postern/in"),
    ("relay-out", "/etc/postern/out"),
];

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
    // SAFETY: geteuid has no preconditions and touches no memory.
    let euid = unsafe { libc::geteuid() };
    ensure!(
        euid == 0,
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

fn systemd_analyze() -> Command {
    let mut command = Command::new("systemd-analyze");
    command.env("SYSTEMD_COLORS", "0").env("SYSTEMD_PAGER", "");
    command
}

fn require_systemd_analyze() -> anyhow::Result<()> {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        _ => bail!("systemd-analyze not found: install the systemd package"),
    }
}

// ---- the units ------------------------------------------------------------

/// `(section, key, value)` of every assignment in a unit file.
fn unit_settings(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            settings.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
    }
    settings
}

fn values<'a>(settings: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn read_unit(name: &str) -> anyhow::Result<String> {
    let path = repo().join("systemd").join(format!("{name}.service"));
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

#[test]
fn units_say_what_the_issue_asks_for() -> anyhow::Result<()> {
    for (name, config) in UNITS {
        let settings = unit_settings(&read_unit(name)?);
        let one = |key: &str| -> anyhow::Result<String> {
            match values(&settings, "Service", key).as_slice() {
                [value] => Ok((*value).to_owned()),
                other => bail!("{name}: expected one {key}=, found {other:?}"),
            }
        };
        let binary = format!("/usr/local/bin/{name}");
        assert_eq!(one("Type")?, "notify", "{name}");
        assert_eq!(one("User")?, "postern", "{name}");
        assert_eq!(one("Group")?, "mail", "{name}");
        assert_eq!(one("ExecStart")?, format!("{binary} -c {config}"), "{name}");
        assert_eq!(
            one("ExecStartPre")?,
            format!("{binary} --check -c {config}"),
            "{name}"
        );
        assert_eq!(one("ExecReload")?, "/bin/kill -HUP $MAINPID", "{name}");
        assert_eq!(one("Restart")?, "on-failure", "{name}");
        assert_eq!(one("NoNewPrivileges")?, "yes", "{name}");
        assert_eq!(one("ProtectSystem")?, "strict", "{name}");
        assert_eq!(
            one("RestrictAddressFamilies")?,
            "AF_INET AF_INET6 AF_UNIX",
            "{name}"
        );
        assert_eq!(one("UMask")?, "0077", "{name}");
        assert!(
            values(&settings, "Service", "MemoryMax").len() == 1,
            "{name}: MemoryMax"
        );
        assert!(
            values(&settings, "Service", "SystemCallFilter").contains(&"@system-service"),
            "{name}: SystemCallFilter"
        );
        let nofile: u32 = one("LimitNOFILE")?.parse()?;
        assert!(
            nofile >= 2 * 1000 + 100,
            "{name}: LimitNOFILE {nofile} is too low for 1000 connections"
        );
        let alias = format!("haraka-{}.service", name.trim_start_matches("relay-"));
        assert_eq!(
            values(&settings, "Install", "Alias"),
            [alias.as_str()],
            "{name}"
        );
        assert_eq!(
            values(&settings, "Install", "WantedBy"),
            ["multi-user.target"],
            "{name}"
        );
    }

    let relay_in = unit_settings(&read_unit("relay-in")?);
    assert_eq!(
        values(&relay_in, "Service", "AmbientCapabilities"),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(
        values(&relay_in, "Service", "CapabilityBoundingSet"),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert!(
        values(&relay_in, "Service", "ReadWritePaths").is_empty(),
        "relay-in writes nothing"
    );

    let relay_out = unit_settings(&read_unit("relay-out")?);
    assert_eq!(
        values(&relay_out, "Service", "ReadWritePaths"),
        ["/var/spool/postern/queue"]
    );
    assert_eq!(values(&relay_out, "Service", "CapabilityBoundingSet"), [""]);
    for key in ["Wants", "After"] {
        let listed = values(&relay_out, "Unit", key).join(" ");
        assert!(
            listed
                .split_whitespace()
                .any(|unit| unit == "wg-quick@wg0.service"),
            "relay-out binds the WireGuard address: {key}= must name wg-quick@wg0.service, got {listed:?}"
        );
    }
    Ok(())
}

/// `systemd-analyze verify` insists that ExecStart's binary exists, so it
/// checks a copy whose only change is the binary's path (the freshly built
/// one instead of /usr/local/bin/...).
#[test]
fn units_pass_systemd_analyze_verify() -> anyhow::Result<()> {
    require_systemd_analyze()?;
    let dir = tempfile::tempdir()?;
    for (name, _) in UNITS {
        let unit = read_unit(name)?;
        let installed = format!("/usr/local/bin/{name} ");
        let built = format!("{} ", binary(name).display());
        let copy = unit.replace(&installed, &built);
        let changed: Vec<_> = unit
            .lines()
            .zip(copy.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            changed.len(),
            2,
            "{name}: only ExecStartPre and ExecStart name the binary"
        );
        let path = dir.path().join(format!("{name}.service"));
        std::fs::write(&path, copy)?;

        let output = run(systemd_analyze().arg("verify").arg("--man=no").arg(&path))?;
        let report = text(&output);
        let about_us: Vec<_> = report
            .lines()
            .filter(|line| line.contains(name) || line.contains(&*dir.path().to_string_lossy()))
            .collect();
        assert!(
            output.status.success() && about_us.is_empty(),
            "systemd-analyze verify {name}.service is not clean ({}):\n{report}",
            output.status
        );
    }
    Ok(())
}

#[test]
fn units_exposure_is_at_most_2() -> anyhow::Result<()> {
    require_systemd_analyze()?;
    for (name, _) in UNITS {
        let path = repo().join("systemd").join(format!("{name}.service"));
        let output = run(systemd_analyze()
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path))?;
        let report = text(&output);
        let marker = format!("Overall exposure level for {name}.service:");
        let exposure: f64 = report
            .lines()
            .find_map(|line| line.split_once(&marker))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .with_context(|| format!("no exposure level in:\n{report}"))?;
        assert!(
            output.status.success() && exposure <= 2.0,
            "{name}: exposure {exposure} (at most 2.0 allowed):\n{report}"
        );
    }
    Ok(())
}

// ---- install.sh -----------------------------------------------------------

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

// ---- the acme.sh deploy hook --------------------------------------------

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
    load_server_config(&TlsFiles {
        key: pem.clone(),
        cert: pem.clone(),
    })
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
