//! The one error type of the spool.

use std::io;
use std::path::PathBuf;

use super::id::QueueId;

/// Everything a spool operation can fail with, typed so that the intake can
/// answer `451 4.3.0` on any storage failure, the delivery loop can tell an
/// operator's deletion ([`SpoolError::Gone`]) from a real fault, and the CLI can
/// print something precise.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The file system has no space (or quota) left. Kept apart from
    /// [`SpoolError::Io`] because it is the one storage failure an operator
    /// can fix without reading a backtrace, so it deserves its own log line.
    #[error("queue storage is full while trying to {operation} {path}: {source}")]
    StorageFull {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Any other I/O failure (permissions, a path that is not a directory,
    /// an I/O error of the device...).
    #[error("queue I/O error while trying to {operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The message is no longer in the queue: an operator deleted it (with
    /// `relay-out queue delete`) or it was already removed. The daemon treats
    /// this as "deleted on purpose", never as a fault.
    #[error("queue entry {0} is gone (deleted by the operator or already delivered)")]
    Gone(QueueId),
    /// A string given as a queue id (CLI argument, file name, envelope field)
    /// is not one, so it must never be turned into a path.
    #[error("not a valid queue id: {0:?}")]
    InvalidId(String),
    /// An envelope file exists but cannot be understood (truncated, garbage,
    /// wrong id, unknown format version).
    #[error("corrupt queue envelope {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The PID file does not hold a process id, so `flush` cannot signal the daemon.
    #[error("PID file {path} does not hold a process id")]
    BadPidFile { path: PathBuf },
}

impl SpoolError {
    /// Wraps an `io::Error`, singling out a full disk or exceeded quota, and
    /// a vanished file of a known message as [`SpoolError::Gone`].
    pub(super) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => SpoolError::StorageFull {
                operation,
                path,
                source,
            },
            _ => SpoolError::Io {
                operation,
                path,
                source,
            },
        }
    }

    /// True when the message was deleted (by the operator) rather than broken:
    /// the daemon drops it from memory silently.
    pub fn is_gone(&self) -> bool {
        matches!(self, SpoolError::Gone(_))
    }
}
