//! The pipelined connection: many calls share one socket. A call writes
//! its request line into the connection's send buffer and waits on a
//! one-shot channel; one background task per connection owns the socket,
//! writes whatever has piled up in one system call, reads answers, and
//! hands each to the oldest waiting call, since the server answers in
//! request order. The shape is tokio-postgres's `Connection` task with a
//! `Client` handle in front; here the handle appends to a shared buffer
//! instead of sending each request as a channel message, so a burst from
//! many tasks costs one wake-up and one `write`.
//!
//! ```text
//!  call ──▶ Pipe::send: request bytes ─▶ State.out ─┐   (mutex, no await)
//!  call ◀── oneshot ◀── answer line ◀─ Driver ◀─────┴─▶ TcpStream (or TLS)
//! ```
//!
//! Only requests the server answers at once belong here: a `Lock` that
//! waits in the server's queue would hold back every answer behind it, so
//! waits use a connection of their own (`conn`).
//!
//! The task never blocks and never holds the mutex over an `.await`; it
//! owns nothing a call needs to finish, so a call's future may be dropped
//! at any point (its answer is then dropped when it arrives). A connection
//! that fails, or makes no progress for the I/O timeout while requests are
//! outstanding, is closed, and every call waiting on it fails; the client
//! opens a new one for the next call.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use dlm_core::protocol::Request;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, Sleep};

use crate::stream::Stream;

/// Longest answer line accepted from a server.
pub(crate) const MAX_ANSWER: usize = 64 << 20;

/// The read buffer's first size.
const READ_CHUNK: usize = 16 << 10;

/// Why a request got no answer.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    kind: io::ErrorKind,
    why: Arc<str>,
    /// The request never left this process, so sending it again elsewhere
    /// cannot apply it twice. (A request that carries a request ID, which
    /// the server applies once, could be resent even when this is false;
    /// `Shared::call` is the one place that decides.)
    pub(crate) unsent: bool,
}

impl Failure {
    /// The failure as an I/O error.
    pub(crate) fn to_io(&self) -> io::Error {
        io::Error::new(self.kind, self.why.to_string())
    }

    /// Whether the connection was closed for giving no answer in time.
    pub(crate) fn timed_out(&self) -> bool {
        self.kind == io::ErrorKind::TimedOut
    }
}

/// What a call receives: the answer line (with its `\n`), or why none
/// came.
pub(crate) type Answer = Result<Vec<u8>, Failure>;

/// Where a call waits for its answer.
pub(crate) type Reply = oneshot::Receiver<Answer>;

/// One pipelined connection, shared by the calls and its task.
pub(crate) struct Pipe {
    state: Mutex<State>,
    /// Set by [`Pipe::shutdown`]: close at once.
    shut: AtomicBool,
    /// Woken when the connection closes.
    ended: Notify,
    /// The failover epoch it was opened at: one of another epoch is to a
    /// server no longer in use.
    pub(crate) epoch: u64,
}

#[derive(Default)]
struct State {
    /// Request lines not yet taken by the task.
    out: Vec<u8>,
    /// One sender per request, in request order (taken or not).
    waiting: VecDeque<oneshot::Sender<Answer>>,
    /// The task's waker, left here while it has nothing to write.
    task: Option<Waker>,
    /// Set once the connection is closed, with why.
    closed: Option<(io::ErrorKind, Arc<str>)>,
    /// The client is gone: close once every answer is in.
    abandoned: bool,
}

impl Pipe {
    /// Starts the task for `stream` on the current runtime. With
    /// `io_timeout`, the connection is closed when it makes no progress
    /// for that long while answers are awaited; without, only when it
    /// fails (a session's connection, whose answers may wait behind a
    /// lock's wait: its keep-alive judges it).
    pub(crate) fn start(stream: Stream, io_timeout: Option<Duration>, epoch: u64) -> Arc<Self> {
        let pipe = Arc::new(Self {
            state: Mutex::new(State::default()),
            shut: AtomicBool::new(false),
            ended: Notify::new(),
            epoch,
        });
        tokio::spawn(Driver {
            pipe: pipe.clone(),
            stream,
            wbuf: Vec::new(),
            wpos: 0,
            rbuf: Vec::new(),
            rpos: 0,
            rlen: 0,
            scan: 0,
            taken: 0,
            ready: Vec::new(),
            io_timeout,
            last: Instant::now(),
            timer: None,
            yielded: false,
            resumed: false,
        });
        pipe
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `req`; its answer arrives on the returned channel. Fails at
    /// once (`unsent`) if the connection is closed.
    pub(crate) fn send(&self, req: &Request<'_>) -> Result<Reply, Failure> {
        let (tx, rx) = oneshot::channel();
        let waker = {
            let mut st = self.state();
            if let Some((kind, why)) = &st.closed {
                return Err(Failure {
                    kind: *kind,
                    why: why.clone(),
                    unsent: true,
                });
            }
            // Writing into a Vec cannot fail.
            let _ = req.write(&mut st.out);
            st.waiting.push_back(tx);
            st.task.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(rx)
    }

    /// Whether the connection is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed.is_some()
    }

    /// Closes the connection now: every call still waiting fails.
    pub(crate) fn shutdown(&self) {
        self.shut.store(true, Ordering::Release);
        let waker = self.state().task.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves once the connection is closed (at once if it is).
    pub(crate) async fn closed(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // Listen before looking, so no close falls in between.
            ended.as_mut().enable();
            if self.is_closed() {
                return;
            }
            ended.await;
        }
    }

    /// Lets the task end once every answer is in (the client is gone).
    pub(crate) fn abandon(&self) {
        let waker = {
            let mut st = self.state();
            st.abandoned = true;
            st.task.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The task of one connection.
struct Driver {
    pipe: Arc<Pipe>,
    stream: Stream,
    /// Requests being written, and how much of them is.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Answers read: `rpos..rlen` is unconsumed, `scan` is where the
    /// search for the next newline resumes.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    scan: usize,
    /// Requests taken for writing and not answered yet: the front of
    /// `State::waiting`.
    taken: usize,
    /// Answers to hand out once the mutex is released.
    ready: Vec<(oneshot::Sender<Answer>, Vec<u8>)>,
    io_timeout: Option<Duration>,
    /// The last sign of life: an answer, or the first request taken while
    /// none was outstanding.
    last: Instant,
    /// Fires `io_timeout` after `last` (re-armed lazily).
    timer: Option<Pin<Box<Sleep>>>,
    /// This poll woke the task to give way to others before writing ...
    yielded: bool,
    /// ... and this one is the poll after that: write.
    resumed: bool,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.resumed = std::mem::take(&mut this.yielded);
        match this.turn(cx) {
            Ok(poll) => poll,
            Err(e) => {
                this.close(e.kind(), &e.to_string());
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The runtime is shutting down (or the task ended): nobody will
        // answer what is still waiting.
        self.close(io::ErrorKind::NotConnected, "the connection task stopped");
    }
}

impl Driver {
    /// Moves bytes until nothing more can be done now.
    fn turn(&mut self, cx: &mut Context<'_>) -> io::Result<Poll<()>> {
        loop {
            if self.pipe.shut.load(Ordering::Acquire) {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the connection was closed by this client",
                ));
            }
            let mut busy = false;
            if self.wpos == self.wbuf.len() && !self.take(cx) {
                return Ok(Poll::Ready(()));
            }
            while self.wpos < self.wbuf.len() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.wbuf[self.wpos..]) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.wpos += n;
                        busy = true;
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => break,
                }
            }
            // Over TLS a write may leave records in the session: push them
            // out (a no-op for plain TCP). Pending: woken when it can.
            if self.wpos == self.wbuf.len()
                && let Poll::Ready(Err(e)) = Pin::new(&mut self.stream).poll_flush(cx)
            {
                return Err(e);
            }
            loop {
                self.make_room()?;
                let mut buf = ReadBuf::new(&mut self.rbuf[self.rlen..]);
                match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the server closed the connection",
                            ));
                        }
                        self.rlen += n;
                        self.dispatch()?;
                        busy = true;
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => break,
                }
            }
            if self.taken > 0
                && let Some(limit) = self.io_timeout
            {
                let due = self.last + limit;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= due {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no answer within the I/O timeout",
                        ));
                    }
                    timer.as_mut().reset(due);
                    busy = true;
                }
            }
            if !busy {
                return Ok(Poll::Pending);
            }
        }
    }

    /// Takes the requests that piled up, or leaves the waker to be woken
    /// by the next one. False once the connection should end.
    fn take(&mut self, cx: &Context<'_>) -> bool {
        self.wbuf.clear();
        self.wpos = 0;
        let mut st = self.pipe.state();
        if st.out.is_empty() {
            if st.abandoned && st.waiting.is_empty() {
                return false;
            }
            if !st.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.task = Some(cx.waker().clone());
            }
        } else if !self.resumed {
            // Give way once before writing: the tasks woken with the last
            // answers (or with this wake-up) run first and add their
            // requests, and they all go out in one write. Without this, a
            // scheduler that runs a just-woken task next (tokio's
            // multi-threaded one does) would write them one at a time.
            if !self.yielded {
                self.yielded = true;
                cx.waker().wake_by_ref();
            }
        } else {
            std::mem::swap(&mut st.out, &mut self.wbuf);
            if self.taken == 0 {
                self.last = Instant::now();
            }
            self.taken = st.waiting.len();
        }
        true
    }

    /// Makes room to read into: reclaims consumed bytes, or grows.
    fn make_room(&mut self) -> io::Result<()> {
        if self.rlen < self.rbuf.len() {
            return Ok(());
        }
        if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rlen, 0);
            self.rlen -= self.rpos;
            self.scan -= self.rpos;
            self.rpos = 0;
        } else if self.rbuf.len() > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an answer line longer than 64 MiB",
            ));
        } else {
            let len = (self.rbuf.len() * 2).max(READ_CHUNK);
            self.rbuf.resize(len, 0);
        }
        Ok(())
    }

    /// Hands every complete answer line to its call.
    fn dispatch(&mut self) -> io::Result<()> {
        let mut st = None;
        while let Some(i) = memchr::memchr(b'\n', &self.rbuf[self.scan..self.rlen]) {
            let end = self.scan + i + 1;
            let line = self.rbuf[self.rpos..end].to_vec();
            self.rpos = end;
            self.scan = end;
            let st = st.get_or_insert_with(|| self.pipe.state());
            let tx = match st.waiting.pop_front() {
                Some(tx) if self.taken > 0 => tx,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the server sent an answer to no request",
                    ));
                }
            };
            self.taken -= 1;
            self.ready.push((tx, line));
        }
        drop(st);
        self.scan = self.rlen;
        if self.rpos == self.rlen {
            (self.rpos, self.rlen, self.scan) = (0, 0, 0);
        }
        if !self.ready.is_empty() {
            self.last = Instant::now();
            for (tx, line) in self.ready.drain(..) {
                // The call may have been dropped: then nobody wants it.
                let _ = tx.send(Ok(line));
            }
        }
        Ok(())
    }

    /// Closes the connection: every call still waiting fails; those whose
    /// request was never taken for writing are marked unsent.
    fn close(&mut self, kind: io::ErrorKind, why: &str) {
        let waiting = {
            let mut st = self.pipe.state();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some((kind, Arc::from(why)));
            st.out = Vec::new();
            st.task = None;
            std::mem::take(&mut st.waiting)
        };
        let why: Arc<str> = Arc::from(why);
        for (i, tx) in waiting.into_iter().enumerate() {
            let _ = tx.send(Err(Failure {
                kind,
                why: why.clone(),
                unsent: i >= self.taken,
            }));
        }
        self.taken = 0;
        self.pipe.ended.notify_waiters();
    }
}
