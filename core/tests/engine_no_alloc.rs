//! An engine built without an allocator (dlm-core without `alloc`, for
//! hosts with fixed-capacity storage) keeps no semaphores or read/write
//! locks: it answers a `Lock` with `Permits` or `Mode` `BadAction`, as it
//! answers what else it cannot serve alone (`Cluster`, the `Admin`
//! listings), and acquires nothing. Failing closed is the point: granting
//! an exclusive lock instead would break a semaphore's contract (a second
//! acquisition by the same owner would be a re-lock of the same hold, so
//! releasing one would release the other), and a client reads `BadAction`
//! as "the server does not know this", which is the truth.
//!
//! Run by scripts/test.sh as
//! `cargo test -p dlm-core --no-default-features --test engine_no_alloc`;
//! with `alloc` (any other run) it compiles to nothing.

#![cfg(not(feature = "alloc"))]

use dlm_core::engine::{Config, Engine, Fixed, Outcome, Principal};
use dlm_core::protocol::{Command, Owner, Resource, Shape, Status};
use dlm_core::stats::Stat;
use dlm_core::time::{Instant, Ttl};

type Small = Engine<Fixed<16, 64, 128>>;

fn status(e: &mut Small, c: &Command<'_>) -> Status {
    match e.handle(
        Instant::from_millis(0),
        c,
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) {
        Outcome::Reply(r) => r.status,
        Outcome::Queued(_) => panic!("queued: {c:?}"),
    }
}

#[test]
fn semaphores_and_read_write_locks_are_bad_actions_and_acquire_nothing() {
    let mut e: Small = Engine::with_storage(Config::default());
    for shape in [Shape::Semaphore { permits: 2 }, Shape::Read, Shape::Write] {
        for wait in [None, Some(Ttl::from_secs(5))] {
            let c = Command::Acquire {
                name: Resource("res"),
                owner: Owner("a"),
                shape,
                ttl: Ttl::from_secs(10),
                wait,
                token: None,
            };
            assert_eq!(status(&mut e, &c), Status::BadAction, "{shape:?}");
        }
    }
    assert_eq!(e.stats().get(Stat::BadAction), 6);
    assert_eq!(e.waiter_count(), 0);
    // Nothing was taken: another owner locks the name at once.
    let lock = Command::Lock {
        name: Resource("res"),
        owner: Owner("b"),
        ttl: Ttl::from_secs(10),
        wait: None,
        token: None,
    };
    assert_eq!(status(&mut e, &lock), Status::Locked);
    assert_eq!(e.stats().get(Stat::ALock), 1);
}
