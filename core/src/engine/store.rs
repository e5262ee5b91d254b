//! Where the engine keeps its tables: growable on the heap, or in fixed
//! capacity for targets without an allocator.
//!
//! The rules of the engine are written once, against the small set of
//! containers in [`sealed::Storage`]. [`Heap`] backs them with `Vec`, a
//! SwissTable index and one thin allocation per name/owner pair; [`Fixed`]
//! backs them with inline `heapless` arrays and a linear index, for small
//! embedded tables. Neither type leaks its containers into the public API.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

/// Where an [`Engine`](super::Engine) keeps its entries: [`Heap`] (with
/// `alloc`) or [`Fixed`]. Sealed.
pub trait Storage: sealed::Storage {}

pub(crate) mod sealed {
    use core::ops::DerefMut;

    /// The containers the engine needs.
    pub trait Storage: 'static + Sized {
        /// An owned pair of byte strings (name and owner ID).
        type Pair: Pair;
        /// An owned value string.
        type Value: Value;
        /// A vector.
        type Vec<T>: Buffer<T>;
        /// A map from a hashed key to a slot number.
        type Index: Index;
    }

    /// An owned pair of byte strings.
    pub trait Pair: Sized {
        /// Copies both strings; `None` if they do not fit.
        fn new(a: &[u8], b: &[u8]) -> Option<Self>;
        /// Both strings.
        fn parts(&self) -> (&[u8], &[u8]);
    }

    /// An owned string.
    pub trait Value: Sized {
        /// Copies `s`; `None` if it does not fit.
        fn new(s: &str) -> Option<Self>;
        /// Copies `a` followed by `b`; `None` if they do not fit.
        fn join(a: &str, b: &str) -> Option<Self>;
        /// The string.
        fn as_str(&self) -> &str;
    }

    /// A vector that may refuse to grow.
    pub trait Buffer<T>: DerefMut<Target = [T]> {
        /// An empty vector.
        fn empty() -> Self;
        /// Appends, or gives the value back if full.
        fn try_push(&mut self, value: T) -> Result<(), T>;
        /// Removes the last element.
        fn pop(&mut self) -> Option<T>;
        /// Removes everything.
        fn clear(&mut self);
    }

    /// Slot numbers by hash; the caller confirms candidates with `eq`.
    pub trait Index {
        /// An empty index.
        fn empty() -> Self;
        /// The slot whose key hashes to `hash` and satisfies `eq`.
        fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32>;
        /// Adds `slot`; `rehash` gives the hash of any slot already in.
        /// Returns false if there is no room.
        fn insert(&mut self, hash: u64, slot: u32, rehash: impl Fn(u32) -> u64) -> bool;
        /// Removes `slot`, which was inserted with `hash`.
        fn remove(&mut self, hash: u64, slot: u32);
        /// Removes everything.
        fn clear(&mut self);
    }
}

use sealed::{Buffer, Index, Pair, Value};

/// Growable storage on the heap (feature `alloc`): tables grow as needed,
/// bounded by the engine's memory budget.
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub enum Heap {}

#[cfg(feature = "alloc")]
impl Storage for Heap {}

#[cfg(feature = "alloc")]
impl sealed::Storage for Heap {
    type Pair = super::blob::ThinPair;
    type Value = alloc::boxed::Box<str>;
    type Vec<T> = alloc::vec::Vec<T>;
    type Index = HeapIndex;
}

#[cfg(feature = "alloc")]
impl Pair for super::blob::ThinPair {
    fn new(a: &[u8], b: &[u8]) -> Option<Self> {
        Self::new(a, b)
    }
    fn parts(&self) -> (&[u8], &[u8]) {
        Self::parts(self)
    }
}

#[cfg(feature = "alloc")]
impl Value for alloc::boxed::Box<str> {
    fn new(s: &str) -> Option<Self> {
        let mut owned = alloc::string::String::new();
        owned.try_reserve_exact(s.len()).ok()?;
        owned.push_str(s);
        Some(owned.into_boxed_str())
    }
    fn join(a: &str, b: &str) -> Option<Self> {
        let mut owned = alloc::string::String::new();
        owned
            .try_reserve_exact(a.len().checked_add(b.len())?)
            .ok()?;
        owned.push_str(a);
        owned.push_str(b);
        Some(owned.into_boxed_str())
    }
    fn as_str(&self) -> &str {
        self
    }
}

#[cfg(feature = "alloc")]
impl<T> Buffer<T> for alloc::vec::Vec<T> {
    fn empty() -> Self {
        alloc::vec::Vec::new()
    }
    fn try_push(&mut self, value: T) -> Result<(), T> {
        if self.len() == self.capacity() && self.try_reserve(1).is_err() {
            return Err(value);
        }
        self.push(value);
        Ok(())
    }
    fn pop(&mut self) -> Option<T> {
        alloc::vec::Vec::pop(self)
    }
    fn clear(&mut self) {
        alloc::vec::Vec::clear(self);
    }
}

/// The heap index: a SwissTable of 4-byte slot numbers.
#[cfg(feature = "alloc")]
pub struct HeapIndex(hashbrown::HashTable<u32>);

#[cfg(feature = "alloc")]
impl Index for HeapIndex {
    fn empty() -> Self {
        Self(hashbrown::HashTable::new())
    }
    #[inline]
    fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.0.find(hash, |&s| eq(s)).copied()
    }
    fn insert(&mut self, hash: u64, slot: u32, rehash: impl Fn(u32) -> u64) -> bool {
        if self.0.try_reserve(1, |&s| rehash(s)).is_err() {
            return false;
        }
        self.0.insert_unique(hash, slot, |&s| rehash(s));
        true
    }
    fn remove(&mut self, hash: u64, slot: u32) {
        if let Ok(entry) = self.0.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Fixed-capacity storage for targets without an allocator: at most `N`
/// locks, `N` data entries and `N` waiters; a name and owner ID together
/// of at most `K` bytes; values (with the names of
/// their readers, if named) of at most `V` bytes. Lookups are linear,
/// so keep `N` small (tens to a few hundred).
///
/// ```
/// use dlm_core::engine::{Config, Engine, Fixed};
/// let engine: Engine<Fixed<16, 64, 128>> = Engine::with_storage(Config::default());
/// # let _ = engine;
/// ```
#[derive(Debug)]
pub struct Fixed<const N: usize, const K: usize, const V: usize>(PhantomData<()>);

impl<const N: usize, const K: usize, const V: usize> Storage for Fixed<N, K, V> {}

impl<const N: usize, const K: usize, const V: usize> sealed::Storage for Fixed<N, K, V> {
    type Pair = InlinePair<K>;
    type Value = heapless::String<V>;
    type Vec<T> = FixedVec<T, N>;
    type Index = FixedIndex<N>;
}

/// Two strings in a fixed inline buffer.
pub struct InlinePair<const K: usize> {
    split: u16,
    bytes: heapless::Vec<u8, K>,
}

impl<const K: usize> Pair for InlinePair<K> {
    fn new(a: &[u8], b: &[u8]) -> Option<Self> {
        let split = u16::try_from(a.len()).ok()?;
        let mut bytes = heapless::Vec::new();
        bytes.extend_from_slice(a).ok()?;
        bytes.extend_from_slice(b).ok()?;
        Some(Self { split, bytes })
    }
    fn parts(&self) -> (&[u8], &[u8]) {
        self.bytes.split_at(usize::from(self.split))
    }
}

impl<const V: usize> Value for heapless::String<V> {
    fn new(s: &str) -> Option<Self> {
        let mut v = heapless::String::new();
        v.push_str(s).ok()?;
        Some(v)
    }
    fn join(a: &str, b: &str) -> Option<Self> {
        let mut v = heapless::String::new();
        v.push_str(a).ok()?;
        v.push_str(b).ok()?;
        Some(v)
    }
    fn as_str(&self) -> &str {
        self
    }
}

/// A fixed-capacity vector.
pub struct FixedVec<T, const N: usize>(heapless::Vec<T, N>);

impl<T, const N: usize> Deref for FixedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const N: usize> DerefMut for FixedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T, const N: usize> Buffer<T> for FixedVec<T, N> {
    fn empty() -> Self {
        Self(heapless::Vec::new())
    }
    fn try_push(&mut self, value: T) -> Result<(), T> {
        self.0.push(value)
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A linear index: (32-bit hash, slot) pairs scanned in order.
pub struct FixedIndex<const N: usize>(heapless::Vec<(u32, u32), N>);

#[allow(clippy::cast_possible_truncation)]
const fn short(hash: u64) -> u32 {
    hash as u32
}

impl<const N: usize> Index for FixedIndex<N> {
    fn empty() -> Self {
        Self(heapless::Vec::new())
    }
    fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let h = short(hash);
        self.0
            .iter()
            .find(|&&(eh, s)| eh == h && eq(s))
            .map(|&(_, s)| s)
    }
    fn insert(&mut self, hash: u64, slot: u32, _rehash: impl Fn(u32) -> u64) -> bool {
        self.0.push((short(hash), slot)).is_ok()
    }
    fn remove(&mut self, _hash: u64, slot: u32) {
        if let Some(i) = self.0.iter().position(|&(_, s)| s == slot) {
            self.0.swap_remove(i);
        }
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}
