//! Which daemon owns a queue directory, from the PID file the daemon writes
//! there: the spool's lock.
//!
//! Used both ways: the CLI signals that daemon (relay-out's `queue flush`,
//! `queue bounce`), and a starting daemon refuses to share the directory
//! with a live one (its start-up scan would delete the other's intakes in
//! progress). A PID file can be stale after a crash and its number reused
//! by an unrelated process, so a PID only counts if that process exists and,
//! where `/proc` tells, is named like the daemon given to [`Spool::open`]:
//! SIGHUP must never reach a stranger (its default action is to terminate).

use std::io;

use super::{Extras, Spool, SpoolError};

/// Why the daemon could not be signalled.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{daemon} is not running on this queue (no live daemon in its PID file)")]
    NotRunning { daemon: &'static str },
    #[error("cannot signal {daemon} (PID {pid}): {source}")]
    Kill {
        daemon: &'static str,
        pid: u32,
        source: io::Error,
    },
}

impl<X: Extras> Spool<X> {
    /// The PID of the live daemon that owns this directory, if any.
    pub fn running_daemon(&self) -> Result<Option<u32>, SpoolError> {
        Ok(self
            .read_pid_file()?
            .filter(|&pid| is_process_named(pid, self.daemon)))
    }

    /// Sends SIGHUP to the daemon that owns this directory (retry deferred
    /// mail now, look at bounce requests); returns its PID.
    pub fn send_hangup(&self) -> Result<u32, SignalError> {
        let daemon = self.daemon;
        let pid = self
            .running_daemon()?
            .ok_or(SignalError::NotRunning { daemon })?;
        let target = libc::pid_t::try_from(pid).map_err(|_| SignalError::NotRunning { daemon })?;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        let result = unsafe { libc::kill(target, libc::SIGHUP) };
        if result == 0 {
            Ok(pid)
        } else {
            Err(SignalError::Kill {
                daemon,
                pid,
                source: io::Error::last_os_error(),
            })
        }
    }
}

/// Whether `pid` is this process or a live process named `name`.
fn is_process_named(pid: u32, name: &str) -> bool {
    let Ok(target) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be
    // signalled; no memory is involved.
    let exists = unsafe { libc::kill(target, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        // The kernel keeps the first 15 bytes of a process name.
        Ok(comm) => comm.trim_end() == name.get(..15).unwrap_or(name),
        // No /proc (or not readable): existence is all we can know.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name relay-out opens its spool with.
    const PROCESS_NAME: &str = "relay-out";

    #[test]
    fn stale_and_foreign_pids_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool: Spool = Spool::open(dir.path(), PROCESS_NAME).expect("spool");
        assert_eq!(spool.running_daemon().ok().flatten(), None);
        // PID 1 exists but is not relay-out (init, or the container's shell).
        spool.write_pid_file(1).expect("pid file");
        if std::fs::read_to_string("/proc/1/comm").is_ok_and(|n| n.trim_end() != PROCESS_NAME) {
            assert_eq!(spool.running_daemon().ok().flatten(), None);
            assert!(matches!(
                spool.send_hangup(),
                Err(SignalError::NotRunning { .. })
            ));
        }
        // A PID that cannot exist.
        spool.write_pid_file(i32::MAX as u32).expect("pid file");
        assert_eq!(spool.running_daemon().ok().flatten(), None);
    }
}
