//! Watches through the Rust API against a real dlm-server: events as an
//! iterator, values only to their owner, a watcher that the server cuts
//! off resuming with no gap, and the answer when history is gone.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::ops::ControlFlow;
use std::time::Duration;

use dlm::{Client, Error, Options, Stat, Subject, What};
use dlm_tests::Server;

const TTL: Duration = Duration::from_secs(60);

#[test]
fn events_arrive_in_order_with_values_for_their_owner() {
    let server = Server::start();
    let me = Client::connect_with(server.addr(), Options::new().client_id("me")).unwrap();
    let you = Client::connect_with(server.addr(), Options::new().client_id("you")).unwrap();
    let mut watch = me.watch_prefix("jobs/").start().unwrap();
    let start = watch.revision().unwrap();
    // Nothing yet.
    assert_eq!(watch.next_timeout(Duration::from_millis(20)).unwrap(), None);

    let lock = me.lock("jobs/1").ttl(TTL).acquire().unwrap();
    me.put("jobs/state", b"running", TTL).unwrap();
    you.put("jobs/theirs", b"secret", TTL).unwrap();
    me.put("elsewhere", b"x", TTL).unwrap();
    lock.unlock().unwrap();

    let events: Vec<dlm::Event> = watch.by_ref().take(4).map(Result::unwrap).collect();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.what, e.subject, e.name.as_str()))
            .collect::<Vec<_>>(),
        [
            (What::Granted, Subject::Lock, "jobs/1"),
            (What::Put, Subject::Data, "jobs/state"),
            (What::Put, Subject::Data, "jobs/theirs"),
            (What::Released, Subject::Lock, "jobs/1"),
        ]
    );
    assert_eq!(
        events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [start + 1, start + 2, start + 3, start + 5]
    );
    // Decoded with the client's encoder, and only its own.
    assert_eq!(events[1].value.as_deref(), Some(&b"running"[..]));
    assert_eq!(events[1].owner.as_deref(), Some("me"));
    assert_eq!(
        (events[2].value.as_ref(), events[2].owner.as_ref()),
        (None, None)
    );
    assert_eq!(watch.revision(), Some(start + 5));

    // A callback until it says stop.
    me.erase("jobs/state").unwrap();
    let mut seen = Vec::new();
    watch
        .for_each_event(|e| {
            seen.push((e.what, e.name));
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(seen, [(What::Erased, "jobs/state".to_owned())]);
}

#[test]
fn a_watcher_cut_off_for_reading_slowly_resumes_without_a_gap() {
    let server = Server::with_args(&["--watch-budget", "64KiB"]);
    let me = Client::connect_with(server.addr(), Options::new().client_id("me")).unwrap();
    let mut watch = me.watch_prefix("big/").start().unwrap();
    let start = watch.revision().unwrap();
    // The watch reads nothing while the server piles events up for it.
    let value = vec![b'v'; 8 * 1024];
    let mut puts = 0u64;
    while me.stats().unwrap().get(Stat::WatchCutOff) == 0 {
        assert!(puts < 1_500, "the watcher was never cut off");
        for _ in 0..10 {
            me.put("big/k", &value, TTL).unwrap();
            puts += 1;
        }
    }
    // Reading now: what was queued, then (after the cut-off line) a new
    // connection that resumes where it was cut. Every revision, once.
    for n in 1..=puts {
        let e = watch.next_event().unwrap();
        assert_eq!(e.revision, start + n);
        assert_eq!(e.data_revision.unwrap().0, n);
    }
    let stats = me.stats().unwrap();
    assert_eq!(stats.get(Stat::WatchCutOff), 1);
    assert_eq!(stats.get(Stat::Watch), 2, "it reconnected once");
}

#[test]
fn a_resume_past_the_history_is_a_conflict() {
    let server = Server::with_args(&["--watch-history", "3"]);
    let me = Client::connect(server.addr()).unwrap();
    let watch = me.watch_name("k").unwrap().start().unwrap();
    let from = watch.revision().unwrap();
    drop(watch);
    for i in 0..5u8 {
        me.put("k", &[i], TTL).unwrap();
    }
    match me.watch_name("k").unwrap().since(from).start() {
        Err(Error::Conflict { current }) => assert_eq!(current.0, from + 5),
        other => panic!("{other:?}"),
    }
    // From the oldest still kept: the last three.
    let mut w = me.watch_name("k").unwrap().since(from + 2).start().unwrap();
    let revs: Vec<u64> = w.by_ref().take(3).map(|e| e.unwrap().revision).collect();
    assert_eq!(revs, [from + 3, from + 4, from + 5]);
}
