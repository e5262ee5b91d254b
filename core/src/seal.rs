//! The sealed value encoder (feature `seal`): XChaCha20-Poly1305 so the
//! server stores only ciphertext.
//!
//! A sealed value is the text `dlmseal1.` followed by the URL-safe base64
//! (no padding) of `nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)`. The
//! additional authenticated data is the data key's name, so the server can
//! neither read a value nor move it to another key unnoticed; a wrong key,
//! a damaged value and a moved value all fail to open the same way.
//!
//! XChaCha20-Poly1305 is ChaCha20-Poly1305 with a 192-bit nonce: nonces
//! drawn at random never collide in practice, which matters because every
//! client process encrypts under the same key. The core has no random
//! number generator: callers pass a fresh random nonce (libdlm and the WASM
//! module draw it from the OS).
//!
//! ```
//! use dlm_core::seal;
//! let key = [7u8; seal::KEY_LEN];
//! let nonce = [1u8; seal::NONCE_LEN]; // use random bytes!
//! let sealed = seal::seal(&key, &nonce, "config", b"db password");
//! assert!(sealed.starts_with("dlmseal1."));
//! assert_eq!(seal::open(&key, "config", &sealed).unwrap(), b"db password");
//! assert!(seal::open(&key, "other-key", &sealed).is_err());
//! ```

use core::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;
/// The text every sealed value starts with.
pub const PREFIX: &str = crate::client::value::SEALED_PREFIX;

const AAD_DOMAIN: &[u8] = b"dlm-seal-v1\0";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Why a value could not be sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// Not a sealed value (no prefix, bad base64, too short).
    Malformed,
    /// The key, the name or the bytes do not match: not authentic.
    Unauthentic,
    /// The output buffer is too small.
    BufferTooSmall,
    /// Without `alloc`, the data key's name is too long to authenticate.
    NameTooLong,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "not a sealed value",
            Self::Unauthentic => "sealed value does not open with this key and name",
            Self::BufferTooSmall => "output buffer too small",
            Self::NameTooLong => "name too long to seal without an allocator",
        })
    }
}

impl core::error::Error for SealError {}

/// Length of the sealed text for a plaintext of `plain_len` bytes.
pub const fn sealed_len(plain_len: usize) -> usize {
    PREFIX.len() + b64_len(NONCE_LEN + plain_len + TAG_LEN)
}

const fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

fn b64_encode(input: &[u8], out: &mut [u8]) -> usize {
    let mut o = 0;
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out[o + i] = B64[(n >> (18 - 6 * i) & 63) as usize];
        }
        o += chars;
    }
    o
}

fn b64_value(c: u8) -> Option<u32> {
    B64.iter()
        .position(|&x| x == c)
        .and_then(|p| u32::try_from(p).ok())
}

/// Decodes into `out`, returning the length; `None` if malformed.
fn b64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    if input.len() % 4 == 1 {
        return None;
    }
    let mut o = 0;
    for chunk in input.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= b64_value(c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        for i in 0..bytes {
            // Each byte is 8 bits of the 24-bit group.
            #[allow(clippy::cast_possible_truncation)]
            {
                *out.get_mut(o + i)? = (n >> (16 - 8 * i)) as u8;
            }
        }
        // Canonical encodings only: the bits below the last byte are zero.
        let used_bits = bytes * 8;
        if used_bits < 24 && n & ((1 << (24 - used_bits)) - 1) != 0 {
            return None;
        }
        o += bytes;
    }
    Some(o)
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// The associated data: a domain tag and the data key's name. Without an
/// allocator, names longer than fit a 256-byte stack buffer cannot be
/// sealed or opened ([`SealError::NameTooLong`]); the bytes authenticated
/// are the same either way, so every build reads every other's values.
#[cfg_attr(feature = "alloc", allow(clippy::unnecessary_wraps))]
fn with_aad<R>(name: &str, f: impl FnOnce(&[u8]) -> R) -> Result<R, SealError> {
    let total = AAD_DOMAIN.len() + name.len();
    let mut small = [0u8; 256];
    if total <= small.len() {
        small[..AAD_DOMAIN.len()].copy_from_slice(AAD_DOMAIN);
        small[AAD_DOMAIN.len()..total].copy_from_slice(name.as_bytes());
        return Ok(f(&small[..total]));
    }
    #[cfg(feature = "alloc")]
    {
        let mut v = alloc::vec::Vec::with_capacity(total);
        v.extend_from_slice(AAD_DOMAIN);
        v.extend_from_slice(name.as_bytes());
        Ok(f(&v))
    }
    #[cfg(not(feature = "alloc"))]
    {
        let _ = f;
        Err(SealError::NameTooLong)
    }
}

/// Seals `plain` under `key` for the data key `name` into `out`, returning
/// the length written ([`sealed_len`] of the plaintext). `out` also serves
/// as scratch space, so it must hold `sealed_len(plain.len())` bytes.
pub fn seal_into(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    name: &str,
    plain: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    let total = sealed_len(plain.len());
    if out.len() < total {
        return Err(SealError::BufferTooSmall);
    }
    // Lay out nonce ‖ ciphertext ‖ tag at the end of `out`, encrypt in
    // place, then base64 it to the front (the encoding is longer than its
    // input, and encoding front to back never overtakes what it reads as
    // long as the raw bytes sit at the very end).
    let raw_len = NONCE_LEN + plain.len() + TAG_LEN;
    let raw_start = total - raw_len;
    let raw = &mut out[raw_start..total];
    raw[..NONCE_LEN].copy_from_slice(nonce);
    raw[NONCE_LEN..NONCE_LEN + plain.len()].copy_from_slice(plain);
    let (_, tail) = raw.split_at_mut(NONCE_LEN);
    let (msg, tag_out) = tail.split_at_mut(plain.len());
    let tag = with_aad(name, |aad| {
        cipher(key).encrypt_inout_detached(&XNonce::from(*nonce), aad, msg.into())
    })?
    .map_err(|_| SealError::Unauthentic)?;
    tag_out.copy_from_slice(&tag);
    // Encode in place, 3 bytes at a time from the raw region into the
    // front: copy each group out before writing its 4 characters.
    out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
    let mut o = PREFIX.len();
    let mut i = raw_start;
    while i < total {
        let n = (total - i).min(3);
        let mut group = [0u8; 3];
        group[..n].copy_from_slice(&out[i..i + n]);
        let mut chars = [0u8; 4];
        let written = b64_encode(&group[..n], &mut chars);
        out[o..o + written].copy_from_slice(&chars[..written]);
        o += written;
        i += n;
    }
    debug_assert_eq!(o, total);
    Ok(total)
}

/// Opens a sealed value of the data key `name` into `out`, returning the
/// plaintext's length. `out` needs room for the decoded bytes (the
/// plaintext plus 40).
pub fn open_into(
    key: &[u8; KEY_LEN],
    name: &str,
    sealed: &str,
    out: &mut [u8],
) -> Result<usize, SealError> {
    let body = sealed
        .strip_prefix(PREFIX)
        .ok_or(SealError::Malformed)?
        .as_bytes();
    let raw_len = body.len() / 4 * 3 + (body.len() % 4).saturating_sub(1);
    if raw_len < NONCE_LEN + TAG_LEN {
        return Err(SealError::Malformed);
    }
    if out.len() < raw_len {
        return Err(SealError::BufferTooSmall);
    }
    let n = b64_decode(body, out).ok_or(SealError::Malformed)?;
    let raw = &mut out[..n];
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&raw[..NONCE_LEN]);
    let plain_len = n - NONCE_LEN - TAG_LEN;
    let (_, rest) = raw.split_at_mut(NONCE_LEN);
    let (msg, tag) = rest.split_at_mut(plain_len);
    let tag = Tag::try_from(&*tag).map_err(|_| SealError::Malformed)?;
    with_aad(name, |aad| {
        cipher(key).decrypt_inout_detached(&XNonce::from(nonce), aad, (&mut *msg).into(), &tag)
    })?
    .map_err(|_| SealError::Unauthentic)?;
    out.copy_within(NONCE_LEN..NONCE_LEN + plain_len, 0);
    Ok(plain_len)
}

/// Seals into a new string.
#[cfg(feature = "alloc")]
pub fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    name: &str,
    plain: &[u8],
) -> alloc::string::String {
    let mut out = alloc::vec![0u8; sealed_len(plain.len())];
    // The buffer is exactly large enough, and the output is ASCII.
    let n = seal_into(key, nonce, name, plain, &mut out).unwrap_or(0);
    out.truncate(n);
    alloc::string::String::from_utf8(out).unwrap_or_default()
}

/// Opens into a new vector.
#[cfg(feature = "alloc")]
pub fn open(
    key: &[u8; KEY_LEN],
    name: &str,
    sealed: &str,
) -> Result<alloc::vec::Vec<u8>, SealError> {
    let mut out = alloc::vec![0u8; sealed.len()];
    let n = open_into(key, name, sealed, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (plain, text) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff], "-_8"),
        ] {
            let mut out = [0u8; 16];
            let n = b64_encode(plain, &mut out);
            assert_eq!(&out[..n], text.as_bytes());
            let mut back = [0u8; 16];
            assert_eq!(b64_decode(text.as_bytes(), &mut back), Some(plain.len()));
            assert_eq!(&back[..plain.len()], plain);
        }
        let mut back = [0u8; 16];
        assert_eq!(b64_decode(b"Zm9=", &mut back), None);
        assert_eq!(b64_decode(b"Z", &mut back), None);
        assert_eq!(b64_decode(b"Zh", &mut back), None, "non-canonical");
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)]
    fn seals_and_opens_every_length() {
        let key = [42u8; KEY_LEN];
        for len in [0usize, 1, 2, 3, 4, 5, 63, 64, 65, 1000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let nonce = [(len % 256) as u8; NONCE_LEN];
            let s = seal(&key, &nonce, "name", &plain);
            assert_eq!(s.len(), sealed_len(len));
            assert!(s.bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(open(&key, "name", &s).unwrap(), plain);
        }
    }

    #[test]
    fn anything_wrong_fails_to_open() {
        let key = [1u8; KEY_LEN];
        let s = seal(&key, &[9; NONCE_LEN], "k", b"secret");
        assert_eq!(open(&[2; KEY_LEN], "k", &s), Err(SealError::Unauthentic));
        assert_eq!(open(&key, "k2", &s), Err(SealError::Unauthentic));
        let mut damaged = s.clone().into_bytes();
        let last = damaged.len() - 3;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        let damaged = alloc::string::String::from_utf8(damaged).unwrap();
        assert!(open(&key, "k", &damaged).is_err());
        assert_eq!(open(&key, "k", "plain text"), Err(SealError::Malformed));
        assert_eq!(open(&key, "k", "dlmseal1.AAAA"), Err(SealError::Malformed));
        assert_eq!(
            open(
                &key,
                "k",
                "dlmseal1.!!!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            ),
            Err(SealError::Malformed)
        );
        // A long name is bound too.
        let long = "n".repeat(1000);
        let s = seal(&key, &[3; NONCE_LEN], &long, b"v");
        assert_eq!(open(&key, &long, &s).unwrap(), b"v");
        assert!(open(&key, &long[..999], &s).is_err());
    }

    #[test]
    fn the_same_plaintext_under_two_nonces_differs() {
        let key = [5u8; KEY_LEN];
        assert_ne!(
            seal(&key, &[1; NONCE_LEN], "k", b"x"),
            seal(&key, &[2; NONCE_LEN], "k", b"x")
        );
    }
}
