//! The processes under test, started from release (or debug) binaries and
//! measured through /proc.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::procfs::{self, Memory};

/// How long a daemon may take to listen after starting.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the binaries are: `--bin-dir`, else next to this program
/// (`target/release/postern-bench` → `target/release/`).
pub fn bin_dir(chosen: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = chosen {
        return Ok(dir.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating postern-bench")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("postern-bench has no parent directory")
}

/// `dir/name`, or an error that says how to build it.
pub fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release --workspace --bins), or point --bin-dir at it",
            path.display()
        );
    }
    Ok(path)
}

/// A running process under test: stopped with SIGTERM (killed if it does
/// not exit) when dropped, so no bench run leaves a daemon behind. Its
/// stderr goes to a log file kept in the run's work directory, its stdout
/// to another beside it.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    pub log_path: PathBuf,
    /// Its standard output (smtp-sink's `-c` counter; empty for the relays).
    pub output_path: PathBuf,
    /// CPU seconds at the last [`Daemon::cpu_mark`].
    cpu_mark: f64,
}

/// What a daemon used during one load phase.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Usage {
    pub process: String,
    /// Right after startup, before any load.
    pub idle: Memory,
    /// At the end of the phase; `peak_kb` is the high-water mark since start.
    pub end: Memory,
    /// CPU seconds used during the phase.
    pub cpu_seconds: f64,
}

impl Daemon {
    /// Starts `program args…` with `env`, waiting until `probe` accepts TCP.
    /// Its standard input is a pipe held by us: a daemon that watches it
    /// (the sink) exits with us.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log_path: PathBuf,
        probe: SocketAddr,
    ) -> anyhow::Result<Daemon> {
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let output_path = log_path.with_extension("out");
        let output = std::fs::File::create(&output_path)
            .with_context(|| format!("creating {}", output_path.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::piped())
            .stdout(output)
            .stderr(log);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut daemon = Daemon {
            name: name.to_string(),
            child: Some(child),
            log_path,
            output_path,
            cpu_mark: 0.0,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
                daemon.cpu_mark()?;
                return Ok(daemon);
            }
            if let Some(status) = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{name} exited with {status} while starting:\n{}",
                    daemon.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not listen on {probe} within {STARTUP_TIMEOUT:?}:\n{}",
                    daemon.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        procfs::memory(self.pid()).with_context(|| format!("reading {}'s memory", self.name))
    }

    /// Starts a new CPU accounting phase.
    pub fn cpu_mark(&mut self) -> anyhow::Result<()> {
        self.cpu_mark = procfs::cpu_seconds(self.pid())?;
        Ok(())
    }

    /// Memory now and CPU since the last mark; `idle` as measured before.
    pub fn usage(&mut self, idle: Memory) -> anyhow::Result<Usage> {
        let now = procfs::cpu_seconds(self.pid())?;
        let usage = Usage {
            process: self.name.clone(),
            idle,
            end: self.memory()?,
            cpu_seconds: now - self.cpu_mark,
        };
        self.cpu_mark = now;
        Ok(usage)
    }

    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// The end of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: as in `signal`.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Raises this process's open-file limit to its hard limit (children
/// inherit it) and returns the new soft limit; fails when even the hard
/// limit is below `needed`, naming the `ulimit -n` to use.
pub fn raise_file_limit(needed: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from our own struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit");
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error()).context("setrlimit");
            }
        }
    }
    if limit.rlim_cur < needed {
        bail!(
            "the open-file limit is {} but this scenario needs about {needed}: raise it first (as root: ulimit -n {})",
            limit.rlim_cur,
            needed.next_multiple_of(1024)
        );
    }
    Ok(limit.rlim_cur)
}
