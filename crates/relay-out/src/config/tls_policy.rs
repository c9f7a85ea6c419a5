//! tls_policy.ini (Postern; Postfix's `smtp_tls_policy_maps`): how each
//! destination domain's MX hosts must do TLS.
//!
//! ```ini
//! ; CA bundle for policy=verify (default: the system's CAs)
//! ca_file = /etc/ssl/certs/ca-certificates.crt
//! ; DANE (RFC 7672) for MX hosts with DNSSEC-signed TLSA records: on | off
//! dane = on
//! ; the signed name whose SOA must validate at start (default: the root)
//! dane_probe = .
//!
//! ; MTA-STS (RFC 8461) for domains without a section (default: true)
//! mta_sts = true
//!
//! [example.com]
//! policy = verify   ; none | may | encrypt | verify
//! ```
//!
//! A domain without a section gets DANE when its MX hosts publish signed
//! TLSA records (docs/tls-policy.md "DANE"), else its MTA-STS policy when it
//! publishes one in `enforce` mode, else outbound.ini's `enable_tls` (`may`,
//! or `none` when it is off). The courier side is `crate::courier::tls`,
//! DANE is `crate::courier::dane`, MTA-STS is `crate::mta_sts`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use smtp_core::config::domains::normalize_domain;
use smtp_core::config::values::{Keyword, OnOff, optional_setting};
use smtp_core::config::{ConfigDir, ConfigError, files};

/// What TLS one destination's MX hosts must offer (issue 16's names; `dane`
/// and `mta-sts` come from DNS and HTTPS, not from this file).
///
/// `Dane` is never read from the file: it is what a host with a usable,
/// DNSSEC-authenticated TLSA set gets (`crate::courier::dane`).
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
    /// STARTTLS required, the certificate matched against the host's TLSA
    /// records.
    Dane,
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
            TlsPolicy::Dane => "dane",
            TlsPolicy::MtaSts => "mta-sts",
        }
    }

    /// Whether this policy authenticates the host a message goes to, as
    /// REQUIRETLS (RFC 8689 §4.2.1) demands: a host name from a lookup
    /// that cannot be forged and a certificate verified for it. `verify`
    /// (a name the operator pinned in tls_policy.ini, a certificate checked
    /// against the CAs) does, as do DANE and MTA-STS `enforce`; `may` and
    /// `encrypt` accept any certificate, `none` has no TLS.
    pub fn authenticates_host(self) -> bool {
        match self {
            TlsPolicy::Verify | TlsPolicy::Dane | TlsPolicy::MtaSts => true,
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
    /// `dane` in `[main]`: whether TLSA records are looked up and enforced.
    pub dane: bool,
    /// `dane_probe` in `[main]`: the DNSSEC-signed name whose SOA must
    /// come back authenticated at start, else DANE is off.
    pub dane_probe: String,
    /// `mta_sts` in `[main]`: look up MTA-STS policies (default on).
    pub mta_sts: bool,
    /// `mta_sts_port` in `[main]`: TEST-ONLY override of the policy host's
    /// HTTPS port (RFC 8461 fixes 443), so tests can serve policies from an
    /// unprivileged port on loopback.
    pub mta_sts_port: u16,
}

/// DANE's defaults: on, checked against the root zone (signed since 2010,
/// so any validating resolver authenticates its SOA). MTA-STS: on, port 443.
impl Default for TlsPolicies {
    fn default() -> Self {
        TlsPolicies {
            domains: BTreeMap::new(),
            ca_file: None,
            dane: true,
            dane_probe: ".".to_owned(),
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
    dane: Option<OnOff>,
    #[serde(deserialize_with = "optional_setting")]
    dane_probe: Option<String>,
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
                if let Some(OnOff(dane)) = section.dane {
                    policies.dane = dane;
                }
                if let Some(probe) = section.dane_probe.filter(|p| !p.trim().is_empty()) {
                    policies.dane_probe = probe.trim().to_owned();
                }
                if let Some(on) = section.mta_sts {
                    policies.mta_sts = on;
                }
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
                ("dane", section.dane.is_some()),
                ("dane_probe", section.dane_probe.is_some()),
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
