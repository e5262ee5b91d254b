//! The lock/data engine: every rule of PROTOCOL.md sections 5 and 6 as a
//! deterministic state machine.
//!
//! The engine owns two separate namespaces (locks and data entries), the
//! FIFO wait queues, the fencing-token counter and the statistics. The lock
//! namespace also holds semaphores and read/write locks (names several
//! hold at once, with `alloc`; see the `shared` module and PROTOCOL.md
//! section 8), one kind per name at a time. It never
//! reads a clock, a socket or a random number generator: the host passes
//! the time into every call and the hash key in the [`Config`], so the same
//! sequence of `(command, now)` always gives the same answers and state.
//!
//! ```text
//!            ┌──────────────── Engine ────────────────┐
//!  command ─▶│ advance(now): expire due locks, data,  │──▶ Event (to another
//!  + now     │   waiters; hand locks to waiters       │    waiting client)
//!            │ apply the command                      │──▶ Outcome::Reply / Queued
//!            └────────────────────────────────────────┘
//!  host sleeps until next_deadline(), then calls advance()
//! ```
//!
//! A lock with waiters is handed to the first waiter the moment it is
//! released or expires, with a new fencing token; the host delivers the
//! [`Event`]. A waiter whose connection closes is [cancelled](Engine::cancel).
//!
//! ```
//! use dlm_core::engine::{Config, Engine, Outcome, Principal};
//! use dlm_core::protocol::{Command, Owner, Resource, Status};
//! use dlm_core::time::{Instant, Ttl};
//!
//! let mut engine = Engine::new(Config::default());
//! let lock = Command::Lock {
//!     name: Resource("jobs"),
//!     owner: Owner("worker-1"),
//!     ttl: Ttl::from_secs(10),
//!     wait: None,
//!     token: None,
//! };
//! let t0 = Instant::from_millis(0);
//! let Outcome::Reply(r) = engine.handle(t0, &lock, Principal::Anonymous, 0, &mut |_| {}) else {
//!     unreachable!()
//! };
//! assert_eq!(r.status, Status::Locked);
//! let token = r.token.unwrap();
//! // The host sleeps until the next deadline (never later than the expiry)...
//! assert!(engine.next_deadline().unwrap() <= Instant::from_millis(10_000));
//! engine.advance(Instant::from_millis(9_999), &mut |_| {});
//! assert_eq!(engine.lock_count(), 1);
//! // ...and ten seconds after the grant the lock is gone, exactly.
//! engine.advance(Instant::from_millis(10_000), &mut |_| {});
//! assert_eq!(engine.lock_count(), 0);
//! # let _ = token;
//! ```

#[cfg(feature = "alloc")]
mod blob;
mod data;
mod dedup;
mod identity;
mod locks;
#[cfg(feature = "alloc")]
mod multi;
mod queue;
#[cfg(feature = "alloc")]
mod session;
#[cfg(feature = "alloc")]
mod shared;
mod snapshot;
mod store;
mod table;
mod watch;
mod wheel;

use core::fmt;

use core::num::NonZeroU16;

#[cfg(feature = "alloc")]
pub use session::{ConnId, SessionBinding};
#[cfg(feature = "alloc")]
pub use shared::{GroupInfo, SharedHold};
pub use snapshot::SnapshotError;
#[cfg(feature = "alloc")]
pub use store::Heap;
pub use store::{Fixed, Storage};
#[cfg(feature = "alloc")]
pub use watch::{Change, OwnedReaders, encode_change};
pub use watch::{ChangeRecords, ChangeRef, Subject, What, decode_change, may_read};

use self::data::DataSlot;
use self::dedup::DedupSlot;
use self::identity::IdentitySlot;
use self::locks::{LockSlot, Told};
use self::queue::{QueueSlot, WaiterSlot};
use self::store::sealed::{self, Pair as _};
use self::table::{KeyHasher, Table, overhead, widen};
use self::wheel::{Kind, Link, Links, NONE, TimerRef, Wheel};
use crate::limits::Limits;
use crate::protocol::{AdminOp, Command, Response, Status, Token, VERSION_STRING};
use crate::stats::{Stat, Stats, Timings};
use crate::time::{Instant, Ttl};

/// How the host configures an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Protocol limits (clamped to what the engine can represent).
    pub limits: Limits,
    /// The most bytes the engine may hold (names, IDs, values and per-entry
    /// overhead); past it, new entries are answered `NO`.
    pub memory_budget: usize,
    /// The key of the hash that indexes names. Hosts should draw it from
    /// the OS RNG so clients cannot aim collisions at one bucket.
    pub hash_key: [u64; 2],
    /// Fencing tokens start above this value. A host without a data
    /// directory can seed it from the wall clock so tokens keep increasing
    /// across restarts.
    pub first_token: u64,
    /// Added to every deadline (lock and data expiry, end of a wait), and
    /// left out of the remaining time reported. A host whose clock
    /// truncates to whole milliseconds sets one millisecond: a request
    /// handled at 10.9 ms is seen at 10, and without the slack a 5 ms lock
    /// would end at 15, 4.1 ms after it was granted; with it, at 16, never
    /// less than asked. Zero for a host whose `now` is exact (a simulated
    /// clock). At most [`MAX_DEADLINE_SLACK`].
    pub deadline_slack: Ttl,
    /// Most answers remembered for requests that carry a `RequestID`
    /// (see [`Engine::handle_once`]); the oldest is forgotten first. Zero
    /// turns request IDs off.
    pub dedup_capacity: usize,
    /// How long an answer is remembered for a resend.
    pub dedup_window: Ttl,
}

/// The most [`Config::deadline_slack`] may be.
pub const MAX_DEADLINE_SLACK: Ttl = Ttl::from_millis(1000);

impl Config {
    /// The defaults: protocol limits, 1 GiB budget, a fixed hash key (set
    /// a random one in a server), tokens from 1.
    pub const DEFAULT: Self = Self {
        limits: Limits::DEFAULT,
        memory_budget: 1 << 30,
        hash_key: [0x6463_6c6d_2d6b_6579, 0x7365_6564_2d30_3031],
        first_token: 0,
        deadline_slack: Ttl::ZERO,
        dedup_capacity: 65_536,
        dedup_window: Ttl::from_secs(300),
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A verified identity registered with [`Engine::register_identity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdentityId(NonZeroU16);

impl IdentityId {
    fn slot(self) -> u32 {
        u32::from(self.0.get()) - 1
    }

    fn tag(self) -> u16 {
        self.0.get()
    }

    /// The identity's number (never 0), the same on every engine that
    /// registered the same identities in the same order.
    pub const fn number(self) -> u16 {
        self.0.get()
    }
}

/// Who is asking, as verified by the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Principal {
    /// No `Name`/`Identity` (or none needed).
    #[default]
    Anonymous,
    /// A request whose `Name`/`Identity` the host verified.
    Identity(IdentityId),
}

/// A queued lock request, as handed to the host by [`Outcome::Queued`] and
/// named again in the [`Event`] that resolves it. Never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(u64);

impl WaiterId {
    /// The number (a sequence over the engine's life).
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The waiter with this [number](Self::get), as read back from a
    /// replicated log: engines fed the same commands number their
    /// waiters alike.
    pub const fn from_number(n: u64) -> Self {
        Self(n)
    }
}

/// The result of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'e> {
    /// Answer now.
    Reply(Response<'e>),
    /// The lock request joined the wait queue; its answer comes later as an
    /// [`Event`].
    Queued(WaiterId),
}

/// A waiter's answer, produced while the engine handles another command or
/// advances time: `Locked` (granted) or `NotOwner` (its wait ran out, or
/// `NO` if the grant could not be stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'e> {
    /// The waiter.
    pub waiter: WaiterId,
    /// The lock it waited for.
    pub name: &'e str,
    /// The host's tag given when it was queued.
    pub tag: u64,
    /// The response to send it.
    pub response: Response<'e>,
}

/// A live lock, as [`Engine::locks`] and [`Engine::lock_info`] show it (to
/// an operator or a test; values are never shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockInfo<'e> {
    /// The lock's name.
    pub name: &'e str,
    /// The holder's owner ID.
    pub owner: &'e str,
    /// The holder's identity, if it used one.
    pub identity: Option<IdentityId>,
    /// The current grant's fencing token.
    pub token: Token,
    /// Time left at the engine's current instant.
    pub remaining: Ttl,
    /// How long the current grant has been held, at the engine's current
    /// instant (re-locks and extensions continue a grant).
    pub held: Ttl,
    /// Waiters queued for it.
    pub waiters: usize,
}

/// A queued lock request, as [`Engine::waiters`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaiterInfo<'e> {
    /// The waiter's owner ID.
    pub owner: &'e str,
    /// Its identity, if it used one.
    pub identity: Option<IdentityId>,
    /// How long it has waited, at the engine's current instant.
    pub waited: Ttl,
    /// How long it will wait at most from the engine's current instant.
    pub wait_left: Ttl,
    /// The TTL it asked for.
    pub ttl: Ttl,
}

/// The table has no room (fixed capacity, or the allocator failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("table full")
    }
}

impl core::error::Error for Full {}

// ---------------------------------------------------------------------------
// Entries and tables

/// The tables whose entries carry timer links.
struct Timed<S: sealed::Storage> {
    locks: Table<S, LockSlot<S>>,
    data: Table<S, DataSlot<S>>,
    waiters: Table<S, WaiterSlot<S>>,
}

impl<S: sealed::Storage> Links for Timed<S> {
    #[inline]
    fn link(&mut self, r: TimerRef) -> &mut Link {
        match r.kind() {
            Kind::Lock => &mut self.locks.get_mut(r.slot()).link,
            Kind::Data => &mut self.data.get_mut(r.slot()).link,
            Kind::Waiter => &mut self.waiters.get_mut(r.slot()).link,
        }
    }
}

// ---------------------------------------------------------------------------
// The engine

macro_rules! engine_struct {
    ($($default:ty)?) => {
        /// The lock/data state machine. See the [module docs](self).
        ///
        /// `S` is where it keeps its tables: [`Heap`] (growable; the
        /// default with `alloc`) or [`Fixed`].
        pub struct Engine<S: Storage $(= $default)?> {
            limits: Limits,
            budget: usize,
            slack: u64,
            hasher: KeyHasher,
            timed: Timed<S>,
            queues: Table<S, QueueSlot>,
            identities: Table<S, IdentitySlot<S>>,
            wheel: Wheel,
            dedup: Table<S, DedupSlot>,
            dedup_head: u32,
            dedup_tail: u32,
            dedup_capacity: usize,
            dedup_window: u64,
            /// Semaphores and read/write locks.
            #[cfg(feature = "alloc")]
            shared: shared::Shared,
            /// Sessions and the grants bound to them.
            #[cfg(feature = "alloc")]
            sessions: session::Sessions,
            /// Multi-lock waiters.
            #[cfg(feature = "alloc")]
            multi: multi::Multi,
            /// The change feed of watches (and its revision counter).
            feed: watch::Feed,
            next_token: u64,
            next_waiter: u64,
            bytes: usize,
            stats: Stats,
            timings: Timings,
        }
    };
}

#[cfg(feature = "alloc")]
engine_struct!(Heap);
#[cfg(not(feature = "alloc"))]
engine_struct!();

#[cfg(feature = "alloc")]
impl Engine<Heap> {
    /// An empty engine on the heap.
    pub fn new(config: Config) -> Self {
        Self::with_storage(config)
    }
}

impl<S: Storage> fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("locks", &self.timed.locks.live)
            .field("data", &self.timed.data.live)
            .field("waiters", &self.timed.waiters.live)
            .field("bytes", &self.bytes)
            .field("next_token", &self.next_token)
            .finish_non_exhaustive()
    }
}

fn locked(owner: &str, token: u64, ttl: Ttl) -> Response<'_> {
    let mut r = Response::new(Status::Locked);
    r.id = Some(owner);
    r.token = Some(Token(token));
    r.expire = Some(ttl);
    r
}

/// Whether an entry stored with owner `stored` (and identity tag
/// `stored_ident`) belongs to the caller `owner` with identity tag `ident`:
/// the one ownership rule of PROTOCOL.md sections 5 and 6 (the same `ID`
/// and the same identity, or both anonymous).
#[inline]
fn held_by(stored: &[u8], stored_ident: u16, owner: &[u8], ident: u16) -> bool {
    stored == owner && stored_ident == ident
}

impl<S: Storage> Engine<S> {
    /// Whether grant `token` is closed by a lock-delay: its session ended
    /// and nobody, its owner included, may take, extend or release it
    /// until the delay has passed.
    #[inline]
    // Without `alloc` there are no sessions, and `self` is not read.
    #[cfg_attr(not(feature = "alloc"), allow(clippy::unused_self))]
    fn closed(&self, token: u64) -> bool {
        #[cfg(feature = "alloc")]
        return self.sessions.closed.contains_key(&token);
        #[cfg(not(feature = "alloc"))]
        {
            let _ = token;
            false
        }
    }
}

fn as_str(bytes: &[u8]) -> &str {
    // Every stored name and ID was a `&str` when it was stored.
    core::str::from_utf8(bytes).unwrap_or_default()
}

impl<S: Storage> Engine<S> {
    /// An empty engine with storage `S`.
    // Without `alloc` the feed has no field but its revision.
    #[cfg_attr(not(feature = "alloc"), allow(clippy::needless_update))]
    pub fn with_storage(config: Config) -> Self {
        Self {
            limits: config.limits.clamped(),
            budget: config.memory_budget,
            slack: config.deadline_slack.min(MAX_DEADLINE_SLACK).as_millis(),
            hasher: KeyHasher(config.hash_key),
            timed: Timed {
                locks: Table::new(),
                data: Table::new(),
                waiters: Table::new(),
            },
            queues: Table::new(),
            identities: Table::new(),
            wheel: Wheel::new(0),
            dedup: Table::new(),
            dedup_head: NONE,
            dedup_tail: NONE,
            dedup_capacity: config.dedup_capacity,
            dedup_window: config.dedup_window.as_millis(),
            #[cfg(feature = "alloc")]
            shared: shared::Shared::default(),
            #[cfg(feature = "alloc")]
            sessions: session::Sessions::default(),
            #[cfg(feature = "alloc")]
            multi: multi::Multi::default(),
            feed: watch::Feed {
                revision: config.first_token,
                ..watch::Feed::default()
            },
            next_token: config.first_token.saturating_add(1),
            next_waiter: 1,
            bytes: 0,
            stats: Stats::new(),
            timings: Timings {
                hold: crate::stats::Histogram::new(),
                queued: crate::stats::Histogram::new(),
            },
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Live locks.
    pub fn lock_count(&self) -> usize {
        self.timed.locks.live
    }

    /// Live data entries.
    pub fn data_count(&self) -> usize {
        self.timed.data.live
    }

    /// Queued waiters (for locks, semaphores and read/write locks).
    pub fn waiter_count(&self) -> usize {
        #[cfg(feature = "alloc")]
        return self.timed.waiters.live + self.shared.waiter_count() + self.multi.waiting.len();
        #[cfg(not(feature = "alloc"))]
        self.timed.waiters.live
    }

    /// Bytes charged against the memory budget.
    pub fn memory_used(&self) -> usize {
        self.bytes
    }

    /// Every live lock (as of the last instant the engine saw), in no
    /// particular order.
    pub fn locks(&self) -> impl Iterator<Item = LockInfo<'_>> {
        self.timed
            .locks
            .iter()
            .map(move |(slot, l)| self.lock_info_of(slot, l))
    }

    /// The live lock `name`, if any (as of the last instant the engine saw).
    pub fn lock_info(&self, name: &str) -> Option<LockInfo<'_>> {
        let (_, slot) = self.find_lock(name);
        slot.map(|s| self.lock_info_of(s, self.timed.locks.get(s)))
    }

    fn lock_info_of<'e>(&'e self, slot: u32, l: &'e LockSlot<S>) -> LockInfo<'e> {
        let (name, owner) = l.key.parts();
        let waiters = self
            .find_queue(slot)
            .1
            .map_or(0, |q| self.queues.get(q).len as usize);
        LockInfo {
            name: as_str(name),
            owner: as_str(owner),
            identity: NonZeroU16::new(l.ident).map(IdentityId),
            token: Token(l.token),
            remaining: self.remaining(&l.link),
            held: Ttl::from_millis(self.wheel.elapsed().saturating_sub(l.since)),
            waiters,
        }
    }

    /// The requests queued for lock `name`, first in line first (as of
    /// the last instant the engine saw).
    pub fn waiters<'e>(&'e self, name: &str) -> impl Iterator<Item = WaiterInfo<'e>> + 'e {
        let now = self.wheel.elapsed();
        let first = match self.find_lock(name) {
            (_, Some(lock)) => self
                .find_queue(lock)
                .1
                .map_or(self::wheel::NONE, |q| self.queues.get(q).head),
            (_, None) => self::wheel::NONE,
        };
        let mut at = first;
        core::iter::from_fn(move || {
            if at == self::wheel::NONE {
                return None;
            }
            let w = self.timed.waiters.get(at);
            at = w.next;
            Some(WaiterInfo {
                owner: as_str(w.owner.parts().0),
                identity: NonZeroU16::new(w.ident).map(IdentityId),
                waited: Ttl::from_millis(now.saturating_sub(w.since)),
                wait_left: self.remaining(&w.link),
                ttl: Ttl::from_millis(w.ttl),
            })
        })
    }

    /// How long locks were held and waiters queued, since the engine
    /// started (see [`Timings`]).
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// The engine's current instant: the latest `now` it was given.
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.wheel.elapsed())
    }

    /// The token the next grant will get.
    pub fn next_token(&self) -> Token {
        Token(self.next_token)
    }

    /// Makes every future token greater than `floor` (never lowers it).
    /// Watch revisions are raised to `floor` too, so that a host seeding
    /// both from its wall clock never numbers a change as a run before it.
    pub fn seed_tokens(&mut self, floor: u64) {
        self.next_token = self.next_token.max(floor.saturating_add(1));
        self.feed.revision = self.feed.revision.max(floor);
    }

    /// Statistics with the gauges filled in.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        self.fill_gauges(&mut s);
        s
    }

    /// The statistics, for the host to count what only it sees and to reset.
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    fn fill_gauges(&self, s: &mut Stats) {
        s.set(Stat::ALock, self.timed.locks.live as u64);
        s.set(Stat::AData, self.timed.data.live as u64);
        s.set(Stat::AWait, self.waiter_count() as u64);
        s.set(Stat::Memory, self.bytes as u64);
        #[cfg(feature = "alloc")]
        s.set(Stat::ASession, self.sessions.by_conn.len() as u64);
    }

    /// When the engine next needs [`advance`](Self::advance): the earliest
    /// expiry or wait deadline (possibly a little earlier, never later).
    pub fn next_deadline(&self) -> Option<Instant> {
        let wheel = self.wheel.next_deadline();
        #[cfg(feature = "alloc")]
        let wheel = match (wheel, self.next_shared_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        #[cfg(feature = "alloc")]
        let wheel = match (wheel, self.next_session_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        #[cfg(feature = "alloc")]
        let wheel = match (wheel, self.next_multi_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wheel.map(Instant::from_millis)
    }

    /// Expires everything due at `now` (handing expired locks to their
    /// first waiter and timing out waiters), reporting waiters' answers to
    /// `events`. Called by [`handle`](Self::handle) first; the host also
    /// calls it at [`next_deadline`](Self::next_deadline).
    ///
    /// Locks that expire at the same instant and have waiters are handed
    /// over once everything due at that instant is out of the wheel, in
    /// the order of their grants (their tokens): the new tokens never
    /// depend on the order the wheel holds entries in, which differs
    /// between an engine and one restored from its snapshot.
    pub fn advance(&mut self, now: Instant, events: &mut impl FnMut(Event<'_>)) {
        // Sessions due by now end first, at now (the instant the engine
        // sees it): a session's waiter is answered before a lock it waited
        // for comes free at the same time, and a lock-delay counts from now.
        #[cfg(feature = "alloc")]
        {
            let at = now.as_millis().max(self.wheel.elapsed());
            self.end_sessions_due(at, events);
        }
        self.advance_time(now, events);
        #[cfg(feature = "alloc")]
        self.forget_closed(now.as_millis().max(self.wheel.elapsed()));
    }

    fn advance_time(&mut self, now: Instant, events: &mut impl FnMut(Event<'_>)) {
        let now = now.as_millis();
        self.dedup_expire(now.max(self.wheel.elapsed()));
        // Expired locks with waiters, all due at one instant, chained
        // through their (detached) timer links.
        let mut due = NONE;
        loop {
            if due != NONE {
                // Once nothing else is due at that instant, hand them over
                // (before any later entry, maybe one of their waiters,
                // leaves the wheel).
                let at = self.timed.locks.get(due).link.when;
                if self.wheel.next_deadline().is_none_or(|d| d > at) {
                    self.hand_over(due, now, events);
                    due = NONE;
                }
            }
            let Some(r) = self.wheel.pop_expired(&mut self.timed, now) else {
                break;
            };
            debug_assert!(
                due == NONE || self.timed.link(r).when == self.timed.locks.get(due).link.when
            );
            match r.kind() {
                Kind::Lock => {
                    self.stats.incr(Stat::ExpiredLock);
                    let l = self.timed.locks.get(r.slot());
                    let (name, owner) = l.key.parts();
                    self.feed.note(
                        What::Expired,
                        Subject::Lock,
                        name,
                        owner,
                        l.ident,
                        Some(l.token),
                        None,
                    );
                    if self.find_queue(r.slot()).1.is_some() {
                        self.timed.locks.get_mut(r.slot()).link.chain(due);
                        due = r.slot();
                    } else {
                        self.release_unlinked(r.slot(), now, events);
                    }
                }
                Kind::Data => {
                    self.stats.incr(Stat::ExpiredData);
                    let d = self.timed.data.get(r.slot());
                    let (name, owner) = d.key.parts();
                    self.feed.note_readable(
                        What::Expired,
                        Subject::Data,
                        name,
                        owner,
                        d.ident,
                        None,
                        None,
                        d.readers(),
                    );
                    self.remove_data_unlinked(r.slot());
                }
                Kind::Waiter => self.time_out_unlinked(r.slot(), events),
            }
        }
        self.hand_over(due, now, events);
        #[cfg(feature = "alloc")]
        self.advance_shared(now.max(self.wheel.elapsed()), events);
        #[cfg(feature = "alloc")]
        self.advance_multi(now.max(self.wheel.elapsed()), events);
    }

    /// Applies one command at `now` on behalf of `principal`.
    ///
    /// Time first advances to `now` (so an entry is absent from the
    /// instant it expires and waiters are served before newcomers). If the
    /// command is a `Lock` with `Wait` that must queue, `tag` is stored with
    /// the waiter and returned in its [`Event`]. Waiters' answers produced
    /// on the way go to `events`.
    pub fn handle<'s>(
        &'s mut self,
        now: Instant,
        command: &Command<'s>,
        principal: Principal,
        tag: u64,
        events: &mut impl FnMut(Event<'_>),
    ) -> Outcome<'s> {
        self.handle_once(now, command, principal, tag, None, events)
    }

    /// Answers a command that only reads (`Get`, `TestLock`) from the state
    /// as it is, at the engine's current instant ([`now`](Self::now)):
    /// time does not advance, nothing expires, no request is remembered,
    /// only counters move. `None` for any other command. A replicated
    /// engine answers its reads this way once it has applied what a read
    /// must see (the cluster's read index), without a log entry; answering
    /// with [`handle`](Self::handle) instead would change its state (time)
    /// outside the log.
    pub fn read<'s>(
        &'s mut self,
        command: &Command<'s>,
        principal: Principal,
    ) -> Option<Response<'s>> {
        if !matches!(command, Command::Get { .. } | Command::TestLock { .. }) {
            return None;
        }
        let (ident, max_data) = match principal {
            Principal::Anonymous => (0, None),
            Principal::Identity(id) => {
                if let Some(Some(i)) = self.identities.slots.get(id.slot() as usize) {
                    (id.tag(), Some(i.max_data))
                } else {
                    self.stats.incr(Stat::BadPayload);
                    return Some(Response::rejected(
                        crate::protocol::RequestError::AuthFailed,
                    ));
                }
            }
        };
        if let Err(e) = command.check(&self.limits, max_data) {
            self.stats.incr(match e.status() {
                Status::BadAction => Stat::BadAction,
                _ => Stat::BadPayload,
            });
            return Some(Response::rejected(e));
        }
        let now = self.wheel.elapsed();
        match *command {
            Command::TestLock { name, owner } => Some(self.test_lock(now, name.0, owner.0, ident)),
            Command::Get { name, owner } => Some(self.get(now, name.0, owner.0, ident)),
            _ => None,
        }
    }

    /// [`handle`](Self::handle) for a request that carries a `RequestID`:
    /// a `Put`, `Erase` or `Unlock` whose ID (with its action, owner and
    /// identity) was seen within the window gets its first answer again,
    /// without being applied twice (counted `Replayed`). Any other command,
    /// or `None`, is handled as by `handle`. See PROTOCOL.md section 8.
    pub fn handle_once<'s>(
        &'s mut self,
        now: Instant,
        command: &Command<'s>,
        principal: Principal,
        tag: u64,
        request_id: Option<&str>,
        events: &mut impl FnMut(Event<'_>),
    ) -> Outcome<'s> {
        let now = now.as_millis().max(self.wheel.elapsed());
        self.advance(Instant::from_millis(now), events);
        self.dedup_expire(now);

        let (ident, max_data) = match principal {
            Principal::Anonymous => (0, None),
            Principal::Identity(id) => {
                if let Some(Some(i)) = self.identities.slots.get(id.slot() as usize) {
                    (id.tag(), Some(i.max_data))
                } else {
                    self.stats.incr(Stat::BadPayload);
                    return Outcome::Reply(Response::rejected(
                        crate::protocol::RequestError::AuthFailed,
                    ));
                }
            }
        };
        if let Err(e) = command.check(&self.limits, max_data) {
            self.stats.incr(match e.status() {
                Status::BadAction => Stat::BadAction,
                _ => Stat::BadPayload,
            });
            return Outcome::Reply(Response::rejected(e));
        }
        if let Some(id) = request_id {
            let key = match self.dedup_lookup(command, ident, id) {
                Ok(again) => return Outcome::Reply(again),
                Err(key) => key,
            };
            if let Some(key) = key {
                let r = match *command {
                    Command::Unlock { name, owner, token } => {
                        self.unlock(now, name.0, owner.0, ident, token, events)
                    }
                    Command::Put {
                        name,
                        owner,
                        ttl,
                        data,
                        revision,
                        readers,
                    } => self.put(now, name.0, owner.0, ident, ttl, data, revision, readers),
                    Command::Erase { name, owner } => self.erase(name.0, owner.0, ident),
                    _ => unreachable!("only Unlock, Put and Erase are remembered"),
                };
                self.dedup_record(key, &r, now);
                return Outcome::Reply(r);
            }
        }
        let reply = match *command {
            Command::Lock {
                name,
                owner,
                ttl,
                wait,
                token,
            } => {
                return self.lock(now, name.0, owner.0, ident, ttl, wait, token, tag);
            }
            #[cfg(feature = "alloc")]
            Command::Acquire {
                name,
                owner,
                shape,
                ttl,
                wait,
                token,
            } => {
                return self.acquire(now, name.0, owner.0, ident, shape, ttl, wait, token, tag);
            }
            #[cfg(feature = "alloc")]
            Command::LockAll {
                names,
                owner,
                ttl,
                wait,
            } => {
                let mut list = [""; crate::protocol::MAX_LOCK_ALL];
                return self.lock_all(
                    now,
                    names.to_slice(&mut list),
                    owner.0,
                    ident,
                    ttl,
                    wait,
                    tag,
                    events,
                );
            }
            #[cfg(not(feature = "alloc"))]
            Command::LockAll { .. } => {
                // A fixed-capacity engine keeps no multi-lock queues.
                self.stats.incr(Stat::BadAction);
                Response::rejected(crate::protocol::RequestError::UnknownAction)
            }
            #[cfg(not(feature = "alloc"))]
            Command::Acquire { .. } => {
                // A fixed-capacity engine keeps no groups.
                self.stats.incr(Stat::BadAction);
                Response::rejected(crate::protocol::RequestError::UnknownAction)
            }
            Command::Unlock { name, owner, token } => {
                self.unlock(now, name.0, owner.0, ident, token, events)
            }
            #[cfg(feature = "alloc")]
            Command::Session { ttl } => self.open_session(now, ttl),
            #[cfg(not(feature = "alloc"))]
            Command::Session { .. } => {
                // A fixed-capacity engine keeps no sessions.
                self.stats.incr(Stat::BadAction);
                Response::rejected(crate::protocol::RequestError::UnknownAction)
            }
            Command::TestLock { name, owner } => self.test_lock(now, name.0, owner.0, ident),
            Command::Put {
                name,
                owner,
                ttl,
                data,
                revision,
                readers,
            } => self.put(now, name.0, owner.0, ident, ttl, data, revision, readers),
            Command::Get { name, owner } => self.get(now, name.0, owner.0, ident),
            Command::Erase { name, owner } => self.erase(name.0, owner.0, ident),
            Command::Version => {
                self.stats.incr(Stat::Version);
                let mut r = Response::new(Status::Version);
                r.id = Some(VERSION_STRING);
                r
            }
            Command::Cluster(_)
            | Command::Watch { .. }
            | Command::Admin(AdminOp::Locks { .. } | AdminOp::Lock { .. }) => {
                // The host's, not the engine's: an engine alone has no
                // cluster to tell about, and reads of the lock table need
                // an allocator to answer.
                self.stats.incr(Stat::BadAction);
                Response::rejected(crate::protocol::RequestError::UnknownAction)
            }
            Command::Admin(AdminOp::Revoke { name, token }) => {
                // The host decides who is an administrator; the engine
                // only refuses the anonymous (a request without identity
                // can never be one).
                if matches!(principal, Principal::Anonymous) {
                    self.stats.incr(Stat::BadPayload);
                    return Outcome::Reply(Response::rejected(
                        crate::protocol::RequestError::NotAdmin,
                    ));
                }
                self.revoke(now, name.0, token, events)
            }
            Command::Stats => {
                self.stats.incr(Stat::Stats);
                let mut s = core::mem::take(&mut self.stats);
                self.fill_gauges(&mut s);
                self.stats = s;
                let mut r = Response::new(Status::Done);
                r.stats = Some(&self.stats);
                r
            }
        };
        Outcome::Reply(reply)
    }

    // -- locks --------------------------------------------------------------

    fn not_owner<'a>(&mut self, expire: Option<Ttl>) -> Response<'a> {
        self.stats.incr(Stat::NotOwner);
        let mut r = Response::new(Status::NotOwner);
        r.expire = expire;
        r
    }

    fn no_memory<'a>(&mut self) -> Response<'a> {
        self.stats.incr(Stat::NoMemory);
        Response::new(Status::No)
    }

    fn fits(&self, charge: usize) -> bool {
        self.bytes
            .checked_add(charge)
            .is_some_and(|total| total <= self.budget)
    }

    /// Time left as reported to clients: without the slack, but at least
    /// 1 ms while the entry lives (it is live until its deadline).
    fn remaining(&self, link: &Link) -> Ttl {
        let left = link.when.saturating_sub(self.wheel.elapsed());
        Ttl::from_millis(left.saturating_sub(self.slack).max(left.min(1)))
    }

    // -- data ---------------------------------------------------------------
}
