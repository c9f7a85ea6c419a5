//! The one-file message formats: a header line, the envelope JSON, then the
//! message bytes, written once at intake.
//!
//! It exists so that accepting a message costs one file and one sync of it
//! instead of two files each with their own syncs: see the crate docs,
//! *Write protocol*. Two versions, both read:
//!
//! ```text
//! version 1, written through a temp file and a rename:
//! postern-queue-message 1 <envelope length in bytes>\n
//! <envelope JSON, exactly that many bytes>
//! <message bytes, to the end of the file>
//!
//! version 2, written into a spare file (see `spares.rs`):
//! postern-queue-message 2 <envelope length> <message length> <CRC-32>   \n  (padded to HEADER_BYTES)
//! <envelope JSON, exactly that many bytes>
//! <message bytes, exactly that many>
//! <zeros: the spare's unused room, if any>
//! ```
//!
//! Version 2 is written in place, so a crash while it is written can leave
//! any mix of old (zero) and new blocks on disk. The header is written last
//! and carries the lengths and a CRC-32 over envelope and message, so that
//! [`check_complete`] tells a complete file from one cut short. A header of
//! zeros is a spare that holds no message (yet).
//!
//! The file is never rewritten: later envelope states go to `<id>.state`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::SpoolError;

const MAGIC: &str = "postern-queue-message 1 ";
const MAGIC_IN_PLACE: &str = "postern-queue-message 2 ";
/// Version 2's header area: the header line, padded with spaces, fills it.
/// Fixed, because it is written after the envelope and message behind it.
pub(super) const HEADER_BYTES: usize = 96;
/// The longest header line of either version, newline included.
const MAX_HEADER_LINE: usize = HEADER_BYTES;
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
    /// The message length in bytes.
    pub data_len: u64,
    /// Version 2 only: the CRC-32 over envelope and message.
    checksum: Option<u32>,
}

/// Reads the header and envelope of an open message file. A spare (a
/// header of zeros) holds no message: [`SpoolError::Gone`] with `id`, as for
/// a message that is not there.
pub(super) fn read_parts(
    file: &File,
    path: &Path,
    id: &crate::QueueId,
) -> Result<Parts, SpoolError> {
    read_header_and_envelope(file, path)?.ok_or_else(|| SpoolError::Gone(id.clone()))
}

/// The one rule for "this `.msg` file holds no message": its first byte is
/// zero. A spare is all zeros, and a write into one puts the header, which
/// starts with a letter, last.
pub(super) fn holds_no_message(start: &[u8]) -> bool {
    start.first() == Some(&0)
}

/// How much of a message file is read at first: the header and, in nearly
/// every file, the whole envelope, so that reading them is one `pread`.
const FIRST_READ: usize = 4096;

/// [`read_parts`], with `None` for a spare.
fn read_header_and_envelope(file: &File, path: &Path) -> Result<Option<Parts>, SpoolError> {
    let corrupt = |reason: &str| SpoolError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut first = [0u8; FIRST_READ];
    let got =
        read_at_most(file, &mut first, 0).map_err(|error| SpoolError::io("read", path, error))?;
    let first = &first[..got];
    if holds_no_message(first) {
        return Ok(None);
    }
    let head = &first[..got.min(MAX_HEADER_LINE)];
    let newline = head
        .iter()
        .position(|&byte| byte == b'\n')
        .ok_or_else(|| corrupt("no message-file header line"))?;
    let header = std::str::from_utf8(&head[..newline])
        .ok()
        .and_then(Header::parse)
        .filter(|header| header.envelope_len <= MAX_ENVELOPE_BYTES)
        .ok_or_else(|| corrupt("not a message file of a known version"))?;
    let length = header.envelope_len;
    let envelope_start = match header.data {
        None => newline as u64 + 1,
        Some(_) => HEADER_BYTES as u64,
    };
    let file_len = file
        .metadata()
        .map_err(|error| SpoolError::io("inspect", path, error))?
        .len();
    if envelope_start + length > file_len {
        return Err(corrupt("truncated envelope"));
    }
    let data_start = envelope_start + length;
    let (data_len, checksum) = match header.data {
        None => (file_len - data_start, None),
        Some((data_len, _)) if data_start.saturating_add(data_len) > file_len => {
            return Err(corrupt("truncated message"));
        }
        Some((data_len, checksum)) => (data_len, Some(checksum)),
    };
    let envelope = match first.get(envelope_start as usize..data_start as usize) {
        Some(already_read) => already_read.to_vec(),
        None => {
            let mut envelope = vec![0u8; length as usize];
            file.read_exact_at(&mut envelope, envelope_start)
                .map_err(|error| match error.kind() {
                    io::ErrorKind::UnexpectedEof => corrupt("truncated envelope"),
                    _ => SpoolError::io("read", path, error),
                })?;
            envelope
        }
    };
    Ok(Some(Parts {
        envelope,
        data_start,
        data_len,
        checksum,
    }))
}

/// A parsed header line: version 1 has only the envelope length, version 2
/// also the message length and checksum.
struct Header {
    envelope_len: u64,
    data: Option<(u64, u32)>,
}

impl Header {
    fn parse(line: &str) -> Option<Header> {
        if let Some(digits) = line.strip_prefix(MAGIC) {
            return Some(Header {
                envelope_len: digits.parse().ok()?,
                data: None,
            });
        }
        let mut fields = line.strip_prefix(MAGIC_IN_PLACE)?.split_ascii_whitespace();
        let envelope_len = fields.next()?.parse().ok()?;
        let data_len = fields.next()?.parse().ok()?;
        let checksum = u32::from_str_radix(fields.next()?, 16).ok()?;
        fields.next().is_none().then_some(Header {
            envelope_len,
            data: Some((data_len, checksum)),
        })
    }
}

/// Positions `file` on the first message byte; returns the message size.
/// The message is that many bytes from there (a version 2 file may go on).
pub(super) fn seek_to_data(
    file: &mut File,
    path: &Path,
    id: &crate::QueueId,
) -> Result<u64, SpoolError> {
    let parts = read_parts(file, path, id)?;
    file.seek(SeekFrom::Start(parts.data_start))
        .map_err(|error| SpoolError::io("read", path, error))?;
    Ok(parts.data_len)
}

/// What a message file on disk holds, as the start-up load must know it.
pub(super) enum Contents {
    /// A complete message (version 1 always counts as complete: its rename
    /// came after its fsync).
    Message,
    /// A spare: no message, the whole file still usable for one.
    Spare,
    /// A version 2 write cut short by a crash (it never got its 250).
    CutShort(String),
}

/// Tells a complete message from a spare and from an in-place write cut
/// short, reading the whole file for the checksum. Only the start-up load
/// calls it: at run time a version 2 file is complete once it is synced.
pub(super) fn check_complete(
    file: &File,
    path: &Path,
    spare_bytes: u64,
) -> Result<Contents, SpoolError> {
    let mut head = [0u8; HEADER_BYTES];
    let got =
        read_at_most(file, &mut head, 0).map_err(|error| SpoolError::io("read", path, error))?;
    if got == 0 {
        // Only a spare is ever created empty-handed: one whose zeros never
        // reached the disk before a crash (it was never offered).
        return Ok(Contents::CutShort("an empty spare".to_string()));
    }
    if holds_no_message(&head[..got]) {
        let len = file
            .metadata()
            .map_err(|error| SpoolError::io("inspect", path, error))?
            .len();
        return Ok(if len == spare_bytes {
            Contents::Spare
        } else {
            Contents::CutShort("a spare whose write stopped before its header".to_string())
        });
    }
    if !head.starts_with(MAGIC_IN_PLACE.as_bytes()) {
        return Ok(Contents::Message);
    }
    let parts = match read_header_and_envelope(file, path) {
        Ok(Some(parts)) => parts,
        Ok(None) => return Ok(Contents::CutShort("no header".to_string())),
        Err(SpoolError::Corrupt { reason, .. }) => return Ok(Contents::CutShort(reason)),
        Err(error) => return Err(error),
    };
    let mut checksum = crc32fast::Hasher::new();
    checksum.update(&parts.envelope);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut offset = parts.data_start;
    let end = parts.data_start + parts.data_len;
    while offset < end {
        let want = buffer.len().min((end - offset) as usize);
        let got = read_at_most(file, &mut buffer[..want], offset)
            .map_err(|error| SpoolError::io("read", path, error))?;
        if got == 0 {
            return Ok(Contents::CutShort("truncated message".to_string()));
        }
        checksum.update(&buffer[..got]);
        offset += got as u64;
    }
    Ok(if Some(checksum.finalize()) == parts.checksum {
        Contents::Message
    } else {
        Contents::CutShort("checksum mismatch".to_string())
    })
}

/// Writes a version 2 message into `file` (a spare, or any file whose first
/// [`HEADER_BYTES`] may be overwritten) and syncs it with `fdatasync`, which
/// here is enough: the spare's name and blocks are durable already, and a
/// message bigger than the spare makes fdatasync also sync the new size.
/// Returns the message length.
pub(super) fn write_in_place(
    file: &File,
    path: &Path,
    envelope_json: &[u8],
    data: &mut dyn Read,
) -> Result<u64, SpoolError> {
    let write_error = |error| SpoolError::io("write", path, error);
    // Buffered, so that envelope and a small message go out in one pwrite.
    let mut out = BufWriter::with_capacity(
        64 * 1024,
        ChecksummedAt {
            file,
            offset: HEADER_BYTES as u64,
            checksum: crc32fast::Hasher::new(),
        },
    );
    out.write_all(envelope_json).map_err(write_error)?;
    let data_len = io::copy(data, &mut out).map_err(write_error)?;
    let written = out
        .into_inner()
        .map_err(|error| write_error(error.into_error()))?;
    let mut header = format!(
        "{MAGIC_IN_PLACE}{} {data_len} {:08x}",
        envelope_json.len(),
        written.checksum.finalize()
    )
    .into_bytes();
    header.resize(HEADER_BYTES - 1, b' ');
    header.push(b'\n');
    file.write_all_at(&header, 0).map_err(write_error)?;
    file.sync_data()
        .map_err(|error| SpoolError::io("fsync", path, error))?;
    Ok(data_len)
}

/// Writes at increasing offsets of a file from a given one, and checksums
/// what it writes: the body of a version 2 file, whose header goes in last.
struct ChecksummedAt<'a> {
    file: &'a File,
    offset: u64,
    checksum: crc32fast::Hasher,
}

impl Write for ChecksummedAt<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(bytes, self.offset)?;
        self.checksum.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
