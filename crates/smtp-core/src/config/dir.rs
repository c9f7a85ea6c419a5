//! [`ConfigDir`]: a Haraka config directory and everything read from it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;

use super::error::ConfigError;
use super::ini::IniDocument;
use super::known_keys::{FileKeys, keys_of};
use super::layered::{
    ENV_PREFIX, EnvOverride, IniSource, Unread, describe_config_error, deserialize_layered,
    overrides_for, root_key_for, split_key_path,
};
use super::list::{ListLine, parse_list, system_host_name};
use super::plugins::Plugins;

/// The subdirectory the seed setup (and some guides) put plugin files in.
const PLUGIN_SUBDIR: &str = "plugins";

/// A Haraka config directory, opened the way `haraka -c DIR` does.
///
/// It exists so every reader resolves names the same way (root first, then
/// `plugins/`), so relative paths inside configs resolve against one root,
/// and so the files actually read are recorded: `--check` can then list the
/// files Postern ignored, and non-fatal findings pile up in one place.
pub struct ConfigDir {
    root: PathBuf,
    environment: BTreeMap<String, String>,
    state: Mutex<ReadState>,
}

/// Shows variable names only: override values may be secrets (`auth_pass`).
impl std::fmt::Debug for ConfigDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDir")
            .field("root", &self.root)
            .field("environment", &self.environment.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What has been read so far and what was noticed on the way.
#[derive(Debug, Default)]
struct ReadState {
    used: BTreeSet<PathBuf>,
    warnings: Vec<String>,
    shadowed_reported: BTreeSet<String>,
    /// The plugin list, read on first use so every loader sees one reading
    /// (and its findings are reported once).
    plugins: Option<Arc<Plugins>>,
    /// The keys each INI file's settings type reads, by file name.
    known: BTreeMap<String, FileKeys>,
}

/// A one-item-per-line file with its entries' line numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFile {
    /// Where the file was found, for messages.
    pub path: PathBuf,
    /// Meaningful lines in order.
    pub lines: Vec<ListLine>,
}

impl ListFile {
    /// The lines' text without their numbers.
    pub fn texts(self) -> Vec<String> {
        self.lines.into_iter().map(|line| line.text).collect()
    }
}

impl ConfigDir {
    /// Opens `path`: Haraka's instance directory holding `config/`, or the
    /// config directory itself. Environment overrides come from the process
    /// environment (`POSTERN_*` variables).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(ConfigError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        let nested = path.join("config");
        let root = if nested.is_dir() {
            nested
        } else {
            path.to_path_buf()
        };
        let prefix = format!("{ENV_PREFIX}_");
        let mut state = ReadState::default();
        let mut environment = BTreeMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(&prefix)) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => {
                    environment.insert(name.to_owned(), value);
                }
                Err(_) => state.warnings.push(format!(
                    "environment variable {name} is not valid UTF-8 (ignored)"
                )),
            }
        }
        Ok(Self {
            root,
            environment,
            state: Mutex::new(state),
        })
    }

    /// Replaces the overrides taken from the process environment, for tests
    /// and embedders that must not depend on (or mutate) the real environment.
    #[must_use]
    pub fn with_environment<K, V>(mut self, variables: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.environment = variables
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Uses `plugins` instead of reading the plugin list, so a reload
    /// (SIGHUP) keeps the features chosen at startup, as Haraka loads its
    /// plugins only when it starts.
    #[must_use]
    pub fn with_plugins(self, plugins: Arc<Plugins>) -> Self {
        self.lock().plugins = Some(plugins);
        self
    }

    /// The plugin list (`plugins`, else the seed guide's `config`
    /// `[plugins]`), read once.
    pub fn plugins(&self) -> Result<Arc<Plugins>, ConfigError> {
        if let Some(plugins) = &self.lock().plugins {
            return Ok(Arc::clone(plugins));
        }
        let plugins = Arc::new(Plugins::load(self)?);
        self.lock().plugins = Some(Arc::clone(&plugins));
        Ok(plugins)
    }

    /// The directory files are looked up in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `name` is: `root/NAME`, else `root/plugins/NAME`, if either is a
    /// file.
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        [
            self.root.join(name),
            self.root.join(PLUGIN_SUBDIR).join(name),
        ]
        .into_iter()
        .find(|candidate| candidate.is_file())
    }

    /// How messages name file `name`: the path it was found at, else the
    /// bare name (a default or an environment override was used instead).
    pub fn shown(&self, name: &str) -> String {
        self.path_of(name)
            .map_or_else(|| name.to_owned(), |path| path.display().to_string())
    }

    /// Resolves a path written inside a config file: relative paths are
    /// relative to the root, as in Haraka.
    pub fn resolve(&self, written: impl AsRef<Path>) -> PathBuf {
        let written = written.as_ref();
        if written.is_absolute() {
            written.to_path_buf()
        } else {
            self.root.join(written)
        }
    }

    /// Reads `name` with Haraka's INI grammar, or `None` when it is absent.
    pub fn ini_document(&self, name: &str) -> Result<Option<(PathBuf, IniDocument)>, ConfigError> {
        let Some(path) = self.locate(name) else {
            return Ok(None);
        };
        let text = self.read_text(&path)?;
        let (document, skipped) = IniDocument::parse_lenient(&text);
        for error in skipped {
            self.warn(format!(
                "{} line {}: {} (skipped, as Haraka does)",
                path.display(),
                error.line,
                error.problem
            ));
        }
        Ok(Some((path, document)))
    }

    /// Loads INI file `name` as `T`, merged with `POSTERN_<STEM>__<SECTION>__<KEY>`
    /// overrides. A missing file yields `T::default()` (Haraka's shipped
    /// defaults), never an error. Keys and sections `T` does not read become
    /// warnings.
    pub fn ini<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, ConfigError> {
        self.lock()
            .known
            .entry(name.to_owned())
            .or_insert_with(keys_of::<T>);
        let root_key = root_key_for(name);
        let (environment, overrides) = overrides_for(&root_key, &self.environment);
        let file = self.ini_document(name)?;
        if file.is_none() && environment.is_empty() {
            return Ok(T::default());
        }

        let origin = file
            .as_ref()
            .map_or_else(|| name.to_owned(), |(path, _)| path.display().to_string());
        let mut sections: Vec<String> = overrides.iter().map(|o| o.section.clone()).collect();
        if let Some((_, document)) = &file {
            sections.extend(document.sections().iter().map(|s| s.name.clone()));
        }
        let source = file.as_ref().map(|(path, document)| {
            IniSource::new(
                root_key.clone(),
                path.display().to_string(),
                document.clone(),
            )
        });
        let (settings, unread) =
            deserialize_layered(&root_key, source, environment).map_err(|error| {
                let (key_path, detail) = describe_config_error(error);
                let Some(key_path) = key_path else {
                    return ConfigError::Inconsistent {
                        path: PathBuf::from(&origin),
                        problem: detail,
                    };
                };
                let (section, key) = split_key_path(&key_path, sections.iter().map(String::as_str));
                let origin = overrides
                    .iter()
                    .find(|o| o.section == section && o.key.eq_ignore_ascii_case(&key))
                    .map_or(origin, |o| format!("environment variable {}", o.variable));
                ConfigError::BadValue {
                    origin,
                    section,
                    key,
                    detail,
                }
            })?;
        self.report_unread(name, file.as_ref(), &overrides, &unread);
        Ok(settings)
    }

    /// The meaningful lines of list file `name`, or `None` when it is absent.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        Ok(self.list_file(name)?.map(ListFile::texts))
    }

    /// Like [`ConfigDir::list`], keeping line numbers for error messages.
    pub fn list_file(&self, name: &str) -> Result<Option<ListFile>, ConfigError> {
        match self.locate(name) {
            Some(path) => self.list_file_at(&path),
            None => Ok(None),
        }
    }

    /// Reads a list file by path (e.g. one named inside another config).
    pub fn list_file_at(&self, path: &Path) -> Result<Option<ListFile>, ConfigError> {
        if !path.is_file() {
            return Ok(None);
        }
        let text = self.read_text(path)?;
        Ok(Some(ListFile {
            path: path.to_path_buf(),
            lines: parse_list(&text),
        }))
    }

    /// Haraka's `me`: the first line of the `me` file, else the host name.
    pub fn me(&self) -> Result<String, ConfigError> {
        Ok(self
            .list("me")?
            .and_then(|lines| lines.into_iter().next())
            .unwrap_or_else(system_host_name))
    }

    /// Records that `path` is used (e.g. a certificate named in tls.ini), so
    /// it is not reported as unrecognised.
    pub fn mark_used(&self, path: &Path) {
        self.lock().used.insert(path.to_path_buf());
    }

    /// Records a non-fatal finding for `--check` and the startup log.
    pub fn warn(&self, message: impl Into<String>) {
        self.lock().warnings.push(message.into());
    }

    /// Returns and forgets the findings recorded so far, so each settings
    /// loader can hand over the ones it caused.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().warnings)
    }

    /// The sections and keys of every INI file loaded so far (present or
    /// not) that its settings type reads, by file name: what the loaders
    /// accept, for the key-coverage tests.
    pub fn known_keys(&self) -> BTreeMap<String, FileKeys> {
        self.lock().known.clone()
    }

    /// The files read so far, for `--check`'s report.
    pub fn used_files(&self) -> Vec<PathBuf> {
        self.lock().used.iter().cloned().collect()
    }

    /// Files and directories in the root (and `plugins/`) that were not read
    /// and whose names are not in `known` (e.g. [`super::files::KNOWN_FILES`]).
    /// Postern ignores them; the caller reports them once at startup.
    pub fn unrecognized_files(&self, known: &[&str]) -> Vec<String> {
        let used = self.lock().used.clone();
        let mut found = Vec::new();
        collect_unrecognized(&self.root, "", known, &used, &mut found);
        found.sort();
        found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`ConfigDir::path_of`], warning once if a `plugins/` copy is shadowed.
    fn locate(&self, name: &str) -> Option<PathBuf> {
        let found = self.path_of(name)?;
        let plugin_copy = self.root.join(PLUGIN_SUBDIR).join(name);
        if found != plugin_copy && plugin_copy.is_file() {
            let mut state = self.lock();
            if state.shadowed_reported.insert(name.to_owned()) {
                state.warnings.push(format!(
                    "{}: ignored, {} takes precedence",
                    plugin_copy.display(),
                    found.display()
                ));
            }
        }
        Some(found)
    }

    /// Reads a file, marking it used. Invalid UTF-8 is replaced (Haraka reads
    /// files as UTF-8 the same way) and reported.
    fn read_text(&self, path: &Path) -> Result<String, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.mark_used(path);
        match String::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(error) => {
                self.warn(format!(
                    "{}: not valid UTF-8; invalid bytes were read as U+FFFD",
                    path.display()
                ));
                Ok(String::from_utf8_lossy(error.as_bytes()).into_owned())
            }
        }
    }

    /// Warns about the sections, keys and environment overrides of file
    /// `name` that its settings type did not read, in the file's order.
    fn report_unread(
        &self,
        name: &str,
        file: Option<&(PathBuf, IniDocument)>,
        overrides: &[EnvOverride],
        unread: &Unread,
    ) {
        if let Some((path, document)) = file {
            for section in document.sections() {
                if unread.section(&section.name) {
                    if !section.entries.is_empty() {
                        self.warn(format!(
                            "{}: section [{}] is not used by Postern (ignored)",
                            path.display(),
                            section.name
                        ));
                    }
                    continue;
                }
                for entry in &section.entries {
                    if unread.key(&section.name, &entry.key) {
                        self.warn(format!(
                            "{}: line {}: [{}] {} is not used by Postern (ignored)",
                            path.display(),
                            entry.line,
                            section.name,
                            entry.key
                        ));
                    }
                }
            }
        }
        for o in overrides {
            if unread.key(&o.section, &o.key) {
                self.warn(format!(
                    "environment variable {} matches no setting of {name} (ignored)",
                    o.variable
                ));
            }
        }
    }
}

fn collect_unrecognized(
    directory: &Path,
    prefix: &str,
    known: &[&str],
    used: &BTreeSet<PathBuf>,
    found: &mut Vec<String>,
) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            if prefix.is_empty() && name == PLUGIN_SUBDIR {
                collect_unrecognized(&path, "plugins/", known, used, found);
            } else if !used.iter().any(|u| u.starts_with(&path)) {
                found.push(format!("{prefix}{name}/"));
            }
        } else if !known.contains(&name.as_str()) && !used.contains(&path) {
            found.push(format!("{prefix}{name}"));
        }
    }
}
