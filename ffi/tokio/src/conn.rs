//! A connection of its own, for one call at a time: a lock that waits in
//! the server's queue (its answer would hold back every answer behind it
//! on a shared connection), every call to a JackrabbitDLM server, which
//! closes the connection after each answer, and the question a new
//! connection asks about the cluster before it is used.
//!
//! Waits keep a few such connections idle for the next wait. When the
//! call on one is dropped mid-wait, [`Conn::abandon`] half-closes it: the
//! server then takes the request out of its queue and answers `NotOwner`
//! in its place, or, if the grant raced the close, answers `Locked`; the
//! caller reads which, and releases a grant nobody will hold.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use dlm_core::client::failover::Outcome;
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, ReadBuf,
};

use crate::pipe::MAX_ANSWER;
use crate::stream::Stream;

/// One connection and its answer buffer.
pub(crate) struct Conn {
    reader: BufReader<Stream>,
    line: Vec<u8>,
    /// The failover epoch it was made at: one of another epoch is to a
    /// server no longer in use.
    pub(crate) epoch: u64,
}

/// How a round trip failed: what the failover is told.
pub(crate) enum Broken {
    /// Before any byte of the request went out: it never left.
    NotSent(io::Error),
    /// No whole answer within the limit.
    TimedOut(io::Error),
    /// After the request was (maybe partly) written.
    Failed(io::Error),
}

impl Broken {
    /// The failover's name for it.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::NotSent(_) => Outcome::NotSent,
            Self::TimedOut(_) => Outcome::TimedOut,
            Self::Failed(_) => Outcome::Closed,
        }
    }

    /// The I/O error under it.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            Self::NotSent(e) | Self::TimedOut(e) | Self::Failed(e) => e,
        }
    }
}

impl Conn {
    pub(crate) fn new(stream: Stream, epoch: u64) -> Self {
        Self {
            reader: BufReader::new(stream),
            line: Vec::new(),
            epoch,
        }
    }

    /// Sends `request` and reads one answer line, within `limit`.
    pub(crate) async fn round_trip(
        &mut self,
        request: &[u8],
        limit: Duration,
    ) -> Result<(), Broken> {
        self.line.clear();
        let mut written = 0;
        let exchange = async {
            // Over TLS a write takes the bytes into the session, and
            // nothing reached the socket until one succeeded: `written ==
            // 0` still means "not sent".
            let stream = self.reader.get_mut();
            while written < request.len() {
                match stream.write(&request[written..]).await {
                    Ok(0) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        return Err(if written == 0 {
                            Broken::NotSent(e)
                        } else {
                            Broken::Failed(e)
                        });
                    }
                    Ok(n) => written += n,
                    Err(e) if written == 0 => return Err(Broken::NotSent(e)),
                    Err(e) => return Err(Broken::Failed(e)),
                }
            }
            stream.flush().await.map_err(Broken::Failed)?;
            self.read_line().await.map_err(Broken::Failed)
        };
        match tokio::time::timeout(limit.max(Duration::from_millis(1)), exchange).await {
            Ok(done) => done,
            Err(_) => Err(Broken::TimedOut(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer within the time limit",
            ))),
        }
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
    /// it, or sent something nobody asked for. One read that must not
    /// wait: over TLS it also takes in what the server sends after the
    /// handshake (session tickets), which is no reason to drop it.
    pub(crate) fn is_stale(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        !matches!(
            Pin::new(self.reader.get_mut()).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    /// The stream, for a pipelined connection once the cluster question
    /// is answered; `None` if the server sent more than was asked for.
    pub(crate) fn into_stream(self) -> Option<Stream> {
        self.reader
            .buffer()
            .is_empty()
            .then(|| self.reader.into_inner())
    }
}
