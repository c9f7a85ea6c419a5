//! outbound_routes.ini: Postern's route file, one section per destination
//! domain and `[*]` for all other mail (a smart host).
//!
//! ```ini
//! [*]
//! hosts = smtp.provider.example:587, smtp2.provider.example:587
//! tls = required                 ; off | opportunistic | required
//! tls_ca = /etc/postern/provider-ca.pem   ; verify against this CA only
//! auth_type = plain              ; plain | login (unset: PLAIN, else LOGIN)
//! auth_user = account@example.com
//! auth_pass = secret
//!
//! [lists.example.org]
//! hosts = 10.0.0.7
//! using_lmtp = true              ; port 24 unless written
//! bind = 10.0.0.2
//! ```
//!
//! Unlike Haraka's lenient files, an unknown key is an error here: a typo
//! such as `tsl = required` must not silently send mail in clear text.

use std::path::Path;
use std::sync::Arc;

use smtp_core::client::{AuthMechanism, Credentials};
use smtp_core::config::ini::MAIN_SECTION;
use smtp_core::config::values::{SettingValue, split_comma_list};
use smtp_core::config::{ConfigDir, ConfigError, IniDocument, IniSection, IniValue, expected};

use super::{
    Hop, HopHost, HopSettings, Route, RouteKey, RouteTls, check_bind, default_port,
    parse_hop_address,
};

/// The default route's section name.
const DEFAULT_SECTION: &str = "*";

/// Every key a section may have.
const KEYS: &[&str] = &[
    "hosts",
    "tls",
    "tls_ca",
    "auth_type",
    "auth_user",
    "auth_pass",
    "using_lmtp",
    "bind",
];

/// The routes of outbound_routes.ini, in file order. `default_tls` applies
/// to sections without `tls`.
pub(super) fn routes(
    dir: &ConfigDir,
    path: &Path,
    document: &IniDocument,
    default_tls: &RouteTls,
) -> Result<Vec<(RouteKey, Route)>, ConfigError> {
    let mut routes = Vec::new();
    for section in document.sections() {
        let reader = SectionReader { dir, path, section };
        if section.name == MAIN_SECTION {
            match section.entries.first() {
                None => continue,
                Some(entry) => {
                    return Err(reader.error(
                        &entry.key,
                        "written before the first section: expected it inside [domain] or [*]"
                            .to_owned(),
                    ));
                }
            }
        }
        let key = RouteKey::parse(&section.name, DEFAULT_SECTION).map_err(|form| {
            reader.error(
                "",
                format!("section name '{}': expected {form}", section.name),
            )
        })?;
        routes.push((key, reader.route(default_tls)?));
    }
    Ok(routes)
}

/// One section being read, to phrase errors with file, section and key.
struct SectionReader<'a> {
    dir: &'a ConfigDir,
    path: &'a Path,
    section: &'a IniSection,
}

impl SectionReader<'_> {
    fn error(&self, key: &str, detail: String) -> ConfigError {
        ConfigError::BadValue {
            origin: self.path.display().to_string(),
            section: self.section.name.clone(),
            key: key.to_owned(),
            detail,
        }
    }

    fn text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.section.get(key) {
            None => Ok(None),
            Some(IniValue::Text(text)) if !text.is_empty() => Ok(Some(text.clone())),
            Some(IniValue::Text(_) | IniValue::Bare) => {
                Err(self.error(key, "(no value): expected a value".to_owned()))
            }
            Some(IniValue::List(_)) => {
                Err(self.error(key, "a list (key[]=): expected a single value".to_owned()))
            }
        }
    }

    fn typed<T: SettingValue>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.section
            .get(key)
            .map(|value| T::from_value(value).map_err(|detail| self.error(key, detail)))
            .transpose()
    }

    fn route(&self, default_tls: &RouteTls) -> Result<Route, ConfigError> {
        if let Some(unknown) = self
            .section
            .entries
            .iter()
            .find(|entry| !KEYS.contains(&entry.key.as_str()))
        {
            return Err(self.error(
                &unknown.key,
                format!("unknown key: expected one of {}", KEYS.join(", ")),
            ));
        }
        let hosts = self.hosts()?;
        let lmtp = self.typed::<bool>("using_lmtp")?.unwrap_or(false);
        let tls = self.tls(default_tls)?;
        let auth = self.auth()?;
        let bind = self.typed::<std::net::IpAddr>("bind")?;
        if let Some(bind) = bind {
            check_bind(bind, &hosts).map_err(|detail| self.error("bind", detail))?;
        }
        let settings = Arc::new(HopSettings {
            tls,
            auth,
            lmtp,
            bind,
        });
        let file = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Route {
            origin: format!("{file} [{}]", self.section.name),
            hops: hosts
                .into_iter()
                .map(|(host, port)| Hop {
                    host,
                    port: port.unwrap_or(default_port(lmtp)),
                    settings: Arc::clone(&settings),
                })
                .collect(),
        })
    }

    /// `hosts = a, b` or `hosts[] = a` lines, in order.
    fn hosts(&self) -> Result<Vec<(HopHost, Option<u16>)>, ConfigError> {
        let written: Vec<String> = match self.section.get("hosts") {
            Some(IniValue::Text(text)) => split_comma_list(text)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            Some(IniValue::List(items)) => items
                .iter()
                .flat_map(|item| split_comma_list(item))
                .map(str::to_owned)
                .collect(),
            Some(IniValue::Bare) | None => Vec::new(),
        };
        if written.is_empty() {
            return Err(self.error(
                "hosts",
                "(missing): expected the next hops, e.g. hosts = smtp.example.com:587".to_owned(),
            ));
        }
        written
            .iter()
            .map(|host| {
                parse_hop_address(host).map_err(|form| self.error("hosts", expected(host, &form)))
            })
            .collect()
    }

    fn tls(&self, default_tls: &RouteTls) -> Result<RouteTls, ConfigError> {
        let ca_file = self.text("tls_ca")?;
        let tls = match self.text("tls")?.map(|t| t.to_ascii_lowercase()).as_deref() {
            None => default_tls.clone(),
            Some("off") => RouteTls::Off,
            Some("opportunistic") => RouteTls::Opportunistic,
            Some("required") => RouteTls::Required { ca_file: None },
            Some(other) => {
                return Err(self.error("tls", expected(other, "off, opportunistic or required")));
            }
        };
        match (tls, ca_file) {
            (RouteTls::Required { .. }, Some(written)) => {
                let ca_file = self.dir.resolve(&written);
                if !ca_file.is_file() {
                    return Err(self.error(
                        "tls_ca",
                        expected(&written, "a readable PEM file of CA certificates"),
                    ));
                }
                Ok(RouteTls::Required {
                    ca_file: Some(ca_file),
                })
            }
            (_, Some(written)) => Err(self.error(
                "tls_ca",
                format!("'{written}': only used with tls = required (certificates are verified only then)"),
            )),
            (tls, None) => Ok(tls),
        }
    }

    fn auth(&self) -> Result<Option<Credentials>, ConfigError> {
        let user = self.text("auth_user")?;
        let password = self.text("auth_pass")?;
        let mechanism = match self.text("auth_type")? {
            None => AuthMechanism::Any,
            Some(written) => parse_auth_type(&written)
                .map_err(|form| self.error("auth_type", expected(&written, &form)))?,
        };
        match (user, password) {
            (Some(user), Some(password)) => Ok(Some(Credentials {
                mechanism,
                user,
                password,
            })),
            (None, None) if self.section.get("auth_type").is_none() => Ok(None),
            (None, _) => Err(self.error(
                "auth_user",
                "(missing): expected a user name with auth_pass/auth_type".to_owned(),
            )),
            (Some(_), None) => Err(self.error(
                "auth_pass",
                "(missing): expected the password for auth_user".to_owned(),
            )),
        }
    }
}

/// Haraka's `auth_type`: `plain` or `login`, any case.
pub(super) fn parse_auth_type(text: &str) -> Result<AuthMechanism, String> {
    match text.to_ascii_lowercase().as_str() {
        "plain" => Ok(AuthMechanism::Plain),
        "login" => Ok(AuthMechanism::Login),
        _ => Err("plain or login".to_owned()),
    }
}
