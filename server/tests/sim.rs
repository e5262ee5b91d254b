//! A deterministic simulation of the server: the [`Host`] (the engine and
//! the connection layer, the same code the epoll loop drives) over
//! simulated sockets on a simulated clock, with random clients that
//! connect, lock, wait, unlock, put, pipeline, stop reading, send garbage
//! or overlong lines, half-close and close at any moment.
//!
//! The simulated driver does what the event loop does, with the kernel's
//! behaviour modelled where it matters: edge-triggered readiness (a
//! socket is read again only when new bytes arrive or the host asks),
//! reads and writes of random sizes, a bounded send buffer (a client that
//! stops reading blocks the server's writes), `peek` that sees unread data
//! before an end of stream, and a reset when a client closes with answers
//! unread.
//!
//! Checked after every step:
//! - **exclusion**: no two owners are told they hold one lock at once
//!   (from the host's journal of every `Locked` it gave, with its TTL from
//!   the instant it decided, measured on the simulated clock to the
//!   microsecond, and of every release);
//! - **no lost grant**: every lock the engine holds was told to somebody
//!   (a grant to a client that had gone is taken back);
//! - **tokens** of a name's new grants strictly increase, and no token is
//!   told for two names;
//! - **semaphores and read/write locks** (`sa`, two permits, and `ra`):
//!   never more holds than permits, never a writer beside anyone, nobody
//!   waiting first in line who could be granted, and every hold the engine
//!   keeps was told to a client (a permit handed to a waiter whose client
//!   had gone is taken back like a lock);
//! - **answers** arrive in request order, each of the kind its request
//!   allows;
//! - **memory**: the connection memory the host accounts equals the sum of
//!   every connection's buffers, and stays within the budget plus a
//!   bounded overshoot per connection;
//! - **the host never writes after shutting its write side**, and its
//!   open connections are exactly the sockets it has not closed;
//! - **watches** (clients that watch every name, a prefix or one name,
//!   from now or resuming after a revision, and that may stop reading):
//!   each watcher's events come in revision order, a watcher of every name
//!   misses no revision, two watchers told of one revision were told the
//!   same change, each name's events make sense in order (a lock granted
//!   only while free and let go only by its holder's token, never more
//!   permits than the semaphore has nor a writer beside anyone, a value
//!   erased or expired only while it exists), no watcher is shown another
//!   owner's `ID` or value, a resume from a revision the history keeps is
//!   served, and a cut-off watcher is told the last revision it was sent.
//!
//! At the end every client leaves and time runs on: every connection must
//! be closed and released, and no waiter left.
//!
//! `cargo test -p dlm-server --test sim` runs `DLM_SIM_SEEDS` seeds (1000 by
//! default, from `DLM_SIM_FIRST`, default 0); a failure prints its seed and
//! the last steps, and `DLM_SIM_SEED=<seed>` replays that seed alone with
//! the whole trace. `make fuzz` runs many more.
// Test code: a panic is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::struct_excessive_bools,
    clippy::match_same_arms
)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use dlm_core::client::Client;
use dlm_core::engine::Engine;
use dlm_core::engine::{Subject, What};
use dlm_core::limits::Limits;
use dlm_core::protocol::{Resource, Revision, Shape, Status, Token, WatchEvent, WatchScope};
use dlm_core::time::Ttl;
use dlm_server::Told;
use dlm_server::host::{Actions, Admission, CONN_BASE, Host, HostConfig, MAX_BACKLOG, Peers};
use dlm_server::identity::Identities;

const NAMES: [&str; 2] = ["la", "lb"];
/// Names used as a semaphore of two permits and as a read/write lock.
const GROUPS: [&str; 2] = ["sa", "ra"];
const SA: Shape = Shape::Semaphore { permits: 2 };
const KEYS: [&str; 2] = ["ka", "kb"];
const OWNERS: [&str; 3] = ["o0", "o1", "o2"];
const MAX_LINE: usize = 600;
const MAX_DATA: usize = 200;
const IDLE: Duration = Duration::from_millis(300);

/// xorshift64*: small, deterministic, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A request a client sent, waiting for its answer.
#[derive(Clone, Copy, Debug)]
enum Sent {
    Lock {
        name: usize,
        ttl: Ttl,
    },
    /// A semaphore permit or a read/write lock (`GROUPS[group]`), or an
    /// extension of one.
    Acquire {
        group: usize,
        shape: Shape,
        ttl: Ttl,
    },
    /// `Session` (opening or keeping alive the connection's session).
    Session,
    /// A `Lock` bound to the connection's session (`BadPayload` if it has
    /// none).
    SessionLock {
        name: usize,
        ttl: Ttl,
    },
    /// `Watch`, resuming after `since` if given; `kept`: the history
    /// held `since` when it was sent (from the first watch's start to a
    /// revision somebody was told, with a history too long to drop it).
    Watch {
        since: Option<u64>,
        kept: bool,
    },
    /// A request on a connection that asked to watch (refused once the
    /// watch started).
    WhileWatching,
    /// `LockAll` of the first `n` of these names (indexes into `NAMES`),
    /// all or none.
    LockAll {
        names: [usize; 2],
        n: usize,
        ttl: Ttl,
    },
    Unlock,
    Test,
    Put,
    Get {
        key: &'static str,
    },
    Erase,
    Garbage,
    Overlong,
}

/// One simulated TCP connection and the client at its end.
#[derive(Debug)]
struct Sock {
    /// The host's slot while the host has the connection.
    slot: Option<usize>,
    owner: usize,
    /// Bytes the client sent that the server has not read.
    c2s: VecDeque<u8>,
    /// Bytes the server wrote that the client has not read, and how many
    /// fit (the send buffer).
    s2c: VecDeque<u8>,
    s2c_cap: usize,
    /// The client shut its write side (or closed): the server reads an
    /// end of stream once `c2s` is drained.
    client_eof: bool,
    /// The client closed with answers unread: the connection was reset.
    reset: bool,
    /// The client closed its socket entirely.
    client_gone: bool,
    /// The server shut its write side / closed the connection.
    server_shut: bool,
    server_closed: bool,
    /// New bytes (or the end of stream) arrived since the driver last
    /// read until it would block: epoll would report the socket.
    readable_edge: bool,
    /// The driver waits for room to write (writable interest).
    wants_write: bool,
    eof_delivered: bool,
    /// The client reads its answers now.
    reading: bool,
    outstanding: VecDeque<Sent>,
    inbox: Vec<u8>,
    /// After an overlong line: answers may stop at its refusal.
    poisoned: bool,
    /// Sent half a line and stopped sending.
    stalled: bool,
    /// When the client closed its socket entirely.
    gone_at: Option<Duration>,
    /// Last token this client got per lock.
    tokens: HashMap<usize, u64>,
    /// Last hold this client got per group, and how it was taken.
    holds: HashMap<usize, (u64, Shape)>,
    /// The watch this connection asked for, if it did.
    watch: Option<Watching>,
}

/// What a watch covers, in the simulation's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Every name starting with this ("": every name).
    Prefix(&'static str),
    /// One name, in both namespaces.
    Name(&'static str),
}

impl Scope {
    fn covers(self, name: &str) -> bool {
        match self {
            Self::Prefix(p) => name.starts_with(p),
            Self::Name(n) => n == name,
        }
    }
}

/// A watching client's view of its stream.
#[derive(Debug)]
struct Watching {
    scope: Scope,
    /// The watch's answer came (`Done`): the lines after it are events.
    started: bool,
    /// Cut off (or refused): no line may follow.
    ended: bool,
    /// The revision of the last event read (or the one the watch started
    /// after).
    last: u64,
    /// What this watcher's events say of each name now (from its first
    /// event of that name on).
    names: HashMap<String, NameState>,
}

/// A name's state as told by one watcher's events. Holds granted before
/// the watch began are not known to it: `holds` is a part of the real
/// holds, which is enough to prove a grant beside a writer, past a
/// semaphore's permits or beside an exclusive holder.
#[derive(Debug, Default)]
struct NameState {
    /// Holds it was told were granted and not yet let go (a writer's, or
    /// an exclusive lock's, marked true).
    holds: BTreeMap<u64, bool>,
    /// The first token it was told was granted: every later grant's is
    /// higher, so a hold let go with a token from then on must have been
    /// told.
    first_grant: Option<u64>,
    /// Whether its value exists, once an event said.
    value: Option<bool>,
}

/// One change as every watcher must be told it (what does not depend on
/// who watches).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    what: What,
    subject: Subject,
    name: String,
    token: Option<u64>,
    data_revision: Option<u64>,
}

impl Sock {
    fn new(owner: usize, cap: usize) -> Self {
        Self {
            slot: None,
            owner,
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            s2c_cap: cap,
            client_eof: false,
            reset: false,
            client_gone: false,
            server_shut: false,
            server_closed: false,
            readable_edge: false,
            wants_write: false,
            eof_delivered: false,
            reading: true,
            outstanding: VecDeque::new(),
            inbox: Vec::new(),
            poisoned: false,
            stalled: false,
            gone_at: None,
            tokens: HashMap::new(),
            holds: HashMap::new(),
            watch: None,
        }
    }
}

/// The sockets as the host's `peek` sees them.
struct Net<'a> {
    socks: &'a [Sock],
    by_slot: &'a HashMap<usize, usize>,
}

impl Peers for Net<'_> {
    fn closed(&self, slot: usize) -> bool {
        let Some(&i) = self.by_slot.get(&slot) else {
            return true;
        };
        let s = &self.socks[i];
        // peek: unread data first; then the end of stream; a reset fails.
        s.reset || (s.c2s.is_empty() && s.client_eof)
    }
}

/// What the journal says each owner was told, per lock.
#[derive(Default)]
struct Exclusion {
    /// name -> owner -> told until (simulated time).
    holders: BTreeMap<String, BTreeMap<String, Duration>>,
    /// (name, token) pairs somebody was told.
    told: HashSet<(String, u64)>,
    /// The last new token told per name, and the name each token was
    /// told for.
    last_new_token: HashMap<String, u64>,
    token_names: HashMap<u64, String>,
}

struct Sim {
    seed: u64,
    rng: Rng,
    host: Host,
    now: Duration,
    socks: Vec<Sock>,
    by_slot: HashMap<usize, usize>,
    actions: Actions,
    dirty: Vec<usize>,
    excl: Exclusion,
    trace: Vec<String>,
    verbose: bool,
    config: HostConfig,
    /// How many owner IDs and lock names this seed's clients use: fewer
    /// make queues of one owner and fights over one lock more likely.
    owners: u64,
    names: u64,
    /// Percent chance that an action closes a client.
    close_rate: u64,
    /// Every change a watcher was told, by revision.
    changes: BTreeMap<u64, Change>,
    /// The revision the first watch started after (the history starts
    /// there) and the highest any answer or event named.
    history_from: Option<u64>,
    latest: u64,
    /// What the watch checks saw, so that a run can tell they ran.
    seen: Seen,
    /// `(key, owner)` of every `Put` sent with `"Readers":"Any"`: only
    /// such an owner's value of that key may be read by another owner.
    shared: HashSet<(&'static str, &'static str)>,
}

/// How often the watch checks had something to check.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    events: u64,
    resumed: u64,
    cut_off: u64,
    compacted: u64,
    /// `LockAll`s answered `Locked`, of two names or more.
    multi: u64,
    /// `Get`s answered with another owner's shared value.
    shared_reads: u64,
}

impl Seen {
    fn add(&mut self, o: Self) {
        self.events += o.events;
        self.resumed += o.resumed;
        self.cut_off += o.cut_off;
        self.compacted += o.compacted;
        self.multi += o.multi;
        self.shared_reads += o.shared_reads;
    }
}

impl Sim {
    fn new(seed: u64, verbose: bool) -> Self {
        Self::with(seed, verbose, |_| {})
    }

    fn with(seed: u64, verbose: bool, tweak: impl FnOnce(&mut HostConfig)) -> Self {
        let mut rng = Rng::new(seed);
        let mut config = HostConfig {
            limits: Limits {
                max_line: MAX_LINE,
                max_data_anonymous: MAX_DATA,
                ..Limits::DEFAULT
            },
            max_connections: 2 + rng.below(6) as usize,
            idle_timeout: IDLE,
            connection_memory: [64 << 10, 256 << 10, 4 << 20][rng.below(3) as usize],
            memory_budget: [2 << 10, 64 << 10][rng.below(2) as usize],
            hash_key: [seed, !seed],
            first_token: 1000,
            truncating_clock: true,
            // The event loop's slack for jumps of its clock, or none.
            clock_jump_slack: Duration::from_millis([0, 200][rng.below(2) as usize]),
            watch: dlm_server::watch::WatchLimits {
                // A short history (resumes refused) or a long one.
                history_events: [4, 10_000][rng.below(2) as usize],
                // A watcher that stops reading is soon cut off, or not.
                budget: [300, 4096, 1 << 20][rng.below(3) as usize],
                ..dlm_server::watch::WatchLimits::default()
            },
        };
        tweak(&mut config);
        let owners = 2 + rng.below(OWNERS.len() as u64 - 1);
        let names = 1 + rng.below(NAMES.len() as u64);
        let close_rate = rng.pick(&[2, 4, 10]);
        let engine = Engine::new(Host::engine_config(&config));
        let mut host = Host::new(config.clone(), engine, Identities::none());
        host.record_journal();
        Self {
            seed,
            rng,
            host,
            now: Duration::ZERO,
            socks: Vec::new(),
            by_slot: HashMap::new(),
            actions: Actions::default(),
            dirty: Vec::new(),
            excl: Exclusion::default(),
            trace: Vec::new(),
            verbose,
            config,
            owners,
            names,
            close_rate,
            changes: BTreeMap::new(),
            history_from: None,
            latest: 0,
            seen: Seen::default(),
            shared: HashSet::new(),
        }
    }

    fn log(&mut self, what: impl FnOnce() -> String) {
        let line = format!("{:>10.3}ms {}", self.now.as_secs_f64() * 1000.0, what());
        if self.verbose {
            eprintln!("{line}");
        }
        self.trace.push(line);
        if self.trace.len() > 400 {
            self.trace.drain(..200);
        }
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        let mut msg = format!(
            "simulation seed {} failed: {what}\nreplay: DLM_SIM_SEED={} cargo test -p dlm-server --test sim -- --nocapture\nlast steps:\n",
            self.seed, self.seed
        );
        for l in self.trace.iter().rev().take(60).rev() {
            let _ = writeln!(msg, "  {l}");
        }
        panic!("{msg}");
    }

    // -- the driver (what eventloop.rs does with real sockets) -----------------

    fn connect(&mut self) {
        let owner = self.rng.below(self.owners) as usize;
        let cap = [256, 2048, 64 * 1024][self.rng.below(3) as usize];
        let mut sock = Sock::new(owner, cap);
        let i = self.socks.len();
        match self.host.admit(self.now) {
            Admission::Accepted(slot) => {
                self.apply_actions();
                assert!(
                    !self.by_slot.contains_key(&slot),
                    "slot {slot} reused before its socket closed"
                );
                sock.slot = Some(slot);
                self.by_slot.insert(slot, i);
                self.log(|| format!("c{i} connects as {} (slot {slot})", OWNERS[owner]));
            }
            Admission::Refused(line) => {
                sock.s2c.extend(line);
                sock.server_closed = true;
                sock.outstanding.push_back(Sent::Garbage);
                self.log(|| format!("c{i} refused"));
            }
        }
        self.socks.push(sock);
    }

    fn readable(&mut self, slot: usize) {
        let Some(&i) = self.by_slot.get(&slot) else {
            return;
        };
        let now = self.now;
        {
            let net = Net {
                socks: &self.socks,
                by_slot: &self.by_slot,
            };
            self.host.resume(slot, now, &net);
        }
        loop {
            if self.socks[i].reset {
                self.host.failed(slot);
                break;
            }
            let chunk = 1 + self.rng.below(700) as usize;
            let Some(space) = self.host.read_space(slot) else {
                break;
            };
            let sock = &mut self.socks[i];
            if sock.c2s.is_empty() {
                if sock.client_eof && !sock.eof_delivered {
                    sock.eof_delivered = true;
                    let net = Net {
                        socks: &self.socks,
                        by_slot: &self.by_slot,
                    };
                    self.host.closed_by_peer(slot, now, &net);
                }
                break;
            }
            let n = chunk.min(space.len()).min(sock.c2s.len());
            for b in space.iter_mut().take(n) {
                *b = sock.c2s.pop_front().unwrap();
            }
            let net = Net {
                socks: &self.socks,
                by_slot: &self.by_slot,
            };
            self.host.received(slot, n, now, &net);
        }
        // epoll's EPOLLRDHUP: the client closed its end, even if the host
        // did not read that far.
        if self.socks[i].client_eof && self.host.is_open(slot) {
            self.host.hung_up(slot);
        }
        if let Some(s) = self.socks.get_mut(i) {
            s.readable_edge = false;
        }
    }

    fn apply_actions(&mut self) {
        loop {
            self.host.take_actions(&mut self.actions);
            if self.actions.is_empty() {
                return;
            }
            for &slot in &self.actions.close {
                if let Some(i) = self.by_slot.remove(&slot) {
                    self.socks[i].server_closed = true;
                    self.socks[i].slot = None;
                }
            }
            for &slot in &self.actions.shutdown_write {
                if let Some(&i) = self.by_slot.get(&slot) {
                    self.socks[i].server_shut = true;
                }
            }
            self.dirty.extend_from_slice(&self.actions.write);
            let reads = std::mem::take(&mut self.actions.read);
            for slot in reads {
                self.readable(slot);
            }
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(&i) = self.by_slot.get(&slot) else {
            return;
        };
        loop {
            let out = self.host.output(slot);
            if out.is_empty() {
                break;
            }
            let sock = &self.socks[i];
            if sock.reset {
                self.host.failed(slot);
                return;
            }
            if sock.server_shut {
                self.fail(&format!("slot {slot} wrote after shutting its write side"));
            }
            let room = sock.s2c_cap.saturating_sub(sock.s2c.len());
            if room == 0 {
                break;
            }
            let n = out.len().min(room).min(1 + self.rng.below(4096) as usize);
            let bytes: Vec<u8> = out[..n].to_vec();
            if self.socks[i].client_gone {
                // The kernel takes it; the peer answers with a reset.
                self.socks[i].reset = true;
                self.socks[i].readable_edge = true;
            } else {
                self.socks[i].s2c.extend(bytes);
            }
            self.host.sent(slot, n, self.now);
        }
        if let Some(blocked) = self.host.flushed(slot, self.now)
            && let Some(&i) = self.by_slot.get(&slot)
        {
            self.socks[i].wants_write = blocked;
        }
    }

    fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for slot in dirty {
                self.flush(slot);
            }
            self.apply_actions();
        }
    }

    /// One turn of the event loop: ready sockets, timers, writes.
    fn server_turn(&mut self) {
        let mut ready: Vec<usize> = self
            .socks
            .iter()
            .filter(|s| s.readable_edge)
            .filter_map(|s| s.slot)
            .collect();
        // epoll reports ready sockets in no particular order.
        for k in (1..ready.len()).rev() {
            let j = self.rng.below(k as u64 + 1) as usize;
            ready.swap(k, j);
        }
        for slot in ready {
            self.readable(slot);
        }
        let writable: Vec<usize> = self
            .socks
            .iter()
            .filter(|s| s.wants_write && s.s2c.len() < s.s2c_cap)
            .filter_map(|s| s.slot)
            .collect();
        self.dirty.extend(writable);
        self.apply_actions();
        if self.host.next_deadline().is_some_and(|d| d <= self.now) {
            let net = Net {
                socks: &self.socks,
                by_slot: &self.by_slot,
            };
            self.host.timers(self.now, &net);
            self.apply_actions();
        }
        self.flush_dirty();
        // A write that failed closed a connection, whose session let
        // waiters in: their answers are due now, and the event loop's next
        // wait is zero, so it places them before anything else happens.
        for _ in 0..4 {
            if self.host.next_deadline().is_none_or(|d| d > self.now) {
                break;
            }
            let net = Net {
                socks: &self.socks,
                by_slot: &self.by_slot,
            };
            self.host.timers(self.now, &net);
            self.apply_actions();
            self.flush_dirty();
        }
    }

    // -- clients ----------------------------------------------------------------

    fn live_clients(&self) -> Vec<usize> {
        (0..self.socks.len())
            .filter(|&i| !self.socks[i].client_gone && !self.socks[i].client_eof)
            .collect()
    }

    /// Clients that may still send.
    fn senders(&self) -> Vec<usize> {
        self.live_clients()
            .into_iter()
            .filter(|&i| !self.socks[i].stalled && !self.socks[i].server_closed)
            .collect()
    }

    fn send(&mut self, i: usize) {
        let sock = &self.socks[i];
        let me = Client::new(OWNERS[sock.owner]);
        let name = self.rng.below(self.names) as usize;
        let key = KEYS[self.rng.below(KEYS.len() as u64) as usize];
        let ttl = Ttl::from_millis(self.rng.pick(&[1, 3, 10, 40, 200, 1000]));
        let mut line = Vec::new();
        if sock.watch.is_some() {
            // A connection that asked to watch takes nothing else.
            line.extend_from_slice(b"{\"Action\":\"Version\"}\n");
            return self.sent(i, &line, Sent::WhileWatching);
        }
        if self.rng.chance(4) {
            let scope = match self.rng.below(4) {
                0 | 1 => Scope::Prefix(""),
                2 => Scope::Prefix(self.rng.pick(&["l", "k", "s"])),
                _ => Scope::Name(self.rng.pick(&[NAMES[name], key, "sa", "ra"])),
            };
            // Resume after a revision a watcher was told (or one never
            // given), or start now.
            let since = match self.rng.below(4) {
                0 => self.changes.keys().next_back().copied(),
                1 if !self.changes.is_empty() => {
                    let k = self.rng.below(self.changes.len() as u64) as usize;
                    self.changes.keys().nth(k).copied()
                }
                2 => Some(self.latest + 1 + self.rng.below(3)),
                _ => None,
            };
            let wire = match scope {
                Scope::Prefix(p) => WatchScope::Prefix(p),
                Scope::Name(n) => WatchScope::Name(Resource(n)),
            };
            me.watch(wire, since.map(Revision))
                .write(&mut line)
                .unwrap();
            self.socks[i].watch = Some(Watching {
                scope,
                started: false,
                ended: false,
                last: 0,
                names: HashMap::new(),
            });
            let kept = self.config.watch.history_events >= 10_000
                && since
                    .is_some_and(|s| self.history_from.is_some_and(|h| s >= h) && s <= self.latest);
            return self.sent(i, &line, Sent::Watch { since, kept });
        }
        let sent = match self.rng.below(30) {
            27..=28 => {
                // One name or both, in either order: a set of two fights
                // single locks and other sets over both names at once.
                let mut names: Vec<usize> = (0..self.names as usize).collect();
                if self.rng.chance(50) {
                    names.reverse();
                }
                names.truncate(1 + self.rng.below(names.len() as u64) as usize);
                let list: Vec<&str> = names.iter().map(|&n| NAMES[n]).collect();
                let wait = self
                    .rng
                    .chance(60)
                    .then(|| Ttl::from_millis(self.rng.pick(&[1, 5, 50, 500, 3000])));
                let set = dlm_core::protocol::Names::new(&list).unwrap();
                me.lock_all(set, ttl, wait).write(&mut line).unwrap();
                let n = names.len();
                names.resize(2, 0);
                Sent::LockAll {
                    names: [names[0], names[1]],
                    n,
                    ttl,
                }
            }
            24 => {
                // Sessions outlive any run: only a closed connection ends
                // them here (the engine's tests cover their TTL).
                me.session(Ttl::from_secs(3543)).write(&mut line).unwrap();
                Sent::Session
            }
            25..=26 => {
                let wait = self
                    .rng
                    .chance(50)
                    .then(|| Ttl::from_millis(self.rng.pick(&[1, 5, 50, 500, 3000])));
                let delay = Ttl::from_millis(self.rng.pick(&[0, 0, 5, 50, 300]));
                let req = match wait {
                    Some(w) => me.lock_wait(NAMES[name], ttl, w),
                    None => me.lock(NAMES[name], ttl),
                };
                req.with_session(dlm_core::protocol::SessionBind { lock_delay: delay })
                    .write(&mut line)
                    .unwrap();
                Sent::SessionLock { name, ttl }
            }
            20..=23 => {
                let group = self.rng.below(GROUPS.len() as u64) as usize;
                let gname = GROUPS[group];
                let shape = match group {
                    0 => SA,
                    _ if self.rng.chance(60) => Shape::Read,
                    _ => Shape::Write,
                };
                let held = sock.holds.get(&group).copied();
                match self.rng.below(4) {
                    0 if held.is_some() => {
                        let (t, shape) = held.unwrap();
                        me.extend_hold(gname, shape, ttl, Token(t))
                            .write(&mut line)
                            .unwrap();
                        Sent::Acquire { group, shape, ttl }
                    }
                    1 => {
                        let token = held.filter(|_| self.rng.chance(60)).map(|h| Token(h.0));
                        me.unlock(gname, token).write(&mut line).unwrap();
                        Sent::Unlock
                    }
                    _ => {
                        let wait = self
                            .rng
                            .chance(60)
                            .then(|| Ttl::from_millis(self.rng.pick(&[1, 5, 50, 500, 3000])));
                        me.acquire(gname, shape, ttl, wait)
                            .write(&mut line)
                            .unwrap();
                        Sent::Acquire { group, shape, ttl }
                    }
                }
            }
            0..=5 => {
                if self.rng.chance(60) {
                    let wait = Ttl::from_millis(self.rng.pick(&[1, 5, 50, 500, 3000]));
                    me.lock_wait(NAMES[name], ttl, wait)
                        .write(&mut line)
                        .unwrap();
                } else if let Some(&t) = sock.tokens.get(&name).filter(|_| self.rng.chance(40)) {
                    me.extend(NAMES[name], ttl, Token(t))
                        .write(&mut line)
                        .unwrap();
                } else {
                    me.lock(NAMES[name], ttl).write(&mut line).unwrap();
                }
                Sent::Lock { name, ttl }
            }
            6..=9 => {
                let token = sock
                    .tokens
                    .get(&name)
                    .copied()
                    .filter(|_| self.rng.chance(50))
                    .map(Token);
                me.unlock(NAMES[name], token).write(&mut line).unwrap();
                Sent::Unlock
            }
            10 => {
                me.test_lock(NAMES[name]).write(&mut line).unwrap();
                Sent::Test
            }
            11..=12 => {
                let size = self.rng.pick(&[1, 20, MAX_DATA]);
                let value = "\u{1}".repeat(size);
                let rev = self.rng.chance(30).then(|| Revision(self.rng.below(3)));
                let readers = if self.rng.chance(30) {
                    self.shared.insert((key, OWNERS[sock.owner]));
                    dlm_core::protocol::Readers::Any
                } else {
                    dlm_core::protocol::Readers::Owner
                };
                me.put_shared(key, ttl, &value, rev, readers)
                    .write(&mut line)
                    .unwrap();
                Sent::Put
            }
            13..=15 => {
                me.get(key).write(&mut line).unwrap();
                Sent::Get { key }
            }
            16 => {
                me.erase(key).write(&mut line).unwrap();
                Sent::Erase
            }
            17..=18 => {
                line.extend_from_slice(self.rng.pick(&[
                    &b"{\"Action\":\"Nope\"}\n"[..],
                    b"not json\n",
                    b"{}\n",
                ]));
                Sent::Garbage
            }
            _ => {
                if self.rng.chance(20) {
                    line.resize(MAX_LINE + 50, b'x');
                    line.push(b'\n');
                    Sent::Overlong
                } else {
                    line.extend_from_slice(b"{\"Action\":\"Version\"}\n");
                    Sent::Garbage
                }
            }
        };
        // A value's escapes can make its line too long: then it is one.
        let sent = if line.len() > MAX_LINE + 1 {
            Sent::Overlong
        } else {
            sent
        };
        self.sent(i, &line, sent);
    }

    /// Client `i` sends `line`, asking `sent`.
    fn sent(&mut self, i: usize, line: &[u8], sent: Sent) {
        let sock = &mut self.socks[i];
        if matches!(sent, Sent::Overlong) {
            sock.poisoned = true;
        }
        sock.c2s.extend(line);
        sock.readable_edge = true;
        sock.outstanding.push_back(sent);
        let text = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
        self.log(|| format!("c{i} sends {sent:?}: {}", text.trim_end()));
    }

    /// A client reads what arrived, and checks each answer against the
    /// request it answers.
    fn client_read(&mut self, i: usize) {
        let take = 1 + self.rng.below(3000) as usize;
        let sock = &mut self.socks[i];
        let n = take.min(sock.s2c.len());
        let bytes: Vec<u8> = sock.s2c.drain(..n).collect();
        sock.inbox.extend(bytes);
        if sock.slot.is_some_and(|_| sock.wants_write) {
            // Room freed: epoll reports the socket writable.
        }
        while let Some(pos) = self.socks[i].inbox.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.socks[i].inbox.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if let Some(w) = &self.socks[i].watch
                && w.ended
            {
                self.fail(&format!("c{i} read a line after its watch ended: {text}"));
            }
            if WatchEvent::is_event(&line) {
                self.watch_event(i, &mut line, &text);
                continue;
            }
            if self.socks[i].watch.as_ref().is_some_and(|w| w.started)
                && text.contains("watch cut off")
            {
                self.cut_off(i, &mut line, &text);
                continue;
            }
            let Some(sent) = self.socks[i].outstanding.pop_front() else {
                self.fail(&format!("c{i} got an answer it did not ask for: {text}"));
            };
            self.log(|| format!("c{i} reads for {sent:?}: {text}"));
            let (_, r) = match dlm_core::protocol::Response::parse(&mut line) {
                Ok(r) => r,
                Err(e) => self.fail(&format!("c{i} cannot parse {text}: {e:?}")),
            };
            let owner = OWNERS[self.socks[i].owner];
            let ok = match (&sent, r.status) {
                (_, Status::BadPayload)
                    if self.socks[i].poisoned
                        && r.error
                            .is_some_and(|m| m.to_string().contains("longer than")) =>
                {
                    // The refusal of the overlong line: nothing after it.
                    self.socks[i].outstanding.clear();
                    true
                }
                (Sent::Lock { name, ttl }, Status::Locked) => {
                    let token = r.token.map(|t| t.0);
                    if r.id != Some(owner) || r.expire != Some(*ttl) || token.is_none() {
                        false
                    } else {
                        self.socks[i].tokens.insert(*name, token.unwrap_or(0));
                        true
                    }
                }
                (Sent::Lock { .. }, Status::NotOwner | Status::No) => true,
                (Sent::SessionLock { name, ttl }, Status::Locked) => {
                    let token = r.token.map(|t| t.0);
                    if r.id != Some(owner) || r.expire != Some(*ttl) || token.is_none() {
                        false
                    } else {
                        self.socks[i].tokens.insert(*name, token.unwrap_or(0));
                        true
                    }
                }
                (Sent::SessionLock { .. }, Status::NotOwner | Status::No | Status::BadPayload) => {
                    true
                }
                (Sent::Session, Status::Done) => r.expire == Some(Ttl::from_secs(3543)),
                (Sent::Session, Status::No) => true,
                (Sent::Acquire { group, shape, ttl }, Status::Locked) => {
                    let token = r.token.map(|t| t.0);
                    if r.id != Some(owner) || r.expire != Some(*ttl) || token.is_none() {
                        false
                    } else {
                        self.socks[i]
                            .holds
                            .insert(*group, (token.unwrap_or(0), *shape));
                        true
                    }
                }
                (Sent::Acquire { .. }, Status::NotOwner | Status::No) => true,
                (Sent::LockAll { names, n, ttl }, Status::Locked) => {
                    let names = &names[..*n];
                    let tokens: Vec<u64> = r
                        .tokens
                        .map(|t| t.iter().map(|t| t.0).collect())
                        .unwrap_or_default();
                    // One token per name, the first repeated: new ones
                    // consecutive, or (a re-lock of names the owner holds,
                    // every one) the ones it was told.
                    let relock = names
                        .iter()
                        .zip(&tokens)
                        .all(|(&n, &t)| self.excl.told.contains(&(NAMES[n].to_owned(), t)));
                    let ok = r.id == Some(owner)
                        && r.expire == Some(*ttl)
                        && tokens.len() == names.len()
                        && r.token.map(|t| t.0) == tokens.first().copied()
                        && (relock || tokens.windows(2).all(|w| w[1] == w[0] + 1));
                    if ok {
                        for (&n, &t) in names.iter().zip(&tokens) {
                            self.socks[i].tokens.insert(n, t);
                        }
                        self.seen.multi += u64::from(names.len() > 1);
                    }
                    ok
                }
                (Sent::LockAll { .. }, Status::NotOwner | Status::No) => true,
                (Sent::Unlock, Status::Unlocked | Status::NotOwner) => true,
                (Sent::Test, Status::Locked) => r.id == Some(owner),
                (Sent::Test, Status::NotOwner | Status::Unlocked) => true,
                (Sent::Put, Status::Done | Status::NotOwner | Status::Conflict | Status::No) => {
                    true
                }
                (Sent::Get { key }, Status::Done) => match r.id {
                    Some(id) if id == owner => true,
                    // Another owner's value: only one it shared.
                    Some(id) => {
                        let shared = self.shared.iter().any(|&(k, o)| k == *key && o == id);
                        self.seen.shared_reads += u64::from(shared);
                        shared
                    }
                    None => false,
                },
                (Sent::Get { .. }, Status::NotFound | Status::NotOwner) => true,
                (Sent::Erase, Status::Done | Status::NotFound | Status::NotOwner) => true,
                (Sent::Watch { since, .. }, Status::Done) => {
                    let Some(rev) = r.revision.map(|v| v.0) else {
                        self.fail(&format!("c{i}: a watch began with no revision: {text}"));
                    };
                    if since.is_some_and(|s| s > rev) {
                        self.fail(&format!("c{i}: resumed after {since:?}, ahead of {rev}"));
                    }
                    self.latest = self.latest.max(rev);
                    self.history_from.get_or_insert(rev);
                    self.seen.resumed += u64::from(since.is_some());
                    let w = self.socks[i].watch.as_mut().unwrap();
                    w.started = true;
                    w.last = since.unwrap_or(rev);
                    true
                }
                (Sent::Watch { since, kept }, Status::Conflict) => {
                    // Refused only for a revision the history does not
                    // hold: before it, or ahead of the server's.
                    let (since, kept) = (*since, *kept);
                    self.seen.compacted += 1;
                    // The connection is an ordinary one again.
                    self.socks[i].watch = None;
                    !kept && since.is_some()
                }
                // A watch sent behind requests still in flight.
                (Sent::Watch { .. }, Status::BadPayload) => {
                    self.socks[i].watch = None;
                    true
                }
                (Sent::WhileWatching, Status::BadPayload) => true,
                // Answered (`Version`) only if the watch was refused: an
                // ordinary connection again.
                (Sent::WhileWatching, _) => {
                    !self.socks[i].watch.as_ref().is_some_and(|w| w.started)
                }
                (Sent::Garbage, _) => true,
                _ => false,
            };
            if !ok {
                self.fail(&format!("c{i}: {sent:?} answered {text}"));
            }
        }
        // Room freed in the send buffer: a blocked writer may go on.
        let sock = &self.socks[i];
        if let Some(slot) = sock.slot
            && sock.wants_write
        {
            self.dirty.push(slot);
        }
    }

    /// Watcher `i` reads an event line: checked against its stream so
    /// far and against what other watchers were told.
    fn watch_event(&mut self, i: usize, line: &mut [u8], text: &str) {
        let ev = match WatchEvent::parse(line) {
            Ok(ev) => ev,
            Err(e) => self.fail(&format!("c{i} cannot parse event {text}: {e:?}")),
        };
        let owner = OWNERS[self.socks[i].owner];
        let Some(w) = self.socks[i].watch.as_ref().filter(|w| w.started) else {
            self.fail(&format!("c{i} got an event before its watch began: {text}"));
        };
        let (scope, last) = (w.scope, w.last);
        self.log(|| format!("c{i} watching {scope:?} reads {text}"));
        if ev.revision <= last {
            self.fail(&format!("c{i}: event {} after {last}", ev.revision));
        }
        if scope == Scope::Prefix("") && ev.revision != last + 1 {
            self.fail(&format!(
                "c{i} watches every name but was told {} after {last}",
                ev.revision
            ));
        }
        if !scope.covers(ev.name) {
            self.fail(&format!("c{i} watching {scope:?} told of {}", ev.name));
        }
        // Only the owner's own watchers see its ID and value (no
        // identities here: the ID alone decides), and anyone those of a
        // value its owner shared with any reader.
        let shared = |o: &str| {
            ev.subject == Subject::Data
                && self.shared.iter().any(|&(k, so)| k == ev.name && so == o)
        };
        if ev.owner.is_some_and(|o| o != owner && !shared(o))
            || (ev.value.is_some() && ev.owner.is_none())
        {
            self.fail(&format!("c{i} ({owner}) was shown another's entry: {text}"));
        }
        let change = Change {
            what: ev.what,
            subject: ev.subject,
            name: ev.name.to_owned(),
            token: ev.token.map(|t| t.0),
            data_revision: ev.data_revision.map(|r| r.0),
        };
        match self.changes.get(&ev.revision) {
            Some(c) if *c != change => {
                let msg = format!(
                    "revision {}: c{i} told {change:?}, another watcher {c:?}",
                    ev.revision
                );
                self.fail(&msg);
            }
            Some(_) => {}
            None => {
                self.changes.insert(ev.revision, change.clone());
            }
        }
        self.latest = self.latest.max(ev.revision);
        self.seen.events += 1;
        let w = self.socks[i].watch.as_mut().unwrap();
        w.last = ev.revision;
        let st = w.names.entry(change.name.clone()).or_default();
        if let Some(broken) = follow(st, &change) {
            self.fail(&format!("c{i}'s events of {}: {broken}", change.name));
        }
    }

    /// Watcher `i` is cut off: told the revision it was sent last.
    fn cut_off(&mut self, i: usize, line: &mut [u8], text: &str) {
        let r = match dlm_core::protocol::Response::parse(line) {
            Ok((_, r)) => r,
            Err(e) => self.fail(&format!("c{i} cannot parse {text}: {e:?}")),
        };
        let w = self.socks[i].watch.as_mut().unwrap();
        w.ended = true;
        let (scope, last) = (w.scope, w.last);
        self.seen.cut_off += 1;
        let told = r.revision.map(|v| v.0);
        self.log(|| format!("c{i} watching {scope:?} is cut off: {text}"));
        let ok = r.status == Status::No
            && told.is_some_and(|t| {
                if scope == Scope::Prefix("") {
                    t == last
                } else {
                    t >= last
                }
            });
        if !ok {
            self.fail(&format!("c{i} read {last} last, then: {text}"));
        }
    }

    fn client_close(&mut self, i: usize, half: bool) {
        let sock = &mut self.socks[i];
        if half {
            sock.client_eof = true;
            sock.readable_edge = true;
            self.log(|| format!("c{i} shuts its write side"));
        } else {
            sock.client_eof = true;
            sock.client_gone = true;
            sock.gone_at = Some(self.now);
            sock.reading = false;
            // Closing with answers unread resets the connection.
            if !sock.s2c.is_empty() {
                sock.reset = true;
            }
            sock.readable_edge = true;
            self.log(|| format!("c{i} closes"));
        }
    }

    // -- checks -------------------------------------------------------------------

    /// A grant of `name` with `token` was told: a new one must be above
    /// every token told for that name before, and no token is told for
    /// two names. (Across names, grants may be told in another order than
    /// made: a session's end hands its locks to waiters whose answers are
    /// placed at the end of the loop's turn, after requests read in it.)
    fn new_token(&mut self, name: &str, token: u64) {
        if !self.excl.told.insert((name.to_owned(), token)) {
            return;
        }
        if let Some(other) = self.excl.token_names.insert(token, name.to_owned()) {
            self.fail(&format!("token {token} told for {name} and for {other}"));
        }
        let last = self.excl.last_new_token.entry(name.to_owned()).or_default();
        if token <= *last {
            let msg = format!("{name}: new token {token} not above {last}");
            self.fail(&msg);
        }
        *last = token;
    }

    fn check(&mut self) {
        if self.verbose {
            let table: Vec<String> = self
                .host
                .engine()
                .locks()
                .map(|l| {
                    format!(
                        "{}:{}#{}({}ms,{}w)",
                        l.name,
                        l.owner,
                        l.token.0,
                        l.remaining.as_millis(),
                        l.waiters
                    )
                })
                .collect();
            self.log(|| format!("engine: {table:?}"));
        }
        // Exclusion, from the journal.
        for told in self.host.take_journal() {
            match told {
                Told::Locked {
                    name,
                    owner,
                    token,
                    ttl,
                    at,
                    slot,
                } => {
                    let until = at + Duration::from_millis(ttl.as_millis());
                    if GROUPS.contains(&name.as_str()) {
                        // Several hold a group at once: judged from the
                        // engine below; here only its tokens.
                        self.new_token(&name, token);
                        self.log(|| {
                            format!("journal: {owner} holds {name} #{token} until {until:?}")
                        });
                        continue;
                    }
                    let holders = self.excl.holders.entry(name.clone()).or_default();
                    holders.retain(|_, end| *end > at);
                    if let Some((other, end)) = holders.iter().find(|(o, _)| **o != owner) {
                        let msg = format!(
                            "{name}: {owner} told it holds token {token} at {at:?} (slot {slot}) while {other} was told until {end:?}"
                        );
                        self.fail(&msg);
                    }
                    // The latest answer sets the owner's deadline (a
                    // re-lock may shorten it, for all its connections).
                    holders.insert(owner.clone(), until);
                    self.new_token(&name, token);
                    self.log(|| format!("journal: {owner} holds {name} #{token} until {until:?}"));
                }
                Told::SessionEnded {
                    name,
                    owner,
                    at,
                    until,
                } => {
                    // Its holder's grant ends with the session; with a
                    // lock-delay, nobody else may have it until then.
                    if let Some(h) = self.excl.holders.get_mut(&name)
                        && h.get(&owner).is_some_and(|end| *end > at)
                    {
                        h.insert(owner.clone(), until);
                    }
                    self.log(|| format!("journal: {owner}'s session let {name} go at {at:?}, closed until {until:?}"));
                }
                Told::Released { name, owner, at } => {
                    if let Some(h) = self.excl.holders.get_mut(&name) {
                        h.remove(&owner);
                    }
                    self.log(|| format!("journal: {owner} released {name} at {at:?}"));
                }
            }
        }
        // No lost grant.
        let lost: Vec<String> = self
            .host
            .engine()
            .locks()
            .filter(|l| !self.excl.told.contains(&(l.name.to_owned(), l.token.0)))
            .map(|l| {
                format!(
                    "{} #{} held by {} told to nobody",
                    l.name, l.token.0, l.owner
                )
            })
            .collect();
        if let Some(l) = lost.first() {
            self.fail(l);
        }
        // Semaphores and read/write locks, from the engine.
        let engine = self.host.engine();
        let pump_due = engine
            .next_group_deadline()
            .is_some_and(|d| d <= engine.now());
        let mut broken = None;
        for g in GROUPS {
            let holds: Vec<_> = engine.holds(g).collect();
            let writers = holds.iter().filter(|h| h.write).count();
            if g == "sa" && (holds.len() > 2 || writers > 0) {
                broken = Some(format!("{g}: {} holds of 2 permits", holds.len()));
            }
            if writers > 0 && holds.len() > 1 {
                broken = Some(format!("{g}: a writer beside {} others", holds.len() - 1));
            }
            if let Some(h) = holds
                .iter()
                .find(|h| !self.excl.told.contains(&(g.to_owned(), h.token.0)))
            {
                broken = Some(format!(
                    "{g} #{} held by {} told to nobody",
                    h.token.0, h.owner
                ));
            }
            if let Some((w, write)) = engine.group_queue(g).next() {
                let fits = match g {
                    "sa" => holds.len() < 2,
                    _ if write => holds.is_empty(),
                    _ => writers == 0,
                };
                if fits && !pump_due {
                    broken = Some(format!(
                        "{g}: waiter {} first in line could be granted",
                        w.get()
                    ));
                }
            }
        }
        if let Some(b) = broken {
            self.fail(&b);
        }
        // Memory.
        let accounted = self.host.connection_memory();
        let actual = self.host.connection_memory_recount();
        if accounted != actual {
            self.fail(&format!(
                "connection memory accounted {accounted}, held {actual}"
            ));
        }
        let per_conn = CONN_BASE + MAX_BACKLOG + 2 * MAX_LINE + 64 * 1024;
        let bound = self.config.connection_memory + self.host.active() * per_conn;
        if actual > bound {
            self.fail(&format!(
                "connection memory {actual} over its bound {bound}"
            ));
        }
        // A session lives no longer than its connection.
        let sessions = self.host.engine().session_count();
        if sessions > self.host.active() {
            self.fail(&format!(
                "{sessions} sessions for {} connections",
                self.host.active()
            ));
        }
        // Every waiter in the engine is a request of an open connection.
        let waiters = self.host.engine().waiter_count();
        let queued = self.host.queued_requests();
        if waiters != queued {
            self.fail(&format!(
                "engine has {waiters} waiters, connections {queued}"
            ));
        }
        // A client that left is let go promptly (at most a linger or an
        // idle timeout later, and a few turns).
        let late = Duration::from_millis(1500);
        if let Some((i, _)) = self
            .socks
            .iter()
            .enumerate()
            .find(|(_, s)| s.slot.is_some() && s.gone_at.is_some_and(|t| self.now > t + late))
        {
            self.fail(&format!("c{i} left but its connection is still open"));
        }
        // Connections.
        let open = self.socks.iter().filter(|s| s.slot.is_some()).count();
        if open != self.host.active() {
            let msg = format!(
                "host has {} connections, sockets {open}",
                self.host.active()
            );
            self.fail(&msg);
        }
        if self.host.deadline_entries() > 2 * self.host.active() + 64 {
            let msg = format!(
                "{} deadline entries for {} connections",
                self.host.deadline_entries(),
                self.host.active()
            );
            self.fail(&msg);
        }
    }

    // -- the run ----------------------------------------------------------------------

    fn step(&mut self) {
        // A few things happen between two turns of the loop.
        for _ in 0..=self.rng.below(3) {
            self.act();
        }
        // Clients that read, read some.
        for i in 0..self.socks.len() {
            if self.socks[i].reading && !self.socks[i].s2c.is_empty() && self.rng.chance(70) {
                self.client_read(i);
            }
        }
        self.server_turn();
        self.check();
    }

    fn act(&mut self) {
        let live = self.live_clients();
        let senders = self.senders();
        if !live.is_empty() && self.rng.chance(self.close_rate) {
            // Often a client with a request in flight: a waiter that
            // gives up, just as the lock may come free.
            let waiting: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| !self.socks[i].outstanding.is_empty())
                .collect();
            let i = if waiting.is_empty() {
                self.rng.pick(&live)
            } else {
                self.rng.pick(&waiting)
            };
            let half = self.rng.chance(30);
            self.client_close(i, half);
            return;
        }
        match self.rng.below(100) {
            0..=7 if live.len() < 10 => self.connect(),
            0..=44 if !senders.is_empty() => {
                let i = self.rng.pick(&senders);
                let burst = if self.rng.chance(15) {
                    1 + self.rng.below(8)
                } else {
                    1
                };
                for _ in 0..burst {
                    self.send(i);
                }
            }
            45..=49 if !live.is_empty() => {
                let i = self.rng.pick(&live);
                let s = &mut self.socks[i];
                s.reading = !s.reading;
                let reading = s.reading;
                self.log(|| format!("c{i} {} reading", if reading { "resumes" } else { "stops" }));
            }
            50..=53 if !live.is_empty() => {
                let i = self.rng.pick(&live);
                let half = self.rng.chance(30);
                self.client_close(i, half);
            }
            54..=56 if !senders.is_empty() => {
                // A partial line, and nothing more.
                let i = self.rng.pick(&senders);
                self.socks[i].c2s.extend(b"{\"Action\":\"Lo");
                self.socks[i].readable_edge = true;
                self.socks[i].stalled = true;
                // Answered (as malformed) only if the client closes its
                // end before the idle timeout closes the connection.
                self.socks[i].outstanding.push_back(Sent::Garbage);
                self.log(|| format!("c{i} sends half a line"));
            }
            57..=74 => {
                let dt = match self.rng.below(10) {
                    0..=5 => Duration::from_micros(self.rng.below(2000)),
                    6..=8 => Duration::from_micros(self.rng.below(60_000)),
                    _ => {
                        self.host
                            .next_deadline()
                            .map_or(Duration::from_millis(5), |d| d.saturating_sub(self.now))
                            + Duration::from_micros(self.rng.below(1500))
                    }
                };
                self.now += dt;
            }
            _ => {}
        }
    }

    /// Everyone leaves; time runs on until every connection is gone.
    fn finish(&mut self) {
        for i in self.live_clients() {
            let half = self.rng.chance(20);
            self.client_close(i, half);
        }
        for _ in 0..2000 {
            for i in 0..self.socks.len() {
                if !self.socks[i].client_gone && !self.socks[i].s2c.is_empty() {
                    self.client_read(i);
                }
            }
            self.server_turn();
            self.check();
            if self.host.active() == 0 && self.host.engine().waiter_count() == 0 {
                return;
            }
            self.now += Duration::from_millis(20);
        }
        let open: Vec<String> = self
            .socks
            .iter()
            .enumerate()
            .filter(|(_, s)| s.slot.is_some())
            .map(|(i, s)| format!("c{i} {s:?}"))
            .collect();
        let msg = format!(
            "connections still open after everyone left: {open:?}; waiters {}",
            self.host.engine().waiter_count()
        );
        self.fail(&msg);
    }
}

/// Applies `c` to what one watcher's events say of its name; why they
/// make no sense, if they do not.
fn follow(st: &mut NameState, c: &Change) -> Option<String> {
    let token = c.token.unwrap_or(0);
    match (c.subject, c.what) {
        (Subject::Data, What::Put) => st.value = Some(true),
        (Subject::Data, What::Erased | What::Expired) => {
            if st.value == Some(false) {
                return Some(format!("{:?} with no value", c.what));
            }
            st.value = Some(false);
        }
        (Subject::Data, What::Granted | What::Released) => {
            return Some(format!("{:?} of a value", c.what));
        }
        (_, What::Put | What::Erased) => return Some(format!("{:?} of a lock", c.what)),
        (subject, What::Granted) => {
            if c.token.is_none() {
                return Some("a grant without a token".into());
            }
            let write = matches!(subject, Subject::Lock | Subject::ReadWrite { write: true });
            let full = match subject {
                Subject::Semaphore(n) => st.holds.len() >= n as usize,
                _ if write => !st.holds.is_empty(),
                _ => st.holds.values().any(|w| *w),
            };
            if full {
                return Some(format!("#{token} granted beside {:?}", st.holds));
            }
            st.holds.insert(token, write);
            st.first_grant.get_or_insert(token);
        }
        (_, What::Released | What::Expired) => {
            if st.holds.remove(&token).is_none() && st.first_grant.is_some_and(|f| token >= f) {
                return Some(format!("#{token} let go but never granted"));
            }
        }
    }
    None
}

fn run(seed: u64, steps: usize, verbose: bool) -> Seen {
    let mut sim = Sim::new(seed, verbose);
    for _ in 0..steps {
        sim.step();
    }
    sim.finish();
    sim.seen
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_clients_never_break_the_rules() {
    if let Ok(seed) = std::env::var("DLM_SIM_SEED") {
        run(
            seed.parse().expect("DLM_SIM_SEED is a number"),
            env_u64("DLM_SIM_STEPS", 600) as usize,
            true,
        );
        return;
    }
    let first = env_u64("DLM_SIM_FIRST", 0);
    let seeds = env_u64("DLM_SIM_SEEDS", 1000);
    let steps = env_u64("DLM_SIM_STEPS", 600) as usize;
    let mut seen = Seen::default();
    for seed in first..first + seeds {
        seen.add(run(seed, steps, false));
    }
    // The watch checks had work: events, resumes, cut-offs and refused
    // resumes all came up (with the default number of seeds), and so did
    // multi-locks of two names and reads of others' shared values.
    eprintln!("seen: {seen:?}");
    if seeds >= 1000 {
        assert!(
            seen.events > 1000 && seen.resumed > 10 && seen.cut_off > 10 && seen.compacted > 10,
            "the runs hardly exercised watches: {seen:?}"
        );
        assert!(
            seen.multi > 100 && seen.shared_reads > 10,
            "the runs hardly exercised multi-locks or shared values: {seen:?}"
        );
    }
}

/// The double grant of issue 10, step by step: a waiter whose client has
/// gone is granted, a waiter of the same owner behind it is told `Locked`,
/// and a third owner must not get the lock.
#[test]
fn orphaned_grant_with_a_same_owner_waiter_behind_it() {
    let mut sim = Sim::with(7, false, |c| {
        c.max_connections = 8;
        c.memory_budget = 1 << 20;
    });
    let me = |o: &'static str| Client::new(o);
    for _ in 0..4 {
        sim.connect();
    }
    // c0 = holder, c1 = W (will vanish), c2 = W, c3 = Z.
    for (i, owner) in [0, 1, 1, 2].into_iter().enumerate() {
        sim.socks[i].owner = owner;
    }
    let line = |r: dlm_core::protocol::Request<'_>| {
        let mut v = Vec::new();
        r.write(&mut v).unwrap();
        v
    };
    let ttl = Ttl::from_secs(30);
    let push = |sim: &mut Sim, i: usize, bytes: Vec<u8>, sent: Sent| {
        sim.socks[i].c2s.extend(bytes);
        sim.socks[i].readable_edge = true;
        sim.socks[i].outstanding.push_back(sent);
        sim.server_turn();
        sim.check();
    };
    push(
        &mut sim,
        0,
        line(me("o0").lock("g", ttl)),
        Sent::Lock { name: 9, ttl },
    );
    for (i, o) in [(1, "o1"), (2, "o1"), (3, "o2")] {
        push(
            &mut sim,
            i,
            line(me(o).lock_wait("g", ttl, ttl)),
            Sent::Lock { name: 9, ttl },
        );
    }
    assert_eq!(sim.host.engine().waiter_count(), 3);
    // c1's client goes away without the host reading its end yet.
    sim.socks[1].client_eof = true;
    sim.socks[1].client_gone = true;
    push(&mut sim, 0, line(me("o0").unlock("g", None)), Sent::Unlock);
    let info = sim.host.engine().lock_info("g").unwrap();
    assert_eq!(
        info.owner, "o1",
        "the lock stays with the owner that was told"
    );
    assert_eq!(info.waiters, 1, "o2 still waits");
    let token = info.token.0;
    sim.client_read(2);
    assert_eq!(sim.socks[2].tokens.get(&9), Some(&token));
}

/// Issue 10's class of bug with a semaphore, step by step: a permit
/// handed to a waiter whose client has gone is taken back and goes to the
/// next waiter, so no permit is lost and none is doubled.
#[test]
fn an_orphaned_permit_goes_to_the_next_waiter() {
    let mut sim = Sim::with(11, false, |c| {
        c.max_connections = 8;
        c.memory_budget = 1 << 20;
    });
    for _ in 0..3 {
        sim.connect();
    }
    // c0 = holder of both permits, c1 = X (will vanish), c2 = Y.
    for (i, owner) in [0, 1, 2].into_iter().enumerate() {
        sim.socks[i].owner = owner;
    }
    let line = |r: dlm_core::protocol::Request<'_>| {
        let mut v = Vec::new();
        r.write(&mut v).unwrap();
        v
    };
    let ttl = Ttl::from_secs(30);
    let push = |sim: &mut Sim, i: usize, bytes: Vec<u8>, sent: Sent| {
        sim.socks[i].c2s.extend(bytes);
        sim.socks[i].readable_edge = true;
        sim.socks[i].outstanding.push_back(sent);
        sim.server_turn();
        sim.check();
    };
    let acquire = Sent::Acquire {
        group: 0,
        shape: SA,
        ttl,
    };
    for _ in 0..2 {
        push(
            &mut sim,
            0,
            line(Client::new("o0").acquire("sa", SA, ttl, None)),
            acquire,
        );
    }
    sim.client_read(0);
    let (first, _) = sim.socks[0].holds[&0];
    for (i, o) in [(1, "o1"), (2, "o2")] {
        push(
            &mut sim,
            i,
            line(Client::new(o).acquire("sa", SA, ttl, Some(ttl))),
            acquire,
        );
    }
    assert_eq!(sim.host.engine().waiter_count(), 2);
    // X's client goes away without the host reading its end yet.
    sim.socks[1].client_eof = true;
    sim.socks[1].client_gone = true;
    push(
        &mut sim,
        0,
        line(Client::new("o0").unlock("sa", Some(Token(first)))),
        Sent::Unlock,
    );
    let owners: Vec<String> = sim
        .host
        .engine()
        .holds("sa")
        .map(|h| h.owner.to_owned())
        .collect();
    assert_eq!(owners, ["o0", "o2"], "X's permit went on to Y");
    assert_eq!(
        sim.host
            .engine()
            .stats()
            .get(dlm_core::stats::Stat::WaitOrphaned),
        1
    );
    sim.client_read(2);
    assert!(sim.socks[2].holds.contains_key(&0), "Y was told");
}

/// A line read after a grant fell due to its own connection's waiter,
/// whose client has left: the grant is taken back and the connection
/// closes once its written answers are out, the waiter's answer dropped.
/// The line must not be answered then: its answer would stand where the
/// waiter's belonged (found by seed 3402 once the simulation sent
/// multi-locks).
#[test]
fn a_line_behind_a_taken_back_grant_is_not_answered() {
    let mut sim = Sim::with(13, false, |c| {
        c.max_connections = 8;
        c.memory_budget = 1 << 20;
        c.clock_jump_slack = Duration::ZERO;
    });
    for _ in 0..2 {
        sim.connect();
    }
    sim.socks[0].owner = 0;
    sim.socks[1].owner = 1;
    let line = |r: dlm_core::protocol::Request<'_>| {
        let mut v = Vec::new();
        r.write(&mut v).unwrap();
        v
    };
    let push = |sim: &mut Sim, i: usize, bytes: Vec<u8>, sent: Sent| {
        sim.socks[i].c2s.extend(bytes);
        sim.socks[i].readable_edge = true;
        sim.socks[i].outstanding.push_back(sent);
        sim.server_turn();
        sim.check();
    };
    let short = Ttl::from_millis(20);
    push(
        &mut sim,
        0,
        line(Client::new("o0").lock("la", short)),
        Sent::Lock {
            name: 0,
            ttl: short,
        },
    );
    // The waiter's client reads nothing for now: an answer stays unsent.
    let cap = sim.socks[1].s2c_cap;
    sim.socks[1].s2c_cap = 0;
    let version = b"{\"Action\":\"Version\"}\n".to_vec();
    push(&mut sim, 1, version.clone(), Sent::Garbage);
    let ttl = Ttl::from_secs(30);
    push(
        &mut sim,
        1,
        line(Client::new("o1").lock_wait("la", ttl, ttl)),
        Sent::Lock { name: 0, ttl },
    );
    assert_eq!(sim.host.engine().waiter_count(), 1);
    // The holder's TTL runs out; the waiter's client sends one more line
    // and shuts its write side, before any timer of the host runs.
    sim.now += Duration::from_millis(50);
    sim.socks[1].client_eof = true;
    push(&mut sim, 1, version, Sent::Garbage);
    assert_eq!(
        sim.host
            .engine()
            .stats()
            .get(dlm_core::stats::Stat::WaitOrphaned),
        1,
        "the grant was taken back"
    );
    assert!(sim.host.engine().locks().next().is_none(), "la is free");
    // The client reads again: what it gets answers its requests in order
    // (the `Lock` is never answered `Version`), then the connection ends.
    sim.socks[1].s2c_cap = cap;
    sim.dirty
        .push(sim.socks[1].slot.expect("still open, writing"));
    sim.flush_dirty();
    sim.client_read(1);
    assert!(
        sim.socks[1].outstanding.len() == 2,
        "only the first Version was answered: {:?}",
        sim.socks[1].outstanding
    );
}
