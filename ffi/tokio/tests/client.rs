//! The async client against a real dlm-server: the behaviours the blocking
//! client's tests (`ffi/tests/client.rs`) check, and what is the async
//! client's own (cancellation by dropping a future, `lost()`, tasks sharing
//! one client).

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

mod common;

use std::time::Duration;

use common::{client, eventually, eventually_some, until_stat, until_waiting};
use dlm_tests::Server;
use dlm_tokio::{Client, Error, LockState, Revision, SealedEncoder, Stat};
use tokio::time::{Instant, timeout};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn ids_are_random_48_url_safe_characters() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    assert_eq!(a.id().len(), 48);
    assert!(
        a.id()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_ne!(a.id(), b.id());
    let named = Client::builder()
        .client_id("me")
        .connect(server.addr())
        .await
        .unwrap();
    assert_eq!(named.id(), "me");
    assert_eq!(named.with_id("you").unwrap().id(), "you");
    assert!(matches!(named.with_id(""), Err(Error::InvalidArgument(_))));
    let empty = Client::builder().client_id("").connect(server.addr()).await;
    assert!(matches!(empty, Err(Error::InvalidArgument(_))));
}

#[tokio::test]
async fn lock_extend_unlock_and_fencing() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let lock = a.lock("res").ttl(5 * SECOND).acquire().await.unwrap();
    assert_eq!(lock.name(), "res");
    assert!(lock.remaining() > 4 * SECOND);
    assert!(matches!(
        b.lock("res").acquire().await,
        Err(Error::NotOwner)
    ));
    assert!(b.try_lock("res", SECOND).await.unwrap().is_none());
    match b.test_lock("res").await.unwrap() {
        LockState::Taken { remaining } => assert!(remaining.unwrap() <= 5 * SECOND),
        other => panic!("{other:?}"),
    }
    match a.test_lock("res").await.unwrap() {
        LockState::Mine { token, .. } => assert_eq!(token, lock.token()),
        other => panic!("{other:?}"),
    }
    lock.extend(20 * SECOND).await.unwrap();
    assert!(lock.remaining() > 19 * SECOND);
    assert!(matches!(
        lock.extend(Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
    let first = lock.token();
    lock.unlock().await.unwrap();
    let again = b.try_lock("res", SECOND).await.unwrap().unwrap();
    assert!(again.token() > first);
    // By name and token, for tools.
    assert!(matches!(a.unlock("res", None).await, Err(Error::NotOwner)));
    assert!(b.unlock("res", again.token()).await.unwrap());
    assert!(matches!(again.unlock().await, Err(Error::LockLost)));
}

#[tokio::test]
async fn invalid_arguments_send_nothing() {
    let server = Server::start();
    let a = client(&server).await;
    for r in [
        a.lock("").acquire().await.map(drop),
        a.lock("x").ttl(Duration::ZERO).acquire().await.map(drop),
        a.put("", b"v", SECOND).await.map(drop),
        a.put("k", b"v", Duration::ZERO).await.map(drop),
        a.get("").await.map(drop),
        a.erase("").await.map(drop),
        a.test_lock("").await.map(drop),
    ] {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    let bad = Client::connect("no port here").await;
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
}

#[tokio::test]
async fn an_expired_lock_is_lost_and_never_resurrected() {
    let server = Server::start();
    let a = client(&server).await;
    let lock = a
        .lock("x")
        .ttl(Duration::from_millis(100))
        .acquire()
        .await
        .unwrap();
    // Without renewal, lost() resolves at the deadline.
    timeout(5 * SECOND, lock.lost()).await.unwrap();
    assert!(lock.is_lost());
    assert_eq!(lock.remaining(), Duration::ZERO);
    eventually(|| async { a.test_lock("x").await.unwrap() == LockState::Free }).await;
    assert!(matches!(
        lock.extend(10 * SECOND).await,
        Err(Error::LockLost)
    ));
    assert_eq!(a.test_lock("x").await.unwrap(), LockState::Free);
    assert!(matches!(lock.unlock().await, Err(Error::LockLost)));
}

#[tokio::test]
async fn drop_releases() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    {
        let _held = a.lock("d").acquire().await.unwrap();
        assert!(b.try_lock("d", SECOND).await.unwrap().is_none());
    }
    // Released by a spawned task, by token.
    until_stat(&b, Stat::Unlock, 1).await;
    assert!(b.try_lock("d", SECOND).await.unwrap().is_some());
}

#[tokio::test]
async fn waiting_is_fair_and_times_out() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let held = a.lock("w").acquire().await.unwrap();
    let start = Instant::now();
    let r = b.lock("w").wait(Duration::from_millis(300)).acquire().await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(start.elapsed() >= Duration::from_millis(280));
    // Two waiters of different owners are served in arrival order.
    let c = client(&server).await;
    let first = tokio::spawn(b.lock("w").wait(10 * SECOND).acquire());
    until_waiting(&a, 1).await;
    let second = tokio::spawn(c.lock("w").wait(10 * SECOND).acquire());
    until_waiting(&a, 2).await;
    let token = held.token();
    held.unlock().await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert!(first.token() > token);
    assert!(!second.is_finished());
    let first_token = first.token();
    drop(first);
    let second = second.await.unwrap().unwrap();
    assert!(second.token() > first_token);
}

#[tokio::test]
async fn a_wait_does_not_hold_up_other_calls() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let _held = a.lock("busy").acquire().await.unwrap();
    let waiter = tokio::spawn(b.lock("busy").wait(30 * SECOND).acquire());
    until_waiting(&a, 1).await;
    // The same client goes on with other calls while its wait is queued.
    let rev = timeout(5 * SECOND, b.put("k", b"v", 10 * SECOND))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.get("k").await.unwrap().unwrap().revision, rev);
    assert!(b.try_lock("other", SECOND).await.unwrap().is_some());
    waiter.abort();
}

#[tokio::test]
async fn dropping_a_waiting_acquire_cancels_the_wait_in_the_server() {
    let server = Server::start();
    let (a, b, c) = (
        client(&server).await,
        client(&server).await,
        client(&server).await,
    );
    let held = a.lock("c").acquire().await.unwrap();
    let mut waiting = Box::pin(b.lock("c").wait(30 * SECOND).acquire());
    tokio::select! {
        r = &mut waiting => panic!("{r:?}"),
        () = until_waiting(&c, 1) => {}
    }
    let dropped = Instant::now();
    drop(waiting);
    // The server took it out of its queue, long before its wait ran out.
    until_waiting(&c, 0).await;
    assert!(dropped.elapsed() < 5 * SECOND);
    assert_eq!(c.stats().await.unwrap().get(Stat::WaitCancel), 1);
    // So the lock goes to nobody when released.
    held.unlock().await.unwrap();
    assert_eq!(c.test_lock("c").await.unwrap(), LockState::Free);
    // And timeouts are just dropped futures.
    let _held = a.lock("c").acquire().await.unwrap();
    let r = timeout(
        Duration::from_millis(50),
        b.lock("c").wait(30 * SECOND).acquire(),
    )
    .await;
    assert!(r.is_err());
    until_waiting(&c, 0).await;
}

#[tokio::test]
async fn a_grant_that_raced_the_cancellation_is_released() {
    let server = Server::start();
    let (a, b, c) = (
        client(&server).await,
        client(&server).await,
        client(&server).await,
    );
    let held = a.lock("race").acquire().await.unwrap();
    let mut waiting = Box::pin(b.lock("race").wait(30 * SECOND).acquire());
    tokio::select! {
        r = &mut waiting => panic!("{r:?}"),
        () = until_waiting(&c, 1) => {}
    }
    // The server grants the waiter and sends the answer, which nobody
    // reads: the acquisition is not polled again ...
    held.unlock().await.unwrap();
    until_stat(&c, Stat::WaitGranted, 1).await;
    assert!(matches!(
        c.test_lock("race").await.unwrap(),
        LockState::Taken { .. }
    ));
    // ... and then dropped: the grant is given back, by token.
    drop(waiting);
    eventually(|| async { c.test_lock("race").await.unwrap() == LockState::Free }).await;
    assert!(c.try_lock("race", SECOND).await.unwrap().is_some());
}

#[tokio::test]
async fn a_one_attempt_lock_granted_after_its_future_was_dropped_is_released() {
    let server = Server::start();
    let (a, c) = (client(&server).await, client(&server).await);
    // The server is stopped, so the request is queued, sent, and answered
    // only after the future is gone.
    server.signal(libc::SIGSTOP);
    let mut attempt = Box::pin(a.lock("gone").acquire());
    tokio::select! {
        biased;
        r = &mut attempt => panic!("{r:?}"),
        () = tokio::task::yield_now() => {}
    }
    drop(attempt);
    server.signal(libc::SIGCONT);
    until_stat(&c, Stat::Unlock, 1).await;
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.get(Stat::Lock), 1, "it was granted");
    assert_eq!(c.test_lock("gone").await.unwrap(), LockState::Free);
}

#[tokio::test]
async fn auto_renew_keeps_a_short_lock_and_reports_loss_when_the_server_goes() {
    let mut server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let lock = a
        .lock("r")
        .ttl(Duration::from_millis(600))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    // Four renewals span more than its TTL: only they kept it held.
    until_stat(&b, Stat::Relock, 4).await;
    assert!(b.try_lock("r", SECOND).await.unwrap().is_none());
    assert!(!lock.is_lost());
    // The server goes away: renewals fail until the deadline passes.
    server.terminate();
    timeout(5 * SECOND, lock.lost()).await.unwrap();
    assert!(lock.is_lost());
    assert_eq!(lock.remaining(), Duration::ZERO);
}

#[tokio::test]
async fn a_paused_server_loses_an_auto_renewed_lock_for_good() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let lock = a
        .lock("p")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    until_stat(&b, Stat::Relock, 1).await;
    // Paused past the TTL, the server answers no renewal in time.
    server.signal(libc::SIGSTOP);
    let paused = Instant::now();
    timeout(5 * SECOND, lock.lost()).await.unwrap();
    assert!(paused.elapsed() < 5 * SECOND);
    assert!(lock.is_lost());
    server.signal(libc::SIGCONT);
    // Back, the server has let it expire; another owner takes it, and the
    // late renewal never takes it back.
    let theirs = eventually_some(|| async { b.try_lock("p", 10 * SECOND).await.unwrap() }).await;
    assert!(matches!(lock.extend(SECOND).await, Err(Error::LockLost)));
    // The release finds it gone, unless the server resumed just before
    // its own expiry (which is up to a round trip after ours) and granted
    // the renewal in flight: too late for the lease, which then gave the
    // grant straight back, leaving the release nothing to do.
    let r = lock.unlock().await;
    assert!(matches!(r, Err(Error::LockLost) | Ok(())), "{r:?}");
    match a.test_lock("p").await.unwrap() {
        LockState::Taken { .. } => {}
        other => panic!("{other:?}"),
    }
    drop(theirs);
}

#[tokio::test]
async fn an_extension_that_finds_the_lock_gone_resolves_lost() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let lock = a.lock("gone").ttl(10 * SECOND).acquire().await.unwrap();
    // Released behind the guard's back (by name, as a tool would).
    assert!(a.unlock("gone", None).await.unwrap());
    let _theirs = b.try_lock("gone", 10 * SECOND).await.unwrap().unwrap();
    assert!(matches!(lock.extend(SECOND).await, Err(Error::LockLost)));
    timeout(SECOND, lock.lost()).await.unwrap();
}

#[tokio::test]
async fn a_name_with_nul_is_locked_renewed_and_released_like_any_other() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let lock = a
        .lock("nul\0name")
        .ttl(Duration::from_millis(300))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    assert!(lock.token().is_some());
    assert!(matches!(
        b.test_lock("nul\0name").await.unwrap(),
        LockState::Taken { .. }
    ));
    assert_eq!(b.test_lock("nul").await.unwrap(), LockState::Free);
    lock.extend(Duration::from_millis(300)).await.unwrap();
    lock.unlock().await.unwrap();
    assert_eq!(b.test_lock("nul\0name").await.unwrap(), LockState::Free);
}

#[tokio::test]
async fn values_round_trip_with_cas() {
    let server = Server::start();
    let a = client(&server).await;
    assert_eq!(a.get("k").await.unwrap(), None);
    let r1 = a.put("k", b"\x00\xffbinary", 10 * SECOND).await.unwrap();
    assert_eq!(r1, Revision(1));
    let v = a.get("k").await.unwrap().unwrap();
    assert_eq!(v.data, b"\x00\xffbinary");
    assert_eq!(v.revision, Revision(1));
    assert!(v.ttl <= 10 * SECOND && v.ttl > 9 * SECOND);
    assert!(matches!(
        a.put_if("k", b"x", 10 * SECOND, Revision(7)).await,
        Err(Error::Conflict {
            current: Revision(1)
        })
    ));
    assert_eq!(
        a.put_if("k", b"y", 10 * SECOND, Revision(1)).await.unwrap(),
        Revision(2)
    );
    assert!(matches!(
        a.put_if("new", b"z", 10 * SECOND, Revision(0)).await,
        Ok(Revision(1))
    ));
    let other = client(&server).await;
    assert!(matches!(other.get("k").await, Err(Error::NotOwner)));
    assert!(matches!(
        other.put("k", b"mine", SECOND).await,
        Err(Error::NotOwner)
    ));
    assert!(a.erase("k").await.unwrap());
    assert!(!a.erase("k").await.unwrap());
    assert!(matches!(other.get("k").await, Ok(None)));
    assert!(a.version().await.unwrap().contains("JackrabbitDLM"));
    let err = Error::Conflict {
        current: Revision(3),
    };
    assert_eq!(err.kind(), dlm_tokio::ErrorKind::Conflict);
}

/// Shared values: readers named by `put_shared` read with `get` (and
/// learn the owner); nobody else does, and only the owner writes.
#[tokio::test]
async fn shared_values_reach_their_readers_only() {
    let dir = dlm_tests::scratch_dir("tokio-shared").join("identities");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dlm_tests::new_identity(&dir, "alice", false);
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let owner = client(&server).await;
    let alice = Client::builder()
        .credentials("alice", secret)
        .connect(server.addr())
        .await
        .unwrap();
    let stranger = client(&server).await;
    let readers = dlm_tokio::Readers::identities(["alice"]);
    let r = owner
        .put_shared("cfg", b"v1", 10 * SECOND, &readers, None)
        .await
        .unwrap();
    assert_eq!(r, Revision(1));
    let v = alice.get("cfg").await.unwrap().unwrap();
    assert_eq!(
        (v.data.as_slice(), v.owner.as_deref()),
        (&b"v1"[..], Some(owner.id()))
    );
    assert!(matches!(stranger.get("cfg").await, Err(Error::NotOwner)));
    assert!(matches!(alice.erase("cfg").await, Err(Error::NotOwner)));
    let r = owner
        .put_shared(
            "cfg",
            b"v2",
            10 * SECOND,
            &dlm_tokio::Readers::Any,
            Some(Revision(1)),
        )
        .await
        .unwrap();
    assert_eq!(r, Revision(2));
    assert_eq!(stranger.get("cfg").await.unwrap().unwrap().data, b"v2");
    assert!(matches!(
        stranger.put("cfg", b"x", SECOND).await,
        Err(Error::NotOwner)
    ));
    assert!(matches!(
        owner
            .put_shared(
                "cfg",
                b"v",
                SECOND,
                &dlm_tokio::Readers::identities(["a b"]),
                None
            )
            .await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn sealed_values_are_ciphertext_on_the_server() {
    let server = Server::start();
    let key = SealedEncoder::generate_key().unwrap();
    let sealed = Client::builder()
        .client_id("s")
        .encoder(SealedEncoder::new(key))
        .connect(server.addr())
        .await
        .unwrap();
    sealed
        .put("cfg", b"db-password", 10 * SECOND)
        .await
        .unwrap();
    assert_eq!(
        sealed.get("cfg").await.unwrap().unwrap().data,
        b"db-password"
    );
    // Read with the table encoder (same owner): it says who wrote it.
    let table = Client::builder()
        .client_id("s")
        .connect(server.addr())
        .await
        .unwrap();
    match table.get("cfg").await {
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

#[tokio::test]
async fn a_restarted_server_is_reconnected_transparently() {
    let mut server = Server::start();
    let addr = server.addr();
    let a = client(&server).await;
    a.put("k", b"v", 10 * SECOND).await.unwrap();
    // A wait leaves its connection idle for the next one.
    let lock = a.lock("w").wait(SECOND).acquire().await.unwrap();
    lock.unlock().await.unwrap();
    server.terminate();
    assert!(matches!(a.version().await, Err(Error::Unavailable(_))));
    // A new server on the same port.
    let _server = Server::on_port(addr.port(), &[]);
    assert!(a.version().await.is_ok());
    // Waits' idle connections are stale too, and replaced.
    let lock = a.lock("w").wait(SECOND).acquire().await.unwrap();
    lock.unlock().await.unwrap();
}

#[tokio::test]
async fn unreachable_servers_fail_with_unavailable() {
    let r = Client::builder()
        .connect_attempts(2)
        .connect("127.0.0.1:1")
        .await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_client_and_one_connection() {
    let server = Server::start();
    let client = client(&server).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let name = format!("task-{i}");
                let mut last = None;
                for round in 0..50u32 {
                    let lock = client.lock(name.as_str()).acquire().await.unwrap();
                    assert!(lock.token() > last);
                    last = lock.token();
                    let value = format!("{i}/{round}");
                    client.put(&name, value.as_bytes(), SECOND).await.unwrap();
                    let got = client.get(&name).await.unwrap().unwrap();
                    assert_eq!(got.data, value.as_bytes());
                    assert_eq!(got.revision, Revision(u64::from(round) + 1));
                    lock.unlock().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.get(Stat::Lock), 64 * 50);
    assert_eq!(stats.get(Stat::Unlock), 64 * 50);
    // All of it over the one connection the client opened.
    assert_eq!(stats.get(Stat::Connections), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_sharing_a_client_exclude_each_other_through_waits() {
    let server = Server::start();
    let client = Client::builder()
        .connections(2)
        .connect(server.addr())
        .await
        .unwrap();
    client.put("counter", b"0", 60 * SECOND).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let worker = client.with_id(format!("worker-{i}")).unwrap();
            let data = client.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    let lock = worker
                        .lock("counter-lock")
                        .wait(30 * SECOND)
                        .acquire()
                        .await
                        .unwrap();
                    // A read-modify-write that only the lock makes safe.
                    let v = data.get("counter").await.unwrap().unwrap();
                    let n: u32 = std::str::from_utf8(&v.data).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    data.put("counter", next.as_bytes(), 60 * SECOND)
                        .await
                        .unwrap();
                    lock.unlock().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let v = client.get("counter").await.unwrap().unwrap();
    assert_eq!(v.data, b"160");
    assert_eq!(v.revision, Revision(161));
}
