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
use std::sync::Arc;

use dlm_core::engine::{Change, Principal, may_read};
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
    history: VecDeque<Arc<Change>>,
    history_bytes: usize,
    /// Every change after this revision is in the history.
    complete_after: u64,
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

    fn remember(&mut self, c: Arc<Change>) {
        let size = c.size();
        self.history_bytes += size;
        self.history.push_back(c);
        while self.history.len() > self.limits.history_events
            || self.history_bytes > self.limits.history_bytes
        {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= old.size();
            self.complete_after = old.revision;
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
fn event_line(w: &Watcher, c: &Change, out: &mut Vec<u8>) {
    let readable = may_read(
        &c.owner,
        c.identity,
        c.readers.get(),
        &w.owner,
        w.principal,
        w.identity.as_deref(),
    );
    let ev = WatchEvent {
        revision: c.revision,
        what: c.what,
        subject: c.subject,
        name: &c.name,
        owner: readable.then_some(c.owner.as_str()),
        token: c.token.map(Token),
        value: if readable { c.value.as_deref() } else { None },
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
            let at = history.partition_point(|c| c.revision <= told);
            let Some(c) = history.get(at).cloned() else {
                if let Some(w) = self.watches.watchers.get_mut(&slot) {
                    w.catching_up = false;
                }
                return;
            };
            if !w.scope.covers(&c.name) {
                if let Some(w) = self.watches.watchers.get_mut(&slot) {
                    w.told = c.revision;
                }
                continue;
            }
            let unread = self
                .conns
                .get(slot)
                .and_then(Option::as_ref)
                .map_or(0, |c| c.out.len() - c.written);
            if unread > 0 && unread + c.size() > self.watches.limits.budget {
                // The rest when this has been read.
                return;
            }
            if !self.deliver(slot, &c) {
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
            self.watches.history_bytes = 0;
            self.watches.complete_after = self.engine.revision();
            let slots: Vec<usize> = self.watches.watchers.keys().copied().collect();
            for slot in slots {
                self.cut_off(slot, LOST);
            }
            return;
        }
        let mut changes = Vec::new();
        self.engine.drain_changes(|c| changes.push(Arc::new(c)));
        for c in changes {
            let slots: Vec<usize> = self
                .watches
                .watchers
                .iter()
                .filter(|(_, w)| !w.catching_up && w.scope.covers(&c.name) && c.revision > w.told)
                .map(|(&s, _)| s)
                .collect();
            for slot in slots {
                self.deliver(slot, &c);
            }
            self.watches.remember(c);
        }
    }

    /// Writes change `c` to watcher `slot`, or cuts it off if that would
    /// pass its budget. Returns whether it still watches.
    fn deliver(&mut self, slot: usize, c: &Change) -> bool {
        let Some(w) = self.watches.watchers.get(&slot) else {
            return false;
        };
        let generation = w.generation;
        if !w.scope.covers(&c.name) {
            return true;
        }
        let mut line = Vec::with_capacity(96 + c.name.len());
        event_line(w, c, &mut line);
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
        conn.out.extend_from_slice(&line);
        if let Some(w) = self.watches.watchers.get_mut(&slot) {
            w.told = c.revision;
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
    use dlm_core::engine::{Subject, What};

    fn change(revision: u64, value: usize) -> Arc<Change> {
        Arc::new(Change {
            revision,
            what: What::Put,
            subject: Subject::Data,
            name: "k".into(),
            owner: "o".into(),
            identity: None,
            token: None,
            value: Some("v".repeat(value)),
            data_revision: Some(1),
            readers: dlm_core::engine::OwnedReaders::Owner,
        })
    }

    #[test]
    fn history_is_bounded_in_events_and_bytes() {
        let mut w = Watches::new(WatchLimits {
            history_events: 3,
            history_bytes: 10_000,
            budget: 1,
        });
        for r in 1..=5 {
            w.remember(change(r, 1));
        }
        assert_eq!(w.history.len(), 3);
        assert_eq!(w.complete_after, 2);
        w.remember(change(6, 9_800));
        assert!(w.history_bytes <= 10_000);
        assert_eq!(w.history.len(), 1);
        assert_eq!(w.complete_after, 5);
    }
}
