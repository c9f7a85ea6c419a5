//! The relays compared in relay-out's own role (`scenario
//! relay-out-compare`): relay-out, a private Postfix with `relayhost` to
//! the sink, and Haraka's outbound with a `get_mx` hook to the sink. Each
//! takes mail from 127.0.0.1 on loopback, keeps its queue under the run's
//! queue root, fsyncs before its 250 where it does so by default (relay-out
//! and Postfix; Haraka's queue makes no fsync), and is measured as the whole
//! tree of its processes.

use std::net::SocketAddr;
use std::path::Path;

use super::haraka::{self, Haraka};
use super::relay_out::{RelayOut, start_with};
use super::{Bench, Measured};
use crate::bench::procfs;
use crate::postfix::{Postfix, PostfixOptions};

/// Which relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RelayOut,
    Postfix,
    Haraka,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::RelayOut => "relay-out",
            Kind::Postfix => "Postfix",
            Kind::Haraka => "Haraka",
        }
    }
}

/// A running relay under comparison.
pub struct Contender {
    pub kind: Kind,
    /// Where it takes mail.
    pub addr: SocketAddr,
    running: Running,
}

enum Running {
    RelayOut(RelayOut),
    /// Boxed: the harness's handle is large beside the others.
    Postfix(Box<Postfix>),
    Haraka(Measured),
}

impl Contender {
    /// Starts `kind` with its queue under `queue_dir`, sending all mail for
    /// example.com (smtp-source's recipients) to the sink at `sink`.
    pub async fn start(
        bench: &Bench,
        kind: Kind,
        queue_dir: &Path,
        sink: SocketAddr,
        haraka_install: &Path,
        relay_out_concurrency_max: Option<usize>,
    ) -> anyhow::Result<Contender> {
        let (addr, running) = match kind {
            Kind::RelayOut => {
                let out = start_with(
                    bench,
                    sink.port(),
                    false,
                    Some(queue_dir),
                    false,
                    relay_out_concurrency_max,
                )
                .await?;
                (out.addr, Running::RelayOut(out))
            }
            Kind::Postfix => {
                let options = PostfixOptions {
                    relayhost: Some(sink),
                    base_dir: Some(queue_dir.to_path_buf()),
                    // The home server relays for its own network, as a
                    // smart host does; nothing else differs from the
                    // harness (no DNS, fsync before 250 as shipped).
                    extra_main_cf: vec![(
                        "smtpd_relay_restrictions".to_string(),
                        "permit_mynetworks reject_unauth_destination".to_string(),
                    )],
                    ..PostfixOptions::default()
                };
                let postfix =
                    tokio::task::spawn_blocking(move || Postfix::start(options)).await??;
                (postfix.addr(), Running::Postfix(Box::new(postfix)))
            }
            Kind::Haraka => {
                let Haraka { measured, addr } =
                    haraka::start(bench, haraka_install, queue_dir, sink).await?;
                (addr, Running::Haraka(measured))
            }
        };
        Ok(Contender {
            kind,
            addr,
            running,
        })
    }

    /// The process whose tree is measured.
    pub fn root_pid(&self) -> u32 {
        match &self.running {
            Running::RelayOut(out) => out.relay.daemon.pid(),
            Running::Postfix(postfix) => postfix.master_pid().unwrap_or(0),
            Running::Haraka(measured) => measured.daemon.pid(),
        }
    }

    /// Tries every deferred message now, as an admin does when the MX is
    /// back: SIGHUP for relay-out and Haraka, `postqueue -f` for Postfix.
    pub async fn release(&self) -> anyhow::Result<()> {
        match &self.running {
            Running::RelayOut(out) => out.relay.daemon.signal(libc::SIGHUP),
            Running::Haraka(measured) => measured.daemon.signal(libc::SIGHUP),
            Running::Postfix(postfix) => postfix.flush()?,
        }
        Ok(())
    }

    /// Whether it still runs (the Postfix harness stops itself only when
    /// dropped, so it counts as running).
    pub fn is_running(&mut self) -> bool {
        match &mut self.running {
            Running::RelayOut(out) => out.relay.daemon.is_running(),
            Running::Haraka(measured) => measured.daemon.is_running(),
            Running::Postfix(_) => true,
        }
    }

    /// Memory of its whole process tree now: summed RSS and summed PSS (KiB),
    /// and its CPU seconds so far.
    pub fn sample(&self) -> TreeSample {
        let pids = procfs::process_tree(self.root_pid());
        let mut sample = TreeSample::default();
        for pid in pids {
            sample.rss_kb += procfs::memory(pid).map(|m| m.now_kb).unwrap_or(0);
            sample.pss_kb += procfs::pss_kb(pid).unwrap_or(0);
            sample.cpu_seconds += procfs::cpu_seconds(pid).unwrap_or(0.0);
        }
        sample
    }

    /// Resets the kernel's peak-RSS mark of every process of the tree.
    pub fn reset_peaks(&self) {
        for pid in procfs::process_tree(self.root_pid()) {
            let _ = procfs::reset_peak(pid);
        }
    }

    /// The highest peak RSS (VmHWM) of one process of the tree since
    /// [`Contender::reset_peaks`]: exact for a one-process relay.
    pub fn peak_rss_kb(&self) -> u64 {
        procfs::process_tree(self.root_pid())
            .into_iter()
            .filter_map(|pid| procfs::memory(pid).ok())
            .map(|m| m.peak_kb)
            .max()
            .unwrap_or(0)
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        match &self.running {
            Running::RelayOut(out) => out.relay.daemon.log_tail(),
            Running::Haraka(measured) => measured.daemon.log_tail(),
            Running::Postfix(postfix) => {
                let log = postfix.log();
                log[log.len().saturating_sub(4000)..].to_string()
            }
        }
    }
}

/// A relay's whole process tree at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TreeSample {
    pub rss_kb: u64,
    pub pss_kb: u64,
    pub cpu_seconds: f64,
}
