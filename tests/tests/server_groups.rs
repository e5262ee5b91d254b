//! Semaphores and read/write locks against the real binary, over the wire
//! (`Lock` with `Permits` or `Mode`, PROTOCOL.md section 8).

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::net::Shutdown;
use std::time::Duration;

use dlm_core::client::Client;
use dlm_core::protocol::{Shape, Status, Token};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Server};

const TTL: Ttl = Ttl::from_secs(30);
const LONG: Duration = Duration::from_secs(20);

fn sem(n: u32) -> Shape {
    Shape::Semaphore { permits: n }
}

/// Queues `owner` for `name` on a new connection, and waits until the
/// server counts `waiting` waiters.
fn queue(server: &Server, owner: &str, name: &str, shape: Shape, waiting: u64) -> Conn {
    let mut c = server.connect();
    c.send(&Client::new(owner).acquire(name, shape, TTL, Some(TTL)));
    server.wait_for(LONG, "the waiter queues", |s| s.get(Stat::AWait) == waiting);
    c
}

#[test]
fn a_semaphore_admits_n_holders_then_serves_waiters_in_order() {
    let server = Server::start();
    let mut c = server.connect();
    let mut tokens = Vec::new();
    for owner in ["a", "b", "a"] {
        let r = c.call(&Client::new(owner).acquire("pool", sem(3), TTL, None));
        assert_eq!((r.status, r.id.as_deref()), (Status::Locked, Some(owner)));
        tokens.push(r.token.unwrap());
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    // Full: one attempt is refused, a wait queues.
    let full = c.call(&Client::new("d").acquire("pool", sem(3), TTL, None));
    assert_eq!(full.status, Status::NotOwner);
    let mut d = queue(&server, "d", "pool", sem(3), 1);
    let mut e = queue(&server, "e", "pool", sem(3), 2);
    // Another size, another kind, or a plain lock: a clear refusal.
    let r = c.call(&Client::new("x").acquire("pool", sem(4), TTL, None));
    assert_eq!(r.status, Status::Conflict);
    assert_eq!(
        r.error.as_deref(),
        Some("FileName is a semaphore of 3 permits")
    );
    let r = c.call(&Client::new("x").acquire("pool", Shape::Read, TTL, None));
    assert_eq!(r.status, Status::Conflict);
    let r = c.call(&Client::new("x").lock("pool", TTL));
    assert_eq!(r.status, Status::NotOwner, "an old client sees it taken");
    // One release: the first waiter, and only it, is granted.
    let r = c.call(&Client::new("b").unlock("pool", Some(Token(tokens[1]))));
    assert_eq!(r.status, Status::Unlocked);
    let got = d.recv();
    assert_eq!((got.status, got.id.as_deref()), (Status::Locked, Some("d")));
    assert!(got.token.unwrap() > tokens[2]);
    assert_eq!(server.stats().get(Stat::AWait), 1, "e still waits");
    // An extension keeps its token; a stale or foreign one is refused.
    let r = c.call(&Client::new("a").extend_hold("pool", sem(3), TTL, Token(tokens[0])));
    assert_eq!((r.status, r.token), (Status::Locked, Some(tokens[0])));
    let r = c.call(&Client::new("z").extend_hold("pool", sem(3), TTL, Token(tokens[0])));
    assert_eq!(r.status, Status::NotOwner);
    let r = c.call(&Client::new("b").extend_hold("pool", sem(3), TTL, Token(tokens[1])));
    assert_eq!(r.status, Status::NotOwner, "released: never brought back");
    // Without a token, an unlock releases every hold of its owner: both
    // of a's, and e is granted one of them.
    let r = c.call(&Client::new("a").unlock("pool", None));
    assert_eq!((r.status, r.id.as_deref()), (Status::Unlocked, Some("a")));
    assert_eq!(e.recv().status, Status::Locked);
    let s = server.stats();
    assert_eq!((s.get(Stat::AWait), s.get(Stat::Conflict)), (0, 2));
}

#[test]
fn a_waiting_writer_holds_back_later_readers() {
    let server = Server::start();
    let mut c = server.connect();
    let r1 = c.call(&Client::new("r1").acquire("cfg", Shape::Read, TTL, None));
    let r2 = c.call(&Client::new("r2").acquire("cfg", Shape::Read, TTL, None));
    assert_eq!((r1.status, r2.status), (Status::Locked, Status::Locked));
    let mut w = queue(&server, "w", "cfg", Shape::Write, 1);
    // A reader now would fit beside the readers, but the writer is first.
    let r = c.call(&Client::new("r3").acquire("cfg", Shape::Read, TTL, None));
    assert_eq!(r.status, Status::NotOwner);
    let mut r3 = queue(&server, "r3", "cfg", Shape::Read, 2);
    let mut r4 = queue(&server, "r4", "cfg", Shape::Read, 3);
    c.call(&Client::new("r1").unlock("cfg", None));
    assert_eq!(server.stats().get(Stat::AWait), 3, "r2 still reads");
    c.call(&Client::new("r2").unlock("cfg", r2.token.map(Token)));
    let wt = w.recv();
    assert_eq!((wt.status, wt.id.as_deref()), (Status::Locked, Some("w")));
    // The writer is alone; when it leaves, both readers come in together.
    let probe = c.call(&Client::new("p").test_lock("cfg"));
    assert_eq!(probe.status, Status::NotOwner);
    c.call(&Client::new("w").unlock("cfg", wt.token.map(Token)));
    let (a, b) = (r3.recv(), r4.recv());
    assert_eq!((a.status, b.status), (Status::Locked, Status::Locked));
    assert!(wt.token.unwrap() < a.token.unwrap() && a.token.unwrap() < b.token.unwrap());
}

/// Issue 10's race with a semaphore: a waiter closes just as a permit is
/// handed to it. Its grant must not be lost (the next waiter gets it) nor
/// doubled (nobody else holds a permit beside the ones told): the hold
/// goes through the same taking back of an undeliverable grant as a lock.
/// Over real sockets the race ends three ways (X leaves the queue first,
/// its grant is taken back, or its grant was written before its close
/// arrived and lasts X's short TTL), and all three must leave exactly one
/// holder; the deterministic simulation (`server/tests/sim.rs`) drives the
/// taking back itself.
#[test]
fn a_waiter_closing_as_a_permit_is_handed_to_it_loses_nothing() {
    let server = Server::start();
    let mut h = server.connect();
    let mut probe = server.connect();
    for trial in 0..40 {
        let name = format!("race-{trial}");
        let holder = Client::new("H");
        let held = h.call(&holder.acquire(&name, sem(1), TTL, None));
        assert_eq!(held.status, Status::Locked);
        let x = {
            let mut x = server.connect();
            // A short TTL: if its grant is written before its close is
            // seen, the permit comes back soon.
            x.send(&Client::new("X").acquire(&name, sem(1), Ttl::from_secs(2), Some(TTL)));
            x
        };
        server.wait_for(LONG, "X waits", |s| s.get(Stat::AWait) == 1);
        let mut y = server.connect();
        y.send(&Client::new("Y").acquire(&name, sem(1), TTL, Some(TTL)));
        server.wait_for(LONG, "Y waits", |s| s.get(Stat::AWait) == 2);
        h.send(&holder.unlock(&name, held.token.map(Token)));
        if trial % 2 == 0 {
            let _ = x.stream().shutdown(Shutdown::Both);
        } else {
            drop(x);
        }
        assert_eq!(h.recv().status, Status::Unlocked);
        // X's close races the grant; the server learns of it either before
        // (X leaves the queue) or when it hands the permit over (taken
        // back). Unless X's grant was written before its close arrived,
        // Y is next; that case holds X's permit until X's TTL, which the
        // server counts as neither.
        let got = y.recv();
        assert_eq!(got.status, Status::Locked, "trial {trial}");
        let r = probe.call(&Client::new("Z").acquire(&name, sem(1), TTL, None));
        assert_eq!(r.status, Status::NotOwner, "trial {trial}: a second permit");
        y.call(&Client::new("Y").unlock(&name, None));
    }
    assert_eq!(server.stats().get(Stat::AWait), 0);
}

#[test]
fn names_keep_one_kind_while_they_live() {
    let server = Server::start();
    let mut c = server.connect();
    let a = Client::new("a");
    assert_eq!(c.call(&a.lock("x", TTL)).status, Status::Locked);
    let r = c.call(&a.acquire("x", sem(2), TTL, None));
    assert_eq!(
        (r.status, r.error.as_deref()),
        (Status::Conflict, Some("FileName is an exclusive lock"))
    );
    assert_eq!(c.call(&a.unlock("x", None)).status, Status::Unlocked);
    // Free again: any kind may take it.
    let r = c.call(&a.acquire("x", Shape::Write, TTL, None));
    assert_eq!(r.status, Status::Locked);
    let r = c.call(&a.acquire("x", sem(2), TTL, None));
    assert_eq!(
        (r.status, r.error.as_deref()),
        (Status::Conflict, Some("FileName is a read/write lock"))
    );
    // Malformed: both, or neither in range.
    for line in [
        r#"{"Action":"Lock","FileName":"y","ID":"a","Expire":1,"Permits":0}"#,
        r#"{"Action":"Lock","FileName":"y","ID":"a","Expire":1,"Permits":2,"Mode":"Read"}"#,
        r#"{"Action":"Lock","FileName":"y","ID":"a","Expire":1,"Mode":"shared"}"#,
        r#"{"Action":"Lock","FileName":"y","ID":"a","Expire":1,"Permits":"2"}"#,
    ] {
        c.send_raw(format!("{line}\n").as_bytes());
        assert_eq!(c.recv().status, Status::BadPayload, "{line}");
    }
}

/// A writer first in line that leaves (its connection closes) lets the
/// readers behind it in at once: the queue moves when a waiter leaves, not
/// only when a hold ends.
#[test]
fn a_waiting_writer_that_leaves_lets_the_readers_behind_it_in() {
    let server = Server::start();
    let mut c = server.connect();
    let r1 = c.call(&Client::new("r1").acquire("cfg", Shape::Read, TTL, None));
    assert_eq!(r1.status, Status::Locked);
    let w = queue(&server, "w", "cfg", Shape::Write, 1);
    let mut r2 = queue(&server, "r2", "cfg", Shape::Read, 2);
    drop(w);
    let got = r2.recv();
    assert_eq!(
        (got.status, got.id.as_deref()),
        (Status::Locked, Some("r2"))
    );
    let s = server.stats();
    assert_eq!((s.get(Stat::AWait), s.get(Stat::WaitCancel)), (0, 1));
}
