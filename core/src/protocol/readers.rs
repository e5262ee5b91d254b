//! Who may read a value besides its owner: the `Readers` of a `Put`
//! (extension; PROTOCOL.md section 8, "Shared values").
//!
//! A value is read by its owner alone unless its `Put` says otherwise:
//! `"Readers":"Any"` lets every client read it, `"Readers":["alice","bob"]`
//! the requests authenticated as those identities. Writes (`Put`, `Erase`,
//! compare-and-set) stay the owner's.
//!
//! Named readers are kept as one borrowed string, the names joined by
//! `,` (a character no identity name has), so a parsed request borrows
//! them from its line and nothing is allocated: the parser rewrites the
//! JSON array in place into that form.
//!
//! Must never: admit a caller the list does not name, or take a name that
//! is not an identity name (which could make one entry of the list stand
//! for two).

use core::fmt;

use super::error::RequestError;

/// The most identities one value may name as readers.
pub const MAX_READERS: usize = 32;

/// The longest identity name, in bytes (identity names become file names).
pub const MAX_IDENTITY_NAME: usize = 255;

/// Whether `name` may be an identity's name: 1 to 255 bytes of ASCII
/// letters, digits, `-`, `_` and `.`, not starting with `.` (the name of
/// its file, `<Name>.cfg`, in the server's identity directory). The one
/// definition, for the server's identities and a value's readers alike.
pub fn valid_identity_name(name: &str) -> bool {
    valid_identity_bytes(name.as_bytes())
}

pub(crate) fn valid_identity_bytes(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTITY_NAME
        && name.first() != Some(&b'.')
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Who may read a value besides its owner (`Readers` on a `Put`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Readers<'a> {
    /// Its owner only (the same `ID` and identity): absent `Readers`, as
    /// today and in JackrabbitDLM.
    #[default]
    Owner,
    /// Any client, anonymous or not (`"Readers":"Any"`).
    Any,
    /// Requests authenticated as one of these identities, whatever their
    /// `ID` (`"Readers":["alice","bob"]`).
    Named(ReaderNames<'a>),
}

impl Readers<'_> {
    /// Whether a caller who is not the owner, authenticated as the
    /// identity named `identity` (`None`: anonymous), may read the value.
    /// The owner always may; that rule is the engine's.
    pub fn admits(&self, identity: Option<&str>) -> bool {
        match self {
            Self::Owner => false,
            Self::Any => true,
            Self::Named(names) => identity.is_some_and(|n| names.contains(n)),
        }
    }

    /// Bytes these readers take when stored: the joined names (the tags
    /// `Owner` and `Any` take none).
    pub fn stored_len(&self) -> usize {
        match self {
            Self::Owner | Self::Any => 0,
            Self::Named(names) => names.as_str().len(),
        }
    }
}

/// A non-empty list of at most [`MAX_READERS`] identity names, kept as
/// one string with the names joined by `,`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReaderNames<'a>(&'a str);

impl<'a> ReaderNames<'a> {
    /// The list from its joined form (`"alice,bob"`): `InvalidReaders` if
    /// it is empty, has more than [`MAX_READERS`] names, or a name that is
    /// not a [valid identity name](valid_identity_name).
    pub fn new(joined: &'a str) -> Result<Self, RequestError> {
        let mut count = 0;
        for name in joined.split(',') {
            count += 1;
            if count > MAX_READERS {
                return Err(RequestError::TooManyReaders { limit: MAX_READERS });
            }
            if !valid_identity_name(name) {
                return Err(RequestError::InvalidReader);
            }
        }
        Ok(Self(joined))
    }

    /// A list already checked (stored by the engine from a checked one).
    pub(crate) const fn trusted(joined: &'a str) -> Self {
        Self(joined)
    }

    /// The names joined by `,`.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    /// The names, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.0.split(',')
    }

    /// How many names (duplicates counted).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Never: a list has at least one name.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }
}

impl fmt::Debug for ReaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for ReaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_one_by_one() {
        let n = ReaderNames::new("alice,bob.2,c-d_e").unwrap();
        assert_eq!(n.len(), 3);
        assert!(n.contains("bob.2"));
        assert!(!n.contains("bob"));
        assert!(!n.contains("alice,bob.2"));
        for bad in ["", ",", "a,", ",a", "a,,b", ".a", "a b", "a\"b", "é"] {
            assert_eq!(
                ReaderNames::new(bad),
                Err(RequestError::InvalidReader),
                "{bad:?}"
            );
        }
        let long = "x".repeat(MAX_IDENTITY_NAME + 1);
        assert_eq!(ReaderNames::new(&long), Err(RequestError::InvalidReader));
    }

    #[test]
    fn the_count_is_bounded() {
        let mut s = alloc::string::String::from("a");
        for _ in 1..MAX_READERS {
            s.push_str(",a");
        }
        assert_eq!(ReaderNames::new(&s).unwrap().len(), MAX_READERS);
        s.push_str(",a");
        assert_eq!(
            ReaderNames::new(&s),
            Err(RequestError::TooManyReaders { limit: MAX_READERS })
        );
    }

    #[test]
    fn who_is_admitted() {
        let named = Readers::Named(ReaderNames::new("alice").unwrap());
        assert!(!Readers::Owner.admits(Some("alice")));
        assert!(!Readers::Owner.admits(None));
        assert!(Readers::Any.admits(None));
        assert!(Readers::Any.admits(Some("x")));
        assert!(named.admits(Some("alice")));
        assert!(!named.admits(Some("alic")));
        assert!(!named.admits(None));
    }
}
