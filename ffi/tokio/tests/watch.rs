//! Watches through the async client against a real dlm-server: a `Stream`
//! of events in order, values only to their owner, and a stream nobody
//! polls for a while cut off by the server and resumed without a gap.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use dlm_tests::Server;
use dlm_tokio::{Client, Error, Stat, Subject, What};
use futures_core::Stream as _;

const TTL: Duration = Duration::from_secs(60);

async fn named(server: &Server, id: &str) -> Client {
    Client::builder()
        .client_id(id)
        .connect(server.addr())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stream_of_events_in_order() {
    let server = Server::start();
    let me = named(&server, "me").await;
    let you = named(&server, "you").await;
    let mut watch = me.watch_prefix("jobs/").start().await.unwrap();
    let start = watch.revision().unwrap();
    let lock = me.lock("jobs/1").ttl(TTL).acquire().await.unwrap();
    me.put("jobs/state", b"running", TTL).await.unwrap();
    you.put("jobs/theirs", b"secret", TTL).await.unwrap();
    lock.unlock().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        // Through the Stream trait itself.
        let e = poll_fn(|cx| Pin::new(&mut watch).poll_next(cx))
            .await
            .unwrap()
            .unwrap();
        got.push(e);
    }
    assert_eq!(
        got.iter()
            .map(|e| (e.revision - start, e.what, e.subject, e.name.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, What::Granted, Subject::Lock, "jobs/1"),
            (2, What::Put, Subject::Data, "jobs/state"),
            (3, What::Put, Subject::Data, "jobs/theirs"),
            (4, What::Released, Subject::Lock, "jobs/1"),
        ]
    );
    assert_eq!(got[1].value.as_deref(), Some(&b"running"[..]));
    assert_eq!(got[2].value, None);
    assert_eq!(watch.revision(), Some(start + 4));
}

#[tokio::test]
async fn a_stream_not_polled_is_cut_off_and_resumes_without_a_gap() {
    let server = Server::with_args(&["--watch-budget", "64KiB"]);
    let me = named(&server, "me").await;
    let mut watch = me.watch_prefix("big/").start().await.unwrap();
    let start = watch.revision().unwrap();
    let value = vec![b'v'; 8 * 1024];
    let mut puts = 0u64;
    while me.stats().await.unwrap().get(Stat::WatchCutOff) == 0 {
        assert!(puts < 1_500, "the watcher was never cut off");
        for _ in 0..10 {
            me.put("big/k", &value, TTL).await.unwrap();
            puts += 1;
        }
    }
    for n in 1..=puts {
        let e = watch.next().await.unwrap().unwrap();
        assert_eq!(e.revision, start + n);
    }
    let stats = me.stats().await.unwrap();
    assert_eq!(stats.get(Stat::WatchCutOff), 1);
    assert_eq!(stats.get(Stat::Watch), 2, "it reconnected once");
    // Dropping the stream closes its connection.
    drop(watch);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while me.stats().await.unwrap().get(Stat::AWatch) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch stayed open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_resume_past_the_history_is_a_conflict() {
    let server = Server::with_args(&["--watch-history", "2"]);
    let me = named(&server, "me").await;
    let from = me
        .watch_name("k")
        .unwrap()
        .start()
        .await
        .unwrap()
        .revision()
        .unwrap();
    for i in 0..3u8 {
        me.put("k", &[i], TTL).await.unwrap();
    }
    match me.watch_name("k").unwrap().since(from).start().await {
        Err(Error::Conflict { current }) => assert_eq!(current.0, from + 3),
        other => panic!("{other:?}"),
    }
}
