//! Cheap change detection for the certificate files.
//!
//! Renewal tools (acme.sh, certbot) replace the files while we run. Checking on every
//! STARTTLS must cost no more than a `stat()` per file, so a change is recognised by
//! metadata alone and the files are only read when it differs.

use std::fs::Metadata;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::TlsFiles;

/// Metadata snapshot of both certificate files, compared for equality only.
///
/// Taken *before* the files are read for a load, so that a write racing with the read
/// always leaves the files with a different stamp and the next check loads again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FilesStamp {
    key: FileStamp,
    cert: FileStamp,
}

impl FilesStamp {
    /// Stats both files (once when they are the same file), following symlinks as
    /// certbot's `live/` links require.
    pub(super) fn of(files: &TlsFiles) -> FilesStamp {
        let key = FileStamp::of(&files.key);
        let cert = if files.cert == files.key {
            key
        } else {
            FileStamp::of(&files.cert)
        };
        FilesStamp { key, cert }
    }
}

/// What `stat()` reports about one file; a missing file is a state of its own so that
/// its later appearance counts as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileStamp {
    Present(FileIdentity),
    Unavailable(io::ErrorKind),
}

impl FileStamp {
    fn of(path: &Path) -> FileStamp {
        match std::fs::metadata(path) {
            Ok(metadata) => FileStamp::Present(FileIdentity::of(&metadata)),
            Err(error) => FileStamp::Unavailable(error.kind()),
        }
    }
}

/// The metadata that changes when a file is replaced (inode, via rename) or rewritten
/// in place (size, mtime, ctime). ctime also catches `touch -m` back-dating and
/// permission fixes that make an unreadable file readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    size: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
    changed: (i64, i64),
}

impl FileIdentity {
    #[cfg(unix)]
    fn of(metadata: &Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            size: metadata.len(),
            modified: metadata.modified().ok(),
            device: metadata.dev(),
            inode: metadata.ino(),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(metadata: &Metadata) -> FileIdentity {
        FileIdentity {
            size: metadata.len(),
            modified: metadata.modified().ok(),
            device: 0,
            inode: 0,
            changed: (0, 0),
        }
    }
}
