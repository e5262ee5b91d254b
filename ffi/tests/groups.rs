//! Semaphores and read/write locks through the Rust API, against a real
//! dlm-server: `Client::semaphore`, `read_lock`, `write_lock`, and the
//! same guard as a lock (token, extension, renewal, release on drop).

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::thread;
use std::time::{Duration, Instant};

use dlm::{Client, Error};
use dlm_tests::Server;

fn client(server: &Server) -> Client {
    Client::connect(server.addr()).unwrap()
}

/// Polls `f` every 10 ms until it is true, for at most 10 s.
fn eventually(f: impl FnMut() -> bool) {
    dlm_tests::eventually(Duration::from_secs(10), "condition", f);
}

#[test]
fn a_semaphore_gives_each_holder_its_own_token_and_frees_a_permit_on_drop() {
    let server = Server::start();
    let (a, b, c) = (client(&server), client(&server), client(&server));
    let one = a.semaphore("pool", 2).acquire().unwrap();
    let two = a.semaphore("pool", 2).acquire().unwrap();
    assert!(one.token().unwrap() < two.token().unwrap());
    assert!(matches!(
        b.semaphore("pool", 2).acquire(),
        Err(Error::NotOwner)
    ));
    // Another size is a clear error, not a wait.
    let e = b
        .semaphore("pool", 5)
        .wait(Duration::from_secs(5))
        .acquire()
        .unwrap_err();
    let Error::Mismatch(why) = &e else {
        panic!("{e:?}")
    };
    assert!(why.contains("semaphore of 2 permits"), "{e}");
    assert_eq!(e.kind(), dlm::ErrorKind::Conflict);
    // b waits; dropping one guard hands its permit over.
    let waiter = thread::spawn(move || {
        b.semaphore("pool", 2)
            .wait(Duration::from_secs(30))
            .acquire()
            .map(|g| g.token())
    });
    eventually(|| c.stats().unwrap().get(dlm::Stat::AWait) == 1);
    let t1 = one.token().unwrap();
    drop(one);
    let tb = waiter.join().unwrap().unwrap().unwrap();
    assert!(tb > two.token().unwrap() && tb > t1);
    two.extend(Duration::from_secs(20)).unwrap();
    two.unlock().unwrap();
    assert_eq!(c.stats().unwrap().get(dlm::Stat::AWait), 0);
}

#[test]
fn read_locks_share_and_a_write_lock_waits_for_them() {
    let server = Server::start();
    let (a, b, w) = (client(&server), client(&server), client(&server));
    let r1 = a.read_lock("cfg").acquire().unwrap();
    let r2 = b.read_lock("cfg").acquire().unwrap();
    assert!(matches!(
        w.write_lock("cfg").acquire(),
        Err(Error::NotOwner)
    ));
    assert!(matches!(w.lock("cfg").acquire(), Err(Error::NotOwner)));
    let writer = thread::spawn(move || {
        let g = w
            .write_lock("cfg")
            .wait(Duration::from_secs(30))
            .acquire()
            .unwrap();
        (g.token().unwrap(), w)
    });
    eventually(|| a.stats().unwrap().get(dlm::Stat::AWait) == 1);
    // A reader behind the waiting writer does not get in.
    assert!(matches!(a.read_lock("cfg").acquire(), Err(Error::NotOwner)));
    drop(r1);
    assert_eq!(a.stats().unwrap().get(dlm::Stat::AWait), 1);
    r2.unlock().unwrap();
    let (token, _w) = writer.join().unwrap();
    assert!(token.0 > 0);
}

#[test]
fn an_auto_renewed_permit_outlives_its_ttl() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    let held = a
        .semaphore("renewed", 1)
        .ttl(Duration::from_millis(600))
        .auto_renew(true)
        .acquire()
        .unwrap();
    let token = held.token();
    // Three TTLs later it is still held, by its first token (extended,
    // never re-acquired).
    let until = Instant::now() + Duration::from_millis(1800);
    while Instant::now() < until {
        assert!(matches!(
            b.semaphore("renewed", 1).acquire(),
            Err(Error::NotOwner)
        ));
        assert!(!held.is_lost());
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(held.token(), token);
    drop(held);
    assert!(b.semaphore("renewed", 1).acquire().is_ok());
}
