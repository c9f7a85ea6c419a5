//! Reading Postfix's `smtp-sink` count. Started with `-c`, smtp-sink prints
//! `sess=N quit=N mesg=N\r` to its standard output at every session and
//! message event; the bench sends that to a file (see
//! [`super::daemon::Daemon::output_path`]) and reads the last `mesg=`, the
//! messages it accepted, to check that nothing a relay accepted was lost.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// How much of the output's end is read: several events' worth.
const TAIL: u64 = 256;
/// How often the count is read while waiting for it to reach a value.
const POLL: Duration = Duration::from_millis(10);

/// The last `mesg=N` of smtp-sink's `-c` output; 0 before any.
pub fn parse_messages(output: &str) -> u64 {
    output
        .rsplit("mesg=")
        .next()
        .filter(|_| output.contains("mesg="))
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// The messages smtp-sink has accepted so far, from the end of its output
/// file (read every few milliseconds while a phase waits, so only the last
/// events, a few dozen bytes each, are read).
pub fn messages(output: &Path) -> u64 {
    let read_tail = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(output)?;
        let length = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(length.saturating_sub(TAIL)))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        Ok(String::from_utf8_lossy(&tail).into_owned())
    };
    read_tail().map(|text| parse_messages(&text)).unwrap_or(0)
}

/// Waits (at most `within`) until smtp-sink has accepted at least `count`
/// messages in all, and returns its count then: a relay answers its client
/// after the sink's 250, but the sink writes its counter on its own time.
pub async fn wait_for(output: &Path, count: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let now = messages(output);
        if now >= count || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_message_count_is_read() {
        assert_eq!(parse_messages(""), 0);
        assert_eq!(parse_messages("sess=0 quit=0 mesg=1\r"), 1);
        assert_eq!(
            parse_messages("sess=1 quit=0 mesg=1\rsess=1 quit=1 mesg=12\rsess=2 quit=1 mesg=12\r"),
            12
        );
    }
}
