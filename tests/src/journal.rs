//! A journald of the test's own: a Unix datagram socket that receives what
//! a daemon sends to `/run/systemd/journal/socket`, and a parser for the
//! journal's native protocol (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>).
//!
//! An entry is a sequence of fields, each either `NAME=value\n` or, when
//! the value may hold a newline, `NAME\n`, the value's length as a
//! little-endian u64, the value, and `\n`. An entry too large for one
//! datagram arrives as an empty datagram carrying a sealed memfd
//! (SCM_RIGHTS) that holds the entry; both forms are read here.
//!
//! The socket is bound in a temp dir; a test makes it the daemon's journal
//! by bind-mounting that dir over `/run/systemd/journal` in a private mount
//! namespace, so the real journald is never involved.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// One journal entry: its fields in the order they were sent (a name may
/// repeat, as journald allows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// The first value of `name`, as text.
    pub fn get(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_str())
    }

    /// `MESSAGE`, or empty.
    pub fn message(&self) -> String {
        self.get("MESSAGE").unwrap_or_default()
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={:?}", String::from_utf8_lossy(value))?;
        }
        Ok(())
    }
}

/// Whether journald keeps a field of this name from a client: 1 to 64
/// characters of `A-Z`, `0-9` and `_`, not starting with a digit, and not
/// with `_` (those are the journal's trusted fields; a client's are dropped).
pub fn valid_field_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !bytes[0].is_ascii_digit()
        && bytes[0] != b'_'
}

/// Parses one entry in the native protocol.
pub fn parse_entry(payload: &[u8]) -> anyhow::Result<Entry> {
    let mut fields = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("a field without its closing newline")?;
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let (name, value) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], line[eq + 1..].to_vec()),
            None => {
                ensure!(
                    rest.len() >= 8,
                    "field {:?}: no length after the name",
                    String::from_utf8_lossy(line)
                );
                let (length, after) = rest.split_at(8);
                let length = u64::from_le_bytes(length.try_into()?) as usize;
                ensure!(
                    after.len() > length && after[length] == b'\n',
                    "field {:?}: value of {length} bytes not followed by a newline",
                    String::from_utf8_lossy(line)
                );
                rest = &after[length + 1..];
                (line, after[..length].to_vec())
            }
        };
        let name = String::from_utf8(name.to_vec()).context("a field name that is not UTF-8")?;
        fields.push((name, value));
    }
    Ok(Entry { fields })
}

/// The socket, and every entry received so far.
pub struct JournalSocket {
    dir: tempfile::TempDir,
    socket: UnixDatagram,
    received: Vec<Entry>,
}

/// Larger than any datagram a Unix socket accepts by default; a bigger
/// entry comes as a memfd.
const DATAGRAM_MAX: usize = 1 << 20;

impl JournalSocket {
    /// Binds `socket` in a new temp dir.
    pub fn bind() -> anyhow::Result<JournalSocket> {
        let dir = tempfile::tempdir()?;
        let socket = UnixDatagram::bind(dir.path().join("socket"))?;
        Ok(JournalSocket {
            dir,
            socket,
            received: Vec::new(),
        })
    }

    /// The directory holding `socket`: mount it on `/run/systemd/journal`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every entry received so far, in order.
    pub fn received(&self) -> &[Entry] {
        &self.received
    }

    /// The first entry (received before or within `within`) that `wanted`
    /// accepts. The error lists everything received.
    pub fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&Entry) -> bool,
    ) -> anyhow::Result<Entry> {
        if let Some(entry) = self.received.iter().find(|e| wanted(e)) {
            return Ok(entry.clone());
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let entry = if left.is_zero() {
                None
            } else {
                self.receive(left)?
            };
            let Some(entry) = entry else {
                let seen: Vec<String> = self.received.iter().map(Entry::to_string).collect();
                bail!(
                    "no journal entry for {what} within {within:?}; received:\n{}",
                    seen.join("\n")
                );
            };
            self.received.push(entry.clone());
            if wanted(&entry) {
                return Ok(entry);
            }
        }
    }

    /// The next non-empty entry within `within`, or `None`. (The journald
    /// layer sends an empty datagram at start to see that the socket is
    /// there; journald discards those, and so does this.)
    fn receive(&self, within: Duration) -> anyhow::Result<Option<Entry>> {
        let deadline = Instant::now() + within;
        let mut buffer = vec![0u8; DATAGRAM_MAX];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let Some((length, fd)) = self.receive_datagram(&mut buffer)? else {
                continue;
            };
            let payload = match fd {
                Some(fd) => {
                    let mut file = File::from(fd);
                    file.seek(SeekFrom::Start(0))?;
                    let mut payload = Vec::new();
                    file.read_to_end(&mut payload)?;
                    payload
                }
                None => buffer[..length].to_vec(),
            };
            if payload.is_empty() {
                continue;
            }
            return parse_entry(&payload).map(Some);
        }
    }

    /// One datagram into `buffer`, with the file descriptor it carries, if
    /// any; `None` when the read timed out or was interrupted.
    fn receive_datagram(
        &self,
        buffer: &mut [u8],
    ) -> anyhow::Result<Option<(usize, Option<OwnedFd>)>> {
        let mut iov = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        };
        // Room for one cmsghdr with a few descriptors, aligned for cmsghdr.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: the header points at `iov` (into `buffer`) and `control`,
        // which outlive the call and are as large as the header says.
        let received =
            unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC) };
        if received < 0 {
            let error = std::io::Error::last_os_error();
            return match error.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => Ok(None),
                _ => Err(error.into()),
            };
        }
        ensure!(
            header.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) == 0,
            "a journal datagram was truncated"
        );
        let mut fds = Vec::new();
        // SAFETY: the CMSG_* macros walk the control buffer the kernel just
        // filled, within msg_controllen; SCM_RIGHTS data is an array of
        // descriptors now owned by this process, each taken once.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                    let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                        fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&header, cmsg);
            }
        }
        ensure!(
            fds.len() <= 1,
            "a journal datagram carried {} descriptors",
            fds.len()
        );
        Ok(Some((received as usize, fds.pop())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_field_forms() {
        let mut payload = b"PRIORITY=5\nMESSAGE\n".to_vec();
        payload.extend_from_slice(&7u64.to_le_bytes());
        payload.extend_from_slice(b"a\nb=c d\nCLIENT=::1\n");
        let entry = parse_entry(&payload).unwrap();
        assert_eq!(entry.get("PRIORITY").as_deref(), Some("5"));
        assert_eq!(entry.message(), "a\nb=c d");
        assert_eq!(entry.get("CLIENT").as_deref(), Some("::1"));
        assert!(parse_entry(b"MESSAGE\n\x05\0\0\0\0\0\0\0ab\n").is_err());
    }

    /// An entry too large for a datagram: an empty datagram carrying a
    /// memfd, as tracing-journald sends it (file offset at the end).
    #[test]
    fn receives_an_entry_passed_as_a_memfd() {
        use std::io::Write;

        let mut journal = JournalSocket::bind().unwrap();
        let mut payload = b"PRIORITY=3\nMESSAGE\n".to_vec();
        let message = "x".repeat(DATAGRAM_MAX + 1);
        payload.extend_from_slice(&(message.len() as u64).to_le_bytes());
        payload.extend_from_slice(message.as_bytes());
        payload.push(b'\n');
        // SAFETY: memfd_create with a valid C string; the new descriptor is
        // owned by the File from here on.
        let mut memfd = unsafe {
            let fd = libc::memfd_create(c"entry".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            File::from(OwnedFd::from_raw_fd(fd))
        };
        memfd.write_all(&payload).unwrap();

        let sender = UnixDatagram::unbound().unwrap();
        sender.connect(journal.dir().join("socket")).unwrap();
        let mut control = [0u64; 4];
        // SAFETY: the header points at `control`, which is large enough for
        // one descriptor (CMSG_SPACE of a c_int) and outlives the call; the
        // descriptor stays open (owned by `memfd`) until after it.
        let sent = unsafe {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen =
                libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
            libc::CMSG_DATA(cmsg)
                .cast::<libc::c_int>()
                .write_unaligned(memfd.as_raw_fd());
            libc::sendmsg(sender.as_raw_fd(), &header, 0)
        };
        assert_eq!(sent, 0, "{}", std::io::Error::last_os_error());

        let entry = journal
            .wait_for("the memfd entry", Duration::from_secs(5), |_| true)
            .unwrap();
        assert_eq!(entry.get("PRIORITY").as_deref(), Some("3"));
        assert_eq!(entry.message(), message);
    }

    #[test]
    fn field_names_journald_keeps() {
        for good in ["CLIENT", "QUEUE_ID", "F_CLIENT", "X1"] {
            assert!(valid_field_name(good), "{good}");
        }
        for bad in ["", "client", "_PID", "1X", "A-B", &"A".repeat(65)] {
            assert!(!valid_field_name(bad), "{bad}");
        }
    }
}
