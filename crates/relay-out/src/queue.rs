//! relay-out's queue: the `spool` crate (see its docs for the file format,
//! the write order and when a message can be delivered twice) opened the
//! way relay-out owns it. Kept here so that the default directory and the
//! daemon name the PID file and the lock go by are stated once.

use std::path::Path;

use spool::{Spool, SpoolError};

/// Where the queue lives unless `queue_dir` says otherwise.
pub const DEFAULT_QUEUE_DIR: &str = "/var/spool/postern/queue";

/// The process name relay-out owns its queue directory under: the PID file
/// is `relay-out.pid`, and only a live process of this name counts as the
/// daemon (a flush never signals a stranger).
pub const DAEMON_NAME: &str = "relay-out";

/// Opens (creating it if missing) relay-out's queue at `dir`.
pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
    Spool::open(dir, DAEMON_NAME)
}
