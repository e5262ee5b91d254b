//! Sessions, session-bound grants and lock-delay under random operations,
//! against a model of what every client was told.
//!
//! Three connections (each with its owner ID, one shared by two of them so
//! that a re-lock from another connection happens) open sessions, take the
//! exclusive locks `x` and `y` and permits of the 2-permit semaphore `s`,
//! with and without `Session`, with and without lock-delay and `Wait`;
//! they unlock, send requests that keep their session alive, close, and
//! time passes (sessions run out); the engine is snapshotted and restored
//! in the middle.
//!
//! After every step:
//! - never two owners: a grant of an exclusive lock is made only when no
//!   grant the model still believes live (told, not released, not past its
//!   TTL) is another's, and a semaphore never has more live grants than
//!   permits: so a grant closed by a lock-delay keeps its name closed to
//!   everyone until the delay has passed;
//! - a session's end releases every grant bound to it (or closes it for
//!   its delay: then nobody, its owner included, can unlock or extend it);
//! - tokens only grow; a queued request is answered once;
//! - at the end, once every deadline passed, nothing stays charged.
// Test code: a panic is a failure.
#![allow(clippy::unwrap_used)]

extern crate alloc;

use alloc::collections::BTreeMap;

use dlm_core::engine::{Config, ConnId, Engine, Event, Outcome, Principal};
use dlm_core::protocol::{Command, Owner, Resource, SessionBind, Shape, Status, Token};
use dlm_core::time::{Instant, Ttl};
use proptest::prelude::*;

const NAMES: [&str; 3] = ["x", "y", "s"];
/// Connection `i`'s owner ID: connections 1 and 2 share one.
const OWNERS: [&str; 3] = ["a", "b", "b"];
const PERMITS: u32 = 2;

#[derive(Clone, Debug)]
enum Op {
    /// `Session` on connection `conn`.
    Open { conn: usize, ttl: u64 },
    /// `Session` with `"Session": true`: keeps alive the session `conn`
    /// has, never opens one.
    KeepAlive { conn: usize, ttl: u64 },
    /// `Lock` of `name` from `conn`, bound to its session if `session`.
    Lock {
        conn: usize,
        name: usize,
        ttl: u64,
        wait: u64,
        session: bool,
        delay: u64,
    },
    /// `Unlock` of `name` without token.
    Unlock { conn: usize, name: usize },
    /// A request that changes nothing (`TestLock`): keeps the session alive.
    Touch { conn: usize },
    /// The connection closes (and a new one takes its place).
    Close { conn: usize },
    /// Time passes.
    Wait { ms: u64 },
    /// Snapshot, restore into a fresh engine, go on with it.
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..3, 5u64..60).prop_map(|(conn, ttl)| Op::Open { conn, ttl }),
        2 => (0usize..3, 5u64..60).prop_map(|(conn, ttl)| Op::KeepAlive { conn, ttl }),
        8 => (0usize..3, 0usize..3, 5u64..80, prop_oneof![Just(0u64), 1u64..60], any::<bool>(),
              prop_oneof![Just(0u64), 1u64..40])
            .prop_map(|(conn, name, ttl, wait, session, delay)| Op::Lock {
                conn, name, ttl, wait, session, delay,
            }),
        2 => (0usize..3, 0usize..3).prop_map(|(conn, name)| Op::Unlock { conn, name }),
        2 => (0usize..3).prop_map(|conn| Op::Touch { conn }),
        2 => (0usize..3).prop_map(|conn| Op::Close { conn }),
        4 => (0u64..30).prop_map(|ms| Op::Wait { ms }),
        1 => Just(Op::Restore),
    ]
}

/// A grant as the model knows it: what its holder was told.
#[derive(Clone, Debug)]
struct Grant {
    name: &'static str,
    owner: &'static str,
    /// Its TTL ends (or its lock-delay does, once closed).
    until: u64,
    /// Bound to this connection's session, with this delay.
    bound: Option<(u64, u64)>,
    /// Closed by its lock-delay.
    closed: bool,
}

#[derive(Clone, Debug)]
struct Waiter {
    name: &'static str,
    owner: &'static str,
    ttl: u64,
    bound: Option<(u64, u64)>,
}

struct Run {
    engine: Engine,
    now: u64,
    /// Each connection's current ID (a closed one is replaced).
    conns: [u64; 3],
    next_conn: u64,
    /// Open sessions: connection to (TTL, deadline).
    sessions: BTreeMap<u64, (u64, u64)>,
    grants: BTreeMap<u64, Grant>,
    waiters: BTreeMap<u64, Waiter>,
    top: u64,
    /// Waiters' answers of the last call, applied after its own effect.
    pending_events: Vec<(u64, Status, Option<u64>)>,
}

fn bind(session: bool, delay: u64) -> Option<SessionBind> {
    session.then_some(SessionBind {
        lock_delay: Ttl::from_millis(delay),
    })
}

impl Run {
    fn new() -> Self {
        Self {
            engine: Engine::new(Config::default()),
            now: 0,
            conns: [1, 2, 3],
            next_conn: 4,
            sessions: BTreeMap::new(),
            grants: BTreeMap::new(),
            waiters: BTreeMap::new(),
            top: 0,
            pending_events: Vec::new(),
        }
    }

    /// The grants the model believes live on `name`, and of whom.
    fn live_on(&self, name: &str) -> Vec<(u64, &'static str)> {
        self.grants
            .iter()
            .filter(|(_, g)| g.name == name && g.until > self.now)
            .map(|(t, g)| (*t, g.owner))
            .collect()
    }

    /// A new grant (`token` new) or a re-lock of a live one, told to
    /// `owner` for `ttl`.
    fn told(
        &mut self,
        name: &'static str,
        owner: &'static str,
        token: u64,
        ttl: u64,
        bound: Option<(u64, u64)>,
        by_event: bool,
    ) {
        if let Some(g) = self.grants.get_mut(&token) {
            // A re-lock (or a same-owner waiter given the same grant).
            assert_eq!(g.name, name);
            assert_eq!(g.owner, owner);
            assert!(!g.closed, "a closed grant {token} was re-locked");
            assert!(g.until > self.now, "grant {token} came back after its end");
            // A re-lock sets the TTL from now; a waiter given the grant
            // never shortens what another was told.
            g.until = if by_event {
                g.until.max(self.now + ttl)
            } else {
                self.now + ttl
            };
            if bound.is_some() {
                g.bound = bound;
            }
            return;
        }
        assert!(token > self.top, "token {token} not above {}", self.top);
        self.top = token;
        let live = self.live_on(name);
        if name == "s" {
            assert!(
                live.len() < PERMITS as usize,
                "a third permit of s at {}: {live:?}",
                self.now
            );
        } else {
            assert!(
                live.is_empty(),
                "{name} granted to {owner} ({token}) at {} while {live:?} live",
                self.now
            );
        }
        self.grants.insert(
            token,
            Grant {
                name,
                owner,
                until: self.now + ttl,
                bound,
                closed: false,
            },
        );
    }

    fn events(&mut self, evs: Vec<(u64, Status, Option<u64>)>) {
        for (w, status, token) in evs {
            let q = self
                .waiters
                .remove(&w)
                .expect("event for an unknown or answered waiter");
            if status == Status::Locked {
                let bound = q.bound.filter(|(c, _)| self.sessions.contains_key(c));
                assert_eq!(
                    bound.is_some(),
                    q.bound.is_some(),
                    "a waiter of an ended session was granted"
                );
                self.told(q.name, q.owner, token.unwrap(), q.ttl, bound, true);
            } else {
                assert_eq!(status, Status::NotOwner);
            }
        }
    }

    /// Model: sessions whose TTL passed by `now` end at `now`.
    fn expire_sessions(&mut self) {
        let now = self.now;
        let over: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(c, _)| *c)
            .collect();
        for c in over {
            self.end(c);
        }
    }

    /// Model: session `c` ends now.
    fn end(&mut self, c: u64) {
        self.sessions.remove(&c);
        let now = self.now;
        for g in self.grants.values_mut() {
            if let Some((bc, delay)) = g.bound
                && bc == c
                && g.until > now
            {
                g.bound = None;
                if delay == 0 {
                    g.until = now;
                } else {
                    g.until = now + delay;
                    g.closed = true;
                }
            }
        }
        // Its waiters are answered NotOwner (checked by `events`).
    }

    fn call(
        &mut self,
        conn: usize,
        cmd: &Command<'_>,
        session: Option<SessionBind>,
    ) -> (Status, Option<u64>, Option<u64>) {
        let mut evs = Vec::new();
        let c = self.conns[conn];
        let out = self.engine.handle_in(
            Instant::from_millis(self.now),
            cmd,
            Principal::Anonymous,
            c,
            None,
            Some(ConnId(c)),
            session,
            &mut |e: Event<'_>| {
                evs.push((
                    e.waiter.get(),
                    e.response.status,
                    e.response.token.map(|t| t.0),
                ));
            },
        );
        let r = match out {
            Outcome::Reply(r) => (r.status, r.token.map(|t| t.0), None),
            Outcome::Queued(w) => (Status::Locked, None, Some(w.get())),
        };
        // Every step starts at the instant the last one ended (time moves
        // only in `Wait`, which advances the engine): the events are the
        // command's own (a release handing over), applied after it.
        self.pending_events = evs;
        r
    }

    fn touch(&mut self, conn: usize) {
        let c = self.conns[conn];
        if let Some((ttl, d)) = self.sessions.get_mut(&c) {
            *d = self.now + *ttl;
        }
    }

    fn step(&mut self, op: &Op) {
        // Time first, in the model as in the engine.
        self.expire_sessions();
        match *op {
            Op::Open { conn, ttl } => {
                let (status, _, _) = self.call(
                    conn,
                    &Command::Session {
                        ttl: Ttl::from_millis(ttl),
                    },
                    None,
                );
                assert_eq!(status, Status::Done);
                let c = self.conns[conn];
                self.sessions.insert(c, (ttl, self.now + ttl));
            }
            Op::KeepAlive { conn, ttl } => {
                let (status, _, _) = self.call(
                    conn,
                    &Command::Session {
                        ttl: Ttl::from_millis(ttl),
                    },
                    bind(true, 0),
                );
                let c = self.conns[conn];
                // Kept alive if it lives; an ended (or never opened)
                // session is told, not opened anew behind the client.
                if let Some(s) = self.sessions.get_mut(&c) {
                    assert_eq!(status, Status::Done);
                    *s = (ttl, self.now + ttl);
                } else {
                    assert_eq!(status, Status::BadPayload);
                }
            }
            Op::Lock {
                conn,
                name,
                ttl,
                wait,
                session,
                delay,
            } => {
                let n = NAMES[name];
                let owner = OWNERS[conn];
                let wait = (wait > 0).then(|| Ttl::from_millis(wait));
                let cmd = if n == "s" {
                    Command::Acquire {
                        name: Resource(n),
                        owner: Owner(owner),
                        shape: Shape::Semaphore { permits: PERMITS },
                        ttl: Ttl::from_millis(ttl),
                        wait,
                        token: None,
                    }
                } else {
                    Command::Lock {
                        name: Resource(n),
                        owner: Owner(owner),
                        ttl: Ttl::from_millis(ttl),
                        wait,
                        token: None,
                    }
                };
                let c = self.conns[conn];
                let has = self.sessions.contains_key(&c);
                let (status, token, queued) = self.call(conn, &cmd, bind(session, delay));
                self.touch(conn);
                let bound = (session && has).then_some((c, delay));
                if session && !has {
                    assert_eq!(status, Status::BadPayload, "Session without a session");
                    return;
                }
                match (status, token, queued) {
                    (Status::Locked, Some(t), None) => self.told(n, owner, t, ttl, bound, false),
                    (Status::Locked, None, Some(w)) => {
                        self.waiters.insert(
                            w,
                            Waiter {
                                name: n,
                                owner,
                                ttl,
                                bound,
                            },
                        );
                    }
                    (Status::NotOwner, _, _) => {}
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            Op::Unlock { conn, name } => {
                let n = NAMES[name];
                let owner = OWNERS[conn];
                let cmd = Command::Unlock {
                    name: Resource(n),
                    owner: Owner(owner),
                    token: None,
                };
                let (status, _, _) = self.call(conn, &cmd, None);
                self.touch(conn);
                let now = self.now;
                let mine: Vec<u64> = self
                    .grants
                    .iter()
                    .filter(|(_, g)| g.name == n && g.owner == owner && g.until > now)
                    .map(|(t, _)| *t)
                    .collect();
                let open: Vec<u64> = mine
                    .iter()
                    .copied()
                    .filter(|t| !self.grants[t].closed)
                    .collect();
                if open.is_empty() {
                    // Nothing of the caller's that it may release: a closed
                    // grant stays closed.
                    for t in &mine {
                        assert!(self.grants[t].closed);
                    }
                    assert!(matches!(status, Status::NotOwner | Status::Unlocked));
                } else {
                    assert_eq!(status, Status::Unlocked);
                    for t in open {
                        self.grants.get_mut(&t).unwrap().until = now;
                    }
                }
            }
            Op::Touch { conn } => {
                let cmd = Command::TestLock {
                    name: Resource("x"),
                    owner: Owner(OWNERS[conn]),
                };
                self.call(conn, &cmd, None);
                self.touch(conn);
            }
            Op::Close { conn } => {
                let c = self.conns[conn];
                let mut evs = Vec::new();
                let had = self.engine.end_session(
                    Instant::from_millis(self.now),
                    ConnId(c),
                    &mut |e: Event<'_>| {
                        evs.push((
                            e.waiter.get(),
                            e.response.status,
                            e.response.token.map(|t| t.0),
                        ));
                    },
                );
                assert_eq!(had, self.sessions.contains_key(&c));
                if had {
                    self.end(c);
                }
                self.events(evs);
                // Its waiters leave their queues (the host cancels them).
                let gone: Vec<u64> = self
                    .waiters
                    .iter()
                    .filter(|(_, w)| w.bound.is_some_and(|(bc, _)| bc == c))
                    .map(|(w, _)| *w)
                    .collect();
                assert!(
                    gone.is_empty(),
                    "a waiter of a closed session still queued: {gone:?}"
                );
                self.conns[conn] = self.next_conn;
                self.next_conn += 1;
            }
            Op::Wait { ms } => {
                self.now += ms;
                self.expire_sessions_at_advance();
            }
            Op::Restore => {
                let bytes = self.engine.snapshot_to_vec();
                let mut fresh = Engine::new(Config::default());
                fresh
                    .restore(Instant::from_millis(self.now), &bytes)
                    .unwrap();
                assert_eq!(
                    fresh.memory_used(),
                    self.engine.memory_used(),
                    "restore charges alike"
                );
                assert_eq!(fresh.session_count(), self.engine.session_count());
                self.engine = fresh;
            }
        }
        let evs = core::mem::take(&mut self.pending_events);
        self.events(evs);
        self.check();
    }

    /// Time passes to `now` in the engine too.
    fn expire_sessions_at_advance(&mut self) {
        self.expire_sessions();
        let mut evs = Vec::new();
        self.engine
            .advance(Instant::from_millis(self.now), &mut |e: Event<'_>| {
                evs.push((
                    e.waiter.get(),
                    e.response.status,
                    e.response.token.map(|t| t.0),
                ));
            });
        self.events(evs);
    }

    fn check(&self) {
        assert_eq!(
            self.engine.session_count(),
            self.sessions.len(),
            "sessions at {}",
            self.now
        );
        let now = self.now;
        for (t, g) in &self.grants {
            let token = Token(*t);
            let engine_live = if g.name == "s" {
                self.engine.holds(g.name).any(|h| h.token == token)
            } else {
                self.engine
                    .lock_info(g.name)
                    .is_some_and(|l| l.token == token)
            };
            // The engine holds exactly what the model believes live.
            assert_eq!(engine_live, g.until > now, "grant {t} {g:?} at {now}");
            assert_eq!(
                self.engine.is_closed(token),
                g.closed && g.until > now,
                "closed {t} at {now}"
            );
        }
        for c in self.sessions.keys() {
            for (_, t, _) in self.engine.session_grants(ConnId(*c)) {
                let g = &self.grants[&t.0];
                assert_eq!(
                    g.bound.map(|b| b.0),
                    Some(*c),
                    "grant {} bound elsewhere",
                    t.0
                );
            }
        }
    }

    fn finish(&mut self) {
        for conn in 0..3 {
            self.step(&Op::Close { conn });
        }
        // Twice: a waiter handed a grant by the first wait holds it a TTL
        // from then.
        self.step(&Op::Wait { ms: 200 });
        self.step(&Op::Wait { ms: 200 });
        assert!(
            self.waiters.is_empty(),
            "unanswered waiters {:?}",
            self.waiters
        );
        assert_eq!(self.engine.session_count(), 0);
        assert_eq!(self.engine.lock_count(), 0);
        assert_eq!(self.engine.hold_count(), 0);
        assert_eq!(self.engine.memory_used(), 0, "bytes left charged");
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Every invariant holds after every step, and nothing is left at the end.
    #[test]
    fn sessions_keep_their_invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
        }
        run.finish();
    }
}
