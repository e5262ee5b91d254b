//! Multi-locks through the Rust API, against a real dlm-server:
//! `Client::lock_all`, all or none, waiting in every name's queue, each
//! name with its own token, renewed and released together.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use dlm::{Client, Error, LockState};
use dlm_tests::Server;

fn client(server: &Server) -> Client {
    Client::connect(server.addr()).unwrap()
}

/// Polls `f` every 10 ms until it is true, for at most 10 s.
fn eventually(f: impl FnMut() -> bool) {
    dlm_tests::eventually(Duration::from_secs(10), "condition", f);
}

#[test]
fn all_or_none_with_a_token_per_name_released_together() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    let set = a.lock_all(&["acct/1", "acct/7"]).acquire().unwrap();
    let tokens = set.tokens();
    assert_eq!(tokens.len(), 2);
    assert!(tokens[0].unwrap() < tokens[1].unwrap());
    assert_eq!(set.token("acct/7"), tokens[1]);
    assert_eq!(set.names().collect::<Vec<_>>(), ["acct/1", "acct/7"]);
    // Each name is an ordinary lock.
    assert!(matches!(
        a.test_lock("acct/7").unwrap(),
        LockState::Mine { token, .. } if token == tokens[1]
    ));
    // One held name refuses the whole set, and b takes nothing.
    assert!(matches!(
        b.lock_all(&["acct/2", "acct/7"]).acquire(),
        Err(Error::NotOwner)
    ));
    assert_eq!(b.test_lock("acct/2").unwrap(), LockState::Free);
    set.extend(Duration::from_secs(60)).unwrap();
    assert!(set.remaining() > Duration::from_secs(30));
    set.unlock().unwrap();
    assert_eq!(b.test_lock("acct/1").unwrap(), LockState::Free);
    assert_eq!(b.test_lock("acct/7").unwrap(), LockState::Free);
    // Dropping releases them all too.
    {
        let _set = b.lock_all(&["x", "y", "z"]).acquire().unwrap();
        assert!(a.try_lock("y", Duration::from_secs(1)).unwrap().is_none());
    }
    assert!(a.lock_all(&["x", "y", "z"]).acquire().is_ok());
}

#[test]
fn crossing_waiters_are_served_in_turn_without_deadlock() {
    let server = Server::start();
    let (a, b, c) = (client(&server), client(&server), client(&server));
    let first = a.lock_all(&["p", "q"]).acquire().unwrap();
    let firsts = first.tokens();
    // b wants q then p, c wants p then q: taken one by one, they could
    // each hold one and wait for the other.
    let tb = thread::spawn(move || {
        b.lock_all(&["q", "p"])
            .wait(Duration::from_secs(30))
            .acquire()
            .map(|s| (s.tokens(), s))
    });
    eventually(|| a.stats().unwrap().get(dlm::Stat::AWait) == 1);
    let tc = thread::spawn(move || {
        c.lock_all(&["p", "q"])
            .wait(Duration::from_secs(30))
            .acquire()
            .map(|s| s.tokens())
    });
    eventually(|| a.stats().unwrap().get(dlm::Stat::AWait) == 2);
    first.unlock().unwrap();
    let (bt, bset) = tb.join().unwrap().unwrap();
    assert!(bt[0] > firsts[1], "new grants, greater tokens");
    // c waits for b's set, then gets both.
    assert_eq!(a.stats().unwrap().get(dlm::Stat::AWait), 1);
    drop(bset);
    let ct = tc.join().unwrap().unwrap();
    assert!(ct[0] > bt[1]);
}

#[test]
fn bad_lists_are_refused_before_sending_and_by_the_server() {
    let server = Server::start();
    let a = client(&server);
    for names in [&[][..], &["a", "a"][..]] {
        assert!(matches!(
            a.lock_all(names).acquire(),
            Err(Error::InvalidArgument(_))
        ));
    }
    let many: Vec<String> = (0..17).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        a.lock_all(&refs).acquire(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(a.lock_all(&refs[..16]).acquire().is_ok());
    // A name that is a semaphore is a clear error.
    let _permit = a.semaphore("sem", 2).acquire().unwrap();
    let e = a.lock_all(&["free", "sem"]).acquire().unwrap_err();
    assert!(
        matches!(&e, Error::Mismatch(why) if why.contains("semaphore")),
        "{e:?}"
    );
}

#[test]
fn auto_renew_keeps_every_name() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    let lost = Arc::new(AtomicBool::new(false));
    let l = lost.clone();
    let set = a
        .lock_all(&["r1", "r2"])
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .on_lost(move || l.store(true, Ordering::SeqCst))
        .acquire()
        .unwrap();
    let tokens = set.tokens();
    // Well past the TTL, both are still held with their tokens.
    let renewals = || a.stats().unwrap().get(dlm::Stat::Relock);
    eventually(|| renewals() >= 6);
    for (n, t) in ["r1", "r2"].iter().zip(&tokens) {
        assert!(matches!(
            a.test_lock(n).unwrap(),
            LockState::Mine { token, .. } if token == *t
        ));
    }
    assert!(b.try_lock("r2", Duration::from_secs(1)).unwrap().is_none());
    assert!(!set.is_lost() && !lost.load(Ordering::SeqCst));
    set.unlock().unwrap();
    assert!(b.try_lock("r2", Duration::from_secs(1)).unwrap().is_some());
}
