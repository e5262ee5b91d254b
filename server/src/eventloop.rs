//! The connection engine: one thread, one epoll loop, the lock engine and
//! every connection owned by it, in the manner of Redis.
//!
//! ```text
//!   epoll ──▶ ready sockets ──▶ read every complete line ──▶ Engine::handle
//!     ▲                                                        │ answers, and waiters'
//!     │                                                        ▼ grants (written straight
//!     └── sleep until the next event, engine deadline, ◀── write every connection's
//!         idle timeout or statistics line                   answers, once per turn
//! ```
//!
//! Why not a tokio task per connection (the first design): on the 2-core
//! machine the issue sets, a task per connection paid for wakers, a mutex
//! around the engine and a channel per waiter, and a trivial tokio server
//! already fell behind Redis at 16 clients (`dlm-bench`, see README). Here
//! a waiter's grant is written into its connection in the same turn as the
//! unlock that freed it, no lock guards the engine, and every connection
//! that became ready in one `epoll_wait` is read, answered and written
//! before the next. tokio still runs the process around it: signals, the
//! `run(listener, shutdown)` entry point, and shutdown.
//!
//! Each connection enforces the line limit while reading (it never holds
//! more than one line's limit), answers in request order (answers behind a
//! queued lock request wait in `held`), times out a line that stalls and a
//! client that stops reading, and releases a grant whose client has gone.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use dlm_core::engine::{Config, Engine, Event, Outcome, Principal, WaiterId};
use dlm_core::limits::Limits;
use dlm_core::protocol::{Framing, Request, RequestError, Response, Status, Token};
use dlm_core::stats::Stat;
use dlm_core::time::MonotonicClock;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token as MioToken, Waker};
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::identity::Identities;
use crate::statslog;

/// Most bytes asked of one `read`.
const READ_CHUNK: usize = 64 * 1024;
/// Least room offered to one `read`.
const MIN_READ: usize = 4096;
/// Most answers held behind queued waiters before reading pauses.
const MAX_HELD: usize = 1024;
/// Most answer bytes waiting for a client to read them before reading from
/// it pauses: a client that pipelines without reading cannot make the
/// server buffer without bound.
const MAX_UNSENT: usize = 1 << 20;
/// After an oversized line: how long and how much input to discard before
/// closing, so the client can read the error instead of a reset.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 32 << 20;
/// How long shutdown waits for answers to drain.
const DRAIN: Duration = Duration::from_millis(500);

const LISTENER: MioToken = MioToken(usize::MAX);
const WAKER: MioToken = MioToken(usize::MAX - 1);

/// What the rest of the process asks of the loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Stop accepting, answer what was received, and return.
    Shutdown,
    /// Re-read the identity directory.
    ReloadIdentities,
}

/// An answer waiting for an earlier queued lock request to be answered.
enum Held {
    Waiting(WaiterId, Framing),
    Ready(Vec<u8>),
}

/// A waiter's answer produced while handling another request.
struct Delivery {
    tag: u64,
    waiter: WaiterId,
    line: Vec<u8>,
    grant: Option<(String, Token)>,
}

/// How a connection is ending.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Still serving.
    No,
    /// Write what is ready, then close.
    AfterFlush,
    /// An oversized line was answered: discard input until `until`, then close.
    Linger { until: Instant },
}

// Independent per-connection flags, not a state in disguise.
#[allow(clippy::struct_excessive_bools)]
struct Conn {
    stream: TcpStream,
    /// Slot generation: a waiter's tag names slot and generation, so a
    /// grant never reaches a later connection that reused the slot.
    generation: u32,
    /// Input storage (initialised, reused); `inbuf[..filled]` is input not
    /// yet answered, at most one partial line after each read.
    inbuf: Vec<u8>,
    filled: usize,
    /// Bytes at the start of `inbuf` known to hold no newline.
    scanned: usize,
    /// Answers ready to write, and how much of them was written.
    out: Vec<u8>,
    written: usize,
    /// Answers behind a queued waiter, in order.
    held: VecDeque<Held>,
    /// When the current partial line began.
    partial_since: Option<Instant>,
    /// When a write last could not complete.
    blocked_since: Option<Instant>,
    writable_interest: bool,
    /// Reading stopped because too many answers are held behind a waiter.
    paused: bool,
    /// The write side was shut down (after an overrun's answer went out).
    write_shut: bool,
    /// Whether a deadline of this connection is in the heap (at most one
    /// is, so the heap never outgrows the connections).
    armed: bool,
    closing: Closing,
    discarded: usize,
}

impl Conn {
    fn emit(&mut self, response: &Response<'_>, framing: Framing) {
        // Writing to a Vec cannot fail.
        if self.held.is_empty() {
            let _ = response.write(framing, &mut self.out);
        } else {
            let mut line = Vec::new();
            let _ = response.write(framing, &mut line);
            self.held.push_back(Held::Ready(line));
        }
    }

    /// Puts a waiter's answer in its place; false if it has none.
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
                self.out.extend_from_slice(&line);
            }
        }
        true
    }

    /// Whether the client has closed its end (or reset it), judged without
    /// consuming anything it sent.
    fn peer_closed(&self) -> bool {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.stream).peek(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }

    fn pending_output(&self) -> bool {
        self.written < self.out.len()
    }

    /// Whether enough answers wait (unsent, or held behind a waiter) that
    /// reading more requests must pause.
    fn backlogged(&self) -> bool {
        self.held.len() >= MAX_HELD || self.out.len() - self.written >= MAX_UNSENT
    }
}

/// Encodes a connection slot, its generation and the framing into the
/// engine's waiter tag.
fn tag(slot: usize, generation: u32, framing: Framing) -> u64 {
    (slot as u64) << 33 | u64::from(generation) << 1 | u64::from(framing == Framing::Legacy)
}

#[allow(clippy::cast_possible_truncation)]
fn untag(tag: u64) -> (usize, u32, Framing) {
    let framing = if tag & 1 == 1 {
        Framing::Legacy
    } else {
        Framing::Plain
    };
    ((tag >> 33) as usize, (tag >> 1) as u32, framing)
}

/// A deadline of some connection (idle line, stalled write, linger).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Deadline(std::cmp::Reverse<Instant>, usize, u32);

/// The loop: everything the server serves.
pub(crate) struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    listening: bool,
    commands: mpsc::Receiver<Command>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    generation: u32,
    active: usize,
    max_connections: usize,
    engine: Engine,
    identities: Identities,
    identity_dir: Option<PathBuf>,
    limits: Limits,
    clock: MonotonicClock,
    idle_timeout: Duration,
    busy_poll: Duration,
    stats_every: Duration,
    next_stats: Instant,
    log_file: Option<PathBuf>,
    deadlines: BinaryHeap<Deadline>,
    /// Connections with answers to write this turn.
    dirty: Vec<usize>,
    /// Waiters' answers made while handling a request, to place after it.
    deliveries: Vec<Delivery>,
    /// Grants whose client is gone, to release.
    orphans: Vec<(String, Token)>,
}

/// The waker for a loop, so other threads can hand it a [`Command`].
#[derive(Clone)]
pub(crate) struct Handle {
    waker: std::sync::Arc<Waker>,
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Sends `command` and wakes the loop.
    pub(crate) fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

fn random_key() -> [u64; 2] {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        b.copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    let (a, c) = b.split_at(8);
    [
        u64::from_le_bytes(a.try_into().unwrap_or_default()),
        u64::from_le_bytes(c.try_into().unwrap_or_default()),
    ]
}

/// Fencing tokens start at the wall clock in microseconds, so they keep
/// increasing across restarts without a data directory (as long as the
/// clock does not go back and fewer than a million grants a second are
/// made on average).
fn token_floor() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl EventLoop {
    /// A loop serving `listener` with `settings`.
    pub(crate) fn new(
        listener: std::net::TcpListener,
        settings: &Settings,
    ) -> io::Result<(Self, Handle)> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = std::sync::Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let mut engine = Engine::new(Config {
            limits: settings.limits,
            memory_budget: settings.memory_budget,
            hash_key: random_key(),
            first_token: token_floor(),
            // The clock below truncates to whole milliseconds.
            deadline_slack: dlm_core::time::Ttl::from_millis(1),
        });
        let identities = match &settings.identity_dir {
            Some(dir) => {
                let (ids, warnings) =
                    Identities::load(dir, &mut engine, settings.limits.max_data_anonymous)
                        .map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!("identity directory {}: {e}", dir.display()),
                            )
                        })?;
                for w in warnings {
                    warn!("identity skipped: {w}");
                }
                info!(count = ids.len(), "identities loaded");
                ids
            }
            None => Identities::none(),
        };
        let handle = Handle {
            waker,
            commands: tx,
        };
        Ok((
            Self {
                poll,
                listener,
                listening: true,
                commands: rx,
                conns: Vec::new(),
                free: Vec::new(),
                generation: 0,
                active: 0,
                max_connections: settings.max_connections,
                limits: settings.limits.clamped(),
                engine,
                identities,
                identity_dir: settings.identity_dir.clone(),
                clock: MonotonicClock::new(),
                idle_timeout: settings.idle_timeout,
                busy_poll: settings.busy_poll,
                stats_every: settings.stats_interval,
                next_stats: Instant::now() + settings.stats_interval,
                log_file: settings.log_file.clone(),
                deadlines: BinaryHeap::new(),
                dirty: Vec::new(),
                deliveries: Vec::new(),
                orphans: Vec::new(),
            },
            handle,
        ))
    }

    /// Runs until a [`Command::Shutdown`], then answers what was received
    /// (waiters are told their wait is over) and returns.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut shutdown_at: Option<Instant> = None;
        // After a turn with work, poll without sleeping for `busy_poll`: a
        // request arriving meanwhile is served without the wake-up of a
        // sleeping thread (tens of microseconds in a VM).
        let mut spin_until: Option<Instant> = None;
        loop {
            let mut timeout = self.timeout(shutdown_at);
            if let Some(spin) = spin_until
                && Instant::now() < spin
            {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in &events {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        while let Ok(cmd) = self.commands.try_recv() {
                            match cmd {
                                Command::Shutdown if shutdown_at.is_none() => {
                                    shutdown_at = Some(Instant::now() + DRAIN);
                                    self.begin_shutdown();
                                }
                                Command::Shutdown => {}
                                Command::ReloadIdentities => self.reload_identities(),
                            }
                        }
                    }
                    MioToken(slot) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.readable(slot);
                        }
                        if ev.is_writable() {
                            self.mark_dirty(slot);
                        }
                    }
                }
            }
            if !self.busy_poll.is_zero() && !events.is_empty() {
                spin_until = Some(Instant::now() + self.busy_poll);
            }
            self.timers();
            self.flush_dirty();
            if let Some(at) = shutdown_at
                && (self.active == 0 || Instant::now() >= at)
            {
                self.finish_shutdown();
                return Ok(());
            }
        }
    }

    /// How long `poll` may sleep: until the engine's next deadline, the
    /// next connection deadline, the statistics line, or shutdown's end.
    fn timeout(&self, shutdown_at: Option<Instant>) -> Duration {
        let now = Instant::now();
        let mut at = self.next_stats;
        if let Some(next) = self.engine.next_deadline() {
            at = at.min(self.clock.to_std(next));
        }
        if let Some(Deadline(std::cmp::Reverse(t), _, _)) = self.deadlines.peek() {
            at = at.min(*t);
        }
        if let Some(t) = shutdown_at {
            at = at.min(t);
        }
        // Round up to the next millisecond: epoll counts whole ones, and
        // waking early only to sleep again costs a turn.
        at.saturating_duration_since(now) + Duration::from_micros(999)
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors and the like: stop accepting for
                    // this turn; the listener stays registered and is tried
                    // again when more connections arrive.
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if !self.listening || self.active >= self.max_connections {
            self.engine.stats_mut().incr(Stat::ConnRefused);
            debug!(%peer, "connection refused: server full");
            return;
        }
        let _ = stream.set_nodelay(true);
        let slot = self.free.pop().unwrap_or(self.conns.len());
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, MioToken(slot), Interest::READABLE)
        {
            warn!("cannot register a connection: {e}");
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let conn = Conn {
            stream,
            generation: self.generation,
            inbuf: Vec::new(),
            filled: 0,
            scanned: 0,
            out: Vec::new(),
            written: 0,
            held: VecDeque::new(),
            partial_since: None,
            blocked_since: None,
            writable_interest: false,
            paused: false,
            write_shut: false,
            armed: false,
            closing: Closing::No,
            discarded: 0,
        };
        if slot == self.conns.len() {
            self.conns.push(Some(conn));
        } else {
            self.conns[slot] = Some(conn);
        }
        self.active += 1;
        let stats = self.engine.stats_mut();
        stats.incr(Stat::Connections);
        stats.set(Stat::AConn, self.active as u64);
    }

    fn mark_dirty(&mut self, slot: usize) {
        self.dirty.push(slot);
    }

    /// Reads what the socket holds and answers every complete line.
    fn readable(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if let Closing::Linger { .. } = conn.closing {
            self.discard(slot);
            return;
        }
        if conn.closing != Closing::No {
            return;
        }
        if conn.backlogged() {
            // Too many answers waiting: leave the input in the socket until
            // they go out (`flush` reads on).
            conn.paused = true;
            return;
        }
        let limit = self.limits.max_line;
        let mut eof = false;
        loop {
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            // Never hold more than one line's limit (+1 to detect an
            // overrun); offer at least 4 KiB, more while a long line arrives.
            let room = (limit + 1).saturating_sub(conn.filled).clamp(1, READ_CHUNK);
            let want = room.min(conn.filled.max(MIN_READ));
            if conn.inbuf.len() < conn.filled + want {
                conn.inbuf.resize(conn.filled + want, 0);
            }
            let range = conn.filled..conn.filled + want;
            match conn.stream.read(&mut conn.inbuf[range]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    conn.filled += n;
                    self.process(slot);
                    if n < want {
                        // The socket is drained; edge-triggered epoll will
                        // say when more arrives.
                        break;
                    }
                    match self.conns.get_mut(slot).and_then(Option::as_mut) {
                        Some(c) if c.closing == Closing::No && !c.backlogged() => {}
                        Some(c) if c.closing == Closing::No => {
                            c.paused = true;
                            break;
                        }
                        _ => break,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(slot, "connection error: {e}");
                    self.close(slot, false);
                    return;
                }
            }
        }
        if eof {
            if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut)
                && conn.closing == Closing::No
                && conn.filled > 0
            {
                // A last line without its newline still counts.
                if conn.inbuf.len() <= conn.filled {
                    conn.inbuf.push(0);
                }
                conn.inbuf[conn.filled] = b'\n';
                conn.filled += 1;
                self.process(slot);
            }
            // A client that closed cannot be waiting any more: its waiters
            // leave their queues now, and what is ready is still written.
            self.close(slot, true);
        }
    }

    /// Answers every complete line in a connection's buffer.
    fn process(&mut self, slot: usize) {
        let limit = self.limits.max_line;
        let now = self.clock.now();
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // Take the input out, so handling a line may touch any connection
        // (a grant may go to another one, or to this one).
        let mut inbuf = std::mem::take(&mut conn.inbuf);
        let (filled, generation) = (conn.filled, conn.generation);
        let mut start = 0;
        let mut from = conn.scanned;
        let mut overrun = false;
        while let Some(i) = memchr::memchr(b'\n', &inbuf[from..filled]) {
            let end = from + i;
            if end - start > limit {
                overrun = true;
                break;
            }
            self.handle_line(slot, generation, now, &mut inbuf[start..end]);
            start = end + 1;
            from = start;
            if self.conns.get(slot).and_then(Option::as_ref).is_none() {
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        inbuf.copy_within(start..filled, 0);
        conn.inbuf = inbuf;
        conn.filled = filled - start;
        conn.scanned = conn.filled;
        if overrun || conn.filled > limit {
            self.overrun(slot);
            return;
        }
        if conn.filled == 0 {
            conn.partial_since = None;
            if conn.inbuf.len() > READ_CHUNK {
                conn.inbuf.truncate(MIN_READ);
                conn.inbuf.shrink_to_fit();
            }
        } else if conn.partial_since.is_none() {
            conn.partial_since = Some(Instant::now());
            self.arm(slot);
        }
        self.mark_dirty(slot);
    }

    /// Parses, authenticates and applies one line; its answer goes to the
    /// connection's output, waiters' answers to theirs.
    fn handle_line(
        &mut self,
        slot: usize,
        generation: u32,
        now: dlm_core::time::Instant,
        line: &mut [u8],
    ) {
        let Self {
            engine,
            conns,
            identities,
            limits,
            deliveries,
            ..
        } = self;
        let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        engine.stats_mut().incr(Stat::In);
        let req = match Request::parse(line, limits) {
            Ok(req) => req,
            Err(rejected) => {
                let stats = engine.stats_mut();
                stats.incr(match rejected.error.status() {
                    Status::BadAction => Stat::BadAction,
                    _ => Stat::BadPayload,
                });
                stats.incr(Stat::Out);
                conn.emit(&Response::rejected(rejected.error), rejected.framing);
                return;
            }
        };
        let framing = req.framing;
        let principal = match req.credentials {
            None => Principal::Anonymous,
            Some(c) => {
                if let Some(id) = identities.verify(c.name, c.secret) {
                    Principal::Identity(id)
                } else {
                    let stats = engine.stats_mut();
                    stats.incr(Stat::AuthFailed);
                    stats.incr(Stat::BadPayload);
                    stats.incr(Stat::Out);
                    conn.emit(&Response::rejected(RequestError::AuthFailed), framing);
                    return;
                }
            }
        };
        let mut sink = |ev: Event<'_>| deliveries.push(delivery(&ev));
        let waiter_tag = tag(slot, generation, framing);
        match engine.handle(now, &req.command, principal, waiter_tag, &mut sink) {
            Outcome::Reply(r) => {
                conn.emit(&r, framing);
                engine.stats_mut().incr(Stat::Out);
            }
            Outcome::Queued(w) => conn.held.push_back(Held::Waiting(w, framing)),
        }
        self.place_deliveries();
    }

    /// Puts waiters' answers into their connections; releases grants whose
    /// client has gone.
    fn place_deliveries(&mut self) {
        while !self.deliveries.is_empty() {
            for d in std::mem::take(&mut self.deliveries) {
                let (slot, generation, _) = untag(d.tag);
                let conn = self
                    .conns
                    .get_mut(slot)
                    .and_then(Option::as_mut)
                    .filter(|c| c.generation == generation);
                let placed = match conn {
                    Some(c) if d.grant.is_some() && c.peer_closed() => {
                        // Not written into the void: the lock goes on.
                        debug!(slot, "client left as its wait was granted; releasing");
                        c.closing = Closing::AfterFlush;
                        false
                    }
                    Some(c) => c.fill(d.waiter, d.line),
                    None => false,
                };
                if placed {
                    self.engine.stats_mut().incr(Stat::Out);
                    self.dirty.push(slot);
                } else if let Some(g) = d.grant {
                    self.orphans.push(g);
                }
            }
            self.release_orphans();
        }
    }

    /// Releases grants made to waiters whose client had gone; a release
    /// may hand the lock to the next waiter, whose answer is placed next.
    fn release_orphans(&mut self) {
        let now = self.clock.now();
        for (name, token) in std::mem::take(&mut self.orphans) {
            let Self {
                engine, deliveries, ..
            } = self;
            engine.orphaned(now, &name, token, &mut |ev| deliveries.push(delivery(&ev)));
        }
    }

    /// Expires what is due in the engine, and acts on connection deadlines
    /// and the statistics line.
    fn timers(&mut self) {
        let now_ms = self.clock.now();
        if self.engine.next_deadline().is_some_and(|d| d <= now_ms) {
            let Self {
                engine, deliveries, ..
            } = self;
            engine.advance(now_ms, &mut |ev| deliveries.push(delivery(&ev)));
            self.place_deliveries();
        }
        let now = Instant::now();
        while let Some(Deadline(std::cmp::Reverse(at), slot, generation)) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let (slot, generation) = (*slot, *generation);
            self.deadlines.pop();
            self.deadline(slot, generation, now);
        }
        if now >= self.next_stats {
            self.next_stats = now + self.stats_every;
            self.write_stats();
        }
    }

    /// The earliest deadline a connection is subject to, if any.
    fn next_deadline_of(&self, conn: &Conn) -> Option<Instant> {
        let idle = self.idle_timeout;
        [
            conn.partial_since.map(|t| t + idle),
            conn.blocked_since.map(|t| t + idle),
            match conn.closing {
                Closing::Linger { until } => Some(until),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Puts the connection's next deadline in the heap unless one is there.
    fn arm(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot).and_then(Option::as_ref) else {
            return;
        };
        if conn.armed {
            return;
        }
        if let Some(at) = self.next_deadline_of(conn) {
            let g = conn.generation;
            self.deadlines
                .push(Deadline(std::cmp::Reverse(at), slot, g));
            if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                conn.armed = true;
            }
        }
    }

    /// Acts on a connection deadline, if it still applies.
    fn deadline(&mut self, slot: usize, generation: u32, now: Instant) {
        let Some(conn) = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        conn.armed = false;
        let idle = self.idle_timeout;
        let stalled_line = conn.partial_since.is_some_and(|t| now >= t + idle);
        let stalled_write = conn.blocked_since.is_some_and(|t| now >= t + idle);
        let linger_over = matches!(conn.closing, Closing::Linger { until } if now >= until);
        if stalled_line || stalled_write {
            self.engine.stats_mut().incr(Stat::IdleTimeout);
            debug!(slot, "idle timeout");
            self.close(slot, false);
        } else if linger_over {
            self.close(slot, false);
        } else {
            // Still pending (or pending again): look at its current deadline.
            self.arm(slot);
        }
    }

    /// Writes every connection's ready answers.
    fn flush_dirty(&mut self) {
        // Flushing may read on (a paused connection resumes), which makes
        // more answers: go round until nothing is left to write.
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for slot in dirty {
                self.flush(slot);
            }
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let before = conn.written;
        while conn.pending_output() {
            match conn.stream.write(&conn.out[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(slot, "write failed: {e}");
                    self.close(slot, false);
                    return;
                }
            }
        }
        let blocked = conn.pending_output();
        if conn.written > before {
            // Progress: only a client that reads nothing for the idle
            // timeout is dropped, not one that reads slowly.
            conn.blocked_since = None;
        }
        let arm = blocked && conn.blocked_since.is_none();
        if arm {
            conn.blocked_since = Some(Instant::now());
        }
        if !blocked {
            conn.out.clear();
            conn.written = 0;
            conn.blocked_since = None;
            if conn.out.capacity() > READ_CHUNK {
                conn.out.shrink_to(MIN_READ);
            }
        }
        let closing = conn.closing;
        if arm {
            self.arm(slot);
        }
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if blocked != conn.writable_interest {
            conn.writable_interest = blocked;
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut conn.stream, MioToken(slot), interest);
        }
        if blocked {
            return;
        }
        match closing {
            Closing::AfterFlush => self.close(slot, false),
            Closing::Linger { .. } if !conn.write_shut => {
                // The refusal is out: no more answers, only discarding.
                conn.write_shut = true;
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            }
            Closing::No if conn.paused && !conn.backlogged() => {
                // Input was left in the socket while answers were held.
                conn.paused = false;
                self.readable(slot);
            }
            _ => {}
        }
    }

    /// A line over the limit: answer `BadPayload` in its framing, stop
    /// reading, and linger a moment so the client sees the answer.
    fn overrun(&mut self, slot: usize) {
        let limit = self.limits.max_line;
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let framing = Framing::detect(&conn.inbuf[..conn.filled.min(64)]);
        let stats = self.engine.stats_mut();
        stats.incr(Stat::In);
        stats.incr(Stat::DataOverrun);
        stats.incr(Stat::BadPayload);
        stats.incr(Stat::Out);
        // Answers behind a waiter would never be written now: the waiter
        // is dropped below; the refusal goes out at once.
        conn.held.clear();
        let _ =
            Response::rejected(RequestError::LineTooLong { limit }).write(framing, &mut conn.out);
        conn.inbuf = Vec::new();
        conn.filled = 0;
        conn.scanned = 0;
        conn.partial_since = None;
        let until = Instant::now() + LINGER;
        conn.closing = Closing::Linger { until };
        // The linger's end comes before any idle deadline already armed;
        // a second entry for this connection is harmless and bounded.
        let g = conn.generation;
        self.deadlines
            .push(Deadline(std::cmp::Reverse(until), slot, g));
        self.drop_waiters(slot);
        // Write the refusal (then shut the write side; see `flush`) and
        // discard what the client is still sending.
        self.flush(slot);
        self.discard(slot);
    }

    /// Reads and throws away input of a lingering connection.
    fn discard(&mut self, slot: usize) {
        let mut sink = [0u8; 16 * 1024];
        loop {
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            match conn.stream.read(&mut sink) {
                Ok(0) => break,
                Ok(n) => {
                    conn.discarded += n;
                    if conn.discarded >= LINGER_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(slot, false);
    }

    /// Takes a connection's queued waiters out of their queues.
    fn drop_waiters(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        for h in std::mem::take(&mut conn.held) {
            if let Held::Waiting(w, _) = h {
                self.engine.cancel(w);
            }
        }
    }

    /// Ends a connection. With `flush_first`, answers already ready are
    /// written first (answers behind an unanswered waiter never are).
    fn close(&mut self, slot: usize, flush_first: bool) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if flush_first && conn.pending_output() {
            // Stop reading, keep writing; the waiters still go now.
            conn.closing = Closing::AfterFlush;
            self.drop_waiters(slot);
            self.mark_dirty(slot);
            return;
        }
        self.drop_waiters(slot);
        if let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.free.push(slot);
            self.active -= 1;
            self.engine.stats_mut().set(Stat::AConn, self.active as u64);
        }
    }

    fn begin_shutdown(&mut self) {
        info!("shutting down");
        if self.listening {
            let _ = self.poll.registry().deregister(&mut self.listener);
            self.listening = false;
        }
        // Every queued waiter is told its wait is over, in its place.
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let mut waiting = Vec::new();
            for h in &conn.held {
                if let Held::Waiting(w, framing) = h {
                    waiting.push((*w, *framing));
                }
            }
            for (w, framing) in waiting {
                self.engine.cancel(w);
                let mut line = Vec::new();
                let _ = Response::new(Status::NotOwner).write(framing, &mut line);
                if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                    conn.fill(w, line);
                }
            }
            if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                conn.closing = Closing::AfterFlush;
                self.dirty.push(slot);
            }
        }
    }

    fn finish_shutdown(&mut self) {
        for slot in 0..self.conns.len() {
            self.close(slot, false);
        }
        if self.log_file.is_some() {
            self.write_stats();
        }
    }

    fn reload_identities(&mut self) {
        let Some(dir) = &self.identity_dir else {
            return;
        };
        match Identities::load(dir, &mut self.engine, self.limits.max_data_anonymous) {
            Ok((ids, warnings)) => {
                for w in warnings {
                    warn!("identity skipped: {w}");
                }
                info!(count = ids.len(), "identities loaded");
                self.identities = ids;
            }
            Err(e) => warn!("cannot read identity directory {}: {e}", dir.display()),
        }
    }

    fn write_stats(&mut self) {
        let stats = self.engine.stats();
        self.engine.stats_mut().reset_counters();
        match &self.log_file {
            Some(path) => {
                if let Some(line) = statslog::line(SystemTime::now(), &stats) {
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| f.write_all(line.as_bytes()));
                    if let Err(e) = written {
                        warn!("cannot write statistics to {}: {e}", path.display());
                    }
                }
            }
            None => {
                let mut body = String::new();
                let _ = stats.write_log_line(&mut body);
                info!(target: "dlm::stats", "{body}");
            }
        }
    }
}

/// A waiter's answer, owned, for placing after the engine call.
fn delivery(ev: &Event<'_>) -> Delivery {
    let (_, _, framing) = untag(ev.tag);
    let mut line = Vec::with_capacity(96);
    // Writing to a Vec cannot fail.
    let _ = ev.response.write(framing, &mut line);
    let grant = match (ev.response.status, ev.response.token) {
        (Status::Locked, Some(t)) => Some((ev.name.to_owned(), t)),
        _ => None,
    };
    Delivery {
        tag: ev.tag,
        waiter: ev.waiter,
        line,
        grant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for (slot, generation, framing) in [
            (0, 0, Framing::Plain),
            (7, 3, Framing::Legacy),
            (1 << 30, u32::MAX, Framing::Plain),
        ] {
            assert_eq!(
                untag(tag(slot, generation, framing)),
                (slot, generation, framing)
            );
        }
    }
}
