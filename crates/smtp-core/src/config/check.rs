//! The part of `--check` both relays share: what the core settings mean.

use super::CoreSettings;

/// Lines describing listeners, name, limits, TLS and DNS. A certificate that
/// is configured but cannot be loaded is reported here (not fatal: relay
/// starts without STARTTLS and picks the files up once they are valid).
pub fn core_summary(core: &CoreSettings) -> Vec<String> {
    let listen: Vec<String> = core.listen.iter().map(|a| a.to_string()).collect();
    let mut lines = vec![
        format!("  listens on: {}", listen.join(", ")),
        format!("  host name (me): {}", core.me),
        format!(
            "  limits: message {} bytes, {} recipients, {} connections ({} per client IP), inactivity {} s",
            core.max_bytes,
            core.max_recipients,
            core.max_connections,
            core.max_connections_per_ip,
            core.inactivity_timeout.as_secs()
        ),
    ];
    match &core.tls.files {
        Some(_) if !core.tls.starttls => {
            lines.push("  STARTTLS: off (tls is not listed in plugins)".into());
        }
        None => lines.push("  STARTTLS: off (no key/cert in tls.ini)".into()),
        Some(files) => match crate::tls::load_server_config(files, core.tls.min_version) {
            Ok(_) => lines.push(format!(
                "  STARTTLS: on, key {} cert {}",
                files.key.display(),
                files.cert.display()
            )),
            Err(e) => lines.push(format!(
                "warning: STARTTLS will not be offered until the certificate loads: {e}"
            )),
        },
    }
    if !core.haproxy_hosts.is_empty() {
        let hosts: Vec<String> = core.haproxy_hosts.iter().map(|n| n.to_string()).collect();
        lines.push(format!(
            "  PROXY protocol (v1, v2) required from: {}",
            hosts.join(", ")
        ));
    }
    lines.push(if core.rdns {
        if core.nameservers.is_empty() {
            "  reverse DNS: on, system resolver".into()
        } else {
            let servers: Vec<String> = core.nameservers.iter().map(|a| a.to_string()).collect();
            format!("  reverse DNS: on, nameservers {}", servers.join(", "))
        }
    } else {
        "  reverse DNS: off".into()
    });
    lines
}

/// The migration part of `--check`: what happens to each file found in the
/// directory (read, read by the other binary, deliberately not used and
/// why, or unknown), so a combined directory's every file is accounted for.
pub fn files_report(dir: &super::ConfigDir, binary: super::files::Binary) -> Vec<String> {
    let mut lines = Vec::new();
    let root = dir.root();
    for path in dir.used_files() {
        let shown = path.strip_prefix(root).unwrap_or(&path);
        lines.push(format!("  read: {}", shown.display()));
    }
    let (other, others_files) = binary.other();
    let ours: Vec<&str> = super::files::KNOWN_FILES
        .iter()
        .copied()
        .filter(|file| !others_files.contains(file))
        .collect();
    for name in dir.unrecognized_files(&ours) {
        let base = name.strip_prefix("plugins/").unwrap_or(&name);
        if others_files.contains(&base) {
            lines.push(format!(
                "  read by {}, not by {}: {name}",
                other.name(),
                binary.name()
            ));
            continue;
        }
        match super::files::HARAKA_NOT_USED
            .iter()
            .find(|(file, _)| *file == base)
        {
            Some((_, why)) => lines.push(format!("  not used: {name}: {why}")),
            None => lines.push(format!("note: {name}: not a file Postern reads; ignored")),
        }
    }
    lines
}
