//! The server without its sockets: the engine, the identities and every
//! connection's state, driven by whoever moves the bytes.
//!
//! ```text
//!   event loop (epoll, sockets)          simulation (tests: simulated sockets)
//!          │ admit / read_space+received / closed_by_peer / output+sent+flushed / timers
//!          ▼
//!   ┌─────────────────────────── Host ────────────────────────────┐
//!   │ conns: LineBuffer ─▶ lines ─▶ dispatch ─▶ Engine ─▶ answers │──▶ Actions: write,
//!   │ deadlines (idle line, stalled write, linger)                │    read, close,
//!   │ connection memory (every buffer counted, one budget)        │    shut write
//!   └─────────────────────────────────────────────────────────────┘
//! ```
//!
//! The host never reads a socket or a clock. Time comes in as the time
//! since the host started; it asks [`Peers`] whether a client is still
//! there before handing it a lock; and it says what the driver must do in
//! [`Actions`]. The event loop (`eventloop.rs`) drives it over TCP, the
//! deterministic simulation in the tests over simulated sockets, so both
//! run exactly the same rules.
//!
//! What a client can make the server hold is bounded: a partial line is
//! at most the line limit; answers unsent or held behind a queued request
//! at most [`MAX_BACKLOG`] bytes (plus the answer that crossed it) or
//! [`MAX_HELD`] answers before the host stops reading from it; and all
//! connections together grow past [`CONN_BASE`] each only while their sum
//! stays within the connection-memory budget.

use std::time::Duration;

use dlm_core::engine::{Config, Engine};
use dlm_core::limits::Limits;
use dlm_core::protocol::{Framing, Message, RequestError, Response, Status};
use dlm_core::stats::Stat;
use dlm_core::time::{Instant, Ttl};
use tracing::debug;

use crate::conn::{Closing, Conn, Next};
use crate::deadlines::Deadlines;
use crate::dispatch::{Delivery, Told};
use crate::identity::Identities;

/// Most answers held behind queued requests before reading pauses.
pub const MAX_HELD: usize = 1024;
/// Most bytes of answers a connection may leave unread (or have held
/// behind a queued request) before the host stops reading its requests.
/// Checked after every line, so one answer may cross it.
pub const MAX_BACKLOG: usize = 256 * 1024;
/// What a connection may hold without drawing on the shared
/// connection-memory budget: a connection is never starved below this.
pub const CONN_BASE: usize = 32 * 1024;
/// After an oversized line: how long and how much input to discard before
/// closing, so the client can read the error instead of a reset.
pub const LINGER: Duration = Duration::from_secs(1);
/// See [`LINGER`].
pub const LINGER_BYTES: usize = 32 << 20;

/// The line a connection gets when the server is full.
pub const FULL: &[u8] = b"{\"Status\":\"NO\",\"Error\":\"server full: too many connections\"}\n";
/// The line a connection gets while the server shuts down.
pub const STOPPING: &[u8] = b"{\"Status\":\"NO\",\"Error\":\"server shutting down\"}\n";

/// How a host is set up.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Protocol limits.
    pub limits: Limits,
    /// Most open connections.
    pub max_connections: usize,
    /// A line must arrive within this of its first byte (or of the
    /// connection opening), and a client must read its answers within it.
    /// A connection idle this long may be evicted when the server is full.
    pub idle_timeout: Duration,
    /// Bytes all connections together may hold beyond [`CONN_BASE`] each.
    pub connection_memory: usize,
    /// The engine's memory budget (locks, data, waiters).
    pub memory_budget: usize,
    /// The key of the engine's name hash (from the OS RNG in a server).
    pub hash_key: [u64; 2],
    /// Fencing tokens start above this.
    pub first_token: u64,
    /// Whether the host clock truncates to whole milliseconds (a real
    /// clock): every deadline then gets one millisecond of slack so that
    /// nothing ends before its TTL.
    pub truncating_clock: bool,
    /// Added to every deadline on top of that for jumps of the host's
    /// clock: a host whose clock adds a bounded step per reading (the
    /// event loop's) sets what its bound needs; zero for an exact clock.
    pub clock_jump_slack: Duration,
    /// How watches are bounded.
    pub watch: crate::watch::WatchLimits,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            limits: Limits::DEFAULT,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(10),
            connection_memory: 256 << 20,
            memory_budget: 1 << 30,
            hash_key: Config::DEFAULT.hash_key,
            first_token: 0,
            truncating_clock: true,
            clock_jump_slack: Duration::ZERO,
            watch: crate::watch::WatchLimits::default(),
        }
    }
}

/// Whether a client is still there, asked before a lock is handed to it.
pub trait Peers {
    /// Whether the client of connection `slot` closed its end (or reset
    /// it), judged without consuming what it sent.
    fn closed(&self, slot: usize) -> bool;
}

/// What the driver must do after a call. Slots are connection numbers.
#[derive(Debug, Default)]
pub struct Actions {
    /// Connections with answers to write ([`Host::output`]).
    pub write: Vec<usize>,
    /// Connections that may read again (input was left unread).
    pub read: Vec<usize>,
    /// Connections whose write side must be shut down.
    pub shutdown_write: Vec<usize>,
    /// Connections the host has dropped: close their sockets.
    pub close: Vec<usize>,
}

impl Actions {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.write.is_empty()
            && self.read.is_empty()
            && self.shutdown_write.is_empty()
            && self.close.is_empty()
    }

    fn clear(&mut self) {
        self.write.clear();
        self.read.clear();
        self.shutdown_write.clear();
        self.close.clear();
    }
}

/// Whether a new connection was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Taken, as connection `slot`.
    Accepted(usize),
    /// Refused: write this line (best effort) and close it.
    Refused(&'static [u8]),
}

/// The server without its sockets. See the [module docs](self).
pub struct Host {
    pub(crate) engine: Engine,
    pub(crate) identities: Identities,
    pub(crate) limits: Limits,
    config: HostConfig,
    pub(crate) conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Slots freed since the driver last took its actions: reused only
    /// after it closed their sockets.
    freed: Vec<usize>,
    generation: u32,
    /// The latest host time any call brought (sessions end at it when a
    /// connection closes outside a timed call).
    clock: Duration,
    active: usize,
    deadlines: Deadlines,
    /// Bytes all connections hold ([`Conn::charge`] summed).
    conn_bytes: usize,
    /// Connections waiting for connection memory to read on.
    starved: Vec<usize>,
    /// Somewhere to throw away a lingering connection's input.
    scratch: Vec<u8>,
    pub(crate) deliveries: Vec<Delivery>,
    pub(crate) orphans: Vec<(String, dlm_core::protocol::Token)>,
    pub(crate) actions: Actions,
    stopping: bool,
    /// What clients were told about holding locks, when asked for.
    pub(crate) journal: Option<Vec<Told>>,
    /// Set when the engine is fed by a replicated log (a cluster member)
    /// instead of directly.
    pub(crate) replica: Option<crate::cluster::Replica>,
    /// Watching connections and their history.
    pub(crate) watches: crate::watch::Watches,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("engine", &self.engine)
            .field("active", &self.active)
            .field("conn_bytes", &self.conn_bytes)
            .finish_non_exhaustive()
    }
}

/// The engine's instant for a host time: whole milliseconds, rounded
/// down (the engine's deadline slack makes up for it).
pub(crate) fn engine_time(now: Duration) -> Instant {
    Instant::from_millis(u64::try_from(now.as_millis()).unwrap_or(u64::MAX))
}

impl Host {
    /// A host with an empty engine and the given identities (already
    /// registered with `engine`, see [`Identities::load`]).
    pub fn new(config: HostConfig, engine: Engine, identities: Identities) -> Self {
        let watch = config.watch;
        Self {
            engine,
            identities,
            limits: config.limits.clamped(),
            config,
            conns: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            generation: 0,
            clock: Duration::ZERO,
            active: 0,
            deadlines: Deadlines::default(),
            conn_bytes: 0,
            starved: Vec::new(),
            scratch: Vec::new(),
            deliveries: Vec::new(),
            orphans: Vec::new(),
            actions: Actions::default(),
            stopping: false,
            journal: None,
            replica: None,
            watches: crate::watch::Watches::new(watch),
        }
    }

    /// Starts the connections' generation numbers at `seed`: a cluster
    /// member's sessions are named by member, slot and generation, so a
    /// restarted member must not name a new connection as one of its
    /// previous run's, whose session may still be live.
    pub fn seed_generations(&mut self, seed: u32) {
        self.generation = seed;
    }

    /// A queued request leaves its queue: at once, or through the log.
    pub(crate) fn cancel_waiter(&mut self, w: dlm_core::engine::WaiterId) {
        match &mut self.replica {
            None => {
                self.engine.cancel(w);
            }
            Some(r) => r.cancel(w),
        }
    }

    /// Starts recording what clients are told about holding locks (every
    /// `Locked` answer to a `Lock`, to a waiter, and every release), for a
    /// checker of mutual exclusion. Off unless asked for.
    pub fn record_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// Takes what was recorded since the last call.
    pub fn take_journal(&mut self) -> Vec<Told> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The engine configuration a host with `config` runs.
    pub fn engine_config(config: &HostConfig) -> Config {
        Config {
            limits: config.limits,
            memory_budget: config.memory_budget,
            hash_key: config.hash_key,
            first_token: config.first_token,
            deadline_slack: Ttl::from_millis(
                u64::from(config.truncating_clock)
                    + u64::try_from(config.clock_jump_slack.as_millis()).unwrap_or(u64::MAX),
            ),
            ..Config::DEFAULT
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for the host's owner to count, reload or reset.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Replaces the identities (after a reload).
    pub fn set_identities(&mut self, identities: Identities) {
        self.identities = identities;
    }

    /// The identities.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// Open connections.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Most open connections (`--max-connections`).
    pub fn max_connections(&self) -> usize {
        self.config.max_connections
    }

    /// Bytes all connections hold, as charged to the connection budget.
    pub fn connection_memory(&self) -> usize {
        self.conn_bytes
    }

    /// The connection-memory budget.
    pub(crate) fn config_connection_memory(&self) -> usize {
        self.config.connection_memory
    }

    /// What [`connection_memory`](Self::connection_memory) should be,
    /// recomputed from every connection's buffers (for checks in tests).
    pub fn connection_memory_recount(&self) -> usize {
        self.conns.iter().flatten().map(Conn::charge).sum()
    }

    /// Lock requests queued in the engine on behalf of open connections
    /// (each must be exactly one of the engine's waiters).
    pub fn queued_requests(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .map(|c| {
                c.held
                    .iter()
                    .filter(|h| matches!(h, crate::conn::Held::Waiting(..)))
                    .count()
            })
            .sum()
    }

    /// Whether connection `slot` is open.
    pub fn is_open(&self, slot: usize) -> bool {
        self.conn(slot).is_some()
    }

    /// Connection deadlines in the heap (stale ones included).
    pub fn deadline_entries(&self) -> usize {
        self.deadlines.len()
    }

    /// Takes what the driver must do now; slots it was told to close may
    /// be reused by the next [`admit`](Self::admit).
    pub fn take_actions(&mut self, into: &mut Actions) {
        // Watchers hear of every change the calls since the last made.
        self.pump_watches();
        into.clear();
        std::mem::swap(into, &mut self.actions);
        self.free.append(&mut self.freed);
    }

    pub(crate) fn conn(&self, slot: usize) -> Option<&Conn> {
        self.conns.get(slot).and_then(Option::as_ref)
    }

    pub(crate) fn conn_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns.get_mut(slot).and_then(Option::as_mut)
    }

    // -- connections ----------------------------------------------------------

    /// A new connection arrived at `now`.
    ///
    /// When the server is full, the connection idle longest (nothing
    /// pending either way, nothing queued, idle at least the idle timeout)
    /// is closed to make room; if none is, the newcomer is refused with a
    /// line saying why.
    pub fn admit(&mut self, now: Duration) -> Admission {
        self.clock = self.clock.max(now);
        if self.stopping {
            self.engine.stats_mut().incr(Stat::ConnRefused);
            return Admission::Refused(STOPPING);
        }
        if self.active >= self.config.max_connections {
            match self.evictable(now) {
                Some(victim) => {
                    debug!(slot = victim, "evicting an idle connection: server full");
                    self.engine.stats_mut().incr(Stat::ConnEvicted);
                    self.close(victim, false);
                }
                None => {
                    self.engine.stats_mut().incr(Stat::ConnRefused);
                    debug!("connection refused: server full");
                    return Admission::Refused(FULL);
                }
            }
        }
        let slot = self.free.pop().unwrap_or(self.conns.len());
        self.generation = self.generation.wrapping_add(1);
        let conn = Conn::new(self.generation, now);
        if slot == self.conns.len() {
            self.conns.push(Some(conn));
        } else {
            self.conns[slot] = Some(conn);
        }
        self.active += 1;
        let stats = self.engine.stats_mut();
        stats.incr(Stat::Connections);
        stats.set(Stat::AConn, self.active as u64);
        self.account(slot);
        self.arm(slot);
        Admission::Accepted(slot)
    }

    /// What connection `slot` travels over: `transport_bytes` its
    /// transport holds (charged to the connection budget), whether
    /// identities are refused on it (plaintext under
    /// `--require-tls-for-identities`).
    pub fn set_transport(&mut self, slot: usize, transport_bytes: usize, identities_refused: bool) {
        if let Some(conn) = self.conn_mut(slot) {
            conn.transport_bytes = transport_bytes;
            conn.identities_refused = identities_refused;
        }
        self.account(slot);
    }

    /// Connection `slot`'s client certificate stands for identity `name`:
    /// its requests with that `Name` need no secret.
    pub fn set_certificate_identity(&mut self, slot: usize, name: Option<String>) {
        if let Some(conn) = self.conn_mut(slot) {
            conn.cert_identity = name.map(String::into_boxed_str);
        }
    }

    /// The idle connection to close for a newcomer, if any.
    fn evictable(&self, now: Duration) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| c.as_ref().map(|c| (slot, c)))
            .filter(|(slot, c)| {
                c.idle()
                    && now.saturating_sub(c.last_active) >= self.config.idle_timeout
                    && !self.watches.watching(*slot, c.generation)
            })
            .min_by_key(|(_, c)| c.last_active)
            .map(|(slot, _)| slot)
    }

    /// Where to read connection `slot`'s next bytes, or `None` if it must
    /// not be read now (answers backlogged, memory short, closing, or the
    /// client already closed its end). When reading resumes, `slot` is in
    /// [`Actions::read`].
    pub fn read_space(&mut self, slot: usize) -> Option<&mut [u8]> {
        let limit = self.limits.max_line;
        let over_budget = self.connection_memory_spent();
        let budget_left = self
            .config
            .connection_memory
            .saturating_sub(self.conn_bytes);
        let conn = self.conns.get_mut(slot).and_then(Option::as_mut)?;
        match conn.closing {
            Closing::Linger { .. } => {
                if self.scratch.len() < 16 * 1024 {
                    self.scratch.resize(16 * 1024, 0);
                }
                return Some(&mut self.scratch);
            }
            Closing::AfterFlush => return None,
            Closing::No => {}
        }
        if conn.paused || conn.starved || conn.peer_eof {
            return None;
        }
        if backlogged(conn, over_budget) {
            conn.paused = true;
            return None;
        }
        let need = conn.input.capacity_needed(limit);
        let growth = need.saturating_sub(conn.input.capacity());
        if growth > 0 && need > CONN_BASE && growth > budget_left {
            conn.starved = true;
            self.starved.push(slot);
            debug!(slot, "reading paused: connection memory budget spent");
            return None;
        }
        let want = conn.input.prepare(limit);
        self.account(slot);
        let conn = self.conns.get_mut(slot).and_then(Option::as_mut)?;
        Some(conn.input.spare(want))
    }

    /// `n` bytes were read into the last [`read_space`](Self::read_space)
    /// of connection `slot`: answer every complete line.
    pub fn received(&mut self, slot: usize, n: usize, now: Duration, peers: &dyn Peers) {
        self.clock = self.clock.max(now);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if let Closing::Linger { .. } = conn.closing {
            conn.discarded += n;
            if conn.discarded >= LINGER_BYTES {
                self.close(slot, false);
            }
            return;
        }
        conn.input.commit(n);
        if n > 0 {
            conn.last_active = now;
        }
        self.process(slot, now, peers);
    }

    /// Answers the complete lines connection `slot` still has buffered
    /// (after reading was paused); the driver calls it before reading on.
    pub fn resume(&mut self, slot: usize, now: Duration, peers: &dyn Peers) {
        self.clock = self.clock.max(now);
        if self
            .conn(slot)
            .is_some_and(|c| c.input.unscanned() || c.peer_eof)
        {
            self.process(slot, now, peers);
        }
    }

    /// The client of connection `slot` closed its end (read returned 0).
    ///
    /// A last line without its newline still counts. A client that closed
    /// cannot be waiting any more: its queued requests leave their queues
    /// now (answered `NotOwner` in their place, in case it still reads),
    /// and the connection closes once its answers are written.
    pub fn closed_by_peer(&mut self, slot: usize, now: Duration, peers: &dyn Peers) {
        self.clock = self.clock.max(now);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if conn.closing != Closing::No || conn.peer_eof {
            return;
        }
        conn.peer_eof = true;
        conn.hung_up = true;
        conn.input.terminate();
        self.end_waits(slot);
        self.process(slot, now, peers);
    }

    /// The client of connection `slot` closed its write side, though not
    /// all it sent may have been read (the host was not reading it, its
    /// answers backed up): its queued requests leave their queues now,
    /// answered `NotOwner` in their places, and any it sends later is
    /// answered so at once. The end of stream itself comes later, through
    /// [`closed_by_peer`](Self::closed_by_peer).
    pub fn hung_up(&mut self, slot: usize) {
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if conn.hung_up || conn.closing != Closing::No {
            return;
        }
        conn.hung_up = true;
        self.end_waits(slot);
    }

    /// Reading or writing connection `slot` failed: drop it now.
    pub fn failed(&mut self, slot: usize) {
        self.close(slot, false);
    }

    /// Connection `slot`'s answers not yet written.
    pub fn output(&self, slot: usize) -> &[u8] {
        match self.conn(slot) {
            Some(c) => &c.out[c.written..],
            None => &[],
        }
    }

    /// `n` bytes of [`output`](Self::output) were written.
    pub fn sent(&mut self, slot: usize, n: usize, now: Duration) {
        if let Some(conn) = self.conn_mut(slot) {
            conn.written = (conn.written + n).min(conn.out.len());
            if n > 0 {
                // Progress: only a client that reads nothing for the idle
                // timeout is dropped, not one that reads slowly.
                conn.blocked_since = None;
                conn.last_active = now;
            }
        }
    }

    /// The driver wrote what it could of connection `slot`'s output.
    /// Returns whether the connection still has output (so the driver
    /// should wait until its socket is writable), or `None` if it is gone.
    pub fn flushed(&mut self, slot: usize, now: Duration) -> Option<bool> {
        let over_budget = self.connection_memory_spent();
        let gets_full = self
            .conn(slot)
            .is_some_and(|c| self.gets_full(slot, c.generation));
        let conn = self.conn_mut(slot)?;
        let blocked = conn.pending_output();
        let arm = blocked && conn.blocked_since.is_none();
        if arm {
            conn.blocked_since = Some(now);
        }
        if !blocked {
            conn.out.clear();
            conn.written = 0;
            conn.blocked_since = None;
            if conn.out.capacity() > crate::conn::READ_CHUNK {
                conn.out = Vec::new();
            }
        }
        let closing = conn.closing;
        let resume = may_resume(conn, over_budget) && !gets_full;
        if resume {
            conn.paused = false;
        }
        let shut = !blocked && matches!(closing, Closing::Linger { .. }) && !conn.write_shut;
        if shut {
            // The refusal is out: no more answers, only discarding.
            conn.write_shut = true;
        }
        self.account(slot);
        if arm {
            self.arm(slot);
        }
        if blocked {
            return Some(true);
        }
        if closing == Closing::AfterFlush {
            self.close(slot, false);
            return None;
        }
        // A watcher replaying history gets more once it has read this.
        self.catch_up(slot);
        if shut {
            self.actions.shutdown_write.push(slot);
        }
        if resume {
            self.actions.read.push(slot);
        }
        Some(false)
    }

    /// Answers every complete line in connection `slot`'s input, until
    /// none is left or its answers back up.
    fn process(&mut self, slot: usize, now: Duration, peers: &dyn Peers) {
        let limit = self.limits.max_line;
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if conn.closing != Closing::No || conn.paused {
            return;
        }
        let generation = conn.generation;
        // Take the input out, so handling a line may touch any connection
        // (a grant may go to another one, or to this one).
        let mut input = std::mem::take(&mut conn.input);
        let mut overrun = false;
        loop {
            let over_budget = self.over_budget(slot);
            let gets_full = self.gets_full(slot, generation);
            let Some(conn) = self.conn_mut(slot) else {
                return;
            };
            if conn.closing != Closing::No {
                break;
            }
            if backlogged(conn, over_budget) || gets_full {
                // Leave the rest for when the answers have gone out.
                conn.paused = true;
                break;
            }
            match input.next_line(limit) {
                Next::Line(range) => {
                    self.handle_line(slot, generation, now, &mut input.bytes_mut()[range], peers);
                }
                Next::Partial => break,
                Next::Overrun => {
                    overrun = true;
                    break;
                }
            }
        }
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        conn.input = input;
        if overrun {
            self.overrun(slot, now);
            return;
        }
        let pending = conn.input.pending();
        let mut arm = false;
        if pending == 0 {
            conn.partial_since = None;
            conn.input.shrink();
        } else if conn.partial_since.is_none() && !conn.paused {
            conn.partial_since = Some(now);
            arm = true;
        }
        let finished = conn.peer_eof && !conn.paused && conn.closing == Closing::No;
        self.actions.write.push(slot);
        self.account(slot);
        if arm {
            self.arm(slot);
        }
        if finished {
            self.close(slot, true);
        }
    }

    /// Whether the connections are over their budget, counting `slot`'s
    /// buffers as they are now.
    fn over_budget(&self, slot: usize) -> bool {
        let current = self
            .conn(slot)
            .map_or(0, |c| c.charge().saturating_sub(c.charged));
        self.conn_bytes + current > self.config.connection_memory
    }

    /// A line over the limit: answer `BadPayload` in its framing, stop
    /// reading, and linger a moment so the client sees the answer.
    fn overrun(&mut self, slot: usize, now: Duration) {
        let limit = self.limits.max_line;
        // Its queued requests leave their queues first: answers held
        // behind them would never be written now.
        let waiters = match self.conn_mut(slot) {
            Some(conn) => conn.take_held(),
            None => return,
        };
        for (w, _) in waiters {
            self.cancel_waiter(w);
        }
        let stats = self.engine.stats_mut();
        stats.incr(Stat::In);
        stats.incr(Stat::DataOverrun);
        stats.incr(Stat::BadPayload);
        stats.incr(Stat::Out);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let head = conn.input.bytes_mut();
        let framing = Framing::detect(&head[..head.len().min(64)]);
        let _ =
            Response::rejected(RequestError::LineTooLong { limit }).write(framing, &mut conn.out);
        conn.input.clear();
        conn.partial_since = None;
        let until = now + LINGER;
        conn.closing = Closing::Linger { until };
        let generation = conn.generation;
        // The linger's end comes before any idle deadline already armed;
        // a second entry for this connection is harmless and bounded.
        self.deadlines.push(until, slot, generation);
        self.actions.write.push(slot);
        self.account(slot);
    }

    /// Answers connection `slot`'s queued requests `NotOwner` in their
    /// places and takes them out of their queues.
    fn end_waits(&mut self, slot: usize) {
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let waiting: Vec<_> = conn
            .held
            .iter()
            .filter_map(|h| match h {
                crate::conn::Held::Waiting(w, f) => Some((*w, *f)),
                crate::conn::Held::Pending(..) | crate::conn::Held::Ready(_) => None,
            })
            .collect();
        for (w, framing) in waiting {
            self.cancel_waiter(w);
            let mut line = Vec::new();
            let _ = Response::new(Status::NotOwner).write(framing, &mut line);
            if let Some(conn) = self.conn_mut(slot) {
                conn.fill(w, line);
            }
        }
        self.actions.write.push(slot);
        self.account(slot);
    }

    /// Ends connection `slot` for a reason its client is told: one last
    /// line, `{"Status":"NO","Error":why}`, after the answers already
    /// written; answers still held behind queued requests are dropped and
    /// those requests leave their queues.
    pub(crate) fn refuse_and_close(&mut self, slot: usize, why: &'static str) {
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let mut r = Response::new(Status::No);
        r.error = Some(Message::Text(why));
        // Writing to a Vec cannot fail.
        let _ = r.write(Framing::Plain, &mut conn.out);
        self.engine.stats_mut().incr(Stat::Out);
        self.close(slot, true);
    }

    /// Ends connection `slot`. Its queued requests leave their queues now.
    /// With `flush_first`, answers already ready are written first.
    pub(crate) fn close(&mut self, slot: usize, flush_first: bool) {
        let Some(generation) = self.conn(slot).map(|c| c.generation) else {
            return;
        };
        self.end_session(slot, generation);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let waiters = conn.take_held();
        if flush_first && conn.pending_output() {
            // Stop reading, keep writing; the waiters still go now.
            conn.closing = Closing::AfterFlush;
            for (w, _) in waiters {
                self.cancel_waiter(w);
            }
            self.actions.write.push(slot);
            self.account(slot);
            return;
        }
        for (w, _) in waiters {
            self.cancel_waiter(w);
        }
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) {
            self.forget_watch(slot);
            self.conn_bytes -= conn.charged;
            self.freed.push(slot);
            self.active -= 1;
            let stats = self.engine.stats_mut();
            stats.set(Stat::AConn, self.active as u64);
            stats.set(Stat::ConnMemory, self.conn_bytes as u64);
            self.actions.close.push(slot);
            self.wake_starved();
        }
    }

    /// Connection `slot` (of `generation`) ends: so does its session, if
    /// it opened one: at once on a single server (the waiters it lets in
    /// are answered at the next [`timers`](Self::timers), due now), or
    /// through the log in a cluster.
    fn end_session(&mut self, slot: usize, generation: u32) {
        let node = self.replica.as_ref().map_or(0, |r| r.node);
        let conn = crate::dispatch::conn_id(slot, generation, node);
        match &mut self.replica {
            Some(r) => r.end_session(conn),
            None => {
                if !self.engine.has_session(conn) {
                    return;
                }
                if let Some(journal) = &mut self.journal {
                    // What its holders were told ends now (or at the end
                    // of a lock-delay), for a checker of exclusion.
                    let at = self.clock;
                    for (name, token, delay) in self.engine.session_grants(conn) {
                        if let Some(l) = self.engine.lock_info(name).filter(|l| l.token == token) {
                            journal.push(Told::SessionEnded {
                                name: name.to_owned(),
                                owner: l.owner.to_owned(),
                                at,
                                until: at + Duration::from_millis(delay.as_millis()),
                            });
                        }
                    }
                }
                let Self {
                    engine,
                    deliveries,
                    clock,
                    ..
                } = self;
                engine.end_session(engine_time(*clock), conn, &mut |ev| {
                    deliveries.push(Delivery::of(&ev));
                });
            }
        }
    }

    /// Brings connection `slot`'s charge up to date.
    pub(crate) fn account(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let charge = conn.charge();
        let before = conn.charged;
        conn.charged = charge;
        self.conn_bytes = self.conn_bytes - before + charge;
        self.engine
            .stats_mut()
            .set(Stat::ConnMemory, self.conn_bytes as u64);
        if charge < before {
            self.wake_starved();
        }
    }

    /// Charges memory held outside the host's own connections (a cluster
    /// follower's relayed clients) to the connection budget: what was
    /// charged for it, `before`, is now `after`.
    pub(crate) fn recharge(&mut self, before: usize, after: usize) {
        self.conn_bytes = self.conn_bytes.saturating_sub(before) + after;
        self.engine
            .stats_mut()
            .set(Stat::ConnMemory, self.conn_bytes as u64);
        if after < before {
            self.wake_starved();
        }
    }

    /// Whether every connection together holds more than the budget.
    pub(crate) fn connection_memory_spent(&self) -> bool {
        self.conn_bytes > self.config.connection_memory
    }

    /// Whether connection `slot` of `generation` (on a cluster leader) has
    /// as many `Get`s in the log as it may.
    fn gets_full(&self, slot: usize, generation: u32) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.gets_full(slot, generation))
    }

    /// Lets connection `slot` read again if only its `Get`s in the log
    /// held it (one of them applied), and nothing else does.
    pub(crate) fn resume_after_gets(&mut self, slot: usize) {
        let over_budget = self.connection_memory_spent();
        let Some(generation) = self.conn(slot).map(|c| c.generation) else {
            return;
        };
        if self.gets_full(slot, generation) {
            return;
        }
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if may_resume(conn, over_budget) {
            conn.paused = false;
            self.actions.read.push(slot);
        }
    }

    /// Lets connections that waited for memory read again, once there is
    /// some.
    fn wake_starved(&mut self) {
        if self.starved.is_empty() || self.conn_bytes >= self.config.connection_memory {
            return;
        }
        for slot in std::mem::take(&mut self.starved) {
            if let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut)
                && conn.starved
            {
                conn.starved = false;
                self.actions.read.push(slot);
            }
        }
    }

    // -- time -------------------------------------------------------------------

    /// When [`timers`](Self::timers) must next run, at the latest.
    pub fn next_deadline(&self) -> Option<Duration> {
        let engine = self
            .engine
            .next_deadline()
            .map(|at| Duration::from_millis(at.as_millis()));
        let next = match (engine, self.deadlines.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.deliveries.is_empty() {
            next
        } else {
            // Answers a closed connection's session left: now.
            Some(self.clock)
        }
    }

    /// Expires what is due in the engine (handing locks to waiters) and
    /// acts on connection deadlines.
    pub fn timers(&mut self, now: Duration, peers: &dyn Peers) {
        self.clock = self.clock.max(now);
        let at = engine_time(now);
        if !self.deliveries.is_empty() {
            // Answers a closed connection's session left (see `close`).
            self.place_deliveries(now, peers);
        }
        // A cluster member's engine moves only with the log's time.
        if self.replica.is_none() && self.engine.next_deadline().is_some_and(|d| d <= at) {
            let Self {
                engine, deliveries, ..
            } = self;
            engine.advance(at, &mut |ev| deliveries.push(Delivery::of(&ev)));
            self.place_deliveries(now, peers);
        }
        while let Some((slot, generation)) = self.deadlines.pop_due(now) {
            self.deadline(slot, generation, now);
        }
        if !self.deliveries.is_empty() {
            // A connection a deadline closed ended its session: the
            // waiters that lets in are answered in this turn, not the next.
            self.place_deliveries(now, peers);
        }
    }

    /// The earliest deadline a connection is subject to, if any.
    fn deadline_of(&self, conn: &Conn) -> Option<Duration> {
        let idle = self.config.idle_timeout;
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
        let Some(conn) = self.conn(slot) else {
            return;
        };
        if conn.armed {
            return;
        }
        if let Some(at) = self.deadline_of(conn) {
            let g = conn.generation;
            self.deadlines.push(at, slot, g);
            if let Some(conn) = self.conn_mut(slot) {
                conn.armed = true;
            }
        }
    }

    /// Acts on a connection deadline, if it still applies.
    fn deadline(&mut self, slot: usize, generation: u32, now: Duration) {
        let idle = self.config.idle_timeout;
        let Some(conn) = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        conn.armed = false;
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

    // -- shutdown ---------------------------------------------------------------

    /// Stops taking connections and requests: every queued request is
    /// told its wait is over (`NotOwner`, in its place) and every
    /// connection closes once its answers are written.
    pub fn begin_shutdown(&mut self) {
        self.stopping = true;
        for slot in 0..self.conns.len() {
            if self.conn(slot).is_none() {
                continue;
            }
            self.end_waits(slot);
            if let Some(conn) = self.conn_mut(slot) {
                conn.closing = Closing::AfterFlush;
                self.actions.write.push(slot);
            }
        }
    }

    /// Drops every connection that is left.
    pub fn finish_shutdown(&mut self) {
        for slot in 0..self.conns.len() {
            self.close(slot, false);
        }
    }
}

/// Whether paused connection `conn` may read again: it is not closing,
/// its answers have all been written, and it is not backlogged.
fn may_resume(conn: &Conn, over_budget: bool) -> bool {
    conn.paused
        && conn.closing == Closing::No
        && !conn.pending_output()
        && !backlogged(conn, over_budget)
}

/// Whether enough answers wait (unsent, or held behind a waiter) that
/// reading more requests must pause. Past the connection budget, anything
/// beyond a connection's base pauses it.
fn backlogged(conn: &Conn, over_budget: bool) -> bool {
    conn.held.len() >= MAX_HELD
        || conn.backlog_bytes() >= MAX_BACKLOG
        || (over_budget && conn.charge() > CONN_BASE)
}
