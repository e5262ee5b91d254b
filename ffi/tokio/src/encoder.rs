//! Value encoders: what turns the bytes you `put` into the opaque string the
//! server stores, and back.
//!
//! The default, [`TableEncoder`], is JackrabbitDLM's table codec, so values
//! interoperate with its Python client and with every dlm binding.
//! [`SealedEncoder`] encrypts with XChaCha20-Poly1305 (the code is
//! dlm-core's, shared by every binding), so the server never sees
//! plaintext. Anything else implements [`Encoder`]. Decoding errors come
//! from dlm-core too, and say which encoder wrote a value read with the
//! other.

use std::fmt;

use dlm_core::client::value;
use dlm_core::{codec, seal};

use crate::error::{Error, Result};

/// Turns values into stored strings and back. `name` is the data key, so
/// an encoder can bind a value to its key (the sealed encoder does).
/// Encoders run on the calling task: keep them fast and non-blocking.
pub trait Encoder: Send + Sync {
    /// Encodes `plain` for storage under `name`.
    fn encode(&self, name: &str, plain: &[u8]) -> Result<String>;
    /// Decodes what is stored under `name`.
    fn decode(&self, name: &str, stored: &str) -> Result<Vec<u8>>;
}

/// JackrabbitDLM's table codec (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct TableEncoder;

impl Encoder for TableEncoder {
    fn encode(&self, _name: &str, plain: &[u8]) -> Result<String> {
        Ok(codec::encode(plain))
    }

    fn decode(&self, _name: &str, stored: &str) -> Result<Vec<u8>> {
        codec::decode(stored.as_bytes()).map_err(|e| value::table_error(stored, e).into())
    }
}

/// Encrypts values with XChaCha20-Poly1305 under a 32-byte key, with a
/// random nonce per value and the data key's name as associated data.
pub struct SealedEncoder {
    key: [u8; seal::KEY_LEN],
}

impl SealedEncoder {
    /// An encoder with this key.
    pub fn new(key: [u8; seal::KEY_LEN]) -> Self {
        Self { key }
    }

    /// An encoder with a key given as a slice of exactly 32 bytes.
    pub fn from_slice(key: &[u8]) -> Result<Self> {
        let key: [u8; seal::KEY_LEN] = key
            .try_into()
            .map_err(|_| Error::InvalidArgument("a sealed encoder's key is 32 bytes"))?;
        Ok(Self::new(key))
    }

    /// A fresh random key from the OS.
    pub fn generate_key() -> Result<[u8; seal::KEY_LEN]> {
        let mut key = [0u8; seal::KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| Error::system("no random bytes for a key", e))?;
        Ok(key)
    }
}

impl fmt::Debug for SealedEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedEncoder { key: <redacted> }")
    }
}

impl Drop for SealedEncoder {
    fn drop(&mut self) {
        self.key.fill(0);
        // Keep the wipe from being optimised away as a dead store.
        std::hint::black_box(&mut self.key);
    }
}

impl Encoder for SealedEncoder {
    fn encode(&self, name: &str, plain: &[u8]) -> Result<String> {
        let mut nonce = [0u8; seal::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::system("no random bytes for a nonce", e))?;
        Ok(seal::seal(&self.key, &nonce, name, plain))
    }

    fn decode(&self, name: &str, stored: &str) -> Result<Vec<u8>> {
        seal::open(&self.key, name, stored).map_err(|e| value::sealed_error(stored, e).into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn table_encoder_matches_the_protocol_vectors() {
        assert_eq!(TableEncoder.encode("k", b"{").unwrap(), "a^");
        assert_eq!(TableEncoder.decode("k", "1128").unwrap(), [0, 255]);
        assert!(TableEncoder.decode("k", "odd").is_err());
    }

    #[test]
    fn sealed_encoder_round_trips_and_hides_the_value() {
        let enc = SealedEncoder::new(SealedEncoder::generate_key().unwrap());
        let a = enc.encode("k", b"secret").unwrap();
        assert_ne!(a, enc.encode("k", b"secret").unwrap(), "fresh nonce");
        assert!(!a.contains("secret"));
        assert_eq!(enc.decode("k", &a).unwrap(), b"secret");
        assert!(matches!(enc.decode("other", &a), Err(Error::Encoding(_))));
        let e = TableEncoder.decode("k", &a).unwrap_err().to_string();
        assert!(e.contains("written with the sealed encoder"), "{e}");
        assert!(SealedEncoder::from_slice(&[0; 31]).is_err());
        assert_eq!(format!("{enc:?}"), "SealedEncoder { key: <redacted> }");
    }
}
