//! Sessions in a 3-member cluster: a session's end is decided through the
//! log, so every member releases its grants at the same entry, and a
//! session whose leader died ends by its TTL in replicated time.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::net::Shutdown;
use std::time::Duration;

use dlm_core::client::Client;
use dlm_core::protocol::{SessionBind, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::cluster::Cluster;

const TTL: Ttl = Ttl::from_secs(120);
const LONG: Duration = Duration::from_secs(30);

fn bound() -> SessionBind {
    SessionBind {
        lock_delay: Ttl::ZERO,
    }
}

#[test]
fn a_closed_connection_releases_its_lock_on_every_member() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let mut a = c.member(leader).connect();
    assert_eq!(a.call(&Client::new("a").session(TTL)).status, Status::Done);
    let held = a.call(&Client::new("a").lock("job", TTL).with_session(bound()));
    assert_eq!(held.status, Status::Locked);
    let mut b = c.member(leader).connect();
    b.send(&Client::new("b").lock_wait("job", TTL, TTL));
    c.member(leader)
        .wait_for(LONG, "b waits", |s| s.get(Stat::AWait) == 1);

    a.stream().shutdown(Shutdown::Both).unwrap();
    drop(a);
    let got = b.recv();
    assert_eq!((got.status, got.id.as_deref()), (Status::Locked, Some("b")));
    assert!(
        got.token.unwrap() > held.token.unwrap(),
        "fencing tokens only grow"
    );
    // Every member applied the session's end: none has it, each counts it
    // closed once and holds b's lock alone.
    for id in [1, 2, 3] {
        c.member(id)
            .wait_for(LONG, "the member applied the session's end", |s| {
                s.get(Stat::SessionClosed) == 1
                    && s.get(Stat::ASession) == 0
                    && s.get(Stat::ALock) == 1
            });
    }
}

#[test]
fn a_session_whose_leader_died_ends_by_its_ttl() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let mut a = c.member(leader).connect();
    let r = a.call(&Client::new("a").session(Ttl::from_secs(2)));
    assert_eq!(r.status, Status::Done);
    let held = a.call(&Client::new("a").lock("job", TTL).with_session(bound()));
    assert_eq!(held.status, Status::Locked);
    c.kill(leader);
    let next = c.leader();
    // The lock outlives its leader, then its session runs out in the
    // cluster's time and a waiter on the new leader gets it.
    let mut b = c.member(next).connect();
    let got = b.call(&Client::new("b").lock_wait("job", TTL, Ttl::from_secs(25)));
    assert_eq!((got.status, got.id.as_deref()), (Status::Locked, Some("b")));
    assert!(got.token.unwrap() > held.token.unwrap());
    for id in c.followers(next).into_iter().chain([next]) {
        c.member(id)
            .wait_for(LONG, "the member ended the session", |s| {
                s.get(Stat::SessionExpired) == 1 && s.get(Stat::ASession) == 0
            });
    }
}
