//! The wire protocol (PROTOCOL.md): requests, responses, framing, errors.
//!
//! This module is the one definition of the wire format. The server parses
//! requests and writes responses with it; every client writes requests and
//! parses responses with it. Nothing here allocates: parsing works in place
//! on the caller's line buffer and borrows from it, writing goes into an
//! [`Out`] (a caller's slice or, with `alloc`, a `Vec`).
//!
//! ```text
//!  server:  line bytes ──Request::parse──▶ Request<'line> ──engine──▶ Response<'_> ──write──▶ bytes
//!  client:  Request ──write──▶ bytes  ……  line bytes ──Response::parse──▶ Response<'line>
//! ```
//!
//! A line is in one of two framings, detected per line: **plain** JSON, or
//! **legacy**, the JSON run through the [table codec](crate::codec). A
//! response is written in the framing of the request it answers.
//!
//! ```
//! use dlm_core::limits::Limits;
//! use dlm_core::protocol::{Command, Framing, Request};
//!
//! let mut line = br#"{"Action":"lock","FileName":"jobs","ID":"w1","Expire":"1.5"}"#.to_vec();
//! let req = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
//! assert_eq!(req.framing, Framing::Plain);
//! let Command::Lock { name, owner, ttl, .. } = req.command else { unreachable!() };
//! assert_eq!(name, "jobs");
//! assert_eq!(owner, "w1");
//! assert_eq!(ttl.as_millis(), 1500);
//! ```

mod error;
pub(crate) mod json;
mod out;
mod readers;
mod request;
mod response;
mod watch;

use core::fmt;

pub use error::{Field, RequestError, ResponseError};
pub use json::JsonError;
pub use out::{BufferTooSmall, Out, SliceOut};
pub use readers::{MAX_IDENTITY_NAME, MAX_READERS, ReaderNames, Readers, valid_identity_name};
pub use request::{
    AdminOp, ClusterOp, Command, Credentials, MAX_LOCK_ALL, MAX_LOCK_DELAY, MAX_REQUEST_ID, Names,
    Owner, Rejected, Request, Resource, SessionBind, Shape, WatchScope,
};
pub use response::{Message, Response, TokenList};
pub use watch::WatchEvent;

use crate::codec::{self, DecodeError};

/// The protocol's version of the `Version` reply: old clients look for the
/// word `JackrabbitDLM` in it.
pub const VERSION_STRING: &str = concat!("JackrabbitDLM/", env!("CARGO_PKG_VERSION"), " dlm");

/// How a line is framed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Plain JSON; the first non-blank byte is `{`.
    #[default]
    Plain,
    /// JSON run through the table codec (JackrabbitDLM's own clients).
    Legacy,
}

impl Framing {
    /// Detects the framing of a line: plain if its first non-blank byte is
    /// `{`, legacy otherwise.
    pub fn detect(line: &[u8]) -> Self {
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::Plain,
            _ => Self::Legacy,
        }
    }
}

/// A fencing token: every grant of a lock gets one greater than all before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A data entry's revision: 1 on first `Put`, +1 on each `Put` after.
/// In a compare-and-set `Put`, 0 means "only if absent".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The `Status` of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The caller holds the lock.
    Locked,
    /// Released, or there was no live lock.
    Unlocked,
    /// Another owner holds it (or the identity does not match).
    NotOwner,
    /// `Put`/`Get`/`Erase` (or `Stats`) succeeded.
    Done,
    /// No such data entry.
    NotFound,
    /// Entry exists without data (kept for compatibility; never sent by dlm).
    NoData,
    /// Compare-and-set failed (extension).
    Conflict,
    /// Answer to `Version`.
    Version,
    /// Malformed request, limit exceeded, or failed authentication.
    BadPayload,
    /// Unknown action.
    BadAction,
    /// Refused for lack of memory.
    No,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 11] = [
        Self::Locked,
        Self::Unlocked,
        Self::NotOwner,
        Self::Done,
        Self::NotFound,
        Self::NoData,
        Self::Conflict,
        Self::Version,
        Self::BadPayload,
        Self::BadAction,
        Self::No,
    ];

    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Locked => "Locked",
            Self::Unlocked => "Unlocked",
            Self::NotOwner => "NotOwner",
            Self::Done => "Done",
            Self::NotFound => "NotFound",
            Self::NoData => "NoData",
            Self::Conflict => "Conflict",
            Self::Version => "Version",
            Self::BadPayload => "BadPayload",
            Self::BadAction => "BadAction",
            Self::No => "NO",
        }
    }

    /// Parses a wire string, ignoring ASCII case (old servers' clients
    /// case-fold everything).
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Trims the line terminator and surrounding whitespace, detects the
/// framing and, for a legacy line, decodes it in place. Returns the framing
/// and the JSON text.
pub(crate) fn unframe(line: &mut [u8]) -> (Framing, Result<&mut [u8], DecodeError>) {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    let text = &mut line[start..end];
    if text.first() == Some(&b'{') {
        (Framing::Plain, Ok(text))
    } else {
        let decoded = codec::decode_in_place(text).map(|n| &mut text[..n]);
        (Framing::Legacy, decoded)
    }
}

/// Why a number field could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumError {
    Invalid,
    Negative,
    NotFinite,
    TooLarge,
}

const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Parses seconds (a JSON number, or a string holding one as Python's
/// `float()` would accept it) into whole milliseconds, rounding up.
/// Exact: no floating point is involved.
pub(crate) fn parse_seconds_ms(text: &[u8]) -> Result<u64, NumError> {
    let text = text.trim_ascii();
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    for word in [&b"nan"[..], b"inf", b"infinity"] {
        if body.eq_ignore_ascii_case(word) {
            return Err(NumError::NotFinite);
        }
    }
    let mut mant: u64 = 0;
    let mut scale: i64 = 0;
    let mut sticky = false;
    let mut digits = 0usize;
    let mut i = 0;
    let mut push = |d: u8, fraction: bool, mant: &mut u64, scale: &mut i64| {
        if let Some(m) = mant
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            *mant = m;
            if fraction {
                *scale -= 1;
            }
        } else {
            if !fraction {
                *scale += 1;
            }
            sticky |= d != 0;
        }
    };
    while let Some(&b) = body.get(i).filter(|b| b.is_ascii_digit()) {
        push(b - b'0', false, &mut mant, &mut scale);
        digits += 1;
        i += 1;
    }
    if body.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&b) = body.get(i).filter(|b| b.is_ascii_digit()) {
            push(b - b'0', true, &mut mant, &mut scale);
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return Err(NumError::Invalid);
    }
    let mut exp: i64 = 0;
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match body.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let from = i;
        while let Some(&b) = body.get(i).filter(|b| b.is_ascii_digit()) {
            exp = (exp * 10 + i64::from(b - b'0')).min(1_000_000);
            i += 1;
        }
        if i == from {
            return Err(NumError::Invalid);
        }
        if exp_negative {
            exp = -exp;
        }
    }
    if i != body.len() {
        return Err(NumError::Invalid);
    }
    if mant == 0 && !sticky {
        return Ok(0);
    }
    if negative {
        return Err(NumError::Negative);
    }
    // Value in milliseconds is (mant + something below one if sticky) * 10^e.
    let e = scale + exp + 3;
    if e >= 0 {
        if sticky || e >= 20 {
            return Err(NumError::TooLarge);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let p = POW10[e as usize];
        return mant.checked_mul(p).ok_or(NumError::TooLarge);
    }
    let p = -e;
    if p >= 20 {
        return Ok(1);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let div = POW10[p as usize];
    Ok(mant / div + u64::from(mant % div != 0 || sticky))
}

/// Parses an unsigned 64-bit JSON integer.
pub(crate) fn parse_u64(text: &[u8]) -> Result<u64, NumError> {
    if text.first() == Some(&b'-') {
        return if text[1..].iter().all(|&b| b == b'0') {
            Err(NumError::Invalid)
        } else {
            Err(NumError::Negative)
        };
    }
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(NumError::Invalid);
    }
    let mut v: u64 = 0;
    for &b in text {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(NumError::TooLarge)?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_exactly_and_round_up() {
        let ok = |s: &str, ms: u64| assert_eq!(parse_seconds_ms(s.as_bytes()), Ok(ms), "{s}");
        ok("300", 300_000);
        ok("0", 0);
        ok("-0", 0);
        ok("0.0", 0);
        ok("1.5", 1_500);
        ok(" 2 ", 2_000);
        ok("+3", 3_000);
        ok(".5", 500);
        ok("5.", 5_000);
        ok("0.0001", 1);
        ok("0.0010", 1);
        ok("0.0011", 2);
        ok("1e3", 1_000_000);
        ok("1.5E-3", 2);
        ok("15e-4", 2);
        ok("1e-30", 1);
        ok("3543", 3_543_000);
        ok("123456789012345678901234567890e-30", 124);
        ok("18446744073709551.615", u64::MAX);
        let err = |s: &str, e: NumError| assert_eq!(parse_seconds_ms(s.as_bytes()), Err(e), "{s}");
        err("", NumError::Invalid);
        err(".", NumError::Invalid);
        err("abc", NumError::Invalid);
        err("1e", NumError::Invalid);
        err("1x", NumError::Invalid);
        err("1 2", NumError::Invalid);
        err("--1", NumError::Invalid);
        err("-1", NumError::Negative);
        err("-0.001", NumError::Negative);
        err("nan", NumError::NotFinite);
        err("-Infinity", NumError::NotFinite);
        err("inf", NumError::NotFinite);
        err("1e999", NumError::TooLarge);
        err("18446744073709551.616", NumError::TooLarge);
        err("99999999999999999999999", NumError::TooLarge);
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_u64(b"0"), Ok(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), Err(NumError::TooLarge));
        assert_eq!(parse_u64(b"-1"), Err(NumError::Negative));
        assert_eq!(parse_u64(b"1.0"), Err(NumError::Invalid));
        assert_eq!(parse_u64(b"1e2"), Err(NumError::Invalid));
        assert_eq!(parse_u64(b""), Err(NumError::Invalid));
    }

    #[test]
    fn statuses_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::from_wire(s.as_str()), Some(s));
            assert_eq!(Status::from_wire(&s.as_str().to_ascii_lowercase()), Some(s));
        }
        assert_eq!(Status::from_wire("Nope"), None);
    }

    #[test]
    fn framing_detection() {
        assert_eq!(Framing::detect(b"  {\"a\":1}"), Framing::Plain);
        assert_eq!(Framing::detect(b"a^1l"), Framing::Legacy);
        assert_eq!(Framing::detect(b""), Framing::Legacy);
    }
}
