//! The table codec: JackrabbitDLM's byte-to-text encoding.
//!
//! It is used twice on the wire (PROTOCOL.md section 2): as the **legacy
//! framing** (a whole JSON request or response line is run through it) and
//! as the clients' **default data encoder** (`Put` stores `encode(bytes)`).
//!
//! Each byte `b` becomes the two characters `ALPHABET[b / 78]`,
//! `ALPHABET[b % 78]`, so the output is exactly twice as long as the input
//! and contains only printable ASCII that needs no JSON escaping.
//!
//! ```
//! use dlm_core::codec;
//! let mut out = [0u8; 2];
//! codec::encode_into(b"{", &mut out).unwrap();
//! assert_eq!(&out, b"a^");
//! let mut back = [0u8; 1];
//! assert_eq!(codec::decode_into(&out, &mut back), Ok(1));
//! assert_eq!(&back, b"{");
//! ```
//!
//! This module owns the encoding tables and nothing else; it never
//! allocates except in the `alloc`-gated [`encode`]/[`decode`] helpers.

use core::fmt;

/// The 78-character alphabet of the table codec.
pub const ALPHABET: &[u8; 78] =
    b"1aA2bB3cC4dD5eE6fF7gG8hH9iI0jJ!kK@lL#mM$nN%oO^pP&qQ*rR(sS)tT/uU?vV=wW+xX;yY:zZ";

const BASE: usize = ALPHABET.len();

/// Marks a character that is not in [`ALPHABET`].
const NOT_A_DIGIT: u8 = 0xFF;

/// `ENCODE[b]` is the two-character code of byte `b`.
const ENCODE: [[u8; 2]; 256] = {
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [ALPHABET[b / BASE], ALPHABET[b % BASE]];
        b += 1;
    }
    table
};

/// `DIGIT[c]` is the position of character `c` in [`ALPHABET`].
const DIGIT: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < BASE {
        // `i < 78`, so the cast is lossless.
        #[allow(clippy::cast_possible_truncation)]
        {
            table[ALPHABET[i] as usize] = i as u8;
        }
        i += 1;
    }
    table
};

/// Why a table-encoded text could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The text has an odd number of characters.
    OddLength {
        /// Length of the text in bytes.
        len: usize,
    },
    /// A character outside [`ALPHABET`].
    InvalidCharacter {
        /// Byte offset of the character.
        offset: usize,
    },
    /// Two valid characters that no byte encodes to (their value exceeds 255).
    InvalidPair {
        /// Byte offset of the pair's first character.
        offset: usize,
    },
    /// The output buffer is shorter than half the input.
    BufferTooSmall,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OddLength { len } => write!(f, "table encoding has odd length {len}"),
            Self::InvalidCharacter { offset } => {
                write!(
                    f,
                    "character at offset {offset} is not in the table alphabet"
                )
            }
            Self::InvalidPair { offset } => {
                write!(f, "pair at offset {offset} encodes no byte")
            }
            Self::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// The output buffer was too small; nothing useful was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall;

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("output buffer too small")
    }
}

impl core::error::Error for BufferTooSmall {}

/// The two-character code of one byte.
#[inline]
pub const fn encode_byte(b: u8) -> [u8; 2] {
    ENCODE[b as usize]
}

/// Decodes one pair of characters (`offset` is only used for the error).
#[inline]
fn decode_pair(hi: u8, lo: u8, offset: usize) -> Result<u8, DecodeError> {
    let h = DIGIT[hi as usize];
    if h == NOT_A_DIGIT {
        return Err(DecodeError::InvalidCharacter { offset });
    }
    let l = DIGIT[lo as usize];
    if l == NOT_A_DIGIT {
        return Err(DecodeError::InvalidCharacter { offset: offset + 1 });
    }
    let value = usize::from(h) * BASE + usize::from(l);
    u8::try_from(value).map_err(|_| DecodeError::InvalidPair { offset })
}

/// Length of the encoding of `n` bytes.
#[inline]
pub const fn encoded_len(n: usize) -> usize {
    n * 2
}

/// Encodes `input` into the front of `out`, returning the bytes written
/// (always `2 * input.len()`).
pub fn encode_into(input: &[u8], out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let n = encoded_len(input.len());
    let out = out.get_mut(..n).ok_or(BufferTooSmall)?;
    for (pair, &b) in out.chunks_exact_mut(2).zip(input) {
        pair.copy_from_slice(&ENCODE[b as usize]);
    }
    Ok(n)
}

/// Decodes `input` into the front of `out`, returning the bytes written
/// (always `input.len() / 2`). On error, `out` holds garbage.
pub fn decode_into(input: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    if input.len() % 2 != 0 {
        return Err(DecodeError::OddLength { len: input.len() });
    }
    let n = input.len() / 2;
    let out = out.get_mut(..n).ok_or(DecodeError::BufferTooSmall)?;
    for (i, (slot, pair)) in out.iter_mut().zip(input.chunks_exact(2)).enumerate() {
        *slot = decode_pair(pair[0], pair[1], 2 * i)?;
    }
    Ok(n)
}

/// Decodes a table-encoded buffer in place: the decoded bytes end up in
/// `buf[..n]` and `n` is returned. This is how a legacy request line is
/// decoded without a second buffer. On error, `buf` holds garbage.
pub fn decode_in_place(buf: &mut [u8]) -> Result<usize, DecodeError> {
    if buf.len() % 2 != 0 {
        return Err(DecodeError::OddLength { len: buf.len() });
    }
    let n = buf.len() / 2;
    for i in 0..n {
        // The write index `i` never passes the read index `2 * i`.
        buf[i] = decode_pair(buf[2 * i], buf[2 * i + 1], 2 * i)?;
    }
    Ok(n)
}

/// Checks that `text` is a valid table encoding without decoding it.
pub fn validate(text: &[u8]) -> Result<(), DecodeError> {
    if text.len() % 2 != 0 {
        return Err(DecodeError::OddLength { len: text.len() });
    }
    for (i, pair) in text.chunks_exact(2).enumerate() {
        decode_pair(pair[0], pair[1], 2 * i)?;
    }
    Ok(())
}

/// Encodes `input` into a new string.
#[cfg(feature = "alloc")]
pub fn encode(input: &[u8]) -> alloc::string::String {
    let mut out = alloc::string::String::with_capacity(encoded_len(input.len()));
    for &b in input {
        let [hi, lo] = ENCODE[b as usize];
        out.push(char::from(hi));
        out.push(char::from(lo));
    }
    out
}

/// Decodes `text` into a new byte vector.
#[cfg(feature = "alloc")]
pub fn decode(text: &[u8]) -> Result<alloc::vec::Vec<u8>, DecodeError> {
    let mut out = alloc::vec![0u8; text.len() / 2];
    let n = decode_into(text, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let mut out = [0u8; 128];
        let n = encode_into(b"{", &mut out).unwrap();
        assert_eq!(&out[..n], b"a^");
        let n = encode_into(&[0, 255], &mut out).unwrap();
        assert_eq!(&out[..n], b"1128");
        let n = encode_into(br#"{"Status":"Locked"}"#, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            b"a^1laBaMagaMa$am1l1t1l1za@a8aJaHah1laP".as_slice()
        );
    }

    #[test]
    fn every_byte_round_trips() {
        let all: [u8; 256] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        let mut enc = [0u8; 512];
        assert_eq!(encode_into(&all, &mut enc), Ok(512));
        let mut dec = [0u8; 256];
        assert_eq!(decode_into(&enc, &mut dec), Ok(256));
        assert_eq!(dec, all);
        // In place, too.
        assert_eq!(decode_in_place(&mut enc), Ok(256));
        assert_eq!(&enc[..256], &all[..]);
        // Every code is distinct and printable.
        for b in 0..=255u8 {
            let [hi, lo] = encode_byte(b);
            assert!(hi.is_ascii_graphic() && lo.is_ascii_graphic());
            assert!(ALPHABET.contains(&hi) && ALPHABET.contains(&lo));
        }
    }

    #[test]
    fn alphabet_has_no_duplicates() {
        for (i, a) in ALPHABET.iter().enumerate() {
            assert!(!ALPHABET[i + 1..].contains(a), "duplicate {}", *a as char);
        }
        assert_eq!(ALPHABET.len(), 78);
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let mut out = [0u8; 16];
        assert_eq!(
            decode_into(b"a^1", &mut out),
            Err(DecodeError::OddLength { len: 3 })
        );
        assert_eq!(
            decode_into(b"a^ 1", &mut out),
            Err(DecodeError::InvalidCharacter { offset: 2 })
        );
        assert_eq!(
            decode_into(b"1\"", &mut out),
            Err(DecodeError::InvalidCharacter { offset: 1 })
        );
        // "29" is 3*78 + 22 = 256: a valid pair of characters but no byte.
        assert_eq!(
            decode_into(b"a^29", &mut out),
            Err(DecodeError::InvalidPair { offset: 2 })
        );
        assert_eq!(
            decode_into(b"ZZ", &mut out),
            Err(DecodeError::InvalidPair { offset: 0 })
        );
        assert_eq!(
            decode_into(b"a^a^", &mut out[..1]),
            Err(DecodeError::BufferTooSmall)
        );
        assert_eq!(encode_into(b"ab", &mut out[..3]), Err(BufferTooSmall));
        assert_eq!(
            validate(b"a^29"),
            Err(DecodeError::InvalidPair { offset: 2 })
        );
        assert_eq!(validate(b"a^11"), Ok(()));
        // A non-ASCII byte is never in the alphabet.
        assert_eq!(
            decode_in_place(&mut [0xC3, 0xA9]),
            Err(DecodeError::InvalidCharacter { offset: 0 })
        );
    }

    #[test]
    fn every_pair_decodes_iff_it_is_an_encoding() {
        let mut count = 0;
        for &hi in ALPHABET {
            for &lo in ALPHABET {
                if let Ok(b) = decode_pair(hi, lo, 0) {
                    assert_eq!(encode_byte(b), [hi, lo]);
                    count += 1;
                }
            }
        }
        assert_eq!(count, 256);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn owned_helpers() {
        assert_eq!(encode(b"{"), "a^");
        assert_eq!(decode(b"a^").unwrap(), b"{");
        assert!(decode(b"a").is_err());
    }
}
