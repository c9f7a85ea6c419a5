//! The start of both daemons: logging, the async runtime, and the exit code.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use tracing::{error, info};

/// Sets up logging, runs `daemon` on a multi-threaded runtime, and turns its
/// result into the exit code (an error is logged with its whole chain).
pub fn run_daemon<F, E>(name: &str, daemon: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    one_malloc_arena();
    let logs = crate::logging::init("info");
    info!(version = env!("CARGO_PKG_VERSION"), logs, "{name} starting");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

/// glibc gives each thread that finds the heap busy an arena of its own, and
/// memory freed in one is never reused by another: relay-in with 100 sessions
/// of 100 KB messages peaked at 46 MB with the runtime's workers in their own
/// arenas and at 37 MB in one, at the same throughput (BENCHMARKS.md). A
/// daemon meant for a 1 GB machine, often with one CPU, wants the latter.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: mallopt only sets a parameter of the allocator; this runs
    // before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

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
