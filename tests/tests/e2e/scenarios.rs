//! Plays every numbered scenario in `tests/scenarios/` against the real
//! binary, and checks that the runner reports every failure by file and
//! line while still running everything else.

use std::path::Path;

use postern_tests::scenario::{run_all, scenarios_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_scenarios() -> anyhow::Result<()> {
    let run = run_all(&scenarios_dir()).await?;
    assert!(!run.ran.is_empty(), "no dialogs found");
    assert!(
        run.failures.is_empty(),
        "{}",
        dialog_script::summary(run.ran.len(), &run.failures)
    );
    Ok(())
}

/// Copies the relay-in scenario's `binary`, `world` (its backend) and
/// `config/` into `to`.
fn relay_in_scenario(to: &Path, dialogs: &[(&str, &str)]) -> anyhow::Result<()> {
    let from = scenarios_dir().join("01-relay-in-smtp");
    std::fs::create_dir_all(to.join("config"))?;
    for file in ["binary", "world"] {
        std::fs::copy(from.join(file), to.join(file))?;
    }
    for entry in std::fs::read_dir(from.join("config"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join("config").join(entry.file_name()))?;
    }
    for (name, text) in dialogs {
        std::fs::write(to.join(name), text)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_reports_each_failure_by_file_and_line_and_runs_the_rest() -> anyhow::Result<()>
{
    let root = tempfile::tempdir()?;
    let first = root.path().join("01-first");
    relay_in_scenario(
        &first,
        &[
            (
                "01-wrong-reply.dialog",
                "S: 220-*\nS: 220 *\nC: NOOP\n# NOOP gets 250: this line fails\nS: 599 not this\n",
            ),
            (
                "02-passes.dialog",
                "S: 220-*\nS: 220 *\nC: NOOP\nS: 250 2.0.0 OK\n",
            ),
            ("03-unknown-directive.dialog", "S: 220-*\nS: 220 *\n= tls\n"),
        ],
    )?;
    relay_in_scenario(
        &root.path().join("02-second"),
        &[(
            "01-passes.dialog",
            "S: 220-*\nS: 220 *\nC: QUIT\nS: 221 *\n= closed\n",
        )],
    )?;
    std::fs::write(first.join("expect"), "message 127.0.0.2\n")?;

    let run = run_all(root.path()).await?;
    let names: Vec<String> = run
        .ran
        .iter()
        .map(|p| {
            p.strip_prefix(&format!("{}/", root.path().display()))
                .unwrap_or(p)
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "01-first/01-wrong-reply.dialog",
            "01-first/02-passes.dialog",
            "01-first/03-unknown-directive.dialog",
            "02-second/01-passes.dialog",
        ]
    );
    let summary = dialog_script::summary(run.ran.len(), &run.failures);
    let located: Vec<(String, Option<usize>)> = run
        .failures
        .iter()
        .map(|f| (f.file.clone(), f.line))
        .collect();
    let at = |name: &str| first.join(name).display().to_string();
    assert_eq!(
        located,
        [
            (at("01-wrong-reply.dialog"), Some(5)),
            (at("03-unknown-directive.dialog"), Some(3)),
            (at("expect"), Some(1)),
        ],
        "{summary}"
    );
    assert!(
        run.failures[0]
            .message
            .starts_with("expected \"599 not this\", got \"250 2.0.0 OK\"\n--- relay-in log"),
        "{summary}"
    );
    assert!(
        run.failures[1]
            .message
            .starts_with("unknown directive `= tls`"),
        "{summary}"
    );
    assert!(
        run.failures[2]
            .message
            .starts_with("no `server 127.0.0.2` in the world file"),
        "{summary}"
    );
    Ok(())
}
