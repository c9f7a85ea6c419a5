//! Scripted SMTP dialogs played against a running server over TCP.
//!
//! Grammar (the same as smtp-core's session dialogs, plus socket events):
//! - `C: text`  send `text` + CRLF
//! - `C~ text`  send raw bytes in one write (`\r`, `\n`, `\0`, `\\`, `\xHH` escapes)
//! - `S: text`  the next reply line, exactly; a trailing `*` matches any rest
//! - `= starttls`   TLS handshake (trusting the scenario's CA)
//! - `= closed`     the server closes the connection (within 5 s)
//! - `= silent MS`  nothing arrives for MS milliseconds
//! - `= sleep MS`   pause before the next line
//! - `#` comments and blank lines are ignored.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls_pki_types::CertificateDer;

use crate::smtp::{REPLY_TIMEOUT, SmtpClient};

pub fn unescape(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).with_context(|| format!("bad \\x{hex}"))?);
            }
            other => bail!("bad escape \\{other:?}"),
        }
    }
    Ok(out)
}

/// Plays `script` against `addr`. `name` prefixes error messages.
pub async fn play(
    name: &str,
    script: &str,
    addr: SocketAddr,
    ca: Option<&CertificateDer<'static>>,
) -> anyhow::Result<()> {
    let mut client = SmtpClient::connect(addr).await?;
    for (index, line) in script.lines().enumerate() {
        let at = format!("{name}:{}", index + 1);
        if let Some(text) = line.strip_prefix("C: ") {
            client
                .send(format!("{text}\r\n").as_bytes())
                .await
                .with_context(|| at.clone())?;
        } else if line == "C:" {
            client.send(b"\r\n").await.with_context(|| at.clone())?;
        } else if let Some(text) = line.strip_prefix("C~ ") {
            client
                .send(&unescape(text)?)
                .await
                .with_context(|| at.clone())?;
        } else if let Some(expected) = line.strip_prefix("S: ") {
            let got = client
                .read_line(REPLY_TIMEOUT)
                .await
                .with_context(|| at.clone())?;
            let Some(got) = got else {
                bail!("{at}: expected {expected:?}, connection closed")
            };
            let ok = match expected.strip_suffix('*') {
                Some(prefix) => got.starts_with(prefix),
                None => got == expected,
            };
            if !ok {
                bail!("{at}: expected {expected:?}, got {got:?}");
            }
        } else if let Some(event) = line.strip_prefix("= ") {
            let mut words = event.split_whitespace();
            match (words.next(), words.next()) {
                (Some("starttls"), None) => {
                    let ca = ca.with_context(|| format!("{at}: no CA for starttls"))?;
                    client
                        .upgrade_tls(ca, "mx.test")
                        .await
                        .with_context(|| at.clone())?;
                }
                (Some("closed"), None) => {
                    if !client
                        .closed_within(Duration::from_secs(5))
                        .await
                        .with_context(|| at.clone())?
                    {
                        bail!("{at}: connection still open");
                    }
                }
                (Some("silent"), Some(ms)) => client
                    .silent_for(Duration::from_millis(ms.parse()?))
                    .await
                    .with_context(|| at.clone())?,
                (Some("sleep"), Some(ms)) => {
                    tokio::time::sleep(Duration::from_millis(ms.parse()?)).await
                }
                _ => bail!("{at}: unknown event {event:?}"),
            }
        } else if !(line.trim().is_empty() || line.starts_with('#')) {
            bail!("{at}: cannot read {line:?}");
        }
    }
    Ok(())
}
