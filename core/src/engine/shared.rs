//! Names held by several at once: counting semaphores and read/write
//! locks (PROTOCOL.md section 8, "Semaphores and read/write locks").
//!
//! A *group* is one such name: its kind (a semaphore of N permits, or a
//! read/write lock), its holds (each with its own fencing token, owner,
//! expiry) and its FIFO queue of waiters. A waiter is granted only when it
//! is first in line and its hold fits (a semaphore has a free permit; a
//! reader finds no writer; a writer finds nobody), so a writer in line
//! stops every reader behind it: writers are never starved. A newcomer is
//! granted at once only when nobody waits.
//!
//! Groups share the lock namespace with exclusive locks: a name is at most
//! one of the three at a time, and lives while it has holds or waiters. It
//! is forgotten when both are gone, so its kind (and a semaphore's size)
//! is fixed from its first use until then.
//!
//! Deadlines live in one ordered map, beside the lock wheel, so that
//! [`Engine::advance`] serves them in time order (at one instant, waiters'
//! ends before holds' expiries, as for exclusive locks: a wait that ran out
//! by the time a permit came free is not granted). Only with `alloc`: a
//! fixed-capacity engine answers these requests `BadAction`.
//!
//! Must never admit more holders than a semaphore's permits, a writer
//! beside anyone, or a grant out of queue order; every grant takes the
//! engine's one token counter.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core::num::NonZeroU16;

use super::watch::{Subject, What};
use super::{Engine, Event, IdentityId, Outcome, Storage, WaiterId, WaiterInfo, held_by, locked};
use crate::protocol::{Message, Response, Shape, Status, Token};
use crate::stats::Stat;
use crate::time::{Instant, Ttl};

/// What a group is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GroupKind {
    /// A counting semaphore of this many permits.
    Semaphore(u32),
    /// A read/write lock.
    RwLock,
}

impl GroupKind {
    fn of(shape: Shape) -> Self {
        match shape {
            Shape::Semaphore { permits } => Self::Semaphore(permits),
            Shape::Read | Shape::Write => Self::RwLock,
        }
    }

    pub(super) fn code(self) -> (u8, u32) {
        match self {
            Self::Semaphore(n) => (0, n),
            Self::RwLock => (1, 0),
        }
    }

    pub(super) fn decode(code: u8, permits: u32) -> Option<Self> {
        match (code, permits) {
            (0, n) if n > 0 => Some(Self::Semaphore(n)),
            (1, 0) => Some(Self::RwLock),
            _ => None,
        }
    }
}

/// One acquisition that holds a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Hold {
    pub(super) owner: String,
    pub(super) ident: u16,
    pub(super) token: u64,
    /// The exclusive side of a read/write lock.
    pub(super) write: bool,
    /// Expiry (engine milliseconds, slack included).
    pub(super) when: u64,
    /// When it was granted.
    pub(super) since: u64,
    /// A request was answered `Locked` for it directly (granted at once,
    /// or extended): an undeliverable grant event never takes it back.
    pub(super) direct: bool,
}

/// One queued acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Waiting {
    pub(super) id: u64,
    pub(super) owner: String,
    pub(super) ident: u16,
    pub(super) tag: u64,
    pub(super) ttl: u64,
    pub(super) write: bool,
    /// End of its wait (engine milliseconds, slack included).
    pub(super) when: u64,
    /// When it joined the queue.
    pub(super) since: u64,
}

/// One semaphore or read/write lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Group {
    pub(super) kind: GroupKind,
    /// What a request of another kind is told (`Error`).
    pub(super) label: String,
    pub(super) holds: Vec<Hold>,
    pub(super) queue: VecDeque<Waiting>,
}

impl Group {
    pub(super) fn new(kind: GroupKind) -> Self {
        let label = match kind {
            GroupKind::Semaphore(1) => String::from("FileName is a semaphore of 1 permit"),
            GroupKind::Semaphore(n) => format!("FileName is a semaphore of {n} permits"),
            GroupKind::RwLock => String::from("FileName is a read/write lock"),
        };
        Self {
            kind,
            label,
            holds: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// Whether a hold (`write` or not) fits beside the current holds.
    pub(super) fn admits(&self, write: bool) -> bool {
        match self.kind {
            GroupKind::Semaphore(n) => self.holds.len() < n as usize,
            GroupKind::RwLock if write => self.holds.is_empty(),
            GroupKind::RwLock => !self.holds.iter().any(|h| h.write),
        }
    }
}

/// What a deadline in [`Shared::timers`] ends. Waiters sort first: at one
/// instant a wait ends before a hold expires.
pub(super) const TIMER_WAITER: u8 = 0;
pub(super) const TIMER_HOLD: u8 = 1;

/// Every group, and the indexes that find them by deadline and by waiter.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) groups: BTreeMap<String, Group>,
    /// `(deadline, TIMER_*, waiter number or token)` to the group's name.
    pub(super) timers: BTreeMap<(u64, u8, u64), String>,
    /// Waiter number to the group's name.
    pub(super) waiters: BTreeMap<u64, String>,
    /// Groups whose queue may move at the next instant (a waiter left it
    /// outside [`Engine::advance`], which has no one to tell then).
    /// Each with the instant its queue could first move.
    pub(super) pumps: BTreeMap<String, u64>,
    /// Live holds.
    pub(super) holds: usize,
}

/// Bytes charged for a group's name and bookkeeping (besides its holds).
pub(super) fn group_charge(name: &str, label: &str) -> usize {
    // The name is kept in the group map and the label beside it.
    name.len() + label.len() + core::mem::size_of::<Group>() + 64
}

/// Bytes charged for one hold or one waiter: its owner, its copy of the
/// name in the deadline index (and the waiter index), and the entries.
/// A waiter is charged what its grant will be, so a grant never needs
/// more memory than its wait had.
pub(super) fn entry_charge(name: &str, owner: &str) -> usize {
    2 * name.len()
        + owner.len()
        + core::mem::size_of::<Hold>().max(core::mem::size_of::<Waiting>())
        + 2 * (core::mem::size_of::<(u64, u8, u64)>() + core::mem::size_of::<String>() + 16)
}

impl Shared {
    /// Holds and waiters of every group, for the engine's counters.
    pub(super) fn waiter_count(&self) -> usize {
        self.waiters.len()
    }
}

impl<S: Storage> Engine<S> {
    /// Whether `name` is a semaphore or read/write lock now.
    pub(super) fn group_label(&self, name: &str) -> Option<&str> {
        self.shared.groups.get(name).map(|g| g.label.as_str())
    }

    fn conflict<'a>(&mut self, text: &'a str) -> Response<'a> {
        self.stats.incr(Stat::Conflict);
        let mut r = Response::new(Status::Conflict);
        r.error = Some(Message::Text(text));
        r
    }

    /// `Lock` with `Permits` or `Mode`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn acquire<'s>(
        &'s mut self,
        now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
        shape: Shape,
        ttl: Ttl,
        wait: Option<Ttl>,
        token: Option<Token>,
        tag: u64,
    ) -> Outcome<'s> {
        if self.find_lock(name).1.is_some() || self.reserved(name) {
            return Outcome::Reply(self.conflict("FileName is an exclusive lock"));
        }
        let kind = GroupKind::of(shape);
        let write = shape == Shape::Write;
        let existing = self.shared.groups.get(name).map(|g| g.kind);
        if existing.is_some_and(|k| k != kind) {
            // The label lives as long as the group; answer with a copy of
            // its reference through `self` after the counter moves.
            self.stats.incr(Stat::Conflict);
            let mut r = Response::new(Status::Conflict);
            r.error = self
                .shared
                .groups
                .get(name)
                .map(|g| Message::Text(g.label.as_str()));
            return Outcome::Reply(r);
        }
        if let Some(token) = token {
            return Outcome::Reply(self.extend_hold(now, name, owner, ident, write, ttl, token));
        }
        let charge = entry_charge(name, owner);
        let new_group = existing.is_none();
        let group_bytes = if new_group {
            group_charge(name, &Group::new(kind).label)
        } else {
            0
        };
        let grant_now = self
            .shared
            .groups
            .get(name)
            .is_none_or(|g| g.queue.is_empty() && g.admits(write));
        let wait = wait.filter(|w| !w.is_zero());
        if !grant_now && wait.is_none() {
            return Outcome::Reply(self.not_owner(None));
        }
        if !self.fits(charge + group_bytes) {
            return Outcome::Reply(self.no_memory());
        }
        if new_group {
            self.shared
                .groups
                .insert(String::from(name), Group::new(kind));
            self.bytes += group_bytes;
        }
        self.bytes += charge;
        if grant_now {
            let token = self.take_token();
            let when = now + ttl.as_millis() + self.slack;
            self.add_hold(
                name,
                Hold {
                    owner: String::from(owner),
                    ident,
                    token,
                    write,
                    when,
                    since: now,
                    direct: true,
                },
            );
            self.stats.incr(Stat::Lock);
            self.note_hold(What::Granted, name, token);
            return Outcome::Reply(locked(owner, token, ttl));
        }
        let Some(wait) = wait else {
            unreachable!("checked above")
        };
        let id = self.next_waiter;
        self.next_waiter += 1;
        let when = now + wait.as_millis() + self.slack;
        self.add_waiter(
            name,
            Waiting {
                id,
                owner: String::from(owner),
                ident,
                tag,
                ttl: ttl.as_millis(),
                write,
                when,
                since: now,
            },
        );
        self.stats.incr(Stat::Wait);
        Outcome::Queued(WaiterId(id))
    }

    /// Puts a hold into its (existing) group and the deadline index.
    pub(super) fn add_hold(&mut self, name: &str, hold: Hold) {
        self.shared
            .timers
            .insert((hold.when, TIMER_HOLD, hold.token), String::from(name));
        self.shared.holds += 1;
        if let Some(g) = self.shared.groups.get_mut(name) {
            g.holds.push(hold);
        }
    }

    /// Puts a waiter at the tail of its (existing) group's queue and into
    /// the indexes.
    pub(super) fn add_waiter(&mut self, name: &str, w: Waiting) {
        self.shared
            .timers
            .insert((w.when, TIMER_WAITER, w.id), String::from(name));
        self.shared.waiters.insert(w.id, String::from(name));
        if let Some(g) = self.shared.groups.get_mut(name) {
            g.queue.push_back(w);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn extend_hold<'s>(
        &mut self,
        now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
        write: bool,
        ttl: Ttl,
        token: Token,
    ) -> Response<'s> {
        let when = now + ttl.as_millis() + self.slack;
        let closed = &self.sessions.closed;
        let Some(g) = self.shared.groups.get_mut(name) else {
            // An extension never brings a lost hold back.
            return self.not_owner(None);
        };
        let Some(h) = g.holds.iter_mut().find(|h| {
            h.token == token.0
                && h.write == write
                && !closed.contains_key(&h.token)
                && held_by(h.owner.as_bytes(), h.ident, owner.as_bytes(), ident)
        }) else {
            return self.not_owner(None);
        };
        let old = h.when;
        h.when = when;
        h.direct = true;
        if let Some(n) = self.shared.timers.remove(&(old, TIMER_HOLD, token.0)) {
            self.shared.timers.insert((when, TIMER_HOLD, token.0), n);
        }
        self.stats.incr(Stat::Relock);
        locked(owner, token.0, ttl)
    }

    /// `Unlock` of a name that is a group; `None` if it is not one.
    /// With `token`: that hold of the caller's; without: every hold of
    /// the caller's. `NotOwner` if the caller holds none of them.
    pub(super) fn release_shared<'s>(
        &mut self,
        now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
        token: Option<Token>,
        events: &mut impl FnMut(Event<'_>),
    ) -> Option<Response<'s>> {
        let g = self.shared.groups.get(name)?;
        let mine: Vec<u64> = g
            .holds
            .iter()
            .filter(|h| {
                held_by(h.owner.as_bytes(), h.ident, owner.as_bytes(), ident)
                    && token.is_none_or(|t| t.0 == h.token)
                    && !self.closed(h.token)
            })
            .map(|h| h.token)
            .collect();
        if mine.is_empty() {
            return Some(self.not_owner(None));
        }
        for t in mine {
            self.note_hold(What::Released, name, t);
            self.drop_hold(name, t, now);
            self.stats.incr(Stat::Unlock);
        }
        self.pump(name, now, now, events);
        let mut r = Response::new(Status::Unlocked);
        r.id = Some(owner);
        Some(r)
    }

    /// An administrator's revocation of a name that is a group; `None` if
    /// it is not one. With `token`: that hold, whoever holds it (`NotOwner`
    /// if it is gone); without: every hold. The queue moves at once.
    pub(super) fn revoke_shared<'s>(
        &mut self,
        now: u64,
        name: &str,
        token: Option<Token>,
        events: &mut impl FnMut(Event<'_>),
    ) -> Option<Response<'s>> {
        let g = self.shared.groups.get(name)?;
        let gone: Vec<u64> = g
            .holds
            .iter()
            .filter(|h| token.is_none_or(|t| t.0 == h.token))
            .map(|h| h.token)
            .collect();
        if token.is_some() && gone.is_empty() {
            return Some(self.not_owner(None));
        }
        for &t in &gone {
            self.note_hold(What::Released, name, t);
            self.drop_hold(name, t, now);
            self.stats.incr(Stat::Revoked);
        }
        self.pump(name, now, now, events);
        let mut r = Response::new(Status::Unlocked);
        r.token = token;
        Some(r)
    }

    /// `TestLock` of a name that is a group; `None` if it is not one.
    /// `Locked` (with the token of the caller's earliest hold) if the
    /// caller holds it, else `NotOwner` with what the name is.
    pub(super) fn test_shared<'s>(
        &'s mut self,
        name: &str,
        owner: &'s str,
        ident: u16,
    ) -> Option<Response<'s>> {
        let elapsed = self.wheel.elapsed();
        let slack = self.slack;
        let mine = self
            .shared
            .groups
            .get(name)?
            .holds
            .iter()
            .filter(|h| {
                held_by(h.owner.as_bytes(), h.ident, owner.as_bytes(), ident)
                    && !self.closed(h.token)
            })
            .min_by_key(|h| h.token)
            .map(|h| (h.token, h.when));
        self.stats.incr(Stat::TestLock);
        if let Some((token, when)) = mine {
            let left = when.saturating_sub(elapsed);
            let left = left.saturating_sub(slack).max(left.min(1));
            return Some(locked(owner, token, Ttl::from_millis(left)));
        }
        self.stats.incr(Stat::NotOwner);
        let mut r = Response::new(Status::NotOwner);
        r.error = self
            .shared
            .groups
            .get(name)
            .map(|g| Message::Text(g.label.as_str()));
        Some(r)
    }

    /// Tells the watch feed about hold `token` of group `name` (which
    /// must still hold it).
    pub(super) fn note_hold(&mut self, what: What, name: &str, token: u64) {
        let Some(g) = self.shared.groups.get(name) else {
            return;
        };
        let Some(h) = g.holds.iter().find(|h| h.token == token) else {
            return;
        };
        let subject = match g.kind {
            GroupKind::Semaphore(n) => Subject::Semaphore(n),
            GroupKind::RwLock => Subject::ReadWrite { write: h.write },
        };
        self.feed.note(
            what,
            subject,
            name.as_bytes(),
            h.owner.as_bytes(),
            h.ident,
            Some(token),
            None,
        );
    }

    /// Removes hold `token` of group `name` (not its group) and its
    /// deadline, recording how long it was held until `free_at`.
    pub(super) fn drop_hold(&mut self, name: &str, token: u64, free_at: u64) -> Option<Hold> {
        let g = self.shared.groups.get_mut(name)?;
        let at = g.holds.iter().position(|h| h.token == token)?;
        let h = g.holds.remove(at);
        self.shared.timers.remove(&(h.when, TIMER_HOLD, h.token));
        self.shared.holds -= 1;
        self.bytes -= entry_charge(name, &h.owner);
        self.timings
            .hold
            .record(free_at.min(h.when).saturating_sub(h.since));
        Some(h)
    }

    /// Removes waiter `id` of group `name` from its queue and indexes.
    fn drop_waiter(&mut self, name: &str, id: u64) -> Option<Waiting> {
        let g = self.shared.groups.get_mut(name)?;
        let at = g.queue.iter().position(|w| w.id == id)?;
        let w = g.queue.remove(at)?;
        self.shared.timers.remove(&(w.when, TIMER_WAITER, w.id));
        self.shared.waiters.remove(&w.id);
        self.bytes -= entry_charge(name, &w.owner);
        Some(w)
    }

    /// Grants the queue of `name` from its head while the head fits, at
    /// `now`; a permit came free at `free_at`. Forgets the group if it is
    /// left with nobody.
    pub(super) fn pump(
        &mut self,
        name: &str,
        now: u64,
        free_at: u64,
        events: &mut impl FnMut(Event<'_>),
    ) {
        loop {
            let Some(g) = self.shared.groups.get(name) else {
                return;
            };
            let Some(head) = g.queue.front() else {
                break;
            };
            let (id, write, ended) = (head.id, head.write, head.when <= free_at);
            if ended {
                // Its wait ran out by the time the permit came free.
                self.time_out_shared(name, id, events);
                continue;
            }
            if !g.admits(write) {
                break;
            }
            let Some(w) = self.drop_waiter(name, id) else {
                break;
            };
            // The waiter's charge becomes the hold's (the same amount).
            self.bytes += entry_charge(name, &w.owner);
            let token = self.take_token();
            self.add_hold(
                name,
                Hold {
                    owner: w.owner,
                    ident: w.ident,
                    token,
                    write: w.write,
                    when: now + w.ttl + self.slack,
                    since: now,
                    direct: false,
                },
            );
            self.timings.queued.record(now.saturating_sub(w.since));
            self.stats.incr(Stat::Lock);
            self.stats.incr(Stat::WaitGranted);
            self.note_hold(What::Granted, name, token);
            let owner = self
                .shared
                .groups
                .get(name)
                .and_then(|g| g.holds.last())
                .map_or("", |h| h.owner.as_str());
            events(Event {
                waiter: WaiterId(w.id),
                name,
                tag: w.tag,
                response: locked(owner, token, Ttl::from_millis(w.ttl)),
            });
            self.session_granted(w.id, token);
        }
        self.forget_if_empty(name);
    }

    fn forget_if_empty(&mut self, name: &str) {
        let empty = self
            .shared
            .groups
            .get(name)
            .is_some_and(|g| g.holds.is_empty() && g.queue.is_empty());
        if empty {
            if let Some(g) = self.shared.groups.remove(name) {
                self.bytes -= group_charge(name, &g.label);
            }
            self.shared.pumps.remove(name);
        }
    }

    pub(super) fn time_out_shared(
        &mut self,
        name: &str,
        id: u64,
        events: &mut impl FnMut(Event<'_>),
    ) {
        let Some(w) = self.drop_waiter(name, id) else {
            return;
        };
        self.stats.incr(Stat::WaitTimeout);
        self.stats.incr(Stat::NotOwner);
        events(Event {
            waiter: WaiterId(w.id),
            name,
            tag: w.tag,
            response: Response::new(Status::NotOwner),
        });
    }

    /// Serves the groups' deadlines up to `now`, in time order, after the
    /// queues a cancel left to move.
    pub(super) fn advance_shared(&mut self, now: u64, events: &mut impl FnMut(Event<'_>)) {
        while let Some((name, at)) = self.shared.pumps.pop_first() {
            self.pump(&name, now, at.min(now), events);
        }
        loop {
            let Some((&(when, what, id), _)) = self.shared.timers.first_key_value() else {
                return;
            };
            if when > now {
                return;
            }
            let Some((_, name)) = self.shared.timers.pop_first() else {
                return;
            };
            if what == TIMER_WAITER {
                self.time_out_shared(&name, id, events);
                // A writer first in line may have held readers back.
                self.pump(&name, now, when, events);
            } else {
                self.stats.incr(Stat::ExpiredLock);
                self.note_hold(What::Expired, &name, id);
                self.drop_hold(&name, id, when);
                self.pump(&name, now, when, events);
            }
        }
    }

    /// The earliest deadline of the groups (or now, if a queue must move).
    pub(super) fn next_shared_deadline(&self) -> Option<u64> {
        if !self.shared.pumps.is_empty() {
            return Some(self.wheel.elapsed());
        }
        self.shared.timers.first_key_value().map(|(k, _)| k.0)
    }

    /// A waiter of a group leaves (its connection closed). The queue moves
    /// at the next instant the engine sees (the next deadline is now).
    pub(super) fn cancel_shared(&mut self, id: u64) -> bool {
        let Some(name) = self.shared.waiters.get(&id).cloned() else {
            return false;
        };
        if self.drop_waiter(&name, id).is_none() {
            return false;
        }
        self.stats.incr(Stat::WaitCancel);
        let at = self.wheel.elapsed();
        let first = self.shared.pumps.get(&name).map_or(at, |&t| t.min(at));
        self.shared.pumps.insert(name, first);
        true
    }

    /// Every waiter of every group leaves (a new leader's first entry).
    pub(super) fn cancel_all_shared(&mut self) -> usize {
        let ids: Vec<u64> = self.shared.waiters.keys().copied().collect();
        let n = ids.len();
        for id in ids {
            self.cancel_shared(id);
        }
        n
    }

    /// A grant event for hold `token` of group `name` could not be
    /// delivered: the hold is taken back, unless a request was answered
    /// `Locked` for it directly since (it was extended by its token).
    pub(super) fn orphaned_shared(
        &mut self,
        now: u64,
        name: &str,
        token: Token,
        events: &mut impl FnMut(Event<'_>),
    ) -> bool {
        let Some(g) = self.shared.groups.get(name) else {
            return false;
        };
        let Some(h) = g.holds.iter().find(|h| h.token == token.0) else {
            return false;
        };
        self.stats.incr(Stat::WaitOrphaned);
        if h.direct {
            return false;
        }
        self.note_hold(What::Released, name, token.0);
        self.drop_hold(name, token.0, now);
        self.pump(name, now, now, events);
        true
    }

    /// Live holds of semaphores and read/write locks.
    pub fn hold_count(&self) -> usize {
        self.shared.holds
    }

    /// The holds of group `name` (semaphore or read/write lock), in grant
    /// order, as [`SharedHold`]s; empty if `name` is not one.
    pub fn holds<'e>(&'e self, name: &str) -> impl Iterator<Item = SharedHold<'e>> + 'e {
        let now = self.wheel.elapsed();
        let slack = self.slack;
        self.shared
            .groups
            .get(name)
            .into_iter()
            .flat_map(|g| g.holds.iter())
            .map(move |h| {
                let left = h.when.saturating_sub(now);
                SharedHold {
                    owner: h.owner.as_str(),
                    identity: NonZeroU16::new(h.ident).map(IdentityId),
                    token: Token(h.token),
                    write: h.write,
                    remaining: Ttl::from_millis(left.saturating_sub(slack).max(left.min(1))),
                    held: Ttl::from_millis(now.saturating_sub(h.since)),
                }
            })
    }

    /// The requests queued for group `name`, first in line first, each
    /// with whether it asks for the exclusive side of a read/write lock
    /// (as of the last instant the engine saw); empty if `name` is not
    /// one.
    pub fn group_waiters<'e>(
        &'e self,
        name: &str,
    ) -> impl Iterator<Item = (WaiterInfo<'e>, bool)> + 'e {
        let now = self.wheel.elapsed();
        let slack = self.slack;
        self.shared
            .groups
            .get(name)
            .into_iter()
            .flat_map(|g| g.queue.iter())
            .map(move |w| {
                let left = w.when.saturating_sub(now);
                let info = WaiterInfo {
                    owner: w.owner.as_str(),
                    identity: NonZeroU16::new(w.ident).map(IdentityId),
                    waited: Ttl::from_millis(now.saturating_sub(w.since)),
                    wait_left: Ttl::from_millis(left.saturating_sub(slack).max(left.min(1))),
                    ttl: Ttl::from_millis(w.ttl),
                };
                (info, w.write)
            })
    }

    /// Every semaphore and read/write lock: its name, its permits (`None`
    /// for a read/write lock), how many hold it and how many wait.
    pub fn groups(&self) -> impl Iterator<Item = GroupInfo<'_>> {
        self.shared.groups.iter().map(|(name, g)| GroupInfo {
            name: name.as_str(),
            permits: match g.kind {
                GroupKind::Semaphore(n) => Some(n),
                GroupKind::RwLock => None,
            },
            holds: g.holds.len(),
            waiters: g.queue.len(),
        })
    }

    /// The semaphore or read/write lock `name`, if it is one.
    pub fn group(&self, name: &str) -> Option<GroupInfo<'_>> {
        self.shared
            .groups
            .get_key_value(name)
            .map(|(name, g)| GroupInfo {
                name: name.as_str(),
                permits: match g.kind {
                    GroupKind::Semaphore(n) => Some(n),
                    GroupKind::RwLock => None,
                },
                holds: g.holds.len(),
                waiters: g.queue.len(),
            })
    }

    /// The waiter numbers queued for group `name`, first in line first.
    pub fn group_queue<'e>(&'e self, name: &str) -> impl Iterator<Item = (WaiterId, bool)> + 'e {
        self.shared
            .groups
            .get(name)
            .into_iter()
            .flat_map(|g| g.queue.iter())
            .map(|w| (WaiterId(w.id), w.write))
    }

    /// The instant of the next deadline of the groups, for tests.
    #[doc(hidden)]
    pub fn next_group_deadline(&self) -> Option<Instant> {
        self.next_shared_deadline().map(Instant::from_millis)
    }
}

/// One hold of a semaphore or read/write lock, as [`Engine::holds`] shows
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedHold<'e> {
    /// The holder's owner ID.
    pub owner: &'e str,
    /// The holder's identity, if it used one.
    pub identity: Option<IdentityId>,
    /// Its fencing token.
    pub token: Token,
    /// Whether it is the exclusive side of a read/write lock.
    pub write: bool,
    /// Time left at the engine's current instant.
    pub remaining: Ttl,
    /// How long it has been held, at the engine's current instant
    /// (extensions continue a hold).
    pub held: Ttl,
}

/// A semaphore or read/write lock, as [`Engine::groups`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupInfo<'e> {
    /// Its name.
    pub name: &'e str,
    /// A semaphore's permits; `None` for a read/write lock.
    pub permits: Option<u32>,
    /// Live holds.
    pub holds: usize,
    /// Queued waiters.
    pub waiters: usize,
}
