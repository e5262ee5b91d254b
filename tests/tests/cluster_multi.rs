//! Multi-locks (`LockAll`) on a real three-member cluster: granted through
//! the log, a waiter queued in every name's queue through a follower, and
//! the names surviving the leader's death with their tokens.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::time::Duration;

use dlm_core::client::Client;
use dlm_core::protocol::{Names, Status, Token};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::cluster::Cluster;

const TTL: Ttl = Ttl::from_secs(60);
const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_multi_lock_survives_a_leader_failover_with_its_tokens() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let me = Client::new("mover");
    let both = || Names::new(&["acct/1", "acct/7"]).unwrap();
    let crossed = || Names::new(&["acct/7", "acct/1"]).unwrap();
    let mut conn = c.member(leader).connect();
    let r = conn.call(&me.lock_all(both(), TTL, None));
    assert_eq!(r.status, Status::Locked, "{r:?}");
    let tokens = r.tokens.clone().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(r.token, Some(tokens[0]));
    drop(conn);
    c.kill(leader);
    let next = c.leader();
    assert_ne!(next, leader);
    let mut conn = c.member(next).connect();
    // Both are still held by their owner, each with its token.
    for (name, token) in ["acct/1", "acct/7"].iter().zip(&tokens) {
        let t = conn.call(&me.test_lock(name));
        assert_eq!(
            (t.status, t.token),
            (Status::Locked, Some(*token)),
            "{name}"
        );
    }
    // A resend of the same request (as a client does across a failover)
    // is a re-lock of both: the same tokens.
    let again = conn.call(&me.lock_all(both(), TTL, None));
    assert_eq!(again.tokens.as_ref(), Some(&tokens));
    // Another owner is refused, naming a held one, and takes nothing.
    let other = Client::new("other");
    let r = conn.call(&other.lock_all(crossed(), TTL, None));
    assert_eq!(r.status, Status::NotOwner, "{r:?}");
    assert!(r.error.unwrap().contains("acct/"));
    // It waits through a follower, in both queues at once; released
    // through the new leader, both go to it in one step, with tokens
    // greater than every one before the failover.
    let f = c.followers(next)[0];
    let mut waiter = c.member(f).connect();
    waiter.send(&other.lock_all(crossed(), TTL, Some(Ttl::from_secs(30))));
    c.member(next)
        .wait_for(LONG, "one waiter", |s| s.get(Stat::AWait) == 1);
    let u = conn.call(&me.unlock("acct/1", Some(Token(tokens[0]))));
    assert_eq!(u.status, Status::Unlocked);
    // acct/1 is free but awaited: nobody takes it past the waiter.
    assert_eq!(
        conn.call(&Client::new("x").lock("acct/1", TTL)).status,
        Status::NotOwner
    );
    let u = conn.call(&me.unlock("acct/7", Some(Token(tokens[1]))));
    assert_eq!(u.status, Status::Unlocked);
    let granted = waiter.recv();
    assert_eq!(granted.status, Status::Locked, "{granted:?}");
    let got = granted.tokens.unwrap();
    assert!(got[0] > tokens[1], "{got:?} after {tokens:?}");
    // Every member agrees, in the order of the request (acct/7 first).
    for m in [next, f] {
        let seen = c.member(m).connect().call(&other.test_lock("acct/7"));
        assert_eq!((seen.status, seen.token), (Status::Locked, Some(got[0])));
    }
}
