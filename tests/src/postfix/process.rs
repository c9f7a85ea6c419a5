//! Stopping a Postfix master and reaping what it leaves behind.
//!
//! The master daemonizes (it is not our child when it starts), and on these machines PID 1 does
//! not reap orphans, so every stopped instance would leave a dozen zombies that add up over many
//! test runs until the machine runs out of PIDs. Making the test process a child subreaper
//! re-parents the master and, when it exits, its children to us, so we can reap them.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long the master gets to stop its children and exit after SIGTERM before it is killed
/// (`postfix stop` waits 5 s too).
const GRACEFUL_STOP: Duration = Duration::from_secs(5);
/// How long SIGKILLed processes get to disappear.
const FORCED_STOP: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

/// A process id as the kernel APIs take it.
pub(crate) type Pid = libc::pid_t;

/// Makes this process the reaper of its orphaned descendants, once per process. Harmless for the
/// rest of the test binary: only processes whose parent died are re-parented.
pub(crate) fn become_subreaper() -> anyhow::Result<()> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches
            // no memory of ours.
            let status = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            if status == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error().to_string())
            }
        })
        .clone()
        .map_err(|error| anyhow::anyhow!("cannot become a child subreaper: {error}"))
}

/// The master's PID from `<queue_directory>/pid/master.pid` (written space-padded).
pub(crate) fn read_master_pid(queue_directory: &Path) -> anyhow::Result<Pid> {
    let path = queue_directory.join("pid").join("master.pid");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pid: Pid = text
        .trim()
        .parse()
        .with_context(|| format!("{} holds {text:?}", path.display()))?;
    anyhow::ensure!(pid > 1, "{} holds {pid}, not a master PID", path.display());
    Ok(pid)
}

/// Stops the master the way `postfix stop` does (SIGTERM, which it passes on to its process
/// group, then SIGKILL to the group if it lingers), and reaps the master and its children.
pub(crate) fn stop_master(master: Pid) {
    signal(master, libc::SIGTERM);
    if !wait_until(GRACEFUL_STOP, || has_exited(master)) {
        signal(-master, libc::SIGKILL);
        wait_until(FORCED_STOP, || has_exited(master));
    }
    // The master's children are re-parented to us when it exits; they exit on their own once
    // they see the master gone.
    if !wait_until(GRACEFUL_STOP, || group_reaped(master)) {
        signal(-master, libc::SIGKILL);
        wait_until(FORCED_STOP, || group_reaped(master));
    }
}

fn signal(target: Pid, signal: libc::c_int) {
    // SAFETY: kill has no memory arguments. A failure (ESRCH: already gone) needs no handling.
    unsafe { libc::kill(target, signal) };
}

/// Whether `pid` is gone: reaped here if it is our child, else absent or a zombie in /proc.
fn has_exited(pid: Pid) -> bool {
    // SAFETY: a null status pointer is allowed; WNOHANG never blocks.
    match unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } {
        0 => false,
        reaped if reaped == pid => true,
        _ => gone_or_zombie(pid),
    }
}

/// Reaps every child in process group `group`; true once none is left.
fn group_reaped(group: Pid) -> bool {
    loop {
        // SAFETY: as in has_exited.
        match unsafe { libc::waitpid(-group, std::ptr::null_mut(), libc::WNOHANG) } {
            0 => return false,
            reaped if reaped > 0 => continue,
            // ECHILD: no child of ours is left in the group (or none ever was ours).
            _ => return true,
        }
    }
}

/// /proc/PID/stat is "pid (comm) state ...", and comm may itself hold spaces or parentheses.
fn gone_or_zombie(pid: Pid) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some("Z" | "X") | None)
}

/// Polls `done` until it holds or `within` passes; returns whether it held.
pub(crate) fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}
