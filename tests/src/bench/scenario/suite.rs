//! `postern-bench suite`: every scenario of BENCHMARKS.md, one after the
//! other, ending with the Markdown table.

use super::run;
use crate::bench::cli::{Common, Load, Mode, Scenario, SinkKind};
use crate::bench::report::ScenarioReport;

/// Concurrencies and sizes the issue asks for.
const CONCURRENCIES: [usize; 3] = [1, 20, 100];
const SIZES: [usize; 2] = [2048, 100 * 1024];

/// The scenarios, in the order BENCHMARKS.md lists them.
pub fn scenarios(quick: bool) -> Vec<Scenario> {
    let (messages, duration) = if quick { (2_000, 1.0) } else { (50_000, 5.0) };
    let load = |concurrency, size, tls| Load {
        concurrency,
        size,
        messages,
        duration: Some(duration),
        tls,
        per_connection: 0,
        generator: Default::default(),
    };
    let mut all = Vec::new();
    for size in SIZES {
        for concurrency in CONCURRENCIES {
            all.push(Scenario::Sink {
                load: load(concurrency, size, false),
            });
        }
    }
    for mode in [Mode::Queue, Mode::Live] {
        for tls in [false, true] {
            for size in SIZES {
                for concurrency in CONCURRENCIES {
                    all.push(Scenario::RelayIn {
                        load: load(concurrency, size, tls),
                        mode,
                        backend_tls: false,
                        no_baseline: false,
                        sink: SinkKind::Postern,
                    });
                }
            }
        }
    }
    // One connection per message, as most MX traffic (and smtp-source
    // without -d): the sink alone is then far slower, relay-in less so.
    for concurrency in [1, 20] {
        all.push(Scenario::RelayIn {
            load: Load {
                per_connection: 1,
                ..load(concurrency, 2048, false)
            },
            mode: Mode::Queue,
            backend_tls: false,
            no_baseline: false,
            sink: SinkKind::Postern,
        });
    }
    // Postfix's smtp-sink behind relay-in: the ratio against a real-world
    // sink rather than the machine's ceiling.
    for concurrency in [1, 20] {
        all.push(Scenario::RelayIn {
            load: load(concurrency, 2048, false),
            mode: Mode::Queue,
            backend_tls: false,
            no_baseline: false,
            sink: SinkKind::SmtpSink,
        });
    }
    for concurrency in CONCURRENCIES {
        all.push(Scenario::RelayOutIntake {
            load: load(concurrency, 2048, false),
        });
    }
    all.push(Scenario::RelayOutDelivery {
        load: Load {
            messages: if quick { 500 } else { 5_000 },
            ..load(20, 2048, false)
        },
        mx_tls: false,
    });
    all.push(Scenario::Idle {
        connections: if quick { 1_000 } else { 10_000 },
        per_address: 100,
    });
    all
}

/// Runs every scenario, printing each report as it comes; a scenario that
/// fails is reported and the suite goes on.
pub async fn suite(quick: bool, common: &Common) -> Vec<ScenarioReport> {
    let mut reports = Vec::new();
    for scenario in scenarios(quick) {
        match run(&scenario, common).await {
            Ok(report) => {
                println!("{}", report.text());
                reports.push(report);
            }
            Err(error) => {
                println!("== {scenario:?} FAILED: {error:#}\n");
                reports.push(ScenarioReport {
                    scenario: format!("{scenario:?}"),
                    command: format!("FAILED: {error:#}"),
                    ..ScenarioReport::default()
                });
            }
        }
    }
    reports
}
