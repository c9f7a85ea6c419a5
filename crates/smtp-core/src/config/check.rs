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
        None => lines.push("  STARTTLS: off (no key/cert in tls.ini)".into()),
        Some(files) => match crate::tls::load_server_config(files) {
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
