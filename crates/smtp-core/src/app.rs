//! The start of both daemons: logging, the async runtime, and the exit code.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use tracing::{error, info};

/// Which async runtime a daemon runs on.
///
/// It exists because the right answer depends on the daemon: relay-in's
/// work is all socket I/O (its file writes go to `spawn_blocking`), so on
/// one CPU a single-threaded runtime does the same work with fewer
/// instructions and without cross-thread wake-ups; relay-out keeps the
/// multi-threaded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Tokio's multi-threaded runtime, one worker per CPU.
    MultiThread,
    /// One thread when the process may use only one CPU (a 1-vCPU VPS, an
    /// affinity mask or cgroup quota of one), else [`Runtime::MultiThread`].
    /// Measured with callgrind on relay-in (BENCHMARKS.md, issue 19): 3-5%
    /// fewer instructions per message than the multi-threaded runtime with
    /// its one worker, and no futex wake-ups.
    SingleOnOneCpu,
}

impl Runtime {
    /// Whether this process gets the single-threaded runtime.
    fn single_threaded(self) -> bool {
        match self {
            Runtime::MultiThread => false,
            Runtime::SingleOnOneCpu => {
                std::thread::available_parallelism().is_ok_and(|n| n.get() == 1)
            }
        }
    }
}

/// Sets up logging, runs `daemon` on a multi-threaded runtime, and turns its
/// result into the exit code (an error is logged with its whole chain).
pub fn run_daemon<F, E>(name: &str, daemon: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    run_daemon_on(name, Runtime::MultiThread, daemon)
}

/// As [`run_daemon`], on the runtime `runtime` picks.
pub fn run_daemon_on<F, E>(name: &str, runtime: Runtime, daemon: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    let single = runtime.single_threaded();
    limit_malloc_arenas(single);
    let logs = crate::logging::init("info");
    let flavour = if single {
        "single-threaded"
    } else {
        "multi-threaded"
    };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        logs,
        runtime = flavour,
        "{name} starting"
    );
    let mut builder = if single {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How many glibc malloc arenas the multi-threaded runtime's workers share.
///
/// glibc gives each thread that finds the heap busy an arena of its own, up
/// to eight per CPU, and memory freed in one is never reused by another:
/// relay-in with 100 sessions of 100 KB messages peaked at 46 MB with every
/// thread in its own arena and at 37 MB in one (BENCHMARKS.md). But in one
/// arena the two workers of a 2-CPU machine queue on its lock: at 20
/// sessions with a connection per message relay-in made 4.2 futex calls and
/// 2.1 context switches per message, nearly all of them malloc's lock
/// (perf); with two arenas 1.75 and 1.6, for a peak of 27.7 MB against 26.2
/// (BENCHMARKS.md, issue 19, "malloc's lock").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const WORKER_ARENAS: libc::c_int = 2;

/// Bounds glibc's malloc arenas: one for a single-threaded runtime (a
/// 1-vCPU VPS: nothing to contend), [`WORKER_ARENAS`] otherwise, so that a
/// daemon meant for a 1 GB machine does not grow an arena per thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas(single_threaded: bool) {
    let arenas = if single_threaded { 1 } else { WORKER_ARENAS };
    // SAFETY: mallopt only sets a parameter of the allocator; this runs
    // before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas(_single_threaded: bool) {}

/// How often [`give_back_freed_memory`] returns the allocator's free pages.
const TRIM_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// Returns the allocator's free pages to the system every [`TRIM_PERIOD`],
/// for the life of the runtime it is called on.
///
/// glibc gives memory back only from the top of its heap, so after a burst
/// one buffer still in use near the top keeps everything below it resident:
/// relay-in stayed at 22 MB (15 MB anonymous) after 100 sessions of 100 KB
/// messages, and `malloc_trim(0)` took it to 9.3 MB. Trimming releases the
/// free pages wherever they are; a page needed again costs a page fault, a
/// few MB a period at most, which is nothing next to the mail that freed it.
pub fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut every = tokio::time::interval(TRIM_PERIOD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // SAFETY: malloc_trim only releases free memory of the allocator;
            // it takes the allocator's own locks.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}

/// Prints a `--check` report and returns its exit code.
pub fn print_check<E: Display>(name: &str, report: Result<Vec<String>, E>) -> ExitCode {
    match report {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            println!("OK: {name} will run with this configuration.");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("error: {error:#}");
            println!("FAILED: {name} will not start with this configuration.");
            ExitCode::FAILURE
        }
    }
}

/// The verdict lines of a `--check --probe`, in the binary's words.
pub struct ProbeVerdicts {
    /// Everything probed is fine.
    pub passed: &'static str,
    /// The binary would run, but something it needs is not there.
    pub failed: &'static str,
    /// The probe itself could not be made.
    pub not_run: &'static str,
}

/// Prints a `--check --probe` report (its lines, and whether it passed) and
/// returns its exit code.
pub fn print_probe<E: Display>(
    report: Result<(Vec<String>, bool), E>,
    verdicts: &ProbeVerdicts,
) -> ExitCode {
    match report {
        Ok((lines, passed)) => {
            for line in lines {
                println!("{line}");
            }
            if passed {
                println!("OK: {}", verdicts.passed);
                ExitCode::SUCCESS
            } else {
                println!("FAILED: {}", verdicts.failed);
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            println!("error: {error:#}");
            println!("FAILED: {}", verdicts.not_run);
            ExitCode::FAILURE
        }
    }
}
