//! Locks: granting, re-locking and extending by token, unlocking, and
//! handing a freed lock to its first waiter (with the same owner's waiters
//! behind it), taking back a grant its waiter could not receive.
//!
//! Must never let two owners hold one lock, nor hand out a token that is
//! not greater than every one before it.

use super::queue::WaiterSlot;
use super::store::sealed::{self, Pair as _};
use super::watch::{Subject, What};
use super::wheel::{Kind, Link, NONE, TimerRef};
use super::{Engine, Event, Outcome, Storage, WaiterId, as_str, held_by, locked, overhead, widen};
use crate::protocol::{Response, Status, Token};
use crate::stats::Stat;
use crate::time::{Instant, Ttl};

pub(super) struct LockSlot<S: sealed::Storage> {
    /// Name and owner ID.
    pub(super) key: S::Pair,
    pub(super) token: u64,
    pub(super) link: Link,
    pub(super) hash: u32,
    pub(super) ident: u16,
    /// Who was told `Locked` for this token: see [`Told`].
    pub(super) told: Told,
    /// When the current grant was made (engine milliseconds).
    pub(super) since: u64,
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
pub(super) struct Told(pub(super) u16);

impl Told {
    /// A request was answered directly.
    pub(super) const DIRECT: Self = Self(u16::MAX);
    /// Handed to one waiter.
    pub(super) const ONE_WAITER: Self = Self(1);

    /// One more waiter was answered with this grant. Past what the count
    /// holds it becomes [`DIRECT`](Self::DIRECT): never freed by orphans,
    /// which errs on the safe side.
    pub(super) fn add_waiter(self) -> Self {
        if self.0 >= u16::MAX - 1 {
            Self::DIRECT
        } else {
            Self(self.0 + 1)
        }
    }

    /// One waiter's grant could not be delivered: the count left, and
    /// whether nobody is left who was told.
    pub(super) fn take_back(self) -> (Self, bool) {
        match self {
            Self::DIRECT => (self, false),
            Self(0 | 1) => (Self(0), true),
            Self(n) => (Self(n - 1), false),
        }
    }
}

impl<S: Storage> Engine<S> {
    /// Releases the chained expired locks from `due` in token order.
    pub(super) fn hand_over(&mut self, due: u32, now: u64, events: &mut impl FnMut(Event<'_>)) {
        let mut at = self.sort_chain(due);
        while at != NONE {
            let next = self.timed.locks.get(at).link.chained();
            self.release_unlinked(at, now, events);
            at = next;
        }
    }

    /// Sorts a chain of detached locks by token (merge sort: a burst of
    /// locks expiring together costs n log n, not n squared).
    pub(super) fn sort_chain(&mut self, head: u32) -> u32 {
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
        #[cfg(feature = "alloc")]
        if let Some(freed) = self.orphaned_multi(now, name, token, events) {
            return freed;
        }
        let (_, Some(slot)) = self.find_lock(name) else {
            #[cfg(feature = "alloc")]
            return self.orphaned_shared(now, name, token, events);
            #[cfg(not(feature = "alloc"))]
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
        self.note_released(slot);
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Lock, slot));
        self.release_unlinked(slot, now, events);
        #[cfg(feature = "alloc")]
        self.advance_multi(now, events);
        true
    }

    /// The lock in `slot` is about to be released (not expired).
    pub(super) fn note_released(&mut self, slot: u32) {
        let l = self.timed.locks.get(slot);
        let (name, owner) = l.key.parts();
        self.feed.note(
            What::Released,
            Subject::Lock,
            name,
            owner,
            l.ident,
            Some(l.token),
            None,
        );
    }

    pub(super) fn find_lock(&self, name: &str) -> (u32, Option<u32>) {
        let h = self.hasher.bytes(name.as_bytes());
        let found = self
            .timed
            .locks
            .find(widen(h), |l| l.key.parts().0 == name.as_bytes());
        (h, found)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lock<'s>(
        &'s mut self,
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
            #[cfg(feature = "alloc")]
            if self.group_label(name).is_some() {
                // A semaphore or read/write lock: never taken whole.
                self.stats.incr(Stat::NotOwner);
                let mut r = Response::new(Status::NotOwner);
                r.error = self.group_label(name).map(crate::protocol::Message::Text);
                return Outcome::Reply(r);
            }
            if token.is_some() {
                // An extension never brings a lost lock back.
                return Outcome::Reply(self.not_owner(None));
            }
            #[cfg(feature = "alloc")]
            if self.reserved(name) {
                // Free, but awaited by an earlier multi-lock: never
                // overtaken.
                return match wait.filter(|w| !w.is_zero()) {
                    Some(wait) => {
                        self.enqueue_multi(now, &[name], owner, ident, ttl, wait, tag, true)
                    }
                    None => Outcome::Reply(self.not_owner(None)),
                };
            }
            return Outcome::Reply(self.grant_new(now, h, name, owner, ident, ttl));
        };
        let l = self.timed.locks.get(slot);
        // A grant closed by its session's lock-delay is nobody's to take,
        // extend or release: its own owner is refused as anyone else.
        if held_by(l.key.parts().1, l.ident, owner.as_bytes(), ident) && !self.closed(l.token) {
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
                // Behind a multi-lock's waiters, it joins their queue.
                #[cfg(feature = "alloc")]
                if self.reserved(name) {
                    return self.enqueue_multi(now, &[name], owner, ident, ttl, wait, tag, true);
                }
                self.enqueue(now, slot, name, owner, ident, ttl, wait, tag)
            }
            _ => Outcome::Reply(self.not_owner(None)),
        }
    }

    pub(super) fn take_token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token = t.saturating_add(1);
        t
    }

    pub(super) fn grant_new<'s>(
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
            since: now,
        };
        let Ok(slot) = self.timed.locks.insert(entry, widen(h), |l| widen(l.hash)) else {
            return self.no_memory();
        };
        self.take_token();
        self.wheel
            .insert(&mut self.timed, TimerRef::new(Kind::Lock, slot));
        self.bytes += charge;
        self.stats.incr(Stat::Lock);
        self.feed.note(
            What::Granted,
            Subject::Lock,
            name.as_bytes(),
            owner.as_bytes(),
            ident,
            Some(token),
            None,
        );
        locked(owner, token, ttl)
    }

    /// Releases a lock that is no longer in the wheel: hands it to its
    /// first waiter, or removes it.
    pub(super) fn release_unlinked(
        &mut self,
        slot: u32,
        now: u64,
        events: &mut impl FnMut(Event<'_>),
    ) {
        // The instant the lock came free: its expiry, or now if released.
        let free_at = self.timed.locks.get(slot).link.when.min(now);
        let since = self.timed.locks.get(slot).since;
        self.timings.hold.record(free_at.saturating_sub(since));
        #[cfg(feature = "alloc")]
        self.multi_handed_over(self.timed.locks.get(slot).token);
        loop {
            let (_, queue) = self.find_queue(slot);
            let Some(q) = queue else {
                let lock = self.timed.locks.get(slot);
                let (name, owner) = lock.key.parts();
                self.bytes -= name.len() + owner.len() + overhead::<LockSlot<S>>();
                let hash = lock.hash;
                #[cfg(feature = "alloc")]
                if !self.multi.queues.is_empty() {
                    let (name, token) = (alloc::string::String::from(as_str(name)), lock.token);
                    self.multi_freed(name.as_bytes(), token, free_at);
                }
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
                lock.since = now;
            }
            self.timings.queued.record(now.saturating_sub(w.since));
            self.bytes = self.bytes + new_len - old_len;
            self.wheel
                .insert(&mut self.timed, TimerRef::new(Kind::Lock, slot));
            self.stats.incr(Stat::Lock);
            self.stats.incr(Stat::WaitGranted);
            let lock = self.timed.locks.get(slot);
            let (name, owner) = lock.key.parts();
            self.feed.note(
                What::Granted,
                Subject::Lock,
                name,
                owner,
                lock.ident,
                Some(token),
                None,
            );
            self.announce_grant(slot, &w, events);
            #[cfg(feature = "alloc")]
            self.session_granted(w.id, token);
            self.grant_same_owner(slot, now, free_at, events);
            return;
        }
    }

    /// Tells waiter `w` it now holds the lock in `slot`.
    pub(super) fn announce_grant(
        &self,
        slot: u32,
        w: &WaiterSlot<S>,
        events: &mut impl FnMut(Event<'_>),
    ) {
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
    pub(super) fn grant_same_owner(
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
            if !held_by(lock.key.parts().1, lock.ident, w.owner.parts().0, w.ident) {
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
            self.timings.queued.record(now.saturating_sub(w.since));
            self.stats.incr(Stat::Relock);
            self.stats.incr(Stat::WaitGranted);
            self.announce_grant(slot, &w, events);
            #[cfg(feature = "alloc")]
            self.session_granted(w.id, self.timed.locks.get(slot).token);
        }
    }

    pub(super) fn unlock<'s>(
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
            #[cfg(feature = "alloc")]
            if let Some(r) = self.release_shared(now, name, owner, ident, token, events) {
                return r;
            }
            self.stats.incr(Stat::UnlockNF);
            return Response::new(Status::Unlocked);
        };
        let l = self.timed.locks.get(slot);
        let is_owner =
            held_by(l.key.parts().1, l.ident, owner.as_bytes(), ident) && !self.closed(l.token);
        if !is_owner || token.is_some_and(|t| t.0 != l.token) {
            return self.not_owner(None);
        }
        self.note_released(slot);
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Lock, slot));
        self.release_unlinked(slot, now, events);
        #[cfg(feature = "alloc")]
        self.advance_multi(now, events);
        self.stats.incr(Stat::Unlock);
        let mut r = Response::new(Status::Unlocked);
        r.id = Some(owner);
        r
    }

    /// An administrator takes lock `name` away from its holder (with
    /// `token`, only that grant): it is released as by its owner, so the
    /// first waiter gets it at once, with a new token. The holder learns it
    /// when it next extends or unlocks by token (`NotOwner`), and whatever
    /// the lock guards refuses its token once the next holder has used a
    /// greater one. Answers `Unlocked` with the revoked grant's `Token`, or
    /// `Unlocked` alone if no lock was live, or `NotOwner` if `token`
    /// names another grant.
    pub(super) fn revoke<'s>(
        &mut self,
        now: u64,
        name: &str,
        token: Option<Token>,
        events: &mut impl FnMut(Event<'_>),
    ) -> Response<'s> {
        #[cfg(feature = "alloc")]
        if let Some(r) = self.revoke_shared(now, name, token, events) {
            return r;
        }
        let (_, found) = self.find_lock(name);
        let Some(slot) = found else {
            self.stats.incr(Stat::UnlockNF);
            return Response::new(Status::Unlocked);
        };
        let current = self.timed.locks.get(slot).token;
        if token.is_some_and(|t| t.0 != current) {
            return self.not_owner(None);
        }
        self.note_released(slot);
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Lock, slot));
        self.release_unlinked(slot, now, events);
        #[cfg(feature = "alloc")]
        self.advance_multi(now, events);
        self.stats.incr(Stat::Revoked);
        let mut r = Response::new(Status::Unlocked);
        r.token = Some(Token(current));
        r
    }

    pub(super) fn test_lock<'s>(
        &'s mut self,
        _now: u64,
        name: &str,
        owner: &'s str,
        ident: u16,
    ) -> Response<'s> {
        let (_, found) = self.find_lock(name);
        let Some(slot) = found else {
            #[cfg(feature = "alloc")]
            if self.group_label(name).is_some() {
                return self
                    .test_shared(name, owner, ident)
                    .unwrap_or(Response::new(Status::Unlocked));
            }
            self.stats.incr(Stat::TestLockNF);
            return Response::new(Status::Unlocked);
        };
        self.stats.incr(Stat::TestLock);
        let l = self.timed.locks.get(slot);
        let left = self.remaining(&l.link);
        if held_by(l.key.parts().1, l.ident, owner.as_bytes(), ident) && !self.closed(l.token) {
            let token = l.token;
            locked(owner, token, left)
        } else {
            self.not_owner(Some(left))
        }
    }
}
