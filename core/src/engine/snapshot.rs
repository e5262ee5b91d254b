//! Snapshots: the whole engine state as bytes, and back.
//!
//! A snapshot holds locks, data, wait queues (in order), identities, the
//! token and waiter counters and the statistics. Deadlines are stored as
//! time remaining at the engine's current instant, so restoring at instant
//! `t` rebases them onto `t`; restoring at the snapshot's own instant gives
//! back the same state. This is the base a write-ahead log or replication
//! can build on.
//!
//! Format (little-endian): magic `DLMSNAP\0`, version `u32`, then the
//! sections below, then an FNV-1a 64 checksum of everything before it.
//! Strings are a `u32` length and the bytes.

use core::fmt;

use super::dedup::Replay;
use super::store::sealed::Pair as _;
use super::wheel::{Kind, Link, NONE, TimerRef};
use super::{DataSlot, Engine, KeyHasher, LockSlot, Storage, Told, WaiterSlot, overhead, widen};
use crate::protocol::{BufferTooSmall, Out, ReaderNames, Readers};
use crate::stats::Stat;
use crate::time::Instant;

const MAGIC: &[u8; 8] = b"DLMSNAP\0";
const VERSION: u32 = 9;
/// The version before multi-lock waiters: still read (it has none).
const VERSION_WITHOUT_MULTI: u32 = 7;
/// The version before values' readers were kept: still read (every value
/// is its owner's alone).
const VERSION_WITHOUT_READERS: u32 = 8;
/// The version before sessions: still read (it has none).
const VERSION_WITHOUT_SESSIONS: u32 = 5;
/// The version before the watch revision was kept: still read (the
/// revision stays what the engine had).
const VERSION_WITHOUT_REVISION: u32 = 6;
/// The version before semaphores and read/write locks: still read (it has
/// none).
const VERSION_WITHOUT_GROUPS: u32 = 4;
/// The version before grant and queueing instants were kept: still read
/// (those instants become the restore's).
const VERSION_WITHOUT_SINCE: u32 = 3;

/// Why a snapshot could not be restored. The engine is left empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes end early.
    Truncated,
    /// Not a dlm snapshot.
    BadMagic,
    /// A snapshot format this version does not read.
    UnsupportedVersion(u32),
    /// The checksum does not match: the bytes were damaged.
    Checksum,
    /// The content is inconsistent.
    Corrupt(&'static str),
    /// The engine's storage cannot hold the snapshot.
    Full,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("snapshot is truncated"),
            Self::BadMagic => f.write_str("not a dlm snapshot"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported snapshot version {v}"),
            Self::Checksum => f.write_str("snapshot checksum mismatch"),
            Self::Corrupt(what) => write!(f, "corrupt snapshot: {what}"),
            Self::Full => f.write_str("snapshot does not fit in this engine's storage"),
        }
    }
}

impl core::error::Error for SnapshotError {}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

struct Writer<'o, O: Out + ?Sized> {
    out: &'o mut O,
    sum: u64,
}

impl<O: Out + ?Sized> Writer<'_, O> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), BufferTooSmall> {
        self.sum = fnv(self.sum, b);
        self.out.put(b)
    }
    fn u16(&mut self, v: u16) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<(), BufferTooSmall> {
        self.bytes(&v.to_le_bytes())
    }
    fn len(&mut self, n: usize) -> Result<(), BufferTooSmall> {
        self.u64(n as u64)
    }
    fn str(&mut self, s: &[u8]) -> Result<(), BufferTooSmall> {
        self.u32(u32::try_from(s.len()).map_err(|_| BufferTooSmall)?)?;
        self.bytes(s)
    }
}

struct Reader<'b> {
    buf: &'b [u8],
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], SnapshotError> {
        if self.buf.len() < n {
            return Err(SnapshotError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize, SnapshotError> {
        usize::try_from(self.u64()?).map_err(|_| SnapshotError::Corrupt("count"))
    }
    fn str(&mut self) -> Result<&'b str, SnapshotError> {
        let n = self.u32()? as usize;
        core::str::from_utf8(self.take(n)?).map_err(|_| SnapshotError::Corrupt("string"))
    }
}

impl<S: Storage> Engine<S> {
    /// Writes the whole state. Deadlines are written relative to the
    /// engine's current instant (the last `now` it saw).
    pub fn snapshot<O: Out + ?Sized>(&self, out: &mut O) -> Result<(), BufferTooSmall> {
        let now = self.wheel.elapsed();
        let left = |link: &Link| link.when.saturating_sub(now);
        let mut w = Writer {
            out,
            sum: FNV_OFFSET,
        };
        w.bytes(MAGIC)?;
        w.u32(VERSION)?;
        w.u64(now)?;
        w.u64(self.next_token)?;
        w.u64(self.next_waiter)?;

        w.len(Stat::COUNT)?;
        for (stat, value) in self.stats.iter() {
            w.str(stat.name().as_bytes())?;
            w.u64(value)?;
        }

        w.len(self.identities.live)?;
        for (slot, i) in self.identities.iter() {
            w.u32(slot)?;
            w.str(i.name.parts().0)?;
            w.u64(i.max_data as u64)?;
        }

        w.len(self.timed.locks.live)?;
        for (_, l) in self.timed.locks.iter() {
            let (name, owner) = l.key.parts();
            w.str(name)?;
            w.str(owner)?;
            w.u16(l.ident)?;
            w.u64(l.token)?;
            w.u64(left(&l.link))?;
            w.u16(l.told.0)?;
            w.u64(now.saturating_sub(l.since))?;
        }

        w.len(self.timed.data.live)?;
        for (_, d) in self.timed.data.iter() {
            let (name, owner) = d.key.parts();
            w.str(name)?;
            w.str(owner)?;
            w.u16(d.ident)?;
            w.u64(d.revision)?;
            w.u64(left(&d.link))?;
            w.str(d.value().as_bytes())?;
            match d.readers() {
                Readers::Owner => w.bytes(&[0])?,
                Readers::Any => w.bytes(&[1])?,
                Readers::Named(names) => {
                    w.bytes(&[2])?;
                    w.str(names.as_str().as_bytes())?;
                }
            }
        }

        w.len(self.queues.live)?;
        for (_, q) in self.queues.iter() {
            w.str(self.timed.locks.get(q.lock).key.parts().0)?;
            w.u32(q.len)?;
            let mut at = q.head;
            while at != NONE {
                let wt = self.timed.waiters.get(at);
                w.str(wt.owner.parts().0)?;
                w.u16(wt.ident)?;
                w.u64(wt.id)?;
                w.u64(wt.tag)?;
                w.u64(wt.ttl)?;
                w.u64(left(&wt.link))?;
                w.u64(now.saturating_sub(wt.since))?;
                at = wt.next;
            }
        }
        w.len(self.dedup.live)?;
        let mut at = self.dedup_head;
        while at != NONE {
            let d = self.dedup.get(at);
            let (code, revision) = d.answer.encode();
            w.u64(d.key)?;
            w.u64(now.saturating_sub(d.at))?;
            w.bytes(&[code])?;
            w.u64(revision)?;
            at = d.next;
        }
        self.snapshot_groups(&mut w, now)?;
        self.snapshot_sessions(&mut w, now)?;
        w.u64(self.feed.revision)?;
        self.snapshot_multi(&mut w, now)?;
        let sum = w.sum;
        w.out.put(&sum.to_le_bytes())
    }

    #[cfg(feature = "alloc")]
    fn snapshot_groups<O: Out + ?Sized>(
        &self,
        w: &mut Writer<'_, O>,
        now: u64,
    ) -> Result<(), BufferTooSmall> {
        w.len(self.shared.groups.len())?;
        for (name, g) in &self.shared.groups {
            w.str(name.as_bytes())?;
            let (code, permits) = g.kind.code();
            w.bytes(&[code])?;
            w.u32(permits)?;
            match self.shared.pumps.get(name) {
                Some(&at) => {
                    w.bytes(&[1])?;
                    w.u64(now.saturating_sub(at))?;
                }
                None => w.bytes(&[0])?,
            }
            w.len(g.holds.len())?;
            for h in &g.holds {
                w.str(h.owner.as_bytes())?;
                w.u16(h.ident)?;
                w.u64(h.token)?;
                w.bytes(&[u8::from(h.write), u8::from(h.direct)])?;
                w.u64(h.when.saturating_sub(now))?;
                w.u64(now.saturating_sub(h.since))?;
            }
            w.len(g.queue.len())?;
            for q in &g.queue {
                w.str(q.owner.as_bytes())?;
                w.u16(q.ident)?;
                w.u64(q.id)?;
                w.u64(q.tag)?;
                w.u64(q.ttl)?;
                w.bytes(&[u8::from(q.write)])?;
                w.u64(q.when.saturating_sub(now))?;
                w.u64(now.saturating_sub(q.since))?;
            }
        }
        Ok(())
    }

    #[cfg(feature = "alloc")]
    fn snapshot_sessions<O: Out + ?Sized>(
        &self,
        w: &mut Writer<'_, O>,
        now: u64,
    ) -> Result<(), BufferTooSmall> {
        let ss = &self.sessions;
        w.len(ss.by_conn.len())?;
        for (c, s) in &ss.by_conn {
            w.u64(c.0)?;
            w.u64(s.ttl)?;
            w.u64(s.deadline.saturating_sub(now))?;
            w.len(s.holds.len())?;
            for (t, b) in &s.holds {
                w.u64(*t)?;
                w.str(b.name.as_bytes())?;
                w.u64(b.delay)?;
            }
        }
        w.len(ss.pending.len())?;
        for (id, (c, name, delay)) in &ss.pending {
            w.u64(*id)?;
            w.u64(c.0)?;
            w.str(name.as_bytes())?;
            w.u64(*delay)?;
        }
        w.len(ss.closed.len())?;
        for (t, until) in &ss.closed {
            w.u64(*t)?;
            w.u64(until.saturating_sub(now))?;
        }
        Ok(())
    }

    #[cfg(feature = "alloc")]
    fn snapshot_multi<O: Out + ?Sized>(
        &self,
        w: &mut Writer<'_, O>,
        now: u64,
    ) -> Result<(), BufferTooSmall> {
        let m = &self.multi;
        w.len(m.waiting.len())?;
        for (id, q) in &m.waiting {
            w.u64(*id)?;
            w.str(q.owner.as_bytes())?;
            w.u16(q.ident)?;
            w.u64(q.tag)?;
            w.u64(q.ttl)?;
            w.u64(q.when.saturating_sub(now))?;
            w.u64(now.saturating_sub(q.since))?;
            w.bytes(&[u8::from(q.single)])?;
            w.len(q.names.len())?;
            for n in &q.names {
                w.str(n.as_bytes())?;
            }
        }
        w.len(m.pumps.len())?;
        for (at, name) in &m.pumps {
            w.u64(now.saturating_sub(*at))?;
            w.str(name.as_bytes())?;
        }
        w.len(m.grants.len())?;
        for (first, names) in &m.grants {
            w.u64(*first)?;
            w.len(names.len())?;
            for n in names {
                w.str(n.as_bytes())?;
            }
        }
        Ok(())
    }

    #[cfg(not(feature = "alloc"))]
    // The same signature as the build with `alloc`, which reads `self`.
    #[allow(clippy::unused_self)]
    fn snapshot_multi<O: Out + ?Sized>(
        &self,
        w: &mut Writer<'_, O>,
        _now: u64,
    ) -> Result<(), BufferTooSmall> {
        w.len(0)?;
        w.len(0)?;
        w.len(0)
    }

    #[cfg(not(feature = "alloc"))]
    // The same signature as the build with `alloc`, which reads `self`.
    #[allow(clippy::unused_self)]
    fn snapshot_sessions<O: Out + ?Sized>(
        &self,
        w: &mut Writer<'_, O>,
        _now: u64,
    ) -> Result<(), BufferTooSmall> {
        w.len(0)?;
        w.len(0)?;
        w.len(0)
    }

    #[cfg(not(feature = "alloc"))]
    // The same signature as the build with `alloc`, which reads `self`.
    #[allow(clippy::unused_self)]
    fn snapshot_groups<O: Out + ?Sized>(
        &self,
        w: &mut Writer<'_, O>,
        _now: u64,
    ) -> Result<(), BufferTooSmall> {
        w.len(0)
    }

    /// The instant a snapshot was taken at (the engine's `now` then), read
    /// from its header without restoring it: a replica restores a snapshot
    /// at its own instant so that deadlines stay what they were.
    pub fn snapshot_instant(bytes: &[u8]) -> Result<Instant, SnapshotError> {
        if bytes.len() < MAGIC.len() + 4 + 8 {
            return Err(SnapshotError::Truncated);
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let mut r = Reader {
            buf: &bytes[MAGIC.len()..],
        };
        let version = r.u32()?;
        if !(VERSION_WITHOUT_SINCE..=VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        Ok(Instant::from_millis(r.u64()?))
    }

    /// The snapshot as a new vector.
    #[cfg(feature = "alloc")]
    pub fn snapshot_to_vec(&self) -> alloc::vec::Vec<u8> {
        let mut v = alloc::vec::Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.snapshot(&mut v);
        v
    }

    /// Replaces the whole state with a snapshot's, rebasing its deadlines
    /// onto `now`. The configuration (limits, budget, hash key) stays the
    /// engine's own, and the token and waiter counters only ever go up
    /// (to the snapshot's, or stay the engine's if higher, as after
    /// [`seed_tokens`](Self::seed_tokens)). On error the engine is left empty, with its own token
    /// and waiter counters (never a damaged snapshot's, so no token or
    /// waiter ID is handed out twice).
    pub fn restore(&mut self, now: Instant, bytes: &[u8]) -> Result<(), SnapshotError> {
        let counters = (self.next_token, self.next_waiter);
        self.clear(now);
        let r = self.restore_inner(now.as_millis(), bytes);
        if r.is_err() {
            self.clear(now);
            (self.next_token, self.next_waiter) = counters;
        }
        r
    }

    fn clear(&mut self, now: Instant) {
        self.timed.locks.clear();
        self.timed.data.clear();
        self.timed.waiters.clear();
        self.queues.clear();
        self.identities.clear();
        self.dedup.clear();
        self.dedup_head = NONE;
        self.dedup_tail = NONE;
        self.wheel = super::Wheel::new(now.as_millis());
        #[cfg(feature = "alloc")]
        {
            self.shared = super::shared::Shared::default();
            self.sessions = super::session::Sessions::default();
            self.multi = super::multi::Multi::default();
            self.feed.pending.clear();
        }
        self.bytes = 0;
        self.stats = crate::stats::Stats::new();
    }

    fn restore_inner(&mut self, now: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        if bytes.len() < MAGIC.len() + 4 + 8 {
            return Err(SnapshotError::Truncated);
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut r = Reader { buf: body };
        r.take(MAGIC.len())?;
        let version = r.u32()?;
        if !(VERSION_WITHOUT_SINCE..=VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let has_since = version >= VERSION_WITHOUT_GROUPS;
        let has_groups = version > VERSION_WITHOUT_GROUPS;
        let has_sessions = version > VERSION_WITHOUT_SESSIONS;
        let has_readers = version > VERSION_WITHOUT_READERS;
        if fnv(FNV_OFFSET, body).to_le_bytes() != sum {
            return Err(SnapshotError::Checksum);
        }
        let when = |left: u64| -> Result<u64, SnapshotError> {
            if left == 0
                || left
                    > crate::limits::TTL_CEILING.as_millis() + super::MAX_DEADLINE_SLACK.as_millis()
            {
                return Err(SnapshotError::Corrupt("deadline"));
            }
            Ok(now + left)
        };
        let _snapshot_now = r.u64()?;
        // Never lower the counters: a host may have seeded tokens above an
        // old snapshot's, and a token must never be handed out twice.
        let (snap_token, snap_waiter) = (r.u64()?, r.u64()?);
        self.next_token = self.next_token.max(snap_token);
        self.next_waiter = self.next_waiter.max(snap_waiter);

        for _ in 0..r.len()? {
            let name = r.str()?;
            let value = r.u64()?;
            if let Some(stat) = Stat::from_name(name) {
                self.stats.set(stat, value);
            }
        }

        for _ in 0..r.len()? {
            let slot = r.u32()?;
            let name = r.str()?;
            let max_data = usize::try_from(r.u64()?).unwrap_or(usize::MAX);
            let id = self
                .register_identity(name, max_data)
                .map_err(|_| SnapshotError::Full)?;
            if id.slot() != slot {
                return Err(SnapshotError::Corrupt("identity numbering"));
            }
        }
        let known_ident = |this: &Self, ident: u16| {
            ident == 0 || (u32::from(ident) as usize) <= this.identities.live
        };

        for _ in 0..r.len()? {
            let (name, owner, ident) = (r.str()?, r.str()?, r.u16()?);
            let (token, left, told) = (r.u64()?, r.u64()?, r.u16()?);
            let held = if has_since { r.u64()? } else { 0 };
            if !known_ident(self, ident) || token >= snap_token {
                return Err(SnapshotError::Corrupt("lock"));
            }
            let (h, found) = self.find_lock(name);
            if found.is_some() {
                return Err(SnapshotError::Corrupt("duplicate lock"));
            }
            let key = S::Pair::new(name.as_bytes(), owner.as_bytes()).ok_or(SnapshotError::Full)?;
            let entry = LockSlot {
                key,
                token,
                link: Link::new(when(left)?),
                hash: h,
                ident,
                told: Told(told),
                since: now.saturating_sub(held),
            };
            let slot = self
                .timed
                .locks
                .insert(entry, widen(h), |l| widen(l.hash))
                .map_err(|_| SnapshotError::Full)?;
            self.wheel
                .insert(&mut self.timed, TimerRef::new(Kind::Lock, slot));
            self.bytes += name.len() + owner.len() + overhead::<LockSlot<S>>();
        }

        for _ in 0..r.len()? {
            let (name, owner, ident) = (r.str()?, r.str()?, r.u16()?);
            let (revision, left, value) = (r.u64()?, r.u64()?, r.str()?);
            if !known_ident(self, ident) || revision == 0 {
                return Err(SnapshotError::Corrupt("data"));
            }
            let readers = if has_readers {
                match r.array::<1>()? {
                    [0] => Readers::Owner,
                    [1] => Readers::Any,
                    [2] => Readers::Named(
                        ReaderNames::new(r.str()?)
                            .map_err(|_| SnapshotError::Corrupt("readers"))?,
                    ),
                    _ => return Err(SnapshotError::Corrupt("readers")),
                }
            } else {
                Readers::Owner
            };
            let (h, found) = self.find_data(name);
            if found.is_some() {
                return Err(SnapshotError::Corrupt("duplicate data"));
            }
            let key = S::Pair::new(name.as_bytes(), owner.as_bytes()).ok_or(SnapshotError::Full)?;
            let (stored, tag) = DataSlot::<S>::store(value, readers).ok_or(SnapshotError::Full)?;
            let entry = DataSlot {
                key,
                stored,
                revision,
                link: Link::new(when(left)?),
                hash: h,
                ident,
                readers: tag,
            };
            let slot = self
                .timed
                .data
                .insert(entry, widen(h), |d| widen(d.hash))
                .map_err(|_| SnapshotError::Full)?;
            self.wheel
                .insert(&mut self.timed, TimerRef::new(Kind::Data, slot));
            self.bytes +=
                Self::data_charge(name.len() + owner.len(), value.len() + readers.stored_len());
        }

        for _ in 0..r.len()? {
            let name = r.str()?;
            let (_, Some(lock)) = self.find_lock(name) else {
                return Err(SnapshotError::Corrupt("queue without lock"));
            };
            if self.find_queue(lock).1.is_some() {
                return Err(SnapshotError::Corrupt("duplicate queue"));
            }
            let count = r.u32()?;
            if count == 0 {
                return Err(SnapshotError::Corrupt("empty queue"));
            }
            for _ in 0..count {
                let (owner, ident, id) = (r.str()?, r.u16()?, r.u64()?);
                let (tag, ttl, left) = (r.u64()?, r.u64()?, r.u64()?);
                let waited = if has_since { r.u64()? } else { 0 };
                if !known_ident(self, ident) || id >= snap_waiter || ttl == 0 {
                    return Err(SnapshotError::Corrupt("waiter"));
                }
                let h = KeyHasher::int(id);
                if self.timed.waiters.find(widen(h), |w| w.id == id).is_some() {
                    return Err(SnapshotError::Corrupt("duplicate waiter"));
                }
                let key = S::Pair::new(owner.as_bytes(), b"").ok_or(SnapshotError::Full)?;
                let entry = WaiterSlot {
                    owner: key,
                    id,
                    tag,
                    ttl,
                    lock,
                    prev: NONE,
                    next: NONE,
                    link: Link::new(when(left)?),
                    ident,
                    since: now.saturating_sub(waited),
                };
                self.append_waiter(entry).map_err(|_| SnapshotError::Full)?;
                self.bytes += owner.len() + overhead::<WaiterSlot<S>>();
            }
        }
        for _ in 0..r.len()? {
            let (key, age) = (r.u64()?, r.u64()?);
            let [code] = r.array::<1>()?;
            let revision = r.u64()?;
            let answer = Replay::decode(code, revision).ok_or(SnapshotError::Corrupt("request"))?;
            if age > self.dedup_window {
                continue;
            }
            self.dedup_insert(key, answer, now.saturating_sub(age));
        }
        if has_groups {
            self.restore_groups(&mut r, now, snap_token, snap_waiter)?;
        }
        if has_sessions {
            self.restore_sessions(&mut r, now, snap_token, snap_waiter)?;
        }
        if version > VERSION_WITHOUT_REVISION {
            // Never lowered, like the tokens.
            self.feed.revision = self.feed.revision.max(r.u64()?);
        }
        if version > VERSION_WITHOUT_MULTI {
            self.restore_multi(&mut r, now, snap_token, snap_waiter)?;
        }
        if !r.buf.is_empty() {
            return Err(SnapshotError::Corrupt("trailing bytes"));
        }
        Ok(())
    }
}

impl<S: Storage> Engine<S> {
    #[cfg(feature = "alloc")]
    fn restore_groups(
        &mut self,
        r: &mut Reader<'_>,
        now: u64,
        snap_token: u64,
        snap_waiter: u64,
    ) -> Result<(), SnapshotError> {
        use super::shared::{Group, GroupKind, Hold, Waiting, entry_charge, group_charge};
        use alloc::string::String;
        let ceiling =
            crate::limits::TTL_CEILING.as_millis() + super::MAX_DEADLINE_SLACK.as_millis();
        let when = |left: u64| -> Result<u64, SnapshotError> {
            if left == 0 || left > ceiling {
                return Err(SnapshotError::Corrupt("deadline"));
            }
            Ok(now + left)
        };
        let idents = self.identities.live;
        let known_ident = |ident: u16| ident == 0 || (u32::from(ident) as usize) <= idents;
        let mut tokens = alloc::collections::BTreeSet::new();
        for _ in 0..r.len()? {
            let name = r.str()?;
            let [code] = r.array::<1>()?;
            let permits = r.u32()?;
            let kind =
                GroupKind::decode(code, permits).ok_or(SnapshotError::Corrupt("group kind"))?;
            if self.find_lock(name).1.is_some() || self.shared.groups.contains_key(name) {
                return Err(SnapshotError::Corrupt("duplicate group"));
            }
            let [pump] = r.array::<1>()?;
            let pump = match pump {
                0 => None,
                1 => Some(now.saturating_sub(r.u64()?)),
                _ => return Err(SnapshotError::Corrupt("group pump")),
            };
            let group = Group::new(kind);
            self.bytes += group_charge(name, &group.label);
            self.shared.groups.insert(String::from(name), group);
            for _ in 0..r.len()? {
                let (owner, ident, token) = (r.str()?, r.u16()?, r.u64()?);
                let [write, direct] = r.array::<2>()?;
                let (left, held) = (r.u64()?, r.u64()?);
                let fits = self
                    .shared
                    .groups
                    .get(name)
                    .is_some_and(|g| g.admits(write == 1));
                if !known_ident(ident)
                    || token >= snap_token
                    || !tokens.insert(token)
                    || write > 1
                    || direct > 1
                    || (write == 1 && kind != GroupKind::RwLock)
                    || !fits
                {
                    return Err(SnapshotError::Corrupt("hold"));
                }
                self.bytes += entry_charge(name, owner);
                self.add_hold(
                    name,
                    Hold {
                        owner: String::from(owner),
                        ident,
                        token,
                        write: write == 1,
                        when: when(left)?,
                        since: now.saturating_sub(held),
                        direct: direct == 1,
                    },
                );
            }
            for _ in 0..r.len()? {
                let (owner, ident, id) = (r.str()?, r.u16()?, r.u64()?);
                let (tag, ttl) = (r.u64()?, r.u64()?);
                let [write] = r.array::<1>()?;
                let (left, waited) = (r.u64()?, r.u64()?);
                if !known_ident(ident)
                    || id >= snap_waiter
                    || ttl == 0
                    || write > 1
                    || (write == 1 && kind != GroupKind::RwLock)
                    || self.shared.waiters.contains_key(&id)
                {
                    return Err(SnapshotError::Corrupt("group waiter"));
                }
                self.bytes += entry_charge(name, owner);
                self.add_waiter(
                    name,
                    Waiting {
                        id,
                        owner: String::from(owner),
                        ident,
                        tag,
                        ttl,
                        write: write == 1,
                        when: when(left)?,
                        since: now.saturating_sub(waited),
                    },
                );
            }
            let empty = self
                .shared
                .groups
                .get(name)
                .is_some_and(|g| g.holds.is_empty() && g.queue.is_empty());
            match pump {
                Some(at) => {
                    self.shared.pumps.insert(String::from(name), at);
                }
                None if empty => return Err(SnapshotError::Corrupt("empty group")),
                None => {}
            }
        }
        Ok(())
    }

    #[cfg(feature = "alloc")]
    fn restore_sessions(
        &mut self,
        r: &mut Reader<'_>,
        now: u64,
        snap_token: u64,
        snap_waiter: u64,
    ) -> Result<(), SnapshotError> {
        use super::session::{Bound, CLOSED_CHARGE, ConnId, Session, bound_charge, session_charge};
        use alloc::collections::BTreeMap;
        use alloc::string::String;
        let ceiling =
            crate::limits::TTL_CEILING.as_millis() + super::MAX_DEADLINE_SLACK.as_millis();
        let corrupt = SnapshotError::Corrupt("session");
        for _ in 0..r.len()? {
            let (c, ttl, left) = (ConnId(r.u64()?), r.u64()?, r.u64()?);
            if ttl == 0 || left == 0 || left > ceiling || self.sessions.by_conn.contains_key(&c) {
                return Err(corrupt);
            }
            let mut holds = BTreeMap::new();
            self.bytes += session_charge();
            for _ in 0..r.len()? {
                let (token, name, delay) = (r.u64()?, r.str()?, r.u64()?);
                if token >= snap_token || delay > ceiling {
                    return Err(corrupt);
                }
                self.bytes += bound_charge(name);
                let old = holds.insert(
                    token,
                    Bound {
                        name: String::from(name),
                        delay,
                    },
                );
                if old.is_some() || self.sessions.owner_of.insert(token, c).is_some() {
                    return Err(corrupt);
                }
            }
            self.sessions.timers.insert((now + left, c));
            self.sessions.by_conn.insert(
                c,
                Session {
                    ttl,
                    deadline: now + left,
                    holds,
                },
            );
        }
        for _ in 0..r.len()? {
            let (id, c, name, delay) = (r.u64()?, ConnId(r.u64()?), r.str()?, r.u64()?);
            if id >= snap_waiter || delay > ceiling || !self.sessions.by_conn.contains_key(&c) {
                return Err(corrupt);
            }
            self.bytes += bound_charge(name);
            if self
                .sessions
                .pending
                .insert(id, (c, String::from(name), delay))
                .is_some()
            {
                return Err(corrupt);
            }
        }
        for _ in 0..r.len()? {
            let (token, left) = (r.u64()?, r.u64()?);
            if token >= snap_token || left > ceiling {
                return Err(corrupt);
            }
            if self.sessions.closed.insert(token, now + left).is_some() {
                return Err(corrupt);
            }
            self.sessions.closed_by_time.insert((now + left, token));
            self.bytes += CLOSED_CHARGE;
        }
        self.sessions.pruned = self.sessions.owner_of.len() + self.sessions.pending.len();
        Ok(())
    }

    #[cfg(not(feature = "alloc"))]
    // The same signature as the build with `alloc`, which reads `self`.
    #[allow(clippy::unused_self)]
    fn restore_sessions(
        &mut self,
        r: &mut Reader<'_>,
        _now: u64,
        _snap_token: u64,
        _snap_waiter: u64,
    ) -> Result<(), SnapshotError> {
        if r.len()? == 0 && r.len()? == 0 && r.len()? == 0 {
            Ok(())
        } else {
            Err(SnapshotError::Full)
        }
    }

    #[cfg(feature = "alloc")]
    fn restore_multi(
        &mut self,
        r: &mut Reader<'_>,
        now: u64,
        snap_token: u64,
        snap_waiter: u64,
    ) -> Result<(), SnapshotError> {
        use super::multi::{MultiWaiting, record_charge, waiter_charge};
        use alloc::string::String;
        use alloc::vec::Vec;
        let ceiling =
            crate::limits::TTL_CEILING.as_millis() + super::MAX_DEADLINE_SLACK.as_millis();
        let idents = self.identities.live;
        let known_ident = |ident: u16| ident == 0 || (u32::from(ident) as usize) <= idents;
        let corrupt = SnapshotError::Corrupt("multi-lock waiter");
        let names = |r: &mut Reader<'_>, this: &Self| -> Result<Vec<String>, SnapshotError> {
            let n = r.len()?;
            if n == 0 || n > crate::protocol::MAX_LOCK_ALL {
                return Err(corrupt);
            }
            let mut out: Vec<String> = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.str()?;
                if name.is_empty()
                    || out.iter().any(|o| o == name)
                    || this.shared.groups.contains_key(name)
                {
                    return Err(corrupt);
                }
                out.push(String::from(name));
            }
            Ok(out)
        };
        for _ in 0..r.len()? {
            let (id, owner, ident) = (r.u64()?, r.str()?, r.u16()?);
            let (tag, ttl, left, waited) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            let [single] = r.array::<1>()?;
            let list = names(r, self)?;
            let taken = self.multi.waiting.contains_key(&id)
                || self.shared.waiters.contains_key(&id)
                || self
                    .timed
                    .waiters
                    .find(widen(KeyHasher::int(id)), |w| w.id == id)
                    .is_some();
            if !known_ident(ident)
                || id >= snap_waiter
                || taken
                || ttl == 0
                || left == 0
                || left > ceiling
                || single > 1
                || (single == 1 && list.len() != 1)
            {
                return Err(corrupt);
            }
            self.bytes += waiter_charge::<S>(&list, owner);
            self.insert_multi(
                id,
                MultiWaiting {
                    names: list,
                    owner: String::from(owner),
                    ident,
                    tag,
                    ttl,
                    when: now + left,
                    since: now.saturating_sub(waited),
                    single: single == 1,
                },
            );
        }
        for _ in 0..r.len()? {
            let (ago, name) = (r.u64()?, r.str()?);
            self.multi
                .pumps
                .insert((now.saturating_sub(ago), String::from(name)));
        }
        for _ in 0..r.len()? {
            let first = r.u64()?;
            let list = names(r, self)?;
            if first.saturating_add(list.len() as u64) > snap_token
                || self.multi.grants.contains_key(&first)
            {
                return Err(SnapshotError::Corrupt("multi-lock grant"));
            }
            self.bytes += list.iter().map(|n| record_charge(n)).sum::<usize>();
            self.multi.grants.insert(first, list);
        }
        Ok(())
    }

    #[cfg(not(feature = "alloc"))]
    // The same signature as the build with `alloc`, which reads `self`.
    #[allow(clippy::unused_self)]
    fn restore_multi(
        &mut self,
        r: &mut Reader<'_>,
        _now: u64,
        _snap_token: u64,
        _snap_waiter: u64,
    ) -> Result<(), SnapshotError> {
        if r.len()? == 0 && r.len()? == 0 && r.len()? == 0 {
            Ok(())
        } else {
            Err(SnapshotError::Full)
        }
    }

    #[cfg(not(feature = "alloc"))]
    // The same signature as the build with `alloc`, which reads `self`.
    #[allow(clippy::unused_self)]
    fn restore_groups(
        &mut self,
        r: &mut Reader<'_>,
        _now: u64,
        _snap_token: u64,
        _snap_waiter: u64,
    ) -> Result<(), SnapshotError> {
        if r.len()? == 0 {
            Ok(())
        } else {
            Err(SnapshotError::Full)
        }
    }
}
