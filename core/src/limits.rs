//! Protocol limits and their defaults (PROTOCOL.md section 6).
//!
//! The one place where the numbers live. The server exposes each as a flag;
//! the parser enforces the structural ones while reading a line, the engine
//! the ones that depend on who is asking (anonymous or an identity).

use crate::time::Ttl;

/// Default longest request line, as received: 1 MiB.
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// Default longest `FileName` and `ID`, in bytes: 1 KiB.
pub const DEFAULT_MAX_NAME: usize = 1024;
/// Default largest anonymous `DataStore`, in bytes: 16 KiB.
pub const DEFAULT_MAX_DATA: usize = 16 * 1024;
/// Default longest anonymous `Expire` (and `Wait`): 3543 seconds.
pub const DEFAULT_MAX_TTL_ANONYMOUS: Ttl = Ttl::from_secs(3543);
/// Default longest `Expire` for anyone: 366 days.
pub const DEFAULT_MAX_TTL: Ttl = Ttl::from_secs(366 * 24 * 3600);
/// The engine's timer wheel keeps any deadline less than 2^35 ms (about
/// 397 days) ahead exact; no TTL or wait may exceed it.
pub const TTL_CEILING: Ttl = Ttl::from_millis((1 << 35) - 1);
/// Names and IDs are stored with 16-bit lengths.
pub const NAME_CEILING: usize = u16::MAX as usize;
/// Deepest nesting of JSON containers accepted inside an ignored field.
pub const MAX_JSON_DEPTH: usize = 32;

/// The limits a request must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, as received (before legacy decoding).
    pub max_line: usize,
    /// Longest `FileName` in bytes (capped at [`NAME_CEILING`]).
    pub max_name: usize,
    /// Longest `ID` in bytes (capped at [`NAME_CEILING`]).
    pub max_id: usize,
    /// Largest `DataStore` for an anonymous request; an identity brings its
    /// own `MaxSize`.
    pub max_data_anonymous: usize,
    /// Longest `Expire`/`Wait` for an anonymous request.
    pub max_ttl_anonymous: Ttl,
    /// Longest `Expire`/`Wait` for anyone (capped at [`TTL_CEILING`]).
    pub max_ttl: Ttl,
}

impl Limits {
    /// The defaults of PROTOCOL.md section 6.
    pub const DEFAULT: Self = Self {
        max_line: DEFAULT_MAX_LINE,
        max_name: DEFAULT_MAX_NAME,
        max_id: DEFAULT_MAX_NAME,
        max_data_anonymous: DEFAULT_MAX_DATA,
        max_ttl_anonymous: DEFAULT_MAX_TTL_ANONYMOUS,
        max_ttl: DEFAULT_MAX_TTL,
    };

    /// These limits with every value clamped to what the implementation can
    /// represent (names to 64 KiB, TTLs to the timer's range).
    #[must_use]
    pub fn clamped(self) -> Self {
        let max_ttl = self.max_ttl.min(TTL_CEILING);
        Self {
            max_line: self.max_line,
            max_name: self.max_name.min(NAME_CEILING),
            max_id: self.max_id.min(NAME_CEILING),
            max_data_anonymous: self.max_data_anonymous,
            max_ttl_anonymous: self.max_ttl_anonymous.min(max_ttl),
            max_ttl,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
