//! The watch feed against the engine's own state, driven by random
//! command sequences and clock moves.
//!
//! A watcher that applies every change it is told (grants, releases and
//! expiries of locks and holds; puts, erases and expiries of values) must
//! end up with exactly the engine's state after every step: every lock
//! with its token and owner, every hold of every semaphore and read/write
//! lock, every value with its owner, content and revision. So no change
//! is missed, none is told twice, none out of order. Revisions go up by
//! one per change, with no gap, and the last is the engine's
//! [`Engine::revision`]; a watcher of one prefix sees the same for the
//! names under it.
//!
//! A twin engine with the feed off gets the same commands: it must answer
//! alike and reach the same revision (the feed only observes), and a
//! snapshot carries the revision into a restored engine.
// Test code: a panic is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::collections::BTreeMap;

use dlm_core::engine::{Change, Config, Engine, Outcome, Principal, Subject, What};
use dlm_core::protocol::{Command, Owner, Resource, Shape, Status, Token};
use dlm_core::time::{Instant, Ttl};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["a/x", "a/y", "b/x", "ab"];
const OWNERS: [&str; 2] = ["o0", "o1"];

#[derive(Clone, Debug)]
enum Op {
    Lock {
        n: usize,
        o: usize,
        ttl: u64,
        wait: u64,
    },
    Acquire {
        n: usize,
        o: usize,
        ttl: u64,
        wait: u64,
        shape: u8,
    },
    Unlock {
        n: usize,
        o: usize,
    },
    Put {
        n: usize,
        o: usize,
        ttl: u64,
        v: u8,
    },
    Erase {
        n: usize,
        o: usize,
    },
    Cancel {
        back: usize,
    },
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    let o = 0..OWNERS.len();
    prop_oneof![
        3 => (n.clone(), o.clone(), 1..40u64, 0..30u64).prop_map(|(n, o, ttl, wait)| Op::Lock { n, o, ttl, wait }),
        3 => (n.clone(), o.clone(), 1..40u64, 0..30u64, 0..3u8)
            .prop_map(|(n, o, ttl, wait, shape)| Op::Acquire { n, o, ttl, wait, shape }),
        3 => (n.clone(), o.clone()).prop_map(|(n, o)| Op::Unlock { n, o }),
        3 => (n.clone(), o.clone(), 1..40u64, any::<u8>()).prop_map(|(n, o, ttl, v)| Op::Put { n, o, ttl, v }),
        2 => (n, o).prop_map(|(n, o)| Op::Erase { n, o }),
        1 => (1..4usize).prop_map(|back| Op::Cancel { back }),
        1 => Just(Op::Snapshot),
    ]
}

/// What a watcher knows from the changes it applied.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Exclusive locks: name to (token, owner).
    locks: BTreeMap<String, (u64, String)>,
    /// Holds: (name, token) to (owner, write).
    holds: BTreeMap<(String, u64), String>,
    /// Values: name to (owner, value, revision).
    data: BTreeMap<String, (String, String, u64)>,
}

impl Seen {
    fn apply(&mut self, c: &Change) {
        match (c.subject, c.what) {
            (Subject::Lock, What::Granted) => {
                let old = self
                    .locks
                    .insert(c.name.clone(), (c.token.unwrap(), c.owner.clone()));
                assert!(old.is_none(), "granted over a live lock: {c:?}");
            }
            (Subject::Lock, What::Released | What::Expired) => {
                let old = self
                    .locks
                    .remove(&c.name)
                    .expect("released what was not held");
                assert_eq!(Some(old.0), c.token, "{c:?}");
            }
            (Subject::Semaphore(_) | Subject::ReadWrite { .. }, What::Granted) => {
                let old = self
                    .holds
                    .insert((c.name.clone(), c.token.unwrap()), c.owner.clone());
                assert!(old.is_none(), "{c:?}");
            }
            (Subject::Semaphore(_) | Subject::ReadWrite { .. }, What::Released | What::Expired) => {
                assert!(
                    self.holds
                        .remove(&(c.name.clone(), c.token.unwrap()))
                        .is_some(),
                    "released a hold that was not held: {c:?}"
                );
            }
            (Subject::Data, What::Put) => {
                let rev = c.data_revision.unwrap();
                let old = self.data.insert(
                    c.name.clone(),
                    (c.owner.clone(), c.value.clone().unwrap(), rev),
                );
                assert_eq!(old.map_or(0, |o| o.2) + 1, rev, "{c:?}");
            }
            (Subject::Data, What::Erased | What::Expired) => {
                assert!(self.data.remove(&c.name).is_some(), "{c:?}");
            }
            _ => panic!("no such change: {c:?}"),
        }
    }

    /// The engine's state, read through its public API.
    fn of(engine: &mut Engine, now: Instant) -> Self {
        let mut s = Self::default();
        for l in engine.locks() {
            s.locks
                .insert(l.name.to_owned(), (l.token.0, l.owner.to_owned()));
        }
        for name in NAMES {
            for h in engine.holds(name) {
                s.holds
                    .insert((name.to_owned(), h.token.0), h.owner.to_owned());
            }
        }
        for name in NAMES {
            for owner in OWNERS {
                let get = Command::Get {
                    name: Resource(name),
                    owner: Owner(owner),
                };
                if let Outcome::Reply(r) =
                    engine.handle(now, &get, Principal::Anonymous, 0, &mut |_| {})
                    && r.status == Status::Done
                {
                    s.data.insert(
                        name.to_owned(),
                        (
                            owner.to_owned(),
                            r.data.unwrap().to_owned(),
                            r.revision.unwrap().0,
                        ),
                    );
                }
            }
        }
        s
    }

    fn under(&self, prefix: &str) -> Self {
        Self {
            locks: self
                .locks
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            holds: self
                .holds
                .iter()
                .filter(|(k, _)| k.0.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            data: self
                .data
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

fn command(op: &Op, values: &mut Vec<String>) -> Option<Command<'static>> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    Some(match *op {
        Op::Lock { n, o, ttl, wait } => Command::Lock {
            name: Resource(NAMES[n]),
            owner: Owner(OWNERS[o]),
            ttl: Ttl::from_millis(ttl),
            wait: (wait > 0).then(|| Ttl::from_millis(wait)),
            token: None,
        },
        Op::Acquire {
            n,
            o,
            ttl,
            wait,
            shape,
        } => Command::Acquire {
            name: Resource(NAMES[n]),
            owner: Owner(OWNERS[o]),
            shape: match shape {
                0 => Shape::Semaphore { permits: 2 },
                1 => Shape::Read,
                _ => Shape::Write,
            },
            ttl: Ttl::from_millis(ttl),
            wait: (wait > 0).then(|| Ttl::from_millis(wait)),
            token: None,
        },
        Op::Unlock { n, o } => Command::Unlock {
            name: Resource(NAMES[n]),
            owner: Owner(OWNERS[o]),
            token: None,
        },
        Op::Put { n, o, ttl, v } => {
            values.push(format!("v{v}"));
            Command::Put {
                name: Resource(NAMES[n]),
                owner: Owner(OWNERS[o]),
                ttl: Ttl::from_millis(ttl),
                data: leak(format!("v{v}")),
                revision: None,
                readers: dlm_core::protocol::Readers::Owner,
            }
        }
        Op::Erase { n, o } => Command::Erase {
            name: Resource(NAMES[n]),
            owner: Owner(OWNERS[o]),
        },
        Op::Cancel { .. } | Op::Snapshot => return None,
    })
}

fn run(steps: Vec<(u64, Op)>) {
    let mut engine = Engine::new(Config::default());
    let mut twin = Engine::new(Config::default());
    engine.set_feed(true);
    let mut seen = Seen::default();
    let mut seen_a = Seen::default();
    let mut last = engine.revision();
    let mut last_a = None::<u64>;
    let mut queued = Vec::new();
    let mut values = Vec::new();
    let mut t = 0;
    for (dt, op) in steps {
        t += dt;
        let now = Instant::from_millis(t);
        match &op {
            Op::Cancel { back } => {
                if let Some(&w) = queued.iter().rev().nth(*back - 1) {
                    assert_eq!(engine.cancel(w), twin.cancel(w));
                }
                engine.advance(now, &mut |_| {});
                twin.advance(now, &mut |_| {});
            }
            Op::Snapshot => {
                let bytes = engine.snapshot_to_vec();
                let mut restored = Engine::new(Config::default());
                restored.restore(now, &bytes).unwrap();
                assert_eq!(restored.revision(), engine.revision());
                engine.advance(now, &mut |_| {});
                twin.advance(now, &mut |_| {});
            }
            _ => {
                let cmd = command(&op, &mut values).unwrap();
                let a = match engine.handle(now, &cmd, Principal::Anonymous, 0, &mut |_| {}) {
                    Outcome::Reply(r) => Ok((r.status, r.token, r.revision)),
                    Outcome::Queued(w) => {
                        queued.push(w);
                        Err(w)
                    }
                };
                let b = match twin.handle(now, &cmd, Principal::Anonymous, 0, &mut |_| {}) {
                    Outcome::Reply(r) => Ok((r.status, r.token, r.revision)),
                    Outcome::Queued(w) => Err(w),
                };
                assert_eq!(a, b, "the feed changed an answer");
            }
        }
        engine.drain_changes(|c| {
            assert_eq!(c.revision, last + 1, "a gap or a repeat: {c:?}");
            last = c.revision;
            seen.apply(&c);
            if c.name.starts_with("a/") {
                assert!(last_a.is_none_or(|r| r < c.revision));
                last_a = Some(c.revision);
                seen_a.apply(&c);
            }
        });
        assert_eq!(last, engine.revision());
        assert_eq!(twin.revision(), engine.revision());
        let truth = Seen::of(&mut engine, now);
        assert_eq!(seen, truth, "the watcher's picture differs from the engine");
        assert_eq!(seen_a, truth.under("a/"));
        // Reading the state changed nothing.
        engine.drain_changes(|c| panic!("a read made a change: {c:?}"));
    }
    twin.drain_changes(|c| panic!("the feed was off: {c:?}"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn watchers_see_every_change_in_order(steps in prop::collection::vec((0..25u64, op()), 1..120)) {
        run(steps);
    }
}

#[test]
fn feed_off_costs_no_copies_and_keeps_numbering() {
    let mut e = Engine::new(Config {
        first_token: 1000,
        ..Config::default()
    });
    assert_eq!(e.revision(), 1000);
    let lock = Command::Lock {
        name: Resource("n"),
        owner: Owner("o"),
        ttl: Ttl::from_millis(5),
        wait: None,
        token: None,
    };
    e.handle(
        Instant::from_millis(0),
        &lock,
        Principal::Anonymous,
        0,
        &mut |_| {},
    );
    e.drain_changes(|c| panic!("{c:?}"));
    assert_eq!(e.revision(), 1001);
    e.set_feed(true);
    e.advance(Instant::from_millis(10), &mut |_| {});
    let mut got = Vec::new();
    e.drain_changes(|c| got.push(c));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].what, got[0].revision, got[0].token),
        (What::Expired, 1002, Some(1001))
    );
    let _ = Token(0);
}

fn what_of(i: u8) -> What {
    [
        What::Granted,
        What::Released,
        What::Expired,
        What::Put,
        What::Erased,
    ][usize::from(i % 5)]
}

fn subject_of(i: u8, n: u32) -> Subject {
    match i % 4 {
        0 => Subject::Lock,
        1 => Subject::Semaphore(n),
        2 => Subject::ReadWrite { write: n % 2 == 1 },
        _ => Subject::Data,
    }
}

proptest! {
    /// A change's record (what the engine copies out and a host keeps in
    /// its history) gives back exactly that change, one after another in
    /// a buffer of many; a cut buffer ends the changes early and never
    /// panics.
    #[test]
    fn change_records_round_trip(
        changes in proptest::collection::vec(
            (
                any::<u64>(), any::<u8>(), any::<u8>(), any::<u32>(),
                "[a-z/é]{0,12}", "[a-zA-Z0-9]{0,12}", any::<bool>(),
                proptest::option::of(any::<u64>()), proptest::option::of(".{0,40}"),
                proptest::option::of(any::<u64>()), 0u8..2,
            ),
            1..8,
        ),
        cut in any::<prop::sample::Index>(),
    ) {
        use dlm_core::engine::{ChangeRecords, ChangeRef, encode_change};
        use dlm_core::protocol::Readers;
        let mut e = Engine::new(Config::default());
        let id = e.register_identity("alice", 1024).expect("room");
        let owned: Vec<Change> = changes
            .iter()
            .map(|(rev, w, s, n, name, owner, ident, token, value, data_rev, readers)| {
                ChangeRef {
                    revision: *rev,
                    what: what_of(*w),
                    subject: subject_of(*s, *n),
                    name,
                    owner,
                    identity: ident.then_some(id),
                    token: *token,
                    value: value.as_deref(),
                    data_revision: *data_rev,
                    readers: if *readers == 1 { Readers::Any } else { Readers::Owner },
                }
                .to_owned()
            })
            .collect();
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for c in &owned {
            let len = encode_change(&c.as_ref(), &mut buf);
            ends.push(buf.len());
            prop_assert_eq!(len, buf.len() - ends.len().checked_sub(2).map_or(0, |i| ends[i]));
        }
        let back: Vec<Change> = ChangeRecords::new(&buf).map(|(c, _)| c.to_owned()).collect();
        prop_assert_eq!(&back, &owned);
        // A buffer cut anywhere: the whole records before the cut, then
        // nothing.
        let at = cut.index(buf.len() + 1);
        let whole = ends.iter().filter(|&&e| e <= at).count();
        let partial: Vec<Change> = ChangeRecords::new(&buf[..at]).map(|(c, _)| c.to_owned()).collect();
        prop_assert_eq!(&partial[..], &owned[..whole]);
    }
}
