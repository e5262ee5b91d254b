//! Shared values (PROTOCOL.md section 8, "Shared values") against a model,
//! driven by random command sequences, callers and clock moves.
//!
//! The model is written from the protocol's text, apart from the engine:
//! a value is read by its owner (the same `ID` and identity) and by
//! whoever its last `Put` named (`Any`: everybody; names: requests
//! authenticated as one of those identities, whatever their `ID`), and
//! by nobody else, who is answered `NotOwner` as before shared values;
//! only its owner may replace or erase it. After every step:
//!
//! - every answer is the model's (a reader gets the value and its owner's
//!   `ID`; a non-reader never gets the value);
//! - every change of a value the watch feed reports shows its value and
//!   owner (by [`may_read`], the rule the server applies per watcher) to
//!   exactly the callers the model admits at that change;
//! - a snapshot taken and restored (version 9) keeps every value's
//!   readers.
// Test code: a panic is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::collections::BTreeMap;

use dlm_core::engine::{Config, Engine, IdentityId, Outcome, Principal, Subject, What, may_read};
use dlm_core::protocol::{Command, Owner, ReaderNames, Readers, Resource, Status};
use dlm_core::stats::Stat;
use dlm_core::time::{Instant, Ttl};
use proptest::prelude::*;

const NAMES: [&str; 3] = ["k0", "k1", "k2"];
const IDS: [&str; 2] = ["o0", "o1"];
/// Registered identities; "dave" is named by some readers but never
/// registered (a value may name an identity the server does not know).
const IDENTITIES: [&str; 3] = ["alice", "bob", "carol"];
/// Readers a `Put` may name.
const READERS: [&str; 5] = ["", "*", "alice", "bob,carol", "dave,alice,alice"];

/// A caller: an `ID` and an identity (`None`: anonymous).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Caller {
    id: usize,
    identity: Option<usize>,
}

impl Caller {
    fn all() -> Vec<Self> {
        let mut v = Vec::new();
        for id in 0..IDS.len() {
            v.push(Self { id, identity: None });
            for i in 0..IDENTITIES.len() {
                v.push(Self {
                    id,
                    identity: Some(i),
                });
            }
        }
        v
    }

    fn principal(self, ids: &[IdentityId]) -> Principal {
        self.identity
            .map_or(Principal::Anonymous, |i| Principal::Identity(ids[i]))
    }

    fn name(self) -> Option<&'static str> {
        self.identity.map(|i| IDENTITIES[i])
    }
}

fn caller() -> impl Strategy<Value = Caller> {
    (0..IDS.len(), prop::option::of(0..IDENTITIES.len()))
        .prop_map(|(id, identity)| Caller { id, identity })
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        n: usize,
        who: Caller,
        readers: usize,
        ttl: u64,
        v: u8,
    },
    Get {
        n: usize,
        who: Caller,
    },
    Erase {
        n: usize,
        who: Caller,
    },
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    prop_oneof![
        4 => (n.clone(), caller(), 0..READERS.len(), 1..60u64, any::<u8>())
            .prop_map(|(n, who, readers, ttl, v)| Op::Put { n, who, readers, ttl, v }),
        5 => (n.clone(), caller()).prop_map(|(n, who)| Op::Get { n, who }),
        2 => (n, caller()).prop_map(|(n, who)| Op::Erase { n, who }),
        1 => Just(Op::Snapshot),
    ]
}

fn readers(i: usize) -> Readers<'static> {
    match READERS[i] {
        "" => Readers::Owner,
        "*" => Readers::Any,
        names => Readers::Named(ReaderNames::new(names).unwrap()),
    }
}

/// One value as the model keeps it.
#[derive(Clone, Debug)]
struct Entry {
    owner: Caller,
    readers: usize,
    value: String,
    until: u64,
}

impl Entry {
    /// The protocol's rule, written apart from the engine's.
    fn readable_by(&self, who: Caller) -> bool {
        if who == self.owner {
            return true;
        }
        match READERS[self.readers] {
            "" => false,
            "*" => true,
            names => who
                .name()
                .is_some_and(|me| names.split(',').any(|n| n == me)),
        }
    }
}

fn fresh(ids: &mut Vec<IdentityId>) -> Engine {
    let mut e = Engine::new(Config::default());
    ids.clear();
    for name in IDENTITIES {
        ids.push(e.register_identity(name, 16 * 1024).unwrap());
    }
    e.set_feed(true);
    e
}

fn run(steps: Vec<(u64, Op)>) {
    let mut ids = Vec::new();
    let mut engine = fresh(&mut ids);
    let mut model: BTreeMap<usize, Entry> = BTreeMap::new();
    let mut values: Vec<String> = Vec::new();
    let everyone = Caller::all();
    let mut t = 0;
    for (dt, op) in steps {
        t += dt;
        let now = Instant::from_millis(t);
        // Values live before the step (those that expire now included:
        // their expiry is one of the step's changes), then the live ones.
        let before = model.clone();
        model.retain(|_, e| e.until > t);
        match op {
            Op::Snapshot => {
                engine.advance(now, &mut |_| {});
                let bytes = engine.snapshot_to_vec();
                let mut restored = Engine::new(Config::default());
                restored.restore(now, &bytes).unwrap();
                restored.set_feed(true);
                // Identities keep their numbers in a snapshot.
                for (i, name) in IDENTITIES.iter().enumerate() {
                    assert_eq!(restored.identity(name), Some(ids[i]));
                }
                // Drain the old engine's changes (expiries up to now)
                // below, against the model as it was.
                engine.drain_changes(|c| check_change(&c, &before, &everyone, &ids));
                engine = restored;
                continue;
            }
            Op::Put {
                n,
                who,
                readers: r,
                ttl,
                v,
            } => {
                values.push(format!("v{v}"));
                let data: &'static str = Box::leak(values.last().unwrap().clone().into_boxed_str());
                let cmd = Command::Put {
                    name: Resource(NAMES[n]),
                    owner: Owner(IDS[who.id]),
                    ttl: Ttl::from_millis(ttl),
                    data,
                    revision: None,
                    readers: readers(r),
                };
                let status = reply(&mut engine, now, &cmd, who, &ids).0;
                match model.get(&n) {
                    Some(e) if e.owner != who => {
                        assert_eq!(status, Status::NotOwner, "a non-owner replaced a value");
                    }
                    _ => {
                        assert_eq!(status, Status::Done);
                        model.insert(
                            n,
                            Entry {
                                owner: who,
                                readers: r,
                                value: data.to_owned(),
                                until: t + ttl,
                            },
                        );
                    }
                }
            }
            Op::Get { n, who } => {
                let cmd = Command::Get {
                    name: Resource(NAMES[n]),
                    owner: Owner(IDS[who.id]),
                };
                let (status, data, id) = reply(&mut engine, now, &cmd, who, &ids);
                match model.get(&n) {
                    None => assert_eq!(status, Status::NotFound),
                    Some(e) if e.readable_by(who) => {
                        assert_eq!(status, Status::Done);
                        assert_eq!(data.as_deref(), Some(e.value.as_str()));
                        assert_eq!(id.as_deref(), Some(IDS[e.owner.id]));
                    }
                    Some(_) => {
                        assert_eq!(status, Status::NotOwner);
                        assert_eq!(data, None, "a value reached a non-reader");
                    }
                }
            }
            Op::Erase { n, who } => {
                let cmd = Command::Erase {
                    name: Resource(NAMES[n]),
                    owner: Owner(IDS[who.id]),
                };
                let status = reply(&mut engine, now, &cmd, who, &ids).0;
                match model.get(&n) {
                    None => assert_eq!(status, Status::NotFound),
                    Some(e) if e.owner == who => {
                        assert_eq!(status, Status::Done);
                        model.remove(&n);
                    }
                    Some(_) => assert_eq!(status, Status::NotOwner, "a reader erased a value"),
                }
            }
        }
        // Changes: expiries (judged against the model before the step)
        // and this step's put or erase (against the model after it, for a
        // put; before it, for an erase).
        let after = model.clone();
        engine.drain_changes(|c| {
            let m = if c.what == What::Put { &after } else { &before };
            check_change(&c, m, &everyone, &ids);
        });
        assert_eq!(engine.data_count(), model.len());
    }
}

/// A value's change shows owner and value to exactly its model readers.
fn check_change(
    c: &dlm_core::engine::Change,
    model: &BTreeMap<usize, Entry>,
    everyone: &[Caller],
    ids: &[IdentityId],
) {
    assert_eq!(c.subject, Subject::Data);
    let n = NAMES.iter().position(|&k| k == c.name).unwrap();
    let e = model.get(&n).expect("a change of a value the model lacks");
    assert_eq!(c.owner, IDS[e.owner.id]);
    assert_eq!(c.readers.get(), readers(e.readers));
    for &w in everyone {
        let shown = may_read(
            &c.owner,
            c.identity,
            c.readers.get(),
            IDS[w.id],
            w.principal(ids),
            w.name(),
        );
        assert_eq!(
            shown,
            e.readable_by(w),
            "{:?} of {} shown to {w:?}: {shown}",
            c.what,
            c.name
        );
    }
}

fn reply(
    engine: &mut Engine,
    now: Instant,
    cmd: &Command<'_>,
    who: Caller,
    ids: &[IdentityId],
) -> (Status, Option<String>, Option<String>) {
    match engine.handle(now, cmd, who.principal(ids), 0, &mut |_| {}) {
        Outcome::Reply(r) => (r.status, r.data.map(str::to_owned), r.id.map(str::to_owned)),
        Outcome::Queued(_) => panic!("a data request queued"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn values_reach_exactly_their_readers(steps in prop::collection::vec((0..20u64, op()), 1..120)) {
        run(steps);
    }
}

/// Named readers count against the memory budget, and replacing them
/// gives their bytes back.
#[test]
fn readers_are_charged_to_the_budget() {
    let mut ids = Vec::new();
    let mut e = fresh(&mut ids);
    let put = |readers| Command::Put {
        name: Resource("k"),
        owner: Owner("o"),
        ttl: Ttl::from_secs(60),
        data: "v",
        revision: None,
        readers,
    };
    let t = Instant::from_millis(1);
    let base = e.memory_used();
    let _ = e.handle(
        t,
        &put(Readers::Owner),
        Principal::Anonymous,
        0,
        &mut |_| {},
    );
    let plain = e.memory_used() - base;
    let names = "alice,bob,carol";
    let _ = e.handle(
        t,
        &put(Readers::Named(ReaderNames::new(names).unwrap())),
        Principal::Anonymous,
        0,
        &mut |_| {},
    );
    assert_eq!(e.memory_used() - base, plain + names.len());
    let _ = e.handle(t, &put(Readers::Any), Principal::Anonymous, 0, &mut |_| {});
    assert_eq!(e.memory_used() - base, plain);

    // Past the budget, a shared value is refused like any other.
    let mut tight = Engine::new(Config {
        memory_budget: e.memory_used() - base + 4,
        ..Config::default()
    });
    let Outcome::Reply(r) = tight.handle(
        t,
        &put(Readers::Named(ReaderNames::new(names).unwrap())),
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) else {
        panic!()
    };
    assert_eq!(r.status, Status::No);
    assert_eq!(tight.memory_used(), 0);
}

/// A reader's `Get` is counted as a `Get` and a `GetShared`; its `Put`
/// and `Erase` are refused and change nothing.
#[test]
fn a_reader_reads_but_never_writes() {
    let mut ids = Vec::new();
    let mut e = fresh(&mut ids);
    let t = Instant::from_millis(1);
    let alice = Principal::Identity(ids[0]);
    let put = |owner, data, readers| Command::Put {
        name: Resource("k"),
        owner: Owner(owner),
        ttl: Ttl::from_secs(60),
        data,
        revision: None,
        readers,
    };
    let status = |e: &mut Engine, c: &Command<'_>, p| match e.handle(t, c, p, 0, &mut |_| {}) {
        Outcome::Reply(r) => r.status,
        Outcome::Queued(_) => panic!(),
    };
    let shared = Readers::Named(ReaderNames::new("alice").unwrap());
    assert_eq!(
        status(&mut e, &put("o", "v1", shared), Principal::Anonymous),
        Status::Done
    );
    let get = Command::Get {
        name: Resource("k"),
        owner: Owner("reader"),
    };
    assert_eq!(status(&mut e, &get, alice), Status::Done);
    assert_eq!(status(&mut e, &get, Principal::Anonymous), Status::NotOwner);
    // The reader, even under the owner's own ID, cannot write.
    for owner in ["reader", "o"] {
        assert_eq!(
            status(&mut e, &put(owner, "mine", Readers::Any), alice),
            Status::NotOwner
        );
        let erase = Command::Erase {
            name: Resource("k"),
            owner: Owner(owner),
        };
        assert_eq!(status(&mut e, &erase, alice), Status::NotOwner);
    }
    assert_eq!(e.stats().get(Stat::GetShared), 1);
    let Outcome::Reply(r) = e.handle(t, &get, alice, 0, &mut |_| {}) else {
        panic!()
    };
    assert_eq!(r.data, Some("v1"));
    assert_eq!(r.id, Some("o"));
}

/// A `Put` without `Readers` makes the value its owner's alone again.
#[test]
fn each_put_says_its_readers() {
    let mut ids = Vec::new();
    let mut e = fresh(&mut ids);
    let t = Instant::from_millis(1);
    let put = |readers| Command::Put {
        name: Resource("k"),
        owner: Owner("o"),
        ttl: Ttl::from_secs(60),
        data: "v",
        revision: None,
        readers,
    };
    let get = Command::Get {
        name: Resource("k"),
        owner: Owner("x"),
    };
    let mut status = |c: &Command<'_>| match e.handle(t, c, Principal::Anonymous, 0, &mut |_| {}) {
        Outcome::Reply(r) => r.status,
        Outcome::Queued(_) => panic!(),
    };
    assert_eq!(status(&put(Readers::Any)), Status::Done);
    assert_eq!(status(&get), Status::Done);
    assert_eq!(status(&put(Readers::Owner)), Status::Done);
    assert_eq!(status(&get), Status::NotOwner);
}

/// FNV-1a 64, the snapshot's checksum, over `body`, appended.
fn sealed(body: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut v = body.to_vec();
    v.extend_from_slice(&h.to_le_bytes());
    v
}

/// A snapshot of the version before readers were kept (8) is still read,
/// every value its owner's alone; a readers tag no version writes is
/// refused as corrupt.
#[test]
fn version_8_snapshots_are_read_and_bad_tags_refused() {
    let mut ids = Vec::new();
    let mut e = fresh(&mut ids);
    let put = Command::Put {
        name: Resource("k"),
        owner: Owner("o"),
        ttl: Ttl::from_secs(60),
        data: "VALUE-7f3a",
        revision: None,
        readers: Readers::Owner,
    };
    let t = Instant::from_millis(1);
    let _ = e.handle(t, &put, Principal::Anonymous, 0, &mut |_| {});
    let v9 = e.snapshot_to_vec();
    let body = &v9[..v9.len() - 8];
    // The value's bytes, then its readers tag (0: the owner only).
    let p = body.windows(10).position(|w| w == b"VALUE-7f3a").unwrap() + 10;
    assert_eq!(body[p], 0);
    let mut v8 = [&body[..p], &body[p + 1..]].concat();
    v8[8..12].copy_from_slice(&8u32.to_le_bytes());
    let mut r = Engine::new(Config::default());
    r.restore(t, &sealed(&v8)).unwrap();
    let get = |owner| Command::Get {
        name: Resource("k"),
        owner: Owner(owner),
    };
    let status = |r: &mut Engine, c: &Command<'_>| match r.handle(
        t,
        c,
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) {
        Outcome::Reply(x) => (x.status, x.data.map(str::to_owned)),
        Outcome::Queued(_) => panic!(),
    };
    assert_eq!(
        status(&mut r, &get("o")),
        (Status::Done, Some("VALUE-7f3a".to_owned()))
    );
    assert_eq!(status(&mut r, &get("x")), (Status::NotOwner, None));
    // Tag 3 is no tag; tag 2 with names that are no identity names is
    // corrupt too.
    let mut bad = body.to_vec();
    bad[p] = 3;
    assert!(matches!(
        Engine::new(Config::default()).restore(t, &sealed(&bad)),
        Err(dlm_core::engine::SnapshotError::Corrupt(_))
    ));
    let mut bad = body[..=p].to_vec();
    bad[p] = 2;
    bad.extend_from_slice(&3u32.to_le_bytes());
    bad.extend_from_slice(b"a b");
    bad.extend_from_slice(&body[p + 1..]);
    assert!(matches!(
        Engine::new(Config::default()).restore(t, &sealed(&bad)),
        Err(dlm_core::engine::SnapshotError::Corrupt(_))
    ));
}
