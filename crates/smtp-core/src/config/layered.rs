//! Feeds an [`IniDocument`] and its `POSTERN_*` environment overrides through
//! the `config` crate, then deserialises the merged tree.
//!
//! The `config` crate parses every top-level key of a source as a path, so
//! `[example.com]` would become `example` → `com`. Nesting the whole file under
//! one path-safe root key (the file stem) keeps section names intact, and the
//! same root lets the crate's own `Environment` source map
//! `POSTERN_SMTP__MAIN__LISTEN` onto `smtp.main.listen`.

use std::collections::{BTreeMap, BTreeSet};

use config::{Config, Environment, Map, Source, Value, ValueKind};
use serde::de::DeserializeOwned;

use super::ini::{IniDocument, IniValue};

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "POSTERN";

/// Separator between file stem, section and key in an environment override.
pub const ENV_SEPARATOR: &str = "__";

/// The `config` source for one parsed INI file.
///
/// A custom source (rather than a `config::Format`) because only a source can
/// control the top-level key, which is what keeps dotted section names whole.
#[derive(Debug, Clone)]
pub struct IniSource {
    root_key: String,
    origin: String,
    document: IniDocument,
}

impl IniSource {
    /// Wraps `document` (read from `origin`) under `root_key`.
    pub fn new(root_key: String, origin: String, document: IniDocument) -> Self {
        Self {
            root_key,
            origin,
            document,
        }
    }
}

impl Source for IniSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        let origin = Some(&self.origin);
        let mut sections = Map::new();
        for section in self.document.sections() {
            let mut table = Map::new();
            for entry in &section.entries {
                let kind = match &entry.value {
                    IniValue::Bare => ValueKind::Nil,
                    IniValue::Text(text) => ValueKind::String(text.clone()),
                    IniValue::List(items) => ValueKind::Array(
                        items
                            .iter()
                            .map(|item| Value::new(origin, ValueKind::String(item.clone())))
                            .collect(),
                    ),
                };
                table.insert(entry.key.clone(), Value::new(origin, kind));
            }
            sections.insert(section.name.clone(), Value::new(origin, table));
        }
        let mut root = Map::new();
        root.insert(self.root_key.clone(), Value::new(origin, sections));
        Ok(root)
    }
}

/// The path-safe root key for a file name: the stem, lower-cased, with
/// anything but ASCII letters, digits and `_` turned into `_`
/// (`rcpt_to.in_host_list.ini` → `rcpt_to_in_host_list`).
pub fn root_key_for(file_name: &str) -> String {
    let stem = file_name.strip_suffix(".ini").unwrap_or(file_name);
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// One environment variable that overrides a key of the file being loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// The variable's name, for messages.
    pub variable: String,
    /// Section (lower-cased, as the `config` crate delivers it).
    pub section: String,
    /// Key within the section (lower-cased).
    pub key: String,
}

/// Picks the variables that belong to `root_key`'s file.
///
/// Filtering here, rather than handing the whole environment to the `config`
/// crate, keeps stray `POSTERN_*` variables from clobbering the file's tree
/// and lets errors name the variable that supplied a bad value.
pub fn overrides_for(
    root_key: &str,
    environment: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<EnvOverride>) {
    let prefix = format!("{ENV_PREFIX}_{root_key}{ENV_SEPARATOR}").to_lowercase();
    let mut selected = BTreeMap::new();
    let mut overrides = Vec::new();
    for (variable, value) in environment {
        let lowered = variable.to_lowercase();
        let Some(rest) = lowered.strip_prefix(&prefix) else {
            continue;
        };
        if let Some((section, key)) = rest.split_once(ENV_SEPARATOR) {
            overrides.push(EnvOverride {
                variable: variable.clone(),
                section: section.to_owned(),
                key: key.to_owned(),
            });
        }
        selected.insert(variable.clone(), value.clone());
    }
    (selected, overrides)
}

/// The sections and keys of a file's merged tree that the settings type did
/// not read, as `serde_ignored` saw them while deserialising.
///
/// Haraka files are full of keys Postern has no use for (`nodes`,
/// `daemonize`, …) and a typo looks exactly like one of them, so `--check`
/// reports both; the settings types' serde derives are the only list of what
/// is read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unread {
    sections: BTreeSet<String>,
    keys: BTreeSet<(String, String)>,
}

impl Unread {
    /// Records one path `serde_ignored` reported: a whole section
    /// (`[extra]`) or a key within one; deeper paths cannot occur in a tree
    /// of sections of values, and are attributed to their key.
    fn record(&mut self, path: &serde_ignored::Path<'_>) {
        let mut names = Vec::new();
        map_keys(path, &mut names);
        match names.as_slice() {
            [section] => {
                self.sections.insert(section.clone());
            }
            [section, key, ..] => {
                self.keys.insert((section.clone(), key.clone()));
            }
            [] => {}
        }
    }

    /// Whether the whole of `section` went unread.
    pub fn section(&self, section: &str) -> bool {
        self.sections.contains(section)
    }

    /// Whether `key` in `section` went unread (alone or with its section).
    pub fn key(&self, section: &str, key: &str) -> bool {
        self.section(section) || self.keys.contains(&(section.to_owned(), key.to_owned()))
    }
}

/// The map keys along `path`, outermost first.
fn map_keys(path: &serde_ignored::Path<'_>, names: &mut Vec<String>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Map { parent, key } => {
            map_keys(parent, names);
            names.push(key.clone());
        }
        Path::Seq { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => map_keys(parent, names),
    }
}

/// Merges the file and its overrides and deserialises the result as `T`,
/// noting what `T` did not read.
///
/// On failure returns the `config` crate's error with its key path relative
/// to the file (e.g. `main.listen`).
pub fn deserialize_layered<T: DeserializeOwned>(
    root_key: &str,
    file: Option<IniSource>,
    environment: BTreeMap<String, String>,
) -> Result<(T, Unread), config::ConfigError> {
    let mut builder = Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(file);
    }
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator(ENV_SEPARATOR)
            .source(Some(environment.into_iter().collect())),
    );
    let merged = builder.build()?;
    let tree = match merged.get::<Value>(root_key) {
        Ok(tree) => tree,
        Err(config::ConfigError::NotFound(_)) => Value::new(None, Map::<String, Value>::new()),
        Err(other) => return Err(other),
    };
    let mut unread = Unread::default();
    let settings = serde_ignored::deserialize(tree, |path| unread.record(&path))?;
    Ok((settings, unread))
}

/// Splits a `config` error key path such as `example.com.port` into section
/// and key, preferring the longest known section name so dotted names survive.
pub fn split_key_path<'a>(
    path: &'a str,
    known_sections: impl IntoIterator<Item = &'a str>,
) -> (String, String) {
    let best = known_sections
        .into_iter()
        .filter(|section| {
            path.strip_prefix(*section)
                .is_some_and(|rest| rest.starts_with('.'))
        })
        .max_by_key(|section| section.len());
    match best {
        Some(section) => (section.to_owned(), path[section.len() + 1..].to_owned()),
        None => match path.split_once('.') {
            Some((section, key)) => (section.to_owned(), key.to_owned()),
            None => (path.to_owned(), String::new()),
        },
    }
}

/// What a `config` crate error says, reduced to the key path and the detail
/// text that follows `key = `.
pub fn describe_config_error(error: config::ConfigError) -> (Option<String>, String) {
    match error {
        config::ConfigError::At { error, key, .. } => (key, error.to_string()),
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => (key, format!("{unexpected}: expected {expected}")),
        config::ConfigError::NotFound(key) => (Some(key), "missing".to_owned()),
        other => (None, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::config::values::setting;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    #[allow(dead_code)]
    struct Main {
        #[serde(deserialize_with = "setting")]
        timeout: u64,
        #[serde(rename = "maxTempFailures", deserialize_with = "setting")]
        max_temp_failures: u32,
        name: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    #[allow(dead_code)]
    struct File {
        main: Main,
        no_tls_hosts: BTreeMap<String, Option<String>>,
    }

    /// What `T` leaves unread of `text` (read as `sample.ini`).
    fn unread<T: DeserializeOwned>(text: &str) -> Unread {
        let document = IniDocument::parse(text).expect("ini");
        let source = IniSource::new("sample".into(), "sample.ini".into(), document);
        let (_, unread) =
            deserialize_layered::<T>("sample", Some(source), BTreeMap::new()).expect("load");
        unread
    }

    #[test]
    fn struct_of_sections() {
        let unread = unread::<File>(
            "timeout=1\nmaxTempFailures=2\nname=x\nnodes=4\n\
             [no_tls_hosts]\n10.0.0.1\n[other]\nkey=1",
        );
        assert!(!unread.key("main", "timeout"));
        assert!(!unread.key("main", "maxTempFailures"));
        assert!(!unread.key("main", "name"));
        assert!(unread.key("main", "nodes"));
        assert!(!unread.key("no_tls_hosts", "10.0.0.1"));
        assert!(unread.section("other"));
        assert!(unread.key("other", "key"));
    }

    #[test]
    fn map_of_sections() {
        let unread =
            unread::<BTreeMap<String, Main>>("[example.com]\ntimeout=1\nbogus=2\n[main]\nname=x");
        assert!(!unread.key("example.com", "timeout"));
        assert!(unread.key("example.com", "bogus"));
        assert!(!unread.section("example.com"));
        assert!(!unread.key("main", "name"));
    }
}
