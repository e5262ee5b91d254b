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
//! change also copied out, as one compact record in a buffer the engine
//! reuses (no allocation per change once it has grown), for the host to
//! take after each call into the engine: as records
//! ([`Engine::take_change_records`], read with [`ChangeRecords`] into
//! borrowed [`ChangeRef`]s, and kept as they are by a host's history) or
//! as owned [`Change`]s ([`Engine::drain_changes`]). With the feed off
//! nothing is copied, allocated or kept: a server that nobody watches pays
//! the addition and one untaken branch per change.
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

    /// This change, borrowed.
    pub fn as_ref(&self) -> ChangeRef<'_> {
        ChangeRef {
            revision: self.revision,
            what: self.what,
            subject: self.subject,
            name: &self.name,
            owner: &self.owner,
            identity: self.identity,
            token: self.token,
            value: self.value.as_deref(),
            data_revision: self.data_revision,
            readers: self.readers.get(),
        }
    }
}

/// One change, borrowed from a record (see [`ChangeRecords`]); the same
/// fields as [`Change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeRef<'a> {
    /// Its revision: one more than the change before it.
    pub revision: u64,
    /// What happened.
    pub what: What,
    /// To what kind of name.
    pub subject: Subject,
    /// The lock name or data key.
    pub name: &'a str,
    /// Its owner. Shown only to watchers that [`may_read`] it.
    pub owner: &'a str,
    /// The owner's identity, if it used one.
    pub identity: Option<super::IdentityId>,
    /// The grant's fencing token (locks and holds).
    pub token: Option<u64>,
    /// The stored value (`Put` only). Shown only to watchers that
    /// [`may_read`] it.
    pub value: Option<&'a str>,
    /// The value's own revision (`Put` only).
    pub data_revision: Option<u64>,
    /// Who besides its owner may read the value.
    pub readers: Readers<'a>,
}

#[cfg(feature = "alloc")]
impl ChangeRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Change {
        Change {
            revision: self.revision,
            what: self.what,
            subject: self.subject,
            name: String::from(self.name),
            owner: String::from(self.owner),
            identity: self.identity,
            token: self.token,
            value: self.value.map(String::from),
            data_revision: self.data_revision,
            readers: OwnedReaders::of(self.readers),
        }
    }
}

/// Bytes of a record before its strings: length u32, revision u64, what
/// u8, subject u8, permits u32, identity u16, flags u8, readers kind u8,
/// token u64, data revision u64, then the lengths (u32) of name, owner,
/// value and reader names.
const RECORD_HEAD: usize = 4 + 8 + 1 + 1 + 4 + 2 + 1 + 1 + 8 + 8 + 4 * 4;
const HAS_TOKEN: u8 = 1;
const HAS_VALUE: u8 = 2;
const HAS_DATA_REVISION: u8 = 4;

/// Appends the record of `c` to `out` (little-endian; see
/// [`ChangeRecords`]). Returns its length. Names, owners, values and
/// reader lists are bounded by the protocol's limits, far below `u32`.
#[cfg(feature = "alloc")]
pub fn encode_change(c: &ChangeRef<'_>, out: &mut Vec<u8>) -> usize {
    let readers = match c.readers {
        Readers::Owner => (0u8, ""),
        Readers::Any => (1, ""),
        Readers::Named(n) => (2, n.as_str()),
    };
    let value = c.value.unwrap_or_default();
    let len = RECORD_HEAD + c.name.len() + c.owner.len() + value.len() + readers.1.len();
    let (subject, permits) = match c.subject {
        Subject::Lock => (0u8, 0u32),
        Subject::Semaphore(n) => (1, n),
        Subject::ReadWrite { write } => (2, u32::from(write)),
        Subject::Data => (3, 0),
    };
    let what = match c.what {
        What::Granted => 0u8,
        What::Released => 1,
        What::Expired => 2,
        What::Put => 3,
        What::Erased => 4,
    };
    let flags = (if c.token.is_some() { HAS_TOKEN } else { 0 })
        | (if c.value.is_some() { HAS_VALUE } else { 0 })
        | (if c.data_revision.is_some() {
            HAS_DATA_REVISION
        } else {
            0
        });
    out.reserve(len);
    #[allow(clippy::cast_possible_truncation)]
    let len32 = len as u32;
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&c.revision.to_le_bytes());
    out.push(what);
    out.push(subject);
    out.extend_from_slice(&permits.to_le_bytes());
    out.extend_from_slice(&c.identity.map_or(0, |i| i.0.get()).to_le_bytes());
    out.push(flags);
    out.push(readers.0);
    out.extend_from_slice(&c.token.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&c.data_revision.unwrap_or(0).to_le_bytes());
    for part in [c.name, c.owner, value, readers.1] {
        #[allow(clippy::cast_possible_truncation)]
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    }
    for part in [c.name, c.owner, value, readers.1] {
        out.extend_from_slice(part.as_bytes());
    }
    len
}

/// The changes in a buffer of records (as [`Engine::take_change_records`]
/// gives them, or as a host keeps them): each item is a change and its
/// record's bytes. A damaged record (which only a bug could make) ends
/// the iteration.
#[derive(Clone, Debug)]
pub struct ChangeRecords<'a> {
    rest: &'a [u8],
}

impl<'a> ChangeRecords<'a> {
    /// The records in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
}

impl<'a> Iterator for ChangeRecords<'a> {
    type Item = (ChangeRef<'a>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let len = usize::try_from(u32::from_le_bytes(self.rest.get(..4)?.try_into().ok()?)).ok()?;
        let record = self.rest.get(..len)?;
        let c = decode_change(record)?;
        self.rest = &self.rest[len..];
        Some((c, record))
    }
}

/// The change in one record (from its length prefix on), or `None` if
/// the record is damaged.
pub fn decode_change(record: &[u8]) -> Option<ChangeRef<'_>> {
    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }
    let revision = u64_at(record, 4)?;
    let what = match *record.get(12)? {
        0 => What::Granted,
        1 => What::Released,
        2 => What::Expired,
        3 => What::Put,
        4 => What::Erased,
        _ => return None,
    };
    let permits = u32_at(record, 14)?;
    let subject = match *record.get(13)? {
        0 => Subject::Lock,
        1 => Subject::Semaphore(permits),
        2 => Subject::ReadWrite {
            write: permits != 0,
        },
        3 => Subject::Data,
        _ => return None,
    };
    let identity = u16::from_le_bytes(record.get(18..20)?.try_into().ok()?);
    let flags = *record.get(20)?;
    let readers_kind = *record.get(21)?;
    let token = u64_at(record, 22)?;
    let data_revision = u64_at(record, 30)?;
    let mut at = RECORD_HEAD;
    let mut parts = [""; 4];
    for (i, part) in parts.iter_mut().enumerate() {
        let n = usize::try_from(u32_at(record, 38 + 4 * i)?).ok()?;
        *part = core::str::from_utf8(record.get(at..at.checked_add(n)?)?).ok()?;
        at += n;
    }
    let [name, owner, value, names] = parts;
    let readers = match readers_kind {
        0 => Readers::Owner,
        1 => Readers::Any,
        2 => Readers::Named(crate::protocol::ReaderNames::trusted(names)),
        _ => return None,
    };
    Some(ChangeRef {
        revision,
        what,
        subject,
        name,
        owner,
        identity: core::num::NonZeroU16::new(identity).map(super::IdentityId),
        token: (flags & HAS_TOKEN != 0).then_some(token),
        value: (flags & HAS_VALUE != 0).then_some(value),
        data_revision: (flags & HAS_DATA_REVISION != 0).then_some(data_revision),
        readers,
    })
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
    /// Records of the changes not yet taken by the host.
    #[cfg(feature = "alloc")]
    pub(super) pending: Vec<u8>,
}

/// Capacity of the pending buffer the engine keeps between turns; a
/// larger one (after a turn of many changes) is given back.
#[cfg(feature = "alloc")]
const PENDING_KEPT: usize = 64 << 10;

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
    /// order, as an owned copy, and forgets them.
    #[cfg(feature = "alloc")]
    pub fn drain_changes(&mut self, mut f: impl FnMut(Change)) {
        if self.feed.pending.is_empty() {
            return;
        }
        let buf = self.take_change_records();
        for (c, _) in ChangeRecords::new(&buf) {
            f(c.to_owned());
        }
        self.return_change_records(buf);
    }

    /// The records of every change made since the last call, in revision
    /// order (read them with [`ChangeRecords`]); the engine forgets them.
    /// Give the buffer back with
    /// [`return_change_records`](Self::return_change_records) so that the
    /// next changes reuse it.
    #[cfg(feature = "alloc")]
    pub fn take_change_records(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.feed.pending)
    }

    /// Gives back a buffer from
    /// [`take_change_records`](Self::take_change_records) (emptied here)
    /// for the next changes.
    #[cfg(feature = "alloc")]
    pub fn return_change_records(&mut self, mut buf: Vec<u8>) {
        if self.feed.on && self.feed.pending.is_empty() && buf.capacity() <= PENDING_KEPT {
            buf.clear();
            self.feed.pending = buf;
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
        let c = ChangeRef {
            revision: self.revision,
            what,
            subject,
            name: as_str(name),
            owner: as_str(owner),
            identity: core::num::NonZeroU16::new(ident).map(IdentityId),
            token,
            value: value.map(|(v, _)| v),
            data_revision: value.map(|(_, r)| r),
            readers,
        };
        encode_change(&c, &mut self.pending);
    }
}
