//! Watches end to end against a real `dlm-server`: event lines in order
//! with revisions, values only to their owner, resuming from a revision,
//! the compacted-history answer, and a slow watcher cut off without
//! touching anybody else.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::std_instead_of_core)]

use std::time::Duration;

use dlm_core::client::Client;
use dlm_core::protocol::{Revision, Status, WatchEvent, WatchScope};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Reply, Server};

const TTL: Ttl = Ttl::from_secs(60);
const LONG: Duration = Duration::from_secs(20);

/// One event, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    revision: u64,
    what: String,
    kind: String,
    name: String,
    owner: Option<String>,
    token: Option<u64>,
    value: Option<String>,
}

enum Line {
    Event(Ev),
    Answer(Reply),
}

fn read(conn: &mut Conn) -> Option<Line> {
    let mut line = conn.recv_line()?;
    if !WatchEvent::is_event(&line) {
        return Some(Line::Answer(Reply::parse(&line)));
    }
    let e = WatchEvent::parse(&mut line).unwrap();
    Some(Line::Event(Ev {
        revision: e.revision,
        what: e.what.as_str().to_owned(),
        kind: e.subject.as_str().to_owned(),
        name: e.name.to_owned(),
        owner: e.owner.map(str::to_owned),
        token: e.token.map(|t| t.0),
        value: e.value.map(str::to_owned),
    }))
}

fn event(conn: &mut Conn) -> Ev {
    match read(conn) {
        Some(Line::Event(e)) => e,
        Some(Line::Answer(r)) => panic!("an answer where an event was due: {r:?}"),
        None => panic!("the watch ended"),
    }
}

/// Opens a watch; returns the connection and the revision it starts at.
fn watch(server: &Server, who: &str, scope: WatchScope<'_>, since: Option<u64>) -> (Conn, Reply) {
    let mut conn = server.connect();
    let r = conn.call(&Client::new(who).watch(scope, since.map(Revision)));
    (conn, r)
}

#[test]
fn watchers_see_changes_in_order_and_values_only_their_own() {
    let server = Server::start();
    let (mut all, r) = watch(&server, "me", WatchScope::Prefix("w/"), None);
    assert_eq!(r.status, Status::Done);
    let start = r.revision.unwrap();
    let (mut one, r) = watch(
        &server,
        "other",
        WatchScope::Name(dlm_core::protocol::Resource("w/a")),
        None,
    );
    assert_eq!((r.status, r.revision), (Status::Done, Some(start)));

    let me = Client::new("me");
    let you = Client::new("you");
    let mut c = server.connect();
    let token = c.call(&me.lock("w/a", TTL)).token.unwrap();
    assert_eq!(
        c.call(&me.put("w/k", TTL, "mine", None)).status,
        Status::Done
    );
    assert_eq!(
        c.call(&you.put("w/y", TTL, "yours", None)).status,
        Status::Done
    );
    assert_eq!(c.call(&me.lock("x/outside", TTL)).status, Status::Locked);
    assert_eq!(c.call(&me.unlock("w/a", None)).status, Status::Unlocked);
    assert_eq!(c.call(&me.erase("w/k")).status, Status::Done);
    assert_eq!(
        c.call(&you.acquire(
            "w/s",
            dlm_core::protocol::Shape::Semaphore { permits: 2 },
            TTL,
            None
        ))
        .status,
        Status::Locked
    );
    // A lock that runs out: its expiry is an event too.
    assert_eq!(
        c.call(&me.lock("w/short", Ttl::from_millis(50))).status,
        Status::Locked
    );

    let seen: Vec<Ev> = (0..8).map(|_| event(&mut all)).collect();
    let summary: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|e| (e.what.as_str(), e.kind.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("Granted", "Lock", "w/a"),
            ("Put", "Data", "w/k"),
            ("Put", "Data", "w/y"),
            ("Released", "Lock", "w/a"),
            ("Erased", "Data", "w/k"),
            ("Granted", "Semaphore", "w/s"),
            ("Granted", "Lock", "w/short"),
            ("Expired", "Lock", "w/short"),
        ]
    );
    // In order, one revision each; x/outside took one in between.
    let revs: Vec<u64> = seen.iter().map(|e| e.revision).collect();
    assert_eq!(
        revs,
        [
            start + 1,
            start + 2,
            start + 3,
            start + 5,
            start + 6,
            start + 7,
            start + 8,
            start + 9
        ]
    );
    assert_eq!(seen[0].token, Some(token));
    // Its own value and ID, never another's.
    assert_eq!(
        (seen[1].owner.as_deref(), seen[1].value.as_deref()),
        (Some("me"), Some("mine"))
    );
    assert_eq!(
        (seen[2].owner.as_deref(), seen[2].value.as_deref()),
        (None, None)
    );
    // The watcher of one name saw its two changes, same revisions; the
    // owner "me" is not "other", so no ID.
    let a1 = event(&mut one);
    let a2 = event(&mut one);
    assert_eq!(
        (a1.revision, a1.what.as_str(), a1.owner),
        (start + 1, "Granted", None)
    );
    assert_eq!((a2.revision, a2.what.as_str()), (start + 5, "Released"));

    // A watching connection takes no other request.
    let r = all.call(&me.lock("w/z", TTL));
    assert_eq!(r.status, Status::BadPayload, "{r:?}");
    let stats = server.stats();
    assert_eq!(stats.get(Stat::Watch), 2);
    assert_eq!(stats.get(Stat::AWatch), 2);
    drop(one);
    server.wait_for(LONG, "one watcher fewer", |s| s.get(Stat::AWatch) == 1);
}

#[test]
fn a_watcher_resumes_from_a_revision_or_is_told_to_read_again() {
    let server = Server::with_args(&["--watch-history", "5"]);
    let me = Client::new("me");
    let mut c = server.connect();
    let (mut w, r) = watch(&server, "me", WatchScope::Prefix(""), None);
    let start = r.revision.unwrap();
    assert_eq!(c.call(&me.put("k", TTL, "1", None)).status, Status::Done);
    let first = event(&mut w);
    assert_eq!(first.revision, start + 1);
    drop(w);
    // While it is away: three more changes.
    assert_eq!(c.call(&me.put("k", TTL, "2", None)).status, Status::Done);
    assert_eq!(c.call(&me.lock("l", TTL)).status, Status::Locked);
    assert_eq!(c.call(&me.unlock("l", None)).status, Status::Unlocked);
    // Back, from the last revision it saw: all three, then live ones.
    let (mut w, r) = watch(&server, "me", WatchScope::Prefix(""), Some(first.revision));
    assert_eq!((r.status, r.revision), (Status::Done, Some(start + 4)));
    let again: Vec<(u64, String)> = (0..3)
        .map(|_| {
            let e = event(&mut w);
            (e.revision, e.what)
        })
        .collect();
    assert_eq!(
        again,
        [
            (start + 2, "Put".to_owned()),
            (start + 3, "Granted".to_owned()),
            (start + 4, "Released".to_owned())
        ]
    );
    assert_eq!(c.call(&me.erase("k")).status, Status::Done);
    assert_eq!(event(&mut w).revision, start + 5);
    drop(w);

    // Five changes are kept: resuming from further back is refused.
    for i in 0..6 {
        assert_eq!(
            c.call(&me.put("k", TTL, &i.to_string(), None)).status,
            Status::Done
        );
    }
    let now = start + 11;
    let (_, r) = watch(&server, "me", WatchScope::Prefix(""), Some(start + 5));
    assert_eq!(
        (r.status, r.revision),
        (Status::Conflict, Some(now)),
        "{r:?}"
    );
    assert!(r.error.unwrap().contains("history compacted"));
    // From the oldest kept: fine.
    let (mut w, r) = watch(&server, "me", WatchScope::Prefix(""), Some(now - 5));
    assert_eq!(r.status, Status::Done);
    assert_eq!(event(&mut w).revision, now - 4);
    // From the future (another server's revision): refused too.
    let (_, r) = watch(&server, "me", WatchScope::Prefix(""), Some(now + 100));
    assert_eq!((r.status, r.revision), (Status::Conflict, Some(now)));
    assert_eq!(server.stats().get(Stat::WatchCompacted), 2);
}

#[test]
fn a_slow_watcher_is_cut_off_and_nobody_else_notices() {
    let server = Server::with_args(&["--watch-budget", "64KiB"]);
    let me = Client::new("me");
    // The slow one reads nothing until the end.
    let (mut slow, r) = watch(&server, "me", WatchScope::Prefix("big/"), None);
    assert_eq!(r.status, Status::Done);
    // The healthy one reads everything, on its own thread.
    let (mut fast, r) = watch(&server, "me", WatchScope::Prefix("big/"), None);
    let start = r.revision.unwrap();
    let reader = std::thread::spawn(move || {
        let mut last = start;
        loop {
            match read(&mut fast) {
                Some(Line::Event(e)) => {
                    assert_eq!(e.revision, last + 1, "the healthy watcher missed one");
                    last = e.revision;
                }
                Some(Line::Answer(r)) => panic!("the healthy watcher was told {r:?}"),
                None => return last,
            }
        }
    });
    let value = "v".repeat(16 * 1024);
    let mut c = server.connect();
    let mut puts = 0u64;
    // Bounded: at most 2,000 puts of 16 KiB (32 MiB through loopback).
    while server.stats().get(Stat::WatchCutOff) == 0 {
        assert!(puts < 2_000, "the slow watcher was never cut off");
        for _ in 0..20 {
            assert_eq!(
                c.call(&me.put("big/k", TTL, &value, None)).status,
                Status::Done
            );
            puts += 1;
        }
    }
    // The others were not slowed down or cut: one more change reaches the
    // healthy watcher, and the server answers as ever.
    assert_eq!(c.call(&me.lock("big/lock", TTL)).status, Status::Locked);
    let stats = server.stats();
    assert_eq!(stats.get(Stat::WatchCutOff), 1);
    assert_eq!(stats.get(Stat::AWatch), 1);
    // The slow one gets what was queued, then the reason, then the end:
    // nothing after the cut.
    let mut last = start;
    let told = loop {
        match read(&mut slow) {
            Some(Line::Event(e)) => {
                assert_eq!(e.revision, last + 1);
                last = e.revision;
            }
            Some(Line::Answer(r)) => break r,
            None => panic!("closed without a reason"),
        }
    };
    assert_eq!(told.status, Status::No);
    assert!(
        told.error
            .as_deref()
            .unwrap()
            .contains("too many events unread"),
        "{told:?}"
    );
    assert_eq!(told.revision, Some(last));
    assert!(last < start + puts, "it was cut off before the end");
    assert!(slow.recv_line().is_none(), "a line after the cut-off");
    // Resuming from where it was cut works while the history holds it.
    let (mut back, r) = watch(&server, "me", WatchScope::Prefix("big/"), Some(last));
    assert_eq!(r.status, Status::Done);
    assert_eq!(event(&mut back).revision, last + 1);
    drop(back);
    server.wait_for(LONG, "the resumed watcher gone", |s| {
        s.get(Stat::AWatch) == 1
    });
    // The healthy watcher saw every change, the last lock included; it
    // ends when the server does.
    let mut server = server;
    server.terminate();
    let last_fast = reader.join().unwrap();
    assert_eq!(last_fast, start + puts + 1);
}
