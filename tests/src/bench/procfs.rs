//! Memory and CPU use of the processes under test, from /proc.

use std::io;

/// Resident memory of one process, in KiB.
///
/// `peak_kb` is the kernel's high-water mark (VmHWM), so a short spike
/// between two samples is never missed; `now_kb` is VmRSS at the moment of
/// reading. `anon_kb` (RssAnon) is the part that is the process's own: the
/// rest of VmRSS is mostly the binary's code mapped from the page cache,
/// shared and reclaimable, and varies with what the cache holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    pub now_kb: u64,
    pub peak_kb: u64,
    pub anon_kb: u64,
}

/// Parses the VmRSS, VmHWM and RssAnon lines of /proc/PID/status.
pub fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some(Memory {
        now_kb: field("VmRSS")?,
        peak_kb: field("VmHWM")?,
        anon_kb: field("RssAnon")?,
    })
}

/// The memory of `pid` now.
pub fn memory(pid: u32) -> io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS/VmHWM in status"))
}

/// User plus system CPU time in clock ticks, from /proc/PID/stat. The
/// command name in parentheses may hold spaces, so fields are counted from
/// the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 3.. of proc(5); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable stat"))?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok(ticks as f64 / per_second as f64)
}

/// CPU seconds used by this process's children that have exited and been
/// waited for (getrusage `RUSAGE_CHILDREN`): a load generator run as a
/// child (smtp-source) is counted here once it exits.
pub fn reaped_children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into our own zeroed struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Busy and total CPU time of the whole machine (all cores), in clock
/// ticks, from the first line of /proc/stat: how busy the machine was
/// during a phase, including whatever else runs on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    pub busy: u64,
    pub total: u64,
}

impl MachineTicks {
    /// Share of the machine (all cores) busy since `earlier`, in percent.
    pub fn busy_percent_since(&self, earlier: MachineTicks) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// Parses the aggregate `cpu` line of /proc/stat; idle and iowait are the
/// idle time.
pub fn parse_machine_stat(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is already
    // counted in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some(MachineTicks {
        busy: total - idle,
        total,
    })
}

/// The machine's CPU ticks now.
pub fn machine_ticks() -> io::Result<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_machine_stat(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))
}

/// Resets `pid`'s VmHWM to its current RSS (`clear_refs` value 5), so the
/// next peak read is the peak of one phase rather than of the process's life.
pub fn reset_peak(pid: u32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// Proportional set size of `pid` in KiB (from `smaps_rollup`): its private
/// memory plus its share of what it shares. Summed over a server's
/// processes (Postfix's master and its daemons, which share libraries and
/// code) it is their real footprint, where summed RSS counts shared pages
/// once per process.
pub fn pss_kb(pid: u32) -> io::Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    parse_pss(&rollup)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Pss in smaps_rollup"))
}

/// The `Pss:` line of `smaps_rollup`, in KiB.
pub fn parse_pss(rollup: &str) -> Option<u64> {
    rollup.lines().find_map(|line| {
        let value = line.strip_prefix("Pss:")?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// `root` and every process descended from it, from the parent field of
/// each /proc/PID/stat: a server that forks its workers (Postfix's master,
/// Haraka's cluster) is measured as all of its processes.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Some(ppid) = parse_parent(&stat) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    tree
}

/// The parent PID of a /proc/PID/stat line (field 4, counted after the name).
pub fn parse_parent(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// PSS and CPU seconds of a whole process tree now (processes that exit
/// meanwhile are skipped).
pub fn tree_usage(root: u32) -> (u64, f64) {
    process_tree(root)
        .into_iter()
        .fold((0, 0.0), |(pss, cpu), pid| {
            (
                pss + pss_kb(pid).unwrap_or(0),
                cpu + cpu_seconds(pid).unwrap_or(0.0),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pss_and_the_parent() {
        assert_eq!(
            parse_pss("Rss:    900 kB\nPss:    512 kB\nPss_Anon: 3 kB\n"),
            Some(512)
        );
        assert_eq!(parse_parent("42 (qmgr (x)) S 17 42 42 0"), Some(17));
    }

    #[test]
    fn reads_rss_and_high_water_mark() {
        let status = "Name:\trelay-in\nVmPeak:\t  100 kB\nVmHWM:\t    6200 kB\nVmRSS:\t    5100 kB\nRssAnon:\t  900 kB\nRssFile:\t 4200 kB\n";
        assert_eq!(
            parse_status(status),
            Some(Memory {
                now_kb: 5100,
                peak_kb: 6200,
                anon_kb: 900,
            })
        );
        assert_eq!(parse_status("VmRSS:\t1 kB\nRssAnon:\t1 kB\n"), None);
        assert_eq!(
            parse_status("VmRSS:\tmany kB\nVmHWM:\t1 kB\nRssAnon:\t1 kB\n"),
            None
        );
    }

    #[test]
    fn reads_cpu_ticks_past_a_name_with_spaces() {
        let stat = "42 (relay in) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(stat), Some(300));
        assert_eq!(parse_stat_ticks("42 (x) S 1"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn reads_machine_busy_time() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n";
        let ticks = parse_machine_stat(stat).unwrap();
        assert_eq!(
            ticks,
            MachineTicks {
                busy: 150,
                total: 1000
            }
        );
        let later = MachineTicks {
            busy: 250,
            total: 1200,
        };
        assert_eq!(later.busy_percent_since(ticks), 50.0);
        assert_eq!(parse_machine_stat("intr 1 2"), None);
        assert!(machine_ticks().is_ok());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let memory = memory(me).unwrap();
        assert!(memory.now_kb > 0 && memory.peak_kb >= memory.now_kb);
        assert!(memory.anon_kb > 0 && memory.anon_kb <= memory.now_kb);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
    }
}
