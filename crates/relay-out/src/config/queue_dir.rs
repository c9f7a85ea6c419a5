//! Where relay-out's queue lives: Haraka's flat file `queue_dir` (as
//! Haraka's `outbound/queue.js` reads it), else outbound.ini `queue_dir`
//! (Postern's key; Haraka's outbound.ini has none), else
//! [`crate::queue::DEFAULT_QUEUE_DIR`].
//!
//! Either must be an absolute path, written without quotes; anything else is
//! a startup error naming the file, rather than a guess. The queue holds
//! mail already answered `250`: a queue opened somewhere unintended (Haraka
//! resolved a relative flat-file path against its working directory, which
//! differs between a shell and systemd; an INI value keeps its quotes, so
//! `"/var/spool/q"` would be a directory called `"` under the config) would
//! leave the real queue undelivered and unwatched. Both set to different
//! paths is an error too: which one holds the mail would be a guess.

use std::path::{Path, PathBuf};

use smtp_core::config::{ConfigDir, ConfigError, files};

use crate::queue::DEFAULT_QUEUE_DIR;

/// The form both places expect, for messages.
fn expected_form() -> String {
    format!(
        "expected an absolute path such as {DEFAULT_QUEUE_DIR}, without quotes (they would be part of the name)"
    )
}

/// Whether `text` is usable as a queue directory as written.
fn is_usable(text: &str) -> bool {
    Path::new(text).is_absolute()
}

/// The queue directory from the flat file, `outbound_ini` (outbound.ini
/// `[main] queue_dir` as written) or the default.
pub(super) fn resolve(dir: &ConfigDir, outbound_ini: Option<&str>) -> Result<PathBuf, ConfigError> {
    let from_ini = match outbound_ini {
        Some(text) if !is_usable(text) => {
            return Err(ConfigError::BadValue {
                origin: dir.shown(files::OUTBOUND_INI),
                section: "main".to_owned(),
                key: "queue_dir".to_owned(),
                detail: format!("'{text}': {}", expected_form()),
            });
        }
        Some(text) => Some(PathBuf::from(text)),
        None => None,
    };
    let from_flat_file = match dir.list_file(files::QUEUE_DIR)? {
        Some(file) => match file.lines.first() {
            Some(line) if !is_usable(&line.text) => {
                return Err(ConfigError::BadEntry {
                    path: file.path,
                    line: line.number,
                    entry: line.text.clone(),
                    expected: format!(
                        "{} (Haraka resolved a relative one against its working directory)",
                        expected_form()
                    ),
                });
            }
            Some(line) => Some((file.path, PathBuf::from(&line.text))),
            None => None,
        },
        None => None,
    };
    match (from_flat_file, from_ini) {
        (Some((path, flat)), Some(ini)) if flat != ini => Err(ConfigError::Inconsistent {
            path,
            problem: format!(
                "says the queue is {}, {} [main] queue_dir says {}; keep one of them",
                flat.display(),
                files::OUTBOUND_INI,
                ini.display()
            ),
        }),
        (Some((_, flat)), _) => Ok(flat),
        (None, Some(ini)) => Ok(ini),
        (None, None) => Ok(PathBuf::from(DEFAULT_QUEUE_DIR)),
    }
}
