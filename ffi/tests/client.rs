//! The Rust API against a real dlm-server.

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

use dlm::{CancelToken, Client, Error, LockState, Options, Revision, SealedEncoder};
use dlm_tests::Server;

fn client(server: &Server) -> Client {
    Client::connect(server.addr()).unwrap()
}

/// Polls `f` every 10 ms until it is true, for at most 5 s: how these tests
/// wait for something to happen, rather than sleeping and hoping.
fn eventually(f: impl FnMut() -> bool) {
    dlm_tests::eventually(Duration::from_secs(5), "condition", f);
}

/// Waits until the server has `n` waiters queued.
fn until_waiting(c: &Client, n: u64) {
    eventually(|| c.stats().unwrap().get(dlm::Stat::AWait) == n);
}

#[test]
fn ids_are_random_48_url_safe_characters() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    assert_eq!(a.id().len(), 48);
    assert!(
        a.id()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_ne!(a.id(), b.id());
    let named = Client::connect_with(
        server.addr(),
        Options {
            client_id: Some("me".into()),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(named.id(), "me");
}

#[test]
fn lock_extend_unlock_and_fencing() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    let lock = a.lock("res").ttl(Duration::from_secs(5)).acquire().unwrap();
    assert!(lock.remaining() > Duration::from_secs(4));
    assert!(matches!(b.lock("res").acquire(), Err(Error::NotOwner)));
    assert!(b.try_lock("res", Duration::from_secs(1)).unwrap().is_none());
    match b.test_lock("res").unwrap() {
        LockState::Taken { remaining } => assert!(remaining.unwrap() <= Duration::from_secs(5)),
        other => panic!("{other:?}"),
    }
    match a.test_lock("res").unwrap() {
        LockState::Mine { token, .. } => assert_eq!(token, lock.token()),
        other => panic!("{other:?}"),
    }
    lock.extend(Duration::from_secs(20)).unwrap();
    assert!(lock.remaining() > Duration::from_secs(19));
    let first = lock.token();
    lock.unlock().unwrap();
    let again = b.try_lock("res", Duration::from_secs(1)).unwrap().unwrap();
    assert!(again.token() > first);
}

#[test]
fn an_expired_lock_is_lost_and_never_resurrected() {
    let server = Server::start();
    let a = client(&server);
    let lock = a
        .lock("x")
        .ttl(Duration::from_millis(100))
        .acquire()
        .unwrap();
    eventually(|| a.test_lock("x").unwrap() == LockState::Free);
    assert!(matches!(
        lock.extend(Duration::from_secs(10)),
        Err(Error::LockLost)
    ));
    assert!(lock.is_lost());
    assert_eq!(a.test_lock("x").unwrap(), LockState::Free);
    assert!(matches!(lock.unlock(), Err(Error::LockLost)));
}

#[test]
fn drop_releases() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    {
        let _held = a.lock("d").acquire().unwrap();
        assert!(b.try_lock("d", Duration::from_secs(1)).unwrap().is_none());
    }
    assert!(b.try_lock("d", Duration::from_secs(1)).unwrap().is_some());
}

#[test]
fn waiting_is_fair_and_times_out() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    let held = a.lock("w").acquire().unwrap();
    let start = Instant::now();
    let r = b.lock("w").wait(Duration::from_millis(300)).acquire();
    assert!(matches!(r, Err(Error::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(280));
    let waiter = thread::spawn(move || {
        b.lock("w")
            .wait(Duration::from_secs(10))
            .acquire()
            .map(|l| l.token())
    });
    until_waiting(&a, 1);
    let first = held.token();
    held.unlock().unwrap();
    assert!(waiter.join().unwrap().unwrap() > first);
}

#[test]
fn cancel_aborts_a_waiting_acquire_at_once() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    let _held = a.lock("c").acquire().unwrap();
    let token = CancelToken::new();
    let t2 = token.clone();
    let waiter = thread::spawn(move || {
        let start = Instant::now();
        let r = b
            .lock("c")
            .wait(Duration::from_secs(30))
            .cancel(&t2)
            .acquire();
        (r.map(|l| l.token()), start.elapsed())
    });
    until_waiting(&a, 1);
    let cancelled_at = Instant::now();
    token.cancel();
    let (r, _) = waiter.join().unwrap();
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert!(cancelled_at.elapsed() < Duration::from_millis(50));
    // The server dropped the waiter.
    until_waiting(&a, 0);
    // A cancelled token cancels at once.
    let c = client(&server);
    assert!(matches!(
        c.lock("c")
            .wait(Duration::from_secs(5))
            .cancel(&token)
            .acquire(),
        Err(Error::Cancelled)
    ));
}

#[test]
fn auto_renew_keeps_a_short_lock_and_reports_loss() {
    let mut server = Server::start();
    let (a, b) = (client(&server), client(&server));
    let lost = Arc::new(AtomicBool::new(false));
    let flag = lost.clone();
    let lock = a
        .lock("r")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .on_lost(move || flag.store(true, Ordering::SeqCst))
        .acquire()
        .unwrap();
    // Over three TTLs, only renewals keep it held.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(
            b.try_lock("r", Duration::from_secs(1)).unwrap().is_none(),
            "still held"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!lock.is_lost());
    // The server goes away: renewals fail until the deadline passes.
    server.terminate();
    eventually(|| lost.load(Ordering::SeqCst));
    assert!(lock.is_lost());
    assert_eq!(lock.remaining(), Duration::ZERO);
}

#[test]
fn a_name_with_nul_is_locked_renewed_and_released_like_any_other() {
    let server = Server::start();
    let (a, b) = (client(&server), client(&server));
    // The renewal thread was once named after the lock, which panicked
    // after the grant for a name holding NUL, leaving the lock held.
    let lock = a
        .lock("nul\0name")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .acquire()
        .unwrap();
    assert!(lock.token().is_some());
    assert!(matches!(
        b.test_lock("nul\0name").unwrap(),
        LockState::Taken { .. }
    ));
    assert_eq!(b.test_lock("nul").unwrap(), LockState::Free);
    lock.extend(Duration::from_millis(300)).unwrap();
    lock.unlock().unwrap();
    assert_eq!(b.test_lock("nul\0name").unwrap(), LockState::Free);
}

#[test]
fn values_round_trip_with_cas() {
    let server = Server::start();
    let a = client(&server);
    assert_eq!(a.get("k").unwrap(), None);
    let r1 = a
        .put("k", b"\x00\xffbinary", Duration::from_secs(10))
        .unwrap();
    assert_eq!(r1, Revision(1));
    let v = a.get("k").unwrap().unwrap();
    assert_eq!(v.data, b"\x00\xffbinary");
    assert_eq!(v.revision, Revision(1));
    assert!(matches!(
        a.put_if("k", b"x", Duration::from_secs(10), Revision(7)),
        Err(Error::Conflict {
            current: Revision(1)
        })
    ));
    assert_eq!(
        a.put_if("k", b"y", Duration::from_secs(10), Revision(1))
            .unwrap(),
        Revision(2)
    );
    assert!(a.erase("k").unwrap());
    assert!(!a.erase("k").unwrap());
    assert!(matches!(client(&server).get("k"), Ok(None)));
    assert!(a.version().unwrap().contains("JackrabbitDLM"));
}

#[test]
fn sealed_values_are_ciphertext_on_the_server() {
    let server = Server::start();
    let key = SealedEncoder::generate_key().unwrap();
    // Built with the builder, as a user would.
    let sealed = Client::connect_with(
        server.addr(),
        Options::new()
            .client_id("s")
            .encoder(SealedEncoder::new(key))
            .max_idle(2),
    )
    .unwrap();
    sealed
        .put("cfg", b"db-password", Duration::from_secs(10))
        .unwrap();
    assert_eq!(sealed.get("cfg").unwrap().unwrap().data, b"db-password");
    // Read raw (same owner, table encoder): not the plaintext.
    let raw = Client::connect_with(
        server.addr(),
        Options {
            client_id: Some("s".into()),
            ..Options::default()
        },
    )
    .unwrap();
    // The table codec says who wrote it, not "pair at offset 0 ...".
    match raw.get("cfg") {
        Err(e @ Error::Encoding(_)) => {
            assert!(
                e.to_string().contains("written with the sealed encoder"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut conn = server.connect();
    let r = conn.call(&dlm_core::client::Client::new("s").get("cfg"));
    assert!(r.data.unwrap().starts_with("dlmseal1."));
}

#[test]
fn a_restarted_server_is_reconnected_transparently() {
    let mut server = Server::start();
    let addr = server.addr();
    let a = client(&server);
    a.put("k", b"v", Duration::from_secs(10)).unwrap();
    server.terminate();
    assert!(matches!(a.version(), Err(Error::Unavailable(_))));
    // A new server on the same port: the pooled connection is stale.
    let _server = Server::on_port(addr.port(), &[]);
    assert!(a.version().is_ok());
}

#[test]
fn unreachable_servers_fail_with_unavailable() {
    let r = Client::connect_with(
        "127.0.0.1:1",
        Options {
            connect_attempts: 2,
            ..Options::default()
        },
    );
    assert!(matches!(r, Err(Error::Unavailable(_))));
}

#[test]
fn the_options_builder_sets_each_field() {
    let o = Options::new()
        .connect_timeout(Duration::from_millis(1500))
        .io_timeout(Duration::from_secs(2))
        .client_id("me")
        .framing(dlm::Framing::Legacy)
        .credentials("name", "secret")
        .connect_attempts(7)
        .max_idle(16);
    assert_eq!(o.connect_timeout, Duration::from_millis(1500));
    assert_eq!(o.io_timeout, Duration::from_secs(2));
    assert_eq!(o.client_id.as_deref(), Some("me"));
    assert_eq!(o.framing, dlm::Framing::Legacy);
    assert_eq!(o.credentials, Some(("name".into(), "secret".into())));
    assert_eq!((o.connect_attempts, o.max_idle), (7, 16));
    // The secret stays out of Debug.
    assert!(!format!("{o:?}").contains("secret\""), "{o:?}");
}
