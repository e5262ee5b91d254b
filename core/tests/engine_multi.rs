//! Multi-locks (`LockAll`) under random operations, against a model, and
//! in the cases that matter one by one.
//!
//! Names `a`..`d`; three owners. Operations: `LockAll` of one to three
//! names with and without a wait, plain `Lock`s with and without a wait
//! (re-locks of one's own lock included), unlocks by token, cancels of
//! queued waiters, undeliverable multi-lock grants (`orphaned`), clock
//! moves, and snapshot and restore into a fresh engine along the way.
//!
//! After every step:
//! - no name has two holders: a grant (answer or event) never lands on a
//!   name the model says someone else holds;
//! - all or none: a multi-lock grant carries one token per name, each
//!   name then holds exactly that token, and a refused or queued
//!   `LockAll` took none of its names;
//! - grants follow arrival order: nobody is granted a name that an older
//!   waiter (plain or multi) still waits for, and a newcomer never
//!   overtakes a waiter;
//! - nobody is left waiting while it is first in line on every one of its
//!   names and they are all free;
//! - the engine's locks are exactly the model's;
//! - tokens strictly increase;
//! - at the end, once every deadline passed, every request was answered
//!   once (or cancelled), and no byte stays charged.
// Test code: a panic is a failure.
#![allow(clippy::unwrap_used)]

extern crate alloc;

use alloc::collections::BTreeMap;

use dlm_core::engine::{Config, Engine, Event, Outcome, Principal, WaiterId};
use dlm_core::limits::Limits;
use dlm_core::protocol::{
    Command, Field, Framing, MAX_LOCK_ALL, Names, Owner, Request, RequestError, Resource, Response,
    Status, Token, TokenList,
};
use dlm_core::time::{Instant, Ttl};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const OWNERS: [&str; 3] = ["o0", "o1", "o2"];

#[derive(Clone, Debug)]
enum Op {
    /// `LockAll` of the names whose bits are set in `mask` (1..16).
    LockAll {
        mask: u8,
        owner: usize,
        ttl: u64,
        wait: u64,
    },
    /// A plain `Lock`.
    Lock {
        name: usize,
        owner: usize,
        ttl: u64,
        wait: u64,
    },
    /// Unlock `name` with the token the model says its holder has, as
    /// that holder.
    Unlock { name: usize },
    /// The `pick`th queued waiter's connection closes.
    Cancel { pick: usize },
    /// The `pick`th multi-lock grant made to a waiter was undeliverable.
    Orphan { pick: usize },
    /// Time passes.
    Wait { ms: u64 },
    /// Snapshot, restore into a fresh engine, go on with it.
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u8..16, 0usize..3, 1u64..60, prop_oneof![Just(0u64), 1u64..80])
            .prop_map(|(mask, owner, ttl, wait)| Op::LockAll { mask, owner, ttl, wait }),
        6 => (0usize..4, 0usize..3, 1u64..60, prop_oneof![Just(0u64), 1u64..80])
            .prop_map(|(name, owner, ttl, wait)| Op::Lock { name, owner, ttl, wait }),
        4 => (0usize..4).prop_map(|name| Op::Unlock { name }),
        2 => (0usize..8).prop_map(|pick| Op::Cancel { pick }),
        2 => (0usize..8).prop_map(|pick| Op::Orphan { pick }),
        5 => (1u64..30).prop_map(|ms| Op::Wait { ms }),
        1 => Just(Op::Restore),
    ]
}

/// A hold in the model.
#[derive(Clone, Debug)]
struct Hold {
    owner: usize,
    token: u64,
    until: u64,
    /// How many waiters were told (`u32::MAX`: answered directly).
    told: u32,
}

/// A queued request in the model.
#[derive(Clone, Debug)]
struct Waiter {
    names: Vec<usize>,
    owner: usize,
    ttl: u64,
    deadline: u64,
    multi: bool,
}

/// An event, owned.
#[derive(Clone, Debug)]
struct Ev {
    waiter: WaiterId,
    status: Status,
    token: Option<u64>,
    tokens: Option<Vec<u64>>,
}

fn owned(e: &Event<'_>) -> Ev {
    Ev {
        waiter: e.waiter,
        status: e.response.status,
        token: e.response.token.map(|t| t.0),
        tokens: e.response.tokens.map(|l| l.iter().map(|t| t.0).collect()),
    }
}

struct Run {
    e: Engine,
    now: u64,
    holds: BTreeMap<usize, Hold>,
    waiting: BTreeMap<WaiterId, Waiter>,
    /// Multi-lock grants made to waiters: first name, first token.
    orphanable: Vec<(usize, u64)>,
    /// Their names, by first token.
    grants: BTreeMap<u64, Vec<usize>>,
    last_token: u64,
}

impl Run {
    fn new() -> Self {
        Self {
            e: Engine::new(Config::default()),
            now: 0,
            holds: BTreeMap::new(),
            waiting: BTreeMap::new(),
            orphanable: Vec::new(),
            grants: BTreeMap::new(),
            last_token: 0,
        }
    }

    fn new_token(&mut self, t: u64) {
        assert!(
            t > self.last_token,
            "token {t} not above {}",
            self.last_token
        );
        self.last_token = t;
    }

    fn expire(&mut self) {
        let now = self.now;
        self.holds.retain(|_, h| h.until > now);
    }

    /// Whether an older waiter than `id` waits for `name`.
    fn older_waiter(&self, name: usize, id: Option<WaiterId>) -> bool {
        self.waiting
            .iter()
            .any(|(w, q)| id.is_none_or(|id| *w < id) && q.names.contains(&name))
    }

    fn events(&mut self, evs: Vec<Ev>) {
        for ev in evs {
            let w = self
                .waiting
                .remove(&ev.waiter)
                .unwrap_or_else(|| panic!("event for {:?}, not waiting", ev.waiter));
            match ev.status {
                Status::NotOwner => {
                    assert!(self.now >= w.deadline, "wait ended early");
                }
                Status::Locked => {
                    assert!(self.now < w.deadline, "granted after its wait ran out");
                    self.expire();
                    let first = ev.token.unwrap();
                    let tokens = if w.multi {
                        let t = ev.tokens.clone().unwrap();
                        assert_eq!(t.len(), w.names.len(), "one token per name");
                        t
                    } else {
                        assert!(ev.tokens.is_none());
                        vec![first]
                    };
                    assert_eq!(tokens[0], first);
                    // Same owner handed its own lock again: a re-lock.
                    if !w.multi
                        && let Some(h) = self.holds.get_mut(&w.names[0])
                        && h.owner == w.owner
                        && h.token == first
                    {
                        h.told = if h.told == u32::MAX {
                            u32::MAX
                        } else {
                            h.told + 1
                        };
                        h.until = h.until.max(self.now + w.ttl);
                        continue;
                    }
                    for (i, &n) in w.names.iter().enumerate() {
                        assert!(
                            !self.holds.contains_key(&n),
                            "{} granted while held: {:?}",
                            NAMES[n],
                            self.holds[&n]
                        );
                        assert!(
                            !self.older_waiter(n, Some(ev.waiter)),
                            "{:?} overtook an older waiter of {}",
                            ev.waiter,
                            NAMES[n]
                        );
                        self.new_token(tokens[i]);
                        self.holds.insert(
                            n,
                            Hold {
                                owner: w.owner,
                                token: tokens[i],
                                until: self.now + w.ttl,
                                told: 1,
                            },
                        );
                    }
                    if w.multi {
                        self.orphanable.push((w.names[0], first));
                        self.grants.insert(first, w.names.clone());
                    }
                }
                other => panic!("unexpected event {other}"),
            }
        }
    }

    fn handle(&mut self, cmd: &Command<'_>) -> (Outcome<'static>, Option<Vec<u64>>, Vec<Ev>) {
        let mut evs = Vec::new();
        let out = self
            .e
            .handle(at(self.now), cmd, Principal::Anonymous, 0, &mut |ev| {
                evs.push(owned(&ev));
            });
        let (out, tokens) = match out {
            Outcome::Queued(w) => (Outcome::Queued(w), None),
            Outcome::Reply(r) => {
                let tokens = r.tokens.map(|l| l.iter().map(|t| t.0).collect());
                let mut plain = dlm_core::protocol::Response::new(r.status);
                plain.token = r.token;
                (Outcome::Reply(plain), tokens)
            }
        };
        (out, tokens, evs)
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::LockAll {
                mask,
                owner,
                ttl,
                wait,
            } => {
                let idx: Vec<usize> = (0..4).filter(|i| mask & (1 << i) != 0).collect();
                let names: Vec<&str> = idx.iter().map(|&i| NAMES[i]).collect();
                let cmd = Command::LockAll {
                    names: Names::new(&names).unwrap(),
                    owner: Owner(OWNERS[owner]),
                    ttl: Ttl::from_millis(ttl),
                    wait: (wait > 0).then(|| Ttl::from_millis(wait)),
                };
                let (out, tokens, evs) = self.handle(&cmd);
                // Time moved to now first: its events, then the answer.
                self.events(evs);
                self.expire();
                let mine = idx
                    .iter()
                    .any(|n| self.holds.get(n).is_some_and(|h| h.owner == owner));
                let busy = idx
                    .iter()
                    .any(|&n| self.holds.contains_key(&n) || self.older_waiter(n, None));
                let all_mine = idx
                    .iter()
                    .all(|n| self.holds.get(n).is_some_and(|h| h.owner == owner));
                if all_mine {
                    // A re-lock of them all: their tokens, extended.
                    let Outcome::Reply(r) = out else {
                        panic!("a re-lock queued")
                    };
                    assert_eq!(r.status, Status::Locked);
                    let tokens = tokens.unwrap();
                    for (i, n) in idx.iter().enumerate() {
                        let h = self.holds.get_mut(n).unwrap();
                        assert_eq!(h.token, tokens[i]);
                        h.until = self.now + ttl;
                        h.told = u32::MAX;
                    }
                    self.check();
                    return;
                }
                match out {
                    Outcome::Reply(r) if r.status == Status::Locked => {
                        assert!(!busy && !mine, "granted a busy set {names:?}");
                        let tokens = tokens.unwrap();
                        assert_eq!(tokens.len(), idx.len());
                        assert_eq!(r.token.unwrap().0, tokens[0]);
                        for (i, &n) in idx.iter().enumerate() {
                            self.new_token(tokens[i]);
                            self.holds.insert(
                                n,
                                Hold {
                                    owner,
                                    token: tokens[i],
                                    until: self.now + ttl,
                                    told: u32::MAX,
                                },
                            );
                        }
                    }
                    Outcome::Reply(r) => {
                        assert_eq!(r.status, Status::NotOwner);
                        assert!(busy || mine, "refused a free set {names:?}");
                        assert!(wait == 0 || mine, "refused instead of queued");
                    }
                    Outcome::Queued(w) => {
                        assert!(busy && !mine && wait > 0, "queued {names:?}");
                        self.waiting.insert(
                            w,
                            Waiter {
                                names: idx,
                                owner,
                                ttl,
                                deadline: self.now + wait,
                                multi: true,
                            },
                        );
                    }
                }
            }
            Op::Lock {
                name,
                owner,
                ttl,
                wait,
            } => {
                let cmd = Command::Lock {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[owner]),
                    ttl: Ttl::from_millis(ttl),
                    wait: (wait > 0).then(|| Ttl::from_millis(wait)),
                    token: None,
                };
                let (out, _, evs) = self.handle(&cmd);
                self.events(evs);
                self.expire();
                let held = self.holds.get(&name).cloned();
                match (out, held) {
                    (Outcome::Reply(r), Some(h)) if h.owner == owner => {
                        // A re-lock: same token, answered directly.
                        assert_eq!(r.status, Status::Locked);
                        assert_eq!(r.token.unwrap().0, h.token);
                        let h = self.holds.get_mut(&name).unwrap();
                        h.until = self.now + ttl;
                        h.told = u32::MAX;
                    }
                    (Outcome::Reply(r), held) if r.status == Status::Locked => {
                        assert!(held.is_none(), "granted a held lock");
                        assert!(!self.older_waiter(name, None), "overtook a waiter");
                        let t = r.token.unwrap().0;
                        self.new_token(t);
                        self.holds.insert(
                            name,
                            Hold {
                                owner,
                                token: t,
                                until: self.now + ttl,
                                told: u32::MAX,
                            },
                        );
                    }
                    (Outcome::Reply(r), held) => {
                        assert_eq!(r.status, Status::NotOwner);
                        assert!(held.is_some() || self.older_waiter(name, None));
                        assert_eq!(wait, 0, "refused instead of queued");
                    }
                    (Outcome::Queued(w), held) => {
                        assert!(held.is_some() || self.older_waiter(name, None));
                        self.waiting.insert(
                            w,
                            Waiter {
                                names: vec![name],
                                owner,
                                ttl,
                                deadline: self.now + wait,
                                multi: false,
                            },
                        );
                    }
                }
            }
            Op::Unlock { name } => {
                self.expire();
                let Some(h) = self.holds.get(&name).cloned() else {
                    return;
                };
                let cmd = Command::Unlock {
                    name: Resource(NAMES[name]),
                    owner: Owner(OWNERS[h.owner]),
                    token: Some(Token(h.token)),
                };
                let (out, _, evs) = self.handle(&cmd);
                // Expiries at now come first (the model dropped them).
                let Outcome::Reply(r) = out else {
                    panic!("unlock queued")
                };
                assert_eq!(r.status, Status::Unlocked);
                self.holds.remove(&name);
                self.events(evs);
            }
            Op::Cancel { pick } => {
                let Some(&w) = self.waiting.keys().nth(pick) else {
                    return;
                };
                assert!(self.e.cancel(w), "cancel of a live waiter");
                self.waiting.remove(&w);
                // A queue it leaves moves at the next deadline, never
                // later than now: the host advances then.
                if self.e.next_deadline().is_some_and(|d| d <= at(self.now)) {
                    self.advance();
                }
            }
            Op::Orphan { pick } => {
                if self.orphanable.is_empty() {
                    return;
                }
                let (name, first) = self.orphanable.remove(pick % self.orphanable.len());
                let mut evs = Vec::new();
                self.e
                    .orphaned(at(self.now), NAMES[name], Token(first), &mut |ev| {
                        evs.push(owned(&ev));
                    });
                // The take-back frees, before the events of what it
                // freed, each name of the grant still under its token that
                // no one else was told about; nothing if the first name's
                // grant already ended.
                self.expire();
                if self.holds.get(&name).is_some_and(|h| h.token == first) {
                    for (i, n) in self.grants[&first].clone().into_iter().enumerate() {
                        let Some(h) = self.holds.get_mut(&n) else {
                            continue;
                        };
                        if h.token != first + i as u64 || h.told == u32::MAX {
                            continue;
                        }
                        h.told -= 1;
                        if h.told == 0 {
                            self.holds.remove(&n);
                        }
                    }
                }
                self.events(evs);
            }
            Op::Wait { ms } => {
                // As a host does: wake at every deadline on the way.
                let target = self.now + ms;
                while let Some(d) = self.e.next_deadline().filter(|d| *d <= at(target)) {
                    self.now = self.now.max(d.as_millis());
                    self.advance();
                    self.check();
                }
                self.now = target;
                self.advance();
            }
            Op::Restore => {
                let bytes = self.e.snapshot_to_vec();
                let mut fresh = Engine::new(Config::default());
                fresh.restore(at(self.now), &bytes).unwrap();
                self.e = fresh;
            }
        }
        self.check();
    }

    fn advance(&mut self) {
        let mut evs = Vec::new();
        self.e.advance(at(self.now), &mut |ev| evs.push(owned(&ev)));
        self.events_in_time(evs);
    }

    /// Events of an advance: waits and expiries interleave by time; the
    /// model expires before applying them (a hold due by now is gone).
    fn events_in_time(&mut self, evs: Vec<Ev>) {
        self.expire();
        self.events(evs);
    }

    fn check(&mut self) {
        self.expire();
        // The engine's locks are the model's.
        let mut live: Vec<(String, String, u64)> = self
            .e
            .locks()
            .map(|l| (l.name.to_owned(), l.owner.to_owned(), l.token.0))
            .collect();
        live.sort();
        let mut model: Vec<(String, String, u64)> = self
            .holds
            .iter()
            .map(|(&n, h)| (NAMES[n].to_owned(), OWNERS[h.owner].to_owned(), h.token))
            .collect();
        model.sort();
        assert_eq!(live, model, "locks differ from the model at {}", self.now);
        assert_eq!(self.e.waiter_count(), self.waiting.len(), "waiters differ");
        // Nobody left waiting who could be granted.
        assert_eq!(self.e.multi_stalled(), None, "a ready waiter was left");
        for (&id, w) in &self.waiting {
            let ready = w
                .names
                .iter()
                .all(|&n| !self.holds.contains_key(&n) && !self.older_waiter(n, Some(id)));
            assert!(!ready, "{id:?} waits for free names {:?}", w.names);
        }
    }

    fn finish(&mut self) {
        self.step(&Op::Wait { ms: 10_000 });
        assert!(self.waiting.is_empty(), "unanswered: {:?}", self.waiting);
        assert!(self.holds.is_empty());
        assert_eq!(self.e.lock_count(), 0);
        assert_eq!(self.e.waiter_count(), 0);
        assert_eq!(self.e.memory_used(), 0, "bytes left charged");
    }
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
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
    fn multi_locks_keep_their_invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
        }
        run.finish();
    }
}

// ---------------------------------------------------------------------------
// One case at a time.

/// What a command got: its answer (status, token, tokens, error) or the
/// waiter it queued as, and the events on the way.
#[derive(Debug)]
struct Got {
    status: Option<Status>,
    queued: Option<WaiterId>,
    token: Option<u64>,
    tokens: Vec<u64>,
    error: Option<String>,
    events: Vec<Ev>,
}

fn run(e: &mut Engine, t: u64, c: &Command<'_>) -> Got {
    let mut events = Vec::new();
    let out = e.handle(at(t), c, Principal::Anonymous, 7, &mut |ev| {
        events.push(owned(&ev));
    });
    match out {
        Outcome::Reply(r) => Got {
            status: Some(r.status),
            queued: None,
            token: r.token.map(|t| t.0),
            tokens: r
                .tokens
                .map(|l| l.iter().map(|t| t.0).collect())
                .unwrap_or_default(),
            error: r.error.map(|m| m.to_string()),
            events,
        },
        Outcome::Queued(w) => Got {
            status: None,
            queued: Some(w),
            token: None,
            tokens: Vec::new(),
            error: None,
            events,
        },
    }
}

fn lock_all<'a>(names: &'a [&'a str], owner: &'a str, wait: Option<u64>) -> Command<'a> {
    Command::LockAll {
        names: Names::new(names).unwrap(),
        owner: Owner(owner),
        ttl: Ttl::from_millis(1000),
        wait: wait.map(Ttl::from_millis),
    }
}

fn lock<'a>(name: &'a str, owner: &'a str, wait: Option<u64>) -> Command<'a> {
    Command::Lock {
        name: Resource(name),
        owner: Owner(owner),
        ttl: Ttl::from_millis(1000),
        wait: wait.map(Ttl::from_millis),
        token: None,
    }
}

fn unlock<'a>(name: &'a str, owner: &'a str, token: u64) -> Command<'a> {
    Command::Unlock {
        name: Resource(name),
        owner: Owner(owner),
        token: Some(Token(token)),
    }
}

#[test]
fn all_free_is_granted_at_once_with_one_token_per_name() {
    let mut e = Engine::new(Config::default());
    let g = run(&mut e, 0, &lock_all(&["b", "a", "c"], "m", None));
    assert_eq!(g.status, Some(Status::Locked));
    assert_eq!(g.tokens.len(), 3);
    assert_eq!(g.token, Some(g.tokens[0]));
    assert!(g.tokens.windows(2).all(|w| w[1] == w[0] + 1));
    for (n, t) in ["b", "a", "c"].iter().zip(&g.tokens) {
        let l = e.lock_info(n).unwrap();
        assert_eq!((l.owner, l.token.0), ("m", *t));
    }
    // Each is an ordinary lock: released one by one.
    let u = run(&mut e, 1, &unlock("a", "m", g.tokens[1]));
    assert_eq!(u.status, Some(Status::Unlocked));
    assert_eq!(e.lock_count(), 2);
}

#[test]
fn one_held_name_refuses_the_whole_set_and_says_which() {
    let mut e = Engine::new(Config::default());
    run(&mut e, 0, &lock("b", "x", None));
    let g = run(&mut e, 0, &lock_all(&["a", "b", "c"], "m", None));
    assert_eq!(g.status, Some(Status::NotOwner));
    assert!(g.error.unwrap().contains("\"b\""));
    assert_eq!(e.lock_count(), 1, "nothing taken");
    assert!(e.lock_info("a").is_none() && e.lock_info("c").is_none());
    // A name the caller holds itself (but not all of them) is refused
    // even with a wait: waiting for oneself would only end with the TTL.
    let g = run(&mut e, 0, &lock_all(&["a", "b"], "x", Some(500)));
    assert_eq!(g.status, Some(Status::NotOwner));
    assert!(g.error.unwrap().contains("already held by this ID"));
    assert_eq!(e.waiter_count(), 0);
}

#[test]
fn a_resent_lock_all_is_a_re_lock_of_them_all() {
    let mut e = Engine::new(Config::default());
    let g = run(&mut e, 0, &lock_all(&["a", "b"], "m", None));
    let again = run(&mut e, 500, &lock_all(&["a", "b"], "m", Some(100)));
    assert_eq!(again.status, Some(Status::Locked));
    assert_eq!(again.tokens, g.tokens, "the same grants");
    // Extended: still held past the first TTL.
    e.advance(at(1200), &mut |_| {});
    assert_eq!(e.lock_count(), 2);
}

#[test]
fn a_waiting_multi_lock_reserves_its_free_names_and_takes_all_at_once() {
    let mut e = Engine::new(Config::default());
    let x = run(&mut e, 0, &lock("a", "x", None)).token.unwrap();
    let m = run(&mut e, 1, &lock_all(&["a", "b"], "m", Some(5000)))
        .queued
        .unwrap();
    assert_eq!(e.lock_count(), 1, "b is not taken while a is held");
    // b is free but reserved: a newcomer does not overtake the multi-lock.
    let y = run(&mut e, 2, &lock("b", "y", None));
    assert_eq!(y.status, Some(Status::NotOwner));
    let y = run(&mut e, 2, &lock("b", "y", Some(5000))).queued.unwrap();
    // Nor can a semaphore take it.
    let s = run(
        &mut e,
        2,
        &Command::Acquire {
            name: Resource("b"),
            owner: Owner("s"),
            shape: dlm_core::protocol::Shape::Semaphore { permits: 2 },
            ttl: Ttl::from_millis(1000),
            wait: None,
            token: None,
        },
    );
    assert_eq!(s.status, Some(Status::Conflict));
    // a comes free: the multi-lock gets a and b in one step.
    let u = run(&mut e, 3, &unlock("a", "x", x));
    assert_eq!(u.status, Some(Status::Unlocked));
    assert_eq!(u.events.len(), 1);
    let ev = &u.events[0];
    assert_eq!((ev.waiter, ev.status), (m, Status::Locked));
    let tokens = ev.tokens.clone().unwrap();
    assert_eq!(e.lock_info("a").unwrap().token.0, tokens[0]);
    assert_eq!(e.lock_info("b").unwrap().token.0, tokens[1]);
    assert_eq!(e.lock_info("b").unwrap().owner, "m");
    // y, queued behind it on b, is granted when m releases b.
    let u = run(&mut e, 4, &unlock("b", "m", tokens[1]));
    assert_eq!(u.events.len(), 1);
    assert_eq!(
        (u.events[0].waiter, u.events[0].status),
        (y, Status::Locked)
    );
    assert!(u.events[0].tokens.is_none(), "a plain Lock's answer");
    assert_eq!(e.lock_info("b").unwrap().owner, "y");
}

#[test]
fn crossing_multi_locks_never_deadlock() {
    // m1 wants a then b, m2 wants b then a, both wait behind holders of
    // each: whichever arrived first gets both, then the other.
    let mut e = Engine::new(Config::default());
    let ta = run(&mut e, 0, &lock("a", "x", None)).token.unwrap();
    let tb = run(&mut e, 0, &lock("b", "y", None)).token.unwrap();
    let m1 = run(&mut e, 1, &lock_all(&["a", "b"], "m1", Some(5000)))
        .queued
        .unwrap();
    let m2 = run(&mut e, 2, &lock_all(&["b", "a"], "m2", Some(5000)))
        .queued
        .unwrap();
    // b comes free first: nobody can take it alone.
    let u = run(&mut e, 3, &unlock("b", "y", tb));
    assert!(u.events.is_empty());
    assert_eq!(e.lock_count(), 1);
    let u = run(&mut e, 4, &unlock("a", "x", ta));
    assert_eq!(u.events.len(), 1);
    assert_eq!(u.events[0].waiter, m1);
    let t = u.events[0].tokens.clone().unwrap();
    let u = run(&mut e, 5, &unlock("a", "m1", t[0]));
    assert!(u.events.is_empty(), "m2 needs b too");
    let u = run(&mut e, 6, &unlock("b", "m1", t[1]));
    assert_eq!(u.events.len(), 1);
    assert_eq!(u.events[0].waiter, m2);
}

#[test]
fn an_undeliverable_grant_is_taken_back_whole() {
    let mut e = Engine::new(Config::default());
    let ta = run(&mut e, 0, &lock("a", "x", None)).token.unwrap();
    run(&mut e, 1, &lock_all(&["a", "b"], "m", Some(5000)));
    let next = run(&mut e, 2, &lock_all(&["b", "a"], "n", Some(5000)))
        .queued
        .unwrap();
    let u = run(&mut e, 3, &unlock("a", "x", ta));
    let t = u.events[0].tokens.clone().unwrap();
    let mut evs = Vec::new();
    assert!(e.orphaned(at(4), "a", Token(t[0]), &mut |ev| evs.push(owned(&ev))));
    // Both names were freed and went to the next in line together.
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].waiter, next);
    assert_eq!(e.lock_info("a").unwrap().owner, "n");
    assert_eq!(e.lock_info("b").unwrap().owner, "n");
}

#[test]
fn a_queued_multi_lock_survives_snapshot_and_restore() {
    let mut e = Engine::new(Config::default());
    let ta = run(&mut e, 0, &lock("a", "x", None)).token.unwrap();
    let m = run(&mut e, 1, &lock_all(&["a", "b"], "m", Some(5000)))
        .queued
        .unwrap();
    let bytes = e.snapshot_to_vec();
    let mut r = Engine::new(Config::default());
    r.restore(at(1), &bytes).unwrap();
    assert_eq!(r.waiter_count(), 1);
    assert_eq!(r.memory_used(), e.memory_used());
    // Still reserved after the restore.
    assert_eq!(
        run(&mut r, 2, &lock("b", "y", None)).status,
        Some(Status::NotOwner)
    );
    let u = run(&mut r, 3, &unlock("a", "x", ta));
    assert_eq!(u.events.len(), 1);
    assert_eq!(u.events[0].waiter, m);
    // The restored engine says what the original says.
    run(&mut e, 2, &lock("b", "y", None));
    let v = run(&mut e, 3, &unlock("a", "x", ta));
    assert_eq!(v.events[0].tokens, u.events[0].tokens);
    assert_eq!(r.snapshot_to_vec(), e.snapshot_to_vec());
}

#[test]
fn a_multi_lock_wait_runs_out_and_frees_its_places() {
    let mut e = Engine::new(Config::default());
    run(&mut e, 0, &lock("a", "x", None));
    let m = run(&mut e, 0, &lock_all(&["a", "b"], "m", Some(50)))
        .queued
        .unwrap();
    let y = run(&mut e, 10, &lock("b", "y", Some(1000))).queued.unwrap();
    assert_eq!(e.next_deadline(), Some(at(50)));
    let mut evs = Vec::new();
    e.advance(at(50), &mut |ev| evs.push(owned(&ev)));
    // m times out; y, behind it on the free b, is granted at once.
    assert_eq!(evs.len(), 2);
    assert_eq!((evs[0].waiter, evs[0].status), (m, Status::NotOwner));
    assert_eq!((evs[1].waiter, evs[1].status), (y, Status::Locked));
}

#[test]
fn watchers_see_each_name_granted_and_released() {
    use dlm_core::engine::What;
    let mut e = Engine::new(Config::default());
    e.set_feed(true);
    let g = run(&mut e, 0, &lock_all(&["a", "b"], "m", None));
    run(&mut e, 1, &unlock("b", "m", g.tokens[1]));
    let mut got = Vec::new();
    e.drain_changes(|c| got.push((c.what, c.name, c.token)));
    assert_eq!(
        got,
        vec![
            (What::Granted, "a".to_owned(), Some(g.tokens[0])),
            (What::Granted, "b".to_owned(), Some(g.tokens[1])),
            (What::Released, "b".to_owned(), Some(g.tokens[1])),
        ]
    );
}

#[test]
fn groups_are_not_multi_locked() {
    let mut e = Engine::new(Config::default());
    let s = run(
        &mut e,
        0,
        &Command::Acquire {
            name: Resource("s"),
            owner: Owner("o"),
            shape: dlm_core::protocol::Shape::Read,
            ttl: Ttl::from_millis(1000),
            wait: None,
            token: None,
        },
    );
    assert_eq!(s.status, Some(Status::Locked));
    let g = run(&mut e, 0, &lock_all(&["a", "s"], "m", Some(100)));
    assert_eq!(g.status, Some(Status::Conflict));
    assert!(g.error.unwrap().contains("read/write"));
    assert_eq!((e.lock_count(), e.waiter_count()), (0, 0));
}

// ---------------------------------------------------------------------------
// On the wire.

fn parse(line: &str) -> Result<Command<'static>, RequestError> {
    let buf: &'static mut [u8] = Box::leak(line.as_bytes().to_vec().into_boxed_slice());
    Request::parse(buf, &Limits::DEFAULT)
        .map(|r| r.command)
        .map_err(|r| r.error)
}

#[test]
fn lock_all_parses_and_round_trips() {
    let c = parse(
        r#"{"Action":"LockAll","Names":["a","b\u0041",  "c"],"ID":"m","Expire":1.5,"Wait":2}"#,
    )
    .unwrap();
    let Command::LockAll {
        names,
        owner,
        ttl,
        wait,
    } = c
    else {
        panic!("{c:?}")
    };
    assert_eq!(names.iter().collect::<Vec<_>>(), ["a", "bA", "c"]);
    assert_eq!((owner.0, ttl.as_millis()), ("m", 1500));
    assert_eq!(wait, Some(Ttl::from_secs(2)));
    for framing in [Framing::Plain, Framing::Legacy] {
        let req = Request {
            framing,
            command: c,
            credentials: None,
            request_id: None,
            session: None,
        };
        let mut out = Vec::new();
        req.write(&mut out).unwrap();
        let mut line = out.clone();
        let back = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
        assert_eq!(back.command, c, "{}", String::from_utf8_lossy(&out));
    }
    // The action is case-insensitive, as every action.
    assert!(parse(r#"{"Action":"lockall","Names":["x"],"ID":"m","Expire":1}"#).is_ok());
}

#[test]
fn bad_name_lists_are_refused_while_parsing() {
    let with = |names: &str| {
        parse(&format!(
            r#"{{"Action":"LockAll","Names":{names},"ID":"m","Expire":1}}"#
        ))
    };
    let many: Vec<String> = (0..=MAX_LOCK_ALL).map(|i| format!("\"n{i}\"")).collect();
    assert_eq!(
        with(&format!("[{}]", many.join(","))),
        Err(RequestError::TooMany {
            field: Field::Names,
            limit: MAX_LOCK_ALL
        })
    );
    let most: Vec<String> = (0..MAX_LOCK_ALL).map(|i| format!("\"n{i}\"")).collect();
    assert!(with(&format!("[{}]", most.join(","))).is_ok());
    assert_eq!(
        with(r#"["a","b","a"]"#),
        Err(RequestError::Repeated(Field::Names))
    );
    assert_eq!(with("[]"), Err(RequestError::EmptyField(Field::Names)));
    assert_eq!(
        with(r#"["a",""]"#),
        Err(RequestError::EmptyField(Field::Names))
    );
    assert!(matches!(
        with(r#"["a",1]"#),
        Err(RequestError::InvalidValue {
            field: Field::Names,
            ..
        })
    ));
    assert!(matches!(
        with(r#"["a",["b"]]"#),
        Err(RequestError::InvalidValue { .. })
    ));
    assert!(matches!(
        with(r#""a""#),
        Err(RequestError::WrongType {
            field: Field::Names,
            ..
        })
    ));
    let long = "x".repeat(Limits::DEFAULT.max_name + 1);
    assert!(matches!(
        with(&format!(r#"["{long}"]"#)),
        Err(RequestError::TooLong {
            field: Field::Names,
            ..
        })
    ));
    assert_eq!(
        parse(r#"{"Action":"LockAll","ID":"m","Expire":1}"#),
        Err(RequestError::MissingField(Field::Names))
    );
    assert!(matches!(
        parse(r#"{"Action":"LockAll","Names":["a"],"ID":"m","Expire":1,"Session":true}"#),
        Err(RequestError::InvalidValue {
            field: Field::Session,
            ..
        })
    ));
    assert!(parse(r#"{"Action":"LockAll","Names":["a"],"ID":"m","Expire":0}"#).is_err());
    // Malformed JSON inside the list never panics.
    for bad in [r#"["a""#, r#"["a",]"#, r#"[,"a"]"#, r#"["\x"]"#, "[[[[[[["] {
        assert!(with(bad).is_err(), "{bad}");
    }
    // Other actions ignore a Names field.
    assert!(parse(r#"{"Action":"Lock","FileName":"a","ID":"m","Expire":1,"Names":[1]}"#).is_ok());
}

#[test]
fn tokens_round_trip_and_bad_ones_are_refused() {
    let mut r = Response::new(Status::Locked);
    r.token = Some(Token(7));
    r.tokens = TokenList::parse("[7,8,9]");
    let mut out = Vec::new();
    r.write(Framing::Plain, &mut out).unwrap();
    let (_, back) = Response::parse(&mut out).unwrap();
    let t: Vec<u64> = back.tokens.unwrap().iter().map(|t| t.0).collect();
    assert_eq!(t, [7, 8, 9]);
    for bad in [
        r#"{"Status":"Locked","Tokens":["7"]}"#,
        r#"{"Status":"Locked","Tokens":[-1]}"#,
        r#"{"Status":"Locked","Tokens":7}"#,
        r#"{"Status":"Locked","Tokens":[1.5]}"#,
    ] {
        let mut line = bad.as_bytes().to_vec();
        assert!(Response::parse(&mut line).is_err(), "{bad}");
    }
    let many: Vec<String> = (0..=MAX_LOCK_ALL).map(|i| i.to_string()).collect();
    let mut line = format!(r#"{{"Status":"Locked","Tokens":[{}]}}"#, many.join(",")).into_bytes();
    assert!(Response::parse(&mut line).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Any list of names, escapes and all, written by a client, reads back
    /// the same on the server (the parser packs them in place).
    #[test]
    fn any_name_list_round_trips(
        names in proptest::collection::vec("\\PC{1,12}|[\"\\\\\u{1}-\u{1f}\u{ff}-\u{10ffff}]{1,6}", 1..=16),
        legacy in any::<bool>(),
    ) {
        let mut names = names;
        names.sort();
        names.dedup();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let c = lock_all(&refs, "o", Some(5));
        let req = Request {
            framing: if legacy { Framing::Legacy } else { Framing::Plain },
            command: c,
            credentials: None,
            request_id: None,
            session: None,
        };
        let mut out = Vec::new();
        req.write(&mut out).unwrap();
        let back = Request::parse(&mut out, &Limits::DEFAULT).unwrap();
        prop_assert_eq!(back.command, c);
    }
}
