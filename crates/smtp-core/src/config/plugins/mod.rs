//! `plugins`: which Haraka plugins an instance loads, and so which of
//! Postern's features are on.
//!
//! Haraka does only what its `config/plugins` list loads (one name a line,
//! `#`/`;` comments); a file for a plugin that is not loaded has no effect.
//! Postern follows that list: a feature whose plugin is not listed is off,
//! and its files are not read. The seed guide's `config` file with a
//! `[plugins]` section is read the same way when there is no `plugins`
//! file. Without either, each binary keeps its role's features
//! ([`Plugins::role_defaults`]).
//!
//! Names are normalised as Haraka's `plugins.js` does (`haraka-plugin-`
//! prefix dropped, deprecated names replaced); what each name means for each
//! binary is in [`catalogue`].

mod catalogue;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;

pub use catalogue::{Feature, Kind, Meaning};

use super::dir::ConfigDir;
use super::error::ConfigError;
use super::files::{self, Binary};
use super::ini::IniValue;

/// One plugin line, as written and as Haraka would load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEntry {
    /// 1-based line in the file it came from.
    pub line: usize,
    /// The name as written.
    pub written: String,
    /// The name Haraka loads: prefix dropped, deprecated name replaced.
    pub name: String,
}

/// The plugin list of a directory, if it has one.
///
/// Exists so every binary decides its features from one reading of one
/// file, and `--check` and the startup log describe the same list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plugins {
    /// `None`: no `plugins` file (nor `config` `[plugins]`): role defaults.
    listed: Option<Listed>,
}

/// A plugin list found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    /// The file it was read from (`plugins`, or the seed guide's `config`).
    path: PathBuf,
    /// Entries in the file's order, duplicates dropped.
    entries: Vec<PluginEntry>,
}

impl Plugins {
    /// Reads `plugins` in the config root, else the `[plugins]` section of
    /// the seed guide's `config` file. Findings (renamed plugins, unused
    /// `config` sections) go to the directory's warnings.
    pub(crate) fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let plugins_file = dir.root().join(files::PLUGINS);
        if plugins_file.is_file() {
            let Some(list) = dir.list_file_at(&plugins_file)? else {
                return Ok(Self::default());
            };
            let lines = list.lines.into_iter().map(|l| (l.number, l.text));
            return Ok(Self::listed(dir, plugins_file, lines));
        }
        if !dir.root().join(files::SEED_CONFIG).is_file() {
            return Ok(Self::default());
        }
        let Some((path, document)) = dir.ini_document(files::SEED_CONFIG)? else {
            return Ok(Self::default());
        };
        let mut names = None;
        for section in document.sections() {
            if section.name == "plugins" {
                names = Some(section.entries.iter().map(|entry| {
                    if !matches!(entry.value, IniValue::Bare) {
                        dir.warn(format!(
                            "{}: line {}: [plugins] {}: only the name is read, the value is ignored",
                            path.display(),
                            entry.line,
                            entry.key
                        ));
                    }
                    (entry.line, entry.key.clone())
                }));
                continue;
            }
            if section.entries.is_empty() {
                continue;
            }
            let instead = if section.name == "server" {
                " (listen comes from smtp.ini; run under systemd instead of daemonize)"
            } else {
                ""
            };
            dir.warn(format!(
                "{}: section [{}] is not used by Postern{instead}; only [plugins] is read",
                path.display(),
                section.name
            ));
        }
        match names {
            Some(names) => {
                let names: Vec<_> = names.collect();
                Ok(Self::listed(dir, path, names.into_iter()))
            }
            None => {
                dir.warn(format!(
                    "{}: no [plugins] section: each binary's default plugins apply",
                    path.display()
                ));
                Ok(Self::default())
            }
        }
    }

    /// A list read from `path`, normalised as Haraka loads it.
    fn listed(
        dir: &ConfigDir,
        path: PathBuf,
        lines: impl Iterator<Item = (usize, String)>,
    ) -> Self {
        let mut entries: Vec<PluginEntry> = Vec::new();
        for (line, written) in lines {
            let (name, note) = catalogue::normalise(&written);
            if let Some(note) = note {
                dir.warn(format!("{}: line {line}: {note}", path.display()));
            }
            if let Some(first) = entries.iter().find(|e| e.name == name) {
                dir.warn(format!(
                    "{}: line {line}: {written} is listed again (first on line {}); loaded once",
                    path.display(),
                    first.line
                ));
                continue;
            }
            entries.push(PluginEntry {
                line,
                written,
                name,
            });
        }
        Self {
            listed: Some(Listed { path, entries }),
        }
    }

    /// The file the list came from; `None` when there is none.
    pub fn path(&self) -> Option<&Path> {
        self.listed.as_ref().map(|l| l.path.as_path())
    }

    /// The listed plugins; empty when there is no list.
    pub fn entries(&self) -> &[PluginEntry] {
        self.listed.as_ref().map_or(&[], |l| l.entries.as_slice())
    }

    /// Whether `feature` is on: its plugin is listed, or there is no list
    /// and it is one of the role defaults.
    /// `queue/smtp_forward` and `queue/smtp_proxy` are on only as
    /// [`Plugins::queue`].
    pub fn enabled(&self, feature: Feature) -> bool {
        match (&self.listed, feature) {
            (_, Feature::SmtpForward | Feature::SmtpProxy) => self.queue() == Some(feature),
            (None, _) => Self::role_defaults().contains(&feature),
            (Some(listed), _) => listed.entries.iter().any(|e| e.name == feature.plugin()),
        }
    }

    /// What each binary does without a plugin list: today's Postern, the
    /// seed guide's plugins (relay-in forwards with `queue/smtp_forward`).
    pub fn role_defaults() -> &'static [Feature] {
        &[
            Feature::InHostList,
            Feature::SmtpForward,
            Feature::Tls,
            Feature::Relay,
            Feature::AuthFlatFile,
        ]
    }

    /// relay-in's forwarding plugin: the first of `queue/smtp_forward` and
    /// `queue/smtp_proxy` in the list, as Haraka's queue hook lets the first
    /// take the message; `queue/smtp_forward` without a list.
    pub fn queue(&self) -> Option<Feature> {
        let Some(listed) = &self.listed else {
            return Some(Feature::SmtpForward);
        };
        listed
            .entries
            .iter()
            .find_map(|e| match catalogue::meaning(&e.name) {
                Meaning::Feature(f @ (Feature::SmtpForward | Feature::SmtpProxy)) => Some(f),
                _ => None,
            })
    }

    /// An error naming the plugin list, for a list that leaves `binary`
    /// nothing to do.
    pub fn useless_for(&self, binary: Binary, problem: &str) -> ConfigError {
        ConfigError::Inconsistent {
            path: self
                .path()
                .map_or_else(|| files::PLUGINS.into(), Path::to_path_buf),
            problem: format!("{problem}: {} would have nothing to do", binary.name()),
        }
    }

    /// The features of `binary` that are off although the directory
    /// configures them (and relay-in's recipients, always), the listed
    /// plugins it does not run with what Postern does instead, and a second
    /// queue plugin: warnings for the startup log and `--check`. Empty
    /// without a list.
    pub fn findings(&self, dir: &ConfigDir, binary: Binary) -> Vec<String> {
        let Some(listed) = &self.listed else {
            return Vec::new();
        };
        let shown = listed.path.display();
        let mut findings = Vec::new();
        for feature in Self::features_of(binary) {
            let queue_plugin = matches!(feature, Feature::SmtpForward | Feature::SmtpProxy);
            let surprising = feature == Feature::InHostList
                || feature
                    .configured_by()
                    .iter()
                    .any(|name| dir.path_of(name).is_some());
            if !queue_plugin && surprising && !self.enabled(feature) {
                findings.push(format!(
                    "{shown}: {} is not listed: {}",
                    feature.plugin(),
                    feature.when_off()
                ));
            }
        }
        for entry in &listed.entries {
            let meaning = catalogue::meaning(&entry.name);
            let instead = match meaning {
                Meaning::Feature(feature) if feature.binary().is_none_or(|b| b == binary) => {
                    if self.enabled(feature) {
                        continue;
                    }
                    // Only a second queue plugin is listed and still off.
                    let first = self.queue().map_or("", Feature::plugin);
                    format!(
                        "not used: relay-in forwards with {first}, listed first (as Haraka's queue hook lets the first queue plugin take the message)"
                    )
                }
                Meaning::BuiltIn(_) => continue,
                other => format!(
                    "{} does not run this plugin: {}",
                    binary.name(),
                    catalogue::instead(other, binary)
                ),
            };
            findings.push(format!(
                "{shown}: line {}: {}: {instead}",
                entry.line, entry.name
            ));
        }
        findings
    }

    /// `--check`'s description of the list for `binary`: where it came
    /// from, the files left unread because their plugin is off, and the
    /// protections that stay on. (Why each feature is off is among the
    /// [`Plugins::findings`].)
    pub fn summary(&self, dir: &ConfigDir, binary: Binary) -> Vec<String> {
        let Some(listed) = &self.listed else {
            let defaults: Vec<&str> = Self::features_of(binary)
                .filter(|f| Self::role_defaults().contains(f))
                .map(Feature::plugin)
                .collect();
            return vec![format!(
                "  plugins: no plugins file; {}'s defaults: {}",
                binary.name(),
                defaults.join(", ")
            )];
        };
        let names: Vec<&str> = listed.entries.iter().map(|e| e.name.as_str()).collect();
        let mut lines = vec![format!(
            "  plugins (from {}): {}",
            listed.path.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )];
        for feature in Self::features_of(binary).filter(|f| !self.enabled(*f)) {
            let unread: Vec<&str> = feature
                .files()
                .iter()
                .copied()
                .filter(|name| dir.path_of(name).is_some())
                .collect();
            if !unread.is_empty() {
                lines.push(format!(
                    "  not read: {} ({} is off, see plugins)",
                    unread.join(", "),
                    feature.plugin()
                ));
            }
        }
        lines.push(format!(
            "  built in, on whether listed or not: {}",
            catalogue::BUILT_IN
                .iter()
                .map(|(name, files)| format!("{name} ({files})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        lines
    }

    /// The features `binary` implements.
    fn features_of(binary: Binary) -> impl Iterator<Item = Feature> {
        Feature::ALL
            .into_iter()
            .filter(move |f| f.binary().is_none_or(|b| b == binary))
    }
}
