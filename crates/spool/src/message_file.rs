//! The one-file message format: a header line, the envelope JSON, then the
//! message bytes, written once at intake.
//!
//! It exists so that accepting a message costs one new file and one `fsync`
//! of it (plus the directory's, shared with concurrent intakes) instead of
//! two files each with their own syncs: see the crate docs, *Write protocol*.
//!
//! ```text
//! postern-queue-message 1 <envelope length in bytes>\n
//! <envelope JSON, exactly that many bytes>
//! <message bytes, to the end of the file>
//! ```
//!
//! The file is never rewritten: later envelope states go to `<id>.state`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::SpoolError;

const MAGIC: &str = "postern-queue-message 1 ";
/// The header line is the magic, at most 20 digits and a newline.
const MAX_HEADER_LINE: usize = MAGIC.len() + 21;
/// An envelope is a few hundred bytes per recipient; this bounds the
/// allocation a damaged header could ask for.
const MAX_ENVELOPE_BYTES: u64 = 64 * 1024 * 1024;

/// The bytes that go before the message: header line and envelope.
pub(super) fn prefix(envelope_json: &[u8]) -> Vec<u8> {
    let mut prefix = format!("{MAGIC}{}\n", envelope_json.len()).into_bytes();
    prefix.extend_from_slice(envelope_json);
    prefix
}

/// Where the parts of one message file are.
pub(super) struct Parts {
    pub envelope: Vec<u8>,
    /// Offset of the first message byte.
    pub data_start: u64,
}

/// Reads the header and envelope of an open message file.
pub(super) fn read_parts(file: &File, path: &Path) -> Result<Parts, SpoolError> {
    let corrupt = |reason: &str| SpoolError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut head = [0u8; MAX_HEADER_LINE];
    let got =
        read_at_most(file, &mut head, 0).map_err(|error| SpoolError::io("read", path, error))?;
    let head = &head[..got];
    let newline = head
        .iter()
        .position(|&byte| byte == b'\n')
        .ok_or_else(|| corrupt("no message-file header line"))?;
    let length = std::str::from_utf8(&head[..newline])
        .ok()
        .and_then(|line| line.strip_prefix(MAGIC))
        .and_then(|digits| digits.parse::<u64>().ok())
        .filter(|&length| length <= MAX_ENVELOPE_BYTES)
        .ok_or_else(|| corrupt("not a message file of a known version"))?;
    let envelope_start = newline as u64 + 1;
    let file_len = file
        .metadata()
        .map_err(|error| SpoolError::io("inspect", path, error))?
        .len();
    if envelope_start + length > file_len {
        return Err(corrupt("truncated envelope"));
    }
    let mut envelope = vec![0u8; length as usize];
    file.read_exact_at(&mut envelope, envelope_start)
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => corrupt("truncated envelope"),
            _ => SpoolError::io("read", path, error),
        })?;
    Ok(Parts {
        envelope,
        data_start: envelope_start + length,
    })
}

/// Positions `file` on the first message byte; returns the message size.
pub(super) fn seek_to_data(file: &mut File, path: &Path) -> Result<u64, SpoolError> {
    let parts = read_parts(file, path)?;
    let end = file
        .seek(SeekFrom::End(0))
        .map_err(|error| SpoolError::io("read", path, error))?;
    file.seek(SeekFrom::Start(parts.data_start))
        .map_err(|error| SpoolError::io("read", path, error))?;
    Ok(end.saturating_sub(parts.data_start))
}

fn read_at_most(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The prefix followed by the message, as one reader for the durable write.
pub(super) fn reader<'a>(prefix: &'a [u8], data: &'a mut dyn Read) -> impl Read + 'a {
    prefix.chain(data)
}
