//! The lock/data engine: every rule of PROTOCOL.md sections 5 and 6 as a
//! deterministic state machine.
//!
//! The engine owns two separate namespaces (locks and data entries), the
//! FIFO wait queues, the fencing-token counter and the statistics. It never
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
mod snapshot;
mod store;
mod wheel;

use core::fmt;
use core::hash::Hasher as _;
use core::num::NonZeroU16;

use siphasher::sip::SipHasher13;

pub use snapshot::SnapshotError;
#[cfg(feature = "alloc")]
pub use store::Heap;
pub use store::{Fixed, Storage};

use self::store::sealed::{self, Buffer, Index as _, Pair as _, Value as _};
use self::wheel::{Kind, Link, Links, MAX_SLOTS, NONE, TimerRef, Wheel};
use crate::limits::Limits;
use crate::protocol::{Command, Response, Revision, Status, Token, VERSION_STRING};
use crate::stats::{Stat, Stats};
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
    /// Waiters queued for it.
    pub waiters: usize,
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

struct LockSlot<S: sealed::Storage> {
    /// Name and owner ID.
    key: S::Pair,
    token: u64,
    link: Link,
    hash: u32,
    ident: u16,
    /// Who was told `Locked` for this token: see [`Told`].
    told: Told,
}

/// Who was told `Locked` for a lock's current token, so that taking back
/// one undeliverable grant ([`Engine::orphaned`]) never frees a lock that
/// someone else of the same owner was told it holds.
///
/// A grant made to waiters (the one the lock was handed to, and the waiters
/// of the same owner answered with it) counts them; each orphaned grant
/// takes one back, and the lock is freed only when none is left. Once a
/// request is answered `Locked` directly (a new lock, a re-lock, an
/// extension), the grant is no longer the waiters' alone and an orphan
/// never frees it (it runs out, or its owner unlocks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Told(u16);

impl Told {
    /// A request was answered directly.
    const DIRECT: Self = Self(u16::MAX);
    /// Handed to one waiter.
    const ONE_WAITER: Self = Self(1);

    /// One more waiter was answered with this grant. Past what the count
    /// holds it becomes [`DIRECT`](Self::DIRECT): never freed by orphans,
    /// which errs on the safe side.
    fn add_waiter(self) -> Self {
        if self.0 >= u16::MAX - 1 {
            Self::DIRECT
        } else {
            Self(self.0 + 1)
        }
    }

    /// One waiter's grant could not be delivered: the count left, and
    /// whether nobody is left who was told.
    fn take_back(self) -> (Self, bool) {
        match self {
            Self::DIRECT => (self, false),
            Self(0 | 1) => (Self(0), true),
            Self(n) => (Self(n - 1), false),
        }
    }
}

struct DataSlot<S: sealed::Storage> {
    key: S::Pair,
    value: S::Value,
    revision: u64,
    link: Link,
    hash: u32,
    ident: u16,
}

struct WaiterSlot<S: sealed::Storage> {
    /// Owner ID (and nothing).
    owner: S::Pair,
    id: u64,
    tag: u64,
    ttl: u64,
    lock: u32,
    prev: u32,
    next: u32,
    link: Link,
    ident: u16,
}

struct QueueSlot {
    lock: u32,
    head: u32,
    tail: u32,
    len: u32,
}

struct IdentitySlot<S: sealed::Storage> {
    name: S::Pair,
    max_data: usize,
    hash: u32,
}

/// Bytes charged per entry beyond its strings: the slot, its index entry
/// and allocator overhead, rounded up.
const fn overhead<T>() -> usize {
    core::mem::size_of::<Option<T>>() + 16
}

/// A slab of entries with a free list and a hash index.
struct Table<S: sealed::Storage, T> {
    slots: S::Vec<Option<T>>,
    free: S::Vec<u32>,
    index: S::Index,
    live: usize,
}

impl<S: sealed::Storage, T> Table<S, T> {
    fn new() -> Self {
        Self {
            slots: Buffer::empty(),
            free: Buffer::empty(),
            index: sealed::Index::empty(),
            live: 0,
        }
    }

    #[inline]
    fn get(&self, slot: u32) -> &T {
        match &self.slots[slot as usize] {
            Some(t) => t,
            None => unreachable!("vacant slot {slot} referenced"),
        }
    }

    #[inline]
    fn get_mut(&mut self, slot: u32) -> &mut T {
        match &mut self.slots[slot as usize] {
            Some(t) => t,
            None => unreachable!("vacant slot {slot} referenced"),
        }
    }

    #[inline]
    fn find(&self, hash: u64, eq: impl Fn(&T) -> bool) -> Option<u32> {
        self.index.find(hash, |s| eq(self.get(s)))
    }

    fn insert(&mut self, value: T, hash: u64, rehash: impl Fn(&T) -> u64) -> Result<u32, T> {
        let slot = if let Some(s) = self.free.pop() {
            self.slots[s as usize] = Some(value);
            s
        } else {
            let s = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
            if s > MAX_SLOTS {
                return Err(value);
            }
            if let Err(v) = self.slots.try_push(Some(value)) {
                return Err(v.unwrap_or_else(|| unreachable!()));
            }
            s
        };
        let Self { slots, index, .. } = self;
        let rehash = |s: u32| match &slots[s as usize] {
            Some(t) => rehash(t),
            None => 0,
        };
        if !index.insert(hash, slot, rehash) {
            let value = self.slots[slot as usize].take();
            let _ = self.free.try_push(slot);
            return Err(value.unwrap_or_else(|| unreachable!()));
        }
        self.live += 1;
        Ok(slot)
    }

    fn remove(&mut self, slot: u32, hash: u64) -> T {
        self.index.remove(hash, slot);
        let value = self.slots[slot as usize].take();
        // If the free list cannot grow, the slot is only lost for reuse.
        let _ = self.free.try_push(slot);
        self.live -= 1;
        value.unwrap_or_else(|| unreachable!("removed vacant slot {slot}"))
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref()
                .map(|t| (u32::try_from(i).unwrap_or(u32::MAX), t))
        })
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.index.clear();
        self.live = 0;
    }
}

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

/// Keyed hashing of names; the 32-bit result is cached in entries and
/// widened for the index so it never needs the key again.
#[derive(Clone, Copy)]
struct KeyHasher([u64; 2]);

#[inline]
fn widen(h: u32) -> u64 {
    u64::from(h) | u64::from(h) << 32
}

impl KeyHasher {
    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    fn bytes(self, bytes: &[u8]) -> u32 {
        let mut h = SipHasher13::new_with_keys(self.0[0], self.0[1]);
        h.write(bytes);
        h.finish() as u32
    }

    /// For keys the engine chooses itself (slot numbers, waiter IDs).
    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    fn int(x: u64) -> u32 {
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
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
            next_token: u64,
            next_waiter: u64,
            bytes: usize,
            stats: Stats,
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

fn as_str(bytes: &[u8]) -> &str {
    // Every stored name and ID was a `&str` when it was stored.
    core::str::from_utf8(bytes).unwrap_or_default()
}

impl<S: Storage> Engine<S> {
    /// An empty engine with storage `S`.
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
            next_token: config.first_token.saturating_add(1),
            next_waiter: 1,
            bytes: 0,
            stats: Stats::new(),
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

    /// Queued waiters.
    pub fn waiter_count(&self) -> usize {
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
            waiters,
        }
    }

    /// The token the next grant will get.
    pub fn next_token(&self) -> Token {
        Token(self.next_token)
    }

    /// Makes every future token greater than `floor` (never lowers it).
    pub fn seed_tokens(&mut self, floor: u64) {
        self.next_token = self.next_token.max(floor.saturating_add(1));
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
        s.set(Stat::AWait, self.timed.waiters.live as u64);
        s.set(Stat::Memory, self.bytes as u64);
    }

    /// When the engine next needs [`advance`](Self::advance): the earliest
    /// expiry or wait deadline (possibly a little earlier, never later).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.wheel.next_deadline().map(Instant::from_millis)
    }

    /// Registers an identity by name (or updates its `MaxSize`), returning
    /// the handle the host passes as [`Principal::Identity`] once it has
    /// verified a request's secret. The engine never sees secrets.
    pub fn register_identity(&mut self, name: &str, max_data: usize) -> Result<IdentityId, Full> {
        let h = self.hasher.bytes(name.as_bytes());
        if let Some(slot) = self
            .identities
            .find(widen(h), |i| i.name.parts().0 == name.as_bytes())
        {
            self.identities.get_mut(slot).max_data = max_data;
            return Self::identity_id(slot);
        }
        if self.identities.slots.len() >= usize::from(u16::MAX) - 1 {
            return Err(Full);
        }
        let name = S::Pair::new(name.as_bytes(), b"").ok_or(Full)?;
        let slot = self
            .identities
            .insert(
                IdentitySlot {
                    name,
                    max_data,
                    hash: h,
                },
                widen(h),
                |i| widen(i.hash),
            )
            .map_err(|_| Full)?;
        Self::identity_id(slot)
    }

    fn identity_id(slot: u32) -> Result<IdentityId, Full> {
        u16::try_from(slot + 1)
            .ok()
            .and_then(NonZeroU16::new)
            .map(IdentityId)
            .ok_or(Full)
    }

    /// The handle of a registered identity.
    pub fn identity(&self, name: &str) -> Option<IdentityId> {
        let h = self.hasher.bytes(name.as_bytes());
        self.identities
            .find(widen(h), |i| i.name.parts().0 == name.as_bytes())
            .and_then(|s| Self::identity_id(s).ok())
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
        let now = now.as_millis();
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
                    if self.find_queue(r.slot()).1.is_some() {
                        self.timed.locks.get_mut(r.slot()).link.chain(due);
                        due = r.slot();
                    } else {
                        self.release_unlinked(r.slot(), now, events);
                    }
                }
                Kind::Data => {
                    self.stats.incr(Stat::ExpiredData);
                    self.remove_data_unlinked(r.slot());
                }
                Kind::Waiter => self.time_out_unlinked(r.slot(), events),
            }
        }
        self.hand_over(due, now, events);
    }

    /// Releases the chained expired locks from `due` in token order.
    fn hand_over(&mut self, due: u32, now: u64, events: &mut impl FnMut(Event<'_>)) {
        let mut at = self.sort_chain(due);
        while at != NONE {
            let next = self.timed.locks.get(at).link.chained();
            self.release_unlinked(at, now, events);
            at = next;
        }
    }

    /// Sorts a chain of detached locks by token (merge sort: a burst of
    /// locks expiring together costs n log n, not n squared).
    fn sort_chain(&mut self, head: u32) -> u32 {
        let next = |this: &Self, s: u32| this.timed.locks.get(s).link.chained();
        if head == NONE || next(self, head) == NONE {
            return head;
        }
        // Split in the middle.
        let (mut slow, mut fast) = (head, next(self, head));
        while fast != NONE && next(self, fast) != NONE {
            slow = next(self, slow);
            fast = next(self, next(self, fast));
        }
        let second = next(self, slow);
        self.timed.locks.get_mut(slow).link.chain(NONE);
        let (mut a, mut b) = (self.sort_chain(head), self.sort_chain(second));
        // Merge.
        let (mut first, mut tail) = (NONE, NONE);
        while a != NONE && b != NONE {
            let take = if self.timed.locks.get(a).token < self.timed.locks.get(b).token {
                let n = next(self, a);
                core::mem::replace(&mut a, n)
            } else {
                let n = next(self, b);
                core::mem::replace(&mut b, n)
            };
            if tail == NONE {
                first = take;
            } else {
                self.timed.locks.get_mut(tail).link.chain(take);
            }
            tail = take;
        }
        let rest = if a == NONE { b } else { a };
        if tail == NONE {
            return rest;
        }
        self.timed.locks.get_mut(tail).link.chain(rest);
        first
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
        let now = now.as_millis().max(self.wheel.elapsed());
        self.advance(Instant::from_millis(now), events);

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
            Command::Unlock { name, owner, token } => {
                self.unlock(now, name.0, owner.0, ident, token, events)
            }
            Command::TestLock { name, owner } => self.test_lock(now, name.0, owner.0, ident),
            Command::Put {
                name,
                owner,
                ttl,
                data,
                revision,
            } => self.put(now, name.0, owner.0, ident, ttl, data, revision),
            Command::Get { name, owner } => self.get(now, name.0, owner.0, ident),
            Command::Erase { name, owner } => self.erase(name.0, owner.0, ident),
            Command::Version => {
                self.stats.incr(Stat::Version);
                let mut r = Response::new(Status::Version);
                r.id = Some(VERSION_STRING);
                r
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

    /// Removes a queued waiter (its connection closed). Returns whether it
    /// was still queued.
    pub fn cancel(&mut self, waiter: WaiterId) -> bool {
        let h = KeyHasher::int(waiter.0);
        let Some(slot) = self.timed.waiters.find(widen(h), |w| w.id == waiter.0) else {
            return false;
        };
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Waiter, slot));
        self.take_waiter_unlinked(slot);
        self.stats.incr(Stat::WaitCancel);
        true
    }

    /// Takes back one waiter's grant that the host could not deliver (the
    /// waiter's connection closed as it was granted): the host calls it
    /// once for each such [`Event`] carrying `Locked` with `token`.
    ///
    /// The lock is freed (and handed to its next waiter) only if nobody
    /// else was told it holds this grant: not a waiter of the same owner
    /// answered with it, nor a request answered directly since (a re-lock
    /// or an extension). Otherwise the grant stays with its owner, who was
    /// told. Returns whether the lock was freed; nothing happens if `name`
    /// no longer carries `token`.
    pub fn orphaned(
        &mut self,
        now: Instant,
        name: &str,
        token: Token,
        events: &mut impl FnMut(Event<'_>),
    ) -> bool {
        let now = now.as_millis().max(self.wheel.elapsed());
        self.advance(Instant::from_millis(now), events);
        let (_, Some(slot)) = self.find_lock(name) else {
            return false;
        };
        let lock = self.timed.locks.get_mut(slot);
        if lock.token != token.0 {
            return false;
        }
        self.stats.incr(Stat::WaitOrphaned);
        let (left, free) = lock.told.take_back();
        lock.told = left;
        if !free {
            return false;
        }
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Lock, slot));
        self.release_unlinked(slot, now, events);
        true
    }

    // -- locks --------------------------------------------------------------

    fn find_lock(&self, name: &str) -> (u32, Option<u32>) {
        let h = self.hasher.bytes(name.as_bytes());
        let found = self
            .timed
            .locks
            .find(widen(h), |l| l.key.parts().0 == name.as_bytes());
        (h, found)
    }

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

    #[allow(clippy::too_many_arguments)]
    fn lock<'s>(
        &mut self,
        now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
        ttl: Ttl,
        wait: Option<Ttl>,
        token: Option<Token>,
        tag: u64,
    ) -> Outcome<'s> {
        let (h, found) = self.find_lock(name);
        let Some(slot) = found else {
            if token.is_some() {
                // An extension never brings a lost lock back.
                return Outcome::Reply(self.not_owner(None));
            }
            return Outcome::Reply(self.grant_new(now, h, name, owner, ident, ttl));
        };
        let l = self.timed.locks.get(slot);
        if l.key.parts().1 == owner.as_bytes() && l.ident == ident {
            if token.is_some_and(|t| t.0 != l.token) {
                return Outcome::Reply(self.not_owner(None));
            }
            let current = l.token;
            self.wheel.rearm(
                &mut self.timed,
                TimerRef::new(Kind::Lock, slot),
                now + ttl.as_millis() + self.slack,
            );
            // Answered directly: from now on no orphaned waiter's grant
            // frees it.
            self.timed.locks.get_mut(slot).told = Told::DIRECT;
            self.stats.incr(Stat::Relock);
            return Outcome::Reply(locked(owner, current, ttl));
        }
        match wait {
            // A zero wait is one attempt (PROTOCOL.md section 3), as when
            // the parser drops it.
            Some(wait) if token.is_none() && !wait.is_zero() => {
                self.enqueue(now, slot, name, owner, ident, ttl, wait, tag)
            }
            _ => Outcome::Reply(self.not_owner(None)),
        }
    }

    fn take_token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token = t.saturating_add(1);
        t
    }

    fn grant_new<'s>(
        &mut self,
        now: u64,
        h: u32,
        name: &str,
        owner: &'s str,
        ident: u16,
        ttl: Ttl,
    ) -> Response<'s> {
        let charge = name.len() + owner.len() + overhead::<LockSlot<S>>();
        if !self.fits(charge) {
            return self.no_memory();
        }
        let Some(key) = S::Pair::new(name.as_bytes(), owner.as_bytes()) else {
            return self.no_memory();
        };
        let token = self.next_token;
        let entry = LockSlot {
            key,
            token,
            link: Link::new(now + ttl.as_millis() + self.slack),
            hash: h,
            ident,
            told: Told::DIRECT,
        };
        let Ok(slot) = self.timed.locks.insert(entry, widen(h), |l| widen(l.hash)) else {
            return self.no_memory();
        };
        self.take_token();
        self.wheel
            .insert(&mut self.timed, TimerRef::new(Kind::Lock, slot));
        self.bytes += charge;
        self.stats.incr(Stat::Lock);
        locked(owner, token, ttl)
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue<'s>(
        &mut self,
        now: u64,
        lock: u32,
        name: &str,
        owner: &'s str,
        ident: u16,
        ttl: Ttl,
        wait: Ttl,
        tag: u64,
    ) -> Outcome<'s> {
        let charge = owner.len() + overhead::<WaiterSlot<S>>();
        // The grant will need the name and owner together: make sure that
        // fits now rather than fail the waiter later.
        if !self.fits(charge) || S::Pair::new(name.as_bytes(), owner.as_bytes()).is_none() {
            return Outcome::Reply(self.no_memory());
        }
        let Some(key) = S::Pair::new(owner.as_bytes(), b"") else {
            return Outcome::Reply(self.no_memory());
        };
        let id = self.next_waiter;
        let entry = WaiterSlot {
            owner: key,
            id,
            tag,
            ttl: ttl.as_millis(),
            lock,
            prev: NONE,
            next: NONE,
            link: Link::new(now + wait.as_millis() + self.slack),
            ident,
        };
        if self.append_waiter(entry).is_err() {
            return Outcome::Reply(self.no_memory());
        }
        self.next_waiter += 1;
        self.bytes += charge;
        self.stats.incr(Stat::Wait);
        Outcome::Queued(WaiterId(id))
    }

    /// Puts a waiter at the tail of its lock's queue (making the queue if
    /// it is the first) and arms its timer. Used by `enqueue` and `restore`.
    fn append_waiter(&mut self, mut entry: WaiterSlot<S>) -> Result<u32, Full> {
        let lock = entry.lock;
        let (qh, queue) = self.find_queue(lock);
        let tail = queue.map_or(NONE, |q| self.queues.get(q).tail);
        entry.prev = tail;
        entry.next = NONE;
        let h = KeyHasher::int(entry.id);
        let w = self
            .timed
            .waiters
            .insert(entry, widen(h), |w| widen(KeyHasher::int(w.id)))
            .map_err(|_| Full)?;
        if let Some(q) = queue {
            self.timed.waiters.get_mut(tail).next = w;
            let q = self.queues.get_mut(q);
            q.tail = w;
            q.len += 1;
        } else {
            let q = QueueSlot {
                lock,
                head: w,
                tail: w,
                len: 1,
            };
            if self
                .queues
                .insert(q, widen(qh), |q| widen(KeyHasher::int(u64::from(q.lock))))
                .is_err()
            {
                self.timed.waiters.remove(w, widen(h));
                return Err(Full);
            }
        }
        self.wheel
            .insert(&mut self.timed, TimerRef::new(Kind::Waiter, w));
        Ok(w)
    }

    fn find_queue(&self, lock: u32) -> (u32, Option<u32>) {
        let qh = KeyHasher::int(u64::from(lock));
        (qh, self.queues.find(widen(qh), |q| q.lock == lock))
    }

    /// Answers `NotOwner` to a waiter, no longer in the wheel, whose wait
    /// ran out, and removes it.
    fn time_out_unlinked(&mut self, slot: u32, events: &mut impl FnMut(Event<'_>)) {
        let lock = self.timed.waiters.get(slot).lock;
        let w = self.take_waiter_unlinked(slot);
        self.stats.incr(Stat::WaitTimeout);
        self.stats.incr(Stat::NotOwner);
        events(Event {
            waiter: WaiterId(w.id),
            name: as_str(self.timed.locks.get(lock).key.parts().0),
            tag: w.tag,
            response: Response::new(Status::NotOwner),
        });
    }

    /// Detaches a waiter that is no longer in the wheel from its queue and
    /// its table, and returns it.
    fn take_waiter_unlinked(&mut self, slot: u32) -> WaiterSlot<S> {
        let w = self.timed.waiters.get(slot);
        let (lock, prev, next, id, owner_len) =
            (w.lock, w.prev, w.next, w.id, w.owner.parts().0.len());
        if prev != NONE {
            self.timed.waiters.get_mut(prev).next = next;
        }
        if next != NONE {
            self.timed.waiters.get_mut(next).prev = prev;
        }
        let (qh, q) = self.find_queue(lock);
        if let Some(q) = q {
            let queue = self.queues.get_mut(q);
            if queue.head == slot {
                queue.head = next;
            }
            if queue.tail == slot {
                queue.tail = prev;
            }
            queue.len -= 1;
            if queue.len == 0 {
                self.queues.remove(q, widen(qh));
            }
        }
        self.bytes -= owner_len + overhead::<WaiterSlot<S>>();
        self.timed.waiters.remove(slot, widen(KeyHasher::int(id)))
    }

    /// Releases a lock that is no longer in the wheel: hands it to its
    /// first waiter, or removes it.
    fn release_unlinked(&mut self, slot: u32, now: u64, events: &mut impl FnMut(Event<'_>)) {
        // The instant the lock came free: its expiry, or now if released.
        let free_at = self.timed.locks.get(slot).link.when.min(now);
        loop {
            let (_, queue) = self.find_queue(slot);
            let Some(q) = queue else {
                let lock = self.timed.locks.get(slot);
                let (name, owner) = lock.key.parts();
                self.bytes -= name.len() + owner.len() + overhead::<LockSlot<S>>();
                let hash = lock.hash;
                self.timed.locks.remove(slot, widen(hash));
                return;
            };
            let head = self.queues.get(q).head;
            self.wheel
                .remove(&mut self.timed, TimerRef::new(Kind::Waiter, head));
            if self.timed.waiters.get(head).link.when <= free_at {
                // Its wait ran out by then: it is not granted, whichever
                // of the two the wheel happened to hold first.
                self.time_out_unlinked(head, events);
                continue;
            }
            let w = self.take_waiter_unlinked(head);
            let lock = self.timed.locks.get(slot);
            let (name, old_owner) = lock.key.parts();
            let Some(key) = S::Pair::new(name, w.owner.parts().0) else {
                // Cannot store the new owner: refuse this waiter, try the next.
                self.stats.incr(Stat::NoMemory);
                events(Event {
                    waiter: WaiterId(w.id),
                    name: as_str(name),
                    tag: w.tag,
                    response: Response::new(Status::No),
                });
                continue;
            };
            let old_len = old_owner.len();
            let new_len = w.owner.parts().0.len();
            let token = self.take_token();
            {
                let lock = self.timed.locks.get_mut(slot);
                lock.key = key;
                lock.token = token;
                lock.ident = w.ident;
                lock.told = Told::ONE_WAITER;
                lock.link.when = now + w.ttl + self.slack;
            }
            self.bytes = self.bytes + new_len - old_len;
            self.wheel
                .insert(&mut self.timed, TimerRef::new(Kind::Lock, slot));
            self.stats.incr(Stat::Lock);
            self.stats.incr(Stat::WaitGranted);
            self.announce_grant(slot, &w, events);
            self.grant_same_owner(slot, now, free_at, events);
            return;
        }
    }

    /// Tells waiter `w` it now holds the lock in `slot`.
    fn announce_grant(&self, slot: u32, w: &WaiterSlot<S>, events: &mut impl FnMut(Event<'_>)) {
        let lock = self.timed.locks.get(slot);
        let (name, owner) = lock.key.parts();
        events(Event {
            waiter: WaiterId(w.id),
            name: as_str(name),
            tag: w.tag,
            response: locked(as_str(owner), lock.token, Ttl::from_millis(w.ttl)),
        });
    }

    /// Waiters queued behind the new holder with the same owner already
    /// hold the lock: answer them as re-locks. Waiters whose wait ran out
    /// by `free_at`, when the lock came free, time out on the way.
    fn grant_same_owner(
        &mut self,
        slot: u32,
        now: u64,
        free_at: u64,
        events: &mut impl FnMut(Event<'_>),
    ) {
        loop {
            let (_, Some(q)) = self.find_queue(slot) else {
                return;
            };
            let head = self.queues.get(q).head;
            let lock = self.timed.locks.get(slot);
            let w = self.timed.waiters.get(head);
            if w.link.when <= free_at {
                self.wheel
                    .remove(&mut self.timed, TimerRef::new(Kind::Waiter, head));
                self.time_out_unlinked(head, events);
                continue;
            }
            if w.owner.parts().0 != lock.key.parts().1 || w.ident != lock.ident {
                return;
            }
            self.wheel
                .remove(&mut self.timed, TimerRef::new(Kind::Waiter, head));
            let w = self.take_waiter_unlinked(head);
            // Never shorter than what a waiter answered before it was
            // told: its grant may stand alone if this one is orphaned.
            let when = self.timed.locks.get(slot).link.when;
            self.wheel.rearm(
                &mut self.timed,
                TimerRef::new(Kind::Lock, slot),
                when.max(now + w.ttl + self.slack),
            );
            let lock = self.timed.locks.get_mut(slot);
            lock.told = lock.told.add_waiter();
            self.stats.incr(Stat::Relock);
            self.stats.incr(Stat::WaitGranted);
            self.announce_grant(slot, &w, events);
        }
    }

    fn unlock<'s>(
        &mut self,
        now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
        token: Option<Token>,
        events: &mut impl FnMut(Event<'_>),
    ) -> Response<'s> {
        let (_, found) = self.find_lock(name);
        let Some(slot) = found else {
            self.stats.incr(Stat::UnlockNF);
            return Response::new(Status::Unlocked);
        };
        let l = self.timed.locks.get(slot);
        let is_owner = l.key.parts().1 == owner.as_bytes() && l.ident == ident;
        if !is_owner || token.is_some_and(|t| t.0 != l.token) {
            return self.not_owner(None);
        }
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Lock, slot));
        self.release_unlinked(slot, now, events);
        self.stats.incr(Stat::Unlock);
        let mut r = Response::new(Status::Unlocked);
        r.id = Some(owner);
        r
    }

    fn test_lock<'s>(&mut self, _now: u64, name: &str, owner: &'s str, ident: u16) -> Response<'s> {
        let (_, found) = self.find_lock(name);
        let Some(slot) = found else {
            self.stats.incr(Stat::TestLockNF);
            return Response::new(Status::Unlocked);
        };
        self.stats.incr(Stat::TestLock);
        let l = self.timed.locks.get(slot);
        let left = self.remaining(&l.link);
        if l.key.parts().1 == owner.as_bytes() && l.ident == ident {
            let token = l.token;
            locked(owner, token, left)
        } else {
            self.not_owner(Some(left))
        }
    }

    // -- data ---------------------------------------------------------------

    fn find_data(&self, name: &str) -> (u32, Option<u32>) {
        let h = self.hasher.bytes(name.as_bytes());
        let found = self
            .timed
            .data
            .find(widen(h), |d| d.key.parts().0 == name.as_bytes());
        (h, found)
    }

    fn data_charge(name_and_owner: usize, value: usize) -> usize {
        name_and_owner + value + overhead::<DataSlot<S>>() + 16
    }

    fn remove_data_unlinked(&mut self, slot: u32) {
        let d = self.timed.data.get(slot);
        let (a, b) = d.key.parts();
        self.bytes -= Self::data_charge(a.len() + b.len(), d.value.as_str().len());
        let h = d.hash;
        self.timed.data.remove(slot, widen(h));
    }

    #[allow(clippy::too_many_arguments)]
    fn put<'s>(
        &mut self,
        now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
        ttl: Ttl,
        data: &str,
        revision: Option<Revision>,
    ) -> Response<'s> {
        let (h, found) = self.find_data(name);
        let when = now + ttl.as_millis() + self.slack;
        let done = |rev: u64| {
            let mut r = Response::new(Status::Done);
            r.id = Some(owner);
            r.revision = Some(Revision(rev));
            r.expire = Some(ttl);
            r
        };
        let conflict = |this: &mut Self, rev: u64| {
            this.stats.incr(Stat::Conflict);
            let mut r = Response::new(Status::Conflict);
            r.revision = Some(Revision(rev));
            r
        };
        let Some(slot) = found else {
            if revision.is_some_and(|r| r.0 != 0) {
                return conflict(self, 0);
            }
            let charge = Self::data_charge(name.len() + owner.len(), data.len());
            if !self.fits(charge) {
                return self.no_memory();
            }
            let (Some(key), Some(value)) = (
                S::Pair::new(name.as_bytes(), owner.as_bytes()),
                S::Value::new(data),
            ) else {
                return self.no_memory();
            };
            let entry = DataSlot {
                key,
                value,
                revision: 1,
                link: Link::new(when),
                hash: h,
                ident,
            };
            let Ok(slot) = self.timed.data.insert(entry, widen(h), |d| widen(d.hash)) else {
                return self.no_memory();
            };
            self.wheel
                .insert(&mut self.timed, TimerRef::new(Kind::Data, slot));
            self.bytes += charge;
            self.stats.incr(Stat::PutNew);
            self.stats.add(Stat::DataIn, data.len() as u64);
            return done(1);
        };
        let d = self.timed.data.get(slot);
        if d.key.parts().1 != owner.as_bytes() || d.ident != ident {
            return self.not_owner(None);
        }
        if revision.is_some_and(|r| r.0 != d.revision) {
            let current = d.revision;
            return conflict(self, current);
        }
        let old_len = d.value.as_str().len();
        if data.len() > old_len && !self.fits(data.len() - old_len) {
            return self.no_memory();
        }
        let Some(value) = S::Value::new(data) else {
            return self.no_memory();
        };
        let d = self.timed.data.get_mut(slot);
        d.value = value;
        d.revision += 1;
        let rev = d.revision;
        self.bytes = self.bytes + data.len() - old_len;
        self.wheel
            .rearm(&mut self.timed, TimerRef::new(Kind::Data, slot), when);
        self.stats.incr(Stat::PutUpdate);
        self.stats.add(Stat::DataIn, data.len() as u64);
        done(rev)
    }

    fn get<'s>(&'s mut self, _now: u64, name: &str, owner: &'s str, ident: u16) -> Response<'s> {
        let (_, found) = self.find_data(name);
        let Some(slot) = found else {
            self.stats.incr(Stat::GetNF);
            return Response::new(Status::NotFound);
        };
        let d = self.timed.data.get(slot);
        if d.key.parts().1 != owner.as_bytes() || d.ident != ident {
            return self.not_owner(None);
        }
        let len = d.value.as_str().len() as u64;
        self.stats.incr(Stat::Get);
        self.stats.add(Stat::DataOut, len);
        let d = self.timed.data.get(slot);
        let mut r = Response::new(Status::Done);
        r.id = Some(owner);
        r.data = Some(d.value.as_str());
        r.revision = Some(Revision(d.revision));
        r.expire = Some(self.remaining(&d.link));
        r
    }

    fn erase<'s>(&mut self, name: &str, owner: &'s str, ident: u16) -> Response<'s> {
        let (_, found) = self.find_data(name);
        let Some(slot) = found else {
            self.stats.incr(Stat::EraseNF);
            return Response::new(Status::NotFound);
        };
        let d = self.timed.data.get(slot);
        if d.key.parts().1 != owner.as_bytes() || d.ident != ident {
            return self.not_owner(None);
        }
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Data, slot));
        self.remove_data_unlinked(slot);
        self.stats.incr(Stat::Erased);
        let mut r = Response::new(Status::Done);
        r.id = Some(owner);
        r
    }
}
