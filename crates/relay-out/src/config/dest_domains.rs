//! relay_dest_domains.ini `action` (haraka-plugin-relay's `dest_domains`
//! hook, haraka-behaviour.md §6): which destination domains a client that
//! may not relay (not in relay_acl_allow, not authenticated) may still send
//! to. Read only when relay.ini `[relay] dest_domains=true`.
//!
//! Haraka, per recipient domain, exactly as written in `[domains]`:
//! `accept` and `continue` let the recipient through; `deny` and a domain
//! that is not listed answer `550 You are not allowed to relay`; any other
//! `action` (or none, an entry written only for its `nexthop`) answers `550
//! Mail for that recipient is not accepted here.` The `any` key is only a
//! default route for `force_routing`; it grants nothing here, as in Haraka.
//! Where the accepted mail goes is the routes' business ([`super::routes`]):
//! the entry's `nexthop` when `force_routing` is on, else the MX hosts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use smtp_core::config::domains::normalize_domain;
use smtp_core::config::{ConfigDir, ConfigError, IniDocument, IniValue, files};

use super::relay::RelayPolicy;

/// The section holding the per-domain entries (shared with `nexthop`).
const DOMAINS_SECTION: &str = "domains";

/// relay_dest_domains.ini's default-route key, which `dest_domains` ignores.
const DEFAULT_ROUTE_KEY: &str = "any";

/// What a non-relaying client's recipient in one domain gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestAction {
    /// `accept` or `continue`: the recipient is taken and relayed.
    Accept,
    /// `deny`, or the domain is not listed: `550 … not allowed to relay`.
    Deny,
    /// Another `action`, or none: `550 … not accepted here.`
    NotAccepted,
}

/// The `[domains]` actions, by normalised domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestDomains {
    by_domain: BTreeMap<String, DestAction>,
}

impl DestDomains {
    /// The action for a recipient domain in comparison form (lower-case
    /// A-label); an unlisted domain is denied.
    pub fn action(&self, domain: &str) -> DestAction {
        self.by_domain
            .get(domain)
            .copied()
            .unwrap_or(DestAction::Deny)
    }

    /// The listed domains and their actions, in name order (`--check`).
    pub fn domains(&self) -> impl Iterator<Item = (&str, DestAction)> {
        self.by_domain.iter().map(|(d, a)| (d.as_str(), *a))
    }
}

/// Reads the actions when `dest_domains` is on (`None` when off). An
/// `action` written while `dest_domains` is off has no effect: that is
/// reported, as are entries whose action Haraka would refuse with "not
/// accepted here" (most likely a typo).
pub(super) fn load(
    dir: &ConfigDir,
    relay: &RelayPolicy,
    document: Option<&(PathBuf, IniDocument)>,
) -> Result<Option<DestDomains>, ConfigError> {
    let section = document.and_then(|(path, doc)| Some((path, doc.section(DOMAINS_SECTION)?)));
    if !relay.dest_domains {
        if let Some((path, section)) = section {
            let with_action = section.entries.iter().filter(|entry| {
                matches!(&entry.value, IniValue::Text(json)
                    if serde_json::from_str::<Value>(json)
                        .is_ok_and(|value| value.get("action").is_some()))
            });
            if let Some(first) = with_action.map(|entry| entry.key.clone()).next() {
                dir.warn(format!(
                    "{}: [{DOMAINS_SECTION}] {first}: action is not used because {} [relay] dest_domains=false (only nexthop is, for force_routing)",
                    path.display(),
                    files::RELAY_INI
                ));
            }
        }
        return Ok(None);
    }
    let Some((path, section)) = section else {
        dir.warn(format!(
            "{}: [relay] dest_domains=true but {} has no [{DOMAINS_SECTION}]: clients outside relay_acl_allow may send to no domain",
            files::RELAY_INI,
            files::RELAY_DEST_DOMAINS_INI
        ));
        return Ok(Some(DestDomains::default()));
    };
    if relay.all {
        dir.warn(format!(
            "{}: [relay] all=true does not open relaying while dest_domains=true: {} decides every recipient of a client outside relay_acl_allow, as in Haraka",
            files::RELAY_INI,
            files::RELAY_DEST_DOMAINS_INI
        ));
    }
    let mut by_domain = BTreeMap::new();
    for entry in &section.entries {
        if entry.key == DEFAULT_ROUTE_KEY {
            continue;
        }
        let error = |detail: String| ConfigError::BadValue {
            origin: path.display().to_string(),
            section: DOMAINS_SECTION.to_owned(),
            key: entry.key.clone(),
            detail,
        };
        let domain =
            normalize_domain(&entry.key).map_err(|form| error(format!("key: expected {form}")))?;
        let action = match &entry.value {
            IniValue::Text(json) => serde_json::from_str::<Value>(json)
                .map_err(|e| error(format!("not valid JSON ({e})")))?
                .get("action")
                .cloned(),
            _ => None,
        };
        let action = match action.as_ref().and_then(Value::as_str) {
            Some("accept" | "continue") => DestAction::Accept,
            Some("deny") => DestAction::Deny,
            other => {
                dir.warn(format!(
                    "{}: line {}: [{DOMAINS_SECTION}] {}: {}: clients outside relay_acl_allow get '550 Mail for that recipient is not accepted here.' for it, as in Haraka (accept, continue or deny)",
                    path.display(),
                    entry.line,
                    entry.key,
                    match other {
                        Some(word) => format!("action '{word}' is not one Haraka knows"),
                        None => "no action".to_owned(),
                    }
                ));
                DestAction::NotAccepted
            }
        };
        by_domain.insert(domain, action);
    }
    Ok(Some(DestDomains { by_domain }))
}
