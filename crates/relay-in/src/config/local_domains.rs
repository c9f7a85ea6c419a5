//! The domains relay-in accepts mail for (Haraka's `rcpt_to.in_host_list`,
//! haraka-behaviour.md §5): `host_list` and `host_list_regex`.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use smtp_core::config::domains::domain_list;
use smtp_core::config::files;
use smtp_core::config::values::optional_setting;
use smtp_core::config::{ConfigDir, ConfigError, ListFile};
use smtp_protocol::address::Domain;

/// Bound on the compiled pattern so a huge `host_list_regex` fails at
/// startup with a message instead of using unbounded memory.
const REGEX_SIZE_LIMIT: usize = 10 * 1024 * 1024;

/// Accepted recipient domains.
#[derive(Debug, Clone)]
pub struct LocalDomains {
    /// `host_list`: lower-cased, no trailing dot, IDNs in A-label form.
    pub names: Vec<String>,
    /// `host_list_regex` lines as `^(?:r1|r2|…)$`, case-insensitive.
    pub pattern: Option<Regex>,
}

impl PartialEq for LocalDomains {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
            && self.pattern.as_ref().map(Regex::as_str) == other.pattern.as_ref().map(Regex::as_str)
    }
}

impl Eq for LocalDomains {}

impl LocalDomains {
    /// Whether mail for `domain` (as written in RCPT TO) is accepted.
    ///
    /// `domain` is the address parser's comparison form (lowercase A-label,
    /// no trailing dot), so nothing is normalised again per recipient;
    /// `written` is the domain as sent, which `host_list_regex` also sees
    /// (case-insensitively), as in Haraka.
    pub fn contains(&self, domain: &Domain, written: &str) -> bool {
        let candidate = domain.as_str();
        self.names.iter().any(|name| name == candidate)
            || self
                .pattern
                .as_ref()
                .is_some_and(|p| p.is_match(candidate) || p.is_match(written))
    }

    /// No domain: `rcpt_to.in_host_list` is not loaded.
    pub(super) fn none() -> Self {
        Self {
            names: Vec::new(),
            pattern: None,
        }
    }

    /// Reads `host_list` (or the file rcpt_to.in_host_list.ini points at)
    /// and `host_list_regex`.
    pub(super) fn load(dir: &ConfigDir) -> Result<Self, ConfigError> {
        let names = match host_list_file(dir)? {
            Some(file) => domain_list(&file)?,
            None => Vec::new(),
        };
        let pattern = match dir.list_file(files::HOST_LIST_REGEX)? {
            Some(file) => compile_patterns(&file)?,
            None => None,
        };
        if names.is_empty() && pattern.is_none() {
            dir.warn(format!(
                "{}: no local domains configured; every recipient will be rejected",
                files::HOST_LIST
            ));
        }
        Ok(Self { names, pattern })
    }
}

/// rcpt_to.in_host_list.ini, as in the seed setup.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InHostListIni {
    main: InHostListMain,
}

/// rcpt_to.in_host_list.ini `[main]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InHostListMain {
    #[serde(deserialize_with = "optional_setting")]
    host_list: Option<String>,
}

/// `host_list`, unless rcpt_to.in_host_list.ini names another file that
/// exists. (Haraka itself has no such key; the seed setup uses it.)
fn host_list_file(dir: &ConfigDir) -> Result<Option<ListFile>, ConfigError> {
    let ini: InHostListIni = dir.ini(files::RCPT_TO_IN_HOST_LIST_INI)?;
    let Some(written) = ini.main.host_list.filter(|p| !p.is_empty()) else {
        return dir.list_file(files::HOST_LIST);
    };
    let shown = dir.shown(files::RCPT_TO_IN_HOST_LIST_INI);
    let named = dir.resolve(&written);
    let default = dir.path_of(files::HOST_LIST);
    if default.as_deref() == Some(named.as_path()) {
        return dir.list_file(files::HOST_LIST);
    }
    if named.is_file() {
        dir.warn(format!(
            "{shown}: [main] host_list = {written}: used as the host_list file (not a Haraka setting)"
        ));
        return dir.list_file_at(&named);
    }
    let fallback = default.map_or_else(
        || "no host_list file either".to_owned(),
        |path| format!("using {}", path.display()),
    );
    dir.warn(format!(
        "{shown}: [main] host_list = {written}: file not found; {fallback}"
    ));
    dir.list_file(files::HOST_LIST)
}

/// Compiles `host_list_regex` like Haraka (`^(?:r1|r2|…)$`, flag `i`),
/// checking each line alone first so an error names its line and one line's
/// stray `)` cannot change the meaning of the others.
fn compile_patterns(file: &ListFile) -> Result<Option<Regex>, ConfigError> {
    if file.lines.is_empty() {
        return Ok(None);
    }
    for line in &file.lines {
        let compiles = |source: &str| {
            RegexBuilder::new(source)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .is_ok()
        };
        if !compiles(&line.text) || !compiles(&format!("^(?:{})$", line.text)) {
            return Err(ConfigError::BadEntry {
                path: file.path.clone(),
                line: line.number,
                entry: line.text.clone(),
                expected:
                    "expected a regular expression (Rust syntax: no look-around or back-references)"
                        .to_owned(),
            });
        }
    }
    let alternatives: Vec<&str> = file.lines.iter().map(|l| l.text.as_str()).collect();
    RegexBuilder::new(&format!("^(?:{})$", alternatives.join("|")))
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|_| ConfigError::Inconsistent {
            path: file.path.clone(),
            problem: "the patterns together are too large to compile".to_owned(),
        })
}
