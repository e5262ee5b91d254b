//! A hierarchical timer wheel over intrusive links.
//!
//! Every lock, data entry and waiter carries a [`Link`] (its deadline and
//! two 32-bit neighbours) and sits in one bucket of one of six levels of 64
//! buckets: level `L` buckets span 64^L ms. Inserting, removing and
//! re-arming are O(1); an expired entry costs O(1) plus at most five
//! cascades to lower levels over its life. The wheel never scans: the
//! earliest bucket is found with one `trailing_zeros` per level, which also
//! gives the host its next deadline to sleep until.
//!
//! Deadlines are exact to the millisecond: a bucket at level 0 is one
//! millisecond, and an entry is only reported once `now >= deadline`.
//! Entries may be at most [`TTL_CEILING`](crate::limits::TTL_CEILING)
//! ahead of the wheel's time.

use crate::limits::TTL_CEILING;

const LEVELS: usize = 6;
const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;

/// No entry.
pub(crate) const NONE: u32 = u32::MAX;

/// A reference to a timed entry: its kind in the top two bits and its slot
/// number in the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerRef(pub(crate) u32);

/// What a [`TimerRef`] points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Lock,
    Data,
    Waiter,
}

/// Slots per table are limited so a reference fits 30 bits.
pub(crate) const MAX_SLOTS: u32 = (1 << 30) - 1;

impl TimerRef {
    pub(crate) fn new(kind: Kind, slot: u32) -> Self {
        debug_assert!(slot <= MAX_SLOTS);
        let k = match kind {
            Kind::Lock => 0,
            Kind::Data => 1,
            Kind::Waiter => 2,
        };
        Self(k << 30 | slot)
    }

    pub(crate) fn kind(self) -> Kind {
        match self.0 >> 30 {
            0 => Kind::Lock,
            1 => Kind::Data,
            _ => Kind::Waiter,
        }
    }

    pub(crate) fn slot(self) -> u32 {
        self.0 & MAX_SLOTS
    }
}

/// The per-entry part of the wheel: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// The deadline, in milliseconds.
    pub(crate) when: u64,
    prev: u32,
    next: u32,
}

impl Link {
    pub(crate) fn new(when: u64) -> Self {
        Self {
            when,
            prev: NONE,
            next: NONE,
        }
    }

    /// While its entry is out of the wheel, a link may chain the entry into
    /// a list of the caller's: the next entry's slot, or [`NONE`].
    pub(crate) fn chained(&self) -> u32 {
        self.next
    }

    /// Sets the next entry of the caller's list (see [`chained`](Self::chained)).
    /// Inserting the entry into the wheel again overwrites it.
    pub(crate) fn chain(&mut self, next: u32) {
        self.next = next;
    }
}

/// Gives the wheel access to the links stored in the engine's tables.
pub(crate) trait Links {
    fn link(&mut self, r: TimerRef) -> &mut Link;
}

/// The wheel itself: bucket heads and occupancy bits; entries live in the
/// tables.
pub(crate) struct Wheel {
    elapsed: u64,
    heads: [[u32; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let level = (masked.ilog2() / BITS) as usize;
    level.min(LEVELS - 1)
}

/// The shift of level `level` (at most 30).
#[allow(clippy::cast_possible_truncation)]
const fn shift(level: usize) -> u32 {
    level as u32 * BITS
}

#[allow(clippy::cast_possible_truncation)]
fn slot_for(when: u64, level: usize) -> usize {
    (when >> shift(level)) as usize & (SLOTS - 1)
}

impl Wheel {
    pub(crate) fn new(now: u64) -> Self {
        Self {
            elapsed: now,
            heads: [[NONE; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
        }
    }

    /// The time up to which the wheel has been advanced.
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    fn bucket(&self, when: u64) -> (usize, usize) {
        let level = level_for(self.elapsed, when);
        (level, slot_for(when, level))
    }

    /// Adds `r`, whose link holds its deadline; the deadline must be in the
    /// future of the wheel and within [`TTL_CEILING`].
    pub(crate) fn insert(&mut self, links: &mut impl Links, r: TimerRef) {
        let when = links.link(r).when;
        debug_assert!(
            when > self.elapsed,
            "deadline {when} not after {}",
            self.elapsed
        );
        debug_assert!(
            when - self.elapsed <= TTL_CEILING.as_millis() + super::MAX_DEADLINE_SLACK.as_millis()
        );
        self.place(links, r);
    }

    /// Puts `r` at the head of the bucket its deadline belongs to now.
    fn place(&mut self, links: &mut impl Links, r: TimerRef) {
        let (level, slot) = self.bucket(links.link(r).when);
        let head = self.heads[level][slot];
        {
            let l = links.link(r);
            l.prev = NONE;
            l.next = head;
        }
        if head != NONE {
            links.link(TimerRef(head)).prev = r.0;
        }
        self.heads[level][slot] = r.0;
        self.occupied[level] |= 1 << slot;
    }

    /// Unlinks `r`, which must be in the wheel.
    pub(crate) fn remove(&mut self, links: &mut impl Links, r: TimerRef) {
        let Link { when, prev, next } = *links.link(r);
        if prev == NONE {
            let (level, slot) = self.bucket(when);
            debug_assert_eq!(self.heads[level][slot], r.0);
            self.heads[level][slot] = next;
            if next == NONE {
                self.occupied[level] &= !(1 << slot);
            }
        } else {
            links.link(TimerRef(prev)).next = next;
        }
        if next != NONE {
            links.link(TimerRef(next)).prev = prev;
        }
        let l = links.link(r);
        l.prev = NONE;
        l.next = NONE;
    }

    /// Moves `r` to a new deadline.
    pub(crate) fn rearm(&mut self, links: &mut impl Links, r: TimerRef, when: u64) {
        self.remove(links, r);
        links.link(r).when = when;
        self.insert(links, r);
    }

    /// The earliest non-empty bucket and when it starts.
    fn next_bucket(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let slot_range = 1u64 << shift(level);
            let level_range = slot_range << BITS;
            let now_slot = slot_for(self.elapsed, level);
            #[allow(clippy::cast_possible_truncation)]
            let zeros = occupied.rotate_right(now_slot as u32).trailing_zeros() as usize;
            let slot = (zeros + now_slot) % SLOTS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut start = level_start.saturating_add(slot as u64 * slot_range);
            if start < self.elapsed {
                start = start.saturating_add(level_range);
            }
            return Some((level, slot, start));
        }
        None
    }

    /// When the host must next call the engine: the start of the earliest
    /// bucket. It may be earlier than the earliest deadline (a bucket of a
    /// higher level then cascades), never later.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.next_bucket().map(|(_, _, start)| start)
    }

    /// Removes and returns one entry whose deadline is at or before `now`,
    /// cascading buckets as time passes; `None` once there is none. The
    /// returned entry is unlinked: the caller frees or re-inserts it.
    ///
    /// Invariant: between calls every entry sits in the bucket that
    /// `bucket(when)` names for the current `elapsed`, so [`remove`] can find
    /// it. Only a level-0 bucket fires, and all its entries are due exactly
    /// at its start; a higher bucket is first emptied into lower levels.
    ///
    /// [`remove`]: Self::remove
    pub(crate) fn pop_expired(&mut self, links: &mut impl Links, now: u64) -> Option<TimerRef> {
        loop {
            let Some((level, slot, start)) = self.next_bucket().filter(|b| b.2 <= now) else {
                self.elapsed = self.elapsed.max(now);
                return None;
            };
            self.elapsed = self.elapsed.max(start);
            if level == 0 {
                let r = TimerRef(self.heads[0][slot]);
                self.remove(links, r);
                return Some(r);
            }
            let mut at = core::mem::replace(&mut self.heads[level][slot], NONE);
            self.occupied[level] &= !(1 << slot);
            while at != NONE {
                let r = TimerRef(at);
                at = links.link(r).next;
                self.place(links, r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    struct Arena(Vec<Link>);

    impl Links for Arena {
        fn link(&mut self, r: TimerRef) -> &mut Link {
            &mut self.0[r.slot() as usize]
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Rearm(usize, u64),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let delay = prop_oneof![
            1u64..100,
            1u64..10_000,
            1u64..5_000_000,
            1u64..TTL_CEILING.as_millis()
        ];
        prop_oneof![
            3 => delay.clone().prop_map(Op::Insert),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => (any::<usize>(), delay.clone()).prop_map(|(i, d)| Op::Rearm(i, d)),
            3 => prop_oneof![0u64..10, 0u64..1000, 0u64..100_000, 0u64..TTL_CEILING.as_millis()].prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// The wheel reports exactly the entries a naive list would, each
        /// at the first advance that reaches its deadline, and its next
        /// deadline is never after the earliest pending one.
        #[test]
        fn agrees_with_a_naive_model(start in 0u64..(1u64 << 40), ops in proptest::collection::vec(op(), 1..200)) {
            let mut arena = Arena(Vec::new());
            let mut wheel = Wheel::new(start);
            let mut live: Vec<u32> = Vec::new();
            let mut now = start;
            for op in ops {
                match op {
                    Op::Insert(d) => {
                        let slot = u32::try_from(arena.0.len()).unwrap();
                        arena.0.push(Link::new(now + d));
                        wheel.insert(&mut arena, TimerRef::new(Kind::Data, slot));
                        live.push(slot);
                    }
                    Op::Remove(i) if !live.is_empty() => {
                        let slot = live.swap_remove(i % live.len());
                        wheel.remove(&mut arena, TimerRef::new(Kind::Data, slot));
                    }
                    Op::Rearm(i, d) if !live.is_empty() => {
                        let slot = live[i % live.len()];
                        wheel.rearm(&mut arena, TimerRef::new(Kind::Data, slot), now + d);
                    }
                    Op::Advance(d) => {
                        if let (Some(next), Some(min)) = (wheel.next_deadline(), live.iter().map(|&s| arena.0[s as usize].when).min()) {
                            prop_assert!(next <= min, "next deadline {} after earliest {}", next, min);
                        }
                        prop_assert_eq!(wheel.next_deadline().is_none(), live.is_empty());
                        now += d;
                        let mut fired = Vec::new();
                        while let Some(r) = wheel.pop_expired(&mut arena, now) {
                            fired.push(r.slot());
                        }
                        let mut expected: Vec<u32> = live.iter().copied().filter(|&s| arena.0[s as usize].when <= now).collect();
                        live.retain(|&s| arena.0[s as usize].when > now);
                        fired.sort_unstable();
                        expected.sort_unstable();
                        prop_assert_eq!(fired, expected);
                        prop_assert_eq!(wheel.elapsed(), now);
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn fires_at_the_exact_millisecond() {
        let mut arena = Arena(Vec::new());
        let mut wheel = Wheel::new(1_000);
        arena.0.push(Link::new(1_000 + 4_321));
        wheel.insert(&mut arena, TimerRef::new(Kind::Lock, 0));
        assert_eq!(wheel.pop_expired(&mut arena, 5_320), None);
        assert_eq!(
            wheel.pop_expired(&mut arena, 5_321),
            Some(TimerRef::new(Kind::Lock, 0))
        );
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn refs_pack_kind_and_slot() {
        for kind in [Kind::Lock, Kind::Data, Kind::Waiter] {
            let r = TimerRef::new(kind, MAX_SLOTS);
            assert_eq!((r.kind(), r.slot()), (kind, MAX_SLOTS));
            assert_ne!(r.0, NONE);
        }
    }
}
