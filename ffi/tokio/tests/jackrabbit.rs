//! The async client against a stand-in for the original JackrabbitDLM
//! server (`dlm_tests::jackrabbit`): legacy framing, one request per
//! connection, grants without tokens, no wait queue, no revisions, no
//! `TestLock` or `Stats`. The same checks as the blocking client's
//! `ffi/tests/jackrabbit.rs`.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

mod common;

use std::time::Duration;

use common::eventually_some;
use dlm_tests::jackrabbit::Jackrabbit;
use dlm_tokio::{Client, Error, Framing, Revision};
use tokio::time::{Instant, timeout};

const SECOND: Duration = Duration::from_secs(1);

async fn legacy(server: &Jackrabbit, id: &str) -> Client {
    Client::builder()
        .framing(Framing::Legacy)
        .client_id(id)
        .connect(server.addr())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lock_without_a_token_is_held_extended_and_released() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a").await, legacy(&server, "b").await);
    // Each call below is answered on a connection the server then closes.
    assert!(a.version().await.unwrap().starts_with("JackrabbitDLM/"));
    let lock = a.lock("job").ttl(5 * SECOND).acquire().await.unwrap();
    assert_eq!(lock.token(), None, "no fencing from this server");
    assert!(lock.remaining() > 4 * SECOND);
    assert!(!lock.is_lost());
    assert!(b.try_lock("job", SECOND).await.unwrap().is_none());
    // An extension is a plain re-lock: the server's answer has no token.
    lock.extend(20 * SECOND).await.unwrap();
    assert!(lock.remaining() > 19 * SECOND);
    lock.unlock().await.unwrap();
    let other = b.try_lock("job", SECOND).await.unwrap().unwrap();
    assert_eq!(other.token(), None);
}

#[tokio::test]
async fn a_wait_is_answered_at_once_and_is_not_a_timeout() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a").await, legacy(&server, "b").await);
    let _held = a.lock("busy").acquire().await.unwrap();
    let start = Instant::now();
    let r = b.lock("busy").wait(30 * SECOND).acquire().await;
    assert!(matches!(r, Err(Error::NotOwner)), "{r:?}");
    assert!(start.elapsed() < 5 * SECOND);
}

#[tokio::test]
async fn auto_renewal_keeps_the_lock_by_re_locking() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a").await, legacy(&server, "b").await);
    let lock = a
        .lock("renewed")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    // Four TTLs, and a lock that only renewals keep: it is never lost and
    // never free. (This server has no statistics to wait on.)
    let held = timeout(Duration::from_millis(1200), async {
        loop {
            assert!(b.try_lock("renewed", SECOND).await.unwrap().is_none());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(held.is_err(), "ran the whole time");
    assert!(!lock.is_lost());
    lock.unlock().await.unwrap();
    assert!(b.try_lock("renewed", SECOND).await.unwrap().is_some());
}

#[tokio::test]
async fn an_expired_lock_is_never_re_acquired_by_an_extension() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a").await, legacy(&server, "b").await);
    let lock = a
        .lock("brief")
        .ttl(Duration::from_millis(100))
        .acquire()
        .await
        .unwrap();
    // Once the server let it go, someone else takes it ...
    let theirs =
        eventually_some(|| async { b.try_lock("brief", 10 * SECOND).await.unwrap() }).await;
    // ... and the first holder's extension, a re-lock on this server, must
    // not be sent: it would take the lock anew if it were free.
    assert!(matches!(
        lock.extend(10 * SECOND).await,
        Err(Error::LockLost)
    ));
    assert!(lock.is_lost());
    timeout(SECOND, lock.lost()).await.unwrap();
    assert!(matches!(lock.unlock().await, Err(Error::LockLost)));
    assert!(a.try_lock("brief", SECOND).await.unwrap().is_none());
    drop(theirs);
}

#[tokio::test]
async fn values_without_revisions_and_no_compare_and_set() {
    let server = Jackrabbit::start();
    let a = legacy(&server, "a").await;
    assert_eq!(
        a.put("k", b"\x00\xffbytes", 10 * SECOND).await.unwrap(),
        Revision(0)
    );
    let v = a.get("k").await.unwrap().unwrap();
    assert_eq!(v.data, b"\x00\xffbytes");
    assert_eq!((v.revision, v.ttl), (Revision(0), Duration::ZERO));
    // The server ignores Revision and writes anyway: that is an error.
    match a.put_if("k", b"x", 10 * SECOND, Revision(7)).await {
        Err(Error::Protocol(why)) => assert!(why.contains("compare-and-set"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        legacy(&server, "b").await.get("k").await,
        Err(Error::NotOwner)
    ));
    assert!(a.erase("k").await.unwrap());
    assert!(!a.erase("k").await.unwrap());
    assert_eq!(a.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn actions_it_does_not_know_are_bad_requests_that_say_so() {
    let server = Jackrabbit::start();
    let a = legacy(&server, "a").await;
    for r in [a.test_lock("x").await.map(drop), a.stats().await.map(drop)] {
        match r {
            Err(e @ Error::BadRequest(_)) => {
                assert!(e.to_string().contains("does not know"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn plain_json_is_not_its_framing() {
    let server = Jackrabbit::start();
    let r = Client::connect(server.addr())
        .await
        .unwrap()
        .version()
        .await;
    assert!(matches!(r, Err(Error::BadRequest(_))), "{r:?}");
}
