//! Stored values: which encoder wrote one, and clear errors when a value is
//! read with another.
//!
//! Every binding offers the same two encoders: the table codec (the
//! default, JackrabbitDLM's) and the sealed encoder (`dlmseal1.` and
//! base64; see `seal`, feature `seal`). Their outputs cannot be mistaken
//! for each other: `.` is not in the table alphabet. So when a decoder
//! fails, the stored text tells whether it was written by the other one,
//! and the error can say so instead of "pair at offset 0 encodes no byte".

use super::errors::{Detail, Error, ErrorKind};
use crate::codec::{self, DecodeError};

/// The text every sealed value starts with.
pub const SEALED_PREFIX: &str = "dlmseal1.";

/// Which encoder a stored value looks written by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The table codec: an even number of characters of its alphabet.
    Table,
    /// The sealed encoder: starts with [`SEALED_PREFIX`].
    Sealed,
    /// Neither: some other encoder's text.
    Other,
}

impl Format {
    /// The format `stored` looks written in.
    pub fn detect(stored: &str) -> Self {
        if stored.starts_with(SEALED_PREFIX) {
            Self::Sealed
        } else if stored.len() % 2 == 0 && stored.bytes().all(|b| codec::ALPHABET.contains(&b)) {
            Self::Table
        } else {
            Self::Other
        }
    }
}

/// The error for a stored value the table codec could not decode.
pub fn table_error(stored: &str, e: DecodeError) -> Error<'static> {
    let detail = match Format::detect(stored) {
        Format::Sealed => Detail::Text(
            "the value was written with the sealed encoder: read it with the sealed encoder and its key",
        ),
        Format::Table | Format::Other => Detail::Table(e),
    };
    Error {
        kind: ErrorKind::Encoding,
        detail,
    }
}

/// The error for a stored value the sealed encoder could not open.
#[cfg(feature = "seal")]
pub fn sealed_error(stored: &str, e: crate::seal::SealError) -> Error<'static> {
    use crate::seal::SealError;
    let text = match (e, Format::detect(stored)) {
        (SealError::Malformed, Format::Table) => {
            "the value was not sealed: it was written with the table encoder"
        }
        (SealError::Malformed, _) => "the value was not sealed: another encoder wrote it",
        (SealError::Unauthentic, _) => {
            "the sealed value does not open with this key under this name"
        }
        (SealError::BufferTooSmall, _) => "output buffer too small",
        (SealError::NameTooLong, _) => "name too long to seal without an allocator",
    };
    Error::text(ErrorKind::Encoding, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn formats_are_told_apart() {
        assert_eq!(Format::detect("a^1l"), Format::Table);
        assert_eq!(Format::detect(""), Format::Table);
        assert_eq!(Format::detect("dlmseal1.AAAA"), Format::Sealed);
        assert_eq!(Format::detect("plain text"), Format::Other);
        assert_eq!(Format::detect("a^1"), Format::Other);
    }

    #[test]
    fn a_sealed_value_read_with_the_table_codec_says_so() {
        let sealed = "dlmseal1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let e = codec::decode(sealed.as_bytes()).unwrap_err();
        let text = table_error(sealed, e).to_string();
        assert!(text.contains("sealed encoder"), "{text}");
        assert!(!text.contains("offset"), "{text}");
        let e = codec::decode(b"a^2").unwrap_err();
        assert_eq!(
            table_error("a^2", e).to_string(),
            "cannot encode or decode value: not written with the table encoder (table encoding has odd length 3)"
        );
    }

    #[cfg(feature = "seal")]
    #[test]
    fn a_table_value_opened_as_sealed_says_so() {
        let key = [1u8; crate::seal::KEY_LEN];
        let e = crate::seal::open(&key, "k", "a^1l").unwrap_err();
        assert!(
            sealed_error("a^1l", e)
                .to_string()
                .contains("table encoder")
        );
    }
}
