//! The engine against a reference model, driven by random command
//! sequences and clock moves.
//!
//! The model below is written to be obviously correct rather than fast:
//! plain `BTreeMap`s, one `Vec` of waiters in arrival order, and full scans
//! for every expiry. Time in the model moves one due instant at a time;
//! at each instant, waiters whose wait ran out time out, data entries go,
//! and expired locks are handed to their first waiter still waiting, in
//! the order of their grants. A lock handed over by a late `advance` is
//! held for the waiter's TTL from that advance.
//!
//! Operations use three names (shared by locks and data), three owner
//! IDs, two identities and anonymous callers, TTLs of 1 to 50 ms (now and
//! then 0, which is refused), waits, tokens of earlier grants, revisions
//! near the current one, cancels, revokes, `Stats` and `Version`, with the
//! clock moving 0 to 200 ms before each.
//!
//! Every response (status, ID, data, token, expire, revision), every event
//! (waiter, lock name, tag, response) and every engine counter and gauge
//! must agree with the model after every step. Independently of the
//! model, the engine's own grants are checked never to overlap: no two
//! owners hold one lock at one instant, and tokens only increase.
//!
//! The second property runs a random prefix, snapshots, restores into a
//! fresh engine, and then runs the same random continuation on both,
//! comparing every response and event.
// Test code: a panic is a failure.
#![allow(clippy::unwrap_used)]

extern crate alloc;

use alloc::collections::BTreeMap;

use dlm_core::engine::{Config, Engine, Event, Fixed, Heap, Outcome, Principal, Storage, WaiterId};
use dlm_core::protocol::{
    Command, Owner, Resource, Response, Revision, Status, Token, VERSION_STRING,
};
use dlm_core::stats::Stat;
use dlm_core::time::{Instant, Ttl};
use proptest::prelude::*;

mod common;
use common::{ENGINE_COUNTERS, Reply, locked};

const NAMES: [&str; 3] = ["n0", "n1", "n2"];
const OWNERS: [&str; 3] = ["o0", "o1", "o2"];
/// Waiters a `Fixed<WAITERS, ..>` engine can hold.
const WAITERS: usize = 4;
type Tiny = Fixed<WAITERS, 16, 32>;

// ---------------------------------------------------------------------------
// Owned responses and events

/// An event's waiter, lock and tag; its response is kept beside it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ev {
    waiter: u64,
    name: String,
    tag: u64,
}

/// The model speaks no error texts: a response without its own.
fn reply(r: &Response<'_>) -> Reply {
    Reply {
        error: None,
        ..Reply::of(r)
    }
}

fn ev(e: &Event<'_>) -> (Ev, Reply) {
    let r = reply(&e.response);
    (
        Ev {
            waiter: e.waiter.get(),
            name: e.name.to_owned(),
            tag: e.tag,
        },
        r,
    )
}

/// What one step produced.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Reply(Reply),
    Queued(u64),
    Bool(bool),
    None,
}

// ---------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug)]
enum Pick {
    /// A token some earlier grant carried (index into those seen).
    Seen(usize),
    /// Any number.
    Raw(u64),
}

#[derive(Clone, Copy, Debug)]
enum RevPick {
    Zero,
    /// The entry's current revision (per the model) plus -1, 0 or +1.
    Current(i8),
    Raw(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Lock {
        name: usize,
        owner: usize,
        who: u8,
        ttl: u64,
        wait: Option<u64>,
        token: Option<Pick>,
    },
    Unlock {
        name: usize,
        owner: usize,
        who: u8,
        token: Option<Pick>,
    },
    Test {
        name: usize,
        owner: usize,
        who: u8,
    },
    Put {
        name: usize,
        owner: usize,
        who: u8,
        ttl: u64,
        data: String,
        rev: Option<RevPick>,
    },
    Get {
        name: usize,
        owner: usize,
        who: u8,
    },
    Erase {
        name: usize,
        owner: usize,
        who: u8,
    },
    /// Cancel a waiter seen earlier (index into those seen).
    Cancel(usize),
    Revoke {
        name: usize,
        token: Pick,
    },
    Advance,
    Stats,
    Version,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => any::<usize>().prop_map(Pick::Seen),
        1 => (0u64..30).prop_map(Pick::Raw),
    ]
}

fn rev_pick() -> impl Strategy<Value = RevPick> {
    prop_oneof![
        2 => Just(RevPick::Zero),
        4 => (-1i8..=1).prop_map(RevPick::Current),
        1 => (0u64..6).prop_map(RevPick::Raw),
    ]
}

fn ttl() -> impl Strategy<Value = u64> {
    // Now and then a zero TTL, which is refused.
    prop_oneof![1 => Just(0u64), 40 => 1u64..=50]
}

fn op() -> impl Strategy<Value = Op> {
    let target = (0..NAMES.len(), 0..OWNERS.len(), 0u8..3);
    prop_oneof![
        8 => (target.clone(), ttl(), prop::option::weighted(0.5, 0u64..=60), prop::option::weighted(0.2, pick()))
            .prop_map(|((name, owner, who), ttl, wait, token)| Op::Lock { name, owner, who, ttl, wait, token }),
        3 => (target.clone(), prop::option::weighted(0.3, pick()))
            .prop_map(|((name, owner, who), token)| Op::Unlock { name, owner, who, token }),
        2 => target.clone().prop_map(|(name, owner, who)| Op::Test { name, owner, who }),
        3 => (target.clone(), ttl(), "[a-c\u{e9}\u{1F512}]{0,5}", prop::option::weighted(0.4, rev_pick()))
            .prop_map(|((name, owner, who), ttl, data, rev)| Op::Put { name, owner, who, ttl, data, rev }),
        2 => target.clone().prop_map(|(name, owner, who)| Op::Get { name, owner, who }),
        1 => target.prop_map(|(name, owner, who)| Op::Erase { name, owner, who }),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (0..NAMES.len(), pick()).prop_map(|(name, token)| Op::Revoke { name, token }),
        3 => Just(Op::Advance),
        1 => Just(Op::Stats),
        1 => Just(Op::Version),
    ]
}

/// A step: how far the clock moves first, then the operation.
fn steps(max: usize) -> impl Strategy<Value = Vec<(u64, Op)>> {
    let dt = prop_oneof![3 => Just(0u64), 4 => 1u64..=5, 2 => 5u64..=40, 1 => 40u64..=200];
    prop::collection::vec((dt, op()), 1..max)
}

// ---------------------------------------------------------------------------
// The model

#[derive(Clone, Debug)]
struct MLock {
    owner: usize,
    who: u8,
    token: u64,
    until: u64,
    /// Waiters told `Locked` with this token, or `None` once a request
    /// was answered directly: an orphaned grant frees the lock only when
    /// it takes back the last waiter who was told.
    told: Option<u32>,
}

#[derive(Clone, Debug)]
struct MData {
    owner: usize,
    who: u8,
    value: String,
    rev: u64,
    until: u64,
}

#[derive(Clone, Debug)]
struct MWaiter {
    id: u64,
    name: usize,
    owner: usize,
    who: u8,
    ttl: u64,
    until: u64,
    tag: u64,
}

#[derive(Default)]
struct Model {
    now: u64,
    locks: BTreeMap<usize, MLock>,
    data: BTreeMap<usize, MData>,
    /// Every queued waiter, in arrival order (ids increase).
    waiters: Vec<MWaiter>,
    next_token: u64,
    next_waiter: u64,
    /// Waiters it can hold, if limited.
    capacity: Option<usize>,
    counters: BTreeMap<&'static str, u64>,
    events: Vec<(Ev, Reply)>,
}

impl Model {
    fn new(capacity: Option<usize>) -> Self {
        Self {
            next_token: 1,
            next_waiter: 1,
            capacity,
            ..Self::default()
        }
    }

    fn count(&mut self, stat: Stat) {
        self.add(stat, 1);
    }

    fn add(&mut self, stat: Stat, n: u64) {
        *self.counters.entry(stat.name()).or_default() += n;
    }

    fn event(&mut self, w: &MWaiter, r: Reply) {
        let e = Ev {
            waiter: w.id,
            name: NAMES[w.name].to_owned(),
            tag: w.tag,
        };
        self.events.push((e, r));
    }

    fn time_out(&mut self, w: &MWaiter) {
        self.count(Stat::WaitTimeout);
        self.count(Stat::NotOwner);
        self.event(w, Reply::bare(Status::NotOwner));
    }

    /// Removes and returns the first waiter for `name`.
    fn pop_waiter(&mut self, name: usize) -> Option<MWaiter> {
        let i = self.waiters.iter().position(|w| w.name == name)?;
        Some(self.waiters.remove(i))
    }

    fn first_waiter(&self, name: usize) -> Option<&MWaiter> {
        self.waiters.iter().find(|w| w.name == name)
    }

    /// The lock `name` came free at `free_at`; it is now `now`. Hand it
    /// to the first waiter still waiting, with the same-owner waiters
    /// right behind as re-locks, or drop it.
    fn release(&mut self, name: usize, free_at: u64, now: u64) {
        while let Some(w) = self.pop_waiter(name) {
            if w.until <= free_at {
                self.time_out(&w);
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            self.locks.insert(
                name,
                MLock {
                    owner: w.owner,
                    who: w.who,
                    token,
                    until: now + w.ttl,
                    told: Some(1),
                },
            );
            self.count(Stat::Lock);
            self.count(Stat::WaitGranted);
            self.event(&w, locked(OWNERS[w.owner], token, w.ttl));
            while let Some(next) = self.first_waiter(name).cloned() {
                if next.until <= free_at {
                    self.pop_waiter(name);
                    self.time_out(&next);
                } else if next.owner == w.owner && next.who == w.who {
                    self.pop_waiter(name);
                    let l = self.locks.get_mut(&name).unwrap();
                    l.until = l.until.max(now + next.ttl);
                    l.told = l.told.map(|n| n + 1);
                    self.count(Stat::Relock);
                    self.count(Stat::WaitGranted);
                    self.event(&next, locked(OWNERS[w.owner], token, next.ttl));
                } else {
                    break;
                }
            }
            return;
        }
        self.locks.remove(&name);
    }

    /// Moves time to `t`, one due instant at a time.
    fn advance(&mut self, t: u64) {
        loop {
            let due = self
                .locks
                .values()
                .map(|l| l.until)
                .chain(self.data.values().map(|d| d.until))
                .chain(self.waiters.iter().map(|w| w.until))
                .min();
            let Some(m) = due.filter(|&m| m <= t) else {
                break;
            };
            // At instant m: waiters whose wait ran out...
            let (gone, kept): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(|w| w.until <= m);
            self.waiters = kept;
            for w in &gone {
                self.time_out(w);
            }
            // ...data...
            let expired: Vec<usize> = self
                .data
                .iter()
                .filter(|(_, d)| d.until <= m)
                .map(|(&n, _)| n)
                .collect();
            for n in expired {
                self.data.remove(&n);
                self.count(Stat::ExpiredData);
            }
            // ...and locks, handed over in the order they were granted.
            let mut expired: Vec<(u64, usize)> = self
                .locks
                .iter()
                .filter(|(_, l)| l.until <= m)
                .map(|(&n, l)| (l.token, n))
                .collect();
            expired.sort_unstable();
            for (_, n) in expired {
                self.count(Stat::ExpiredLock);
                self.release(n, m, t);
            }
        }
        self.now = self.now.max(t);
    }

    fn not_owner(&mut self) -> Reply {
        self.count(Stat::NotOwner);
        Reply::bare(Status::NotOwner)
    }

    #[allow(clippy::too_many_arguments)]
    fn lock(
        &mut self,
        name: usize,
        owner: usize,
        who: u8,
        ttl: u64,
        wait: Option<u64>,
        token: Option<u64>,
        tag: u64,
    ) -> Out {
        let now = self.now;
        let Some(l) = self.locks.get_mut(&name) else {
            if token.is_some() {
                return Out::Reply(self.not_owner());
            }
            let t = self.next_token;
            self.next_token += 1;
            self.locks.insert(
                name,
                MLock {
                    owner,
                    who,
                    token: t,
                    until: now + ttl,
                    told: None,
                },
            );
            self.count(Stat::Lock);
            return Out::Reply(locked(OWNERS[owner], t, ttl));
        };
        if l.owner == owner && l.who == who {
            if token.is_some_and(|t| t != l.token) {
                return Out::Reply(self.not_owner());
            }
            l.until = now + ttl;
            l.told = None;
            let t = l.token;
            self.count(Stat::Relock);
            return Out::Reply(locked(OWNERS[owner], t, ttl));
        }
        match wait {
            Some(wait) if wait > 0 && token.is_none() => {
                if self.capacity.is_some_and(|c| self.waiters.len() >= c) {
                    self.count(Stat::NoMemory);
                    return Out::Reply(Reply::bare(Status::No));
                }
                let id = self.next_waiter;
                self.next_waiter += 1;
                self.waiters.push(MWaiter {
                    id,
                    name,
                    owner,
                    who,
                    ttl,
                    until: now + wait,
                    tag,
                });
                self.count(Stat::Wait);
                Out::Queued(id)
            }
            _ => Out::Reply(self.not_owner()),
        }
    }

    fn unlock(&mut self, name: usize, owner: usize, who: u8, token: Option<u64>) -> Reply {
        let Some(l) = self.locks.get(&name) else {
            self.count(Stat::UnlockNF);
            return Reply::bare(Status::Unlocked);
        };
        if l.owner != owner || l.who != who || token.is_some_and(|t| t != l.token) {
            return self.not_owner();
        }
        let now = self.now;
        self.release(name, now, now);
        self.count(Stat::Unlock);
        Reply::bare(Status::Unlocked).id(OWNERS[owner])
    }

    fn test(&mut self, name: usize, owner: usize, who: u8) -> Reply {
        let Some(l) = self.locks.get(&name).cloned() else {
            self.count(Stat::TestLockNF);
            return Reply::bare(Status::Unlocked);
        };
        self.count(Stat::TestLock);
        let left = l.until - self.now;
        if l.owner == owner && l.who == who {
            locked(OWNERS[owner], l.token, left)
        } else {
            let mut r = self.not_owner();
            r.expire = Some(left);
            r
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        name: usize,
        owner: usize,
        who: u8,
        ttl: u64,
        data: &str,
        rev: Option<u64>,
    ) -> Reply {
        let now = self.now;
        let conflict = |m: &mut Self, r: u64| {
            m.count(Stat::Conflict);
            let mut c = Reply::bare(Status::Conflict);
            c.revision = Some(r);
            c
        };
        let done = |r: u64| {
            let mut d = Reply::bare(Status::Done).id(OWNERS[owner]);
            d.revision = Some(r);
            d.expire = Some(ttl);
            d
        };
        let Some(d) = self.data.get_mut(&name) else {
            if rev.is_some_and(|r| r != 0) {
                return conflict(self, 0);
            }
            self.data.insert(
                name,
                MData {
                    owner,
                    who,
                    value: data.to_owned(),
                    rev: 1,
                    until: now + ttl,
                },
            );
            self.count(Stat::PutNew);
            self.add(Stat::DataIn, data.len() as u64);
            return done(1);
        };
        if d.owner != owner || d.who != who {
            return self.not_owner();
        }
        if rev.is_some_and(|r| r != d.rev) {
            let cur = d.rev;
            return conflict(self, cur);
        }
        data.clone_into(&mut d.value);
        d.rev += 1;
        d.until = now + ttl;
        let r = d.rev;
        self.count(Stat::PutUpdate);
        self.add(Stat::DataIn, data.len() as u64);
        done(r)
    }

    fn get(&mut self, name: usize, owner: usize, who: u8) -> Reply {
        let Some(d) = self.data.get(&name).cloned() else {
            self.count(Stat::GetNF);
            return Reply::bare(Status::NotFound);
        };
        if d.owner != owner || d.who != who {
            return self.not_owner();
        }
        self.count(Stat::Get);
        self.add(Stat::DataOut, d.value.len() as u64);
        let mut r = Reply::bare(Status::Done).id(OWNERS[owner]);
        r.data = Some(d.value);
        r.revision = Some(d.rev);
        r.expire = Some(d.until - self.now);
        r
    }

    fn erase(&mut self, name: usize, owner: usize, who: u8) -> Reply {
        let Some(d) = self.data.get(&name) else {
            self.count(Stat::EraseNF);
            return Reply::bare(Status::NotFound);
        };
        if d.owner != owner || d.who != who {
            return self.not_owner();
        }
        self.data.remove(&name);
        self.count(Stat::Erased);
        Reply::bare(Status::Done).id(OWNERS[owner])
    }

    fn cancel(&mut self, id: u64) -> bool {
        let Some(i) = self.waiters.iter().position(|w| w.id == id) else {
            return false;
        };
        self.waiters.remove(i);
        self.count(Stat::WaitCancel);
        true
    }

    fn orphaned(&mut self, name: usize, token: u64) -> bool {
        match self.locks.get_mut(&name) {
            Some(l) if l.token == token => {
                let free = match &mut l.told {
                    None => false,
                    Some(n) => {
                        *n = n.saturating_sub(1);
                        *n == 0
                    }
                };
                self.count(Stat::WaitOrphaned);
                if free {
                    let now = self.now;
                    self.release(name, now, now);
                }
                free
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Driving the engine and the model together

/// An operation with its picks resolved to numbers, given to both sides.
#[derive(Clone, Debug)]
enum Cmd {
    Lock {
        name: usize,
        owner: usize,
        who: u8,
        ttl: u64,
        wait: Option<u64>,
        token: Option<u64>,
    },
    Unlock {
        name: usize,
        owner: usize,
        who: u8,
        token: Option<u64>,
    },
    Test {
        name: usize,
        owner: usize,
        who: u8,
    },
    Put {
        name: usize,
        owner: usize,
        who: u8,
        ttl: u64,
        data: String,
        rev: Option<u64>,
    },
    Get {
        name: usize,
        owner: usize,
        who: u8,
    },
    Erase {
        name: usize,
        owner: usize,
        who: u8,
    },
    /// Cancel the n-th waiter queued so far.
    Cancel(Option<usize>),
    Revoke {
        name: usize,
        token: u64,
    },
    Advance,
    Stats,
    Version,
}

/// An engine and what has been learned from its answers.
struct Driver<S: Storage> {
    e: Engine<S>,
    who: [Principal; 3],
    /// Every waiter queued so far, in order.
    waiters: Vec<WaiterId>,
}

impl<S: Storage> Driver<S> {
    fn new() -> Self {
        let mut e = Engine::with_storage(Config::default());
        let alice = e.register_identity("alice", 64).unwrap();
        let bob = e.register_identity("bob", 64).unwrap();
        Self {
            e,
            who: [
                Principal::Anonymous,
                Principal::Identity(alice),
                Principal::Identity(bob),
            ],
            waiters: Vec::new(),
        }
    }

    /// Runs one command at `now`; `tag` goes with a waiter it queues.
    /// Also says how many of the events came from time advancing to `now`
    /// (the engine's `handle` advances first itself; doing it here as a
    /// separate call tells those events apart from the command's own).
    fn step(&mut self, now: u64, cmd: &Cmd, tag: u64) -> (Out, Vec<(Ev, Reply)>, usize) {
        let now = Instant::from_millis(now);
        let mut evs = Vec::new();
        let mut sink = |e: Event<'_>| evs.push(ev(&e));
        if !matches!(cmd, Cmd::Cancel(_)) {
            self.e.advance(now, &mut sink);
        }
        let before = evs.len();
        let mut sink = |e: Event<'_>| evs.push(ev(&e));
        let (principal, command) = match *cmd {
            Cmd::Lock {
                name,
                owner,
                who,
                ttl,
                wait,
                token,
            } => (
                who,
                Command::Lock {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[owner]),
                    ttl: Ttl::from_millis(ttl),
                    wait: wait.map(Ttl::from_millis),
                    token: token.map(Token),
                },
            ),
            Cmd::Unlock {
                name,
                owner,
                who,
                token,
            } => (
                who,
                Command::Unlock {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[owner]),
                    token: token.map(Token),
                },
            ),
            Cmd::Test { name, owner, who } => (
                who,
                Command::TestLock {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[owner]),
                },
            ),
            Cmd::Put {
                name,
                owner,
                who,
                ttl,
                ref data,
                rev,
            } => (
                who,
                Command::Put {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[owner]),
                    ttl: Ttl::from_millis(ttl),
                    data,
                    revision: rev.map(Revision),
                    readers: dlm_core::protocol::Readers::Owner,
                },
            ),
            Cmd::Get { name, owner, who } => (
                who,
                Command::Get {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[owner]),
                },
            ),
            Cmd::Erase { name, owner, who } => (
                who,
                Command::Erase {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[owner]),
                },
            ),
            Cmd::Cancel(i) => {
                let done = i.is_some_and(|i| self.e.cancel(self.waiters[i]));
                return (Out::Bool(done), evs, before);
            }
            Cmd::Revoke { name, token } => {
                let done = self.e.orphaned(now, NAMES[name], Token(token), &mut sink);
                return (Out::Bool(done), evs, before);
            }
            Cmd::Advance => {
                return (Out::None, evs, before);
            }
            Cmd::Stats => (0, Command::Stats),
            Cmd::Version => (0, Command::Version),
        };
        let principal = self.who[usize::from(principal)];
        let out = match self.e.handle(now, &command, principal, tag, &mut sink) {
            Outcome::Reply(r) => {
                let mut reply = reply(&r);
                if let Some(s) = r.stats {
                    // Checked against the model with the other counters;
                    // here only that the reply is the engine's state.
                    let s = s.clone();
                    assert_eq!(s, self.e.stats(), "Stats reply");
                    reply.data = Some("stats".to_owned());
                }
                Out::Reply(reply)
            }
            Outcome::Queued(id) => {
                self.waiters.push(id);
                Out::Queued(id.get())
            }
        };
        (out, evs, before)
    }
}

/// Runs one command on the model at `now`.
fn model_step(
    m: &mut Model,
    now: u64,
    cmd: &Cmd,
    tag: u64,
    waiters: &[u64],
) -> (Out, Vec<(Ev, Reply)>) {
    // Every call but cancel first moves time to `now`.
    if !matches!(cmd, Cmd::Cancel(_)) {
        m.advance(now);
    }
    let bad = |m: &mut Model| {
        m.count(Stat::BadPayload);
        Out::Reply(Reply::bare(Status::BadPayload))
    };
    let out = match *cmd {
        Cmd::Lock {
            name,
            owner,
            who,
            ttl,
            wait,
            token,
        } => {
            if ttl == 0 {
                bad(m)
            } else {
                m.lock(name, owner, who, ttl, wait, token, tag)
            }
        }
        Cmd::Unlock {
            name,
            owner,
            who,
            token,
        } => Out::Reply(m.unlock(name, owner, who, token)),
        Cmd::Test { name, owner, who } => Out::Reply(m.test(name, owner, who)),
        Cmd::Put {
            name,
            owner,
            who,
            ttl,
            ref data,
            rev,
        } => {
            if ttl == 0 {
                bad(m)
            } else {
                Out::Reply(m.put(name, owner, who, ttl, data, rev))
            }
        }
        Cmd::Get { name, owner, who } => Out::Reply(m.get(name, owner, who)),
        Cmd::Erase { name, owner, who } => Out::Reply(m.erase(name, owner, who)),
        Cmd::Cancel(i) => Out::Bool(i.is_some_and(|i| m.cancel(waiters[i]))),
        Cmd::Revoke { name, token } => Out::Bool(m.orphaned(name, token)),
        Cmd::Advance => Out::None,
        Cmd::Stats => {
            m.count(Stat::Stats);
            let mut r = Reply::bare(Status::Done);
            r.data = Some("stats".to_owned());
            Out::Reply(r)
        }
        Cmd::Version => {
            m.count(Stat::Version);
            Out::Reply(Reply::bare(Status::Version).id(VERSION_STRING))
        }
    };
    (out, core::mem::take(&mut m.events))
}

/// Resolves an operation's picks against what has been seen so far.
fn resolve(op: &Op, tokens: &[u64], waiters: usize, m: &Model) -> Cmd {
    let token = |p: Pick| match p {
        Pick::Seen(i) if !tokens.is_empty() => tokens[i % tokens.len()],
        Pick::Seen(i) => i as u64 % 4,
        Pick::Raw(t) => t,
    };
    match *op {
        Op::Lock {
            name,
            owner,
            who,
            ttl,
            wait,
            token: t,
        } => Cmd::Lock {
            name,
            owner,
            who,
            ttl,
            wait,
            token: t.map(token),
        },
        Op::Unlock {
            name,
            owner,
            who,
            token: t,
        } => Cmd::Unlock {
            name,
            owner,
            who,
            token: t.map(token),
        },
        Op::Test { name, owner, who } => Cmd::Test { name, owner, who },
        Op::Put {
            name,
            owner,
            who,
            ttl,
            ref data,
            rev,
        } => Cmd::Put {
            name,
            owner,
            who,
            ttl,
            data: data.clone(),
            rev: rev.map(|r| match r {
                RevPick::Zero => 0,
                RevPick::Current(d) => m
                    .data
                    .get(&name)
                    .map_or(1, |e| e.rev)
                    .saturating_add_signed(i64::from(d)),
                RevPick::Raw(r) => r,
            }),
        },
        Op::Get { name, owner, who } => Cmd::Get { name, owner, who },
        Op::Erase { name, owner, who } => Cmd::Erase { name, owner, who },
        Op::Cancel(i) => Cmd::Cancel((waiters > 0).then(|| i % waiters)),
        Op::Revoke { name, token: t } => Cmd::Revoke {
            name,
            token: token(t),
        },
        Op::Advance => Cmd::Advance,
        Op::Stats => Cmd::Stats,
        Op::Version => Cmd::Version,
    }
}

/// What the engine's own answers say about who holds each lock, checked
/// for overlaps and increasing tokens without reference to the model.
#[derive(Default)]
struct Holders {
    /// Per lock: (owner, identity, token, until).
    held: BTreeMap<String, (String, u8, u64, u64)>,
    /// Every token granted, in order.
    tokens: Vec<u64>,
    /// Waiter ID to identity.
    queued: BTreeMap<u64, u8>,
}

impl Holders {
    /// A `Locked` answer for `name` at `now`.
    fn locked(&mut self, now: u64, name: &str, who: u8, r: &Reply) {
        let (owner, token) = (r.id.clone().unwrap(), r.token.unwrap());
        let until = now + r.expire.unwrap();
        match self.held.get(name) {
            Some((o, w, t, _)) if *t == token => {
                assert_eq!(
                    (o, *w),
                    (&owner, who),
                    "token {token} of {name} changed hands"
                );
            }
            prev => {
                if let Some((o, _, t, end)) = prev {
                    assert!(
                        *end <= now,
                        "{name}: {owner} granted {token} at {now} while {o} holds {t} until {end}"
                    );
                }
                let last = self.tokens.last().copied().unwrap_or(0);
                assert!(token > last, "token {token} not above {last}");
                self.tokens.push(token);
            }
        }
        self.held
            .insert(name.to_owned(), (owner, who, token, until));
    }

    /// The grant of `name` ended at `now`.
    fn released(&mut self, now: u64, name: &str) {
        if let Some(h) = self.held.get_mut(name) {
            h.3 = h.3.min(now);
        }
    }

    /// Observes one step's answer and its events, in the engine's order:
    /// the first `before` came from time advancing, before the command
    /// took effect; the rest from the command (a release by the command
    /// comes before the hand-over it causes).
    fn observe(&mut self, now: u64, cmd: &Cmd, out: &Out, evs: &[(Ev, Reply)], before: usize) {
        if let (Cmd::Lock { who, .. }, Out::Queued(id)) = (cmd, out) {
            self.queued.insert(*id, *who);
        }
        // The lock the command released, if any.
        let released = match (cmd, out) {
            (&Cmd::Unlock { name, .. }, Out::Reply(r)) if r.id.is_some() => Some(name),
            (&Cmd::Revoke { name, .. }, Out::Bool(true)) => Some(name),
            _ => None,
        };
        let split = before;
        let grant = |h: &mut Self, (e, r): &(Ev, Reply)| {
            if r.status == Status::Locked {
                let who = h.queued[&e.waiter];
                h.locked(now, &e.name, who, r);
            }
        };
        for e in &evs[..split] {
            grant(self, e);
        }
        if let Some(name) = released {
            self.released(now, NAMES[name]);
        }
        for e in &evs[split..] {
            grant(self, e);
        }
        if let (Cmd::Lock { name, who, .. }, Out::Reply(r)) = (cmd, out) {
            if r.status == Status::Locked {
                self.locked(now, NAMES[*name], *who, r);
            }
        }
    }
}

/// `PROPTEST_CASES` if set (`make fuzz` runs many more), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sorted(mut evs: Vec<(Ev, Reply)>) -> Vec<(Ev, Reply)> {
    // Events of one instant come in the timer wheel's order; clients
    // only see their own, so compare them as a set.
    evs.sort_by_key(|e| e.0.waiter);
    evs
}

/// Checks every engine counter and gauge against the model.
fn check_stats<S: Storage>(e: &Engine<S>, m: &Model, step: usize) {
    let s = e.stats();
    for &stat in ENGINE_COUNTERS {
        let want = m.counters.get(stat.name()).copied().unwrap_or(0);
        assert_eq!(s.get(stat), want, "step {step}: counter {stat}");
    }
    assert_eq!(
        s.get(Stat::ALock),
        m.locks.len() as u64,
        "step {step}: ALock"
    );
    assert_eq!(
        s.get(Stat::AData),
        m.data.len() as u64,
        "step {step}: AData"
    );
    assert_eq!(
        s.get(Stat::AWait),
        m.waiters.len() as u64,
        "step {step}: AWait"
    );
    assert_eq!(s.get(Stat::Memory), e.memory_used() as u64);
    if m.locks.is_empty() && m.data.is_empty() && m.waiters.is_empty() {
        assert_eq!(e.memory_used(), 0, "step {step}: memory left behind");
    }
}

/// Runs `ops` on an engine and the model, checking everything.
fn agree<S: Storage>(ops: &[(u64, Op)], capacity: Option<usize>) {
    let mut d = Driver::<S>::new();
    let mut m = Model::new(capacity);
    let mut holders = Holders::default();
    let mut now = 0;
    for (i, (dt, op)) in ops.iter().enumerate() {
        now += dt;
        let cmd = resolve(op, &holders.tokens, d.waiters.len(), &m);
        let tag = i as u64 * 10 + 3;
        let ids: Vec<u64> = d.waiters.iter().map(|w| w.get()).collect();
        let (out, evs, before) = d.step(now, &cmd, tag);
        let (mout, mevs) = model_step(&mut m, now, &cmd, tag, &ids);
        holders.observe(now, &cmd, &out, &evs, before);
        let evs = sorted(evs);
        let mevs = sorted(mevs);
        assert_eq!(out, mout, "step {i} at {now}: {cmd:?}");
        assert_eq!(
            evs.iter().map(|e| &e.1).collect::<Vec<_>>(),
            mevs.iter().map(|e| &e.1).collect::<Vec<_>>(),
            "step {i} at {now}: events of {cmd:?}"
        );
        assert_eq!(evs, mevs, "step {i} at {now}: events of {cmd:?}");
        check_stats(&d.e, &m, i);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// The heap engine agrees with the model on every answer and event.
    #[test]
    fn heap_engine_matches_the_model(ops in steps(200)) {
        agree::<Heap>(&ops, None);
    }

    /// The fixed engine too, including refusing waiters past its capacity.
    #[test]
    fn fixed_engine_matches_the_model(ops in steps(200)) {
        agree::<Tiny>(&ops, Some(WAITERS));
    }
}

/// Runs `prefix` on one engine, snapshots it, restores the snapshot into
/// a second engine at the same instant, then runs `rest` on both: every
/// answer and event must be the same.
fn restored_behaves_the_same<S: Storage>(prefix: &[(u64, Op)], rest: &[(u64, Op)]) {
    let mut a = Driver::<S>::new();
    let mut m = Model::new(None);
    let mut holders = Holders::default();
    let mut now = 0;
    for (i, (dt, op)) in prefix.iter().enumerate() {
        now += dt;
        let cmd = resolve(op, &holders.tokens, a.waiters.len(), &m);
        let ids: Vec<u64> = a.waiters.iter().map(|w| w.get()).collect();
        let tag = i as u64 * 10 + 3;
        let (out, evs, before) = a.step(now, &cmd, tag);
        // The model only serves to resolve revisions; keep it in step.
        model_step(&mut m, now, &cmd, tag, &ids);
        holders.observe(now, &cmd, &out, &evs, before);
    }
    // The engine's own instant is the last it saw (cancel moves nothing).
    let bytes = a.e.snapshot_to_vec();
    let mut b = Driver::<S>::new();
    b.e.restore(Instant::from_millis(m.now), &bytes).unwrap();
    b.waiters.clone_from(&a.waiters);
    assert_eq!(
        b.e.snapshot_to_vec(),
        bytes,
        "snapshot of the restored engine"
    );
    assert_eq!(b.e.stats(), a.e.stats());
    assert_eq!(b.e.next_token(), a.e.next_token());
    for (i, (dt, op)) in rest.iter().enumerate() {
        now += dt;
        let cmd = resolve(op, &holders.tokens, a.waiters.len(), &m);
        let ids: Vec<u64> = a.waiters.iter().map(|w| w.get()).collect();
        let tag = (prefix.len() + i) as u64 * 10 + 3;
        let (out_a, evs_a, before) = a.step(now, &cmd, tag);
        let (out_b, evs_b, _) = b.step(now, &cmd, tag);
        model_step(&mut m, now, &cmd, tag, &ids);
        holders.observe(now, &cmd, &out_a, &evs_a, before);
        assert_eq!(out_a, out_b, "step {i} after restore at {now}: {cmd:?}");
        assert_eq!(
            sorted(evs_a),
            sorted(evs_b),
            "step {i} after restore at {now}: events of {cmd:?}"
        );
        assert_eq!(a.e.stats(), b.e.stats());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    /// A restored heap engine behaves exactly as the original.
    #[test]
    fn restored_heap_engine_behaves_the_same(prefix in steps(100), rest in steps(100)) {
        restored_behaves_the_same::<Heap>(&prefix, &rest);
    }

    /// A restored fixed engine too.
    #[test]
    fn restored_fixed_engine_behaves_the_same(prefix in steps(100), rest in steps(100)) {
        restored_behaves_the_same::<Tiny>(&prefix, &rest);
    }
}
