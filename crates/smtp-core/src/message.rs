//! A received message, in memory or spilled to an anonymous temporary file.
//!
//! Holding every message in memory would let a handful of clients sending
//! 25 MiB each exhaust a 1 GB VPS; past `spool_after` bytes (Haraka's
//! `connection.ini` key) the driver moves the data to disk as it arrives.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A complete message: our `Received:` header, then the client's data.
#[derive(Debug)]
pub enum Message {
    Memory(Vec<u8>),
    /// An unlinked temporary file: it disappears with the last handle, so a
    /// crash leaves nothing behind. The message is the file's last `len`
    /// bytes: a queue file (relay-in's backup spool) carries its envelope
    /// before the message.
    Spooled {
        file: File,
        len: u64,
    },
}

impl Message {
    pub fn len(&self) -> u64 {
        match self {
            Message::Memory(bytes) => bytes.len() as u64,
            Message::Spooled { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A blocking reader from the start. Readers of a spooled message share
    /// the file offset: read them one after the other, not at once.
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        match self {
            Message::Memory(bytes) => Ok(Box::new(bytes.as_slice())),
            Message::Spooled { file, len } => {
                let mut file = file.try_clone()?;
                file.seek(start_of(*len))?;
                Ok(Box::new(file))
            }
        }
    }

    /// An async reader from the start, for streaming to a backend or MX.
    pub fn async_reader(&self) -> io::Result<MessageReader<'_>> {
        match self {
            Message::Memory(bytes) => Ok(MessageReader::Memory(bytes.as_slice())),
            Message::Spooled { file, len } => {
                let mut file = file.try_clone()?;
                file.seek(start_of(*len))?;
                Ok(MessageReader::File(tokio::fs::File::from_std(file)))
            }
        }
    }

    /// The whole message in memory (tests, small messages).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(self.len() as usize);
        self.reader()?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// Where a spooled message of `len` bytes starts: `len` bytes before the end.
fn start_of(len: u64) -> SeekFrom {
    SeekFrom::End(-i64::try_from(len).unwrap_or(i64::MAX))
}

/// [`Message::async_reader`]'s reader.
pub enum MessageReader<'a> {
    Memory(&'a [u8]),
    File(tokio::fs::File),
}

impl AsyncRead for MessageReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MessageReader::Memory(bytes) => Pin::new(bytes).poll_read(cx, buf),
            MessageReader::File(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

/// Where a message being received goes once it is too big for memory.
#[derive(Debug)]
pub struct Spill {
    file: File,
    len: u64,
}

impl Spill {
    /// An anonymous file in `dir` (O_TMPFILE where available).
    pub fn create(dir: &Path) -> io::Result<Spill> {
        Ok(Spill {
            file: tempfile::tempfile_in(dir)?,
            len: 0,
        })
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub fn finish(self) -> Message {
        Message::Spooled {
            file: self.file,
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn spooled_message_reads_back_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::create(dir.path()).unwrap();
        spill.append(b"Received: x\r\n").unwrap();
        spill.append(b"\r\nbody\r\n").unwrap();
        let message = spill.finish();
        assert_eq!(message.len(), 21);
        assert_eq!(message.to_vec().unwrap(), b"Received: x\r\n\r\nbody\r\n");
        let mut again = Vec::new();
        message
            .async_reader()
            .unwrap()
            .read_to_end(&mut again)
            .await
            .unwrap();
        assert_eq!(again, b"Received: x\r\n\r\nbody\r\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the file is unlinked"
        );
    }

    #[test]
    fn memory_message() {
        let message = Message::Memory(b"abc".to_vec());
        assert_eq!(message.len(), 3);
        assert_eq!(message.to_vec().unwrap(), b"abc");
    }
}
