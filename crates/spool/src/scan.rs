//! Reading the whole queue: the daemon's start-up [`Spool::load`] (which
//! repairs) and the CLI's [`Spool::list`] (which only looks).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::SpoolError;
use super::fsio::{self, TEMP_PREFIX};
use super::id::QueueId;
use super::message_file::{self, Contents};
use super::spares::SPARE_BYTES;
use super::{
    BOUNCE_SUFFIX, CORRUPT_SUFFIX, DATA_SUFFIX, ENVELOPE_SUFFIX, Envelope, Extras, MESSAGE_SUFFIX,
    NoExtras, STATE_SUFFIX, Spool,
};

/// One queued message as seen from outside: the envelope plus the two facts
/// that live in the file system rather than in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry<X = NoExtras> {
    pub envelope: Envelope<X>,
    /// Size of the message data in bytes.
    pub size: u64,
    /// The operator asked to bounce it now (`<id>.bounce` exists).
    pub bounce_requested: bool,
}

/// What [`Spool::load`] found and repaired at start-up, so the daemon can log
/// a summary and schedule the surviving messages.
#[derive(Debug, Default)]
pub struct LoadReport<X = NoExtras> {
    /// Messages to resume, in arrival order.
    pub messages: Vec<QueueEntry<X>>,
    /// Files renamed to `*.corrupt` because they could not be used.
    pub set_aside: Vec<SetAside>,
    /// Leftover `tmp.*` files deleted.
    pub temp_files_removed: usize,
    /// Data files without an envelope (intakes that never got 250) deleted.
    pub orphan_data_removed: Vec<QueueId>,
    /// `.state` files of removed messages, left by a crash during the
    /// removal (which does not sync their unlink), deleted.
    pub leftover_states_removed: usize,
    /// Messages being written into spares when the previous run stopped
    /// (never acknowledged), deleted.
    pub cut_short_removed: Vec<QueueId>,
    /// Spares left by the previous run, kept for the next intakes.
    pub spares_kept: usize,
}

/// A file moved out of the way by [`Spool::load`], with the reason, so the
/// admin can find it and decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The new name (ending in `.corrupt`); the old name if the rename failed.
    pub path: PathBuf,
    pub reason: String,
}

/// What [`Spool::list`] found. Problems are reported beside the good entries
/// because one damaged file must never hide the rest of the queue.
#[derive(Debug, Default)]
pub struct Listing<X = NoExtras> {
    /// Messages in arrival order.
    pub entries: Vec<QueueEntry<X>>,
    /// Envelopes that could not be read (corrupt, or without data).
    pub problems: Vec<SpoolError>,
}

/// Which files of one id the directory holds.
#[derive(Debug, Default, Clone, Copy)]
struct FilesOfId {
    /// `<id>.msg`: the message, in the current layout.
    message: bool,
    /// `<id>.state`: its later envelope.
    state: bool,
    /// `<id>.json` and `<id>.eml`: the message in the old layout.
    envelope: bool,
    data: bool,
    bounce: bool,
}

/// One pass over the directory, grouped by id (sorted, so by arrival).
#[derive(Debug, Default)]
struct DirectoryScan {
    by_id: BTreeMap<QueueId, FilesOfId>,
    temp_files: Vec<PathBuf>,
}

impl<X: Extras> Spool<X> {
    /// Start-up scan of the daemon: deletes leftover temp files and orphan
    /// data (intakes that never got 250), sets aside unusable envelopes as
    /// `*.corrupt` with an error log, and returns every usable message.
    ///
    /// Only a failure to list the directory itself is an error; a bad or
    /// unreadable entry is set aside (or skipped) and the others still load.
    /// Must not run while another process stores messages in this directory
    /// (it would delete their in-progress data); the CLI never stores.
    pub fn load(&self) -> Result<LoadReport<X>, SpoolError> {
        let mut messages = Vec::new();
        let mut report = self.load_each(|entry| messages.push(entry))?;
        report.messages = messages;
        Ok(report)
    }

    /// [`Spool::load`] handing each usable message to `each` in arrival
    /// order instead of collecting them (the report's `messages` stays
    /// empty), so that a queue of 100,000 is never in memory all at once.
    pub fn load_each(
        &self,
        mut each: impl FnMut(QueueEntry<X>),
    ) -> Result<LoadReport<X>, SpoolError> {
        let scan = self.scan()?;
        let mut report = LoadReport::default();
        for temp in &scan.temp_files {
            match fsio::remove_if_present(temp) {
                Ok(_) => report.temp_files_removed += 1,
                Err(error) => tracing::error!(%error, "cannot remove leftover queue temp file"),
            }
        }
        let mut spares = Vec::new();
        for (id, files) in &scan.by_id {
            if files.message && !self.complete_or_repaired(id, &mut spares, &mut report) {
                continue;
            }
            if let Some(entry) = self.load_one(id, *files, &mut report) {
                each(entry);
            }
        }
        report.spares_kept = spares.len();
        self.spares.adopt(spares);
        let repaired = report.temp_files_removed
            + report.orphan_data_removed.len()
            + report.set_aside.len()
            + report.cut_short_removed.len();
        if repaired > 0 {
            fsio::sync_dir(&self.dir)?;
        }
        Ok(report)
    }

    /// Whether `<id>.msg` holds a complete message. A spare is kept for the
    /// pool; a write into a spare that a crash cut short (it never got its
    /// 250: the 250 follows the sync, after which the file is complete) is
    /// deleted. Unreadable files count as messages, for `load_one` to judge.
    fn complete_or_repaired(
        &self,
        id: &QueueId,
        spares: &mut Vec<QueueId>,
        report: &mut LoadReport<X>,
    ) -> bool {
        let path = self.message_path(id);
        let contents = fs::File::open(&path)
            .map_err(|error| SpoolError::io("open", &path, error))
            .and_then(|file| message_file::check_complete(&file, &path, SPARE_BYTES));
        match contents {
            Ok(Contents::Message) | Err(_) => true,
            Ok(Contents::Spare) => {
                spares.push(id.clone());
                false
            }
            Ok(Contents::CutShort(reason)) => {
                match fsio::remove_if_present(&path) {
                    Ok(_) => {
                        tracing::info!(queue_id = %id, reason, "removed a message whose intake a stop cut short (never acknowledged)");
                        report.cut_short_removed.push(id.clone());
                    }
                    Err(error) => {
                        tracing::error!(queue_id = %id, %error, "cannot remove a cut-short intake")
                    }
                }
                false
            }
        }
    }

    fn load_one(
        &self,
        id: &QueueId,
        files: FilesOfId,
        report: &mut LoadReport<X>,
    ) -> Option<QueueEntry<X>> {
        let loaded = if files.message {
            self.load_one_file(id, files, report)
        } else {
            self.load_two_files(id, files, report)
        };
        if files.state && !files.message {
            match fsio::remove_if_present(&self.state_path(id)) {
                Ok(_) => report.leftover_states_removed += 1,
                Err(error) => {
                    tracing::error!(queue_id = %id, %error, "cannot remove a removed message's state file")
                }
            }
        }
        if files.bounce
            && loaded.is_none()
            && let Err(error) = fsio::remove_if_present(&self.bounce_path(id))
        {
            tracing::error!(queue_id = %id, %error, "cannot remove orphan bounce marker");
        }
        loaded
    }

    fn load_one_file(
        &self,
        id: &QueueId,
        files: FilesOfId,
        report: &mut LoadReport<X>,
    ) -> Option<QueueEntry<X>> {
        match self.read_entry(id) {
            Ok(entry) => return Some(entry),
            Err(SpoolError::Gone(_)) => {}
            Err(error) => {
                // The message file got a 250: keep it for the admin.
                let reason = error.to_string();
                self.set_aside(&self.message_path(id), &reason, report);
                if files.state {
                    self.set_aside(&self.state_path(id), &reason, report);
                }
            }
        }
        None
    }

    fn load_two_files(
        &self,
        id: &QueueId,
        files: FilesOfId,
        report: &mut LoadReport<X>,
    ) -> Option<QueueEntry<X>> {
        match (files.envelope, files.data) {
            (true, true) => match self.read_entry(id) {
                Ok(entry) => return Some(entry),
                // Deleted by the operator while we were scanning.
                Err(SpoolError::Gone(_)) => {}
                Err(error) => {
                    let reason = error.to_string();
                    self.set_aside(&self.envelope_path(id), &reason, report);
                    // The data got a 250: keep it for the admin, and out of
                    // the way so the next start does not delete it as an orphan.
                    self.set_aside(&self.data_path(id), &reason, report);
                }
            },
            (true, false) => {
                self.set_aside(
                    &self.envelope_path(id),
                    "envelope without message data",
                    report,
                );
            }
            (false, true) => match fsio::remove_if_present(&self.data_path(id)) {
                Ok(_) => {
                    tracing::info!(queue_id = %id, "removed data of an intake that was never acknowledged");
                    report.orphan_data_removed.push(id.clone());
                }
                Err(error) => {
                    tracing::error!(queue_id = %id, %error, "cannot remove orphan queue data")
                }
            },
            (false, false) => {}
        }
        None
    }

    fn set_aside(&self, path: &Path, reason: &str, report: &mut LoadReport<X>) {
        let aside = fsio::with_suffix(path, CORRUPT_SUFFIX);
        let new_path = match fs::rename(path, &aside) {
            Ok(()) => aside,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot rename a bad queue file aside");
                path.to_path_buf()
            }
        };
        tracing::error!(path = %new_path.display(), reason, "queue file set aside, the rest of the queue still loads");
        report.set_aside.push(SetAside {
            path: new_path,
            reason: reason.to_string(),
        });
    }

    /// Every queued message, for `relay-out queue list`. Read-only and safe
    /// while the daemon runs: files being written or deleted concurrently are
    /// skipped, never touched.
    pub fn list(&self) -> Result<Listing<X>, SpoolError> {
        let scan = self.scan()?;
        let mut listing = Listing::default();
        for (id, files) in scan.by_id {
            if !files.envelope && !files.message {
                // Data alone is an intake in progress (or an orphan `load`
                // will delete): not a message yet. A state alone is what a
                // crash during a removal leaves.
                continue;
            }
            match self.read_entry(&id) {
                Ok(entry) => listing.entries.push(entry),
                Err(SpoolError::Gone(_)) if !files.data && !files.message => {
                    listing.problems.push(SpoolError::Corrupt {
                        path: self.envelope_path(&id),
                        reason: "envelope without message data".to_string(),
                    })
                }
                // Deleted between the scan and the read.
                Err(SpoolError::Gone(_)) => {}
                Err(error) => listing.problems.push(error),
            }
        }
        Ok(listing)
    }

    /// One message with its size and bounce flag (`queue show`, and the
    /// building block of `load` and `list`). [`SpoolError::Gone`] when the
    /// envelope or the data is missing.
    pub fn read_entry(&self, id: &QueueId) -> Result<QueueEntry<X>, SpoolError> {
        let envelope = self.read_envelope(id)?;
        let size = self.data_size(id)?;
        let bounce_requested = self.bounce_requested(id)?;
        Ok(QueueEntry {
            envelope,
            size,
            bounce_requested,
        })
    }

    fn scan(&self) -> Result<DirectoryScan, SpoolError> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|error| SpoolError::io("list queue directory", &self.dir, error))?;
        let mut scan = DirectoryScan::default();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    tracing::error!(%error, "cannot read a queue directory entry, skipping it");
                    continue;
                }
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not ours: all our names are ASCII
            };
            if name.starts_with(TEMP_PREFIX) {
                scan.temp_files.push(entry.path());
                continue;
            }
            let Some(dot) = name.find('.') else {
                continue;
            };
            let (stem, suffix) = name.split_at(dot);
            // Only canonical (lower-case) ids: the paths built from the id
            // must name this very file.
            let Some(id) = QueueId::parse(stem).ok().filter(|id| id.as_str() == stem) else {
                continue; // the PID file, an admin's notes...
            };
            let mark: fn(&mut FilesOfId) = match suffix {
                MESSAGE_SUFFIX => |files| files.message = true,
                STATE_SUFFIX => |files| files.state = true,
                DATA_SUFFIX => |files| files.data = true,
                ENVELOPE_SUFFIX => |files| files.envelope = true,
                BOUNCE_SUFFIX => |files| files.bounce = true,
                _ => continue, // `*.corrupt` and anything else not ours
            };
            mark(scan.by_id.entry(id).or_default());
        }
        Ok(scan)
    }
}
