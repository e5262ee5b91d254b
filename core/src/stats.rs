//! Statistics: the counters and gauges of PROTOCOL.md section 7.
//!
//! The engine counts what it decides; the host counts what only it sees
//! (connections, bytes on the wire, failed authentication) through
//! [`Stats::add`]. Names are JackrabbitDLM's, so its chart tool reads our
//! log lines; the extensions are marked below.

use core::fmt;

macro_rules! stats {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $gauge:literal; )*) => {
        /// One statistic. Variants are declared in the byte order of their
        /// names, which is the order of the log line and the `Stats` reply.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Stat {
            $( $(#[$doc])* $variant, )*
        }

        impl Stat {
            /// Every statistic, sorted by name.
            pub const ALL: &'static [Stat] = &[$(Stat::$variant),*];

            /// The statistic's name on the wire and in the log.
            pub const fn name(self) -> &'static str {
                match self { $(Stat::$variant => $name,)* }
            }

            /// Whether this is a gauge (a current level, never reset)
            /// rather than a counter.
            pub const fn is_gauge(self) -> bool {
                match self { $(Stat::$variant => $gauge,)* }
            }
        }
    };
}

stats! {
    /// Gauge: open connections (host). Extension.
    AConn = "AConn", true;
    /// Gauge: live data entries.
    AData = "AData", true;
    /// Gauge: live locks.
    ALock = "ALock", true;
    /// Gauge: open sessions. Extension.
    ASession = "ASession", true;
    /// Gauge: queued waiters. Extension.
    AWait = "AWait", true;
    /// Gauge: watching connections (host). Extension.
    AWatch = "AWatch", true;
    /// Requests refused because authentication failed (host).
    AuthFailed = "AuthFailed", false;
    /// Requests with an unknown `Action`.
    BadAction = "BadAction", false;
    /// Malformed requests and limit violations.
    BadPayload = "BadPayload", false;
    /// Compare-and-set `Put`s that found another revision. Extension.
    Conflict = "Conflict", false;
    /// Idle connections closed to make room for a new one when the server
    /// was full (host). Extension.
    ConnEvicted = "ConnEvicted", false;
    /// Gauge: bytes connections make the server hold: partial lines,
    /// answers unsent or held behind a queued request (host). Extension.
    ConnMemory = "ConnMemory", true;
    /// Connections refused (with an error line) because the server was
    /// full (host). Extension.
    ConnRefused = "ConnRefused", false;
    /// Connections accepted (host).
    Connections = "Connections", false;
    /// `DataStore` bytes stored by `Put`.
    DataIn = "DataIn", false;
    /// `DataStore` bytes returned by `Get`.
    DataOut = "DataOut", false;
    /// Request lines over the line limit (host).
    DataOverrun = "DataOverrun", false;
    /// `Erase` of a missing entry.
    EraseNF = "EraseNF", false;
    /// Entries erased.
    Erased = "Erased", false;
    /// Data entries that expired.
    ExpiredData = "ExpiredData", false;
    /// Locks that expired.
    ExpiredLock = "ExpiredLock", false;
    /// Successful `Get`s.
    Get = "Get", false;
    /// `Get` of a missing entry.
    GetNF = "GetNF", false;
    /// Successful `Get`s of a value shared with the caller by another
    /// owner (also counted in `Get`). Extension.
    GetShared = "GetShared", false;
    /// Connections closed for idling mid-line (host). Extension.
    IdleTimeout = "IdleTimeout", false;
    /// Request lines received (host).
    In = "In", false;
    /// Locks granted (new grants, including hand-overs to waiters).
    Lock = "Lock", false;
    /// Gauge: bytes the engine holds, as charged to its memory budget. Extension.
    Memory = "Memory", true;
    /// Requests refused for lack of memory (`NO`). Extension.
    NoMemory = "NoMemory", false;
    /// Requests answered `NotOwner`.
    NotOwner = "NotOwner", false;
    /// Response lines sent (host).
    Out = "Out", false;
    /// `Put`s that created an entry.
    PutNew = "PutNew", false;
    /// `Put`s that replaced an entry.
    PutUpdate = "PutUpdate", false;
    /// Locks extended by their owner.
    Relock = "Relock", false;
    /// Resent requests answered from memory instead of applied again
    /// (`RequestID`). Extension.
    Replayed = "Replayed", false;
    /// Locks revoked by an administrator (`Admin` with `Op` `revoke`). Extension.
    Revoked = "Revoked", false;
    /// `Session` requests (opening or keeping alive a session). Extension.
    Session = "Session", false;
    /// Sessions ended because their connection closed. Extension.
    SessionClosed = "SessionClosed", false;
    /// Sessions ended because their TTL passed without a request. Extension.
    SessionExpired = "SessionExpired", false;
    /// Session-bound holds released (or closed for their lock-delay)
    /// because their session ended. Extension.
    SessionReleased = "SessionReleased", false;
    /// `Stats` requests. Extension.
    Stats = "Stats", false;
    /// `TestLock`s that found a live lock.
    TestLock = "TestLock", false;
    /// `TestLock`s that found none.
    TestLockNF = "TestLockNF", false;
    /// Connections to the TLS port closed before their handshake
    /// finished: not TLS, a refused or missing client certificate, a
    /// protocol error, a truncated or stalled handshake (host). Extension.
    TlsFailed = "TlsFailed", false;
    /// TLS handshakes completed (host). Extension.
    TlsHandshake = "TlsHandshake", false;
    /// TLS hellos refused on a plaintext port (host). Extension.
    TlsOnPlain = "TlsOnPlain", false;
    /// Locks released.
    Unlock = "Unlock", false;
    /// `Unlock`s that found no live lock.
    UnlockNF = "UnlockNF", false;
    /// `Version` requests. Extension.
    Version = "Version", false;
    /// Lock requests that joined a wait queue. Extension.
    Wait = "Wait", false;
    /// Waiters removed because their connection closed. Extension.
    WaitCancel = "WaitCancel", false;
    /// Waiters granted the lock. Extension.
    WaitGranted = "WaitGranted", false;
    /// Grants to waiters whose connection had closed, taken back. Extension.
    WaitOrphaned = "WaitOrphaned", false;
    /// Waiters whose wait ran out. Extension.
    WaitTimeout = "WaitTimeout", false;
    /// `Watch` requests that started watching (host). Extension.
    Watch = "Watch", false;
    /// `Watch` requests refused because the history no longer reached
    /// back to their `Revision` (host). Extension.
    WatchCompacted = "WatchCompacted", false;
    /// Watchers cut off: too many events unread, or the events they were
    /// owed were lost (host). Extension.
    WatchCutOff = "WatchCutOff", false;
}

impl Stat {
    /// Number of statistics.
    pub const COUNT: usize = Self::ALL.len();

    /// The statistic with this exact name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .binary_search_by(|s| s.name().as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| Self::ALL[i])
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of statistics: counters since the last reset, and gauges.
#[derive(Clone, PartialEq, Eq)]
pub struct Stats {
    values: [u64; Stat::COUNT],
}

impl Stats {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            values: [0; Stat::COUNT],
        }
    }

    /// The current value of `stat`.
    #[inline]
    pub fn get(&self, stat: Stat) -> u64 {
        self.values[stat as usize]
    }

    /// Adds `n` to a counter (or a gauge), saturating.
    #[inline]
    pub fn add(&mut self, stat: Stat, n: u64) {
        let v = &mut self.values[stat as usize];
        *v = v.saturating_add(n);
    }

    /// Adds one.
    #[inline]
    pub fn incr(&mut self, stat: Stat) {
        self.add(stat, 1);
    }

    /// Sets a gauge (or a counter).
    #[inline]
    pub fn set(&mut self, stat: Stat, value: u64) {
        self.values[stat as usize] = value;
    }

    /// Subtracts `n` from a gauge, saturating at zero.
    #[inline]
    pub fn sub(&mut self, stat: Stat, n: u64) {
        let v = &mut self.values[stat as usize];
        *v = v.saturating_sub(n);
    }

    /// Zeroes every counter; gauges keep their level. This is what the
    /// periodic log line does after writing.
    pub fn reset_counters(&mut self) {
        for &s in Stat::ALL {
            if !s.is_gauge() {
                self.values[s as usize] = 0;
            }
        }
    }

    /// Every statistic with its value, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (Stat, u64)> + '_ {
        Stat::ALL.iter().map(|&s| (s, self.get(s)))
    }

    /// Writes the body of JackrabbitDLM's periodic log line:
    /// `Key: value` pairs sorted by key, comma-separated, non-zero only.
    /// The host prefixes the timestamp.
    pub fn write_log_line(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut first = true;
        for (stat, value) in self.iter().filter(|&(_, v)| v != 0) {
            if !first {
                out.write_str(", ")?;
            }
            first = false;
            write!(out, "{}: {value}", stat.name())?;
        }
        Ok(())
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(s, v)| (s.name(), v)))
            .finish()
    }
}

/// The upper bounds, in milliseconds, of a [`Histogram`]'s buckets (the
/// last bucket, unbounded, is not listed): from a millisecond to an hour,
/// in steps of about 2.5x.
pub const HISTOGRAM_BOUNDS_MS: [u64; 16] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000, 300_000, 3_600_000,
];

/// A histogram of durations in whole milliseconds, with the fixed buckets
/// of [`HISTOGRAM_BOUNDS_MS`]: counts that only grow, in the manner of a
/// Prometheus histogram. Recording is a comparison walk and three adds; no
/// allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one unbounded.
    buckets: [u64; HISTOGRAM_BOUNDS_MS.len() + 1],
    /// Sum of the observations, in milliseconds.
    sum_ms: u64,
}

impl Histogram {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            buckets: [0; HISTOGRAM_BOUNDS_MS.len() + 1],
            sum_ms: 0,
        }
    }

    /// Records `n` observations of `ms` milliseconds each.
    #[inline]
    pub fn record_n(&mut self, ms: u64, n: u64) {
        let i = HISTOGRAM_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(HISTOGRAM_BOUNDS_MS.len());
        self.buckets[i] = self.buckets[i].saturating_add(n);
        self.sum_ms = self.sum_ms.saturating_add(ms.saturating_mul(n));
    }

    /// Records one observation.
    #[inline]
    pub fn record(&mut self, ms: u64) {
        self.record_n(ms, 1);
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Their sum, in milliseconds.
    pub fn sum_ms(&self) -> u64 {
        self.sum_ms
    }

    /// `(upper bound in ms, observations at or below it)` for every
    /// bounded bucket, cumulative as Prometheus wants them; the unbounded
    /// bucket's count is [`count`](Self::count).
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut total = 0u64;
        HISTOGRAM_BOUNDS_MS
            .iter()
            .zip(self.buckets.iter())
            .map(move |(&bound, &n)| {
                total = total.saturating_add(n);
                (bound, total)
            })
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("buckets", &self.buckets)
            .field("sum_ms", &self.sum_ms)
            .finish()
    }
}

/// The engine's timings: how long locks were held and how long granted
/// waiters had queued, measured on the engine's clock (so the same on
/// every member of a cluster). Never reset, never part of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// From a grant to its end (unlock, expiry, revocation, or a hand-over
    /// to the next waiter), per grant. A re-lock or extension continues
    /// its grant.
    pub hold: Histogram,
    /// From joining a wait queue to being granted the lock, per granted
    /// waiter (waiters whose wait ran out are counted `WaitTimeout`).
    pub queued: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn names_are_sorted_and_unique() {
        for pair in Stat::ALL.windows(2) {
            assert!(
                pair[0].name().as_bytes() < pair[1].name().as_bytes(),
                "{} must sort before {}",
                pair[0],
                pair[1]
            );
        }
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(Stat::from_name(s.name()), Some(*s));
        }
        assert_eq!(Stat::from_name("Nope"), None);
    }

    #[test]
    fn protocol_statistics_are_all_present() {
        for name in [
            "Lock",
            "Relock",
            "Unlock",
            "UnlockNF",
            "TestLock",
            "TestLockNF",
            "Get",
            "GetNF",
            "PutNew",
            "PutUpdate",
            "Erased",
            "EraseNF",
            "NotOwner",
            "BadPayload",
            "BadAction",
            "AuthFailed",
            "DataOverrun",
            "DataIn",
            "DataOut",
            "Connections",
            "In",
            "Out",
            "ExpiredLock",
            "ExpiredData",
            "ALock",
            "AData",
        ] {
            assert!(Stat::from_name(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn log_line_is_sorted_nonzero_and_reset_keeps_gauges() {
        let mut s = Stats::new();
        s.incr(Stat::Lock);
        s.add(Stat::DataIn, 12);
        s.set(Stat::ALock, 3);
        let mut line = String::new();
        s.write_log_line(&mut line).unwrap();
        assert_eq!(line, "ALock: 3, DataIn: 12, Lock: 1");
        s.reset_counters();
        line.clear();
        s.write_log_line(&mut line).unwrap();
        assert_eq!(line, "ALock: 3");
    }

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let mut h = Histogram::new();
        h.record(0);
        h.record(1);
        h.record(2);
        h.record_n(3, 2);
        h.record(u64::MAX);
        assert_eq!(h.count(), 6);
        let c: alloc::vec::Vec<(u64, u64)> = h.cumulative().collect();
        assert_eq!(c[0], (1, 2), "0 and 1 ms are at or below 1 ms");
        assert_eq!(c[1], (2, 3));
        assert_eq!(c[2], (5, 5));
        assert_eq!(
            c.last(),
            Some(&(3_600_000, 5)),
            "u64::MAX is past every bound"
        );
        assert_eq!(h.sum_ms(), u64::MAX, "the sum saturates");
    }
}
