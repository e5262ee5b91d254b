//! Shared values on a cluster (PROTOCOL.md section 8, "Shared values"):
//! a value's readers are replicated with it through the log, so they hold
//! on every member, after the leader dies, and after the whole cluster
//! restarts from its snapshots (format version 9) and logs.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::{Credentials, ReaderNames, Readers, Request, Status};
use dlm_core::time::Ttl;
use dlm_tests::cluster::{Cluster, free_port};
use dlm_tests::{Reply, new_identity, scratch_dir};

const TTL: Ttl = Ttl::from_secs(600);
const LONG: Duration = Duration::from_secs(30);

/// `req`'s answer from the cluster's leader, asking again (on a new
/// leader) if an election closed the connection on the way.
fn ask(c: &Cluster, req: &Request<'_>) -> Reply {
    let deadline = Instant::now() + LONG;
    loop {
        let mut conn = c.member(c.leader()).connect();
        conn.send(req);
        if let Some(line) = conn.recv_line() {
            return Reply::parse(&line);
        }
        assert!(Instant::now() < deadline, "no leader answered");
    }
}

#[test]
fn readers_survive_failover_and_a_restart_from_snapshots() {
    let ids = scratch_dir("cluster-shared-ids");
    std::fs::create_dir_all(&ids).unwrap();
    let alice_secret = new_identity(&ids, "alice", false);
    let bob_secret = new_identity(&ids, "bob", false);
    let dirs: Vec<std::path::PathBuf> = (1..=3)
        .map(|i| scratch_dir(&format!("cluster-shared-node{i}")))
        .collect();
    let mut c = Cluster::prepare(0, &[]);
    c.peers = (1..=3).map(|id| (id, free_port())).collect();
    let boot = |c: &mut Cluster, id: u64| {
        c.extra = vec![
            "--identity-dir".into(),
            ids.to_str().unwrap().to_owned(),
            "--data-dir".into(),
            dirs[id as usize - 1].to_str().unwrap().to_owned(),
            "--snapshot-every".into(),
            "20".into(),
        ];
        c.boot(id, false);
    };
    for id in 1..=3 {
        boot(&mut c, id);
    }
    let owner = Client::new("owner");
    let alice = Client::new("r").with_credentials(Credentials {
        name: "alice",
        secret: &alice_secret,
    });
    let bob = Client::new("r").with_credentials(Credentials {
        name: "bob",
        secret: &bob_secret,
    });
    let stranger = Client::new("r");
    let named = Readers::Named(ReaderNames::new("alice").unwrap());
    assert_eq!(
        ask(&c, &owner.put_shared("for-alice", TTL, "a", None, named)).status,
        Status::Done
    );
    assert_eq!(
        ask(
            &c,
            &owner.put_shared("for-all", TTL, "b", None, Readers::Any)
        )
        .status,
        Status::Done
    );
    assert_eq!(
        ask(&c, &owner.put("private", TTL, "c", None)).status,
        Status::Done
    );
    // Enough entries after them that snapshots are taken.
    for i in 0..60 {
        assert_eq!(
            ask(&c, &owner.put(&format!("fill{}", i % 5), TTL, "x", None)).status,
            Status::Done
        );
    }

    let check = |c: &Cluster, when: &str| {
        let got = |who: &Client<'_>, key| {
            let r = ask(c, &who.get(key));
            (r.status, r.data)
        };
        let done = |v: &str| (Status::Done, Some(v.to_owned()));
        let refused = (Status::NotOwner, None);
        assert_eq!(got(&alice, "for-alice"), done("a"), "{when}");
        assert_eq!(got(&bob, "for-alice"), refused, "{when}");
        assert_eq!(got(&stranger, "for-alice"), refused, "{when}");
        for who in [&alice, &bob, &stranger] {
            assert_eq!(got(who, "for-all"), done("b"), "{when}");
            assert_eq!(got(who, "private"), refused, "{when}");
        }
        assert_eq!(got(&owner, "private"), done("c"), "{when}");
        // Writes stay the owner's.
        assert_eq!(
            ask(c, &stranger.erase("for-all")).status,
            Status::NotOwner,
            "{when}"
        );
        assert_eq!(
            ask(c, &alice.put("for-alice", TTL, "mine", None)).status,
            Status::NotOwner,
            "{when}"
        );
    };
    check(&c, "before any failure");

    // The leader dies: the next one has the same readers.
    let first = c.leader();
    c.kill(first);
    check(&c, "after the leader died");
    boot(&mut c, first);

    // Everybody down, everybody up: restored from snapshots and logs.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        boot(&mut c, id);
    }
    for id in 1..=3 {
        let log = c.member(id).log();
        assert!(
            log.contains("state restored from the latest snapshot"),
            "member {id} did not start from a snapshot:\n{log}"
        );
    }
    check(&c, "after a restart of every member");
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}
