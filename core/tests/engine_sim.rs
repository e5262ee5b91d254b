//! A deterministic simulation of many clients contending for one lock
//! with `Wait`, on a simulated clock.
//!
//! A seeded generator makes the clients: each arrives at some instant and
//! asks for the lock with a TTL and a wait; once granted it works for a
//! while and unlocks with its token, or crashes and lets the lock expire.
//! Some clients' connections close at some point (the host cancels their
//! wait, or reports their grant orphaned if they already hold it, which
//! frees it only if it went to a waiter); some
//! waits are too short and run out.
//!
//! The host loop is the one a server runs: it sleeps until the earlier of
//! the next client action and the engine's next deadline, calls
//! `advance` at deadlines (first, when both fall on one instant), and
//! delivers events to the clients they name.
//!
//! Checked: grants follow arrival order exactly (every waiter ahead of
//! one being granted was served, cancelled or timed out by then); a
//! newcomer is never granted over queued waiters; cancelled waiters are
//! skipped; waits run out at exactly their deadline; the holders'
//! [grant, release or expiry) intervals never overlap; tokens strictly
//! increase; every client ends served, timed out or cancelled, and the
//! engine ends empty. The same input gives the same transcript twice, on
//! both storages, and with the engine snapshotted and restored into a
//! fresh one again and again along the way.
// Test code: a panic is a failure.
#![allow(clippy::unwrap_used)]

extern crate alloc;

use alloc::collections::BTreeSet;
use core::fmt::Write as _;

use dlm_core::engine::{Config, Engine, Event, Fixed, Heap, Outcome, Principal, Storage, WaiterId};
use dlm_core::protocol::{Command, Owner, Resource, Status, Token};
use dlm_core::time::{Instant, Ttl};

const LOCK: &str = "the-lock";

/// A small deterministic generator (64-bit LCG, high bits).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// One client's script.
#[derive(Clone, Debug)]
struct Script {
    arrive: u64,
    ttl: u64,
    wait: u64,
    /// How long it works before unlocking; `None`: it crashes and the lock
    /// expires.
    work: Option<u64>,
    /// When its connection closes, if it does.
    close: Option<u64>,
}

fn scripts(seed: u64, n: usize) -> Vec<Script> {
    let mut rng = Rng(seed);
    let span = n as u64 * 8;
    (0..n)
        .map(|_| {
            let arrive = rng.range(0, span);
            let ttl = rng.range(5, 60);
            let wait = match rng.next() % 20 {
                0..=11 => 5000,
                12..=16 => rng.range(10, 150),
                _ => rng.range(1, 10),
            };
            let work = (!rng.chance(25)).then(|| rng.range(1, ttl));
            let close = rng.chance(20).then(|| arrive + rng.range(0, 150));
            Script {
                arrive,
                ttl,
                wait,
                work,
                close,
            }
        })
        .collect()
}

/// Where a client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotYet,
    Waiting(WaiterId),
    Holding { token: u64 },
    Served,
    TimedOut,
    Cancelled,
}

/// What a client does next (the order breaks ties at one instant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Arrive,
    Unlock,
    Close,
}

/// A grant, as the clients saw it.
#[derive(Clone, Copy, Debug)]
struct Grant {
    client: usize,
    token: u64,
    from: u64,
    to: u64,
}

struct Sim<S: Storage> {
    e: Engine<S>,
    now: u64,
    scripts: Vec<Script>,
    state: Vec<State>,
    agenda: BTreeSet<(u64, Action, usize)>,
    /// Queued clients, in arrival order.
    queue: Vec<usize>,
    /// When each client's wait ended (served, timed out or cancelled).
    resolved: Vec<Option<u64>>,
    grants: Vec<Grant>,
    log: String,
    /// Snapshot and restore the engine every this many host steps.
    restore_every: Option<usize>,
    steps: usize,
}

impl<S: Storage> Sim<S> {
    fn new(scripts: Vec<Script>, restore_every: Option<usize>) -> Self {
        let n = scripts.len();
        let agenda = scripts
            .iter()
            .enumerate()
            .map(|(i, s)| (s.arrive, Action::Arrive, i))
            .chain(
                scripts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.close.map(|c| (c, Action::Close, i))),
            )
            .collect();
        Self {
            e: Engine::with_storage(Config::default()),
            now: 0,
            scripts,
            state: vec![State::NotYet; n],
            agenda,
            queue: Vec::new(),
            resolved: vec![None; n],
            grants: Vec::new(),
            log: String::new(),
            restore_every,
            steps: 0,
        }
    }

    fn deliver(&mut self, events: Vec<(WaiterId, u64, Status, Option<u64>)>) {
        // Events of one instant go to different clients; their order is
        // the timer wheel's and means nothing (a restored engine may give
        // same-instant timeouts in another). The transcript sorts them;
        // the checks below see them as they come.
        let mut lines: Vec<String> = events
            .iter()
            .map(|(_, tag, status, token)| {
                format!("{} c{tag} event {status} {token:?}\n", self.now)
            })
            .collect();
        lines.sort();
        self.log.extend(lines);
        for (w, tag, status, token) in events {
            let c = usize::try_from(tag).unwrap();
            assert_eq!(
                self.state[c],
                State::Waiting(w),
                "event for client {c}, which is not waiting"
            );
            match status {
                Status::Locked => self.granted(c, token.unwrap()),
                Status::NotOwner => {
                    // A wait runs out exactly at its deadline.
                    let s = &self.scripts[c];
                    assert_eq!(self.now, s.arrive + s.wait, "client {c} timed out late");
                    self.state[c] = State::TimedOut;
                    self.resolved[c] = Some(self.now);
                }
                other => panic!("unexpected event {other} for client {c}"),
            }
        }
    }

    fn granted(&mut self, c: usize, token: u64) {
        let s = &self.scripts[c];
        self.grants.push(Grant {
            client: c,
            token,
            from: self.now,
            to: self.now + s.ttl,
        });
        if let Some(work) = s.work {
            self.agenda.insert((self.now + work, Action::Unlock, c));
        }
        if matches!(self.state[c], State::Waiting(_)) {
            self.resolved[c] = Some(self.now);
        }
        self.state[c] = State::Holding { token };
    }

    /// The client's grant ended now (unlock or revoke).
    fn released(&mut self, c: usize) {
        let g = self
            .grants
            .iter_mut()
            .rev()
            .find(|g| g.client == c)
            .unwrap();
        assert!(g.to >= self.now);
        g.to = self.now;
    }

    fn maybe_restore(&mut self) {
        self.steps += 1;
        if self.restore_every.is_some_and(|k| self.steps % k == 0) {
            // A snapshot is taken at the engine's own instant (the last it
            // saw), which may lag the host's clock: bring it up to date.
            // Nothing is due yet (deadlines go first).
            let mut events = 0;
            self.e
                .advance(Instant::from_millis(self.now), &mut |_| events += 1);
            assert_eq!(events, 0);
            let bytes = self.e.snapshot_to_vec();
            let mut fresh = Engine::with_storage(Config::default());
            fresh
                .restore(Instant::from_millis(self.now), &bytes)
                .unwrap();
            assert_eq!(fresh.snapshot_to_vec(), bytes);
            self.e = fresh;
        }
    }

    fn run(&mut self) {
        loop {
            self.maybe_restore();
            let action = self.agenda.first().copied();
            let deadline = self.e.next_deadline().map(Instant::as_millis);
            let mut events = Vec::new();
            let mut sink = |e: Event<'_>| {
                assert_eq!(e.name, LOCK);
                events.push((
                    e.waiter,
                    e.tag,
                    e.response.status,
                    e.response.token.map(|t| t.0),
                ));
            };
            match (action, deadline) {
                (None, None) => break,
                // Deadlines first when both fall on one instant.
                (a, Some(d)) if a.is_none_or(|a| d <= a.0) => {
                    assert!(d >= self.now, "deadline {d} in the past of {}", self.now);
                    self.now = d;
                    self.e.advance(Instant::from_millis(d), &mut sink);
                    if events.iter().any(|e| e.2 == Status::Locked) {
                        writeln!(self.log, "{d} expired").unwrap();
                    }
                    self.deliver(events);
                }
                (Some(a), _) => {
                    self.agenda.remove(&a);
                    self.now = a.0;
                    self.act(a.1, a.2);
                }
                (None, Some(_)) => unreachable!(),
            }
            assert!(self.steps < 100_000, "the simulation does not end");
        }
    }

    fn act(&mut self, action: Action, c: usize) {
        let now = Instant::from_millis(self.now);
        let mut events = Vec::new();
        let mut sink = |e: Event<'_>| {
            events.push((
                e.waiter,
                e.tag,
                e.response.status,
                e.response.token.map(|t| t.0),
            ));
        };
        let owner = format!("client-{c}");
        match action {
            Action::Arrive => {
                let s = &self.scripts[c];
                let lock = Command::Lock {
                    name: Resource(LOCK),
                    owner: Owner(&owner),
                    ttl: Ttl::from_millis(s.ttl),
                    wait: Some(Ttl::from_millis(s.wait)),
                    token: None,
                };
                let tag = c as u64;
                let out = match self
                    .e
                    .handle(now, &lock, Principal::Anonymous, tag, &mut sink)
                {
                    Outcome::Reply(r) => Err((r.status, r.token.map(|t| t.0), r.expire)),
                    Outcome::Queued(w) => Ok(w),
                };
                // Events from time moving on come before the newcomer.
                self.deliver(events);
                match out {
                    Ok(w) => {
                        writeln!(self.log, "{} c{c} queued {}", self.now, w.get()).unwrap();
                        self.state[c] = State::Waiting(w);
                        self.queue.push(c);
                    }
                    Err((Status::Locked, Some(token), expire)) => {
                        writeln!(self.log, "{} c{c} locked {token}", self.now).unwrap();
                        assert_eq!(expire, Some(Ttl::from_millis(self.scripts[c].ttl)));
                        // Never over the heads of queued waiters.
                        let ahead: Vec<_> = self
                            .queue
                            .iter()
                            .filter(|&&q| self.resolved[q].is_none())
                            .collect();
                        assert!(ahead.is_empty(), "c{c} granted over {ahead:?}");
                        self.granted(c, token);
                    }
                    Err(other) => panic!("client {c} answered {other:?}"),
                }
            }
            Action::Unlock => {
                let State::Holding { token } = self.state[c] else {
                    // Its connection closed and the grant was revoked.
                    return;
                };
                let unlock = Command::Unlock {
                    name: Resource(LOCK),
                    owner: Owner(&owner),
                    token: Some(Token(token)),
                };
                let Outcome::Reply(r) =
                    self.e
                        .handle(now, &unlock, Principal::Anonymous, 0, &mut sink)
                else {
                    unreachable!()
                };
                assert_eq!((r.status, r.id), (Status::Unlocked, Some(owner.as_str())));
                writeln!(self.log, "{} c{c} unlocked", self.now).unwrap();
                self.released(c);
                self.state[c] = State::Served;
                self.deliver(events);
            }
            Action::Close => match self.state[c] {
                State::Waiting(w) => {
                    assert!(self.e.cancel(w));
                    assert!(!self.e.cancel(w));
                    writeln!(self.log, "{} c{c} closed while waiting", self.now).unwrap();
                    self.state[c] = State::Cancelled;
                    self.resolved[c] = Some(self.now);
                }
                State::Holding { token } => {
                    // The grant was delivered: closing does not end it (a
                    // lock outlives its connection until its TTL), and
                    // taking it back as undeliverable frees nothing once a
                    // request was answered `Locked` directly.
                    let freed = self.e.orphaned(now, LOCK, Token(token), &mut sink);
                    writeln!(self.log, "{} c{c} closed while holding: {freed}", self.now).unwrap();
                    if freed {
                        self.released(c);
                    }
                    self.state[c] = State::Served;
                    self.deliver(events);
                }
                State::Served | State::TimedOut => {}
                State::NotYet | State::Cancelled => unreachable!(),
            },
        }
    }

    /// Everything the simulation promises, checked after the run.
    fn check(&self) {
        // Every client ended served, timed out or cancelled.
        for (c, s) in self.state.iter().enumerate() {
            assert!(
                matches!(
                    s,
                    State::Served | State::TimedOut | State::Cancelled | State::Holding { .. }
                ),
                "client {c} ended {s:?}"
            );
        }
        assert_eq!(
            (self.e.lock_count(), self.e.waiter_count()),
            (0, 0),
            "the engine ends empty"
        );
        assert_eq!(self.e.memory_used(), 0);
        // Holders never overlap; tokens strictly increase.
        for pair in self.grants.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                a.to <= b.from,
                "c{} held until {} but c{} was granted at {}",
                a.client,
                a.to,
                b.client,
                b.from
            );
            assert!(a.token < b.token, "tokens {} then {}", a.token, b.token);
        }
        // Grants to waiters follow arrival order: when one is granted,
        // everyone ahead of it has been served, cancelled or timed out.
        let granted_at = |c: usize| self.grants.iter().find(|g| g.client == c).map(|g| g.from);
        for (i, &c) in self.queue.iter().enumerate() {
            let Some(t) = granted_at(c) else {
                continue;
            };
            for &ahead in &self.queue[..i] {
                let done = self.resolved[ahead].unwrap();
                assert!(
                    done <= t,
                    "c{c} granted at {t} before c{ahead} was done at {done}"
                );
                if let Some(ta) = granted_at(ahead) {
                    assert!(ta <= t);
                    let ia = self.grants.iter().position(|g| g.client == ahead);
                    let ic = self.grants.iter().position(|g| g.client == c);
                    assert!(ia < ic, "c{c} granted before c{ahead}, who came first");
                }
            }
        }
        // Cancelled and timed-out clients were never granted.
        for (c, s) in self.state.iter().enumerate() {
            if matches!(s, State::Cancelled | State::TimedOut) {
                assert!(granted_at(c).is_none(), "c{c} was {s:?} but granted");
            }
        }
    }
}

/// Runs a scenario and returns its transcript.
fn simulate<S: Storage>(seed: u64, n: usize, restore_every: Option<usize>) -> String {
    let mut sim = Sim::<S>::new(scripts(seed, n), restore_every);
    sim.run();
    sim.check();
    let served = sim.state.iter().filter(|s| **s == State::Served).count();
    writeln!(sim.log, "served {served} of {n}").unwrap();
    sim.log
}

type Small = Fixed<32, 64, 16>;

#[test]
fn clients_contend_in_order() {
    let mut kinds = [0usize; 5];
    for seed in 0..200 {
        let log = simulate::<Heap>(seed, 16, None);
        kinds[0] += log.matches("event NotOwner").count();
        kinds[1] += log.matches("closed while waiting").count();
        kinds[2] += log.matches("closed while holding: true").count();
        kinds[3] += log.matches("expired").count();
        kinds[4] += log.matches("event Locked").count();
    }
    // The scenarios exercise every path: waits running out, closing
    // while waiting and while holding, hand-overs on expiry, grants.
    assert!(kinds.iter().all(|&k| k > 40), "{kinds:?}");
}

#[test]
fn same_input_same_transcript() {
    for seed in 0..40 {
        let a = simulate::<Heap>(seed, 16, None);
        assert_eq!(a, simulate::<Heap>(seed, 16, None), "seed {seed}");
        assert_eq!(a, simulate::<Small>(seed, 16, None), "seed {seed}, fixed");
    }
}

#[test]
fn restoring_along_the_way_changes_nothing() {
    for seed in 0..40 {
        let a = simulate::<Heap>(seed, 16, None);
        for every in [1, 3, 7] {
            assert_eq!(
                a,
                simulate::<Heap>(seed, 16, Some(every)),
                "seed {seed}, every {every}"
            );
        }
        assert_eq!(
            a,
            simulate::<Small>(seed, 16, Some(2)),
            "seed {seed}, fixed"
        );
    }
}

#[test]
fn a_crowd() {
    // Many clients arriving over the same 200 ms: long queues.
    for seed in 1000..1010 {
        let log = simulate::<Heap>(seed, 120, None);
        assert!(
            log.contains("queued 60"),
            "seed {seed}: the queue never got long"
        );
    }
}
