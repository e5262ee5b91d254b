//! Sessions, session-bound locks and lock-delay against the real binary,
//! over the wire (PROTOCOL.md section 8, "Sessions and lock-delay").

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::net::Shutdown;
use std::time::Duration;

use dlm_core::client::Client;
use dlm_core::protocol::{SessionBind, Shape, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::Server;

const TTL: Ttl = Ttl::from_secs(30);
const LONG: Duration = Duration::from_secs(20);

fn bound(delay_ms: u64) -> SessionBind {
    SessionBind {
        lock_delay: Ttl::from_millis(delay_ms),
    }
}

#[test]
fn closing_the_connection_releases_its_session_bound_grants() {
    let server = Server::start();
    let mut a = server.connect();
    // Without a session, `Session` on a lock is refused.
    let r = a.call(&Client::new("a").lock("job", TTL).with_session(bound(0)));
    assert_eq!(r.status, Status::BadPayload);
    assert_eq!(
        r.error.as_deref(),
        Some("no session on this connection: send a Session request first")
    );
    let r = a.call(&Client::new("a").session(TTL));
    assert_eq!((r.status, r.expire_ms), (Status::Done, Some(30_000)));
    let job = a.call(&Client::new("a").lock("job", TTL).with_session(bound(0)));
    assert_eq!(job.status, Status::Locked);
    let permit = a.call(
        &Client::new("a")
            .acquire("pool", Shape::Semaphore { permits: 1 }, TTL, None)
            .with_session(bound(0)),
    );
    assert_eq!(permit.status, Status::Locked);
    // A lock without `Session` on the same connection is not bound.
    let free = a.call(&Client::new("a").lock("kept", TTL));
    assert_eq!(free.status, Status::Locked);
    assert_eq!(server.stats().get(Stat::ASession), 1);

    let mut b = server.connect();
    b.send(&Client::new("b").lock_wait("job", TTL, TTL));
    let mut c = server.connect();
    c.send(&Client::new("c").acquire("pool", Shape::Semaphore { permits: 1 }, TTL, Some(TTL)));
    server.wait_for(LONG, "both wait", |s| s.get(Stat::AWait) == 2);

    // The holder's connection goes: both grants go on, with greater tokens.
    a.stream().shutdown(Shutdown::Both).unwrap();
    drop(a);
    let got = b.recv();
    assert_eq!((got.status, got.id.as_deref()), (Status::Locked, Some("b")));
    assert!(got.token.unwrap() > job.token.unwrap());
    let got = c.recv();
    assert_eq!((got.status, got.id.as_deref()), (Status::Locked, Some("c")));
    assert!(got.token.unwrap() > permit.token.unwrap());
    let stats = server.wait_for(LONG, "the session ended", |s| s.get(Stat::ASession) == 0);
    assert_eq!(stats.get(Stat::SessionClosed), 1);
    assert_eq!(stats.get(Stat::SessionReleased), 2);
    // The unbound lock stays its owner's.
    let r = b.call(&Client::new("a").test_lock("kept"));
    assert_eq!((r.status, r.token), (Status::Locked, free.token));
}

#[test]
fn a_lock_delay_keeps_everyone_out_until_it_has_passed() {
    let server = Server::start();
    let mut a = server.connect();
    assert_eq!(a.call(&Client::new("a").session(TTL)).status, Status::Done);
    let held = a.call(&Client::new("a").lock("slow", TTL).with_session(bound(3000)));
    assert_eq!(held.status, Status::Locked);
    a.stream().shutdown(Shutdown::Both).unwrap();
    drop(a);
    server.wait_for(LONG, "the session ended", |s| {
        s.get(Stat::SessionClosed) == 1
    });

    // Closed: another owner is refused, and so is the owner itself, which
    // can neither re-lock nor release it.
    let mut b = server.connect();
    let r = b.call(&Client::new("b").lock("slow", TTL));
    assert_eq!(r.status, Status::NotOwner);
    let r = b.call(&Client::new("a").lock("slow", TTL));
    assert_eq!(
        r.status,
        Status::NotOwner,
        "its own owner cannot take it back"
    );
    let r = b.call(&Client::new("a").unlock("slow", held.token.map(dlm_core::protocol::Token)));
    assert_eq!(r.status, Status::NotOwner, "nor release it");
    let r = b.call(&Client::new("b").test_lock("slow"));
    assert_eq!(r.status, Status::NotOwner);
    assert!(r.expire_ms.unwrap() <= 3000, "{:?}", r.expire_ms);
    // A waiter gets it once the delay has passed, with a greater token.
    let got = b.call(&Client::new("b").lock_wait("slow", TTL, TTL));
    assert_eq!((got.status, got.id.as_deref()), (Status::Locked, Some("b")));
    assert!(got.token.unwrap() > held.token.unwrap());
}

#[test]
fn a_session_whose_ttl_passes_without_a_request_ends() {
    let server = Server::start();
    let mut a = server.connect();
    let r = a.call(&Client::new("a").session(Ttl::from_millis(300)));
    assert_eq!(r.status, Status::Done);
    let held = a.call(&Client::new("a").lock("quiet", TTL).with_session(bound(0)));
    assert_eq!(held.status, Status::Locked);
    // `a` stays connected but silent: its session runs out and the waiter
    // gets the lock.
    let mut b = server.connect();
    let got = b.call(&Client::new("b").lock_wait("quiet", TTL, TTL));
    assert_eq!((got.status, got.id.as_deref()), (Status::Locked, Some("b")));
    let stats = server.stats();
    assert_eq!(stats.get(Stat::SessionExpired), 1);
    assert_eq!(stats.get(Stat::SessionClosed), 0);
    // Its connection is still there, without a session.
    let r = a.call(&Client::new("a").lock("other", TTL).with_session(bound(0)));
    assert_eq!(r.status, Status::BadPayload);
}

/// A client paused past its session's TTL: the server ends the session
/// and releases what was bound to it. Its next keep-alive (`Session` with
/// `"Session": true`) is told so, instead of a new session silently
/// taking the old one's place (which would leave the client believing it
/// still holds its lock); a plain `Session` then opens a new one.
#[test]
fn a_keep_alive_after_the_session_ended_is_told_not_reopened() {
    let server = Server::start();
    let me = Client::new("paused");
    let mut a = server.connect();
    // Without a session, a keep-alive opens nothing.
    let r = a.call(&me.keep_alive(Ttl::from_secs(1)));
    assert_eq!(r.status, Status::BadPayload);
    assert_eq!(server.stats().get(Stat::ASession), 0);
    assert_eq!(a.call(&me.session(Ttl::from_secs(1))).status, Status::Done);
    // A keep-alive of a live session keeps it.
    let r = a.call(&me.keep_alive(Ttl::from_secs(1)));
    assert_eq!((r.status, r.expire_ms), (Status::Done, Some(1000)));
    let held = a.call(&me.lock("job", TTL).with_session(bound(0)));
    assert_eq!(held.status, Status::Locked);
    // The client goes quiet: its session runs out, and the lock with it.
    server.wait_for(LONG, "the session expired", |s| {
        s.get(Stat::SessionExpired) == 1
    });
    let mut b = server.connect();
    let r = b.call(&Client::new("other").lock("job", TTL));
    assert_eq!(r.status, Status::Locked);
    assert!(r.token > held.token);
    // It wakes up: its keep-alive is refused, nothing is reopened.
    let r = a.call(&me.keep_alive(Ttl::from_secs(1)));
    assert_eq!(r.status, Status::BadPayload);
    assert_eq!(
        r.error.as_deref(),
        Some("no session on this connection: send a Session request first")
    );
    assert_eq!(server.stats().get(Stat::ASession), 0);
    assert_eq!(a.call(&me.session(Ttl::from_secs(1))).status, Status::Done);
    assert_eq!(server.stats().get(Stat::ASession), 1);
}
