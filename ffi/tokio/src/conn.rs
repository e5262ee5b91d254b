//! A connection of its own, for one call at a time: a lock that waits in
//! the server's queue (its answer would hold back every answer behind it
//! on a shared connection), and every call to a JackrabbitDLM server,
//! which closes the connection after each answer.
//!
//! Waits keep a few such connections idle for the next wait. When the
//! call on one is dropped mid-wait, [`Conn::abandon`] half-closes it: the
//! server then takes the request out of its queue and answers `NotOwner`
//! in its place, or, if the grant raced the close, answers `Locked`; the
//! caller reads which, and releases a grant nobody will hold.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::pipe::MAX_ANSWER;

/// One connection and its answer buffer.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            reader: BufReader::new(stream),
            line: Vec::new(),
        }
    }

    /// Sends `request` and reads one answer line, within `limit`.
    pub(crate) async fn round_trip(&mut self, request: &[u8], limit: Duration) -> io::Result<()> {
        self.line.clear();
        let exchange = async {
            self.reader.get_mut().write_all(request).await?;
            self.read_line().await
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
    }

    /// The last answer line read (with its `\n`).
    pub(crate) fn line(&mut self) -> &mut Vec<u8> {
        &mut self.line
    }

    /// Reads the rest of an answer line into `line`, which may hold its
    /// start already (a read cut short by a dropped call).
    async fn read_line(&mut self) -> io::Result<()> {
        let room = (MAX_ANSWER as u64).saturating_sub(self.line.len() as u64);
        (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.line)
            .await?;
        if self.line.last() == Some(&b'\n') {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete answer",
            ))
        }
    }

    /// For a call dropped while it waited: closes our end, so the server
    /// stops waiting for us, and reads the answer it still owes (within
    /// `limit`), if it sends one.
    pub(crate) async fn abandon(mut self, limit: Duration) -> Option<Vec<u8>> {
        let _ = self.reader.get_mut().shutdown().await;
        match tokio::time::timeout(limit, self.read_line()).await {
            Ok(Ok(())) => Some(self.line),
            _ => None,
        }
    }

    /// Whether an idle connection can no longer be used: the server closed
    /// it, or sent something nobody asked for.
    pub(crate) fn is_stale(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let mut byte = [0u8; 1];
        !matches!(
            self.reader.get_ref().try_read(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}
