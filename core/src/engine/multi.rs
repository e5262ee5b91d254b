//! Multi-locks: several exclusive locks taken at once, all or none
//! (`LockAll`, PROTOCOL.md section 8, "Multi-locks").
//!
//! A granted multi-lock is nothing but ordinary exclusive locks, one per
//! name, each with its own fencing token (taken from the one counter in one
//! step, so they are consecutive), extended and released one by one. What
//! this module adds is the wait: a `LockAll` that cannot be granted at once
//! joins the queue of **every** name it needs in one step, so all queues
//! agree with the one arrival order (waiter numbers). It is granted only
//! when it is first in line on every one of its names and all of them are
//! free, and then it takes them all in one step. Nobody ever holds some of
//! its names while waiting for others (no hold-and-wait, so no deadlock),
//! and the oldest waiter is first on each of its queues, so it is granted
//! as soon as its names' holders are gone (no starvation).
//!
//! The queue of a name has two parts. The lock table's own FIFO (see
//! `queue`) holds the plain `Lock` waiters that arrived before any
//! multi-lock waited for the name; this module's queue holds every waiter
//! (multi-lock, or a plain `Lock` arriving after one) that came later. So
//! every waiter in the table's queue is older than every waiter here: the
//! table's queue is served first (as always, by handing the lock over),
//! and only once the name is free does this queue move. While a name has
//! a waiter here it is *reserved*: a plain `Lock` is not granted even if
//! the name is free (it would overtake), and a semaphore or read/write
//! lock cannot take the name.
//!
//! A waiter granted here was not answered directly; if its answer cannot
//! be delivered, the host takes it back with [`Engine::orphaned`] on the
//! first name and token, which frees every name of the grant that nobody
//! was told about since (see `locks::Told`).
//!
//! Only with `alloc`: a fixed-capacity engine answers `LockAll`
//! `BadAction`.
//!
//! Must never grant a name that is held, grant some names of a request but
//! not others, grant out of queue order, or leave a waiter queued while
//! it is first on each of its names and they are all free.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::locks::Told;
use super::store::sealed::Pair as _;
use super::wheel::{Kind, TimerRef};
use super::{Engine, Event, LockSlot, Outcome, Storage, WaiterId, held_by, locked, overhead};
use crate::protocol::{Message, Response, Status, Token, TokenList};
use crate::stats::Stat;
use crate::time::Ttl;

/// One queued `LockAll` (or a plain `Lock` queued behind one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MultiWaiting {
    /// The names, in request order.
    pub(super) names: Vec<String>,
    pub(super) owner: String,
    pub(super) ident: u16,
    pub(super) tag: u64,
    pub(super) ttl: u64,
    /// End of its wait (engine milliseconds, slack included).
    pub(super) when: u64,
    /// When it joined the queues.
    pub(super) since: u64,
    /// A plain `Lock`: answered as one (without `Tokens`).
    pub(super) single: bool,
}

/// Every multi-lock waiter and the indexes around them.
#[derive(Debug, Default)]
pub(super) struct Multi {
    /// By waiter number (the global arrival order).
    pub(super) waiting: BTreeMap<u64, MultiWaiting>,
    /// Each reserved name's queue: waiter numbers, first in line first.
    pub(super) queues: BTreeMap<String, BTreeSet<u64>>,
    /// `(end of wait, waiter number)`.
    pub(super) timers: BTreeSet<(u64, u64)>,
    /// Reserved names that came free (or whose first waiter left), with
    /// the instant: their queue may move.
    pub(super) pumps: BTreeSet<(u64, String)>,
    /// Grants made to waiters, by their first token: the names, so that an
    /// undeliverable grant is taken back whole. Forgotten when the first
    /// name's grant ends.
    pub(super) grants: BTreeMap<u64, Vec<String>>,
    /// The text of the last answer (`Tokens`, or why it was refused).
    text: String,
}

/// Bytes charged for a waiter: what its grants will need (so a grant
/// never needs more memory than its wait had) and its own bookkeeping.
pub(super) fn waiter_charge<S: Storage>(names: &[String], owner: &str) -> usize {
    names
        .iter()
        .map(|n| {
            grant_charge::<S>(n, owner)
                + record_charge(n)
                + 2 * n.len()
                + core::mem::size_of::<String>()
                + 48
        })
        .sum::<usize>()
        + owner.len()
        + core::mem::size_of::<MultiWaiting>()
        + 64
}

/// What [`Engine::grant_new`] charges for one lock.
fn grant_charge<S: Storage>(name: &str, owner: &str) -> usize {
    name.len() + owner.len() + overhead::<LockSlot<S>>()
}

/// Bytes charged for one name of a remembered grant.
pub(super) fn record_charge(name: &str) -> usize {
    name.len() + core::mem::size_of::<String>() + 16
}

/// Why a `LockAll` is refused without waiting.
enum Refusal {
    Held,
    Awaited,
    Mine,
}

impl<S: Storage> Engine<S> {
    /// Whether `name` has multi-lock waiters (a plain `Lock` must queue
    /// behind them, a semaphore or read/write lock cannot take it).
    pub(super) fn reserved(&self, name: &str) -> bool {
        self.multi.queues.contains_key(name)
    }

    /// `LockAll`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lock_all<'s>(
        &'s mut self,
        now: u64,
        names: &[&str],
        owner: &'s str,
        ident: u16,
        ttl: Ttl,
        wait: Option<Ttl>,
        tag: u64,
        events: &mut impl FnMut(Event<'_>),
    ) -> Outcome<'s> {
        if let Some(i) = names.iter().position(|n| self.group_label(n).is_some()) {
            self.stats.incr(Stat::Conflict);
            let mut r = Response::new(Status::Conflict);
            r.error = self.group_label(names[i]).map(Message::Text);
            return Outcome::Reply(r);
        }
        if let Some(first) = self.relock_all(now, names, owner, ident, ttl) {
            let mut r = locked(owner, first, ttl);
            r.tokens = TokenList::parse(&self.multi.text);
            return Outcome::Reply(r);
        }
        let mut refusal = None;
        for (i, name) in names.iter().enumerate() {
            let why = match self.find_lock(name).1 {
                Some(slot) => {
                    let l = self.timed.locks.get(slot);
                    if held_by(l.key.parts().1, l.ident, owner.as_bytes(), ident) {
                        // Waiting for oneself would only end with the TTL.
                        Refusal::Mine
                    } else {
                        Refusal::Held
                    }
                }
                None if self.reserved(name) => Refusal::Awaited,
                None => continue,
            };
            if matches!(why, Refusal::Mine) {
                refusal = Some((i, why));
                break;
            }
            refusal = refusal.or(Some((i, why)));
        }
        let wait = wait.filter(|w| !w.is_zero());
        match (refusal, wait) {
            (None, _) => {
                let Some(first) = self.grant_all(now, names, owner, ident, ttl.as_millis(), events)
                else {
                    return Outcome::Reply(self.no_memory());
                };
                self.write_tokens((0..names.len() as u64).map(|i| first + i));
                let mut r = locked(owner, first, ttl);
                r.tokens = TokenList::parse(&self.multi.text);
                Outcome::Reply(r)
            }
            (Some((i, why)), w) if w.is_none() || matches!(why, Refusal::Mine) => {
                self.stats.incr(Stat::NotOwner);
                self.multi.text.clear();
                let _ = match why {
                    Refusal::Held => write!(self.multi.text, "lock {:?} is held", names[i]),
                    Refusal::Awaited => write!(
                        self.multi.text,
                        "lock {:?} is awaited by an earlier request",
                        names[i]
                    ),
                    Refusal::Mine => write!(
                        self.multi.text,
                        "lock {:?} is already held by this ID",
                        names[i]
                    ),
                };
                let mut r = Response::new(Status::NotOwner);
                r.error = Some(Message::Text(&self.multi.text));
                Outcome::Reply(r)
            }
            (Some(_), w) => {
                let wait = w.unwrap_or(Ttl::ZERO);
                self.enqueue_multi(now, names, owner, ident, ttl, wait, tag, false)
            }
        }
    }

    /// Writes `tokens` as the answer's `Tokens` text.
    fn write_tokens(&mut self, tokens: impl Iterator<Item = u64>) {
        self.multi.text.clear();
        self.multi.text.push('[');
        for (i, t) in tokens.enumerate() {
            if i > 0 {
                self.multi.text.push(',');
            }
            let _ = write!(self.multi.text, "{t}");
        }
        self.multi.text.push(']');
    }

    /// A `LockAll` of names the caller holds, every one of them (a resend
    /// of one that was granted, say): a re-lock of each, as a `Lock` of
    /// one's own lock is; their tokens become the answer's text, and the
    /// first is returned. `None` otherwise.
    fn relock_all(
        &mut self,
        now: u64,
        names: &[&str],
        owner: &str,
        ident: u16,
        ttl: Ttl,
    ) -> Option<u64> {
        let mut slots = Vec::with_capacity(names.len());
        for name in names {
            let slot = self.find_lock(name).1?;
            let l = self.timed.locks.get(slot);
            if !held_by(l.key.parts().1, l.ident, owner.as_bytes(), ident) || self.closed(l.token) {
                return None;
            }
            slots.push(slot);
        }
        let when = now + ttl.as_millis() + self.slack;
        for &slot in &slots {
            self.wheel
                .rearm(&mut self.timed, TimerRef::new(Kind::Lock, slot), when);
            self.timed.locks.get_mut(slot).told = Told::DIRECT;
            self.stats.incr(Stat::Relock);
        }
        let tokens: Vec<u64> = slots
            .iter()
            .map(|&s| self.timed.locks.get(s).token)
            .collect();
        self.write_tokens(tokens.iter().copied());
        tokens.first().copied()
    }

    /// Grants every one of `names` (all free) to `owner` in one step, with
    /// consecutive tokens; all or none. Returns the first token.
    fn grant_all(
        &mut self,
        now: u64,
        names: &[&str],
        owner: &str,
        ident: u16,
        ttl: u64,
        events: &mut impl FnMut(Event<'_>),
    ) -> Option<u64> {
        let charge: usize = names.iter().map(|n| grant_charge::<S>(n, owner)).sum();
        if !self.fits(charge) {
            return None;
        }
        let first = self.next_token;
        for (i, name) in names.iter().enumerate() {
            let (h, _) = self.find_lock(name);
            let r = self.grant_new(now, h, name, owner, ident, Ttl::from_millis(ttl));
            if r.status != Status::Locked {
                // The table could not grow: give back what was taken.
                for done in &names[..i] {
                    if let (_, Some(slot)) = self.find_lock(done) {
                        self.note_released(slot);
                        self.wheel
                            .remove(&mut self.timed, TimerRef::new(Kind::Lock, slot));
                        self.release_unlinked(slot, now, events);
                    }
                }
                return None;
            }
        }
        Some(first)
    }

    /// Queues a `LockAll` (or, `single`, a plain `Lock` behind one) on
    /// every one of its names.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue_multi<'s>(
        &mut self,
        now: u64,
        names: &[&str],
        owner: &'s str,
        ident: u16,
        ttl: Ttl,
        wait: Ttl,
        tag: u64,
        single: bool,
    ) -> Outcome<'s> {
        let w = MultiWaiting {
            names: names.iter().map(|n| String::from(*n)).collect(),
            owner: String::from(owner),
            ident,
            tag,
            ttl: ttl.as_millis(),
            when: now + wait.as_millis() + self.slack,
            since: now,
            single,
        };
        let charge = waiter_charge::<S>(&w.names, owner);
        if !self.fits(charge) {
            return Outcome::Reply(self.no_memory());
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.bytes += charge;
        self.insert_multi(id, w);
        self.stats.incr(Stat::Wait);
        Outcome::Queued(WaiterId(id))
    }

    /// Puts waiter `id` into the indexes (its charge already counted).
    pub(super) fn insert_multi(&mut self, id: u64, w: MultiWaiting) {
        for n in &w.names {
            self.multi.queues.entry(n.clone()).or_default().insert(id);
        }
        self.multi.timers.insert((w.when, id));
        self.multi.waiting.insert(id, w);
    }

    /// Takes waiter `id` out of every index and gives back its charge.
    fn remove_multi(&mut self, id: u64) -> Option<MultiWaiting> {
        let w = self.multi.waiting.remove(&id)?;
        for n in &w.names {
            if let Some(q) = self.multi.queues.get_mut(n.as_str()) {
                q.remove(&id);
                if q.is_empty() {
                    self.multi.queues.remove(n.as_str());
                }
            }
        }
        self.multi.timers.remove(&(w.when, id));
        self.bytes -= waiter_charge::<S>(&w.names, &w.owner);
        Some(w)
    }

    /// Whether waiter `id` is first in line on each of its names and they
    /// are all free.
    pub(super) fn multi_ready(&self, id: u64) -> bool {
        self.multi.waiting.get(&id).is_some_and(|w| {
            w.names.iter().all(|n| {
                self.find_lock(n).1.is_none()
                    && self.multi.queues.get(n.as_str()).and_then(|q| q.first()) == Some(&id)
            })
        })
    }

    /// Grants waiter `id` if it is ready; whether it was.
    fn try_grant(&mut self, id: u64, now: u64, events: &mut impl FnMut(Event<'_>)) -> bool {
        if !self.multi_ready(id) {
            return false;
        }
        let Some(w) = self.remove_multi(id) else {
            return false;
        };
        let names: Vec<&str> = w.names.iter().map(String::as_str).collect();
        let Some(first) = self.grant_all(now, &names, &w.owner, w.ident, w.ttl, events) else {
            self.stats.incr(Stat::NoMemory);
            events(Event {
                waiter: WaiterId(id),
                name: names[0],
                tag: w.tag,
                response: Response::new(Status::No),
            });
            // Its names may have other waiters, now first in line.
            for n in &w.names {
                self.multi.pumps.insert((now, n.clone()));
            }
            return true;
        };
        // Granted to a waiter: an undeliverable answer takes it back.
        for n in &names {
            if let (_, Some(slot)) = self.find_lock(n) {
                self.timed.locks.get_mut(slot).told = Told::ONE_WAITER;
            }
        }
        if !w.single {
            self.bytes += w.names.iter().map(|n| record_charge(n)).sum::<usize>();
            self.multi.grants.insert(first, w.names.clone());
        }
        self.timings.queued.record(now.saturating_sub(w.since));
        self.stats.incr(Stat::WaitGranted);
        self.write_tokens((0..names.len() as u64).map(|i| first + i));
        let mut r = locked(&w.owner, first, Ttl::from_millis(w.ttl));
        if !w.single {
            r.tokens = TokenList::parse(&self.multi.text);
        }
        events(Event {
            waiter: WaiterId(id),
            name: names[0],
            tag: w.tag,
            response: r,
        });
        if w.single {
            // A session-bound `Lock` queued here binds as it would have.
            self.session_granted(id, first);
        }
        true
    }

    /// Waiter `id`'s wait ran out at `at`: answered `NotOwner`; the
    /// queues it leaves may move.
    fn time_out_multi(&mut self, id: u64, at: u64, events: &mut impl FnMut(Event<'_>)) {
        let Some(w) = self.remove_multi(id) else {
            return;
        };
        self.stats.incr(Stat::WaitTimeout);
        self.stats.incr(Stat::NotOwner);
        events(Event {
            waiter: WaiterId(id),
            name: w.names.first().map_or("", String::as_str),
            tag: w.tag,
            response: Response::new(Status::NotOwner),
        });
        for n in w.names {
            self.multi.pumps.insert((at, n));
        }
    }

    /// A waiter of a session that ended at `now` leaves, answered as
    /// timed out; whether it was one of this module's.
    pub(super) fn time_out_multi_now(
        &mut self,
        now: u64,
        id: u64,
        events: &mut impl FnMut(Event<'_>),
    ) -> bool {
        if !self.multi.waiting.contains_key(&id) {
            return false;
        }
        self.time_out_multi(id, now, events);
        self.advance_multi(now, events);
        true
    }

    /// The lock `name` (with grant `token`) is gone, at `free_at`: its
    /// multi-lock queue may move, and a remembered grant it began ends.
    pub(super) fn multi_freed(&mut self, name: &[u8], token: u64, free_at: u64) {
        if let Some(names) = self.multi.grants.remove(&token) {
            self.bytes -= names.iter().map(|n| record_charge(n)).sum::<usize>();
        }
        if self.multi.queues.is_empty() {
            return;
        }
        let name = core::str::from_utf8(name).unwrap_or_default();
        if self.multi.queues.contains_key(name) {
            self.multi.pumps.insert((free_at, String::from(name)));
        }
    }

    /// Lock `name` changes hands (its grant `token` ends, the lock goes to
    /// a waiter of the table's queue): a remembered grant it began ends.
    pub(super) fn multi_handed_over(&mut self, token: u64) {
        if let Some(names) = self.multi.grants.remove(&token) {
            self.bytes -= names.iter().map(|n| record_charge(n)).sum::<usize>();
        }
    }

    /// Serves the waits that ran out and the queues that may move, up to
    /// `now`, in time order (at one instant, a wait ends before a name
    /// comes free: a wait that ran out by then is not granted).
    pub(super) fn advance_multi(&mut self, now: u64, events: &mut impl FnMut(Event<'_>)) {
        loop {
            let timer = self
                .multi
                .timers
                .first()
                .copied()
                .filter(|&(when, _)| when <= now);
            let pump = self.multi.pumps.first().map(|(at, _)| *at);
            match (timer, pump) {
                (None, None) => return,
                (Some((when, id)), p) if p.is_none_or(|at| when <= at) => {
                    self.time_out_multi(id, when, events);
                }
                _ => {
                    let Some((at, name)) = self.multi.pumps.pop_first() else {
                        return;
                    };
                    let first = self
                        .multi
                        .queues
                        .get(name.as_str())
                        .and_then(|q| q.first())
                        .copied();
                    if let Some(id) = first {
                        self.try_grant(id, now.max(at), events);
                    }
                }
            }
        }
    }

    /// The earliest deadline of the multi-lock waiters (now, if a queue
    /// must move).
    pub(super) fn next_multi_deadline(&self) -> Option<u64> {
        if !self.multi.pumps.is_empty() {
            return Some(self.wheel.elapsed());
        }
        self.multi.timers.first().map(|&(when, _)| when)
    }

    /// A multi-lock waiter leaves (its connection closed); its queues move
    /// at the next instant the engine sees.
    pub(super) fn cancel_multi(&mut self, id: u64) -> bool {
        let Some(w) = self.remove_multi(id) else {
            return false;
        };
        self.stats.incr(Stat::WaitCancel);
        let at = self.wheel.elapsed();
        for n in w.names {
            self.multi.pumps.insert((at, n));
        }
        true
    }

    /// Every multi-lock waiter leaves (a new leader's first entry).
    pub(super) fn cancel_all_multi(&mut self) -> usize {
        let ids: Vec<u64> = self.multi.waiting.keys().copied().collect();
        for &id in &ids {
            self.remove_multi(id);
            self.stats.incr(Stat::WaitCancel);
        }
        self.multi.pumps.clear();
        ids.len()
    }

    /// An undeliverable grant of a multi-lock, named by its first name and
    /// token: every one of its names still under its grant and told to
    /// nobody else is freed. `None` if `token` began no remembered grant.
    pub(super) fn orphaned_multi(
        &mut self,
        now: u64,
        name: &str,
        token: Token,
        events: &mut impl FnMut(Event<'_>),
    ) -> Option<bool> {
        let first_name = self.multi.grants.get(&token.0)?.first()?;
        if first_name != name {
            return None;
        }
        let names = self.multi.grants.remove(&token.0)?;
        self.bytes -= names.iter().map(|n| record_charge(n)).sum::<usize>();
        self.stats.incr(Stat::WaitOrphaned);
        let mut freed = false;
        for (i, n) in names.iter().enumerate() {
            let (_, Some(slot)) = self.find_lock(n) else {
                continue;
            };
            let lock = self.timed.locks.get_mut(slot);
            if lock.token != token.0 + i as u64 {
                continue;
            }
            let (left, free) = lock.told.take_back();
            lock.told = left;
            if free {
                self.note_released(slot);
                self.wheel
                    .remove(&mut self.timed, TimerRef::new(Kind::Lock, slot));
                self.release_unlinked(slot, now, events);
                freed = true;
            }
        }
        self.advance_multi(now, events);
        Some(freed)
    }

    /// Queued multi-lock waiters (and plain `Lock`s queued behind them).
    pub fn multi_waiter_count(&self) -> usize {
        self.multi.waiting.len()
    }

    /// The waiters queued for `name` in the multi-lock queue, first in line
    /// first: each one's number and all the names it waits for.
    pub fn multi_queue<'e>(
        &'e self,
        name: &str,
    ) -> impl Iterator<Item = (WaiterId, impl Iterator<Item = &'e str> + 'e)> + 'e {
        self.multi
            .queues
            .get(name)
            .into_iter()
            .flat_map(|q| q.iter())
            .filter_map(|id| {
                self.multi
                    .waiting
                    .get(id)
                    .map(|w| (WaiterId(*id), w.names.iter().map(String::as_str)))
            })
    }

    /// The names of a multi-lock granted to a waiter whose first token is
    /// `first`, in the order of its request, while that grant lasts (its
    /// first name's grant has not ended). The host's journal names every
    /// lock of such a grant by it; the waiter's answer carries only tokens.
    pub fn multi_grant_names(&self, first: Token) -> Option<impl Iterator<Item = &str> + '_> {
        self.multi
            .grants
            .get(&first.0)
            .map(|names| names.iter().map(String::as_str))
    }

    /// Every waiter number in the multi-lock queues, in arrival order.
    pub fn multi_waiters(&self) -> impl Iterator<Item = WaiterId> + '_ {
        self.multi.waiting.keys().map(|&id| WaiterId(id))
    }

    /// Whether a multi-lock waiter is first in line on each of its names
    /// while all of them are free and no queue is left to move: what the
    /// engine never leaves behind after a command or an advance. For tests.
    #[doc(hidden)]
    pub fn multi_stalled(&self) -> Option<WaiterId> {
        if !self.multi.pumps.is_empty() {
            return None;
        }
        self.multi
            .waiting
            .keys()
            .find(|&&id| self.multi_ready(id))
            .map(|&id| WaiterId(id))
    }
}
