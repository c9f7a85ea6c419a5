//! The check behind the relays' key-coverage tests: every key a loader
//! accepts has code outside the config modules that uses it.
//!
//! Why: a key that is parsed and then ignored looks configured to the
//! administrator (`--check` lists its file as read, no warning says
//! otherwise) while it changes nothing; issue 13 found several. The keys a
//! loader accepts come from its serde derive ([`super::ConfigDir::known_keys`]),
//! so a new key cannot be missed; each relay's test keeps a table saying
//! which settings field carries each key, and this check looks for that
//! field being read in the workspace's sources outside `config/` modules,
//! `check.rs` (`--check` only describes) and tests.
//!
//! A key Postern knows but deliberately does not use is best left out of
//! its settings type: the loader then reports it at startup and in
//! `--check` as "not used by Postern (ignored)" (`serde_ignored`). One read
//! only to explain why it has no effect is a [`Reader::NotUsed`] entry,
//! accepted only if loading the key set to the entry's value produces the
//! entry's report among the warnings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::known_keys::FileKeys;

/// Who reads a key.
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    /// The settings field carrying the key (or a dotted path ending in it):
    /// `.field` must occur in a source file outside the config modules,
    /// `check.rs` and tests.
    Field(&'static str),
    /// Read only to be reported as having no effect: set to `value`, the
    /// loader's warnings include `report`.
    NotUsed {
        value: &'static str,
        report: &'static str,
    },
}

/// One key of the table: file, section (`*` for any), key (`*` for any)
/// and who reads it.
pub type KeyReader = (&'static str, &'static str, &'static str, Reader);

/// Problems with `table` for the files it covers (`files`), given what the
/// loaders accept (`known`): keys without an entry, entries for keys no
/// loader accepts, fields nothing outside the config reads, and not-used
/// keys that are not reported. `warnings_for(file, text)` loads a
/// directory holding only `file` with `text` and returns the warnings.
/// Empty when all is well.
pub fn problems(
    known: &BTreeMap<String, FileKeys>,
    files: &[&str],
    table: &[KeyReader],
    workspace: &Path,
    warnings_for: impl Fn(&str, &str) -> Vec<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut accepted = Vec::new();
    for file in files {
        match known.get(*file) {
            Some(keys) => accepted.extend(
                keys.pairs()
                    .into_iter()
                    .map(|(section, key)| ((*file).to_owned(), section, key)),
            ),
            None => problems.push(format!("{file}: no loader read it")),
        }
    }
    let in_table = |file: &str, section: &str, key: &str| {
        table
            .iter()
            .any(|(f, s, k, _)| *f == file && *s == section && *k == key)
    };
    for (file, section, key) in &accepted {
        if !in_table(file, section, key) {
            problems.push(format!(
                "{file} [{section}] {key}: accepted by the loader but missing from the table (which field carries it?)"
            ));
        }
    }
    let sources = reader_sources(workspace);
    for (file, section, key, reader) in table {
        if !files.contains(file) {
            continue;
        }
        if !accepted
            .iter()
            .any(|(f, s, k)| f == file && s == section && k == key)
        {
            problems.push(format!(
                "{file} [{section}] {key}: in the table but no loader accepts it"
            ));
            continue;
        }
        match reader {
            Reader::Field(field) => {
                if !sources.iter().any(|text| reads_field(text, field)) {
                    problems.push(format!(
                        "{file} [{section}] {key}: nothing outside the config modules, check.rs and tests reads .{field}"
                    ));
                }
            }
            Reader::NotUsed { value, report } => {
                let section = if *section == "*" { "main" } else { section };
                let warnings = warnings_for(file, &format!("[{section}]\n{key}={value}\n"));
                if !warnings.iter().any(|warning| warning.contains(report)) {
                    problems.push(format!(
                        "{file} [{section}] {key}={value}: not used, but not reported as '{report}': {warnings:?}"
                    ));
                }
            }
        }
    }
    problems
}

/// Whether `text` reads `field`: `.field`, or a dotted path such as
/// `route.auth` as a whole (`route.auth` or `x.route.auth`), not followed
/// by more of an identifier.
fn reads_field(text: &str, field: &str) -> bool {
    let identifier = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(field).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + field.len()..].chars().next();
        let starts = if field.contains('.') {
            before.is_none_or(|c| !identifier(c))
        } else {
            before == Some('.')
        };
        starts && after.is_none_or(|c| !identifier(c))
    })
}

/// The non-test text of every source file that may act on a setting.
fn reader_sources(workspace: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let Ok(crates) = std::fs::read_dir(workspace.join("crates")) else {
        return Vec::new();
    };
    for entry in crates.flatten() {
        collect_rs(&entry.path().join("src"), &mut files);
    }
    files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| match text.find("#[cfg(test)]\nmod tests {") {
            Some(at) => text[..at].to_owned(),
            None => text,
        })
        .collect()
}

/// `.rs` files under `dir`, skipping config modules, `check.rs`, tests and
/// the key-coverage tables themselves.
fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "config" | "tests") {
                collect_rs(&path, out);
            }
        } else if name.ends_with(".rs")
            && !matches!(name.as_str(), "check.rs" | "tests.rs")
            && !name.starts_with("key_coverage")
        {
            out.push(path);
        }
    }
}
