//! Scripted SMTP dialogs played against a running server over TCP, each on
//! a new connection.
//!
//! The scripts use the one dialog grammar of the `dialog-script` crate
//! (`C:`, `C~` with `\r \n \0 \\ \xHH`, `S:` with a trailing `*` wildcard,
//! `= directive`, `#` comments), the same as smtp-protocol's session dialogs.
//! Directives this runner knows:
//! - setting, before the first exchange: `= source IP` (connect from this
//!   loopback address, e.g. `127.0.0.3`, instead of the default)
//! - `= starttls`   TLS handshake (trusting the scenario's CA)
//! - `= closed`     the server closes the connection (within 5 s)
//! - `= silent MS`  nothing arrives for MS milliseconds
//! - `= sleep MS`   pause before the next line
//!
//! Any other directive is an error at its line.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use dialog_script::{Directive, Failure, StepKind};
use rustls_pki_types::CertificateDer;

use crate::smtp::{REPLY_TIMEOUT, SmtpClient};

/// How long `= closed` waits for the server to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Plays `script` against `addr`; a failure names `file` and the line of the
/// step that failed.
pub async fn play(
    file: &str,
    script: &str,
    addr: SocketAddr,
    ca: Option<&CertificateDer<'static>>,
) -> Result<(), Failure> {
    let script = dialog_script::parse(script).map_err(|e| Failure::unparsable(file, e))?;
    let mut steps = script.steps.iter().peekable();
    let mut source = None;
    while let Some(step) = steps.peek() {
        match &step.kind {
            StepKind::Directive(directive) if directive.name == "source" => {
                source = Some(
                    source_address(directive)
                        .map_err(|e| Failure::at(file, step.line, format!("{e:#}")))?,
                );
                steps.next();
            }
            _ => break,
        }
    }
    let connected = match source {
        Some(source) => SmtpClient::connect_from(source, addr).await,
        None => SmtpClient::connect(addr).await,
    };
    let first_line = steps.peek().map_or(1, |step| step.line);
    let mut client =
        connected.map_err(|e| Failure::at(file, first_line, format!("connecting: {e:#}")))?;
    for step in steps {
        let played = match &step.kind {
            StepKind::Send(bytes) => client.send(bytes).await,
            StepKind::Expect(expected) => match client.read_line(REPLY_TIMEOUT).await {
                Ok(Some(got)) if expected.matches(&got) => Ok(()),
                Ok(Some(got)) => Err(anyhow::anyhow!(
                    "expected {:?}, got {got:?}",
                    expected.to_string()
                )),
                Ok(None) => Err(anyhow::anyhow!(
                    "expected {:?}, the connection closed",
                    expected.to_string()
                )),
                Err(e) => Err(e.context(format!("expected {:?}", expected.to_string()))),
            },
            StepKind::Directive(directive) => play_event(&mut client, directive, ca).await,
        };
        played.map_err(|e| Failure::at(file, step.line, format!("{e:#}")))?;
    }
    Ok(())
}

/// `= source IP`: a loopback address to connect from.
fn source_address(directive: &Directive) -> anyhow::Result<IpAddr> {
    let text = directive.single().map_err(anyhow::Error::msg)?;
    let ip: IpAddr = text
        .parse()
        .with_context(|| format!("`= source`: {text:?} is not an IP address"))?;
    if !ip.is_loopback() {
        bail!("`= source {ip}`: tests only use loopback addresses");
    }
    Ok(ip)
}

/// Plays one event directive on the open connection.
async fn play_event(
    client: &mut SmtpClient,
    directive: &Directive,
    ca: Option<&CertificateDer<'static>>,
) -> anyhow::Result<()> {
    let millis = || directive.number().map(Duration::from_millis);
    match directive.name.as_str() {
        "starttls" => {
            directive.no_args().map_err(anyhow::Error::msg)?;
            let ca = ca.context("no CA for `= starttls`")?;
            client.upgrade_tls(ca, "mx.test").await?;
        }
        "closed" => {
            directive.no_args().map_err(anyhow::Error::msg)?;
            if !client.closed_within(CLOSE_TIMEOUT).await? {
                bail!("the connection is still open after {CLOSE_TIMEOUT:?}");
            }
        }
        "silent" => {
            client
                .silent_for(millis().map_err(anyhow::Error::msg)?)
                .await?
        }
        "sleep" => tokio::time::sleep(millis().map_err(anyhow::Error::msg)?).await,
        "source" => bail!("`= {directive}` is a setting: it must come before the first exchange"),
        _ => bail!("unknown directive `= {directive}`"),
    }
    Ok(())
}
