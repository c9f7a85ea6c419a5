//! The seed setup's `xclient.ini` (`enabled`, `forward`, `destination`).
//!
//! No such file exists in Haraka (haraka-behaviour.md §4.3), so Haraka
//! ignored it; but its author clearly meant "forward to this backend with
//! XCLIENT". Postern maps it onto smtp_forward.ini settings, never over
//! them, and says what it did so the operator can move the settings.

use serde::Deserialize;
use smtp_core::config::files;
use smtp_core::config::values::{SettingValue, optional_setting};
use smtp_core::config::{ConfigDir, ConfigError};

use super::forward::{DEFAULT_FORWARD_PORT, ForwardHost, ForwardSection, XclientPolicy};

/// xclient.ini.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct XclientIni {
    main: XclientMain,
}

/// xclient.ini `[main]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct XclientMain {
    #[serde(deserialize_with = "optional_setting")]
    enabled: Option<bool>,
    #[serde(deserialize_with = "optional_setting")]
    forward: Option<bool>,
    #[serde(deserialize_with = "optional_setting")]
    destination: Option<Destination>,
}

/// `destination=host:port` (`[v6]:port`, or no port for 25).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    host: ForwardHost,
    port: u16,
    written: String,
}

impl SettingValue for Destination {
    fn from_text(text: &str) -> Result<Self, String> {
        let form = || "host:port, e.g. 10.0.0.2:25".to_owned();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(form)?;
            match after {
                "" => (inside, None),
                _ => (inside, Some(after.strip_prefix(':').ok_or_else(form)?)),
            }
        } else if text.matches(':').count() == 1 {
            let (host, port) = text.split_once(':').ok_or_else(form)?;
            (host, Some(port))
        } else {
            (text, None)
        };
        let port = match port {
            None => DEFAULT_FORWARD_PORT,
            Some(port) => u16::from_text(port).map_err(|_| form())?,
        };
        let host = ForwardHost::from_text(host).map_err(|_| form())?;
        Ok(Destination {
            host,
            port,
            written: text.to_owned(),
        })
    }
}

/// Reads xclient.ini, if any, and completes the `[main]` of `forward_ini`
/// (smtp_forward.ini, or smtp_proxy.ini with `queue/smtp_proxy`).
pub(super) fn apply(
    dir: &ConfigDir,
    forward_ini: &str,
    main: &mut ForwardSection,
) -> Result<(), ConfigError> {
    let ini: XclientIni = dir.ini(files::XCLIENT_INI)?;
    let XclientMain {
        enabled,
        forward,
        destination,
    } = ini.main;
    let shown = dir.shown(files::XCLIENT_INI);

    if let Some(destination) = destination {
        let Destination {
            host,
            port,
            written,
        } = destination;
        let fill_host = main.host.is_none();
        let fill_port = main.port.is_none();
        if fill_host {
            main.host = Some(host.clone());
        }
        if fill_port {
            main.port = Some(port);
        }
        let effect = match (fill_host, fill_port) {
            (true, true) => format!("used as {forward_ini} host={} port={port}", host.0),
            (true, false) => format!(
                "host used as {forward_ini} host={}; {forward_ini} port takes precedence",
                host.0
            ),
            (false, true) => format!(
                "port used as {forward_ini} port={port}; {forward_ini} host takes precedence"
            ),
            (false, false) if main.host.as_ref() == Some(&host) && main.port == Some(port) => {
                format!("same as {forward_ini} host/port, nothing to map")
            }
            (false, false) => format!("ignored, {forward_ini} host/port take precedence"),
        };
        dir.warn(format!(
            "{shown}: destination={written} is not a Haraka setting; {effect}"
        ));
    }

    for (key, value) in [("enabled", enabled), ("forward", forward)] {
        let Some(value) = value else { continue };
        let message = match (value, main.xclient) {
            (false, None) => {
                main.xclient = Some(XclientPolicy::Off);
                format!("mapped to {forward_ini} xclient=off")
            }
            (false, Some(_)) => format!("ignored, {forward_ini} xclient takes precedence"),
            (true, _) => format!(
                "nothing to map: XCLIENT use is set by {forward_ini} xclient (required unless set)"
            ),
        };
        dir.warn(format!(
            "{shown}: {key}={value} is not a Haraka setting; {message}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_forms() {
        let cases = [
            ("10.0.0.2:25", Some(("10.0.0.2", 25))),
            ("10.0.0.2", Some(("10.0.0.2", 25))),
            ("backend.example:2525", Some(("backend.example", 2525))),
            ("[2001:db8::2]:587", Some(("2001:db8::2", 587))),
            ("[2001:db8::2]", Some(("2001:db8::2", 25))),
            ("2001:db8::2", Some(("2001:db8::2", 25))),
            ("10.0.0.2:", None),
            ("10.0.0.2:x", None),
            ("[::1]x", None),
            ("bad host:25", None),
        ];
        for (text, expected) in cases {
            let got = Destination::from_text(text)
                .ok()
                .map(|d| (d.host.0, d.port));
            assert_eq!(
                got,
                expected.map(|(h, p)| (h.to_owned(), p)),
                "input {text:?}"
            );
        }
    }
}
