//! Storing values with options: who else may read them (shared values,
//! PROTOCOL.md section 8) and compare-and-set, through one builder:
//! `client.put_with("cfg", b"v").readers(Readers::Any).send()`.
//!
//! A value is named by its key alone, whoever owns it: another client
//! that the readers admit reads it with a plain [`Client::get`] of the
//! same name (and the [`Value::owner`](crate::Value::owner) it gets back
//! says whose it is). Writing stays the owner's.

use std::time::Duration;

use dlm_core::protocol::{self, MAX_READERS, ReaderNames, Revision, valid_identity_name};

use crate::client::Client;
use crate::error::{Error, Result};

/// Who besides its owner may read a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Readers {
    /// Its owner only (the same ID and identity): the default, and what
    /// a JackrabbitDLM server does whatever is asked.
    #[default]
    Owner,
    /// Any client, anonymous or not.
    Any,
    /// Clients authenticated as one of these identities (by
    /// [`Options::credentials`](crate::Options::credentials) or a TLS
    /// client certificate), whatever their ID. At most
    /// [`MAX_READERS`](dlm_core::protocol::MAX_READERS) names, each an
    /// identity name (letters, digits, `-`, `_`, `.`); an empty list is
    /// [`Readers::Owner`].
    Identities(Vec<String>),
}

impl Readers {
    /// Readers naming `identities`.
    pub fn identities<I, S>(identities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Identities(identities.into_iter().map(Into::into).collect())
    }

    /// Parses the `dlm` command's form: `owner`, `any`, or names separated
    /// by commas (`alice,bob`).
    pub fn parse(text: &str) -> Result<Self> {
        let r = if text.eq_ignore_ascii_case("owner") {
            Self::Owner
        } else if text.eq_ignore_ascii_case("any") {
            Self::Any
        } else {
            Self::identities(text.split(','))
        };
        r.check()?;
        Ok(r)
    }

    /// Checks the names (count and form) without sending anything.
    pub fn check(&self) -> Result<()> {
        if let Self::Identities(names) = self {
            if names.len() > MAX_READERS {
                return Err(Error::InvalidArgument(
                    "too many readers (at most 32 identities)",
                ));
            }
            if !names.iter().all(|n| valid_identity_name(n)) {
                return Err(Error::InvalidArgument(
                    "a reader is not an identity name (1 to 255 letters, digits, '-', '_' or '.', not starting with '.')",
                ));
            }
        }
        Ok(())
    }

    /// The names joined by `,`, checked (`None` unless identities are
    /// named): what [`wire`](Self::wire) borrows.
    pub fn joined(&self) -> Result<Option<String>> {
        self.check()?;
        Ok(match self {
            Self::Identities(names) if !names.is_empty() => Some(names.join(",")),
            _ => None,
        })
    }

    /// The protocol's form, borrowing `joined` (from [`joined`](Self::joined)),
    /// for a request built with dlm-core's client.
    pub fn wire<'a>(&self, joined: Option<&'a str>) -> Result<protocol::Readers<'a>> {
        Ok(match (self, joined) {
            (Self::Any, _) => protocol::Readers::Any,
            (Self::Identities(_), Some(j)) => protocol::Readers::Named(
                ReaderNames::new(j).map_err(|_| Error::InvalidArgument("bad readers"))?,
            ),
            _ => protocol::Readers::Owner,
        })
    }
}

/// A `Put` being set up: `client.put_with(name, value)`, then
/// [`ttl`](Self::ttl), [`readers`](Self::readers),
/// [`if_revision`](Self::if_revision), and [`send`](Self::send).
#[must_use = "a put does nothing until send() is called"]
pub struct PutBuilder<'c, 'v> {
    client: &'c Client,
    name: String,
    value: &'v [u8],
    ttl: Duration,
    readers: Readers,
    revision: Option<Revision>,
}

/// The time to live of a value put without [`PutBuilder::ttl`].
pub const DEFAULT_VALUE_TTL: Duration = Duration::from_secs(300);

impl<'c, 'v> PutBuilder<'c, 'v> {
    pub(crate) fn new(client: &'c Client, name: &str, value: &'v [u8]) -> Self {
        Self {
            client,
            name: name.to_owned(),
            value,
            ttl: DEFAULT_VALUE_TTL,
            readers: Readers::Owner,
            revision: None,
        }
    }

    /// How long the value lives (default five minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Who besides its owner may read it (default: nobody). Each put says
    /// it anew: a put without it makes the value its owner's alone again.
    pub fn readers(mut self, readers: Readers) -> Self {
        self.readers = readers;
        self
    }

    /// Compare-and-set: store only if the stored revision is `expected`
    /// (`Revision(0)`: only if there is none); see [`Client::put_if`].
    pub fn if_revision(mut self, expected: Revision) -> Self {
        self.revision = Some(expected);
        self
    }

    /// Stores it, returning its new revision.
    pub fn send(self) -> Result<Revision> {
        self.client.put_full(
            &self.name,
            self.value,
            self.ttl,
            self.revision,
            &self.readers,
        )
    }
}
