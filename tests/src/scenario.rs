//! Numbered scenario folders (`tests/scenarios/NN-name/`), as chasquid does:
//! a `binary` file naming the relay, a `config/` directory of templates, and
//! `*.dialog` scripts played in name order, each on a new connection.
//!
//! Templates may use `{{PORT}}` (the listen port), `{{TLS_PEM}}` (a combined
//! key+certificate for `mx.test`, signed by the scenario's CA) and `{{DIR}}`
//! (the instantiated config directory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::certs::TestCa;
use crate::process::{Relay, free_port};

/// A scenario's config instantiated into a temp directory, ready to start.
pub struct Scenario {
    pub name: String,
    pub binary: String,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub ca: TestCa,
    pub dialogs: Vec<PathBuf>,
}

pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

impl Scenario {
    pub fn load(source: &Path) -> anyhow::Result<Scenario> {
        let name = source.file_name().unwrap().to_string_lossy().into_owned();
        let binary = std::fs::read_to_string(source.join("binary"))
            .with_context(|| format!("{name}: binary file"))?
            .trim()
            .to_string();
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let ca = TestCa::new("Postern scenario CA")?;
        let pem = dir.path().join("tls.pem");
        ca.issue("mx.test")?.write_combined(&pem)?;
        for entry in std::fs::read_dir(source.join("config"))? {
            let entry = entry?;
            let text = std::fs::read_to_string(entry.path())?
                .replace("{{PORT}}", &port.to_string())
                .replace("{{TLS_PEM}}", &pem.display().to_string())
                .replace("{{DIR}}", &dir.path().display().to_string());
            std::fs::write(dir.path().join(entry.file_name()), text)?;
        }
        let mut dialogs: Vec<PathBuf> = std::fs::read_dir(source)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "dialog"))
            .collect();
        dialogs.sort();
        Ok(Scenario {
            name,
            binary,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            ca,
            dialogs,
        })
    }

    pub fn start(&self) -> anyhow::Result<Relay> {
        Relay::start(&self.binary, self.dir.path(), self.addr)
    }
}
