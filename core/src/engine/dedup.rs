//! Request IDs: a mutating request that carries a `RequestID` is applied
//! once. A resend of it (same action, owner, identity and ID) within the
//! window gets the first answer again instead of a second application, so
//! a client may resend a request that may already have been applied (its
//! connection failed after writing it) without a compare-and-set turning
//! into a `Conflict` or an `Erase` into a `NotFound`.
//!
//! Which requests: `Put`, `Erase` and `Unlock`, whose second application
//! would answer differently from the first. A `Lock` is never replayed from
//! memory: applying it again answers the truth of the moment (still held by
//! its owner: re-locked with the same token; lost meanwhile: `NotOwner` or a
//! new grant), where a remembered `Locked` could tell a client it holds a
//! lock that expired since.
//!
//! Bounded: at most [`Config::dedup_capacity`](super::Config) answers (the
//! oldest forgotten first), none older than
//! [`Config::dedup_window`](super::Config), 48 bytes each, outside the memory
//! budget. Deterministic like the rest of the engine (the same requests at
//! the same instants give the same table), and part of its snapshot.

use super::table::KeyHasher;
use super::wheel::NONE;
use super::{Engine, Storage};
use crate::protocol::{Command, Response, Revision, Status};
use crate::stats::Stat;

/// One remembered answer, in a FIFO by the instant it was made.
pub(super) struct DedupSlot {
    /// Keyed hash of (action, owner, identity, request ID).
    pub(super) key: u64,
    /// When the first answer was made.
    pub(super) at: u64,
    pub(super) answer: Replay,
    pub(super) prev: u32,
    pub(super) next: u32,
}

/// The parts of an answer to a `Put`, `Erase` or `Unlock` that vary; the
/// rest comes from the request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Replay {
    pub(super) status: Status,
    /// The revision of a `Put`'s `Done` or `Conflict`.
    pub(super) revision: Option<u64>,
    /// Whether the answer carried the owner's `ID`.
    pub(super) with_id: bool,
}

impl Replay {
    fn of(r: &Response<'_>) -> Self {
        Self {
            status: r.status,
            revision: r.revision.map(|r| r.0),
            with_id: r.id.is_some(),
        }
    }

    /// The answer again, for the resent `command`.
    fn answer<'c>(self, command: &Command<'c>) -> Response<'c> {
        let mut r = Response::new(self.status);
        if let (true, Some((_, owner))) = (self.with_id, command.target()) {
            r.id = Some(owner.0);
        }
        r.revision = self.revision.map(Revision);
        if let (Status::Done, Command::Put { ttl, .. }) = (self.status, command) {
            r.expire = Some(*ttl);
        }
        r
    }

    pub(super) fn encode(self) -> (u8, u64) {
        let status = self.status as u8;
        let flags = u8::from(self.with_id) | u8::from(self.revision.is_some()) << 1;
        (status << 2 | flags, self.revision.unwrap_or(0))
    }

    pub(super) fn decode(code: u8, revision: u64) -> Option<Self> {
        let status = *Status::ALL.get(usize::from(code >> 2))?;
        Some(Self {
            status,
            with_id: code & 1 == 1,
            revision: (code & 2 == 2).then_some(revision),
        })
    }
}

/// Which actions are remembered, and the tag that keeps their IDs apart.
fn remembered(command: &Command<'_>) -> Option<u8> {
    match command {
        Command::Unlock { .. } => Some(1),
        Command::Put { .. } => Some(2),
        Command::Erase { .. } => Some(3),
        _ => None,
    }
}

impl<S: Storage> Engine<S> {
    /// The remembered answer for `command` with `request_id`, if any, or
    /// the key to remember its answer under.
    pub(super) fn dedup_lookup<'c>(
        &mut self,
        command: &Command<'c>,
        ident: u16,
        request_id: &str,
    ) -> Result<Response<'c>, Option<u64>> {
        let (Some(action), Some((_, owner))) = (remembered(command), command.target()) else {
            return Err(None);
        };
        let key = self.hasher.key64(&[
            &[action],
            owner.0.as_bytes(),
            &ident.to_le_bytes(),
            request_id.as_bytes(),
        ]);
        match self.dedup.find(key, |d| d.key == key) {
            Some(slot) => {
                self.stats.incr(Stat::Replayed);
                Ok(self.dedup.get(slot).answer.answer(command))
            }
            None => Err(Some(key)),
        }
    }

    /// Remembers the first answer `r`, made at `now`, under `key`.
    pub(super) fn dedup_record(&mut self, key: u64, r: &Response<'_>, now: u64) {
        if matches!(r.status, Status::BadPayload | Status::BadAction) {
            return;
        }
        self.dedup_insert(key, Replay::of(r), now);
    }

    pub(super) fn dedup_insert(&mut self, key: u64, answer: Replay, at: u64) {
        if self.dedup_capacity == 0 {
            return;
        }
        while self.dedup.live >= self.dedup_capacity {
            self.dedup_forget_oldest();
        }
        let entry = DedupSlot {
            key,
            at,
            answer,
            prev: self.dedup_tail,
            next: NONE,
        };
        // Full (fixed storage) or out of memory: the request is applied
        // anyway; only a resend of it would be applied again.
        let Ok(slot) = self.dedup.insert(entry, key, |d| d.key) else {
            return;
        };
        if self.dedup_tail == NONE {
            self.dedup_head = slot;
        } else {
            self.dedup.get_mut(self.dedup_tail).next = slot;
        }
        self.dedup_tail = slot;
    }

    fn dedup_forget_oldest(&mut self) {
        let head = self.dedup_head;
        if head == NONE {
            return;
        }
        let d = self.dedup.get(head);
        let (key, next) = (d.key, d.next);
        self.dedup.remove(head, key);
        self.dedup_head = next;
        if next == NONE {
            self.dedup_tail = NONE;
        } else {
            self.dedup.get_mut(next).prev = NONE;
        }
    }

    /// Forgets answers older than the window at `now`.
    pub(super) fn dedup_expire(&mut self, now: u64) {
        while self.dedup_head != NONE
            && self.dedup.get(self.dedup_head).at + self.dedup_window <= now
        {
            self.dedup_forget_oldest();
        }
    }

    /// Answers remembered.
    pub fn remembered_requests(&self) -> usize {
        self.dedup.live
    }
}

impl KeyHasher {
    /// A 64-bit keyed hash of several byte strings, each length-prefixed
    /// so that no two different lists collide by concatenation.
    pub(super) fn key64(self, parts: &[&[u8]]) -> u64 {
        use core::hash::Hasher as _;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.0[0], self.0[1]);
        for p in parts {
            h.write(&(p.len() as u64).to_le_bytes());
            h.write(p);
        }
        h.finish()
    }
}
