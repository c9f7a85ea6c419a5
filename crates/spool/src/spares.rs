//! Spare message files: made ahead of time, so that accepting a message
//! costs one `fdatasync` of data instead of a file creation, an `fsync` and
//! a directory `fsync`.
//!
//! It exists because of where the time goes on a journaled file system (a
//! VPS's ext4): every new name and every newly allocated block waits for a
//! journal commit, and until this an intake waited for two (the file's fsync,
//! then the directory's after the rename), ~1.6 ms per message on the
//! benchmark's loop-mounted ext4 against ~0.2 ms for overwriting blocks that
//! already exist and syncing only their data. A spare is `<id>.msg` (its id
//! is the next message's id) holding [`SPARE_BYTES`] zeros, whose name,
//! size and blocks were made durable before it entered the pool; an intake
//! writes the message into it with `message_file::write_in_place` and syncs
//! only the data (see the crate docs, *Write protocol*).
//!
//! Making spares is the refill thread's work, in batches (one `syncfs`
//! each), off the clients' path. The daemon asks for it with [`crate::Spool::keep_spares`]; the CLI
//! and other users of the crate never make spares, and an intake that finds
//! the pool empty writes the message through a temp file as before.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::error::SpoolError;
use super::fsio::{self, FILE_MODE};
use super::id::QueueId;

/// A spare's size: one file-system block, the least any file takes, so a
/// queued message never uses more disk than before spares (16 KiB spares made
/// a backlog of 2 KB messages take 16 KiB each). A message of up to ~3.5 KB
/// with its envelope fits (the benchmark's 2 KB one takes 2,936 bytes); a
/// bigger one still goes into a spare: the file grows and its `fdatasync`
/// then also commits the new size, one journal commit instead of two.
pub const SPARE_BYTES: u64 = 4 * 1024;

/// How many spares the pool tops up to; it refills once half are used.
/// 256 × 4 KiB is 1 MiB of disk. With 64, 20 concurrent intakes emptied
/// the pool a quarter of the time (those intakes then paid the temp-file
/// path's two journal commits).
pub const SPARES_KEPT: usize = 256;

/// How long the refill thread waits after failing (a full disk, say) before
/// trying again, so that it never spins; intakes meanwhile use temp files.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// How often an idle refill thread checks whether its spool is gone.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The pool shared by a spool's clones and its refill thread.
#[derive(Debug, Default)]
pub(super) struct SparePool {
    state: Mutex<PoolState>,
    /// Wakes the refill thread when the pool runs low.
    low: Condvar,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Durable spares, oldest first (their ids sort by creation, so taking
    /// the oldest keeps queue ids in arrival order).
    ready: VecDeque<QueueId>,
    /// Ids handed out by `take` and not yet written: `store` must use the
    /// spare for these and a new file for any other id.
    taken: HashSet<QueueId>,
    /// Whether a refill thread runs; 0 spares wanted means none.
    wanted: usize,
}

impl SparePool {
    /// The id of the next spare, now reserved for the caller's message; a
    /// fresh id (for a message written through a temp file) when the pool
    /// is empty or off.
    pub(super) fn take(&self) -> QueueId {
        let mut state = self.lock();
        let Some(id) = state.ready.pop_front() else {
            return QueueId::generate();
        };
        state.taken.insert(id.clone());
        if state.ready.len() <= state.wanted / 2 {
            self.low.notify_one();
        }
        id
    }

    /// Whether `id` was handed out by [`SparePool::take`] as a spare; it is
    /// no longer reserved afterwards (one store per id).
    pub(super) fn claim(&self, id: &QueueId) -> bool {
        self.lock().taken.remove(id)
    }

    /// Adds spares to the pool: a batch just made, or those a load found
    /// (left by the previous run, or by this one if it loads again: those
    /// already ready or taken are not added twice).
    pub(super) fn adopt(&self, ids: impl IntoIterator<Item = QueueId>) {
        let mut state = self.lock();
        let state = &mut *state;
        for id in ids {
            if !state.taken.contains(&id) && !state.ready.contains(&id) {
                state.ready.push_back(id);
            }
        }
        state.ready.make_contiguous().sort();
    }

    /// How many spares are ready.
    #[cfg(test)]
    pub(super) fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Starts the refill thread for `dir`, once, keeping `wanted` spares;
    /// its failures go to the log (intakes then write new files).
    pub(super) fn start(self: &Arc<Self>, dir: &Path, wanted: usize) -> std::io::Result<()> {
        {
            let mut state = self.lock();
            if state.wanted > 0 || wanted == 0 {
                return Ok(());
            }
            state.wanted = wanted;
        }
        let pool = Arc::downgrade(self);
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("spool-spares".to_string())
            .spawn(move || refill_loop(&pool, &dir))
            .map(drop)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tops the pool up whenever it runs low, until the spool is dropped.
fn refill_loop(pool: &Weak<SparePool>, dir: &Path) {
    loop {
        let Some(strong) = pool.upgrade() else { return };
        let missing = {
            let mut state = strong.lock();
            if state.ready.len() > state.wanted / 2 {
                state = strong
                    .low
                    .wait_timeout(state, IDLE_CHECK)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if state.ready.len() > state.wanted / 2 {
                0
            } else {
                state.wanted - state.ready.len()
            }
        };
        if missing == 0 {
            continue;
        }
        match make_spares(dir, missing) {
            Ok(made) => strong.adopt(made),
            Err(error) => {
                tracing::error!(%error, "cannot make spare queue files; intakes write new files meanwhile");
                drop(strong);
                std::thread::sleep(RETRY_AFTER_FAILURE);
            }
        }
    }
}

/// Makes `count` spares durably: all files written, then one `syncfs` for
/// the whole batch. On failure nothing made by this call is left behind.
///
/// `syncfs` rather than an `fdatasync` per file and a directory `fsync`: it
/// makes every file's data, size and name durable at once (one journal
/// commit and one cache flush instead of one flush per spare: 190 → ~110 µs
/// of device time per spare on the benchmark's ext4 image). It also writes
/// out whatever else is dirty on that file system, earlier than the kernel
/// would have; only this background thread waits for that.
pub(super) fn make_spares(dir: &Path, count: usize) -> Result<Vec<QueueId>, SpoolError> {
    let mut made: Vec<(QueueId, PathBuf)> = Vec::with_capacity(count);
    let outcome = (|| {
        let zeros = vec![0u8; SPARE_BYTES as usize];
        for _ in 0..count {
            let id = QueueId::generate();
            let path = dir.join(format!("{id}{}", super::MESSAGE_SUFFIX));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
                .map_err(|error| SpoolError::io("create a spare", &path, error))?;
            made.push((id, path.clone()));
            file.write_all_at(&zeros, 0)
                .map_err(|error| SpoolError::io("write a spare", &path, error))?;
        }
        sync_file_system(dir)
    })();
    match outcome {
        Ok(()) => Ok(made.into_iter().map(|(id, _)| id).collect()),
        Err(error) => {
            for (_, path) in &made {
                let _ = fsio::remove_if_present(path);
            }
            Err(error)
        }
    }
}

/// `syncfs` on the file system holding `dir`: returns once all its data and
/// metadata are on stable storage (and, since Linux 5.8, reports writeback
/// errors).
fn sync_file_system(dir: &Path) -> Result<(), SpoolError> {
    let handle = File::open(dir).map_err(|error| SpoolError::io("open", dir, error))?;
    // SAFETY: syncfs only reads the descriptor, valid for the whole call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        let error = std::io::Error::last_os_error();
        Err(SpoolError::io("syncfs the file system of", dir, error))
    }
}
