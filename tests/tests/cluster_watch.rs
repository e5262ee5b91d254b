//! Watches on a cluster: any member serves them from what it has applied,
//! so a follower's watcher sees the leader's changes in the same order
//! with the same revisions as the leader's own watcher (perhaps later).

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::std_instead_of_core)]

use dlm_core::client::Client;
use dlm_core::protocol::{Revision, Status, WatchEvent, WatchScope};
use dlm_core::time::Ttl;
use dlm_tests::cluster::Cluster;
use dlm_tests::{Conn, eventually};

const TTL: Ttl = Ttl::from_secs(60);
const LONG: std::time::Duration = std::time::Duration::from_secs(20);

fn events(conn: &mut Conn, n: usize) -> Vec<(u64, String, String)> {
    (0..n)
        .map(|_| {
            let mut line = conn.recv_line().expect("the watch ended");
            assert!(
                WatchEvent::is_event(&line),
                "{}",
                String::from_utf8_lossy(&line)
            );
            let e = WatchEvent::parse(&mut line).unwrap();
            (e.revision, e.what.as_str().to_owned(), e.name.to_owned())
        })
        .collect()
}

#[test]
fn a_follower_serves_watches_with_the_leaders_revisions() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let follower = c.followers(leader)[0];
    let watcher = Client::new("w");
    // A member answers `NO` until it has applied the cluster's first
    // entry; then it watches.
    let open = |id: u64| {
        let mut conn = None;
        eventually(LONG, "a member takes a watch", || {
            let mut w = c.member(id).connect();
            let r = w.call(&watcher.watch(WatchScope::Prefix("job/"), None));
            if r.status == Status::Done {
                conn = Some(w);
                return true;
            }
            assert_eq!(r.status, Status::No, "{r:?}");
            false
        });
        conn.unwrap()
    };
    let mut on_follower = open(follower);
    let mut on_leader = open(leader);

    // Changes through the leader and through the other follower.
    let me = Client::new("me");
    let mut a = c.member(leader).connect();
    let mut b = c.member(c.followers(leader)[1]).connect();
    assert_eq!(a.call(&me.lock("job/1", TTL)).status, Status::Locked);
    assert_eq!(
        b.call(&me.put("job/v", TTL, "x", None)).status,
        Status::Done
    );
    assert_eq!(a.call(&me.unlock("job/1", None)).status, Status::Unlocked);
    assert_eq!(b.call(&me.erase("job/v")).status, Status::Done);
    assert_eq!(a.call(&me.lock("other", TTL)).status, Status::Locked);
    assert_eq!(a.call(&me.lock("job/2", TTL)).status, Status::Locked);

    let from_leader = events(&mut on_leader, 5);
    // The follower's, as it applies the same entries.
    let from_follower = events(&mut on_follower, 5);
    assert_eq!(from_follower, from_leader);
    let what: Vec<(&str, &str)> = from_leader
        .iter()
        .map(|(_, w, n)| (w.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        what,
        [
            ("Granted", "job/1"),
            ("Put", "job/v"),
            ("Released", "job/1"),
            ("Erased", "job/v"),
            ("Granted", "job/2")
        ]
    );
    let revs: Vec<u64> = from_leader.iter().map(|e| e.0).collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
    // "other" took the revision between the last two.
    assert_eq!(revs[4], revs[3] + 2);

    // Resuming on the other follower, which nobody watched before, from a
    // revision the first one told: every member keeps the history from
    // its start, so it replays what came after, with the same revisions.
    drop(on_follower);
    let other = c.followers(leader)[1];
    let mut again = None;
    eventually(LONG, "the other follower resumes the watch", || {
        let mut w = c.member(other).connect();
        let r = w.call(&watcher.watch(WatchScope::Prefix("job/"), Some(Revision(revs[1]))));
        if r.status == Status::Done {
            again = Some(w);
            return true;
        }
        // Only while it has not applied that far yet.
        assert_eq!(r.status, Status::Conflict, "{r:?}");
        assert!(r.revision.unwrap() < revs[1], "{r:?}");
        false
    });
    let mut again = again.unwrap();
    assert_eq!(events(&mut again, 3), from_leader[2..]);
    assert_eq!(a.call(&me.unlock("job/2", None)).status, Status::Unlocked);
    let next = events(&mut again, 1);
    assert_eq!(next[0].1, "Released");
    assert!(next[0].0 > revs[4]);
    let from_leader = events(&mut on_leader, 1);
    assert_eq!(from_leader, next);
}

/// `--watch-history 0`: members keep no history (and copy no change for
/// it), so a watch resumes only from the current revision; a live watch
/// still sees every change.
#[test]
fn without_history_a_member_watches_only_from_now() {
    let c = Cluster::start(3, &["--watch-history", "0"]);
    let leader = c.leader();
    let follower = c.followers(leader)[0];
    let watcher = Client::new("w");
    let me = Client::new("me");
    let mut a = c.member(leader).connect();
    assert_eq!(a.call(&me.lock("nh/1", TTL)).status, Status::Locked);
    // From an earlier revision: refused, with the current one to start at.
    let mut now = None;
    eventually(LONG, "the follower answers the resume", || {
        let mut w = c.member(follower).connect();
        let r = w.call(&watcher.watch(WatchScope::Prefix("nh/"), Some(Revision(1))));
        match r.status {
            Status::Conflict => {
                now = r.revision;
                true
            }
            // Not applied the cluster's first entry yet.
            Status::No => false,
            other => panic!("{other:?}: {r:?}"),
        }
    });
    let now = now.unwrap();
    assert!(now > 1);
    // From the current revision: served, and live changes come.
    let mut w = c.member(follower).connect();
    let r = w.call(&watcher.watch(WatchScope::Prefix("nh/"), Some(Revision(now))));
    assert_eq!(r.status, Status::Done, "{r:?}");
    assert_eq!(a.call(&me.unlock("nh/1", None)).status, Status::Unlocked);
    // (The grant too, if the follower had not applied it when it
    // answered the resume.)
    let mut got = events(&mut w, 1);
    if got[0].1 == "Granted" {
        got = events(&mut w, 1);
    }
    assert_eq!((got[0].1.as_str(), got[0].2.as_str()), ("Released", "nh/1"));
    assert!(got[0].0 > now);
}
