//! The table codec on arbitrary bytes: the three decoders and `validate`
//! agree, errors point at what is wrong, and both directions round-trip.

use dlm_core::codec::{self, ALPHABET, DecodeError};

/// Checks one input.
///
/// # Panics
///
/// On any violation of the properties above.
pub fn check(data: &[u8]) {
    // Decoding.
    let mut out = vec![0u8; data.len() / 2];
    let into = codec::decode_into(data, &mut out).map(|n| out[..n].to_vec());
    let mut buf = data.to_vec();
    let in_place = codec::decode_in_place(&mut buf).map(|n| buf[..n].to_vec());
    assert_eq!(into, in_place);
    assert_eq!(
        codec::validate(data),
        into.as_ref().map(|_| ()).map_err(|&e| e)
    );
    assert_eq!(codec::decode(data), into);
    match into {
        Ok(bytes) => {
            assert_eq!(bytes.len() * 2, data.len());
            assert_eq!(codec::encode(&bytes).as_bytes(), data);
        }
        Err(DecodeError::OddLength { len }) => assert_eq!(len % 2, 1),
        Err(DecodeError::InvalidCharacter { offset }) => {
            assert!(!ALPHABET.contains(&data[offset]));
            // Everything before the bad pair decodes.
            assert!(codec::validate(&data[..offset - offset % 2]).is_ok());
        }
        Err(DecodeError::InvalidPair { offset }) => {
            assert_eq!(offset % 2, 0);
            assert!(ALPHABET.contains(&data[offset]) && ALPHABET.contains(&data[offset + 1]));
            assert!(codec::validate(&data[..offset]).is_ok());
        }
        Err(DecodeError::BufferTooSmall) => panic!("the buffer was large enough"),
    }
    // Encoding.
    let text = codec::encode(data);
    assert_eq!(text.len(), codec::encoded_len(data.len()));
    assert!(text.bytes().all(|c| ALPHABET.contains(&c)));
    assert_eq!(codec::decode(text.as_bytes()).as_deref(), Ok(data));
    if !data.is_empty() {
        let mut short = vec![0u8; text.len() - 1];
        assert!(codec::encode_into(data, &mut short).is_err());
        let mut half = vec![0u8; data.len() - 1];
        assert_eq!(
            codec::decode_into(text.as_bytes(), &mut half),
            Err(DecodeError::BufferTooSmall)
        );
    }
}
