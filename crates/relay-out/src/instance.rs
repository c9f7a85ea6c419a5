//! Which relay-out daemon owns a queue directory, from the PID file the
//! daemon writes there.
//!
//! Used both ways: the CLI signals that daemon (`queue flush`, `queue
//! bounce`), and a starting daemon refuses to share the directory with a
//! live one (its start-up scan would delete the other's intakes in
//! progress). A PID file can be stale after a crash and its number reused
//! by an unrelated process, so a PID only counts if that process exists and,
//! where `/proc` tells, is named `relay-out`: SIGHUP must never reach a
//! stranger (its default action is to terminate).

use std::io;

use crate::queue::{Spool, SpoolError};

/// The process name the kernel reports for this binary.
const PROCESS_NAME: &str = "relay-out";

/// Why the daemon could not be signalled.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("relay-out is not running on this queue (no live daemon in its PID file)")]
    NotRunning,
    #[error("cannot signal relay-out (PID {pid}): {source}")]
    Kill { pid: u32, source: io::Error },
}

/// The PID of the live relay-out daemon of `spool`, if any.
pub fn running_daemon(spool: &Spool) -> Result<Option<u32>, SpoolError> {
    Ok(spool.read_pid_file()?.filter(|&pid| is_relay_out(pid)))
}

/// Sends SIGHUP to the daemon of `spool` (retry deferred mail now, look at
/// bounce requests); returns its PID.
pub fn send_hangup(spool: &Spool) -> Result<u32, SignalError> {
    let pid = running_daemon(spool)?.ok_or(SignalError::NotRunning)?;
    let target = libc::pid_t::try_from(pid).map_err(|_| SignalError::NotRunning)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(target, libc::SIGHUP) };
    if result == 0 {
        Ok(pid)
    } else {
        Err(SignalError::Kill {
            pid,
            source: io::Error::last_os_error(),
        })
    }
}

fn is_relay_out(pid: u32) -> bool {
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
        Ok(name) => name.trim_end() == PROCESS_NAME,
        // No /proc (or not readable): existence is all we can know.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_foreign_pids_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        assert_eq!(running_daemon(&spool).ok().flatten(), None);
        // PID 1 exists but is not relay-out (init, or the container's shell).
        spool.write_pid_file(1).expect("pid file");
        if std::fs::read_to_string("/proc/1/comm").is_ok_and(|n| n.trim_end() != PROCESS_NAME) {
            assert_eq!(running_daemon(&spool).ok().flatten(), None);
            assert!(matches!(send_hangup(&spool), Err(SignalError::NotRunning)));
        }
        // A PID that cannot exist.
        spool.write_pid_file(i32::MAX as u32).expect("pid file");
        assert_eq!(running_daemon(&spool).ok().flatten(), None);
    }
}
