//! The library side of the operator's `relay-out queue show|bounce|flush`
//! (`list` is in `scan`, `delete` is [`Spool::remove`], signalling the
//! daemon is in `owner`).

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::time::SystemTime;

use super::error::SpoolError;
use super::fsio;
use super::id::QueueId;
use super::timestamp::format_rfc3339;
use super::{BOUNCE_SUFFIX, Extras, PID_FILE_SUFFIX, Spool, file_name};

/// `queue show` prints the header, never the whole body: a message can be
/// huge and its body is none of the operator's business. Headers beyond this
/// many bytes are cut.
pub const MAX_SHOWN_HEADER_BYTES: u64 = 64 * 1024;

impl<X: Extras> Spool<X> {
    /// The header section of the message (up to the first empty line, which
    /// is not included), at most `max_bytes` long, for `queue show`.
    pub fn read_headers(&self, id: &QueueId, max_bytes: u64) -> Result<Vec<u8>, SpoolError> {
        let path = self.data_path(id);
        let (file, len) = self.open_data(id)?;
        let mut reader = BufReader::new(file.take(len.min(max_bytes)));
        let mut headers = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|error| SpoolError::io("read", &path, error))?;
            let blank = line == b"\r\n" || line == b"\n";
            if read == 0 || blank {
                return Ok(headers);
            }
            headers.extend_from_slice(&line);
        }
    }

    /// The first `max_bytes` of the message (all of it if shorter), for a
    /// notice that returns the message (DSN `RET=FULL`).
    pub fn read_start(&self, id: &QueueId, max_bytes: u64) -> Result<Vec<u8>, SpoolError> {
        let path = self.data_path(id);
        let mut data = Vec::new();
        let (file, len) = self.open_data(id)?;
        file.take(len.min(max_bytes))
            .read_to_end(&mut data)
            .map_err(|error| SpoolError::io("read", &path, error))?;
        Ok(data)
    }

    /// Asks the daemon to bounce the message now (`queue bounce ID`): creates
    /// the `<id>.bounce` marker, holding the request time for the admin.
    /// The envelope itself is left alone so this cannot race with the
    /// daemon's updates. [`SpoolError::Gone`] if the message does not exist.
    pub fn request_bounce(&self, id: &QueueId) -> Result<(), SpoolError> {
        if self.layout(id)?.is_none() {
            return Err(SpoolError::Gone(id.clone()));
        }
        let stamp = format!("bounce requested {}\n", format_rfc3339(SystemTime::now()));
        fsio::write_then_rename(
            &self.dir,
            &file_name(id, BOUNCE_SUFFIX),
            &mut stamp.as_bytes(),
        )?;
        fsio::sync_dir(&self.dir)?;
        // The message may have been delivered or deleted meanwhile: do not
        // leave a marker without a message.
        if self.layout(id)?.is_none() {
            fsio::remove_if_present(&self.bounce_path(id))?;
            return Err(SpoolError::Gone(id.clone()));
        }
        Ok(())
    }

    /// Whether the operator asked to bounce `id`; the daemon checks it before
    /// each attempt and on SIGHUP. Removing the message removes the marker.
    pub fn bounce_requested(&self, id: &QueueId) -> Result<bool, SpoolError> {
        fsio::exists(&self.bounce_path(id))
    }

    /// Records the daemon's PID in `queue_dir/<daemon>.pid` (relay-out:
    /// `relay-out.pid`) so that
    /// `relay-out queue flush` knows whom to send SIGHUP. Atomic, so the CLI
    /// never reads half a number; replaces a stale file of a crashed daemon.
    pub fn write_pid_file(&self, pid: u32) -> Result<(), SpoolError> {
        let contents = format!("{pid}\n");
        fsio::write_then_rename(&self.dir, &self.pid_file_name(), &mut contents.as_bytes())?;
        Ok(())
    }

    /// Removes the PID file at a clean exit (missing is fine).
    pub fn remove_pid_file(&self) -> Result<(), SpoolError> {
        fsio::remove_if_present(&self.dir.join(self.pid_file_name())).map(|_| ())
    }

    /// The daemon's PID for `queue flush`, `None` when no daemon wrote one.
    /// The PID may be stale (daemon crashed): the caller should treat a
    /// failed `kill` (ESRCH) as "daemon not running".
    pub fn read_pid_file(&self) -> Result<Option<u32>, SpoolError> {
        let path = self.dir.join(self.pid_file_name());
        match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u32>() {
                Ok(pid) if pid > 0 => Ok(Some(pid)),
                _ => Err(SpoolError::BadPidFile { path }),
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                Err(SpoolError::BadPidFile { path })
            }
            Err(error) => Err(SpoolError::io("read", &path, error)),
        }
    }

    fn pid_file_name(&self) -> String {
        format!("{}{PID_FILE_SUFFIX}", self.daemon)
    }
}
