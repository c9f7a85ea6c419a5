//! Numbered scenario folders (`tests/scenarios/NN-name/`), in the spirit of
//! chasquid's `test/t-NN-name/`: a real relay configured as in production,
//! the small world around it, scripted dialogs, and the results expected.
//!
//! # A scenario folder
//!
//! - `binary`: the relay to start, `relay-in` or `relay-out`.
//! - `config/`: the relay's configuration directory, as templates. They may
//!   use `{{PORT}}` (the listen port on 127.0.0.1), `{{TLS_PEM}}` (a combined
//!   key+certificate for `mx.test`, signed by the scenario's CA), `{{DIR}}`
//!   (the instantiated config directory) and, with a `world` file,
//!   `{{NAMESERVERS}}` (the test DNS, for `outbound.ini nameservers=`) and
//!   `{{MX_PORT}}` (the port every recording MX listens on, for
//!   `remote_port=`).
//! - `*.dialog`: dialogs played in name order, each on a new connection
//!   (grammar and directives in [`crate::dialog`]). Every one found runs.
//! - `world` (optional): the DNS the relay resolves through and the
//!   recording MX servers it delivers to; see [`world`].
//! - `expect` (optional): what must have happened once the dialogs ran;
//!   see [`expect`].
//!
//! Every address is on 127.0.0.0/8: the test DNS on 127.0.0.1, the MX
//! servers on 127.0.0.x.
//!
//! # Running them
//!
//! [`run_all`] runs every folder under a root, and every dialog in it. A
//! failing dialog is recorded as `path:line: what` followed by the end of
//! the relay's log, an unmet expectation as `path/expect:line: what`, a
//! scenario that cannot start as `path: why`; then the run goes on with
//! the next dialog, the expectations, and the next scenario. The caller
//! asserts once, listing every failure ([`dialog_script::summary`]).

pub mod expect;
pub mod world;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use dialog_script::Failure;

use crate::certs::TestCa;
use crate::dialog;
use crate::outbound::strip_ansi;
use crate::process::{Relay, free_port};

use self::expect::Expectations;
use self::world::{RunningWorld, World};

/// The most one dialog may take, whatever its steps wait for.
const DIALOG_TIMEOUT: Duration = Duration::from_secs(60);
/// How many of the relay's last INFO, WARN and ERROR lines a failure quotes.
const LOG_EXCERPT_LINES: usize = 30;

/// A scenario's config instantiated into a temp directory, with its world
/// running, ready to start the relay.
pub struct Scenario {
    pub binary: String,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub ca: TestCa,
    pub dialogs: Vec<PathBuf>,
    pub world: Option<RunningWorld>,
    pub expect: Option<Expectations>,
}

/// `tests/scenarios/`.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

impl Scenario {
    /// Reads the folder, starts its world and writes the relay's config.
    pub async fn load(source: &Path) -> anyhow::Result<Scenario> {
        let binary = std::fs::read_to_string(source.join("binary"))
            .context("reading `binary`")?
            .trim()
            .to_string();
        let world = match read_optional(&source.join("world"))? {
            Some(text) => {
                let world = World::parse(&text).map_err(|e| {
                    anyhow::anyhow!("{}", Failure::unparsable(path_text(source, "world"), e))
                })?;
                Some(world.start().await?)
            }
            None => None,
        };
        let expect = match read_optional(&source.join("expect"))? {
            Some(text) => Some(Expectations::parse(&text).map_err(|e| {
                anyhow::anyhow!("{}", Failure::unparsable(path_text(source, "expect"), e))
            })?),
            None => None,
        };
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let ca = TestCa::new("Postern scenario CA")?;
        let pem = dir.path().join("tls.pem");
        ca.issue("mx.test")?.write_combined(&pem)?;
        for entry in std::fs::read_dir(source.join("config")).context("reading `config/`")? {
            let entry = entry?;
            let mut text = std::fs::read_to_string(entry.path())?
                .replace("{{PORT}}", &port.to_string())
                .replace("{{TLS_PEM}}", &pem.display().to_string())
                .replace("{{DIR}}", &dir.path().display().to_string());
            if let Some(world) = &world {
                text = text
                    .replace("{{NAMESERVERS}}", &world.dns.nameservers_setting())
                    .replace("{{MX_PORT}}", &world.mx_port.to_string());
            }
            if let Some(start) = text.find("{{") {
                let end = text[start..]
                    .find("}}")
                    .map_or(text.len(), |e| start + e + 2);
                bail!(
                    "config/{}: unknown template {:?} (or one that needs a `world` file)",
                    entry.file_name().to_string_lossy(),
                    &text[start..end]
                );
            }
            std::fs::write(dir.path().join(entry.file_name()), text)?;
        }
        let mut dialogs: Vec<PathBuf> = std::fs::read_dir(source)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "dialog"))
            .collect();
        dialogs.sort();
        Ok(Scenario {
            binary,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            ca,
            dialogs,
            world,
            expect,
        })
    }

    pub fn start(&self) -> anyhow::Result<Relay> {
        Relay::start(&self.binary, self.dir.path(), self.addr)
    }
}

/// What running scenarios found.
#[derive(Debug, Default)]
pub struct ScenarioRun {
    /// Every dialog played (passed or failed), as `path/NN-name.dialog`.
    pub ran: Vec<String>,
    pub failures: Vec<Failure>,
}

/// Runs every scenario folder under `root`, in name order; see the module
/// docs. Fails only when `root` cannot be read or holds no folder.
pub async fn run_all(root: &Path) -> anyhow::Result<ScenarioRun> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| root.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    if folders.is_empty() {
        bail!("no scenario folders in {}", root.display());
    }
    let mut run = ScenarioRun::default();
    for folder in folders {
        run_one(&folder, &mut run).await;
    }
    Ok(run)
}

/// Runs one scenario folder, adding what it played and every failure to `run`.
async fn run_one(source: &Path, run: &mut ScenarioRun) {
    let folder = source.display().to_string();
    let scenario = match Scenario::load(source).await {
        Ok(scenario) => scenario,
        Err(e) => {
            run.failures.push(Failure::whole(folder, format!("{e:#}")));
            return;
        }
    };
    let relay = match scenario.start() {
        Ok(relay) => relay,
        Err(e) => {
            run.failures.push(Failure::whole(folder, format!("{e:#}")));
            return;
        }
    };
    for path in &scenario.dialogs {
        let file = path.display().to_string();
        run.ran.push(file.clone());
        let played = match std::fs::read_to_string(path) {
            Ok(script) => tokio::time::timeout(
                DIALOG_TIMEOUT,
                dialog::play(&file, &script, scenario.addr, Some(&scenario.ca.cert_der)),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Failure::whole(
                    &file,
                    format!("still running after {DIALOG_TIMEOUT:?}"),
                ))
            }),
            Err(e) => Err(Failure::whole(&file, e.to_string())),
        };
        if let Err(failure) = played {
            run.failures
                .push(with_log_excerpt(failure, &scenario.binary, &relay));
        }
    }
    if let Some(expect) = &scenario.expect {
        let file = path_text(source, "expect");
        let failures = expect.check(&file, scenario.world.as_ref(), &relay).await;
        run.failures.extend(
            failures
                .into_iter()
                .map(|failure| with_log_excerpt(failure, &scenario.binary, &relay)),
        );
    }
}

/// `failure` followed by the relay's last INFO, WARN and ERROR log lines
/// (its DEBUG lines are mostly the DNS resolver's).
fn with_log_excerpt(mut failure: Failure, binary: &str, relay: &Relay) -> Failure {
    let log = strip_ansi(&relay.log());
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| {
            [" INFO ", " WARN ", " ERROR "]
                .iter()
                .any(|level| line.contains(level))
        })
        .collect();
    let start = lines.len().saturating_sub(LOG_EXCERPT_LINES);
    failure.message.push_str(&format!(
        "\n--- {binary} log, last {} INFO/WARN/ERROR line(s) ---\n{}",
        lines.len() - start,
        lines[start..].join("\n")
    ));
    failure
}

/// `folder/name` as failures show it.
fn path_text(folder: &Path, name: &str) -> String {
    folder.join(name).display().to_string()
}

/// A file's text, or `None` when the scenario has no such file.
fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}
