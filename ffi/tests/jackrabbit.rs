//! The Rust client (and so libdlm, C, Go and the CLI) against a stand-in for
//! the original JackrabbitDLM server (`dlm_tests::jackrabbit`): legacy
//! framing, one request per connection, grants without tokens, no wait
//! queue, no revisions, no `TestLock` or `Stats`.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use dlm::{Client, Error, Framing, Options, Revision};
use dlm_tests::jackrabbit::Jackrabbit;

fn legacy(server: &Jackrabbit, id: &str) -> Client {
    Client::connect_with(
        server.addr(),
        Options {
            framing: Framing::Legacy,
            client_id: Some(id.into()),
            ..Options::default()
        },
    )
    .unwrap()
}

/// Polls `f` every 10 ms until it is true, for at most 5 s.
fn eventually(f: impl FnMut() -> bool) {
    dlm_tests::eventually(Duration::from_secs(5), "condition", f);
}

#[test]
fn a_lock_without_a_token_is_held_extended_and_released() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a"), legacy(&server, "b"));
    // Each call below is answered on a connection the server then closes.
    assert!(a.version().unwrap().starts_with("JackrabbitDLM/"));
    let lock = a.lock("job").ttl(Duration::from_secs(5)).acquire().unwrap();
    assert_eq!(lock.token(), None, "no fencing from this server");
    assert!(lock.remaining() > Duration::from_secs(4));
    assert!(!lock.is_lost());
    assert!(b.try_lock("job", Duration::from_secs(1)).unwrap().is_none());
    // An extension is a plain re-lock: the server's answer has no token.
    lock.extend(Duration::from_secs(20)).unwrap();
    assert!(lock.remaining() > Duration::from_secs(19));
    lock.unlock().unwrap();
    let other = b.try_lock("job", Duration::from_secs(1)).unwrap().unwrap();
    assert_eq!(other.token(), None);
}

#[test]
fn a_wait_is_answered_at_once_and_is_not_a_timeout() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a"), legacy(&server, "b"));
    let _held = a.lock("busy").acquire().unwrap();
    let start = Instant::now();
    let r = b.lock("busy").wait(Duration::from_secs(30)).acquire();
    assert!(matches!(r, Err(Error::NotOwner)), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn auto_renewal_keeps_the_lock_by_re_locking() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a"), legacy(&server, "b"));
    let lost = Arc::new(AtomicBool::new(false));
    let flag = lost.clone();
    let lock = a
        .lock("renewed")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .on_lost(move || flag.store(true, Ordering::SeqCst))
        .acquire()
        .unwrap();
    // Four TTLs: only renewals keep it.
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        assert!(
            b.try_lock("renewed", Duration::from_secs(1))
                .unwrap()
                .is_none()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!lock.is_lost() && !lost.load(Ordering::SeqCst));
    lock.unlock().unwrap();
    assert!(
        b.try_lock("renewed", Duration::from_secs(1))
            .unwrap()
            .is_some()
    );
}

#[test]
fn an_expired_lock_is_never_re_acquired_by_an_extension() {
    let server = Jackrabbit::start();
    let (a, b) = (legacy(&server, "a"), legacy(&server, "b"));
    let lock = a
        .lock("brief")
        .ttl(Duration::from_millis(100))
        .acquire()
        .unwrap();
    // Once the server let it go, someone else takes it ...
    let mut theirs = None;
    eventually(|| {
        theirs = b.try_lock("brief", Duration::from_secs(10)).unwrap();
        theirs.is_some()
    });
    // ... and the first holder's extension, a re-lock on this server,
    // must not be sent: it would take the lock anew if it were free.
    assert!(matches!(
        lock.extend(Duration::from_secs(10)),
        Err(Error::LockLost)
    ));
    assert!(lock.is_lost());
    assert!(matches!(lock.unlock(), Err(Error::LockLost)));
    assert!(
        a.try_lock("brief", Duration::from_secs(1))
            .unwrap()
            .is_none()
    );
    drop(theirs);
}

#[test]
fn values_without_revisions_and_no_compare_and_set() {
    let server = Jackrabbit::start();
    let a = legacy(&server, "a");
    assert_eq!(
        a.put("k", b"\x00\xffbytes", Duration::from_secs(10))
            .unwrap(),
        Revision(0)
    );
    let v = a.get("k").unwrap().unwrap();
    assert_eq!(v.data, b"\x00\xffbytes");
    assert_eq!((v.revision, v.ttl), (Revision(0), Duration::ZERO));
    // The server ignores Revision and writes anyway: that is an error.
    let r = a.put_if("k", b"x", Duration::from_secs(10), Revision(7));
    match r {
        Err(Error::Protocol(why)) => assert!(why.contains("compare-and-set"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        legacy(&server, "b").get("k"),
        Err(Error::NotOwner)
    ));
    assert!(a.erase("k").unwrap());
    assert!(!a.erase("k").unwrap());
    assert_eq!(a.get("k").unwrap(), None);
}

#[test]
fn actions_it_does_not_know_are_bad_requests_that_say_so() {
    let server = Jackrabbit::start();
    let a = legacy(&server, "a");
    for r in [a.test_lock("x").map(drop), a.stats().map(drop)] {
        match r {
            Err(e @ Error::BadRequest(_)) => {
                assert!(e.to_string().contains("does not know"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn plain_json_is_not_its_framing() {
    let server = Jackrabbit::start();
    let r = Client::connect(server.addr()).unwrap().version();
    assert!(matches!(r, Err(Error::BadRequest(_))), "{r:?}");
}
