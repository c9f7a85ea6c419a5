//! Postern's durable on-disk mail queue ("spool"), without delivery logic.
//!
//! It exists as a crate of its own because two daemons need the same
//! guarantees: relay-out queues everything it accepts here, and relay-in's
//! backup-MX spool will too. Each user opens its own directory under its own
//! daemon name ([`Spool::open`]) and may keep fields of its own in every
//! envelope ([`Envelope::extras`], typed by the user; relay-out has none,
//! [`NoExtras`]). Everything below holds for any user; where it names
//! relay-out, read "the daemon that owns the directory".
//!
//! | module | what it holds |
//! |---|---|
//! | `lib.rs` | the [`Spool`] handle: store, update, remove, read (and these rules) |
//! | `id.rs` | [`QueueId`]: sortable, path-safe message names |
//! | `envelope.rs` | [`Envelope`] and the per-recipient state, the JSON file format |
//! | `message_file.rs` | the `<id>.msg` format: header line, envelope, message |
//! | `timestamp.rs` | the RFC 3339 times written in envelope files |
//! | `fsio.rs` | temp file, `fsync`, `rename`, directory `fsync` (shared by concurrent callers): the durable write |
//! | `spares.rs` | spare message files made ahead by a background thread, so an intake costs one data sync |
//! | `scan.rs` | the daemon's start-up [`Spool::load`] (repairs) and [`Spool::list`] (looks) |
//! | `admin.rs` | the operator's actions: headers, bounce marker, PID file |
//! | `owner.rs` | which live daemon owns the directory, and signalling it (the lock) |
//! | `queue_tool.rs` | the operator's `queue list/show/flush/delete/bounce`, for both daemons |
//! | `error.rs` | [`SpoolError`] |
//!
//! # Layout
//!
//! One flat directory per user (relay-out: `queue_dir`, default
//! `/var/spool/postern/queue`), created with mode 0700, holding per message:
//!
//! | file | content |
//! |---|---|
//! | `<id>.msg` | the message: a header line, the [`Envelope`] as it was at intake (pretty JSON with a `version` field), then the message bytes exactly as received after DATA (CRLF lines, not dot-stuffed); written once, never changed (`message_file.rs`). Or a spare: [`SPARE_BYTES`] zeros waiting for the next message (`spares.rs`); [`is_spare_file`] tells them apart |
//! | `<id>.state` | optional: the envelope's latest state, once a delivery attempt changed it; wins over the one in `<id>.msg` |
//! | `<id>.bounce` | optional, empty-ish marker: the operator asked for an immediate bounce |
//!
//! plus `tmp.*` (writes in progress), `*.corrupt` (set aside by [`Spool::load`]
//! for the admin to inspect) and `<daemon>.pid`, e.g. `relay-out.pid` (see
//! *Flush* and *One daemon per directory* below).
//! Ids sort by arrival, so `ls` shows the queue in order.
//!
//! Versions before the one-file layout wrote two files per message:
//! `<id>.eml` (the bytes) and `<id>.json` (the envelope, rewritten by each
//! update). Such messages, queued before an upgrade, are still loaded,
//! listed, updated (in `<id>.json`), delivered and removed in that layout;
//! only new messages get a `<id>.msg`. The two layouts never mix for one id.
//!
//! # Write protocol, and why each sync is there
//!
//! Every file but a message written into a spare is written as
//! `tmp.<name>.<pid>.<n>` in the same directory, fsynced, then renamed onto
//! its final name (rename is atomic: readers see the old file or the
//! complete new one, never a partial one). A rename or unlink is durable only
//! once the directory is fsynced. Over its life a message that is delivered
//! at the first attempt costs one file and, with a spare, one data sync
//! before its 250 and one directory sync (shared) after delivery:
//!
//! 0. Spares (only for a daemon that called [`Spool::keep_spares`]; `spares.rs`):
//!    a background thread creates a batch of `<id>.msg` files of
//!    [`SPARE_BYTES`] zeros, makes them durable with one `syncfs` (data,
//!    sizes and names at once), and only then offers their ids. A spare's name, size and blocks are therefore
//!    durable before any message goes into it.
//! 1. [`Spool::store`], for an id from [`Spool::new_id`] that names a spare:
//!    envelope and message are written into the spare behind a fixed-size
//!    header area, then the header (lengths and a CRC-32 over both, format
//!    version 2 in `message_file.rs`), then one `fdatasync`; then return
//!    `Ok`, and only now may the caller answer `250 2.0.0 Queued as <id>`.
//!    - `fdatasync` is enough: the name is durable (step 0), and it makes
//!      durable the data and whatever metadata reading it back needs (the
//!      size, if the message outgrew the spare). Overwriting blocks that
//!      exist needs no journal commit at all, which is what makes this one
//!      sync cheap (measured in BENCHMARKS.md, "Spare message files").
//!    - No rename means a crash can leave the write half done: any mix of
//!      zeros and new blocks. The checksum tells: [`Spool::load`] deletes a
//!      file whose header is zero but whose size is not a spare's, or whose
//!      checksum does not match (it never got its 250, which comes after the
//!      sync), and keeps an all-zero-header spare for the pool.
//!
//!    For any other id (no spare ready, or the pool is off):
//!    envelope and data → temp, `fsync(temp)`, `rename` to `<id>.msg`
//!    (format version 1), `fsync(dir)`; then return `Ok`.
//!    - `fsync(temp)` is needed because the rename could otherwise reach the
//!      disk before the bytes: after a power loss `<id>.msg` would exist with
//!      missing or zeroed content, a 250'd message lost.
//!    - `fsync(dir)` is needed because until then the new name itself may
//!      vanish in a power loss (POSIX does not promise that syncing a file
//!      makes its directory entry durable; ext4 happens to, others need not).
//!    - There is nothing to order between envelope and data any more: they
//!      arrive in one rename, so "envelope without data" cannot be a race.
//! 2. [`Spool::update`] (a delivery attempt changed the envelope):
//!    new envelope → temp, `fsync(temp)`, `rename` to `<id>.state`,
//!    `fsync(dir)`. Both for the same reasons: the state must be complete and
//!    its name must survive before the daemon acts on it (a recipient marked
//!    `delivered` that reverts to `pending` is sent again).
//!    relay-out skips this write when the attempt settled the message
//!    (every recipient final, no notice owed): step 3 follows at once and
//!    records the same fact.
//! 3. [`Spool::remove`]: unlink `<id>.msg`, `fsync(dir)`, then unlink
//!    `<id>.state` and `<id>.bounce` **without** a sync.
//!    - The first sync is needed: if the unlink of `<id>.msg` were lost, a
//!      delivered message would come back at the next start and be sent
//!      again (or a message the operator deleted would be delivered).
//!    - The second is not: a `<id>.state` or `<id>.bounce` without its
//!      `<id>.msg` is not a message ([`Spool::list`] skips it, the daemon never
//!      reads it) and [`Spool::load`] deletes it. Replaying those unlinks after
//!      a crash is therefore harmless. (The same holds for a `<id>.eml` whose
//!      `<id>.json` is gone, in the old layout.)
//!
//! **Group commit.** One `fsync(dir)` makes durable every rename and unlink
//! done in the directory before it started. The spool handle (and its
//! clones) therefore shares one syncer (`fsio::DirSyncer`): a caller that
//! finds a directory sync running waits for the next one, which one of the
//! waiters runs for all of them. With 20 concurrent intakes this made 4,000
//! directory syncs for 2,000 messages (intake and removal) into ~1,250; a lone
//! caller still pays exactly one. Removals have a syncer of their own whose
//! first caller waits [`REMOVAL_GATHER`] (10 ms) for others before syncing:
//! nobody waits for a removal's reply, and at one session a commit per
//! removal competed with every intake's sync for the disk. The per-file
//! syncs of intakes are not batched by the spool: concurrent ones already
//! share the device's cache flushes, and `syncfs` would also flush every
//! other file there (the spare thread uses it, off the clients' path).
//!
//! After a crash, [`Spool::load`] sees only states these steps can leave:
//! `tmp.*` (a write cut short: deleted), a spare (kept for the pool), an
//! empty or short spare whose batch never got its `syncfs` (deleted), a
//! write into a spare cut short (deleted, see step 1), `<id>.msg` with or without
//! `<id>.state` (a message: resumed), `<id>.state` or `<id>.bounce` alone (an
//! interrupted removal: deleted), and for the old layout `<id>.eml` alone (an
//! intake that never got its 250, or an interrupted removal: deleted).
//! `<id>.json` alone, or a `<id>.msg` that does not parse, is damage, not a
//! race: set aside as `*.corrupt` for the admin, never deleted.
//!
//! # Crash safety: at-least-once
//!
//! A message that got 250 has a durable `<id>.msg` (step 1), and
//! [`Spool::load`] resumes it at the next start; a crash at any moment therefore
//! loses no accepted message. The price is that some crashes cause duplicates.
//! **A message can be delivered twice exactly when:**
//!
//! - the daemon crashes (or the host loses power, or [`Spool::update`] or
//!   [`Spool::remove`] fails, e.g. disk full) *after* the remote MX answered
//!   250 to the final dot and *before* the `update` marking that recipient
//!   `delivered` (or, for a message settled by that attempt, the `remove`)
//!   has returned: the recipient is still `pending` on disk and is sent
//!   again after restart;
//! - at intake, the daemon crashes after `store` returned but before the
//!   client read our 250: the client (the backend Postfix) retries, and the
//!   message is queued a second time under a new id.
//!
//! - a crash after a bounce was stored and before its recipients were marked
//!   `bounced` queues the same notice again at the next start (a recipient
//!   marked `failed` on disk means "notice owed", so the notice itself is
//!   never lost either).
//!
//! Nothing else duplicates: a recipient is marked `delivered` per recipient,
//! so a retry never resends to one that already succeeded. The delivery side
//! of this is in relay-out's `courier::message`
//! (`crates/relay-out/src/courier/message.rs`); `tests/tests/e2e/relay_out_crash.rs`
//! kills the daemon mid-intake and mid-delivery and counts the duplicates.
//!
//! # Sharing the directory with the `relay-out queue` CLI
//!
//! The CLI is a separate process working on the same directory while the
//! daemon runs. The rules that make this safe without locks:
//!
//! - all writes are temp + rename, with temp names unique per process;
//! - only the daemon creates messages and rewrites envelopes; the CLI never
//!   rewrites an envelope (that would race with the daemon's updates and lose
//!   one side's change). A bounce request is a separate `<id>.bounce` file,
//!   created by [`Spool::request_bounce`]; the daemon checks
//!   [`Spool::bounce_requested`] before each attempt and on SIGHUP, fails the
//!   pending recipients ("bounced by the operator") and bounces.
//! - deletion ([`Spool::remove`], the CLI's `delete`) removes `<id>.msg`
//!   (old layout: `<id>.json`) first, the file that makes a message exist,
//!   then the rest (a `<id>.state` removed first would bring the intake's
//!   envelope back).
//! - the daemon treats a vanished message as deleted by the operator: every
//!   call on it returns [`SpoolError::Gone`] (see [`SpoolError::is_gone`]), and
//!   the daemon then drops it from memory without an error log.
//!   [`Spool::update`] never resurrects a deleted message: it returns `Gone`
//!   if the message vanished before the rename, and if its `<id>.msg` (old
//!   layout: data) vanished right after it, it removes what it wrote and
//!   returns `Gone`. (An attempt
//!   already in flight when the operator deletes still completes.)
//! - [`Spool::list`] and the other read-only calls change nothing, so
//!   they never touch the daemon's in-progress intakes (`tmp.*`). Only [`Spool::load`], run by the daemon at
//!   start, cleans up.
//!
//! # Flush (SIGHUP)
//!
//! At start the daemon calls [`Spool::write_pid_file`] (`queue_dir/relay-out.pid`)
//! and [`Spool::remove_pid_file`] at a clean exit. `relay-out queue flush`
//! reads it with [`Spool::read_pid_file`] and sends SIGHUP to that process; on
//! SIGHUP the daemon makes every pending recipient due now and re-checks bounce
//! markers. A stale PID file (daemon crashed) is simply overwritten at the next start.
//! ([`Spool::send_hangup`] does the reading and signalling.)
//!
//! # One daemon per directory
//!
//! The PID file is also the lock: a starting daemon asks
//! [`Spool::running_daemon`] and refuses to start when another live daemon
//! of the same name owns the directory, because its [`Spool::load`] would
//! delete the other's intakes in progress. A PID counts only if that process
//! exists and is named like the daemon (see `owner.rs`), so a stale file
//! never blocks a restart and SIGHUP never reaches a stranger.
//!
//! # Memory
//!
//! The spool never holds message data in memory on its own behalf:
//! [`Spool::store_from`] streams, [`Spool::open_data`] hands out a file.
//! Envelopes are small and the daemon may keep all of them.
//!
//! All calls block (file I/O and fsync); async callers wrap them in
//! `tokio::task::spawn_blocking`.

mod admin;
mod envelope;
mod error;
mod fsio;
mod id;
mod message_file;
mod owner;
pub mod queue_tool;
mod scan;
mod spares;
#[cfg(test)]
mod tests;
mod timestamp;

use std::fs::{self, File};
use std::io::{self, Read};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use admin::MAX_SHOWN_HEADER_BYTES;
pub use envelope::{
    ENVELOPE_FORMAT_VERSION, Envelope, Extras, NoExtras, RecipientState, RecipientStatus,
};
pub use error::SpoolError;
pub use fsio::replace_file_durably;
pub use id::QueueId;
pub use owner::SignalError;
pub use scan::{Listing, LoadReport, QueueEntry, SetAside};
pub use spares::{SPARE_BYTES, SPARES_KEPT};
pub use timestamp::format_rfc3339;

/// How long a removal's directory sync waits for other removals to share
/// it. A removal is nobody's reply: delaying it 10 ms only keeps a delivery
/// slot busy that much longer, while one journal commit per removal (one
/// per message at one session) competed with the intakes' syncs for the
/// disk. What a crash can duplicate does not change: `remove` still returns
/// only once the unlink is durable.
const REMOVAL_GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// The message file of the current layout: envelope and data, written once.
const MESSAGE_SUFFIX: &str = ".msg";
/// The envelope's later states, for a message in a `.msg` file.
const STATE_SUFFIX: &str = ".state";
/// The data file of the two-file layout written before `.msg` existed.
const DATA_SUFFIX: &str = ".eml";
/// The envelope file of the two-file layout written before `.msg` existed.
const ENVELOPE_SUFFIX: &str = ".json";
const BOUNCE_SUFFIX: &str = ".bounce";
const CORRUPT_SUFFIX: &str = ".corrupt";
const PID_FILE_SUFFIX: &str = ".pid";

/// A handle on the queue directory. It holds no state besides the path and
/// the owning daemon's name, so the daemon and the CLI each open their own
/// and cloning it is cheap; all coordination happens through the file
/// system (see the module docs).
///
/// `X` is the type of the user's own envelope fields ([`Envelope::extras`]):
/// one directory holds envelopes of one shape, so the handle carries it.
#[derive(Debug)]
pub struct Spool<X = NoExtras> {
    dir: PathBuf,
    daemon: &'static str,
    /// Shared by the clones, so concurrent calls share directory syncs.
    syncer: Arc<fsio::DirSyncer>,
    /// The same for removals, which wait [`REMOVAL_GATHER`] for company.
    removal_syncer: Arc<fsio::DirSyncer>,
    /// Spare message files for the intake (empty unless the daemon asked
    /// for them with [`Spool::keep_spares`]).
    spares: Arc<spares::SparePool>,
    extras: PhantomData<fn() -> X>,
}

/// Which of the two layouts a message is stored in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `<id>.msg` (and `<id>.state` once updated): written by this version.
    OneFile,
    /// `<id>.eml` + `<id>.json`: written by versions before `.msg`, still
    /// read and delivered so that an upgrade loses nothing.
    TwoFiles,
}

impl<X> Clone for Spool<X> {
    fn clone(&self) -> Self {
        Spool {
            dir: self.dir.clone(),
            daemon: self.daemon,
            syncer: Arc::clone(&self.syncer),
            removal_syncer: Arc::clone(&self.removal_syncer),
            spares: Arc::clone(&self.spares),
            extras: PhantomData,
        }
    }
}

impl<X: Extras> Spool<X> {
    /// Opens the queue at `dir`, creating it (mode 0700) if missing, for the
    /// daemon named `daemon` (its process name, e.g. `"relay-out"`: the PID
    /// file is `<daemon>.pid` and only a live process of that name owns the
    /// directory). Does not scan it: the daemon calls [`Spool::load`] next,
    /// the CLI [`Spool::list`].
    pub fn open(dir: &Path, daemon: &'static str) -> Result<Spool<X>, SpoolError> {
        fsio::ensure_dir(dir)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            daemon,
            syncer: Arc::default(),
            removal_syncer: Arc::new(fsio::DirSyncer::gathering(REMOVAL_GATHER)),
            spares: Arc::default(),
            extras: PhantomData,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The owning daemon's process name, as given to [`Spool::open`].
    pub fn daemon(&self) -> &'static str {
        self.daemon
    }

    /// Keeps spare message files ready for the intake from now on (a
    /// background thread makes them; see `spares.rs`). Only the daemon that
    /// owns the directory calls this, after [`Spool::load`], which hands it
    /// the spares a previous run left.
    pub fn keep_spares(&self) -> Result<(), SpoolError> {
        self.spares
            .start(&self.dir, SPARES_KEPT)
            .map_err(|error| SpoolError::io("start the spare-file thread for", &self.dir, error))
    }

    /// The id for the next message to store: a spare's when one is ready
    /// (then [`Spool::store`] writes into it), else a fresh one. An id taken
    /// and never stored leaves its spare unused until the next start.
    pub fn new_id(&self) -> QueueId {
        self.spares.take()
    }

    /// How many spares are ready now.
    #[cfg(test)]
    pub(crate) fn spares_ready(&self) -> usize {
        self.spares.ready()
    }

    /// Durably stores a new message; see the module docs for the exact
    /// protocol. `Ok` is the only state in which the caller may answer 250;
    /// any error (typically [`SpoolError::StorageFull`] or [`SpoolError::Io`])
    /// means answer `451 4.3.0`, and whatever was half-written is either
    /// removed now or, after a crash, at the next start.
    pub fn store(&self, envelope: &Envelope<X>, data: &[u8]) -> Result<(), SpoolError> {
        self.store_from(envelope, &mut &data[..]).map(|_| ())
    }

    /// [`Spool::store`] for a message read from `data` (e.g. a temp file the
    /// intake spilled to), so it never has to be in memory. Returns its size.
    pub fn store_from(
        &self,
        envelope: &Envelope<X>,
        data: &mut dyn Read,
    ) -> Result<u64, SpoolError> {
        let id = &envelope.id;
        if self.spares.claim(id) {
            match fs::OpenOptions::new()
                .write(true)
                .open(self.message_path(id))
            {
                Ok(spare) => return self.store_in_spare(spare, envelope, data),
                // Deleted under us (an operator's `queue delete` of what
                // looked like a message): the id is still unused, so the
                // message goes into a new file under it.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(SpoolError::io("open a spare", self.message_path(id), error));
                }
            }
        }
        // Renaming onto an existing entry would silently replace an accepted
        // message; ids are unique, so this only catches a caller's bug.
        for suffix in [MESSAGE_SUFFIX, STATE_SUFFIX, ENVELOPE_SUFFIX, DATA_SUFFIX] {
            let path = self.dir.join(file_name(id, suffix));
            if fsio::exists(&path)? {
                let clash = io::Error::new(io::ErrorKind::AlreadyExists, "queue id already in use");
                return Err(SpoolError::io("store", path, clash));
            }
        }
        let prefix = message_file::prefix(&envelope.encode());
        let name = file_name(id, MESSAGE_SUFFIX);
        let outcome =
            fsio::write_then_rename(&self.dir, &name, &mut message_file::reader(&prefix, data))
                .and_then(|written| {
                    self.sync_dir()?;
                    Ok(written - prefix.len() as u64)
                });
        if outcome.is_err() {
            // Best effort: never leave a file that looks accepted. What
            // cannot be removed now stays, and without the 250 the client
            // sends it again: a duplicate, never a loss.
            let _ = fsio::remove_if_present(&self.message_path(id));
        }
        outcome
    }

    /// [`Spool::store_from`] into the spare named by the envelope's id
    /// (taken with [`Spool::new_id`]): one write and one `fdatasync`.
    fn store_in_spare(
        &self,
        spare: File,
        envelope: &Envelope<X>,
        data: &mut dyn Read,
    ) -> Result<u64, SpoolError> {
        let path = self.message_path(&envelope.id);
        let outcome = message_file::write_in_place(&spare, &path, &envelope.encode(), data);
        if outcome.is_err() {
            // As for a temp file: a half-written spare must not stay where
            // it could look accepted; without the 250 the client resends.
            let _ = fsio::remove_if_present(&path);
        }
        outcome
    }

    /// Durably replaces the envelope after a delivery attempt (temp + fsync +
    /// rename + directory fsync). Returns [`SpoolError::Gone`], and leaves
    /// nothing behind, when the operator deleted the message meanwhile.
    pub fn update(&self, envelope: &Envelope<X>) -> Result<(), SpoolError> {
        let id = &envelope.id;
        let (suffix, data_path) = match self.layout(id)? {
            None => return Err(SpoolError::Gone(id.clone())),
            Some(Layout::OneFile) => (STATE_SUFFIX, self.message_path(id)),
            Some(Layout::TwoFiles) => (ENVELOPE_SUFFIX, self.data_path(id)),
        };
        let name = file_name(id, suffix);
        fsio::write_then_rename(&self.dir, &name, &mut &envelope.encode()[..])?;
        self.sync_dir()?;
        // The operator may have deleted it between the check and the rename;
        // the data vanishing shows it, and then our rename must not leave an
        // envelope without data behind.
        if !fsio::exists(&data_path)? {
            self.remove(id)?;
            return Err(SpoolError::Gone(id.clone()));
        }
        Ok(())
    }

    /// Deletes a message: first the file that makes it exist (`.msg`, or the
    /// old layout's `.json`) and a directory fsync, then its other files
    /// without one (see the module docs for why none is needed). Idempotent:
    /// removing a missing message is not an error, since the daemon and the
    /// operator may race to do it.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        let removed_message = fsio::remove_if_present(&self.message_path(id))?;
        // A message is in one layout: no need to look for the other's files.
        let removed_envelope =
            !removed_message && fsio::remove_if_present(&self.envelope_path(id))?;
        if removed_message || removed_envelope {
            self.removal_syncer.sync(&self.dir)?;
        }
        let data = (!removed_message).then(|| self.data_path(id));
        for leftover in [Some(self.state_path(id)), data, Some(self.bounce_path(id))]
            .into_iter()
            .flatten()
        {
            fsio::remove_if_present(&leftover)?;
        }
        Ok(())
    }

    /// Whether `id` is a message (in either layout).
    fn layout(&self, id: &QueueId) -> Result<Option<Layout>, SpoolError> {
        if fsio::exists(&self.message_path(id))? {
            Ok(Some(Layout::OneFile))
        } else if fsio::exists(&self.envelope_path(id))? {
            Ok(Some(Layout::TwoFiles))
        } else {
            Ok(None)
        }
    }

    /// The directory fsync every durable step ends with, shared with the
    /// concurrent calls of this daemon (see `fsio::DirSyncer`).
    fn sync_dir(&self) -> Result<(), SpoolError> {
        self.syncer.sync(&self.dir)
    }

    /// Reads the envelope of `id`; [`SpoolError::Gone`] if it was deleted,
    /// [`SpoolError::Corrupt`] if it does not parse or names another id.
    pub fn read_envelope(&self, id: &QueueId) -> Result<Envelope<X>, SpoolError> {
        let (bytes, path) = self.envelope_bytes(id)?;
        let envelope = Envelope::decode(&bytes, &path)?;
        if &envelope.id != id {
            return Err(SpoolError::Corrupt {
                path,
                reason: format!("the envelope names id {} instead", envelope.id),
            });
        }
        Ok(envelope)
    }

    /// The current envelope's bytes and the file they are in: the latest
    /// `.state`, else the one written with the message, else the old
    /// layout's `.json`.
    fn envelope_bytes(&self, id: &QueueId) -> Result<(Vec<u8>, PathBuf), SpoolError> {
        let state = self.state_path(id);
        match fs::read(&state) {
            Ok(bytes) => return Ok((bytes, state)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(SpoolError::io("read", state, error)),
        }
        let message = self.message_path(id);
        match File::open(&message) {
            Ok(file) => {
                let parts = message_file::read_parts(&file, &message, id)?;
                return Ok((parts.envelope, message));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(SpoolError::io("open", message, error)),
        }
        let path = self.envelope_path(id);
        let bytes = fs::read(&path).map_err(|error| self.gone_or_io(id, "read", &path, error))?;
        Ok((bytes, path))
    }

    /// Opens the message data for streaming to a remote: a file positioned
    /// on the message's first byte, and the message's length. Read exactly
    /// that many bytes: a message written into a spare may be followed by
    /// the spare's unused room. Missing data (the operator deleted the
    /// message) gives [`SpoolError::Gone`]. An open file stays readable even
    /// if the operator deletes the message meanwhile.
    pub fn open_data(&self, id: &QueueId) -> Result<(File, u64), SpoolError> {
        let message = self.message_path(id);
        match File::open(&message) {
            Ok(mut file) => {
                let size = message_file::seek_to_data(&mut file, &message, id)?;
                return Ok((file, size));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(SpoolError::io("open", message, error)),
        }
        let path = self.data_path(id);
        let file = File::open(&path).map_err(|error| self.gone_or_io(id, "open", &path, error))?;
        let size = file
            .metadata()
            .map_err(|error| SpoolError::io("inspect", &path, error))?
            .len();
        Ok((file, size))
    }

    /// The whole message in memory, for tests; delivery streams with
    /// [`Spool::open_data`].
    #[cfg(test)]
    pub fn read_data(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError> {
        let path = self.data_path(id);
        let mut bytes = Vec::new();
        let (file, len) = self.open_data(id)?;
        file.take(len)
            .read_to_end(&mut bytes)
            .map_err(|error| SpoolError::io("read", &path, error))?;
        Ok(bytes)
    }

    /// The message size in bytes (the data file is the one place this fact lives).
    pub fn data_size(&self, id: &QueueId) -> Result<u64, SpoolError> {
        self.open_data(id).map(|(_, size)| size)
    }

    fn gone_or_io(
        &self,
        id: &QueueId,
        operation: &'static str,
        path: &Path,
        error: io::Error,
    ) -> SpoolError {
        if error.kind() == io::ErrorKind::NotFound {
            SpoolError::Gone(id.clone())
        } else {
            SpoolError::io(operation, path, error)
        }
    }

    fn data_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(file_name(id, DATA_SUFFIX))
    }

    fn envelope_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(file_name(id, ENVELOPE_SUFFIX))
    }

    fn message_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(file_name(id, MESSAGE_SUFFIX))
    }

    fn state_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(file_name(id, STATE_SUFFIX))
    }

    fn bounce_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(file_name(id, BOUNCE_SUFFIX))
    }
}

/// Whether the `.msg` file at `path` holds no message: a spare, or one being
/// written into (its header comes last). Scripts and tests that count the
/// queue by listing the directory skip these; `queue list` does already.
pub fn is_spare_file(path: &Path) -> bool {
    let mut first = [0u8; 1];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut first))
        .is_ok_and(|()| message_file::holds_no_message(&first))
}

fn file_name(id: &QueueId, suffix: &str) -> String {
    format!("{id}{suffix}")
}
