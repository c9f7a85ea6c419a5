//! tls_policy.ini (Postern; Postfix's `smtp_tls_policy_maps`): how each
//! destination domain's MX hosts must do TLS.
//!
//! ```ini
//! ; CA bundle for policy=verify (default: the system's CAs)
//! ca_file = /etc/ssl/certs/ca-certificates.crt
//!
//! ; MTA-STS (RFC 8461) for domains without a section (default: true)
//! mta_sts = true
//!
//! [example.com]
//! policy = verify   ; none | may | encrypt | verify
//! ```
//!
//! A domain without a section gets its MTA-STS policy when it publishes one
//! in `enforce` mode, else outbound.ini's `enable_tls` (`may`, or `none`
//! when it is off). The courier side is `crate::courier::tls`, MTA-STS is
//! `crate::mta_sts`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use smtp_core::config::domains::normalize_domain;
use smtp_core::config::values::{Keyword, optional_setting};
use smtp_core::config::{ConfigDir, ConfigError, files};

/// What TLS one destination's MX hosts must offer (issue 16's names; `dane`
/// and `mta-sts` come from DNS and HTTPS, not from this file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate (opportunistic).
    May,
    /// STARTTLS required, any certificate; never clear text.
    Encrypt,
    /// STARTTLS required, a certificate valid for the MX host name.
    Verify,
    /// The domain's MTA-STS policy in `enforce` mode: `verify`, and only MX
    /// hosts the policy names. Never from this file (not in `WORDS`).
    MtaSts,
}

impl TlsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::None => "none",
            TlsPolicy::May => "may",
            TlsPolicy::Encrypt => "encrypt",
            TlsPolicy::Verify => "verify",
            TlsPolicy::MtaSts => "mta-sts",
        }
    }
}

impl Keyword for TlsPolicy {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("none", TlsPolicy::None),
        ("may", TlsPolicy::May),
        ("encrypt", TlsPolicy::Encrypt),
        ("verify", TlsPolicy::Verify),
    ];
}

/// The HTTPS port of MTA-STS policy hosts (RFC 8461 §3.3).
pub const MTA_STS_PORT: u16 = 443;

/// tls_policy.ini, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicies {
    /// `[domain] policy`, by A-label domain.
    pub domains: BTreeMap<String, TlsPolicy>,
    /// `ca_file` in `[main]`: what `verify` trusts instead of the system's
    /// CAs (and what verifies MTA-STS policy hosts and MX hosts).
    pub ca_file: Option<PathBuf>,
    /// `mta_sts` in `[main]`: look up MTA-STS policies (default on).
    pub mta_sts: bool,
    /// `mta_sts_port` in `[main]`: TEST-ONLY override of the policy host's
    /// HTTPS port (RFC 8461 fixes 443), so tests can serve policies from an
    /// unprivileged port on loopback.
    pub mta_sts_port: u16,
}

impl Default for TlsPolicies {
    fn default() -> Self {
        TlsPolicies {
            domains: BTreeMap::new(),
            ca_file: None,
            mta_sts: true,
            mta_sts_port: MTA_STS_PORT,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SectionIni {
    #[serde(deserialize_with = "optional_setting")]
    policy: Option<TlsPolicy>,
    #[serde(deserialize_with = "optional_setting")]
    ca_file: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    mta_sts: Option<bool>,
    #[serde(deserialize_with = "optional_setting")]
    mta_sts_port: Option<u16>,
}

impl TlsPolicies {
    /// Reads tls_policy.ini; no file means every domain gets the default.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let sections = dir.ini::<BTreeMap<String, SectionIni>>(files::TLS_POLICY_INI)?;
        let shown = dir.shown(files::TLS_POLICY_INI);
        let mut policies = TlsPolicies::default();
        for (name, section) in sections {
            if name == "main" {
                if section.policy.is_some() {
                    dir.warn(format!(
                        "{shown}: [main] policy is not used: name the domain in a section ([example.com] policy=verify); outbound.ini enable_tls is the default"
                    ));
                }
                policies.ca_file = section.ca_file.filter(|f| !f.is_empty()).map(|file| {
                    let path = dir.resolve(&file);
                    dir.mark_used(&path);
                    path
                });
                policies.mta_sts = section.mta_sts.unwrap_or(true);
                if let Some(port) = section.mta_sts_port {
                    if port == 0 {
                        return Err(ConfigError::BadValue {
                            origin: shown.clone(),
                            section: name.clone(),
                            key: "mta_sts_port".to_owned(),
                            detail: "must be a TCP port (1-65535)".to_owned(),
                        });
                    }
                    if port != MTA_STS_PORT {
                        dir.warn(format!(
                            "{shown}: mta_sts_port={port} is for tests only: real MTA-STS policy hosts answer on {MTA_STS_PORT}"
                        ));
                    }
                    policies.mta_sts_port = port;
                }
                continue;
            }
            for (key, set) in [
                ("ca_file", section.ca_file.is_some()),
                ("mta_sts", section.mta_sts.is_some()),
                ("mta_sts_port", section.mta_sts_port.is_some()),
            ] {
                if set {
                    dir.warn(format!(
                        "{shown}: [{name}] {key} is only read in [main] (ignored)"
                    ));
                }
            }
            let domain = normalize_domain(name.trim_end_matches('.')).map_err(|_| {
                ConfigError::BadValue {
                    origin: shown.clone(),
                    section: name.clone(),
                    key: String::new(),
                    detail: "a section must be a domain name".to_owned(),
                }
            })?;
            let Some(policy) = section.policy else {
                dir.warn(format!(
                    "{shown}: [{name}] has no policy (none, may, encrypt or verify): the default applies"
                ));
                continue;
            };
            policies.domains.insert(domain, policy);
        }
        Ok(policies)
    }

    /// The policy tls_policy.ini gives `domain`, if it names it.
    pub fn for_domain(&self, domain: &str) -> Option<TlsPolicy> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.domains.get(&domain).copied()
    }
}
