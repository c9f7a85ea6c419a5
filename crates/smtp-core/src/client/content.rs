//! Sending a message's content after `354`: dot-stuffed, in pieces, with
//! the terminator in the same write as the end of the message.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::message::MessageReader;
use smtp_protocol::data::DotStuffer;
use smtp_protocol::reply::Reply;

use super::error::{ClientError, ClientErrorKind, Step};
use super::session::SmtpClient;

/// Content is read and stuffed in pieces of up to this size, so a large
/// spooled message never has to be in memory twice.
const DATA_CHUNK: usize = 64 * 1024;

/// The first piece read from a reader: most messages are a few KB, and
/// allocating (and freeing) 64 KiB buffers per message made glibc trim and
/// re-fault its heap (an madvise per message); pieces grow to
/// [`DATA_CHUNK`] once one fills up.
const FIRST_DATA_CHUNK: usize = 16 * 1024;

/// [`FIRST_DATA_CHUNK`] stuffed: stuffing adds at most one octet per line,
/// reserved as one in eight.
const FIRST_STUFFED: usize = FIRST_DATA_CHUNK + FIRST_DATA_CHUNK / 8;

/// A run of a message in memory shorter than this is copied and sent with
/// its neighbours rather than written on its own.
const SHORT_RUN: usize = 4 * 1024;

/// A message the client can send. It is an [`AsyncRead`] (a spool file, read
/// a piece at a time), and says when it is already in memory, so that it is
/// sent from where it lies instead of being copied into a read buffer
/// first: at 100 sessions of 100 KB messages that buffer was 6 MB.
pub trait MessageSource: AsyncRead + Unpin {
    /// The whole message, when it is in memory.
    fn in_memory(&self) -> Option<&[u8]> {
        None
    }
}

impl MessageSource for &[u8] {
    fn in_memory(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl MessageSource for MessageReader<'_> {
    fn in_memory(&self) -> Option<&[u8]> {
        match self {
            MessageReader::Memory(bytes) => Some(bytes),
            MessageReader::File(_) => None,
        }
    }
}

impl MessageSource for tokio::fs::File {}

/// A spool file holding more than the message (relay-out's spare files).
impl MessageSource for tokio::io::Take<tokio::fs::File> {}

/// A session's buffers for reading a message and writing it dot-stuffed,
/// kept between messages while they are of the first piece's size so a
/// session carrying many small messages does not allocate them for each.
#[derive(Default)]
pub(super) struct DataBuffers {
    chunk: Vec<u8>,
    stuffed: Vec<u8>,
}

impl DataBuffers {
    /// Whether keeping them costs no more than a small message needs.
    fn worth_keeping(&self) -> bool {
        self.chunk.capacity() <= FIRST_DATA_CHUNK && self.stuffed.capacity() <= FIRST_STUFFED
    }
}

impl SmtpClient {
    /// The content after `354`, then the reply to it: one per accepted
    /// recipient for LMTP, SMTP's single reply repeated otherwise.
    pub(super) async fn content_per_recipient<R: MessageSource>(
        &mut self,
        mut message: R,
    ) -> Result<Vec<Reply>, ClientError> {
        let timeouts = self.config.timeouts;
        let expected = self.accepted_rcpts.max(1);
        let mut stuffer = DotStuffer::new();
        let DataBuffers {
            mut chunk,
            mut stuffed,
        } = std::mem::take(&mut self.data_buffers);
        stuffed.clear();
        if let Some(bytes) = message.in_memory() {
            // All but the last piece goes out from where it lies; the last
            // is stuffed into `stuffed` to go with the terminator.
            let (head, tail) = bytes.split_at(bytes.len().saturating_sub(FIRST_DATA_CHUNK));
            if !head.is_empty() {
                // Room for the last piece stuffed, so that `stuff_piece`
                // does not double it and the session can keep it.
                stuffed.reserve(FIRST_STUFFED);
            }
            for run in stuffer.runs(head) {
                self.send_run(run, &mut stuffed).await?;
            }
            self.stuff_piece(&mut stuffer, tail, &mut stuffed).await?;
        } else {
            // Reads go into spare capacity (no memset per message).
            chunk.clear();
            chunk.reserve(FIRST_DATA_CHUNK);
            loop {
                if chunk.len() == chunk.capacity() {
                    chunk.reserve(DATA_CHUNK.saturating_sub(chunk.capacity()));
                }
                chunk.clear();
                let count = match message.read_buf(&mut chunk).await {
                    Ok(count) => count,
                    Err(error) => {
                        return Err(self
                            .transport
                            .fail(Step::DataBlock, ClientErrorKind::MessageRead(error)));
                    }
                };
                if count == 0 {
                    break;
                }
                self.stuff_piece(&mut stuffer, &chunk, &mut stuffed).await?;
            }
        }
        // The end of the message goes out with the terminator: one write and
        // one packet fewer per message (the last piece is most of a small one).
        stuffer.finish(&mut stuffed);
        self.transport
            .write(&stuffed, Step::DataBlock, timeouts.data_block)
            .await?;
        let buffers = DataBuffers { chunk, stuffed };
        if buffers.worth_keeping() {
            self.data_buffers = buffers;
        }

        let answers = if self.config.lmtp { expected } else { 1 };
        let mut replies = Vec::with_capacity(expected);
        for _ in 0..answers {
            let reply = self
                .transport
                .read_reply(Step::DataEnd, timeouts.data_end)
                .await?;
            replies.push(self.transaction_reply(Step::DataEnd, reply)?);
        }
        if !self.config.lmtp {
            let only = replies[0].clone();
            replies.resize(expected, only);
        }
        Ok(replies)
    }

    /// Sends one run of a message in memory ([`DotStuffer::runs`]): a long
    /// one straight from the message, in pieces of at most [`DATA_CHUNK`]
    /// (each write has its own timeout, as for a spooled message), a short
    /// one (many dots at line starts) gathered in `stuffed` first, so such
    /// a message does not cost a write per line.
    async fn send_run(&mut self, run: &[u8], stuffed: &mut Vec<u8>) -> Result<(), ClientError> {
        let timeout = self.config.timeouts.data_block;
        if run.len() < SHORT_RUN {
            if stuffed.len() + run.len() > FIRST_DATA_CHUNK {
                self.transport
                    .write(stuffed, Step::DataBlock, timeout)
                    .await?;
                stuffed.clear();
            }
            stuffed.extend_from_slice(run);
            return Ok(());
        }
        if !stuffed.is_empty() {
            self.transport
                .write(stuffed, Step::DataBlock, timeout)
                .await?;
            stuffed.clear();
        }
        for piece in run.chunks(DATA_CHUNK) {
            self.transport
                .write(piece, Step::DataBlock, timeout)
                .await?;
        }
        Ok(())
    }

    /// Stuffs one piece into `stuffed`, writing what is there once a piece's
    /// worth is ready. Stuffing adds at most one octet per line; a piece that
    /// would not fit sends what is waiting first, so `stuffed` stays near one
    /// piece's size instead of doubling past it.
    async fn stuff_piece(
        &mut self,
        stuffer: &mut DotStuffer,
        piece: &[u8],
        stuffed: &mut Vec<u8>,
    ) -> Result<(), ClientError> {
        let timeout = self.config.timeouts.data_block;
        let room_needed = piece.len() + piece.len() / 8;
        if !stuffed.is_empty() && stuffed.len() + room_needed > stuffed.capacity() {
            self.transport
                .write(stuffed, Step::DataBlock, timeout)
                .await?;
            stuffed.clear();
        }
        stuffed.reserve(room_needed);
        stuffer.push(piece, stuffed);
        if stuffed.len() >= DATA_CHUNK {
            self.transport
                .write(stuffed, Step::DataBlock, timeout)
                .await?;
            stuffed.clear();
        }
        Ok(())
    }
}
