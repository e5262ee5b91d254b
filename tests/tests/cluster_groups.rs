//! Semaphores and read/write locks in a 3-member cluster: their holds are
//! engine state, replicated as commands through the log and carried by
//! snapshots, so they survive the leader's death and a member caught up
//! by a snapshot knows them.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::thread;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::{Shape, Status, Token};
use dlm_core::time::Ttl;
use dlm_tests::cluster::{Cluster, field};

const TTL: Ttl = Ttl::from_secs(120);
const LONG: Duration = Duration::from_secs(30);
const POOL: Shape = Shape::Semaphore { permits: 3 };

#[test]
fn a_semaphores_holders_survive_the_leaders_death() {
    // Small snapshots: the member that comes back is caught up by one.
    let mut c = Cluster::start(3, &["--snapshot-every", "10"]);
    let leader = c.leader();
    let mut conn = c.member(leader).connect();
    let (a, b) = (Client::new("a"), Client::new("b"));
    let ta = conn.call(&a.acquire("pool", POOL, TTL, None));
    let tb = conn.call(&b.acquire("pool", POOL, TTL, None));
    assert_eq!((ta.status, tb.status), (Status::Locked, Status::Locked));
    let (ta, tb) = (ta.token.unwrap(), tb.token.unwrap());
    let reader = conn.call(&a.acquire("cfg", Shape::Read, TTL, None));
    assert_eq!(reader.status, Status::Locked);
    drop(conn);

    c.kill(leader);
    let next = c.leader();
    assert_ne!(next, leader);
    let mut conn = c.member(next).connect();
    // The holds are there, with their tokens: extensions keep them, and the
    // semaphore's size and the lock's kind are known.
    let r = conn.call(&a.extend_hold("pool", POOL, TTL, Token(ta)));
    assert_eq!((r.status, r.token), (Status::Locked, Some(ta)));
    let r = conn.call(&b.extend_hold("pool", POOL, TTL, Token(tb)));
    assert_eq!((r.status, r.token), (Status::Locked, Some(tb)));
    let r = conn.call(&b.acquire("pool", Shape::Semaphore { permits: 2 }, TTL, None));
    assert_eq!(r.status, Status::Conflict);
    let r = conn.call(&b.acquire("cfg", Shape::Write, TTL, None));
    assert_eq!(r.status, Status::NotOwner, "the reader still holds cfg");
    // One permit is left; its token is greater than every one before.
    let tc = conn.call(&Client::new("c").acquire("pool", POOL, TTL, None));
    assert_eq!(tc.status, Status::Locked);
    let tc = tc.token.unwrap();
    assert!(tc > ta.max(tb), "{tc} after {ta}, {tb}");
    let full = conn.call(&Client::new("d").acquire("pool", POOL, TTL, None));
    assert_eq!(full.status, Status::NotOwner, "three permits held");
    // Enough entries for the survivors to snapshot past them.
    for i in 0..30 {
        let r = conn.call(&a.extend_hold("pool", POOL, TTL, Token(ta)));
        assert_eq!(r.status, Status::Locked, "extension {i}");
    }
    drop(conn);

    // The killed member comes back empty, is caught up (by a snapshot, the
    // log before it being compacted away), and is made the leader: what it
    // knows came from the snapshot and the entries after it.
    c.rejoin(leader);
    let deadline = Instant::now() + LONG;
    loop {
        let s = c.status(next);
        let lag = s
            .split(&format!("\"ID\":{leader},"))
            .nth(1)
            .map_or(u64::MAX, |t| field(t, "\"Lag\":"));
        if lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member {leader} never caught up: {s}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        c.member(leader)
            .log()
            .contains("installed the leader's snapshot"),
        "caught up without a snapshot"
    );
    c.admin(&format!(
        "{{\"Action\":\"Cluster\",\"Op\":\"transfer\",\"Node\":{leader}}}"
    ));
    let deadline = Instant::now() + LONG;
    while c.leader() != leader {
        assert!(Instant::now() < deadline, "leadership never moved");
        thread::sleep(Duration::from_millis(20));
    }
    let mut conn = c.member(leader).connect();
    for (who, token) in [("a", ta), ("b", tb), ("c", tc)] {
        let r = conn.call(&Client::new(who).extend_hold("pool", POOL, TTL, Token(token)));
        assert_eq!((r.status, r.token), (Status::Locked, Some(token)), "{who}");
    }
    let full = conn.call(&Client::new("d").acquire("pool", POOL, TTL, None));
    assert_eq!(full.status, Status::NotOwner);
    // Released, a permit goes with a token greater than any before.
    let r = conn.call(&b.unlock("pool", Some(Token(tb))));
    assert_eq!(r.status, Status::Unlocked);
    let td = conn.call(&Client::new("d").acquire("pool", POOL, TTL, None));
    assert_eq!(td.status, Status::Locked);
    assert!(td.token.unwrap() > tc);
}
