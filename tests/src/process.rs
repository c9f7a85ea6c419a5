//! Starting and stopping the real `relay-in` / `relay-out` binaries.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The workspace's binaries, found next to the test executable
/// (`target/debug/deps/..` → `target/debug/`). The README's test command
/// builds them first.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A running relay; stopped with SIGTERM (then SIGKILL) when dropped. Its
/// stderr goes to a file the test can read.
pub struct Relay {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl Relay {
    /// Starts `name -c config_dir` and waits until `probe` accepts TCP.
    pub fn start(name: &str, config_dir: &Path, probe: SocketAddr) -> anyhow::Result<Relay> {
        Self::start_with_env(name, config_dir, probe, &[])
    }

    pub fn start_with_env(
        name: &str,
        config_dir: &Path,
        probe: SocketAddr,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Relay> {
        let log_path = config_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary(name));
        command
            .arg("-c")
            .arg(config_dir)
            .env("RUST_LOG", "debug")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        Self::start_command(name, command, log_path, probe)
    }

    /// Spawns `command` (a relay with its arguments, environment, stdio and
    /// log set up, e.g. an installed binary run as another user) and waits
    /// until `probe` accepts TCP; `log_path` is where its stderr goes.
    pub fn start_command(
        name: &str,
        mut command: Command,
        log_path: PathBuf,
        probe: SocketAddr,
    ) -> anyhow::Result<Relay> {
        let child = command
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let mut relay = Relay {
            child: Some(child),
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
                return Ok(relay);
            }
            if let Some(status) = relay
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{name} exited with {status} during startup:\n{}",
                    relay.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not listen on {probe} within 10 s:\n{}",
                    relay.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("log never showed {needle:?}:\n{}", self.log())
    }

    /// Sends SIGTERM and waits up to `within` for the exit status.
    pub fn stop(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("already stopped");
        };
        // SAFETY: as in `signal`.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a binary to completion (e.g. `--check`), returning status and
/// combined output.
pub fn run(name: &str, args: &[&str]) -> anyhow::Result<(i32, String)> {
    run_with_env(name, args, &[])
}

/// [`run`] with extra environment variables.
pub fn run_with_env(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(i32, String)> {
    let output = Command::new(binary(name))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("JOURNAL_STREAM")
        .output()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.code().unwrap_or(-1), text))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Whether this process runs as root (the dev and CI machines do): deploy
/// tests need it, and Postfix's smtp-sink must then be told to drop it.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}
