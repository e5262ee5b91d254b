//! A small seeded generator (SplitMix64): every random choice of a chaos
//! run comes from one, so a seed replays the same schedule of faults and
//! the same client choices. (Thread interleavings and the kernel's timing
//! are not reproducible; the decisions are.)

/// `SplitMix64` (Steele, Lea, Flood 2014): 64 bits of state, passes
/// `BigCrush`, and is enough to spread choices; not for secrets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator derived from this one's seed and `stream`, so each
    /// thread's choices depend on the seed and not on the others' timing.
    pub fn fork(seed: u64, stream: u64) -> Self {
        let mut r = Self(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        let _ = r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let n = items.len() as u64;
        let i = usize::try_from(self.range(0, n)).unwrap_or(0);
        &items[i]
    }
}
