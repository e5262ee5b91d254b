//! `Engine::read`: a cluster leader answers `Get` and `TestLock` from the
//! state as it is (after its read index is applied), without a log entry.
//! It must answer exactly what `handle` answers at the engine's current
//! instant, and change nothing but counters: no time passes, nothing
//! expires, no request is remembered.
#![allow(clippy::unwrap_used)]

use dlm_core::engine::{Config, Engine, Heap, Outcome, Principal};
use dlm_core::protocol::{Command, Owner, Resource, Status};
use dlm_core::time::{Instant, Ttl};

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn handle(e: &mut Engine<Heap>, now: u64, c: &Command<'_>) -> String {
    match e.handle(at(now), c, Principal::Anonymous, 0, &mut |_| {}) {
        Outcome::Reply(r) => format!("{r:?}"),
        Outcome::Queued(w) => format!("queued {w:?}"),
    }
}

#[test]
fn a_read_answers_what_handle_answers_and_changes_no_state() {
    let mut e = Engine::<Heap>::new(Config::DEFAULT);
    let lock = Command::Lock {
        name: Resource("l"),
        owner: Owner("a"),
        ttl: Ttl::from_millis(1_000),
        wait: None,
        token: None,
    };
    let put = Command::Put {
        name: Resource("d"),
        owner: Owner("a"),
        ttl: Ttl::from_millis(1_000),
        data: "v",
        revision: None,
        readers: dlm_core::protocol::Readers::Owner,
    };
    assert!(handle(&mut e, 100, &lock).contains("Locked"));
    assert!(handle(&mut e, 100, &put).contains("Done"));
    let reads = [
        Command::TestLock {
            name: Resource("l"),
            owner: Owner("a"),
        },
        Command::TestLock {
            name: Resource("l"),
            owner: Owner("b"),
        },
        Command::TestLock {
            name: Resource("free"),
            owner: Owner("a"),
        },
        Command::Get {
            name: Resource("d"),
            owner: Owner("a"),
        },
        Command::Get {
            name: Resource("d"),
            owner: Owner("b"),
        },
        Command::Get {
            name: Resource("none"),
            owner: Owner("a"),
        },
    ];
    for c in &reads {
        let read = format!("{:?}", e.read(c, Principal::Anonymous).unwrap());
        assert_eq!(read, handle(&mut e, 100, c), "{c:?}");
    }
    // A read never moves the engine's time (a cluster's time passes only
    // through its log): its instant, deadlines and entries stay.
    let before = (e.now(), e.next_deadline(), e.lock_info("l").is_some());
    let r = e.read(&reads[0], Principal::Anonymous).unwrap();
    assert_eq!(r.status, Status::Locked);
    let r = e.read(&reads[3], Principal::Anonymous).unwrap();
    assert_eq!(r.data, Some("v"));
    assert_eq!(
        before,
        (e.now(), e.next_deadline(), e.lock_info("l").is_some())
    );
    assert_eq!(e.now(), at(100));
    // Told, it expires them; a read then finds nothing.
    e.advance(at(5_000), &mut |_| {});
    assert_eq!(
        e.read(&reads[0], Principal::Anonymous).unwrap().status,
        Status::Unlocked
    );
    assert_eq!(
        e.read(&reads[3], Principal::Anonymous).unwrap().status,
        Status::NotFound
    );
}

#[test]
fn only_reads_are_read() {
    let mut e = Engine::<Heap>::new(Config::DEFAULT);
    let writes = [
        Command::Lock {
            name: Resource("l"),
            owner: Owner("a"),
            ttl: Ttl::from_millis(1_000),
            wait: None,
            token: None,
        },
        Command::Unlock {
            name: Resource("l"),
            owner: Owner("a"),
            token: None,
        },
        Command::Erase {
            name: Resource("d"),
            owner: Owner("a"),
        },
        Command::Version,
        Command::Stats,
    ];
    for c in &writes {
        assert!(e.read(c, Principal::Anonymous).is_none(), "{c:?}");
    }
    assert!(e.lock_info("l").is_none(), "nothing was applied");
}
