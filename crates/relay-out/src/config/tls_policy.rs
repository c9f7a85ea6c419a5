//! tls_policy.ini (Postern; Postfix's `smtp_tls_policy_maps`): how each
//! destination domain's MX hosts must do TLS.
//!
//! ```ini
//! ; CA bundle for policy=verify (default: the system's CAs)
//! ca_file = /etc/ssl/certs/ca-certificates.crt
//!
//! [example.com]
//! policy = verify   ; none | may | encrypt | verify
//! ```
//!
//! A domain without a section gets outbound.ini's `enable_tls` (`may`, or
//! `none` when it is off). The courier side is `crate::courier::tls`.

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
}

impl TlsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::None => "none",
            TlsPolicy::May => "may",
            TlsPolicy::Encrypt => "encrypt",
            TlsPolicy::Verify => "verify",
        }
    }

    /// Whether this policy authenticates the host a message goes to, as
    /// REQUIRETLS (RFC 8689 §4.2.1) demands: a host name from a lookup
    /// that cannot be forged and a certificate verified for it. `verify`
    /// (a name the operator pinned in tls_policy.ini, a certificate checked
    /// against the CAs) does; DANE and MTA-STS, when added, do too; `may` and
    /// `encrypt` accept any certificate, `none` has no TLS.
    pub fn authenticates_host(self) -> bool {
        match self {
            TlsPolicy::Verify => true,
            TlsPolicy::None | TlsPolicy::May | TlsPolicy::Encrypt => false,
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

/// tls_policy.ini, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicies {
    /// `[domain] policy`, by A-label domain.
    pub domains: BTreeMap<String, TlsPolicy>,
    /// `ca_file` in `[main]`: what `verify` trusts instead of the system's CAs.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SectionIni {
    #[serde(deserialize_with = "optional_setting")]
    policy: Option<TlsPolicy>,
    #[serde(deserialize_with = "optional_setting")]
    ca_file: Option<String>,
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
                continue;
            }
            if section.ca_file.is_some() {
                dir.warn(format!(
                    "{shown}: [{name}] ca_file is only read in [main] (ignored)"
                ));
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
