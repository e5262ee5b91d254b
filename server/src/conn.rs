//! One connection: read lines, answer them in order, never buffer more
//! than the line limit, and give up on clients that stall.
//!
//! Every complete line of one read is answered under one engine lock, and
//! the answers leave in one write. A `Lock` with `Wait` that must queue
//! holds a place in the answer order; answers behind it wait in `held`
//! until the engine hands the waiter its answer through this connection's
//! channel. When the connection ends, its waiters leave their queues at
//! once, and a grant that raced the close is released.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use dlm_core::engine::{Outcome, Principal, WaiterId};
use dlm_core::protocol::{Framing, Request, RequestError, Response, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Instant;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::server::{Delivery, Shared, State, tag};

/// Most bytes asked of one `read`.
const READ_CHUNK: usize = 64 * 1024;
/// Least room offered to one `read`.
const MIN_READ: usize = 4096;
/// Most answers held behind queued waiters before reading pauses.
const MAX_HELD: usize = 1024;
/// After an oversized line: how long and how much input to discard before
/// closing, so the client can read the error instead of a reset.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 32 << 20;

/// Why a connection ends.
enum End {
    /// The client closed and everything was answered.
    Closed,
    /// A read or write failed.
    Error(io::Error),
    /// A line longer than the limit.
    Overrun,
    /// A line stalled (or a write did) past the idle timeout.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// What woke the connection up.
enum Wake {
    Shutdown,
    Idle,
    Delivery(Option<Delivery>),
    Readable(io::Result<()>),
}

/// An answer waiting for an earlier queued lock request to be answered.
enum Held {
    Waiting(WaiterId, Framing),
    Ready(Vec<u8>),
}

/// Answers in request order.
#[derive(Default)]
struct Output {
    /// Bytes ready to write.
    ready: Vec<u8>,
    /// Answers behind a queued waiter, in order.
    held: VecDeque<Held>,
}

impl Output {
    fn emit(&mut self, response: &Response<'_>, framing: Framing) {
        // Writing to a Vec cannot fail.
        if self.held.is_empty() {
            let _ = response.write(framing, &mut self.ready);
        } else {
            let mut line = Vec::new();
            let _ = response.write(framing, &mut line);
            self.held.push_back(Held::Ready(line));
        }
    }

    /// Puts a waiter's answer in its place; false if it has no place.
    fn fill(&mut self, waiter: WaiterId, line: Vec<u8>) -> bool {
        let Some(slot) = self
            .held
            .iter_mut()
            .find(|h| matches!(h, Held::Waiting(w, _) if *w == waiter))
        else {
            return false;
        };
        *slot = Held::Ready(line);
        while let Some(Held::Ready(_)) = self.held.front() {
            if let Some(Held::Ready(line)) = self.held.pop_front() {
                self.ready.extend_from_slice(&line);
            }
        }
        true
    }
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    stream: TcpStream,
    /// Input storage (initialized, reused); `inbuf[..filled]` is unanswered
    /// input, at most one partial line after each read.
    inbuf: Vec<u8>,
    filled: usize,
    /// Bytes at the start of `inbuf` known to hold no newline.
    scanned: usize,
    /// When the current partial line began.
    partial_since: Option<tokio::time::Instant>,
    out: Output,
    /// Waiters' answers, once this connection has queued one.
    rx: Option<mpsc::UnboundedReceiver<Delivery>>,
}

/// Serves one connection until it ends.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    id: u64,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        shared,
        id,
        stream,
        inbuf: Vec::new(),
        filled: 0,
        scanned: 0,
        partial_since: None,
        out: Output::default(),
        rx: None,
    };
    let end = conn.run(&cancel).await;
    conn.finish(end).await;
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<Delivery>>) -> Option<Delivery> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    async fn run(&mut self, cancel: &CancellationToken) -> End {
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            let idle_at = self.partial_since.map(|t| t + self.shared.idle_timeout);
            let has_rx = self.rx.is_some();
            // Answers held behind a waiter take memory: stop reading until
            // the waiter is answered rather than hold an unbounded backlog.
            let blocked = self.out.held.len() >= MAX_HELD;
            let event = {
                let (stream, rx) = (&self.stream, &mut self.rx);
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => Wake::Shutdown,
                    d = recv(rx), if has_rx => Wake::Delivery(d),
                    r = stream.readable(), if !blocked => Wake::Readable(r),
                    () = sleep_until(idle_at), if idle_at.is_some() => Wake::Idle,
                }
            };
            match event {
                Wake::Shutdown => return End::Shutdown,
                Wake::Idle => return End::Idle,
                Wake::Delivery(Some(d)) => {
                    if let Err(end) = self.deliver(d) {
                        return end;
                    }
                }
                Wake::Delivery(None) => self.rx = None,
                Wake::Readable(Err(e)) => return End::Error(e),
                Wake::Readable(Ok(())) => match self.read() {
                    Ok(None) => {}
                    Ok(Some(0)) => {
                        if self.filled > 0 {
                            // A last line without its newline still counts.
                            self.reserve(1);
                            self.inbuf[self.filled] = b'\n';
                            self.filled += 1;
                            if let Err(end) = self.process() {
                                return end;
                            }
                        }
                        // A client that closed cannot be waiting any more:
                        // its waiters leave their queues now (see `finish`).
                        return End::Closed;
                    }
                    Ok(Some(_)) => {
                        if let Err(end) = self.process() {
                            return end;
                        }
                    }
                    Err(e) => return End::Error(e),
                },
            }
        }
    }

    /// Makes `inbuf` hold at least `n` bytes past the data.
    fn reserve(&mut self, n: usize) {
        if self.inbuf.len() < self.filled + n {
            self.inbuf.resize(self.filled + n, 0);
        }
    }

    /// Reads what the socket holds: `Some(0)` at end of stream, `None` if
    /// the readiness was stale.
    ///
    /// A read that returns less than it was offered drained the socket, so
    /// the readiness is cleared right away (by answering `WouldBlock` to
    /// `try_io`): the next wait goes straight to epoll instead of costing
    /// another read(2) that would only say "would block". tokio's readiness
    /// ticks keep this race-free: data that arrives meanwhile raises a new
    /// edge that this clear cannot erase.
    fn read(&mut self) -> io::Result<Option<usize>> {
        let limit = self.shared.limits.max_line;
        // Never hold more than one line's limit (+1 to detect an overrun);
        // offer at least 4 KiB (a pipelined batch in one call), more while
        // a long line is arriving.
        let room = (limit + 1).saturating_sub(self.filled).clamp(1, READ_CHUNK);
        let want = room.min(self.filled.max(MIN_READ));
        self.reserve(want);
        let (stream, buf) = (
            &self.stream,
            &mut self.inbuf[self.filled..self.filled + want],
        );
        let mut got = 0;
        let r = stream.try_io(Interest::READABLE, || {
            let n = io::Read::read(&mut &*socket2::SockRef::from(stream), buf)?;
            got = n;
            if n > 0 && n < buf.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(e) => return Err(e),
        };
        self.filled += n;
        Ok(Some(n))
    }

    /// Writes what is ready. A client that does not read for the idle
    /// timeout is dropped rather than allowed to pin the connection.
    async fn flush(&mut self) -> Result<(), End> {
        let mut done = 0;
        while done < self.out.ready.len() {
            match self.stream.try_write(&self.out.ready[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout(self.shared.idle_timeout, self.stream.writable())
                        .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(End::Error(e)),
                        Err(_) => return Err(End::Idle),
                    }
                }
                Err(e) => return Err(End::Error(e)),
            }
        }
        self.out.ready.clear();
        if self.out.ready.capacity() > READ_CHUNK {
            self.out.ready.shrink_to(4096);
        }
        Ok(())
    }

    /// Puts a waiter's answer in its place. A grant for a client that has
    /// already closed its end is not written into the void: it is released
    /// for the next waiter, and the connection ends.
    fn deliver(&mut self, d: Delivery) -> Result<(), End> {
        let gone = d.grant.is_some() && self.peer_closed();
        if gone {
            debug!(
                conn = self.id,
                "client left as its wait was granted; releasing"
            );
        }
        if gone || !self.out.fill(d.waiter, d.line) {
            // The client left, or the wait was already answered (at
            // shutdown): release the grant.
            if let Some(grant) = d.grant {
                let now = self.shared.clock.now();
                let mut st = self.shared.lock();
                st.orphan(grant);
                st.release_orphans(now);
            }
        }
        if gone { Err(End::Closed) } else { Ok(()) }
    }

    /// Whether the client has closed its end (or reset it), judged without
    /// consuming anything it sent.
    fn peer_closed(&self) -> bool {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.stream).peek(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted
            }
        }
    }

    /// Answers every complete line in `inbuf` under one engine lock.
    fn process(&mut self) -> Result<(), End> {
        let limit = self.shared.limits.max_line;
        let shared = self.shared.clone();
        let now = shared.clock.now();
        let mut guard = None;
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(i) = memchr::memchr(b'\n', &self.inbuf[from..self.filled]) {
            let end = from + i;
            if end - start > limit {
                drop(guard);
                self.consume(start);
                return Err(self.overrun());
            }
            let st = guard.get_or_insert_with(|| shared.lock());
            let line = &mut self.inbuf[start..end];
            handle_line(&shared, st, now, self.id, line, &mut self.out, &mut self.rx);
            start = end + 1;
            from = start;
        }
        if let Some(st) = &guard {
            shared.poke_timer(st);
        }
        drop(guard);
        self.consume(start);
        self.scanned = self.filled;
        if self.filled > limit {
            return Err(self.overrun());
        }
        if self.filled == 0 {
            self.partial_since = None;
            if self.inbuf.len() > READ_CHUNK {
                self.inbuf.truncate(MIN_READ);
                self.inbuf.shrink_to_fit();
            }
        } else if self.partial_since.is_none() {
            self.partial_since = Some(tokio::time::Instant::now());
        }
        Ok(())
    }

    /// Drops the first `n` bytes of data (answered lines).
    fn consume(&mut self, n: usize) {
        self.inbuf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// A line over the limit: answer `BadPayload` in its framing, and end.
    fn overrun(&mut self) -> End {
        let head = &self.inbuf[..self.filled.min(64)];
        let framing = Framing::detect(head);
        {
            let mut st = self.shared.lock();
            let stats = st.engine.stats_mut();
            stats.incr(Stat::In);
            stats.incr(Stat::DataOverrun);
            stats.incr(Stat::BadPayload);
            stats.incr(Stat::Out);
        }
        let limit = self.shared.limits.max_line;
        self.out.emit(
            &Response::rejected(RequestError::LineTooLong { limit }),
            framing,
        );
        self.inbuf = Vec::new();
        self.filled = 0;
        End::Overrun
    }

    async fn finish(mut self, end: End) {
        let shutdown = matches!(end, End::Shutdown);
        let now = self.shared.clock.now();
        {
            let mut st = self.shared.lock();
            // Answers stay in request order: behind a waiter that gets no
            // answer, nothing more is written.
            let mut blocked = false;
            for h in std::mem::take(&mut self.out.held) {
                match h {
                    Held::Ready(line) if !blocked => self.out.ready.extend_from_slice(&line),
                    Held::Ready(_) => {}
                    Held::Waiting(w, framing) => {
                        st.engine.cancel(w);
                        if shutdown {
                            // The server is going away: this wait is over.
                            let _ =
                                Response::new(Status::NotOwner).write(framing, &mut self.out.ready);
                        } else {
                            blocked = true;
                        }
                    }
                }
            }
            st.conns.remove(&self.id);
            if let Some(mut rx) = self.rx.take() {
                rx.close();
                while let Ok(d) = rx.try_recv() {
                    if let Some(grant) = d.grant {
                        st.orphan(grant);
                    }
                }
            }
            st.release_orphans(now);
            if matches!(end, End::Idle) {
                st.engine.stats_mut().incr(Stat::IdleTimeout);
            }
        }
        match end {
            End::Error(e) => debug!(conn = self.id, "connection error: {e}"),
            End::Idle => debug!(conn = self.id, "idle timeout"),
            End::Closed | End::Shutdown => {
                let _ = tokio::time::timeout(Duration::from_millis(500), self.flush()).await;
            }
            End::Overrun => {
                let _ = tokio::time::timeout(LINGER, self.flush()).await;
                let _ = self.stream.shutdown().await;
                // Let the client read the answer rather than a reset.
                let mut sink = vec![0u8; READ_CHUNK];
                let mut discarded = 0;
                let drain = async {
                    while discarded < LINGER_BYTES {
                        match self.stream.read(&mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => discarded += n,
                        }
                    }
                };
                let _ = tokio::time::timeout(LINGER, drain).await;
            }
        }
    }
}

/// Parses, authenticates and applies one line; its answer goes to `out`.
fn handle_line(
    shared: &Shared,
    st: &mut State,
    now: Instant,
    conn: u64,
    line: &mut [u8],
    out: &mut Output,
    rx: &mut Option<mpsc::UnboundedReceiver<Delivery>>,
) {
    st.engine.stats_mut().incr(Stat::In);
    let req = match Request::parse(line, &shared.limits) {
        Ok(req) => req,
        Err(rejected) => {
            let stats = st.engine.stats_mut();
            stats.incr(match rejected.error.status() {
                Status::BadAction => Stat::BadAction,
                _ => Stat::BadPayload,
            });
            stats.incr(Stat::Out);
            out.emit(&Response::rejected(rejected.error), rejected.framing);
            return;
        }
    };
    let framing = req.framing;
    let principal = match req.credentials {
        None => Principal::Anonymous,
        Some(c) => {
            let verified = shared
                .identities
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .verify(c.name, c.secret);
            if let Some(id) = verified {
                Principal::Identity(id)
            } else {
                let stats = st.engine.stats_mut();
                stats.incr(Stat::AuthFailed);
                stats.incr(Stat::BadPayload);
                stats.incr(Stat::Out);
                out.emit(&Response::rejected(RequestError::AuthFailed), framing);
                return;
            }
        }
    };
    let queued = st.with_engine(now, |engine, sink| {
        match engine.handle(
            now,
            &req.command,
            principal,
            tag(conn, framing),
            &mut |ev| sink(ev),
        ) {
            Outcome::Reply(r) => {
                out.emit(&r, framing);
                false
            }
            Outcome::Queued(w) => {
                out.held.push_back(Held::Waiting(w, framing));
                true
            }
        }
    });
    if queued {
        if rx.is_none() {
            let (tx, new_rx) = mpsc::unbounded_channel();
            st.conns.insert(conn, tx);
            *rx = Some(new_rx);
        }
    } else {
        st.engine.stats_mut().incr(Stat::Out);
    }
}
