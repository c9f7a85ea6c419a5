//! The few file-system primitives every durable spool write is made of.
//!
//! Kept apart from the spool logic so that the durability rules (temp file in
//! the same directory, `fsync` before `rename`, directory `fsync` after) are
//! written once and the callers only decide the order of the steps.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::error::SpoolError;

/// File names starting with this are unfinished writes. Queue ids never
/// contain a dot, so no real entry can start with it.
pub(super) const TEMP_PREFIX: &str = "tmp.";

/// Queue files hold other people's mail: owner-only.
pub(super) const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist;
/// an existing directory keeps the mode the admin gave it. Fails with a typed
/// error when the path exists but is not a directory.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), SpoolError> {
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => return Ok(()),
        Ok(_) => {
            let not_a_dir = io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            );
            return Err(SpoolError::io("use as queue directory", dir, not_a_dir));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(SpoolError::io("inspect queue directory", dir, error)),
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|error| SpoolError::io("create queue directory", dir, error))?;
    // The new directory entry itself must survive a crash, like any file.
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `contents` to `dir/final_name` so that, whatever happens, the final
/// name holds either nothing (or the previous version) or the complete new
/// bytes, already on stable storage: temp file, write, `fsync`, `rename`.
///
/// The directory itself is NOT fsynced here: the rename is durable only after
/// [`sync_dir`], which the caller runs at the point its protocol requires.
/// Returns the number of bytes written.
pub(super) fn write_then_rename(
    dir: &Path,
    final_name: &str,
    contents: &mut dyn Read,
) -> Result<u64, SpoolError> {
    let temp_path = dir.join(unique_temp_name(final_name));
    let written = write_synced(&temp_path, contents);
    let renamed = written.and_then(|bytes| {
        fs::rename(&temp_path, dir.join(final_name))
            .map(|()| bytes)
            .map_err(|error| SpoolError::io("rename into place", dir.join(final_name), error))
    });
    if renamed.is_err() {
        // Best effort: a leftover temp file is harmless (deleted at the next
        // start) and the original error is the one worth reporting.
        let _ = fs::remove_file(&temp_path);
    }
    renamed
}

/// Replaces the file at `path` with `contents`, durably: after `Ok`, a crash
/// leaves the new contents, and before it, the old ones. For small state
/// files that live beside a spool (relay-in's verified-recipient store),
/// written with the same rules as the spool's own files.
pub fn replace_file_durably(path: &Path, contents: &[u8]) -> Result<(), SpoolError> {
    let (dir, name) = match (
        path.parent(),
        path.file_name().and_then(|name| name.to_str()),
    ) {
        (Some(dir), Some(name)) => (
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
            name,
        ),
        _ => {
            let invalid = io::Error::new(io::ErrorKind::InvalidInput, "not a file path");
            return Err(SpoolError::io("write", path, invalid));
        }
    };
    ensure_dir(dir)?;
    write_then_rename(dir, name, &mut &contents[..])?;
    sync_dir(dir)
}

/// Creates `path` (which must not exist), copies `contents` into it and
/// flushes data and metadata to the device.
pub(super) fn write_synced(path: &Path, contents: &mut dyn Read) -> Result<u64, SpoolError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|error| SpoolError::io("create", path, error))?;
    let bytes =
        io::copy(contents, &mut file).map_err(|error| SpoolError::io("write", path, error))?;
    sync_file(&mut file, path)?;
    Ok(bytes)
}

/// Flushes a written file; split out so the full-disk mapping can be tested
/// against `/dev/full`.
pub(super) fn sync_file(file: &mut File, path: &Path) -> Result<(), SpoolError> {
    file.flush()
        .map_err(|error| SpoolError::io("write", path, error))?;
    file.sync_all()
        .map_err(|error| SpoolError::io("fsync", path, error))
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| SpoolError::io("fsync directory", dir, error))
}

/// One directory `fsync` for many callers: every intake, update and removal
/// needs its rename or unlink durable before it returns, and one `fsync` of
/// the directory makes durable every entry change made before it started.
/// So a caller that finds a sync already running waits for it to end and
/// then for the next one, which a single waiter runs for all who arrived
/// meanwhile (group commit). Under concurrent intakes this turns N directory
/// syncs into about two; alone, a caller pays exactly one, as before.
#[derive(Debug, Default)]
pub(super) struct DirSyncer {
    state: Mutex<SyncState>,
    done: Condvar,
    /// How long a caller that finds no sync running waits for others to
    /// join before it syncs for all (zero: it syncs at once).
    gather: Duration,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Callers so far; a caller's ticket is this count after its own arrival.
    arrived: u64,
    /// Every caller with a ticket up to this is covered by a finished sync.
    covered: u64,
    running: bool,
}

impl DirSyncer {
    /// A syncer whose first caller waits `gather` for others before it syncs
    /// for all of them: for callers that are in no hurry (see
    /// [`REMOVAL_GATHER`](super::REMOVAL_GATHER)).
    pub(super) fn gathering(gather: Duration) -> DirSyncer {
        DirSyncer {
            gather,
            ..DirSyncer::default()
        }
    }

    /// Returns once a directory `fsync` that started after this call began
    /// has succeeded. A failed sync is reported to the caller that ran it;
    /// the others it would have covered run their own.
    pub(super) fn sync(&self, dir: &Path) -> Result<(), SpoolError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.arrived += 1;
        let ticket = state.arrived;
        loop {
            if state.covered >= ticket {
                return Ok(());
            }
            if !state.running {
                state.running = true;
                if !self.gather.is_zero() {
                    drop(state);
                    std::thread::sleep(self.gather);
                    state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                }
                // Read after the gathering: whoever arrived by now has made
                // its change, and the sync below covers it.
                let target = state.arrived;
                drop(state);
                let outcome = sync_dir(dir);
                state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.running = false;
                if outcome.is_ok() {
                    state.covered = state.covered.max(target);
                }
                self.done.notify_all();
                return outcome;
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Removes a file; an already missing file counts as removed, because
/// removals race with the operator's CLI and must be idempotent.
/// Returns whether this call removed it.
pub(super) fn remove_if_present(path: &Path) -> Result<bool, SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(SpoolError::io("remove", path, error)),
    }
}

/// True when `path` exists; an unreadable parent counts as an error, not as absence.
pub(super) fn exists(path: &Path) -> Result<bool, SpoolError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(SpoolError::io("inspect", path, error)),
    }
}

/// A temp name unique across processes (pid) and calls (counter), so the
/// daemon and a concurrent CLI never write the same temp file.
fn unique_temp_name(final_name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{TEMP_PREFIX}{final_name}.{}.{sequence}",
        std::process::id()
    )
}

/// The path `path` with `suffix` appended to its file name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_device_is_reported_as_storage_full() {
        let dev_full = Path::new("/dev/full");
        let Ok(mut file) = OpenOptions::new().write(true).open(dev_full) else {
            return; // no /dev/full in this sandbox: nothing to check
        };
        let outcome = io::copy(&mut &[b'x'; 65536][..], &mut file)
            .map_err(|error| SpoolError::io("write", dev_full, error))
            .and_then(|_| sync_file(&mut file, dev_full));
        assert!(
            matches!(outcome, Err(SpoolError::StorageFull { .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_failed_rename_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The target name is an existing non-empty directory, so rename fails.
        fs::create_dir(dir.path().join("target")).expect("mkdir");
        fs::write(dir.path().join("target/keep"), b"x").expect("write");
        let outcome = write_then_rename(dir.path(), "target", &mut &b"data"[..]);
        assert!(matches!(outcome, Err(SpoolError::Io { .. })), "{outcome:?}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("target")]);
    }
}
