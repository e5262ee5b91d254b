//! Semaphores and read/write locks under random operations: invariants
//! checked after every step, and a model of the live holds.
//!
//! Names: `s` is used as a semaphore (its permit count drawn from 1..=3,
//! so mismatches happen), `r` as a read/write lock, `x` as an exclusive
//! lock, and every kind of request is sometimes aimed at the wrong name.
//! Operations: acquisitions with and without waits, extensions by token
//! (live and stale), unlocks with and without token, cancels of queued
//! waiters, undeliverable grants (`orphaned`), clock moves, and snapshot
//! and restore into a fresh engine in the middle of the run.
//!
//! After every step:
//! - a semaphore never has more holds than permits; a writer of a
//!   read/write lock is alone;
//! - every new grant (answer or event) has a token greater than every
//!   token before it, exclusive locks' included;
//! - waiters are granted in the order they queued, per name;
//! - the engine's holds are exactly the model's (granted, not released,
//!   not expired, not taken back as orphaned): no grant is lost or
//!   invented;
//! - nobody waits who could be granted: the first in line does not fit;
//! - at the end, once every deadline passed, every queued request was
//!   answered exactly once (or cancelled) and no byte stays charged.
// Test code: a panic is a failure.
#![allow(clippy::unwrap_used)]

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};

use dlm_core::engine::{Config, Engine, Event, Outcome, Principal, WaiterId};
use dlm_core::protocol::{Command, Owner, Resource, Shape, Status, Token};
use dlm_core::time::{Instant, Ttl};
use proptest::prelude::*;

const OWNERS: [&str; 3] = ["o0", "o1", "o2"];

#[derive(Clone, Debug)]
enum Op {
    /// Acquire `name` (0 `s`, 1 `r`, 2 `x`) as `shape`.
    Acquire {
        name: usize,
        shape: Shape,
        owner: usize,
        ttl: u64,
        wait: u64,
    },
    /// A plain exclusive `Lock`.
    Lock { name: usize, owner: usize, ttl: u64 },
    /// Extend the `pick`th token ever granted, by the owner it went to
    /// (or another).
    Extend {
        pick: usize,
        other_owner: bool,
        ttl: u64,
    },
    /// Unlock by token (the `pick`th granted) or every hold of `owner`.
    Unlock {
        name: usize,
        owner: usize,
        pick: Option<usize>,
    },
    /// A queued waiter's connection closes.
    Cancel { pick: usize },
    /// The grant event of the `pick`th event-granted hold was undeliverable.
    Orphan { pick: usize },
    /// Time passes.
    Wait { ms: u64 },
    /// Snapshot, restore into a fresh engine, go on with it.
    Restore,
}

const NAMES: [&str; 3] = ["s", "r", "x"];

fn op() -> impl Strategy<Value = Op> {
    let shape = prop_oneof![
        (1u32..=3).prop_map(|permits| Shape::Semaphore { permits }),
        Just(Shape::Read),
        Just(Shape::Write),
    ];
    prop_oneof![
        8 => (0usize..3, shape, 0usize..3, 1u64..60, prop_oneof![Just(0u64), 1u64..80])
            .prop_map(|(name, shape, owner, ttl, wait)| {
                // Mostly the shape that fits the name.
                let name = match (name, shape) {
                    (2, _) => 2,
                    (_, Shape::Semaphore { .. }) => 0,
                    _ => 1,
                };
                Op::Acquire { name, shape, owner, ttl, wait }
            }),
        1 => (0usize..3, 0usize..3, 1u64..60).prop_map(|(name, owner, ttl)| Op::Lock { name, owner, ttl }),
        2 => (0usize..64, any::<bool>(), 1u64..60)
            .prop_map(|(pick, other_owner, ttl)| Op::Extend { pick, other_owner, ttl }),
        3 => (0usize..3, 0usize..3, proptest::option::of(0usize..64))
            .prop_map(|(name, owner, pick)| Op::Unlock { name, owner, pick }),
        2 => (0usize..64).prop_map(|pick| Op::Cancel { pick }),
        1 => (0usize..64).prop_map(|pick| Op::Orphan { pick }),
        4 => (0u64..40).prop_map(|ms| Op::Wait { ms }),
        1 => Just(Op::Restore),
    ]
}

/// A hold as the model knows it.
#[derive(Clone, Debug)]
struct ModelHold {
    name: &'static str,
    owner: &'static str,
    shape: Shape,
    until: u64,
    /// Granted by an event and never answered directly since.
    by_event: bool,
}

#[derive(Clone, Debug)]
struct Queued {
    name: &'static str,
    owner: &'static str,
    shape: Shape,
    ttl: u64,
}

struct Run {
    engine: Engine,
    now: u64,
    /// Every token granted (new grants only), in order.
    tokens: Vec<u64>,
    /// The greatest token seen.
    top: u64,
    /// Live holds of `s` and `r` by token.
    holds: BTreeMap<u64, ModelHold>,
    /// Waiters queued, by waiter number, not yet answered.
    pending: BTreeMap<u64, Queued>,
    /// Per name, waiter numbers in the order they queued.
    lines: BTreeMap<&'static str, VecDeque<u64>>,
    /// Waiters answered or cancelled (each exactly once).
    done: BTreeSet<u64>,
    /// Tokens granted by an event, in order, for `Orphan`.
    by_event: Vec<(&'static str, u64)>,
}

impl Run {
    fn new() -> Self {
        Self {
            engine: Engine::new(Config::default()),
            now: 0,
            tokens: Vec::new(),
            top: 0,
            holds: BTreeMap::new(),
            pending: BTreeMap::new(),
            lines: BTreeMap::new(),
            done: BTreeSet::new(),
            by_event: Vec::new(),
        }
    }

    fn new_token(&mut self, t: u64) {
        assert!(t > self.top, "token {t} not above {}", self.top);
        self.top = t;
        self.tokens.push(t);
    }

    /// Applies the events produced by one call.
    fn events(&mut self, evs: Vec<OwnedEvent>) {
        for (waiter, name, status, token, id) in evs {
            let q = self
                .pending
                .remove(&waiter)
                .unwrap_or_else(|| panic!("event for unknown or answered waiter {waiter}"));
            assert!(self.done.insert(waiter), "waiter {waiter} answered twice");
            assert_eq!(q.name, name);
            let line = self.lines.get_mut(q.name).unwrap();
            match status {
                Status::Locked => {
                    // Granted in the order of the queue.
                    assert_eq!(line.front(), Some(&waiter), "grant out of queue order");
                    line.pop_front();
                    let token = token.unwrap();
                    self.new_token(token);
                    assert_eq!(id.as_deref(), Some(q.owner));
                    let until = self.now + q.ttl;
                    self.holds.insert(
                        token,
                        ModelHold {
                            name: q.name,
                            owner: q.owner,
                            shape: q.shape,
                            until,
                            by_event: true,
                        },
                    );
                    self.by_event.push((q.name, token));
                }
                Status::NotOwner => line.retain(|w| *w != waiter),
                other => panic!("unexpected waiter answer {other:?}"),
            }
        }
    }

    fn drop_expired(&mut self) {
        let now = self.now;
        self.holds.retain(|_, h| h.until > now);
    }

    fn handle(&mut self, cmd: &Command<'_>) -> (Status, Option<u64>, Option<u64>, Option<String>) {
        let mut evs = Vec::new();
        let out = self.engine.handle(
            Instant::from_millis(self.now),
            cmd,
            Principal::Anonymous,
            7,
            &mut |e: Event<'_>| evs.push(owned(&e)),
        );
        let r = match out {
            Outcome::Reply(r) => (
                r.status,
                r.token.map(|t| t.0),
                None,
                r.error.map(|e| e.to_string()),
            ),
            Outcome::Queued(w) => (Status::Locked, None, Some(w.get()), None),
        };
        // Time moved to now first: holds due by now are gone before the
        // command's answer.
        self.drop_expired();
        self.events(evs);
        r
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Acquire {
                name,
                shape,
                owner,
                ttl,
                wait,
            } => {
                let n = NAMES[name];
                let cmd = Command::Acquire {
                    name: Resource(n),
                    owner: Owner(OWNERS[owner]),
                    shape,
                    ttl: Ttl::from_millis(ttl),
                    wait: (wait > 0).then(|| Ttl::from_millis(wait)),
                    token: None,
                };
                // What the name is before the command (time moves first).
                self.engine
                    .advance(Instant::from_millis(self.now), &mut |_| {
                        unreachable!("settled after every step")
                    });
                let exclusive = self.engine.lock_info(n).is_some();
                let group = self
                    .engine
                    .groups()
                    .find(|g| g.name == n)
                    .map(|g| g.permits);
                let conflict = exclusive
                    || match (group, shape) {
                        (Some(Some(p)), Shape::Semaphore { permits }) => p != permits,
                        (None, _) | (Some(None), Shape::Read | Shape::Write) => false,
                        (Some(_), _) => true,
                    };
                let (status, token, queued, error) = self.handle(&cmd);
                if conflict {
                    assert_eq!(status, Status::Conflict, "{op:?} {error:?}");
                    assert!(error.is_some());
                    return;
                }
                if let Some(w) = queued {
                    self.pending.insert(
                        w,
                        Queued {
                            name: n,
                            owner: OWNERS[owner],
                            shape,
                            ttl,
                        },
                    );
                    self.lines.entry(n).or_default().push_back(w);
                } else if status == Status::Locked {
                    let token = token.unwrap();
                    self.new_token(token);
                    // Granted at once only when nobody waits.
                    assert!(self.lines.get(n).is_none_or(VecDeque::is_empty));
                    self.holds.insert(
                        token,
                        ModelHold {
                            name: n,
                            owner: OWNERS[owner],
                            shape,
                            until: self.now + ttl,
                            by_event: false,
                        },
                    );
                } else {
                    assert_eq!(status, Status::NotOwner, "{op:?}");
                    assert!(wait == 0, "refused though it could wait");
                }
            }
            Op::Lock { name, owner, ttl } => {
                let n = NAMES[name];
                let group = self.kind_live(n);
                let (status, token, _, _) = self.handle(&Command::Lock {
                    name: Resource(n),
                    owner: Owner(OWNERS[owner]),
                    ttl: Ttl::from_millis(ttl),
                    wait: None,
                    token: None,
                });
                if group {
                    assert_eq!(status, Status::NotOwner);
                } else if status == Status::Locked {
                    let t = token.unwrap();
                    if t > self.top {
                        self.new_token(t);
                    }
                }
            }
            Op::Extend {
                pick,
                other_owner,
                ttl,
            } => {
                let Some(&token) = self.tokens.get(pick % self.tokens.len().max(1)) else {
                    return;
                };
                let Some(h) = self.holds.get(&token).cloned() else {
                    return;
                };
                let owner = if other_owner {
                    OWNERS.iter().find(|o| **o != h.owner).unwrap()
                } else {
                    h.owner
                };
                let shape = h.shape;
                let (status, t, _, _) = self.handle(&Command::Acquire {
                    name: Resource(h.name),
                    owner: Owner(owner),
                    shape,
                    ttl: Ttl::from_millis(ttl),
                    wait: None,
                    token: Some(Token(token)),
                });
                let live = self.holds.contains_key(&token);
                if live && !other_owner {
                    assert_eq!(status, Status::Locked);
                    assert_eq!(t, Some(token), "an extension keeps the token");
                    let m = self.holds.get_mut(&token).unwrap();
                    m.until = self.now + ttl;
                    m.by_event = false;
                } else {
                    assert_eq!(status, Status::NotOwner, "extension of {token}");
                }
            }
            Op::Unlock { name, owner, pick } => {
                let n = NAMES[name];
                self.engine
                    .advance(Instant::from_millis(self.now), &mut |_| {
                        unreachable!("settled after every step")
                    });
                let exclusive = self.engine.lock_info(n).is_some();
                let token =
                    pick.and_then(|p| self.tokens.get(p % self.tokens.len().max(1)).copied());
                // The caller's holds before it (a release may grant it
                // more, from the queue, in the same step).
                let mine: Vec<u64> = self
                    .holds
                    .iter()
                    .filter(|(t, h)| {
                        h.name == n && h.owner == OWNERS[owner] && token.is_none_or(|x| x == **t)
                    })
                    .map(|(t, _)| *t)
                    .collect();
                for t in &mine {
                    self.holds.remove(t);
                }
                let (status, _, _, _) = self.handle(&Command::Unlock {
                    name: Resource(n),
                    owner: Owner(OWNERS[owner]),
                    token: token.map(Token),
                });
                if exclusive {
                    return;
                }
                if mine.is_empty() {
                    assert_ne!(status, Status::Locked);
                } else {
                    assert_eq!(status, Status::Unlocked);
                }
            }
            Op::Cancel { pick } => {
                let Some(&w) = self.pending.keys().nth(pick % self.pending.len().max(1)) else {
                    return;
                };
                assert!(self.engine.cancel(WaiterId::from_number(w)));
                let q = self.pending.remove(&w).unwrap();
                self.done.insert(w);
                self.lines.get_mut(q.name).unwrap().retain(|x| *x != w);
            }
            Op::Orphan { pick } => {
                let Some(&(name, token)) = self.by_event.get(pick % self.by_event.len().max(1))
                else {
                    return;
                };
                let mut evs = Vec::new();
                let freed = self.engine.orphaned(
                    Instant::from_millis(self.now),
                    name,
                    Token(token),
                    &mut |e: Event<'_>| evs.push(owned(&e)),
                );
                self.drop_expired();
                let expect = self.holds.get(&token).is_some_and(|h| h.by_event);
                assert_eq!(freed, expect, "orphaned {token}");
                if freed {
                    self.holds.remove(&token);
                }
                self.events(evs);
            }
            Op::Wait { ms } => {
                self.now += ms;
                let mut evs = Vec::new();
                self.engine
                    .advance(Instant::from_millis(self.now), &mut |e: Event<'_>| {
                        evs.push(owned(&e));
                    });
                self.drop_expired();
                self.events(evs);
            }
            Op::Restore => {
                let bytes = self.engine.snapshot_to_vec();
                let mut fresh = Engine::new(Config::default());
                fresh
                    .restore(Instant::from_millis(self.now), &bytes)
                    .unwrap();
                assert_eq!(fresh.memory_used(), self.engine.memory_used());
                self.engine = fresh;
            }
        }
        self.settle();
        self.check();
    }

    /// What a host does: serve a deadline that is due now.
    fn settle(&mut self) {
        if self
            .engine
            .next_deadline()
            .is_some_and(|d| d.as_millis() <= self.now)
        {
            let mut evs = Vec::new();
            self.engine
                .advance(Instant::from_millis(self.now), &mut |e: Event<'_>| {
                    evs.push(owned(&e));
                });
            self.drop_expired();
            self.events(evs);
        }
    }

    fn kind_live(&self, name: &str) -> bool {
        self.engine.groups().any(|g| g.name == name)
    }

    fn check(&self) {
        let now = self.now;
        for g in self.engine.groups() {
            let holds: Vec<_> = self.engine.holds(g.name).collect();
            if let Some(n) = g.permits {
                assert!(
                    holds.len() <= n as usize,
                    "{} holds of {n} permits",
                    holds.len()
                );
                assert!(holds.iter().all(|h| !h.write));
            } else if holds.iter().any(|h| h.write) {
                assert_eq!(holds.len(), 1, "a writer beside others");
            }
            // Nobody waits who could be granted.
            if let Some((_, write)) = self.engine.group_queue(g.name).next() {
                let fits = match g.permits {
                    Some(n) => holds.len() < n as usize,
                    None if write => holds.is_empty(),
                    None => !holds.iter().any(|h| h.write),
                };
                assert!(!fits, "{} waits at {now} though it fits", g.name);
            }
        }
        // The engine's holds are the model's.
        let engine: BTreeSet<(String, u64, String, bool)> = ["s", "r", "x"]
            .iter()
            .flat_map(|n| {
                self.engine
                    .holds(n)
                    .map(move |h| ((*n).to_owned(), h.token.0, h.owner.to_owned(), h.write))
            })
            .collect();
        let model: BTreeSet<(String, u64, String, bool)> = self
            .holds
            .iter()
            .map(|(t, h)| {
                (
                    h.name.to_owned(),
                    *t,
                    h.owner.to_owned(),
                    h.shape == Shape::Write,
                )
            })
            .collect();
        assert_eq!(engine, model, "holds at {now}");
        assert_eq!(self.engine.hold_count(), self.holds.len());
        // Queues are the model's, in order.
        for n in NAMES {
            let q: Vec<u64> = self.engine.group_queue(n).map(|(w, _)| w.get()).collect();
            let m: Vec<u64> = self
                .lines
                .get(n)
                .map(|l| l.iter().copied().collect())
                .unwrap_or_default();
            assert_eq!(q, m, "queue of {n} at {now}");
        }
    }

    fn finish(&mut self) {
        // A grant made by a late advance lasts its TTL from then: a few
        // rounds let every waiter be served and every hold run out.
        for _ in 0..4 {
            self.step(&Op::Wait { ms: 10_000 });
        }
        assert!(
            self.pending.is_empty(),
            "unanswered waiters {:?}",
            self.pending
        );
        assert_eq!(self.engine.hold_count(), 0);
        assert_eq!(self.engine.waiter_count(), 0);
        assert_eq!(self.engine.groups().count(), 0);
        assert_eq!(self.engine.lock_count(), 0);
        assert_eq!(self.engine.memory_used(), 0, "bytes left charged");
    }
}

/// An event's waiter, name, status, token and ID.
type OwnedEvent = (u64, String, Status, Option<u64>, Option<String>);

fn owned(e: &Event<'_>) -> OwnedEvent {
    (
        e.waiter.get(),
        e.name.to_owned(),
        e.response.status,
        e.response.token.map(|t| t.0),
        e.response.id.map(str::to_owned),
    )
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Every invariant holds after every step, and nothing is lost at the end.
    #[test]
    fn groups_keep_their_invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
        }
        run.finish();
    }
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn reply(e: &mut Engine, t: u64, c: &Command<'_>) -> (Status, Option<u64>, Option<String>) {
    match e.handle(at(t), c, Principal::Anonymous, 0, &mut |_| {}) {
        Outcome::Reply(r) => (
            r.status,
            r.token.map(|t| t.0),
            r.error.map(|m| m.to_string()),
        ),
        Outcome::Queued(w) => panic!("queued {w:?}"),
    }
}

fn acquire<'a>(name: &'a str, owner: &'a str, shape: Shape, wait: Option<u64>) -> Command<'a> {
    Command::Acquire {
        name: Resource(name),
        owner: Owner(owner),
        shape,
        ttl: Ttl::from_millis(1000),
        wait: wait.map(Ttl::from_millis),
        token: None,
    }
}

/// A writer in line stops readers that come after it: it is not starved.
#[test]
fn a_waiting_writer_is_not_overtaken_by_readers() {
    let mut e = Engine::new(Config::default());
    assert_eq!(
        reply(&mut e, 0, &acquire("r", "a", Shape::Read, None)).0,
        Status::Locked
    );
    let Outcome::Queued(w) = e.handle(
        at(1),
        &acquire("r", "w", Shape::Write, Some(5000)),
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) else {
        panic!("the writer queues");
    };
    // A reader now would fit beside the reader, but the writer is first.
    assert!(matches!(
        e.handle(
            at(2),
            &acquire("r", "b", Shape::Read, Some(5000)),
            Principal::Anonymous,
            0,
            &mut |_| {}
        ),
        Outcome::Queued(_)
    ));
    assert_eq!(
        reply(&mut e, 3, &acquire("r", "c", Shape::Read, None)).0,
        Status::NotOwner
    );
    let mut got = Vec::new();
    let r = e.handle(
        at(4),
        &Command::Unlock {
            name: Resource("r"),
            owner: Owner("a"),
            token: None,
        },
        Principal::Anonymous,
        0,
        &mut |ev: Event<'_>| got.push((ev.waiter, ev.response.status)),
    );
    assert!(matches!(r, Outcome::Reply(r) if r.status == Status::Unlocked));
    assert_eq!(got, vec![(w, Status::Locked)], "the writer, alone");
}

/// A semaphore's size is fixed while it lives; other kinds are refused.
#[test]
fn kinds_and_sizes_are_fixed_while_a_name_lives() {
    let mut e = Engine::new(Config::default());
    let sem = |n| Shape::Semaphore { permits: n };
    assert_eq!(
        reply(&mut e, 0, &acquire("s", "a", sem(2), None)).0,
        Status::Locked
    );
    let (status, _, error) = reply(&mut e, 0, &acquire("s", "b", sem(3), None));
    assert_eq!(status, Status::Conflict);
    assert_eq!(
        error.as_deref(),
        Some("FileName is a semaphore of 2 permits")
    );
    assert_eq!(
        reply(&mut e, 0, &acquire("s", "b", Shape::Read, None)).0,
        Status::Conflict
    );
    let plain = Command::Lock {
        name: Resource("s"),
        owner: Owner("c"),
        ttl: Ttl::from_millis(10),
        wait: None,
        token: None,
    };
    let (status, _, error) = reply(&mut e, 0, &plain);
    assert_eq!(
        status,
        Status::NotOwner,
        "an old client sees the name taken"
    );
    assert_eq!(
        error.as_deref(),
        Some("FileName is a semaphore of 2 permits")
    );
    let x = Command::Lock {
        name: Resource("x"),
        owner: Owner("c"),
        ttl: Ttl::from_millis(10),
        wait: None,
        token: None,
    };
    assert_eq!(reply(&mut e, 0, &x).0, Status::Locked);
    let (status, _, error) = reply(&mut e, 0, &acquire("x", "a", sem(2), None));
    assert_eq!(status, Status::Conflict);
    assert_eq!(error.as_deref(), Some("FileName is an exclusive lock"));
    // Once nobody holds or waits, the name is free for any kind.
    reply(
        &mut e,
        0,
        &Command::Unlock {
            name: Resource("s"),
            owner: Owner("a"),
            token: None,
        },
    );
    assert_eq!(e.groups().count(), 0);
    assert_eq!(
        reply(&mut e, 0, &acquire("s", "b", sem(3), None)).0,
        Status::Locked
    );
}

/// A cancelled waiter first in line lets the ones behind it go at the next
/// instant the host serves (its next deadline is now).
#[test]
fn a_cancelled_writer_lets_readers_in() {
    let mut e = Engine::new(Config::default());
    assert_eq!(
        reply(&mut e, 0, &acquire("r", "a", Shape::Read, None)).0,
        Status::Locked
    );
    let Outcome::Queued(w) = e.handle(
        at(1),
        &acquire("r", "w", Shape::Write, Some(5000)),
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) else {
        panic!();
    };
    let Outcome::Queued(b) = e.handle(
        at(2),
        &acquire("r", "b", Shape::Read, Some(5000)),
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) else {
        panic!();
    };
    assert!(e.cancel(w));
    assert_eq!(e.next_deadline(), Some(at(2)));
    let mut got = Vec::new();
    e.advance(at(2), &mut |ev: Event<'_>| {
        got.push((ev.waiter, ev.response.status));
    });
    assert_eq!(got, vec![(b, Status::Locked)]);
}

/// An administrator's revocation of a semaphore takes back one hold by its
/// token, whoever holds it, or every hold, and the queue moves at once;
/// the anonymous may not.
#[test]
fn revoking_a_semaphore_takes_back_its_holds() {
    use dlm_core::protocol::{AdminOp, RequestError};
    let mut e = Engine::new(Config::default());
    let root = Principal::Identity(e.register_identity("root", 100).expect("room"));
    let sem = Shape::Semaphore { permits: 2 };
    let a = reply(&mut e, 0, &acquire("s", "a", sem, None))
        .1
        .expect("token");
    let b = reply(&mut e, 0, &acquire("s", "b", sem, None))
        .1
        .expect("token");
    let Outcome::Queued(w) = e.handle(
        at(1),
        &acquire("s", "c", sem, Some(5000)),
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) else {
        panic!("the third waits");
    };
    let revoke = |token: Option<u64>| {
        Command::Admin(AdminOp::Revoke {
            name: Resource("s"),
            token: token.map(Token),
        })
    };
    let run = |e: &mut Engine, who: Principal, c: &Command<'_>| {
        let mut got = Vec::new();
        let Outcome::Reply(r) = e.handle(at(2), c, who, 0, &mut |ev: Event<'_>| {
            got.push((ev.waiter, ev.response.status));
        }) else {
            panic!("a revocation is answered");
        };
        (r.status, r.error.map(|m| m.to_string()), got)
    };
    let (status, error, _) = run(&mut e, Principal::Anonymous, &revoke(None));
    assert_eq!(status, Status::BadPayload);
    assert_eq!(
        error,
        Some(
            dlm_core::protocol::Response::rejected(RequestError::NotAdmin)
                .error
                .expect("why")
                .to_string()
        )
    );
    // A token that is no hold: refused, nothing moves.
    let (status, _, got) = run(&mut e, root, &revoke(Some(a.max(b) + 100)));
    assert_eq!(status, Status::NotOwner);
    assert!(got.is_empty());
    // One hold by its token: the waiter takes its permit.
    let (status, _, got) = run(&mut e, root, &revoke(Some(a)));
    assert_eq!(status, Status::Unlocked);
    assert_eq!(got, vec![(w, Status::Locked)]);
    assert_eq!(e.holds("s").count(), 2);
    assert!(e.holds("s").all(|h| h.token != Token(a)));
    // Every hold: the name is free for anyone.
    let (status, _, _) = run(&mut e, root, &revoke(None));
    assert_eq!(status, Status::Unlocked);
    assert_eq!(e.holds("s").count(), 0);
    assert_eq!(
        reply(&mut e, 3, &acquire("s", "d", Shape::Write, None)).0,
        Status::Locked,
        "forgotten once nobody holds it: any kind may take the name"
    );
}
