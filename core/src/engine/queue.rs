//! Wait queues: one FIFO of waiters per lock, joined by a `Lock` with
//! `Wait`, left by cancelling (a connection closed) or timing out.
//!
//! Must never grant anything itself: a queue only orders who is next
//! (granting is [`locks`](super::locks)'s).

use super::store::sealed::{self, Pair as _};
use super::wheel::{Kind, Link, NONE, TimerRef};
use super::{Engine, Event, Full, KeyHasher, Outcome, Storage, WaiterId, as_str, overhead, widen};
use crate::protocol::{Response, Status};
use crate::stats::Stat;
use crate::time::Ttl;

pub(super) struct WaiterSlot<S: sealed::Storage> {
    /// Owner ID (and nothing).
    pub(super) owner: S::Pair,
    pub(super) id: u64,
    pub(super) tag: u64,
    pub(super) ttl: u64,
    pub(super) lock: u32,
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) link: Link,
    pub(super) ident: u16,
    /// When it joined the queue (engine milliseconds).
    pub(super) since: u64,
}

pub(super) struct QueueSlot {
    pub(super) lock: u32,
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) len: u32,
}

impl<S: Storage> Engine<S> {
    /// Removes every queued waiter (a cluster's new leader does, as its
    /// first entry: the connections they waited on were the old leader's).
    /// Each is counted as cancelled; none is answered. Returns how many.
    pub fn cancel_all_waiters(&mut self) -> usize {
        let mut n = 0;
        loop {
            let Some(slot) = self.timed.waiters.iter().map(|(s, _)| s).next() else {
                break;
            };
            self.wheel
                .remove(&mut self.timed, TimerRef::new(Kind::Waiter, slot));
            self.take_waiter_unlinked(slot);
            self.stats.incr(Stat::WaitCancel);
            n += 1;
        }
        #[cfg(feature = "alloc")]
        {
            n += self.cancel_all_shared();
            n += self.cancel_all_multi();
        }
        n
    }

    /// Removes a queued waiter (its connection closed). Returns whether it
    /// was still queued.
    pub fn cancel(&mut self, waiter: WaiterId) -> bool {
        let h = KeyHasher::int(waiter.0);
        let Some(slot) = self.timed.waiters.find(widen(h), |w| w.id == waiter.0) else {
            #[cfg(feature = "alloc")]
            return self.cancel_shared(waiter.0) || self.cancel_multi(waiter.0);
            #[cfg(not(feature = "alloc"))]
            return false;
        };
        self.wheel
            .remove(&mut self.timed, TimerRef::new(Kind::Waiter, slot));
        self.take_waiter_unlinked(slot);
        self.stats.incr(Stat::WaitCancel);
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue<'s>(
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
            since: now,
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
    pub(super) fn append_waiter(&mut self, mut entry: WaiterSlot<S>) -> Result<u32, Full> {
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

    pub(super) fn find_queue(&self, lock: u32) -> (u32, Option<u32>) {
        let qh = KeyHasher::int(u64::from(lock));
        (qh, self.queues.find(widen(qh), |q| q.lock == lock))
    }

    /// Answers `NotOwner` to a waiter, no longer in the wheel, whose wait
    /// ran out, and removes it.
    pub(super) fn time_out_unlinked(&mut self, slot: u32, events: &mut impl FnMut(Event<'_>)) {
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
    pub(super) fn take_waiter_unlinked(&mut self, slot: u32) -> WaiterSlot<S> {
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
}
