//! Watches (PROTOCOL.md section 8, "Watches"): connections subscribed to
//! the changes of a name or a prefix, the bounded history they resume
//! from, and the budget that cuts off a watcher that does not read.
//!
//! ```text
//!  engine ──drain_changes──▶ history ring (bounded: events and bytes)
//!                             │
//!                             └─▶ each watcher in scope: one event line
//!                                 into its connection's output, unless
//!                                 its unread bytes would pass the budget:
//!                                 then one reason line, and it is cut off
//! ```
//!
//! Changes come from the engine as it applies requests (or, on a cluster
//! member, log entries), so any member serves watches of what it has
//! applied, with the same revisions as every other member. The engine
//! copies changes out only once somebody has watched on this server
//! (until then a change costs it one addition); from then on every change
//! goes into the history, so a watcher that reconnects can resume.
//!
//! Must never: hold more than the budgets say (history: events and
//! bytes; a watcher: its unread output), deliver a change out of order or
//! after the watcher was cut off, or show an owner or value to a watcher
//! that [`may_read`] refuses.

use std::collections::{BTreeMap, VecDeque};

use dlm_core::engine::{ChangeRecords, ChangeRef, Principal, decode_change, may_read};
use dlm_core::protocol::{
    Framing, Message, Response, Revision, Status, Token, WatchEvent, WatchScope,
};
use dlm_core::stats::Stat;
use tracing::debug;

use crate::conn::Closing;
use crate::host::Host;

/// How watches are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchLimits {
    /// Most changes the history keeps for resuming watchers.
    pub history_events: usize,
    /// Most bytes the history keeps (names, owners, values, overhead).
    pub history_bytes: usize,
    /// Most bytes of events a watcher may leave unread before it is cut
    /// off.
    pub budget: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self {
            history_events: 10_000,
            history_bytes: 16 << 20,
            budget: 1 << 20,
        }
    }
}

/// What a watcher asked for, owned.
#[derive(Debug)]
enum Scope {
    Name(Box<str>),
    Prefix(Box<str>),
}

impl Scope {
    fn covers(&self, name: &str) -> bool {
        match self {
            Self::Name(n) => **n == *name,
            Self::Prefix(p) => name.starts_with(&**p),
        }
    }
}

/// One watching connection.
#[derive(Debug)]
struct Watcher {
    generation: u32,
    scope: Scope,
    owner: Box<str>,
    principal: Principal,
    /// Its identity's name, if it has one: a value shared with that
    /// identity shows it the value.
    identity: Option<Box<str>>,
    framing: Framing,
    /// The last revision it was told about (or resumed from, or skipped
    /// as out of its scope).
    told: u64,
    /// Replaying the history after `told`, as fast as it reads: it gets
    /// no live event until it has caught up.
    catching_up: bool,
}

/// Every watcher of this server and the history they resume from.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    limits: WatchLimits,
    /// By connection slot.
    watchers: BTreeMap<usize, Watcher>,
    /// Whether anybody ever watched here, or this is a cluster member
    /// (the engine's feed is on).
    wanted: bool,
    /// Changes kept for resuming, oldest first.
    history: History,
    /// Every change after this revision is in the history.
    complete_after: u64,
}

/// Bytes of the history's chunks: records are copied into the newest
/// chunk; a chunk is dropped (kept for reuse) once its last record is.
const CHUNK: usize = 64 << 10;

/// The history: the engine's change records, copied as they are into
/// chunks of bytes, and one small index entry per change. Keeping a
/// change costs a copy of its record, and forgetting one costs nothing
/// (no allocation or free per change: a copied-out change used to cost
/// four of each, 12% of a cluster member's time).
#[derive(Debug, Default)]
struct History {
    /// One per change, oldest first.
    index: VecDeque<Kept>,
    /// The chunks, oldest first; the first is chunk number `first_chunk`.
    chunks: VecDeque<Vec<u8>>,
    first_chunk: u64,
    /// An emptied chunk, for the next.
    spare: Option<Vec<u8>>,
    /// Bytes of the records kept and their index entries.
    bytes: usize,
}

/// Where one change's record is.
#[derive(Clone, Copy, Debug)]
struct Kept {
    revision: u64,
    chunk: u64,
    at: u32,
    len: u32,
}

impl History {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    /// Keeps `record` (the change of `revision`).
    fn push(&mut self, revision: u64, record: &[u8]) {
        let fits = self
            .chunks
            .back()
            .is_some_and(|c| c.len() + record.len() <= c.capacity().max(CHUNK));
        if !fits {
            let mut chunk = self
                .spare
                .take()
                .filter(|c| c.capacity() >= record.len())
                .unwrap_or_else(|| Vec::with_capacity(CHUNK.max(record.len())));
            chunk.clear();
            self.chunks.push_back(chunk);
        }
        let chunk = self.first_chunk + self.chunks.len() as u64 - 1;
        let Some(back) = self.chunks.back_mut() else {
            return;
        };
        let (Ok(at), Ok(len)) = (u32::try_from(back.len()), u32::try_from(record.len())) else {
            return;
        };
        back.extend_from_slice(record);
        self.index.push_back(Kept {
            revision,
            chunk,
            at,
            len,
        });
        self.bytes += record.len() + std::mem::size_of::<Kept>();
    }

    /// Forgets the oldest change; its revision.
    fn pop(&mut self) -> Option<u64> {
        let old = self.index.pop_front()?;
        self.bytes -= old.len as usize + std::mem::size_of::<Kept>();
        let still_used = self.index.front().is_some_and(|k| k.chunk == old.chunk);
        if !still_used && let Some(chunk) = self.chunks.pop_front() {
            self.first_chunk += 1;
            if chunk.capacity() == CHUNK {
                self.spare = Some(chunk);
            }
        }
        Some(old.revision)
    }

    /// The position of the first change after `revision`.
    fn after(&self, revision: u64) -> usize {
        self.index.partition_point(|k| k.revision <= revision)
    }

    /// The change at position `i`, and its record's length.
    fn get(&self, i: usize) -> Option<(ChangeRef<'_>, usize)> {
        let k = self.index.get(i)?;
        let chunk = self
            .chunks
            .get(usize::try_from(k.chunk - self.first_chunk).ok()?)?;
        let record = chunk.get(k.at as usize..k.at as usize + k.len as usize)?;
        Some((decode_change(record)?, record.len()))
    }
}

impl Watches {
    pub(crate) fn new(limits: WatchLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Whether connection `slot` (of `generation`) is watching.
    pub(crate) fn watching(&self, slot: usize, generation: u32) -> bool {
        self.watchers
            .get(&slot)
            .is_some_and(|w| w.generation == generation)
    }

    /// Connection `slot` is gone.
    pub(crate) fn forget(&mut self, slot: usize) -> bool {
        self.watchers.remove(&slot).is_some()
    }

    /// Keeps the change of `revision` (its engine record) for resuming,
    /// forgetting the oldest past the limits.
    fn remember(&mut self, revision: u64, record: &[u8]) {
        self.history.push(revision, record);
        while self.history.len() > self.limits.history_events
            || self.history.bytes > self.limits.history_bytes
        {
            let Some(old) = self.history.pop() else {
                break;
            };
            self.complete_after = old;
        }
    }
}

/// The line a watcher gets when it is cut off, and why.
fn cut_off_line(framing: Framing, why: &str, told: u64) -> Vec<u8> {
    let mut r = Response::new(Status::No);
    r.error = Some(Message::Text(why));
    r.revision = Some(Revision(told));
    let mut line = Vec::with_capacity(160);
    // Writing to a Vec cannot fail.
    let _ = r.write(framing, &mut line);
    line
}

/// What a watcher is told of `c`.
fn event_line(w: &Watcher, c: &ChangeRef<'_>, out: &mut Vec<u8>) {
    let readable = may_read(
        c.owner,
        c.identity,
        c.readers,
        &w.owner,
        w.principal,
        w.identity.as_deref(),
    );
    let ev = WatchEvent {
        revision: c.revision,
        what: c.what,
        subject: c.subject,
        name: c.name,
        owner: readable.then_some(c.owner),
        token: c.token.map(Token),
        value: if readable { c.value } else { None },
        data_revision: c.data_revision.map(Revision),
    };
    // Writing to a Vec cannot fail.
    let _ = ev.write(w.framing, out);
}

/// Why a watcher is cut off.
const TOO_SLOW: &str =
    "watch cut off: too many events unread (the server's budget per watcher); resume from Revision";
const OUT_OF_MEMORY: &str =
    "watch cut off: the server's connection memory is spent; resume from Revision";
const BEHIND: &str = "watch cut off: it fell behind the events this server keeps; read the state again and watch anew";
const LOST: &str = "watch cut off: this server lost the events since Revision (it restored a snapshot); read the state again and watch anew";

impl Host {
    /// Starts a watch on connection `slot`: answers `Done` with the
    /// current revision (and replays the history after `since`), or
    /// `Conflict` if the history does not reach back to `since`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_watch(
        &mut self,
        slot: usize,
        generation: u32,
        framing: Framing,
        scope: WatchScope<'_>,
        owner: &str,
        principal: Principal,
        since: Option<Revision>,
    ) {
        self.pump_watches();
        let current = self.engine.revision();
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let stats = self.engine.stats_mut();
        stats.incr(Stat::Out);
        if !conn.held.is_empty() || self.watches.watching(slot, generation) {
            stats.incr(Stat::BadPayload);
            let mut r = Response::new(Status::BadPayload);
            r.error = Some(Message::Text(
                "Watch needs a connection of its own: no request in flight before it, and one Watch per connection",
            ));
            conn.emit(&r, framing);
            return;
        }
        if self.replica.as_ref().is_some_and(|r| !r.bootstrapped) {
            // Its engine is not the cluster's yet (the first entry makes
            // it anew): revisions from it would mean nothing.
            let mut r = Response::new(Status::No);
            r.error = Some(Message::Text(
                "this member has not applied the cluster's first entry yet; try again",
            ));
            conn.emit(&r, framing);
            return;
        }
        let from = since.map_or(current, |s| s.0);
        let w = &self.watches;
        // Without the feed on, nothing was kept: only "from now" works.
        let reachable = if w.wanted {
            from >= w.complete_after
        } else {
            from == current
        };
        if from > current || !reachable {
            stats.incr(Stat::WatchCompacted);
            let mut r = Response::new(Status::Conflict);
            r.revision = Some(Revision(current));
            r.error = Some(Message::Text(if from > current {
                "Revision is ahead of this server's: read the state again and watch from the current Revision"
            } else {
                "history compacted: the events after Revision are no longer kept; read the state again and watch from the current Revision"
            }));
            conn.emit(&r, framing);
            return;
        }
        stats.incr(Stat::Watch);
        let mut r = Response::new(Status::Done);
        r.revision = Some(Revision(current));
        conn.emit(&r, framing);
        if !self.watches.wanted {
            self.watches.wanted = true;
            self.watches.complete_after = current;
            self.engine.set_feed(true);
        }
        let identity = match principal {
            Principal::Anonymous => None,
            Principal::Identity(id) => self.engine.identity_name(id).map(Box::from),
        };
        let watcher = Watcher {
            generation,
            scope: match scope {
                WatchScope::Name(n) => Scope::Name(n.0.into()),
                WatchScope::Prefix(p) => Scope::Prefix(p.into()),
            },
            owner: owner.into(),
            principal,
            identity,
            framing,
            told: from,
            catching_up: true,
        };
        self.watches.watchers.insert(slot, watcher);
        self.engine
            .stats_mut()
            .set(Stat::AWatch, self.watches.watchers.len() as u64);
        // Replay what it missed, as fast as it reads.
        self.catch_up(slot);
        self.actions.write.push(slot);
        self.account(slot);
    }

    /// Replays the history to catching-up watcher `slot` until its unread
    /// output reaches the budget (the rest when it has read that), or
    /// until it has caught up and gets live events. Cut off if the
    /// history no longer holds the next event it needs.
    pub(crate) fn catch_up(&mut self, slot: usize) {
        loop {
            let Some(w) = self.watches.watchers.get(&slot) else {
                return;
            };
            if !w.catching_up {
                return;
            }
            let told = w.told;
            if told < self.watches.complete_after {
                self.cut_off(slot, BEHIND);
                return;
            }
            let history = &self.watches.history;
            let Some((c, size)) = history.get(history.after(told)) else {
                if let Some(w) = self.watches.watchers.get_mut(&slot) {
                    w.catching_up = false;
                }
                return;
            };
            let revision = c.revision;
            if !w.scope.covers(c.name) {
                if let Some(w) = self.watches.watchers.get_mut(&slot) {
                    w.told = revision;
                }
                continue;
            }
            let unread = self
                .conns
                .get(slot)
                .and_then(Option::as_ref)
                .map_or(0, |c| c.out.len() - c.written);
            if unread > 0 && unread + size > self.watches.limits.budget {
                // The rest when this has been read.
                return;
            }
            let mut line = Vec::with_capacity(96 + c.name.len());
            event_line(w, &c, &mut line);
            if !self.deliver_line(slot, w.generation, revision, &line) {
                return;
            }
        }
    }

    /// Connection `slot` closed: it watches no more.
    pub(crate) fn forget_watch(&mut self, slot: usize) {
        if self.watches.forget(slot) {
            self.engine
                .stats_mut()
                .set(Stat::AWatch, self.watches.watchers.len() as u64);
        }
    }

    /// Whether connection `slot` watches (whatever its generation).
    pub(crate) fn watches_slot(&self, slot: usize) -> bool {
        self.watches.watchers.contains_key(&slot)
    }

    /// Whether connection `slot` of `generation` watches (it takes no
    /// other request).
    pub(crate) fn is_watching(&self, slot: usize, generation: u32) -> bool {
        self.watches.watching(slot, generation)
    }

    /// Keeps the history of changes from now on, watched or not (a
    /// cluster member's, so that a watch can resume on any member),
    /// unless `--watch-history 0` says to keep none.
    pub(crate) fn keep_watch_history(&mut self) {
        if !self.watches.wanted && self.watches.limits.history_events > 0 {
            self.watches.wanted = true;
            self.watches.complete_after = self.engine.revision();
            self.engine.set_feed(true);
        }
    }

    /// Takes the engine's changes into the history and to every watcher
    /// in scope. Runs after every call into the engine (the driver's
    /// [`take_actions`](Host::take_actions)); nothing to do until somebody
    /// watches.
    pub(crate) fn pump_watches(&mut self) {
        if !self.watches.wanted {
            return;
        }
        if !self.engine.feed() {
            // A new engine (a snapshot restored, a cluster formed): the
            // changes in between are unknown, so nobody can be told them.
            debug!(
                revision = self.engine.revision(),
                watchers = self.watches.watchers.len(),
                "the engine was replaced: watchers cut off"
            );
            self.engine.set_feed(true);
            self.watches.history.clear();
            self.watches.complete_after = self.engine.revision();
            let slots: Vec<usize> = self.watches.watchers.keys().copied().collect();
            for slot in slots {
                self.cut_off(slot, LOST);
            }
            return;
        }
        let records = self.engine.take_change_records();
        if records.is_empty() {
            self.engine.return_change_records(records);
            return;
        }
        for (c, record) in ChangeRecords::new(&records) {
            if !self.watches.watchers.is_empty() {
                let slots: Vec<usize> = self
                    .watches
                    .watchers
                    .iter()
                    .filter(|(_, w)| {
                        !w.catching_up && w.scope.covers(c.name) && c.revision > w.told
                    })
                    .map(|(&s, _)| s)
                    .collect();
                for slot in slots {
                    self.deliver(slot, &c);
                }
            }
            self.watches.remember(c.revision, record);
        }
        self.engine.return_change_records(records);
    }

    /// Writes change `c` to watcher `slot`, or cuts it off if that would
    /// pass its budget. Returns whether it still watches.
    fn deliver(&mut self, slot: usize, c: &ChangeRef<'_>) -> bool {
        let Some(w) = self.watches.watchers.get(&slot) else {
            return false;
        };
        let generation = w.generation;
        if !w.scope.covers(c.name) {
            return true;
        }
        let mut line = Vec::with_capacity(96 + c.name.len());
        event_line(w, c, &mut line);
        self.deliver_line(slot, generation, c.revision, &line)
    }

    /// Writes `line` (the event of `revision`) to watcher `slot` of
    /// `generation`, or cuts it off if that would pass its budget.
    /// Returns whether it still watches.
    fn deliver_line(&mut self, slot: usize, generation: u32, revision: u64, line: &[u8]) -> bool {
        let budget = self.watches.limits.budget;
        let memory_left = self
            .config_connection_memory()
            .saturating_sub(self.connection_memory());
        let Some(conn) = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == generation && c.closing == Closing::No)
        else {
            self.forget_watch(slot);
            return false;
        };
        let unread = conn.out.len() - conn.written;
        // One event always fits an empty queue, however large.
        if unread > 0 && unread + line.len() > budget {
            self.cut_off(slot, TOO_SLOW);
            return false;
        }
        if line.len() > memory_left && conn.charge() > crate::host::CONN_BASE {
            self.cut_off(slot, OUT_OF_MEMORY);
            return false;
        }
        conn.out.extend_from_slice(line);
        if let Some(w) = self.watches.watchers.get_mut(&slot) {
            w.told = revision;
        }
        self.actions.write.push(slot);
        self.account(slot);
        true
    }

    /// Ends watcher `slot` with one line saying why (and the last revision
    /// it was told); the connection closes once that is written.
    fn cut_off(&mut self, slot: usize, why: &str) {
        let Some(w) = self.watches.watchers.remove(&slot) else {
            return;
        };
        let stats = self.engine.stats_mut();
        stats.incr(Stat::WatchCutOff);
        stats.set(Stat::AWatch, self.watches.watchers.len() as u64);
        debug!(slot, why, "watcher cut off");
        if let Some(conn) = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == w.generation)
        {
            conn.out
                .extend_from_slice(&cut_off_line(w.framing, why, w.told));
            conn.closing = Closing::AfterFlush;
            self.actions.write.push(slot);
            self.account(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::engine::{Subject, What, encode_change};
    use dlm_core::protocol::Readers;

    fn record(revision: u64, value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_change(
            &ChangeRef {
                revision,
                what: What::Put,
                subject: Subject::Data,
                name: "k",
                owner: "o",
                identity: None,
                token: None,
                value: Some(value),
                data_revision: Some(1),
                readers: Readers::Owner,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn history_is_bounded_in_events_and_bytes() {
        let mut w = Watches::new(WatchLimits {
            history_events: 3,
            history_bytes: 10_000,
            budget: 1,
        });
        for r in 1..=5 {
            w.remember(r, &record(r, "v"));
        }
        assert_eq!(w.history.len(), 3);
        assert_eq!(w.complete_after, 2);
        let big = "v".repeat(9_900);
        w.remember(6, &record(6, &big));
        assert!(w.history.bytes <= 10_000);
        assert_eq!(w.history.len(), 1);
        assert_eq!(w.complete_after, 5);
        let (c, _) = w.history.get(0).expect("kept");
        assert_eq!((c.revision, c.value), (6, Some(big.as_str())));
    }

    /// Changes spread over many chunks come back whole and in order;
    /// chunks are dropped as their last change goes, and reused.
    #[test]
    fn history_chunks_keep_every_change_until_it_is_forgotten() {
        let mut w = Watches::new(WatchLimits {
            history_events: 1_000,
            history_bytes: usize::MAX,
            budget: 1,
        });
        let value = |r: u64| format!("{r:0>width$}", width = (r % 700) as usize);
        for r in 1..=5_000 {
            w.remember(r, &record(r, &value(r)));
            assert!(w.history.len() <= 1_000);
        }
        assert_eq!(w.complete_after, 4_000);
        assert!(w.history.chunks.len() <= 1_000 * 800 / CHUNK + 2);
        assert_eq!(w.history.after(4_500), 500);
        for i in 0..w.history.len() {
            let (c, _) = w.history.get(i).expect("kept");
            let r = 4_001 + i as u64;
            assert_eq!(c.revision, r);
            assert_eq!(c.value, Some(value(r).as_str()));
        }
        while w.history.pop().is_some() {}
        assert_eq!((w.history.bytes, w.history.chunks.len()), (0, 0));
    }
}
