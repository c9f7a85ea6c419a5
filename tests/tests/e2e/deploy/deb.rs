//! The Debian package from `deploy/build-deb.sh`: what `dpkg-deb` says is in
//! it, lintian without errors or warnings, then a real `dpkg -i` on this
//! machine: the user, the directories and their modes, the units enabled
//! and clean under `systemd-analyze verify`, `--check` on the installed
//! configuration, one mail through each installed daemon (run as the
//! package's user, moved to loopback by `POSTERN_*` overrides), an upgrade
//! that keeps a locally edited conffile, and `dpkg --purge` leaving nothing.
//!
//! The package is built from the debug binaries the suite already has
//! (`--bin-dir`): a release build with fat LTO would take minutes.
//!
//! This one test changes the machine itself (/usr/sbin, /etc/postern,
//! /var/spool/postern, the user postern), so it runs only as root inside a
//! network namespace holding nothing but loopback (the README's test
//! command), refuses to run where Postern is already installed, and purges
//! in a Drop guard even when it fails. The other deploy tests install into
//! scratch roots and share none of these paths.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use postern_tests::backend::{Behaviour, RecordingBackend};
use postern_tests::dns::{TestDns, TestZone};
use postern_tests::process::{Relay, binary, free_port};
use postern_tests::smtp::SmtpClient;

use super::{POSTERN_USER, mail_gid, postern_user_exists, repo, require_root, run, text};

/// The version the upgrade goes to; dpkg orders it after the workspace's.
const UPGRADE_SUFFIX: &str = "+upgrade1";

/// Every path the package must hold (besides the conffiles, checked from
/// config-in/ and config-out/).
const PACKAGED: [&str; 10] = [
    "./usr/sbin/relay-in",
    "./usr/sbin/relay-out",
    "./usr/lib/systemd/system/relay-in.service",
    "./usr/lib/systemd/system/relay-out.service",
    "./usr/share/postern/acme-deploy-hook.sh",
    "./usr/share/doc/postern/README.md",
    "./usr/share/doc/postern/setup.md",
    "./usr/share/doc/postern/copyright",
    "./usr/share/man/man8/relay-in.8.gz",
    "./usr/share/man/man8/relay-out.8.gz",
];

/// What postinst creates and purge must remove, beyond the package's files.
const CREATED: [&str; 8] = [
    "/etc/postern",
    "/var/spool/postern",
    "/etc/systemd/system/multi-user.target.wants/relay-in.service",
    "/etc/systemd/system/multi-user.target.wants/relay-out.service",
    "/etc/systemd/system/haraka-in.service",
    "/etc/systemd/system/haraka-out.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/relay-in.service.dsh-also",
    "/var/lib/systemd/deb-systemd-helper-enabled/relay-out.service.dsh-also",
];

/// The test's own refusal to touch a machine it should not.
fn require_sealed_root() -> anyhow::Result<()> {
    require_root()?;
    // /proc/self/net follows the network namespace (/sys/class/net would
    // need sysfs remounted).
    let interfaces: Vec<_> = std::fs::read_to_string("/proc/self/net/dev")?
        .lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim().to_owned()))
        .collect();
    ensure!(
        interfaces == ["lo"],
        "this test installs a package on the machine: run it inside a network namespace \
         that holds only loopback (unshare --net, as .ci/test does); interfaces here: {interfaces:?}"
    );
    let status = dpkg_status()?;
    ensure!(
        status.is_empty(),
        "postern is already known to dpkg here ({status}): this test would purge it; \
         remove it first (dpkg --purge postern)"
    );
    for path in ["/etc/postern", "/var/spool/postern", "/usr/sbin/relay-in"] {
        ensure!(
            !Path::new(path).exists(),
            "{path} exists: this test would remove it; move it away first"
        );
    }
    ensure!(
        !postern_user_exists()?,
        "the user postern exists: the package's purge would remove it"
    );
    Ok(())
}

/// `dpkg-query`'s status of postern, empty when dpkg has never heard of it.
fn dpkg_status() -> anyhow::Result<String> {
    let output = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "postern"]))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Purges the package when dropped, so a failing test leaves the machine
/// as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "postern"])
            .stdin(Stdio::null())
            .output();
    }
}

fn build_deb(out: &Path, version: Option<&str>) -> anyhow::Result<PathBuf> {
    let bin_dir = binary("relay-in")
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let mut command = Command::new("bash");
    command
        .arg(repo().join("deploy/build-deb.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out)
        .args(["--compress", "gzip"])
        // The test runs lintian itself, to read its report.
        .arg("--no-lint");
    if let Some(version) = version {
        command.args(["--version", version]);
    }
    let output = run(&mut command)?;
    ensure!(
        output.status.success(),
        "build-deb.sh failed ({}):\n{}",
        output.status,
        text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let deb = PathBuf::from(
        stdout
            .lines()
            .last()
            .context("build-deb.sh printed nothing")?,
    );
    ensure!(
        deb.is_file(),
        "build-deb.sh printed {}, not a file",
        deb.display()
    );
    Ok(deb)
}

/// Runs a command that must succeed, returning its output.
fn must(command: &mut Command) -> anyhow::Result<String> {
    let output = run(command.stdin(Stdio::null()))?;
    let report = text(&output);
    ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{report}",
        output.status
    );
    Ok(report)
}

/// The conffiles the package must list: every example file.
fn expected_conffiles() -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for (source, instance) in [("config-in", "in"), ("config-out", "out")] {
        for item in std::fs::read_dir(repo().join(source))? {
            let name = item?.file_name().to_string_lossy().into_owned();
            if name != "README.md" {
                paths.push(format!("/etc/postern/{instance}/{name}"));
            }
        }
    }
    paths.sort();
    Ok(paths)
}

fn inspect(deb: &Path) -> anyhow::Result<()> {
    let info = must(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    let depends = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("Depends: "))
        .context("no Depends")?;
    let mut names: Vec<_> = depends
        .split(',')
        .map(|dep| dep.split_whitespace().next().unwrap_or_default())
        .collect();
    names.sort_unstable();
    // adduser for postinst; the C library and libgcc_s the binaries link.
    assert_eq!(
        names,
        ["adduser", "libc6", "libgcc-s1"],
        "Depends: {depends}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        // dpkg-deb marks an executable control member with '*'.
        assert!(
            info.lines()
                .any(|line| line.contains(&format!("*  {script} "))),
            "no executable {script} in:\n{info}"
        );
    }

    let control = tempfile::tempdir()?;
    must(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(control.path()),
    )?;
    let conffiles = std::fs::read_to_string(control.path().join("conffiles"))?;
    let mut listed: Vec<_> = conffiles.lines().map(str::to_owned).collect();
    listed.sort();
    assert_eq!(listed, expected_conffiles()?, "the conffiles");

    let contents = must(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let paths: Vec<_> = contents
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .collect();
    for path in PACKAGED
        .iter()
        .map(|p| p.to_string())
        .chain(expected_conffiles()?.iter().map(|p| format!(".{p}")))
    {
        assert!(
            paths.contains(&path.as_str()),
            "{path} not in the package:\n{contents}"
        );
    }
    for line in contents.lines() {
        assert!(line.contains(" root/root "), "not root/root: {line}");
    }

    let lint = run(Command::new("lintian")
        .arg("--fail-on")
        .arg("error,warning")
        .arg(deb))?;
    assert!(
        lint.status.success(),
        "lintian reports errors or warnings ({}):\n{}",
        lint.status,
        text(&lint)
    );
    Ok(())
}

fn assert_node(path: &str, uid: u32, gid: u32, mode: u32) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{path} is missing"))?;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777),
        (uid, gid, mode),
        "{path}: (uid, gid, mode)"
    );
    Ok(())
}

/// The package's user: (uid, gid, home, shell).
fn postern_user() -> anyhow::Result<(u32, u32, String, String)> {
    let entry = must(Command::new("getent").args(["passwd", "postern"]))?;
    let fields: Vec<_> = entry.trim().split(':').collect();
    ensure!(fields.len() == 7, "getent passwd postern: {entry}");
    Ok((
        fields[2].parse()?,
        fields[3].parse()?,
        fields[5].to_owned(),
        fields[6].to_owned(),
    ))
}

fn assert_installed_state(mail: u32) -> anyhow::Result<u32> {
    let (uid, gid, home, shell) = postern_user()?;
    assert!(uid < 1000, "postern is not a system user (uid {uid})");
    assert_eq!(gid, mail, "postern's group is not mail");
    assert_eq!(home, "/nonexistent");
    assert!(
        shell.ends_with("nologin") || shell == "/bin/false",
        "shell {shell}"
    );
    assert_node("/var/spool/postern/queue", uid, mail, 0o700)?;
    assert_node("/var/spool/postern/in", uid, mail, 0o700)?;
    for dir in [
        "/etc/postern",
        "/etc/postern/in",
        "/etc/postern/out",
        "/etc/postern/tls",
    ] {
        assert_node(dir, 0, mail, 0o750)?;
    }
    for conffile in expected_conffiles()? {
        assert_node(&conffile, 0, mail, 0o640)?;
    }
    for name in ["relay-in", "relay-out"] {
        assert_node(&format!("/usr/sbin/{name}"), 0, 0, 0o755)?;
        // Enabled, with the alias, but not started (nothing runs systemd here).
        let wants = format!("/etc/systemd/system/multi-user.target.wants/{name}.service");
        // deb-systemd-helper may link through /lib (merged /usr).
        let target =
            std::fs::canonicalize(&wants).with_context(|| format!("{wants}: not enabled"))?;
        assert_eq!(
            target,
            std::fs::canonicalize(format!("/usr/lib/systemd/system/{name}.service"))?,
            "{wants}"
        );
    }
    for alias in ["haraka-in", "haraka-out"] {
        let link = format!("/etc/systemd/system/{alias}.service");
        ensure!(
            std::fs::symlink_metadata(&link)?.file_type().is_symlink(),
            "{link} is not the alias symlink"
        );
    }
    Ok(uid)
}

fn verify_installed_units() -> anyhow::Result<()> {
    for name in ["relay-in", "relay-out"] {
        let unit = format!("/usr/lib/systemd/system/{name}.service");
        let content = std::fs::read_to_string(&unit)?;
        assert!(
            content.contains(&format!("ExecStart=/usr/sbin/{name} -c ")),
            "{unit} does not start /usr/sbin/{name}"
        );
        assert!(!content.contains("/usr/local/"), "{unit} names /usr/local");
        // With man pages installed, verify checks Documentation= too.
        let output = run(Command::new("systemd-analyze")
            .env("SYSTEMD_COLORS", "0")
            .arg("verify")
            .arg(&unit))?;
        let report = text(&output);
        let about_us: Vec<_> = report.lines().filter(|l| l.contains(name)).collect();
        assert!(
            output.status.success() && about_us.is_empty(),
            "systemd-analyze verify {unit} ({}):\n{report}",
            output.status
        );
    }
    Ok(())
}

fn check_installed_config() -> anyhow::Result<()> {
    for (name, config) in [
        ("relay-in", "/etc/postern/in"),
        ("relay-out", "/etc/postern/out"),
    ] {
        must(
            Command::new(format!("/usr/sbin/{name}"))
                .args(["--check", "-c", config])
                .env_remove("JOURNAL_STREAM"),
        )?;
    }
    Ok(())
}

/// The installed binary, as the package's user with group mail (as the
/// unit runs it), on the installed configuration.
fn installed_relay(
    name: &str,
    config: &str,
    uid: u32,
    gid: u32,
    logs: &Path,
    listen: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Relay> {
    let log_path = logs.join(format!("{name}.log"));
    let mut command = Command::new(format!("/usr/sbin/{name}"));
    command
        .args(["-c", config])
        .env("RUST_LOG", "debug")
        .env("POSTERN_SMTP__MAIN__LISTEN", listen)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .uid(uid)
        .gid(gid);
    for (key, value) in env {
        command.env(key, value);
    }
    Relay::start_command(name, command, log_path, listen.parse()?)
}

async fn one_mail_through_relay_in(uid: u32, gid: u32, logs: &Path) -> anyhow::Result<()> {
    let backend = RecordingBackend::start(Behaviour::default()).await?;
    let listen = format!("127.0.0.1:{}", free_port());
    let backend_port = backend.addr.port().to_string();
    let relay = installed_relay(
        "relay-in",
        "/etc/postern/in",
        uid,
        gid,
        logs,
        &listen,
        &[
            ("POSTERN_SMTP__MAIN__RDNS", "off"),
            ("POSTERN_SMTP_FORWARD__MAIN__HOST", "127.0.0.1"),
            ("POSTERN_SMTP_FORWARD__MAIN__PORT", &backend_port),
        ],
    )?;
    let mut client = SmtpClient::connect(listen.parse()?).await?;
    client.read_reply().await?;
    client.expect("EHLO mail.sender.example", 250).await?;
    // example.com is the installed host_list's example domain.
    let reply = client
        .send_mail(
            "alice@sender.example",
            &["user@example.com"],
            "Subject: through the package\n\nHello.\n",
        )
        .await?;
    ensure!(
        reply.code == 250,
        "relay-in: {}\n{}",
        reply.text(),
        relay.log()
    );
    let accepted = backend.accepted();
    ensure!(
        accepted.len() == 1
            && accepted[0]
                .rcpts
                .iter()
                .all(|rcpt| rcpt.contains("user@example.com")),
        "the backend got {accepted:?}\n{}",
        relay.log()
    );
    Ok(())
}

async fn one_mail_through_relay_out(uid: u32, gid: u32, logs: &Path) -> anyhow::Result<()> {
    let mx = RecordingBackend::start(Behaviour {
        xclient: None,
        ..Behaviour::default()
    })
    .await?;
    let dns = TestDns::start(
        TestZone::default()
            .mx("example.net", 10, "mx.example.net")
            .a("mx.example.net", "127.0.0.1".parse()?),
    )
    .await?;
    let listen = format!("127.0.0.1:{}", free_port());
    let nameservers = dns.addr().to_string();
    let remote_port = mx.addr.port().to_string();
    // The queue is the installed /var/spool/postern/queue (outbound.ini).
    let relay = installed_relay(
        "relay-out",
        "/etc/postern/out",
        uid,
        gid,
        logs,
        &listen,
        &[
            ("POSTERN_OUTBOUND__MAIN__NAMESERVERS", &nameservers),
            ("POSTERN_OUTBOUND__MAIN__REMOTE_PORT", &remote_port),
            ("POSTERN_OUTBOUND__MAIN__LOCAL_MX_OK", "true"),
        ],
    )?;
    let mut client = SmtpClient::connect(listen.parse()?).await?;
    client.read_reply().await?;
    client.expect("EHLO home.example.com", 250).await?;
    let reply = client
        .send_mail(
            "user@example.com",
            &["friend@example.net"],
            "Subject: out through the package\n\nHello.\n",
        )
        .await?;
    ensure!(
        reply.code == 250,
        "relay-out: {}\n{}",
        reply.text(),
        relay.log()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while mx.accepted().is_empty() {
        if Instant::now() > deadline {
            bail!("not delivered within 20 s:\n{}", relay.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn assert_purged() -> anyhow::Result<()> {
    assert_eq!(dpkg_status()?, "", "dpkg still knows postern");
    for path in PACKAGED {
        let path = &path[1..];
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    for path in CREATED {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} is left after purge"
        );
    }
    ensure!(
        !postern_user_exists()?,
        "the user postern is left after purge"
    );
    Ok(())
}

#[test]
fn debian_package_installs_runs_upgrades_and_purges() -> anyhow::Result<()> {
    let _user = POSTERN_USER.lock().unwrap_or_else(|e| e.into_inner());
    require_sealed_root()?;
    let mail = mail_gid()?;
    let scratch = tempfile::tempdir()?;
    let first = build_deb(&scratch.path().join("first"), None)?;
    inspect(&first)?;

    let guard = Installed;
    let report = must(Command::new("dpkg").arg("-i").arg(&first))?;
    assert!(
        report.contains("enabled but not started"),
        "postinst does not tell the admin to edit the configuration first:\n{report}"
    );
    let uid = assert_installed_state(mail)?;
    verify_installed_units()?;
    check_installed_config()?;

    // The admin's edit: the home server (here loopback) may relay.
    let acl = "/etc/postern/out/relay_acl_allow";
    let edited = format!("{}127.0.0.1/32\n", std::fs::read_to_string(acl)?);
    std::fs::write(acl, &edited)?;

    let logs = scratch.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    // A runtime of its own: the lock above must not be held across awaits
    // of the test harness's runtime.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async {
            one_mail_through_relay_in(uid, mail, &logs).await?;
            one_mail_through_relay_out(uid, mail, &logs).await
        })?;

    // Upgrade to a newer build of the same tree: the edit stays, nothing
    // is asked (dpkg would need a terminal), the state is the same.
    let version = must(
        Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&first)
            .arg("Version"),
    )?;
    let upgrade_version = format!("{}{UPGRADE_SUFFIX}", version.trim());
    let second = build_deb(&scratch.path().join("second"), Some(&upgrade_version))?;
    let report = must(Command::new("dpkg").arg("-i").arg(&second))?;
    assert!(
        !report.contains("enabled but not started"),
        "an upgrade repeats the first-install message:\n{report}"
    );
    assert_eq!(
        std::fs::read_to_string(acl)?,
        edited,
        "the upgrade lost the edit"
    );
    assert!(!Path::new(&format!("{acl}.dpkg-dist")).exists());
    let installed = must(Command::new("dpkg-query").args(["-W", "-f=${Version}", "postern"]))?;
    assert_eq!(installed.trim(), upgrade_version);
    assert_eq!(
        assert_installed_state(mail)?,
        uid,
        "the upgrade changed the user"
    );
    check_installed_config()?;

    must(Command::new("dpkg").args(["--purge", "postern"]))?;
    drop(guard);
    assert_purged()
}
