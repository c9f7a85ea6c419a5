//! tlsrpt.ini (Postern): TLS-RPT (RFC 8460) reporting, who the reports say
//! they are from. All keys in `[main]`; every one has a default, so no file
//! means reporting on, as `me`.
//!
//! ```ini
//! enabled = true                       ; false: record nothing, send nothing
//! organization_name = Example Ltd      ; default: me
//! contact_info = postmaster@example.com ; default: postmaster@<me>
//! submitter = mx-out.example.com       ; default: me
//! from = tlsrpt-noreply@example.com    ; default: tlsrpt-noreply@<me>
//! ```
//!
//! The reporting itself is `crate::tlsrpt`.

use serde::Deserialize;
use smtp_core::config::files::TLSRPT_INI;
use smtp_core::config::values::{optional_setting, setting};
use smtp_core::config::{ConfigDir, ConfigError};

/// tlsrpt.ini, typed; `None`: the default from `me`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptSettings {
    pub enabled: bool,
    pub organization_name: Option<String>,
    pub contact_info: Option<String>,
    pub submitter: Option<String>,
    pub from: Option<String>,
}

impl Default for TlsRptSettings {
    fn default() -> Self {
        TlsRptSettings {
            enabled: true,
            organization_name: None,
            contact_info: None,
            submitter: None,
            from: None,
        }
    }
}

/// tlsrpt.ini as written: only `[main]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TlsRptIni {
    main: MainIni,
}

/// `[main]` as written, before the defaults from `me` (which the
/// config loader does not know) are applied in `crate::tlsrpt::reporter`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct MainIni {
    #[serde(deserialize_with = "setting")]
    enabled: bool,
    #[serde(deserialize_with = "optional_setting")]
    organization_name: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    contact_info: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    submitter: Option<String>,
    #[serde(deserialize_with = "optional_setting")]
    from: Option<String>,
}

impl Default for MainIni {
    fn default() -> Self {
        // The defaults are TlsRptSettings's: one place for each.
        MainIni {
            enabled: TlsRptSettings::default().enabled,
            organization_name: None,
            contact_info: None,
            submitter: None,
            from: None,
        }
    }
}

impl TlsRptSettings {
    /// Reads tlsrpt.ini; a missing file gives the defaults. An address
    /// without `@` is a startup error naming the key.
    pub fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let main = dir.ini::<TlsRptIni>(TLSRPT_INI)?.main;
        let nonempty =
            |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let from = nonempty(main.from);
        if let Some(from) = &from
            && (!from.contains('@') || from.contains(['<', '>', ' ']))
        {
            return Err(ConfigError::BadValue {
                origin: dir.shown(TLSRPT_INI),
                section: "main".to_owned(),
                key: "from".to_owned(),
                detail: format!(
                    "'{from}': expected a mail address such as tlsrpt-noreply@example.com"
                ),
            });
        }
        Ok(TlsRptSettings {
            enabled: main.enabled,
            organization_name: nonempty(main.organization_name),
            contact_info: nonempty(main.contact_info),
            submitter: nonempty(main.submitter),
            from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: Option<&str>) -> Result<TlsRptSettings, ConfigError> {
        let temp = tempfile::tempdir().unwrap();
        if let Some(text) = text {
            std::fs::write(temp.path().join(TLSRPT_INI), text).unwrap();
        }
        let dir = ConfigDir::open(temp.path())
            .unwrap()
            .with_environment(Vec::<(String, String)>::new());
        TlsRptSettings::load(&dir)
    }

    #[test]
    fn no_file_is_on_with_defaults_and_keys_are_read() {
        assert_eq!(load(None).unwrap(), TlsRptSettings::default());
        let settings = load(Some(
            "enabled=false\norganization_name=Example Ltd\ncontact_info=c@x.test\nsubmitter=mx.x.test\nfrom=r@x.test\n",
        ))
        .unwrap();
        assert_eq!(
            settings,
            TlsRptSettings {
                enabled: false,
                organization_name: Some("Example Ltd".into()),
                contact_info: Some("c@x.test".into()),
                submitter: Some("mx.x.test".into()),
                from: Some("r@x.test".into()),
            }
        );
    }

    #[test]
    fn a_from_that_is_no_address_names_the_key() {
        let error = load(Some("from=nobody\n")).unwrap_err().to_string();
        assert!(
            error.contains("tlsrpt.ini") && error.contains("from"),
            "{error}"
        );
    }
}
