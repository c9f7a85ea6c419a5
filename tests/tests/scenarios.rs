//! Plays every numbered scenario in `tests/scenarios/` against the real binary.

use postern_tests::dialog;
use postern_tests::scenario::{Scenario, scenarios_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_scenarios() -> anyhow::Result<()> {
    let mut sources: Vec<_> = std::fs::read_dir(scenarios_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    sources.sort();
    assert!(!sources.is_empty(), "no scenarios found");
    for source in sources {
        let scenario = Scenario::load(&source)?;
        let relay = scenario.start()?;
        for path in &scenario.dialogs {
            let name = format!(
                "{}/{}",
                scenario.name,
                path.file_name().unwrap().to_string_lossy()
            );
            let script = std::fs::read_to_string(path)?;
            if let Err(e) =
                dialog::play(&name, &script, scenario.addr, Some(&scenario.ca.cert_der)).await
            {
                panic!("{e:#}\n--- {} log ---\n{}", scenario.binary, relay.log());
            }
        }
    }
    Ok(())
}
