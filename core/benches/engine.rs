//! Criterion benchmarks of dlm-core's hot path: a request line parsed,
//! applied to the engine and answered, with a million live entries in the
//! tables (40-character owner IDs, 12-character names), and the engine
//! step alone.
//!
//! `cargo bench -p dlm-core --bench engine`; figures in core/README.md.

// Bench code: panicking on a broken expectation is fine here.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dlm_core::client::Client;
use dlm_core::engine::{Config, Engine, Outcome, Principal};
use dlm_core::limits::Limits;
use dlm_core::protocol::{Command, Owner, Request, Resource, SliceOut};
use dlm_core::time::{Instant, Ttl};

const LIVE: usize = 1_000_000;
const TTL: Ttl = Ttl::from_secs(3000);

/// A 40-character owner ID.
fn owner(i: usize) -> String {
    format!("{i:0>40}")
}

/// A 12-character name.
fn name(i: usize) -> String {
    format!("lock-{i:07}")
}

/// An engine holding `LIVE` locks and `LIVE` data entries.
fn filled() -> Engine {
    let mut e = Engine::new(Config {
        memory_budget: usize::MAX,
        ..Config::default()
    });
    let now = Instant::from_millis(1);
    for i in 0..LIVE {
        let (n, o) = (name(i), owner(i));
        let lock = Command::Lock {
            name: Resource(&n),
            owner: Owner(&o),
            ttl: TTL,
            wait: None,
            token: None,
        };
        let put = Command::Put {
            name: Resource(&n),
            owner: Owner(&o),
            ttl: TTL,
            data: "0123456789abcdef0123456789abcdef",
            revision: None,
            readers: dlm_core::protocol::Readers::Owner,
        };
        for c in [lock, put] {
            let Outcome::Reply(_) = e.handle(now, &c, Principal::Anonymous, 0, &mut |_| {}) else {
                unreachable!()
            };
        }
    }
    assert_eq!(e.lock_count(), LIVE);
    e
}

/// Parses `line` (copied, as a server reads it into its buffer), applies
/// it and writes the answer; returns the answer's length.
fn serve(
    engine: &mut Engine,
    now: Instant,
    line: &[u8],
    scratch: &mut [u8],
    out: &mut [u8],
) -> usize {
    let scratch = &mut scratch[..line.len()];
    scratch.copy_from_slice(line);
    let req = Request::parse(scratch, &Limits::DEFAULT).unwrap();
    let mut w = SliceOut::new(out);
    match engine.handle(now, &req.command, Principal::Anonymous, 0, &mut |_| {}) {
        Outcome::Reply(r) => r.write(req.framing, &mut w).unwrap(),
        Outcome::Queued(_) => unreachable!(),
    }
    w.len()
}

fn benches(c: &mut Criterion) {
    let mut engine = filled();
    let now = Instant::from_millis(2);
    let id = owner(LIVE + 1);
    let me = Client::new(&id);
    let fresh = name(LIVE + 1);
    let line = |req: Request<'_>| {
        let mut v = Vec::new();
        req.write(&mut v).unwrap();
        v
    };
    let lock = line(me.lock(&fresh, TTL));
    let unlock = line(me.unlock(&fresh, None));
    let put = line(me.put(&fresh, TTL, "0123456789abcdef0123456789abcdef", None));
    let get = line(me.get(&fresh));
    let legacy = Client::new(&id).with_framing(dlm_core::protocol::Framing::Legacy);
    let lock_legacy = line(legacy.lock(&fresh, TTL));
    let unlock_legacy = line(legacy.unlock(&fresh, None));
    let (mut scratch, mut out) = (vec![0u8; 4096], vec![0u8; 4096]);

    let mut g = c.benchmark_group("1M live entries");
    g.bench_function("lock+unlock pair, parsed and answered (plain)", |b| {
        b.iter(|| {
            let n = serve(&mut engine, now, &lock, &mut scratch, &mut out);
            n + serve(&mut engine, now, &unlock, &mut scratch, &mut out)
        });
    });
    g.bench_function("lock+unlock pair, parsed and answered (legacy)", |b| {
        b.iter(|| {
            let n = serve(&mut engine, now, &lock_legacy, &mut scratch, &mut out);
            n + serve(&mut engine, now, &unlock_legacy, &mut scratch, &mut out)
        });
    });
    serve(&mut engine, now, &put, &mut scratch, &mut out);
    g.bench_function("put (replace), parsed and answered", |b| {
        b.iter(|| serve(&mut engine, now, &put, &mut scratch, &mut out));
    });
    g.bench_function("get, parsed and answered", |b| {
        b.iter(|| serve(&mut engine, now, &get, &mut scratch, &mut out));
    });

    let lock_cmd = Command::Lock {
        name: Resource(&fresh),
        owner: Owner(&id),
        ttl: TTL,
        wait: None,
        token: None,
    };
    let unlock_cmd = Command::Unlock {
        name: Resource(&fresh),
        owner: Owner(&id),
        token: None,
    };
    g.bench_function("engine step: lock then unlock (2 steps)", |b| {
        b.iter(|| {
            let a = matches!(
                engine.handle(
                    now,
                    black_box(&lock_cmd),
                    Principal::Anonymous,
                    0,
                    &mut |_| {}
                ),
                Outcome::Reply(_)
            );
            let u = matches!(
                engine.handle(
                    now,
                    black_box(&unlock_cmd),
                    Principal::Anonymous,
                    0,
                    &mut |_| {}
                ),
                Outcome::Reply(_)
            );
            a && u
        });
    });
    // The same with the watch feed on, as a server with a watcher runs
    // it (each change copied out, then taken by the host): the price of
    // being watched, beside the step above, where nobody watches.
    engine.set_feed(true);
    g.bench_function(
        "engine step: lock then unlock, watch feed on (2 steps)",
        |b| {
            b.iter(|| {
                let a = matches!(
                    engine.handle(
                        now,
                        black_box(&lock_cmd),
                        Principal::Anonymous,
                        0,
                        &mut |_| {}
                    ),
                    Outcome::Reply(_)
                );
                let u = matches!(
                    engine.handle(
                        now,
                        black_box(&unlock_cmd),
                        Principal::Anonymous,
                        0,
                        &mut |_| {}
                    ),
                    Outcome::Reply(_)
                );
                let mut n = 0;
                engine.drain_changes(|c| n += black_box(c).revision & 1);
                a && u && n < 3
            });
        },
    );
    engine.set_feed(false);
    let existing = name(LIVE / 2);
    let existing_owner = owner(LIVE / 2);
    let relock = Command::Lock {
        name: Resource(&existing),
        owner: Owner(&existing_owner),
        ttl: TTL,
        wait: None,
        token: None,
    };
    g.bench_function("engine step: re-lock (extend) a live lock", |b| {
        b.iter(|| {
            matches!(
                engine.handle(
                    now,
                    black_box(&relock),
                    Principal::Anonymous,
                    0,
                    &mut |_| {}
                ),
                Outcome::Reply(_)
            )
        });
    });
    let lines = [lock.clone(), unlock.clone()];
    g.bench_function("parse only: lock line", |b| {
        b.iter_batched_ref(
            || lines[0].clone(),
            |l| Request::parse(l, &Limits::DEFAULT).is_ok(),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group! {
    name = engine;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(engine);
