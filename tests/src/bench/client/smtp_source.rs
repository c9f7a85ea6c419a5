//! Postfix's `smtp-source` as the load generator (`--load smtp-source`):
//! the client the Postfix world benchmarks with, so a figure can be set
//! beside anyone else's smtp-source figure. It runs as its own process, as a
//! sending MTA would; every session comes from 127.0.0.1, the address the
//! kernel picks for a connection to 127.0.0.1 (smtp-source cannot choose
//! another), so per-address limits apply to all of them together.
//!
//! Without `-A`, smtp-source exits non-zero at the first reply that is not
//! the expected 2xx (a `421` from a connection limit, say) or at a broken
//! connection; with `-c` it prints a counter, one `N\r` per completed DATA,
//! so a run that stopped early says how far it got.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Postfix's load generator, from the postfix package.
pub const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";

/// How often the run is checked for its end: small beside any run's length.
const WAIT_POLL: Duration = Duration::from_millis(2);

/// One smtp-source run.
#[derive(Debug, Clone)]
pub struct SmtpSourcePlan {
    pub target: SocketAddr,
    /// Parallel sessions (`-s`).
    pub sessions: usize,
    /// Messages in all (`-m`), shared by the sessions.
    pub messages: u64,
    /// Body length in octets (`-l`; smtp-source adds its own few headers).
    pub size: usize,
    /// `-d`: a session keeps its connection for its next message instead of
    /// a connection per message (smtp-source's default, as most MX traffic).
    pub keep_connections: bool,
    /// The run is killed after this long.
    pub time_limit: Duration,
}

/// What one smtp-source run did.
#[derive(Debug, Clone)]
pub struct SmtpSourceOutcome {
    /// DATA transactions completed (its `-c` counter).
    pub completed: u64,
    pub elapsed: Duration,
    /// It exited 0: every reply was the expected one.
    pub success: bool,
    /// Why it stopped, when it did not succeed (its `fatal:` line, the exit
    /// status, or the time limit).
    pub error: Option<String>,
}

impl SmtpSourcePlan {
    /// The command-line arguments, as smtp-source takes them.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-c".to_string(),
            "-s".to_string(),
            self.sessions.max(1).to_string(),
            "-m".to_string(),
            self.messages.to_string(),
            "-l".to_string(),
            self.size.to_string(),
            "-M".to_string(),
            "source.bench.test".to_string(),
            "-f".to_string(),
            "sender@source.bench.test".to_string(),
            "-t".to_string(),
            "rcpt@example.com".to_string(),
        ];
        if self.keep_connections {
            args.push("-d".to_string());
        }
        args.push(format!("inet:{}", self.target));
        args
    }
}

/// Runs smtp-source to completion (or its time limit). Its output goes to
/// unnamed temporary files, not pipes: the counter of a long run outgrows a
/// pipe's buffer, and nothing needs reading before it exits.
pub async fn run(plan: &SmtpSourcePlan) -> anyhow::Result<SmtpSourceOutcome> {
    anyhow::ensure!(
        Path::new(SMTP_SOURCE).exists(),
        "{SMTP_SOURCE} not found: install the postfix package (apt install postfix)"
    );
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || run_blocking(&plan))
        .await
        .context("smtp-source's waiting thread")?
}

fn run_blocking(plan: &SmtpSourcePlan) -> anyhow::Result<SmtpSourceOutcome> {
    let mut stdout = tempfile::tempfile()?;
    let mut stderr = tempfile::tempfile()?;
    let started = Instant::now();
    let mut child = Command::new(SMTP_SOURCE)
        .args(plan.args())
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()
        .with_context(|| format!("starting {SMTP_SOURCE}"))?;
    let deadline = started + plan.time_limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(WAIT_POLL);
    };
    let elapsed = started.elapsed();
    let completed = last_counter(&read_all(&mut stdout)?);
    let stderr = read_all(&mut stderr)?;
    let Some(status) = status else {
        return Ok(SmtpSourceOutcome {
            completed,
            elapsed,
            success: false,
            error: Some(format!("still running after {:?}: killed", plan.time_limit)),
        });
    };
    let success = status.success();
    let error = (!success).then(|| {
        let said = stderr
            .lines()
            .find(|line| line.contains("fatal:"))
            .or_else(|| stderr.lines().last())
            .unwrap_or("")
            .trim();
        format!("smtp-source {status}: {said}")
    });
    Ok(SmtpSourceOutcome {
        completed,
        elapsed,
        success,
        error,
    })
}

fn read_all(file: &mut std::fs::File) -> anyhow::Result<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// The last value of smtp-source's `-c` counter (`1\r2\r…N\r\n`); 0 when it
/// printed none.
pub fn last_counter(stdout: &str) -> u64 {
    stdout
        .split(['\r', '\n'])
        .filter_map(|field| field.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_read_from_its_last_value() {
        assert_eq!(last_counter("1\r2\r3\r\n"), 3);
        assert_eq!(last_counter(""), 0);
        assert_eq!(last_counter("1\r2\r"), 2);
    }

    #[test]
    fn kept_connections_add_dash_d_and_the_target_comes_last() {
        let plan = SmtpSourcePlan {
            target: "127.0.0.1:2525".parse().unwrap(),
            sessions: 20,
            messages: 100,
            size: 2048,
            keep_connections: true,
            time_limit: Duration::from_secs(1),
        };
        let args = plan.args();
        assert!(args.windows(2).any(|w| w == ["-s", "20"]));
        assert!(args.contains(&"-d".to_string()));
        assert_eq!(args.last().unwrap(), "inet:127.0.0.1:2525");
        let per_message = SmtpSourcePlan {
            keep_connections: false,
            ..plan
        };
        assert!(!per_message.args().contains(&"-d".to_string()));
    }
}
