//! relay_dest_domains.ini `nexthop` (haraka-plugin-relay `force_routing`):
//! each `[domains]` value is one line of JSON whose `nexthop` is handed to
//! Haraka's `get_mx` as it is, so it may be anything `get_mx` accepts:
//!
//! - a string: `host`, `host:port`, `[v6]:port`, a bare IPv6 address, or a
//!   URL `smtp://user:pass@host:port` / `lmtp://host:port` (HarakaMx);
//! - an MX object: `exchange`, `port`, `priority`, `bind`, `using_lmtp`,
//!   `auth_user`, `auth_pass`, `auth_type`;
//! - a list of those, tried by ascending `priority` (file order for ties).
//!
//! TLS with such a hop is outbound.ini's opportunistic STARTTLS, as in
//! Haraka; required, verified TLS is outbound_routes.ini's `tls = required`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use smtp_core::client::{AuthMechanism, Credentials};
use smtp_core::config::values::is_haraka_true;
use smtp_core::config::{ConfigError, IniDocument, IniValue};

use super::postern::parse_auth_type;
use super::{
    HARAKA_DEFAULT_KEY, Hop, HopHost, HopSettings, Route, RouteKey, RouteTls, check_bind,
    default_port, parse_hop_address,
};

/// The section holding the per-domain entries.
const DOMAINS_SECTION: &str = "domains";

/// MX object keys Postern reads.
const MX_KEYS: &[&str] = &[
    "exchange",
    "port",
    "priority",
    "bind",
    "using_lmtp",
    "auth_user",
    "auth_pass",
    "auth_type",
];

/// The routes of relay_dest_domains.ini: entries with a `nexthop`, in file
/// order. Entries without one (only an `action`) route nothing.
pub(super) fn routes(
    path: &Path,
    document: &IniDocument,
    default_tls: &RouteTls,
) -> Result<Vec<(RouteKey, Route)>, ConfigError> {
    let Some(section) = document.section(DOMAINS_SECTION) else {
        return Ok(Vec::new());
    };
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut routes = Vec::new();
    for entry in &section.entries {
        let error = |detail: String| ConfigError::BadValue {
            origin: path.display().to_string(),
            section: DOMAINS_SECTION.to_owned(),
            key: entry.key.clone(),
            detail,
        };
        let IniValue::Text(json) = &entry.value else {
            return Err(error(
                "expected one line of JSON such as {\"action\":\"accept\",\"nexthop\":\"10.0.0.5:2525\"}"
                    .to_owned(),
            ));
        };
        // The JSON is not quoted back: it may hold a password.
        let hops = entry_hops(json, default_tls).map_err(error)?;
        if hops.is_empty() {
            continue;
        }
        let key = RouteKey::parse(&entry.key, HARAKA_DEFAULT_KEY)
            .map_err(|form| error(format!("key: expected {form}")))?;
        routes.push((
            key,
            Route {
                origin: format!("{file} [{DOMAINS_SECTION}] {}", entry.key),
                hops,
            },
        ));
    }
    Ok(routes)
}

/// The hops of one entry's `nexthop`, empty when it has none.
fn entry_hops(json: &str, default_tls: &RouteTls) -> Result<Vec<Hop>, String> {
    let value: Value =
        serde_json::from_str(json).map_err(|error| format!("not valid JSON ({error})"))?;
    let Value::Object(entry) = value else {
        return Err("expected a JSON object".to_owned());
    };
    let mut mxs: Vec<(u64, Hop)> = match entry.get("nexthop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| mx_hop(item, default_tls))
            .collect::<Result<_, _>>()?,
        Some(single) => vec![mx_hop(single, default_tls)?],
    };
    // A stable sort keeps file order among equal priorities.
    mxs.sort_by_key(|(priority, _)| *priority);
    Ok(mxs.into_iter().map(|(_, hop)| hop).collect())
}

/// One `get_mx` answer (string or MX object) with its priority.
fn mx_hop(value: &Value, default_tls: &RouteTls) -> Result<(u64, Hop), String> {
    match value {
        Value::String(text) if text.contains("mtp://") => Ok((0, url_hop(text, default_tls)?)),
        Value::String(text) => {
            let (host, port) =
                parse_hop_address(text).map_err(|form| format!("nexthop: expected {form}"))?;
            let settings = HopSettings {
                tls: default_tls.clone(),
                auth: None,
                lmtp: false,
                bind: None,
            };
            Ok((0, hop(host, port, settings)))
        }
        Value::Object(mx) => mx_object(mx, default_tls),
        _ => Err("nexthop: expected a string, an MX object or a list of them".to_owned()),
    }
}

fn hop(host: HopHost, port: Option<u16>, settings: HopSettings) -> Hop {
    Hop {
        host,
        port: port.unwrap_or(default_port(settings.lmtp)),
        settings: Arc::new(settings),
    }
}

/// `{"exchange": "10.0.0.5", "port": 2525, "priority": 10, ...}`.
fn mx_object(mx: &Map<String, Value>, default_tls: &RouteTls) -> Result<(u64, Hop), String> {
    if let Some(unknown) = mx.keys().find(|key| !MX_KEYS.contains(&key.as_str())) {
        return Err(format!(
            "nexthop key {unknown:?} is not supported (Postern reads {})",
            MX_KEYS.join(", ")
        ));
    }
    let exchange = string(mx, "exchange")?.ok_or("nexthop: an MX object needs \"exchange\"")?;
    let (host, written_port) =
        parse_hop_address(&exchange).map_err(|form| format!("exchange: expected {form}"))?;
    let port = match mx.get("port") {
        None | Some(Value::Null) => written_port,
        Some(value) => Some(port_number(value)?),
    };
    let priority = match mx.get("priority") {
        None | Some(Value::Null) => 0,
        Some(value) => value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or("priority: expected a whole number")?,
    };
    let lmtp = match mx.get("using_lmtp") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => is_haraka_true(text),
        Some(_) => return Err("using_lmtp: expected true or false".to_owned()),
    };
    let bind = string(mx, "bind")?
        .map(|text| {
            text.parse::<IpAddr>()
                .map_err(|_| format!("bind: '{text}': expected an IP address"))
        })
        .transpose()?;
    if let Some(bind) = bind {
        check_bind(bind, &[(host.clone(), port)]).map_err(|detail| format!("bind: {detail}"))?;
    }
    let mechanism = match string(mx, "auth_type")? {
        None => AuthMechanism::Any,
        Some(text) => {
            parse_auth_type(&text).map_err(|form| format!("auth_type: expected {form}"))?
        }
    };
    let auth = match (string(mx, "auth_user")?, string(mx, "auth_pass")?) {
        (Some(user), Some(password)) => Some(Credentials {
            mechanism,
            user,
            password,
        }),
        (None, None) => None,
        _ => return Err("auth_user and auth_pass go together".to_owned()),
    };
    let settings = HopSettings {
        tls: default_tls.clone(),
        auth,
        lmtp,
        bind,
    };
    Ok((priority, hop(host, port, settings)))
}

fn string(mx: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match mx.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("{key}: expected a string")),
    }
}

fn port_number(value: &Value) -> Result<u16, String> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| "port: expected a port number from 1 to 65535".to_owned())
}

/// `smtp://user:pass@host:port` or `lmtp://host:port` (HarakaMx `fromUrl`).
/// The user and password are percent-decoded, so `%40` writes an `@`.
fn url_hop(text: &str, default_tls: &RouteTls) -> Result<Hop, String> {
    let form = "a URL such as smtp://user:pass@smtp.example.com:587 or lmtp://10.0.0.7:24";
    let (scheme, rest) = text.split_once("://").ok_or(form)?;
    let lmtp = match scheme.to_ascii_lowercase().as_str() {
        "smtp" => false,
        "lmtp" => true,
        _ => return Err(format!("nexthop: expected {form}")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port) =
        parse_hop_address(host_port).map_err(|_| format!("nexthop: expected {form}"))?;
    let auth = match userinfo {
        None => None,
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let user = percent_decode(user).ok_or("nexthop: bad %-escape in the user name")?;
            let password =
                percent_decode(password).ok_or("nexthop: bad %-escape in the password")?;
            if user.is_empty() || password.is_empty() {
                return Err("nexthop: a URL with a user needs user:password".to_owned());
            }
            Some(Credentials {
                mechanism: AuthMechanism::Any,
                user,
                password,
            })
        }
    };
    let settings = HopSettings {
        tls: default_tls.clone(),
        auth,
        lmtp,
        bind: None,
    };
    Ok(hop(host, port, settings))
}

/// `%XX` escapes to bytes; `None` for a broken escape or non-UTF-8 result.
/// (Also TLS-RPT's `mailto:` URIs.)
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}
