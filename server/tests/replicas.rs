//! The replicated state machine: members fed the same log end in the same
//! state, whatever the log holds, and a member that installs a snapshot
//! taken anywhere along the way and replays the rest ends there too.
//!
//! Random logs of requests (locks with and without waits, unlocks,
//! extensions, puts with compare-and-set, gets, erases, garbage, resends
//! with request IDs), time stamps that jump and go back, cancels, orphaned
//! grants, new leaders' waiter drops and identity registrations, from many
//! seeds.
// Test code: a panic is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;

use dlm_core::client::Client;
use dlm_core::engine::{Engine, Heap};
use dlm_core::limits::Limits;
use dlm_core::protocol::{Command, Owner, Resource, Revision, Token};
use dlm_core::time::Ttl;
use dlm_server::cluster::entry::{self, Bootstrap, Entry, Logged};
use dlm_server::host::{Host, HostConfig, Peers};
use dlm_server::identity::Identities;

struct Open;

impl Peers for Open {
    fn closed(&self, _: usize) -> bool {
        false
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn member() -> Host {
    let config = HostConfig::default();
    let engine = Engine::new(Host::engine_config(&config));
    let mut h = Host::new(config, engine, Identities::none());
    h.replicate(1);
    h
}

/// A random log.
fn log(seed: u64, len: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let names = ["a", "b"];
    let owners = ["x", "y", "z"];
    let mut out = vec![entry::encode(
        0,
        &Entry::Bootstrap(Bootstrap {
            cluster_id: 7,
            hash_key: [seed, !seed],
            first_token: 1000,
            limits: Limits::DEFAULT,
            memory_budget: 1 << 20,
            deadline_slack_ms: [0, 201][(seed % 2) as usize],
        }),
    )];
    let mut stamp = 0u64;
    for _ in 0..len {
        // Mostly forward, sometimes back (an older leader's stamp).
        stamp = match rng.below(10) {
            0 => stamp.saturating_sub(rng.below(50)),
            1..=3 => stamp + rng.below(2000),
            _ => stamp + rng.below(30),
        };
        let e = match rng.below(20) {
            0 => Entry::Advance,
            1 => Entry::Cancel {
                waiter: rng.below(40),
            },
            2 => Entry::Orphaned {
                name: names[rng.below(2) as usize],
                token: 1000 + rng.below(60),
            },
            3 => Entry::DropWaiters,
            4 => Entry::RegisterIdentity {
                name: "alice",
                max_data: 100 + rng.below(10),
            },
            _ => {
                let mut lines = Vec::new();
                for _ in 0..=rng.below(4) {
                    let me = Client::new(owners[rng.below(3) as usize]);
                    let name = names[rng.below(2) as usize];
                    let ttl = Ttl::from_millis(1 + rng.below(500));
                    let req = match rng.below(9) {
                        0 | 1 => me.lock(name, ttl),
                        2 => me.lock_wait(name, ttl, Ttl::from_millis(1 + rng.below(800))),
                        3 => me.extend(name, ttl, Token(1000 + rng.below(60))),
                        4 => me.unlock(name, None),
                        5 => me.put(name, ttl, "v", Some(Revision(rng.below(3)))),
                        6 => me.get(name),
                        7 => me.erase(name),
                        _ => me.request(Command::TestLock {
                            name: Resource(name),
                            owner: Owner(me.id()),
                        }),
                    };
                    let ids = ["r1", "r2", "r3"];
                    let req = if rng.below(3) == 0 {
                        req.with_request_id(ids[rng.below(3) as usize])
                    } else {
                        req
                    };
                    let mut line = Vec::new();
                    req.write(&mut line).unwrap();
                    if rng.below(30) == 0 {
                        line = b"{\"Action\":\"Nope\"}\n".to_vec();
                    }
                    lines.push((line, rng.below(1000)));
                }
                let logged: Vec<Logged<'_>> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, (line, tag))| Logged {
                        node: 2,
                        tag: *tag,
                        seq: i as u64,
                        ident: u16::from(rng.below(10) == 0),
                        line,
                    })
                    .collect();
                out.push(entry::encode(stamp, &Entry::Requests(logged)));
                continue;
            }
        };
        out.push(entry::encode(stamp, &e));
    }
    out
}

/// What a member holds, in a form that does not depend on how its
/// tables were filled: the lock table, the counters, and the answers a
/// scratch copy gives to every read.
fn state(h: &Host) -> String {
    let e = h.engine();
    let mut locks: Vec<String> = e
        .locks()
        .map(|l| {
            format!(
                "{} {} {} {} {}",
                l.name,
                l.owner,
                l.token.0,
                l.remaining.as_millis(),
                l.waiters
            )
        })
        .collect();
    locks.sort();
    let mut scratch: Engine<Heap> = Engine::new(dlm_core::engine::Config::DEFAULT);
    scratch.restore(e.now(), &e.snapshot_to_vec()).unwrap();
    let mut reads = BTreeMap::new();
    for name in ["a", "b"] {
        for owner in ["x", "y", "z"] {
            let c = Command::Get {
                name: Resource(name),
                owner: Owner(owner),
            };
            if let dlm_core::engine::Outcome::Reply(r) = scratch.handle(
                e.now(),
                &c,
                dlm_core::engine::Principal::Anonymous,
                0,
                &mut |_| {},
            ) {
                reads.insert(
                    format!("{name}/{owner}"),
                    format!("{:?} {:?} {:?}", r.status, r.data, r.revision),
                );
            }
        }
    }
    format!(
        "now {} next {} locks {locks:?} data {} waiters {} memory {} remembered {} stats {:?} reads {reads:?}",
        e.now().as_millis(),
        e.next_token().0,
        e.data_count(),
        e.waiter_count(),
        e.memory_used(),
        e.remembered_requests(),
        e.stats(),
    )
}

#[test]
fn the_same_log_makes_the_same_member_with_or_without_snapshots() {
    for seed in 0..150 {
        let entries = log(seed, 120);
        let mut a = member();
        let mut b = member();
        let cut = 1 + (seed as usize * 7) % (entries.len() - 1);
        let mut snap = None;
        for (i, e) in entries.iter().enumerate() {
            a.apply_entry(e, &Open).unwrap();
            b.apply_entry(e, &Open).unwrap();
            if i + 1 == cut {
                snap = Some(a.cluster_snapshot());
            }
            assert_eq!(
                state(&a),
                state(&b),
                "seed {seed}: members differ after entry {i}"
            );
        }
        // A member that installs the snapshot and replays the rest.
        let mut c = member();
        c.restore_cluster_snapshot(&snap.unwrap()).unwrap();
        for e in &entries[cut..] {
            c.apply_entry(e, &Open).unwrap();
        }
        assert_eq!(
            state(&a),
            state(&c),
            "seed {seed}: snapshot at {cut} then replay differs"
        );
    }
}

#[test]
fn a_damaged_entry_or_snapshot_is_an_error_not_a_divergence() {
    let mut a = member();
    let entries = log(3, 20);
    a.apply_entry(&entries[0], &Open).unwrap();
    let mut bad = entries[1].clone();
    bad.truncate(bad.len() / 2);
    assert!(a.apply_entry(&bad, &Open).is_err());
    let snap = a.cluster_snapshot();
    for cut in 0..snap.len() {
        let mut c = member();
        let _ = c.restore_cluster_snapshot(&snap[..cut]);
    }
    let mut c = member();
    c.restore_cluster_snapshot(&snap).unwrap();
    assert_eq!(state(&a), state(&c));
}
