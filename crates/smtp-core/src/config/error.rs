//! Startup errors that tell the operator which file, line or key to fix.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can make a Haraka config directory unusable.
///
/// Every variant names the file (or the environment variable that overrode
/// it) because the operator's only remedy is to edit that file; a bare
/// "invalid value" would send them grepping through a directory.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The directory given on the command line is not there.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path as given.
        path: PathBuf,
    },
    /// A file exists but cannot be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// An INI value has the wrong form, e.g.
    /// `smtp.ini: [main] inactivity_timeout = 'soon': expected a whole number of seconds`.
    /// When a whole section is at fault (its keys are the values, as in
    /// `[no_tls_hosts]`), `key` is empty and the detail quotes the bad key.
    #[error("{}: [{}] {}{}", .origin, .section, key_assignment(.key), .detail)]
    BadValue {
        /// The file path, or `environment variable POSTERN_…` when the value
        /// came from an override.
        origin: String,
        /// The INI section.
        section: String,
        /// The key within the section.
        key: String,
        /// The offending value and the expected form: `'value': expected …`.
        detail: String,
    },
    /// An entry of a one-item-per-line file has the wrong form.
    #[error("{path}: line {line}: '{entry}': {expected}")]
    BadEntry {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The entry as written.
        entry: String,
        /// What was expected instead, starting with "expected".
        expected: String,
    },
    /// Values that are fine on their own but contradict each other.
    #[error("{path}: {problem}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// Which keys clash and how.
        problem: String,
    },
}

/// `key = ` before a value's detail, or nothing for a whole-section error.
fn key_assignment(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key} = ")
    }
}

/// Renders the value half of a [`ConfigError::BadValue`] detail. Shared by the
/// serde helpers and the settings code so every message has one shape.
pub fn expected(value: &str, form: &str) -> String {
    format!("'{value}': expected {form}")
}

/// [`expected`] for a key written without `=`: it has no value to quote.
pub fn expected_for_bare_key(form: &str) -> String {
    format!("(no value): expected {form}")
}
