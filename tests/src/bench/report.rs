//! What a scenario measured: printed as a table, written as JSON, and
//! summarised as Markdown rows for BENCHMARKS.md.

use std::fmt::Write as _;

use super::daemon::Usage;
use super::stats::Latency;

/// One load phase against one target.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Phase {
    /// What was measured, e.g. "sink" or "relay-in → sink".
    pub target: String,
    pub concurrency: usize,
    pub message_size: usize,
    pub delivered: u64,
    pub refused: u64,
    pub failed: u64,
    pub connections: u64,
    pub seconds: f64,
    pub messages_per_second: f64,
    /// End-of-DATA latency; absent for phases without a client (delivery).
    pub latency: Option<Latency>,
    pub processes: Vec<Usage>,
    /// CPU seconds the bench itself (load client, test DNS, or smtp-source
    /// as its child) used.
    pub bench_cpu_seconds: f64,
    /// How busy the whole machine was (all cores, percent): near 100 means
    /// the run was CPU-bound; well above the processes' own share means
    /// something else was running.
    pub machine_busy_percent: f64,
    /// CPU used by everything else on the machine meanwhile, in percent of
    /// one core (other people's builds make figures unreliable).
    pub others_cpu_percent: f64,
    /// The first few error texts.
    pub errors: Vec<String>,
}

impl Phase {
    pub fn errors_total(&self) -> u64 {
        self.refused + self.failed
    }

    /// Fills in [`Phase::others_cpu_percent`] from the machine's busy share
    /// and what the measured processes and the bench used.
    pub fn account_others(&mut self) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let seconds = self.seconds.max(f64::EPSILON);
        let ours: f64 =
            self.processes.iter().map(|u| u.cpu_seconds).sum::<f64>() + self.bench_cpu_seconds;
        self.others_cpu_percent =
            (self.machine_busy_percent * cores - 100.0 * ours / seconds).max(0.0);
    }
}

/// A measured quantity that is not a load phase (idle memory, per-connection
/// cost, a new client's wait).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fact {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// One of the targets, applied to this run's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// Everything one scenario run produced; one JSON object.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    /// The command that reproduces this run.
    pub command: String,
    pub phases: Vec<Phase>,
    pub facts: Vec<Fact>,
    pub checks: Vec<Check>,
    /// A scenario's own summary table (Markdown), printed last: the
    /// comparisons that run many phases (`headline`, `relay-out-compare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// The check [`super::scenario`]'s counted scenarios add: every message
/// the load sent was accepted and arrived.
pub const COUNTED_CHECK: &str =
    "no message refused or lost (smtp-source's exit status, smtp-sink's count)";

impl ScenarioReport {
    /// What was refused or lost, when the counted check failed.
    pub fn lost_or_refused(&self) -> Option<&str> {
        self.checks
            .iter()
            .find(|check| check.target == COUNTED_CHECK && !check.met)
            .map(|check| check.measured.as_str())
    }

    pub fn fact(&mut self, name: &str, value: f64, unit: &str) {
        self.facts.push(Fact {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
        });
    }

    pub fn check(&mut self, target: &str, measured: String, met: bool) {
        self.checks.push(Check {
            target: target.to_string(),
            measured,
            met,
        });
    }

    /// The human-readable form printed after each run.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== {}\n   {}", self.scenario, self.command);
        if !self.phases.is_empty() {
            let _ = writeln!(
                out,
                "   {:<22} {:>5} {:>7} {:>9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>5}  processes (RSS idle/end/peak MB, CPU % of one core)",
                "target",
                "conc",
                "size",
                "delivered",
                "errors",
                "msg/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "busy%"
            );
        }
        for phase in &self.phases {
            let latency = phase.latency.unwrap_or_default();
            let dash = phase.latency.is_none();
            let ms = |v: f64| {
                if dash {
                    "-".to_string()
                } else {
                    format!("{v:.2}")
                }
            };
            let _ = writeln!(
                out,
                "   {:<22} {:>5} {:>7} {:>9} {:>6} {:>9.0} {:>8} {:>8} {:>8} {:>5.0}  {}",
                phase.target,
                phase.concurrency,
                phase.message_size,
                phase.delivered,
                phase.errors_total(),
                phase.messages_per_second,
                ms(latency.p50_ms),
                ms(latency.p99_ms),
                ms(latency.max_ms),
                phase.machine_busy_percent,
                processes(phase),
            );
            for error in &phase.errors {
                let _ = writeln!(out, "      error: {error}");
            }
        }
        for fact in &self.facts {
            let _ = writeln!(out, "   {}: {:.2} {}", fact.name, fact.value, fact.unit);
        }
        for check in &self.checks {
            let verdict = if check.met { "met" } else { "NOT MET" };
            let _ = writeln!(out, "   [{verdict}] {}: {}", check.target, check.measured);
        }
        if let Some(table) = &self.table {
            let _ = writeln!(out, "\n{table}");
        }
        out
    }
}

/// `relay-in 5.1/6.0/7.2 MB 85%, sink …, bench 40%, others 3%`
fn processes(phase: &Phase) -> String {
    let bench = format!(
        "bench {:.0}%, others {:.0}%",
        100.0 * phase.bench_cpu_seconds / phase.seconds.max(f64::EPSILON),
        phase.others_cpu_percent
    );
    phase
        .processes
        .iter()
        .map(|usage| {
            let cpu = if phase.seconds > 0.0 {
                100.0 * usage.cpu_seconds / phase.seconds
            } else {
                0.0
            };
            format!(
                "{} {}/{}/{} MB (anon {}) {cpu:.0}%",
                usage.process,
                mb(usage.idle.now_kb),
                mb(usage.end.now_kb),
                mb(usage.end.peak_kb),
                mb(usage.end.anon_kb)
            )
        })
        .chain(std::iter::once(bench))
        .collect::<Vec<_>>()
        .join(", ")
}

/// KiB as MB with one decimal (the targets are in MB).
pub fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// The Markdown table rows BENCHMARKS.md holds: one row per phase.
pub fn markdown(reports: &[ScenarioReport]) -> String {
    let mut out = String::from(
        "| scenario | target | conc | size | msg/s | p50 ms | p99 ms | errors | RSS idle / peak (anon at end) MB | CPU % (per message) | others % |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|---|---:|\n",
    );
    for report in reports {
        for phase in &report.phases {
            let (p50, p99) = match phase.latency {
                Some(l) => (format!("{:.2}", l.p50_ms), format!("{:.2}", l.p99_ms)),
                None => ("-".into(), "-".into()),
            };
            let rss = phase
                .processes
                .iter()
                .map(|u| {
                    format!(
                        "{} {} / {} ({})",
                        u.process,
                        mb(u.idle.now_kb),
                        mb(u.end.peak_kb),
                        mb(u.end.anon_kb)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let cpu = phase
                .processes
                .iter()
                .map(|u| {
                    format!(
                        "{:.0} ({:.0} µs/msg)",
                        100.0 * u.cpu_seconds / phase.seconds.max(f64::EPSILON),
                        1e6 * u.cpu_seconds / phase.delivered.max(1) as f64
                    )
                })
                .collect::<Vec<_>>()
                .join(" / ");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {p50} | {p99} | {} | {rss} | {cpu} | {:.0} |",
                report.scenario,
                phase.target,
                phase.concurrency,
                phase.message_size,
                phase.messages_per_second,
                phase.errors_total(),
                phase.others_cpu_percent,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::procfs::Memory;

    fn sample() -> ScenarioReport {
        let mut report = ScenarioReport {
            scenario: "sink".into(),
            command: "postern-bench scenario sink".into(),
            phases: vec![Phase {
                target: "sink".into(),
                concurrency: 20,
                message_size: 2048,
                delivered: 1000,
                seconds: 0.5,
                messages_per_second: 2000.0,
                latency: Some(Latency {
                    p50_ms: 0.5,
                    p99_ms: 1.25,
                    max_ms: 3.0,
                }),
                processes: vec![Usage {
                    process: "sink".into(),
                    idle: Memory {
                        now_kb: 2048,
                        peak_kb: 2048,
                        anon_kb: 512,
                    },
                    end: Memory {
                        now_kb: 4096,
                        peak_kb: 5120,
                        anon_kb: 1024,
                    },
                    cpu_seconds: 0.25,
                }],
                ..Phase::default()
            }],
            ..ScenarioReport::default()
        };
        report.check("rate ≥ 1", "2000".into(), true);
        report
    }

    #[test]
    fn text_and_markdown_carry_the_figures() {
        let report = sample();
        let text = report.text();
        assert!(
            text.contains("2000")
                && text.contains("1.25")
                && text.contains("sink 2.0/4.0/5.0 MB (anon 1.0) 50%, bench 0%, others 0%"),
            "{text}"
        );
        assert!(text.contains("[met] rate ≥ 1"));
        let md = markdown(&[report]);
        assert!(md.contains("| sink | sink | 20 | 2048 | 2000 | 0.50 | 1.25 | 0 | sink 2.0 / 5.0 (1.0) | 50 (250 µs/msg) | 0 |"), "{md}");
    }

    #[test]
    fn json_has_every_field() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["phases"][0]["latency"]["p99_ms"], 1.25);
        assert_eq!(json["phases"][0]["processes"][0]["end"]["peak_kb"], 5120);
        assert_eq!(json["checks"][0]["met"], true);
    }
}
