//! The slab every kind of entry lives in (a free list and a hash index
//! over a storage's vector), and the keyed hash of names.
//!
//! Owns slot numbering and lookup; knows nothing of locks, data or time.

use super::store::sealed::{self, Buffer, Index as _};
use super::wheel::MAX_SLOTS;
use core::hash::Hasher as _;
use siphasher::sip::SipHasher13;

/// Bytes charged per entry beyond its strings: the slot, its index entry
/// and allocator overhead, rounded up.
pub(super) const fn overhead<T>() -> usize {
    core::mem::size_of::<Option<T>>() + 16
}

/// A slab of entries with a free list and a hash index.
pub(super) struct Table<S: sealed::Storage, T> {
    pub(super) slots: S::Vec<Option<T>>,
    pub(super) free: S::Vec<u32>,
    pub(super) index: S::Index,
    pub(super) live: usize,
}

impl<S: sealed::Storage, T> Table<S, T> {
    pub(super) fn new() -> Self {
        Self {
            slots: Buffer::empty(),
            free: Buffer::empty(),
            index: sealed::Index::empty(),
            live: 0,
        }
    }

    #[inline]
    pub(super) fn get(&self, slot: u32) -> &T {
        match &self.slots[slot as usize] {
            Some(t) => t,
            None => unreachable!("vacant slot {slot} referenced"),
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, slot: u32) -> &mut T {
        match &mut self.slots[slot as usize] {
            Some(t) => t,
            None => unreachable!("vacant slot {slot} referenced"),
        }
    }

    #[inline]
    pub(super) fn find(&self, hash: u64, eq: impl Fn(&T) -> bool) -> Option<u32> {
        self.index.find(hash, |s| eq(self.get(s)))
    }

    pub(super) fn insert(
        &mut self,
        value: T,
        hash: u64,
        rehash: impl Fn(&T) -> u64,
    ) -> Result<u32, T> {
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

    pub(super) fn remove(&mut self, slot: u32, hash: u64) -> T {
        self.index.remove(hash, slot);
        let value = self.slots[slot as usize].take();
        // If the free list cannot grow, the slot is only lost for reuse.
        let _ = self.free.try_push(slot);
        self.live -= 1;
        value.unwrap_or_else(|| unreachable!("removed vacant slot {slot}"))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref()
                .map(|t| (u32::try_from(i).unwrap_or(u32::MAX), t))
        })
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.index.clear();
        self.live = 0;
    }
}

/// Keyed hashing of names; the 32-bit result is cached in entries and
/// widened for the index so it never needs the key again.
#[derive(Clone, Copy)]
pub(super) struct KeyHasher(pub(super) [u64; 2]);

#[inline]
pub(super) fn widen(h: u32) -> u64 {
    u64::from(h) | u64::from(h) << 32
}

impl KeyHasher {
    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    pub(super) fn bytes(self, bytes: &[u8]) -> u32 {
        let mut h = SipHasher13::new_with_keys(self.0[0], self.0[1]);
        h.write(bytes);
        h.finish() as u32
    }

    /// For keys the engine chooses itself (slot numbers, waiter IDs).
    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    pub(super) fn int(x: u64) -> u32 {
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
    }
}
