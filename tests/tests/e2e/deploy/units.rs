//! The units: what the issue asks them to say, `systemd-analyze verify`
//! clean, and `systemd-analyze security` exposure at most 2.0 each.

use std::process::Command;

use anyhow::{Context, bail};
use postern_tests::process::binary;

use super::{UNITS, repo, run, text};

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

/// `(section, key, value)` of every assignment in a unit file.
pub(crate) fn unit_settings(unit: &str) -> Vec<(String, String, String)> {
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

pub(crate) fn values<'a>(
    settings: &'a [(String, String, String)],
    section: &str,
    key: &str,
) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

pub(crate) fn read_unit(name: &str) -> anyhow::Result<String> {
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
    assert_eq!(
        values(&relay_in, "Service", "ReadWritePaths"),
        ["-/var/spool/postern/in"],
        "relay-in writes only its backup spool"
    );

    let relay_out = unit_settings(&read_unit("relay-out")?);
    assert_eq!(
        values(&relay_out, "Service", "ReadWritePaths"),
        ["/var/spool/postern/queue"]
    );
    // The submission listeners auth_flat_file.ini suggests (587, 465) are
    // below 1024; the bound is the same one capability as relay-in's.
    assert_eq!(
        values(&relay_out, "Service", "AmbientCapabilities"),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(
        values(&relay_out, "Service", "CapabilityBoundingSet"),
        ["CAP_NET_BIND_SERVICE"]
    );
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
