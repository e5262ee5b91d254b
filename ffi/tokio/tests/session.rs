//! Sessions in the async client against a real dlm-server: locks that end
//! with their session's connection, lock-delay, being told the session is
//! lost, and cancellation. The session's connection goes through a proxy
//! in this file so that a test can cut it (both sockets closed, as when a
//! network or a process dies) or stall it (nothing gets through, nothing
//! closes) while the client process lives on.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{client, eventually, until_stat, until_waiting};
use dlm_tests::Server;
use dlm_tokio::{Client, Error, LockState, Stat};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

const SECOND: Duration = Duration::from_secs(1);
/// How long a test waits for something that must happen (a safety net,
/// never a guess at when it happens).
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    /// Stop forwarding; keep both sockets open.
    Stall,
    /// Close every connection (and refuse new ones).
    Cut,
}

/// A TCP proxy to the server whose connections the test can stall or cut.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn to(server: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Cut {
                    continue;
                }
                let Ok(up) = TcpStream::connect(server).await else {
                    continue;
                };
                tokio::spawn(forward(down, up, rx.clone()));
            }
        });
        Self { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn forward(mut down: TcpStream, mut up: TcpStream, mut mode: watch::Receiver<Mode>) {
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => return,
        _ = mode.wait_for(|m| *m != Mode::Pass) => {}
    }
    // Stalled: hold both sockets, forward nothing, until cut.
    let _ = mode.wait_for(|m| *m == Mode::Cut).await;
}

async fn client_via(proxy: &Proxy) -> Client {
    Client::connect(proxy.addr).await.unwrap()
}

#[tokio::test]
async fn a_session_lock_is_released_when_the_sessions_connection_dies() {
    let server = Server::start();
    let proxy = Proxy::to(server.addr()).await;
    let holder = client_via(&proxy).await;
    let other = client(&server).await;
    let session = holder.session(10 * SECOND).await.unwrap();
    assert_eq!(session.ttl(), 10 * SECOND);
    // A long TTL: only the session's end can free it within the test.
    let held = session.lock("res").ttl(600 * SECOND).await.unwrap();
    assert_eq!(held.name(), "res");
    assert!(held.remaining() > 500 * SECOND);
    assert!(!held.is_lost() && !session.is_lost());
    assert!(other.try_lock("res", SECOND).await.unwrap().is_none());
    assert_eq!(other.stats().await.unwrap().get(Stat::ASession), 1);

    let waiter = {
        let other = other.clone();
        tokio::spawn(async move { other.lock("res").wait(PATIENCE).acquire().await })
    };
    until_waiting(&other, 1).await;
    proxy.set(Mode::Cut);

    // The server ends the session and hands the lock to the waiter.
    let next = timeout(PATIENCE, waiter).await.unwrap().unwrap().unwrap();
    assert!(next.token().unwrap() > held.token());
    let stats = other.stats().await.unwrap();
    assert_eq!(stats.get(Stat::SessionClosed), 1);
    assert_eq!(stats.get(Stat::SessionReleased), 1);
    assert_eq!(stats.get(Stat::ASession), 0);
    // And this client is told.
    timeout(PATIENCE, session.lost()).await.unwrap();
    timeout(PATIENCE, held.lost()).await.unwrap();
    assert!(session.is_lost() && held.is_lost());
    assert_eq!(held.remaining(), Duration::ZERO);
    assert!(matches!(held.unlock().await, Err(Error::LockLost)));
    assert!(matches!(
        session.lock("another").await,
        Err(Error::LockLost)
    ));
    // The client's other calls reconnect through the proxy's refusal and
    // fail; the session is not reopened behind the caller's back.
    drop(session);
}

#[tokio::test]
async fn a_lock_delay_keeps_everyone_out_until_it_has_passed() {
    let server = Server::start();
    let proxy = Proxy::to(server.addr()).await;
    let holder = client_via(&proxy).await;
    let other = client(&server).await;
    // The holder's owner ID over a connection of its own: the delay keeps
    // its owner out too.
    let same_owner = Client::builder()
        .client_id(holder.id())
        .connect(server.addr())
        .await
        .unwrap();
    let session = holder.session(10 * SECOND).await.unwrap();
    let held = session
        .lock("res")
        .ttl(600 * SECOND)
        .lock_delay(3 * SECOND)
        .await
        .unwrap();
    proxy.set(Mode::Cut);
    until_stat(&other, Stat::SessionClosed, 1).await;
    assert_eq!(other.stats().await.unwrap().get(Stat::SessionReleased), 1);

    // Closed, not released: nobody may take it, its owner included.
    assert!(matches!(
        other.test_lock("res").await.unwrap(),
        LockState::Taken { .. }
    ));
    assert!(other.try_lock("res", SECOND).await.unwrap().is_none());
    assert!(same_owner.try_lock("res", SECOND).await.unwrap().is_none());
    assert!(matches!(
        same_owner.unlock("res", Some(held.token())).await,
        Ok(false) | Err(Error::NotOwner)
    ));
    // A waiter gets it once the delay has passed, with a newer token.
    let next = other.lock("res").wait(PATIENCE).acquire().await.unwrap();
    assert!(next.token().unwrap() > held.token());
    timeout(PATIENCE, session.lost()).await.unwrap();
}

#[tokio::test]
async fn a_session_that_cannot_reach_the_server_is_lost_and_ended() {
    let server = Server::start();
    let proxy = Proxy::to(server.addr()).await;
    let holder = Client::builder()
        .io_timeout(SECOND)
        .connect(proxy.addr)
        .await
        .unwrap();
    let other = client(&server).await;
    let session = holder.session(SECOND).await.unwrap();
    let held = session.lock("res").ttl(600 * SECOND).await.unwrap();
    // Keep-alives flow: the session outlives several of its TTLs.
    until_stat(&other, Stat::Session, 5).await;
    assert!(!session.is_lost());

    // Nothing gets through, nothing closes: the server ends the session by
    // its TTL, and the client finds its keep-alives unanswered.
    proxy.set(Mode::Stall);
    let next = other.lock("res").wait(PATIENCE).acquire().await.unwrap();
    assert!(next.token().unwrap() > held.token());
    assert_eq!(other.stats().await.unwrap().get(Stat::SessionExpired), 1);
    timeout(PATIENCE, session.lost()).await.unwrap();
    assert!(held.is_lost());
    proxy.set(Mode::Cut);
}

#[tokio::test]
async fn dropping_a_waiting_session_lock_leaves_nothing_held() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let holder = client(&server).await;
    let session = holder.session(10 * SECOND).await.unwrap();
    let first = a.lock("res").ttl(60 * SECOND).acquire().await.unwrap();

    // A session lock waits behind `first`, and is dropped mid-wait.
    let waiting = {
        let fut = session
            .lock("res")
            .ttl(600 * SECOND)
            .lock_delay(30 * SECOND)
            .wait(600 * SECOND);
        tokio::spawn(fut.into_future())
    };
    until_waiting(&a, 1).await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    // Someone else queues behind it; the first holder lets go.
    let after = {
        let b = b.clone();
        tokio::spawn(async move { b.lock("res").wait(PATIENCE).acquire().await })
    };
    until_waiting(&a, 2).await;
    first.unlock().await.unwrap();

    // The dropped wait's grant is given back at once: the next in line
    // gets it.
    let got = timeout(PATIENCE, after).await.unwrap().unwrap().unwrap();
    assert_eq!(b.stats().await.unwrap().get(Stat::AWait), 0);
    // The session lives on, and its connection still serves.
    assert!(!session.is_lost());
    let more = session.lock("other").await.unwrap();
    more.unlock().await.unwrap();
    got.unlock().await.unwrap();
    // Ending it releases nothing: nothing was left bound to it (a grant
    // left bound would be closed for its 30 s lock-delay).
    session.close().await;
    until_stat(&a, Stat::SessionClosed, 1).await;
    assert_eq!(a.stats().await.unwrap().get(Stat::SessionReleased), 0);
    assert!(matches!(a.test_lock("res").await.unwrap(), LockState::Free));
}

#[tokio::test]
async fn a_dropped_session_lock_is_released_and_its_session_serves_on() {
    let server = Server::start();
    let (holder, other) = (client(&server).await, client(&server).await);
    let session = holder.session(10 * SECOND).await.unwrap();
    let held = session.lock("res").ttl(600 * SECOND).await.unwrap();
    assert!(other.try_lock("res", SECOND).await.unwrap().is_none());
    drop(held);
    eventually(|| async { other.test_lock("res").await.unwrap() == LockState::Free }).await;
    // One attempt only, without a wait.
    let _mine = other.lock("res").acquire().await.unwrap();
    assert!(matches!(session.lock("res").await, Err(Error::NotOwner)));
    assert!(matches!(
        session.lock("res").wait(SECOND / 10).await,
        Err(Error::Timeout)
    ));
    assert!(matches!(
        session.lock("x").lock_delay(61 * SECOND).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(!session.is_lost());
}

#[tokio::test]
async fn session_semaphores_and_read_write_holds_end_with_the_session() {
    let server = Server::start();
    let (holder, other) = (client(&server).await, client(&server).await);
    let session = holder.session(10 * SECOND).await.unwrap();
    let p1 = session.semaphore("sem", 2).ttl(600 * SECOND).await.unwrap();
    let p2 = session.semaphore("sem", 2).ttl(600 * SECOND).await.unwrap();
    assert_ne!(p1.token(), p2.token());
    assert!(matches!(
        session.semaphore("sem", 3).await,
        Err(Error::Mismatch(_))
    ));
    assert!(matches!(
        other.semaphore("sem", 2).acquire().await,
        Err(Error::NotOwner)
    ));
    let r1 = session.read_lock("rw").ttl(600 * SECOND).await.unwrap();
    // Readers share, beside the session's.
    let r2 = other.read_lock("rw").acquire().await.unwrap();
    r2.unlock().await.unwrap();
    assert!(matches!(
        other.write_lock("rw").acquire().await,
        Err(Error::NotOwner)
    ));
    let (permit, writer) = {
        let (o1, o2) = (other.clone(), other.clone());
        (
            tokio::spawn(async move { o1.semaphore("sem", 2).wait(PATIENCE).acquire().await }),
            tokio::spawn(async move { o2.write_lock("rw").wait(PATIENCE).acquire().await }),
        )
    };
    until_waiting(&other, 2).await;
    session.close().await;
    let permit = timeout(PATIENCE, permit).await.unwrap().unwrap().unwrap();
    let writer = timeout(PATIENCE, writer).await.unwrap().unwrap().unwrap();
    assert!(permit.token().unwrap() > p2.token());
    assert!(writer.token().unwrap() > r1.token());
    assert_eq!(other.stats().await.unwrap().get(Stat::SessionReleased), 3);
    assert!(matches!(r1.unlock().await, Err(Error::LockLost)));
    drop((p1, p2));
}

#[tokio::test]
async fn no_sessions_in_legacy_framing() {
    let server = Server::start();
    let legacy = Client::builder()
        .framing(dlm_tokio::Framing::Legacy)
        .connect(server.addr())
        .await
        .unwrap();
    assert!(matches!(
        legacy.session(SECOND).await,
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        client(&server).await.session(Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn a_session_lives_on_while_its_lock_waits_longer_than_its_ttl() {
    let server = Server::start();
    let (holder, other) = (client(&server).await, client(&server).await);
    let first = other.lock("res").ttl(60 * SECOND).acquire().await.unwrap();
    let session = holder.session(SECOND).await.unwrap();
    let waiting = session.lock("res").ttl(60 * SECOND).wait(PATIENCE);
    let waiting = tokio::spawn(waiting.into_future());
    until_waiting(&other, 1).await;
    // Keep-alives go out behind the waiting lock (their answers wait
    // behind its answer) and keep the session alive: several TTLs pass.
    until_stat(&other, Stat::Session, 7).await;
    assert!(!session.is_lost());
    let before = first.token().unwrap();
    first.unlock().await.unwrap();
    let got = timeout(PATIENCE, waiting).await.unwrap().unwrap().unwrap();
    assert!(got.token() > before);
    let stats = other.stats().await.unwrap();
    assert_eq!(stats.get(Stat::SessionExpired), 0);
    assert_eq!(stats.get(Stat::ASession), 1);
    assert!(!session.is_lost() && !got.is_lost());
    got.unlock().await.unwrap();
}
