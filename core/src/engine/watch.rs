//! The change feed that watches are made of (PROTOCOL.md section 8,
//! "Watches").
//!
//! Every change of state a watcher may be told about (a lock, permit or
//! read/write hold granted, released or expired; a value put, erased or
//! expired) takes the next **revision**: an engine-wide counter that is
//! part of the deterministic state (carried by snapshots), so engines fed
//! the same commands number the same changes alike, on every member of a
//! cluster. The counter moves whether or not anybody watches; that costs
//! one addition.
//!
//! Only while the host has turned the feed on ([`Engine::set_feed`]) is a
//! change also copied out, as an owned [`Change`], for the host to take
//! with [`Engine::drain_changes`] after each call into the engine. With the
//! feed off nothing is copied, allocated or kept: a server that nobody
//! watches pays the addition and one untaken branch per change.
//!
//! The engine never decides who sees what: [`may_read`] is the one rule
//! for whether a watcher may see a change's owner and value, and the host
//! applies it per watcher.
//!
//! Must never: change an answer or any other state (the feed only
//! observes), or keep changes the host did not take.

#[cfg(feature = "alloc")]
use alloc::string::String;
#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use super::{Engine, Principal, Storage};
#[cfg(feature = "alloc")]
use super::{IdentityId, as_str};
#[cfg(feature = "alloc")]
use crate::protocol::ReaderNames;
use crate::protocol::Readers;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum What {
    /// A lock (or a permit, or a read/write hold) was granted: at once, or
    /// to a waiter. A re-lock or an extension of the same grant is not a
    /// change (its token stays).
    Granted,
    /// Its holder released it (`Unlock`), an administrator revoked it, or
    /// a grant whose client had gone was taken back.
    Released,
    /// Its TTL ran out.
    Expired,
    /// A value was stored (created or replaced).
    Put,
    /// A value was erased by its owner.
    Erased,
}

impl What {
    /// The name on the wire (`Event`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "Granted",
            Self::Released => "Released",
            Self::Expired => "Expired",
            Self::Put => "Put",
            Self::Erased => "Erased",
        }
    }

    /// The value of a wire name (case-insensitive).
    pub fn from_wire(s: &str) -> Option<Self> {
        [
            Self::Granted,
            Self::Released,
            Self::Expired,
            Self::Put,
            Self::Erased,
        ]
        .into_iter()
        .find(|w| w.as_str().eq_ignore_ascii_case(s))
    }
}

/// Which namespace and kind of name a change is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An exclusive lock.
    Lock,
    /// A permit of a counting semaphore of this many permits.
    Semaphore(u32),
    /// A hold of a read/write lock: its exclusive side if `write`.
    ReadWrite {
        /// The `Write` side.
        write: bool,
    },
    /// A data entry (its own namespace).
    Data,
}

impl Subject {
    /// The name on the wire (`Kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "Lock",
            Self::Semaphore(_) => "Semaphore",
            Self::ReadWrite { .. } => "ReadWrite",
            Self::Data => "Data",
        }
    }
}

/// One change, as the host takes it from [`Engine::drain_changes`].
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its revision: one more than the change before it.
    pub revision: u64,
    /// What happened.
    pub what: What,
    /// To what kind of name.
    pub subject: Subject,
    /// The lock name or data key.
    pub name: String,
    /// Its owner (the holder; for `Put`/`Erased`/data `Expired`, the
    /// value's owner). Shown only to watchers that [`may_read`] it.
    pub owner: String,
    /// The owner's identity, if it used one.
    pub identity: Option<IdentityId>,
    /// The grant's fencing token (locks and holds).
    pub token: Option<u64>,
    /// The stored value (`Put` only). Shown only to watchers that
    /// [`may_read`] it.
    pub value: Option<String>,
    /// The value's own revision (`Put` only).
    pub data_revision: Option<u64>,
    /// Who besides its owner may read the value (data changes; the
    /// owner alone for locks): the watchers that [`may_read`] it.
    pub readers: OwnedReaders,
}

/// [`Readers`] kept by a [`Change`].
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OwnedReaders {
    /// Its owner only.
    #[default]
    Owner,
    /// Any client.
    Any,
    /// These identities (their names joined by `,`, as
    /// [`ReaderNames::as_str`] gives them).
    Named(String),
}

#[cfg(feature = "alloc")]
impl OwnedReaders {
    /// A copy of `readers`.
    pub fn of(readers: Readers<'_>) -> Self {
        match readers {
            Readers::Owner => Self::Owner,
            Readers::Any => Self::Any,
            Readers::Named(n) => Self::Named(String::from(n.as_str())),
        }
    }

    /// The readers, borrowed.
    pub fn get(&self) -> Readers<'_> {
        match self {
            Self::Owner => Readers::Owner,
            Self::Any => Readers::Any,
            Self::Named(n) => Readers::Named(ReaderNames::trusted(n)),
        }
    }
}

#[cfg(feature = "alloc")]
impl Change {
    /// Bytes this change holds (for a host's budgets): its strings and
    /// its fixed part.
    pub fn size(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.name.len()
            + self.owner.len()
            + self.value.as_ref().map_or(0, String::len)
            + self.readers.get().stored_len()
    }
}

/// Whether a caller that asks as `owner` with `principal` (whose
/// identity's name is `principal_name`; `None` when anonymous) may read
/// a value (or see a change of it, with its owner and value) owned by
/// `value_owner` with `value_identity` and shared with `readers`: its
/// owner (the same `ID` and the same identity, or both anonymous), or
/// anyone its [`Readers`] admit. Locks' changes pass
/// [`Readers::Owner`]. `Get` answers by this rule and watch events are
/// shown by it: this is the one place that decides it.
pub fn may_read(
    value_owner: &str,
    value_identity: Option<super::IdentityId>,
    readers: Readers<'_>,
    owner: &str,
    principal: Principal,
    principal_name: Option<&str>,
) -> bool {
    let caller_identity = match principal {
        Principal::Anonymous => None,
        Principal::Identity(id) => Some(id),
    };
    (value_owner == owner && value_identity == caller_identity)
        || readers.admits(principal_name.filter(|_| caller_identity.is_some()))
}

/// The feed's state inside the engine.
#[derive(Debug, Default)]
pub(super) struct Feed {
    /// The last revision given to a change.
    pub(super) revision: u64,
    /// Whether changes are copied out.
    #[cfg(feature = "alloc")]
    pub(super) on: bool,
    /// Changes not yet taken by the host.
    #[cfg(feature = "alloc")]
    pub(super) pending: Vec<Change>,
}

impl<S: Storage> Engine<S> {
    /// The last revision given to a change (0 before the first, or the
    /// host's seed; see [`seed_tokens`](Self::seed_tokens)).
    pub fn revision(&self) -> u64 {
        self.feed.revision
    }

    /// Turns copying changes out on or off (off at first). The revisions
    /// move either way; turning it off drops what the host did not take.
    #[cfg(feature = "alloc")]
    pub fn set_feed(&mut self, on: bool) {
        self.feed.on = on;
        if !on {
            self.feed.pending = Vec::new();
        }
    }

    /// Whether the feed is on.
    #[cfg(feature = "alloc")]
    pub fn feed(&self) -> bool {
        self.feed.on
    }

    /// Hands every change made since the last call to `f`, in revision
    /// order, and forgets them.
    #[cfg(feature = "alloc")]
    pub fn drain_changes(&mut self, mut f: impl FnMut(Change)) {
        if self.feed.pending.is_empty() {
            return;
        }
        for c in core::mem::take(&mut self.feed.pending) {
            f(c);
        }
    }
}

impl Feed {
    /// Records one change: the next revision, and a copy if the feed is on.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn note(
        &mut self,
        what: What,
        subject: Subject,
        name: &[u8],
        owner: &[u8],
        ident: u16,
        token: Option<u64>,
        value: Option<(&str, u64)>,
    ) {
        self.note_readable(
            what,
            subject,
            name,
            owner,
            ident,
            token,
            value,
            Readers::Owner,
        );
    }

    /// [`note`](Self::note) of a change that `readers` may also see (a
    /// value's).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn note_readable(
        &mut self,
        what: What,
        subject: Subject,
        name: &[u8],
        owner: &[u8],
        ident: u16,
        token: Option<u64>,
        value: Option<(&str, u64)>,
        readers: Readers<'_>,
    ) {
        self.revision = self.revision.saturating_add(1);
        #[cfg(feature = "alloc")]
        if self.on {
            self.copy_out(what, subject, name, owner, ident, token, value, readers);
        }
        #[cfg(not(feature = "alloc"))]
        let _ = (what, subject, name, owner, ident, token, value, readers);
    }

    #[cfg(feature = "alloc")]
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn copy_out(
        &mut self,
        what: What,
        subject: Subject,
        name: &[u8],
        owner: &[u8],
        ident: u16,
        token: Option<u64>,
        value: Option<(&str, u64)>,
        readers: Readers<'_>,
    ) {
        self.pending.push(Change {
            revision: self.revision,
            what,
            subject,
            name: String::from(as_str(name)),
            owner: String::from(as_str(owner)),
            identity: core::num::NonZeroU16::new(ident).map(IdentityId),
            token,
            value: value.map(|(v, _)| String::from(v)),
            data_revision: value.map(|(_, r)| r),
            readers: OwnedReaders::of(readers),
        });
    }
}
