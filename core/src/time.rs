//! Time as the engine sees it: milliseconds on a monotonic clock that the
//! host reads and passes in.
//!
//! The core never reads a clock. Every engine call takes an [`Instant`]; a
//! TTL is a [`Ttl`], never a bare float. The wire carries seconds (possibly
//! fractional); the conversion lives in the protocol module and is exact
//! to the millisecond.

use core::fmt;
use core::time::Duration;

/// A point on the host's monotonic clock, in milliseconds since an
/// arbitrary epoch (the host's choice, for example process start).
///
/// Only differences between instants mean anything; a wall-clock step on
/// the host never moves an `Instant`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self(0);

    /// An instant `ms` milliseconds after the epoch.
    #[inline]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    #[inline]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + ttl`, saturating at the end of time.
    #[inline]
    #[must_use]
    pub const fn saturating_add(self, ttl: Ttl) -> Self {
        Self(self.0.saturating_add(ttl.0))
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    #[inline]
    pub const fn saturating_since(self, earlier: Self) -> Ttl {
        Ttl(self.0.saturating_sub(earlier.0))
    }
}

/// A time to live (or a wait), in whole milliseconds.
///
/// The wire's fractional seconds are rounded *up* to the next millisecond
/// when parsed, so a client never holds a lock for less than it asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u64);

impl Ttl {
    /// No time at all.
    pub const ZERO: Self = Self(0);

    /// A TTL of `ms` milliseconds.
    #[inline]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// A TTL of `s` whole seconds (saturating).
    #[inline]
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// The TTL in milliseconds.
    #[inline]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whether this is zero.
    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl From<Ttl> for Duration {
    fn from(ttl: Ttl) -> Self {
        Duration::from_millis(ttl.0)
    }
}

impl From<Duration> for Ttl {
    /// Rounds up to the next whole millisecond and saturates.
    fn from(d: Duration) -> Self {
        let ms = d.as_millis();
        let ms = if d.subsec_nanos() % 1_000_000 == 0 {
            ms
        } else {
            ms + 1
        };
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Ttl {
    /// Seconds with up to three decimals, as on the wire: `1.5`, `30`, `0.001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1000;
        let ms = self.0 % 1000;
        if ms == 0 {
            write!(f, "{secs}")
        } else if ms % 100 == 0 {
            write!(f, "{secs}.{}", ms / 100)
        } else if ms % 10 == 0 {
            write!(f, "{secs}.{:02}", ms / 10)
        } else {
            write!(f, "{secs}.{ms:03}")
        }
    }
}

/// A monotonic clock that reads [`Instant`]s relative to its creation.
///
/// Only with `std`: the core itself never reads time; hosts do.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    start: std::time::Instant,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
        }
    }

    /// The current instant. Saturates after 584 million years.
    pub fn now(&self) -> Instant {
        let ms = self.start.elapsed().as_millis();
        Instant(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The `std` instant that corresponds to `at`, for sleeping until it.
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        self.start + Duration::from_millis(at.0)
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display_matches_wire_seconds() {
        assert_eq!(Ttl::from_millis(30_000).to_string(), "30");
        assert_eq!(Ttl::from_millis(1_500).to_string(), "1.5");
        assert_eq!(Ttl::from_millis(1_250).to_string(), "1.25");
        assert_eq!(Ttl::from_millis(1).to_string(), "0.001");
        assert_eq!(Ttl::ZERO.to_string(), "0");
    }

    #[test]
    fn duration_conversion_rounds_up() {
        assert_eq!(Ttl::from(Duration::from_micros(1)), Ttl::from_millis(1));
        assert_eq!(Ttl::from(Duration::from_millis(7)), Ttl::from_millis(7));
        assert_eq!(Ttl::from(Duration::MAX), Ttl::from_millis(u64::MAX));
        assert_eq!(Duration::from(Ttl::from_secs(2)), Duration::from_secs(2));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_millis(u64::MAX - 1);
        assert_eq!(t.saturating_add(Ttl::from_millis(5)).as_millis(), u64::MAX);
        assert_eq!(
            Instant::from_millis(3).saturating_since(Instant::from_millis(5)),
            Ttl::ZERO
        );
    }
}
