//! tls.ini `[main]` and `[no_tls_hosts]`, as the listeners need them.

use ipnetwork::IpNetwork;

use super::raw::{TlsIni, TlsMinVersion};
use crate::config::dir::ConfigDir;
use crate::config::error::ConfigError;
use crate::config::files;
use crate::config::ini::IniValue;
use crate::config::plugins::Feature;

/// Inbound TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Where the key and certificate are; `None` when TLS is off (neither key
    /// nor cert set in tls.ini and Haraka's default files absent), in which
    /// case STARTTLS is not offered and no implicit-TLS listener starts.
    pub files: Option<TlsFiles>,
    /// Offer STARTTLS: Haraka's `tls` plugin is listed in `plugins` (or
    /// there is no list). Without it, as in Haraka, only `smtps_port`
    /// speaks TLS.
    pub starttls: bool,
    /// Clients (IPs/CIDRs) that are not offered STARTTLS.
    pub no_tls_hosts: Vec<IpNetwork>,
    /// Oldest protocol version accepted.
    pub min_version: TlsMinVersion,
}

/// The PEM files to serve (both may name one combined key+chain file),
/// resolved against the config root.
pub use crate::tls::TlsFiles;

impl TlsSettings {
    /// Reads tls.ini. A key or cert that is set but missing is only a
    /// warning: the certificate tool (e.g. acme.sh) may not have run yet.
    pub(super) fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let ini: TlsIni = dir.ini(files::TLS_INI)?;
        let shown_ini = dir.shown(files::TLS_INI);
        let key_written = first_path(dir, &shown_ini, "key", ini.main.key.as_ref());
        let cert_written = first_path(dir, &shown_ini, "cert", ini.main.cert.as_ref());
        let explicit = key_written.is_some() || cert_written.is_some();
        let key = dir.resolve(key_written.as_deref().unwrap_or(files::TLS_KEY_PEM));
        let cert = dir.resolve(cert_written.as_deref().unwrap_or(files::TLS_CERT_PEM));

        let files = if explicit || (key.is_file() && cert.is_file()) {
            for (name, path) in [("key", &key), ("cert", &cert)] {
                if path.is_file() {
                    dir.mark_used(path);
                } else {
                    dir.warn(format!(
                        "{shown_ini}: [main] {name} = {}: file not found; TLS will fail until it exists",
                        path.display()
                    ));
                }
            }
            Some(TlsFiles { key, cert })
        } else {
            None
        };
        Ok(Self {
            files,
            starttls: dir.plugins()?.enabled(Feature::Tls),
            no_tls_hosts: ini.no_tls_hosts.0,
            min_version: ini.main.min_version,
        })
    }
}

/// The path written for `key`/`cert`. Haraka allows `key[]`/`cert[]` pairs
/// for several certificates; Postern serves one, so extra entries are
/// reported and dropped.
fn first_path(
    dir: &ConfigDir,
    shown_ini: &str,
    name: &str,
    value: Option<&IniValue>,
) -> Option<String> {
    match value? {
        IniValue::Text(text) if !text.is_empty() => Some(text.clone()),
        IniValue::Text(_) | IniValue::Bare => None,
        IniValue::List(items) => {
            if items.len() > 1 {
                dir.warn(format!(
                    "{shown_ini}: [main] {name}[] has {} entries; only the first is used",
                    items.len()
                ));
            }
            items.first().filter(|item| !item.is_empty()).cloned()
        }
    }
}
