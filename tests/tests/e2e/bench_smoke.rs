//! Keeps `postern-bench` working: short runs of its scenarios with the
//! binaries of this build, checking that they ran and that their figures are
//! sane. Not a timed test: no speed is asserted (see BENCHMARKS.md for that).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `postern-bench scenario ARGS… --json FILE` and returns the report.
fn bench(args: &[&str], dir: &Path) -> Value {
    let (succeeded, printed, report) = bench_run(args, dir);
    assert!(succeeded, "postern-bench failed:\n{printed}");
    report
}

/// Runs `postern-bench scenario ARGS`: whether it exited 0, what it
/// printed, and its JSON report.
fn bench_run(args: &[&str], dir: &Path) -> (bool, String, Value) {
    let json = dir.join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_postern-bench"))
        .arg("scenario")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .output()
        .expect("postern-bench runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|error| panic!("no JSON report ({error}):\n{printed}"));
    let report = serde_json::from_str(&text).expect("JSON report parses");
    (output.status.success(), printed, report)
}

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

/// A load phase moved mail without errors and measured its processes.
fn assert_sane_phase(phase: &Value) {
    let target = phase["target"].as_str().unwrap_or("?");
    assert!(
        number(&phase["delivered"], "delivered") > 0.0,
        "{target}: nothing delivered: {phase}"
    );
    assert_eq!(phase["failed"], 0, "{target}: {phase}");
    assert_eq!(phase["refused"], 0, "{target}: {phase}");
    assert!(
        number(&phase["messages_per_second"], "rate") > 0.0,
        "{target}"
    );
    if let Some(latency) = phase["latency"].as_object() {
        let (p50, p99, max) = (
            number(&latency["p50_ms"], "p50"),
            number(&latency["p99_ms"], "p99"),
            number(&latency["max_ms"], "max"),
        );
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= max,
            "{target}: {latency:?}"
        );
    }
    let processes = phase["processes"].as_array().expect("processes");
    assert!(!processes.is_empty(), "{target}: no process measured");
    for process in processes {
        let end = &process["end"];
        let (now, peak, anon) = (
            number(&end["now_kb"], "VmRSS"),
            number(&end["peak_kb"], "VmHWM"),
            number(&end["anon_kb"], "RssAnon"),
        );
        assert!(
            0.0 < anon && anon <= now && now <= peak,
            "{target}: {process}"
        );
        assert!(number(&process["cpu_seconds"], "cpu") >= 0.0);
    }
}

/// Every correctness check of the report held (the performance targets are
/// for BENCHMARKS.md, not for this test).
fn assert_checks_met(report: &Value, names: &[&str]) {
    for name in names {
        let check = check(report, name);
        assert_eq!(check["met"], true, "{check}; facts: {}", report["facts"]);
    }
}

/// The report's check whose target starts with `name`.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["target"].as_str().is_some_and(|t| t.starts_with(name)))
        .unwrap_or_else(|| panic!("no check {name:?} in {report}"))
}

/// The value of the report's fact whose name starts with `name`.
fn fact(report: &Value, name: &str) -> f64 {
    report["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .find(|f| f["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .map(|f| number(&f["value"], name))
        .unwrap_or_else(|| panic!("no fact {name:?} in {report}"))
}

/// The report's phases, after checking there are `count` of them (`what`
/// says which, for the failure message).
fn phases<'a>(report: &'a Value, count: usize, what: &str) -> &'a [Value] {
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), count, "{what}: {report}");
    phases
}

/// `phases`, each of which must also be a sane load phase.
fn sane_phases<'a>(report: &'a Value, count: usize, what: &str) -> &'a [Value] {
    let phases = phases(report, count, what);
    for phase in phases {
        assert_sane_phase(phase);
    }
    phases
}

/// A relay-in run: the sink alone, then relay-in, both sane, and every
/// correctness check met. Returns the two phases.
fn assert_relay_in_run(report: &Value) -> &[Value] {
    let phases = sane_phases(report, 2, "sink alone, then relay-in");
    assert_eq!(phases[0]["target"], "sink alone");
    assert_checks_met(
        report,
        &[
            "every message relay-in accepted reached the sink",
            "no errors",
        ],
    );
    phases
}

/// The report's Markdown table holds every one of `rows`.
fn assert_table_has(report: &Value, rows: &[&str]) {
    let table = report["table"].as_str().expect("table");
    for row in rows {
        assert!(table.contains(row), "no {row:?} in:\n{table}");
    }
}

/// `bench` in a fresh scratch directory, removed once the report is read.
fn bench_in_tempdir(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    bench(args, dir.path())
}

#[test]
fn relay_in_scenario_runs_for_about_a_second() {
    let report = bench_in_tempdir(&[
        "relay-in",
        "--concurrency",
        "4",
        "--messages",
        "1000000",
        "--duration",
        "0.5",
    ]);
    assert_relay_in_run(&report);
    assert!(fact(&report, "relay-in rate / sink-alone rate") > 0.0);
    assert!(
        report["command"]
            .as_str()
            .unwrap()
            .starts_with("postern-bench scenario relay-in")
    );
}

#[test]
fn relay_out_delivery_scenario_fills_and_drains_the_queue() {
    let report = bench_in_tempdir(&[
        "relay-out-delivery",
        "--concurrency",
        "4",
        "--messages",
        "40",
    ]);
    let phases = sane_phases(&report, 2, "intake, then delivery");
    assert_eq!(phases[0]["delivered"], 40);
    assert_checks_met(&report, &["the whole queue was delivered and removed"]);
}

#[test]
fn idle_scenario_holds_connections_and_serves_a_new_client() {
    let report = bench_in_tempdir(&["idle", "--connections", "200", "--per-address", "50"]);
    assert_checks_met(&report, &["all 200 connections open"]);
    assert_eq!(fact(&report, "idle connections held"), 200.0);
    assert!(fact(&report, "relay-in RSS with the idle connections") > 0.0);
    assert!(fact(&report, "new client: connect to message accepted") > 0.0);
}

#[test]
fn relay_in_under_smtp_source_counts_every_message_at_smtp_sink() {
    let report = bench_in_tempdir(&[
        "relay-in",
        "--load",
        "smtp-source",
        "--sink",
        "smtp-sink",
        "--per-connection",
        "1",
        "--concurrency",
        "4",
        "--messages",
        "40",
    ]);
    for phase in assert_relay_in_run(&report) {
        assert_eq!(phase["delivered"], 40, "{phase}");
        assert!(phase["latency"].is_null(), "smtp-source measures none");
    }
}

/// The headline as a real sender meets relay-in: the shipped `config-in/`,
/// every session from 127.0.0.1. Every row moves its mail but one: 100
/// sessions at once through relay-in, which the shipped per-address cap (50,
/// as Postfix's `smtpd_client_connection_count_limit`) refuses with its
/// 421; the run names that row, and only it, and exits non-zero.
#[test]
fn headline_scenario_measures_every_row_and_makes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    // Enough messages that smtp-source opens all 100 sessions.
    let (succeeded, printed, report) = bench_run(
        &["headline", "--repetitions", "1", "--messages", "200"],
        dir.path(),
    );
    assert!(!succeeded, "the 100-session row is refused:\n{printed}");
    let refused_row = "relay-in, 100 sessions";
    for phase in phases(&report, 10, "5 rows, sink alone and relay-in") {
        let target = phase["target"].as_str().unwrap_or("?");
        if target.starts_with(refused_row) {
            let errors = phase["errors"].to_string();
            assert!(
                errors.contains("421 4.7.0")
                    && errors.contains("Too many connections from your address"),
                "{phase}"
            );
        } else {
            assert_sane_phase(phase);
        }
    }
    let lost = check(&report, "no message refused or lost");
    assert_eq!(lost["met"], false, "{lost}");
    let said = lost.to_string();
    assert!(said.contains(refused_row), "{lost}");
    for other in ["relay-in, 1 session", "relay-in, 20 sessions"] {
        assert!(!said.contains(other), "{other} lost mail: {lost}");
    }
    assert_table_has(
        &report,
        &[
            "| 20 sessions, connections kept (`-d`) |",
            "| 100 sessions, a connection per message |",
        ],
    );
}

#[test]
fn relay_out_compare_runs_relay_out_and_postfix_to_the_sink_and_drains() {
    let report = bench_in_tempdir(&[
        "relay-out-compare",
        "--relays",
        "relay-out,postfix",
        "--messages",
        "20",
        "--backlog",
        "30",
    ]);
    for phase in phases(&report, 8, "4 loads × 2 relays") {
        assert!(
            number(&phase["messages_per_second"], "rate") > 0.0,
            "{phase}"
        );
    }
    assert_checks_met(&report, &["no message refused or lost"]);
    assert_table_has(
        &report,
        &[
            "| load | relay-out | Postfix |",
            "30 queued while the MX is down",
        ],
    );
}
