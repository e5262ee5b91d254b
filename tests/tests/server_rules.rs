//! Every rule of PROTOCOL.md section 5, end to end against the real server,
//! once in each framing (plain JSON and JackrabbitDLM's table-encoded lines).

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::thread::sleep;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::{Framing, Revision, Status, Token};
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Server};

const TTL: Ttl = Ttl::from_secs(30);
/// How long a test waits for a short TTL to run out: far more than the
/// TTL and the server's deadline slack (201 ms), on a loaded machine.
const EXPIRY: Duration = Duration::from_secs(10);

fn client(id: &str, framing: Framing) -> Client<'_> {
    Client::new(id).with_framing(framing)
}

macro_rules! both_framings {
    ($($name:ident),* $(,)?) => {
        mod plain {
            $(#[test] fn $name() { super::$name(dlm_core::protocol::Framing::Plain); })*
        }
        mod legacy {
            $(#[test] fn $name() { super::$name(dlm_core::protocol::Framing::Legacy); })*
        }
    };
}

both_framings!(
    lock_relock_unlock,
    ownership_is_enforced_without_leaking_ids,
    locks_and_data_are_separate_namespaces,
    extension_by_token_never_resurrects,
    unlock_by_token_spares_a_newer_grant,
    test_lock_never_acquires,
    put_get_erase,
    compare_and_set,
    entries_expire,
    waiters_are_served_in_order_when_released,
    waiter_is_handed_an_expired_lock,
    waiter_times_out,
    version_and_stats,
    bad_requests_get_clear_errors,
);

fn lock_relock_unlock(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let me = client("owner-a", f);
    let r = c.call(&me.lock("res", TTL));
    assert_eq!(r.framing, f, "answered in the request's framing");
    assert_eq!(r.status, Status::Locked);
    assert_eq!(r.id.as_deref(), Some("owner-a"));
    assert_eq!(r.expire_ms, Some(30_000));
    let token = r.token.unwrap();
    // Re-lock extends and keeps the token.
    let r = c.call(&me.lock("res", Ttl::from_secs(60)));
    assert_eq!(
        (r.status, r.token, r.expire_ms),
        (Status::Locked, Some(token), Some(60_000))
    );
    let r = c.call(&me.unlock("res", None));
    assert_eq!(
        (r.status, r.id.as_deref()),
        (Status::Unlocked, Some("owner-a"))
    );
    // Unlock of nothing: Unlocked without ID.
    let r = c.call(&me.unlock("res", None));
    assert_eq!((r.status, r.id), (Status::Unlocked, None));
    // A new grant gets a greater token.
    let r = c.call(&me.lock("res", TTL));
    assert!(r.token.unwrap() > token);
}

fn ownership_is_enforced_without_leaking_ids(f: Framing) {
    let server = Server::start();
    let (mut a, mut b) = (server.connect(), server.connect());
    let alice = client("alice", f);
    let bob = client("bob", f);
    assert_eq!(a.call(&alice.lock("l", TTL)).status, Status::Locked);
    for req in [bob.lock("l", TTL), bob.unlock("l", None)] {
        let r = b.call(&req);
        assert_eq!(r.status, Status::NotOwner);
        assert_eq!(r.id, None, "never another owner's ID");
    }
    assert_eq!(a.call(&alice.put("d", TTL, "v", None)).status, Status::Done);
    for req in [bob.get("d"), bob.erase("d"), bob.put("d", TTL, "x", None)] {
        let r = b.call(&req);
        assert_eq!((r.status, r.id, r.data), (Status::NotOwner, None, None));
    }
    // Alice's lock and data are intact.
    assert_eq!(a.call(&alice.get("d")).data.as_deref(), Some("v"));
    assert_eq!(a.call(&alice.test_lock("l")).status, Status::Locked);
}

fn locks_and_data_are_separate_namespaces(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let (a, b) = (client("a", f), client("b", f));
    assert_eq!(c.call(&a.lock("same", TTL)).status, Status::Locked);
    // Another owner can put data under the lock's name, and the reverse.
    assert_eq!(c.call(&b.put("same", TTL, "x", None)).status, Status::Done);
    assert_eq!(c.call(&b.unlock("same", None)).status, Status::NotOwner);
    assert_eq!(c.call(&a.get("same")).status, Status::NotOwner);
    assert_eq!(c.call(&a.unlock("same", None)).status, Status::Unlocked);
    assert_eq!(c.call(&b.get("same")).data.as_deref(), Some("x"));
}

fn extension_by_token_never_resurrects(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let me = client("me", f);
    let t = Token(c.call(&me.lock("x", Ttl::from_millis(150))).token.unwrap());
    let r = c.call(&me.extend("x", Ttl::from_millis(300), t));
    assert_eq!((r.status, r.token), (Status::Locked, Some(t.0)));
    assert_eq!(
        c.call(&me.extend("x", TTL, Token(t.0 + 1000))).status,
        Status::NotOwner
    );
    // Expired (once its 300 ms and the server's slack are over): the
    // extension fails and acquires nothing.
    let other = client("other", f);
    dlm_tests::eventually(EXPIRY, "the lock expires", || {
        c.call(&other.test_lock("x")).status == Status::Unlocked
    });
    assert_eq!(c.call(&me.extend("x", TTL, t)).status, Status::NotOwner);
    assert_eq!(c.call(&other.test_lock("x")).status, Status::Unlocked);
    // Released, then extended: still nothing.
    let t2 = Token(c.call(&me.lock("x", TTL)).token.unwrap());
    assert!(t2 > t);
    assert_eq!(c.call(&me.unlock("x", Some(t2))).status, Status::Unlocked);
    assert_eq!(c.call(&me.extend("x", TTL, t2)).status, Status::NotOwner);
    assert_eq!(c.call(&me.test_lock("x")).status, Status::Unlocked);
}

fn unlock_by_token_spares_a_newer_grant(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let me = client("me", f);
    let old = Token(c.call(&me.lock("y", Ttl::from_millis(100))).token.unwrap());
    let other = client("other", f);
    dlm_tests::eventually(EXPIRY, "the lock expires", || {
        c.call(&other.test_lock("y")).status == Status::Unlocked
    });
    let new = c.call(&me.lock("y", TTL)).token.unwrap();
    assert!(new > old.0);
    // The stale unlock is refused and the newer grant survives.
    assert_eq!(c.call(&me.unlock("y", Some(old))).status, Status::NotOwner);
    let r = c.call(&me.test_lock("y"));
    assert_eq!((r.status, r.token), (Status::Locked, Some(new)));
    assert_eq!(
        c.call(&me.unlock("y", Some(Token(new)))).status,
        Status::Unlocked
    );
}

fn test_lock_never_acquires(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let (a, b) = (client("a", f), client("b", f));
    assert_eq!(c.call(&a.test_lock("t")).status, Status::Unlocked);
    assert_eq!(
        c.call(&b.lock("t", TTL)).status,
        Status::Locked,
        "TestLock took nothing"
    );
    let r = c.call(&a.test_lock("t"));
    assert_eq!((r.status, r.id), (Status::NotOwner, None));
    assert!(r.expire_ms.unwrap() <= 30_000);
    let r = c.call(&b.test_lock("t"));
    assert_eq!(r.status, Status::Locked);
    assert!(r.token.is_some());
}

fn put_get_erase(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let me = client("me", f);
    assert_eq!(c.call(&me.get("k")).status, Status::NotFound);
    assert_eq!(c.call(&me.erase("k")).status, Status::NotFound);
    let value = dlm_core::codec::encode("héllo \"world\"\n".as_bytes());
    let r = c.call(&me.put("k", TTL, &value, None));
    assert_eq!(
        (r.status, r.revision, r.id.as_deref()),
        (Status::Done, Some(1), Some("me"))
    );
    let r = c.call(&me.get("k"));
    assert_eq!(r.status, Status::Done);
    assert_eq!(r.data.as_deref(), Some(value.as_str()), "byte for byte");
    assert_eq!(r.revision, Some(1));
    // Replace: new value, revision + 1, TTL reset.
    let r = c.call(&me.put("k", Ttl::from_secs(90), "raw \"quoted\" \\ value", None));
    assert_eq!((r.revision, r.expire_ms), (Some(2), Some(90_000)));
    let r = c.call(&me.get("k"));
    assert_eq!(r.data.as_deref(), Some("raw \"quoted\" \\ value"));
    assert!(r.expire_ms.unwrap() > 30_000);
    assert_eq!(c.call(&me.erase("k")).status, Status::Done);
    assert_eq!(c.call(&me.get("k")).status, Status::NotFound);
}

fn compare_and_set(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let me = client("me", f);
    let r = c.call(&me.put("cas", TTL, "v0", Some(Revision(5))));
    assert_eq!((r.status, r.revision), (Status::Conflict, Some(0)));
    assert_eq!(
        c.call(&me.put("cas", TTL, "v1", Some(Revision(0))))
            .revision,
        Some(1)
    );
    let r = c.call(&me.put("cas", TTL, "v1b", Some(Revision(0))));
    assert_eq!((r.status, r.revision), (Status::Conflict, Some(1)));
    assert_eq!(
        c.call(&me.put("cas", TTL, "v2", Some(Revision(1))))
            .revision,
        Some(2)
    );
    let r = c.call(&me.put("cas", TTL, "stale", Some(Revision(1))));
    assert_eq!((r.status, r.revision), (Status::Conflict, Some(2)));
    assert_eq!(c.call(&me.get("cas")).data.as_deref(), Some("v2"));
}

fn entries_expire(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let (a, b) = (client("a", f), client("b", f));
    let start = Instant::now();
    assert_eq!(
        c.call(&a.lock("e", Ttl::from_millis(300))).status,
        Status::Locked
    );
    assert_eq!(
        c.call(&a.put("e", Ttl::from_millis(300), "v", None)).status,
        Status::Done
    );
    assert_eq!(c.call(&b.lock("e", TTL)).status, Status::NotOwner);
    // Gone, never before its TTL: another owner may lock, and the data is
    // gone.
    dlm_tests::eventually(EXPIRY, "the lock expires", || {
        c.call(&b.test_lock("e")).status == Status::Unlocked
    });
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(c.call(&b.lock("e", TTL)).status, Status::Locked);
    dlm_tests::eventually(EXPIRY, "the value expires", || {
        c.call(&a.get("e")).status == Status::NotFound
    });
    assert!(start.elapsed() >= Duration::from_millis(300));
    let stats = c.stats();
    assert_eq!(stats.get(dlm_core::stats::Stat::ExpiredLock), 1);
    assert_eq!(stats.get(dlm_core::stats::Stat::ExpiredData), 1);
}

fn waiters_are_served_in_order_when_released(f: Framing) {
    let server = Server::start();
    let mut holder = server.connect();
    let h = client("holder", f);
    let first = holder.call(&h.lock("q", TTL)).token.unwrap();
    let mut waiters: Vec<(Conn, String)> = (0..4)
        .map(|i| {
            let mut c = server.connect();
            let id = format!("w{i}");
            c.send(&client(&id, f).lock_wait("q", TTL, Ttl::from_secs(10)));
            // Make arrival order certain.
            while server.stats().get(dlm_core::stats::Stat::AWait) < i + 1 {
                sleep(Duration::from_millis(2));
            }
            (c, id)
        })
        .collect();
    let mut last = first;
    for i in 0..waiters.len() {
        let current = if i == 0 {
            "holder".to_owned()
        } else {
            waiters[i - 1].1.clone()
        };
        let unlocker = client(&current, f);
        let r = if i == 0 {
            holder.call(&unlocker.unlock("q", None))
        } else {
            waiters[i - 1].0.call(&unlocker.unlock("q", None))
        };
        assert_eq!(r.status, Status::Unlocked);
        // The next in line is answered at once, with a greater token.
        let (conn, id) = &mut waiters[i];
        let r = conn.recv();
        assert_eq!(r.status, Status::Locked, "{id}");
        assert_eq!(r.id.as_deref(), Some(id.as_str()));
        let t = r.token.unwrap();
        assert!(t > last);
        last = t;
        assert_eq!(r.framing, f);
    }
}

fn waiter_is_handed_an_expired_lock(f: Framing) {
    let server = Server::start();
    let mut holder = server.connect();
    assert_eq!(
        holder
            .call(&client("h", f).lock("x", Ttl::from_millis(200)))
            .status,
        Status::Locked
    );
    let mut w = server.connect();
    let start = Instant::now();
    let r = w.call(&client("w", f).lock_wait("x", TTL, Ttl::from_secs(10)));
    let waited = start.elapsed();
    assert_eq!(r.status, Status::Locked);
    assert!(
        waited >= Duration::from_millis(150),
        "granted only when it expired"
    );
    assert!(
        waited < Duration::from_secs(5),
        "granted when it expired, not at the wait's end"
    );
}

fn waiter_times_out(f: Framing) {
    let server = Server::start();
    let mut holder = server.connect();
    holder.call(&client("h", f).lock("x", TTL));
    let mut w = server.connect();
    let start = Instant::now();
    let me = client("w", f);
    // Pipelined behind the waiting lock: answered after it, in order.
    w.send(&me.lock_wait("x", TTL, Ttl::from_millis(300)));
    w.send(&me.version());
    let r = w.recv();
    assert_eq!(r.status, Status::NotOwner);
    assert!(start.elapsed() >= Duration::from_millis(290));
    assert_eq!(w.recv().status, Status::Version);
    assert_eq!(server.stats().get(dlm_core::stats::Stat::WaitTimeout), 1);
}

fn version_and_stats(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let me = client("me", f);
    let r = c.call(&me.version());
    assert_eq!(r.status, Status::Version);
    assert!(r.id.unwrap().contains("JackrabbitDLM"));
    c.call(&me.lock("s", TTL));
    let stats = c.stats();
    assert_eq!(stats.get(dlm_core::stats::Stat::Lock), 1);
    assert_eq!(stats.get(dlm_core::stats::Stat::ALock), 1);
    assert_eq!(stats.get(dlm_core::stats::Stat::AConn), 1);
}

fn bad_requests_get_clear_errors(f: Framing) {
    let server = Server::start();
    let mut c = server.connect();
    let json_lines: [&[u8]; 4] = [
        br#"{"Action":"Fly","FileName":"a","ID":"b"}"#,
        br#"{"Action":"Lock","FileName":"a","ID":"b"}"#,
        br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":"-1"}"#,
        br#"{"Action":"Put","FileName":"a","ID":"b","Expire":5}"#,
    ];
    let expected = [
        (Status::BadAction, "unknown Action"),
        (Status::BadPayload, "missing field Expire"),
        (Status::BadPayload, "field Expire is negative"),
        (Status::BadPayload, "missing field DataStore"),
    ];
    for (line, (status, text)) in json_lines.iter().zip(expected) {
        let mut bytes = match f {
            Framing::Plain => line.to_vec(),
            Framing::Legacy => dlm_core::codec::encode(line).into_bytes(),
        };
        bytes.push(b'\n');
        c.send_raw(&bytes);
        let r = c.recv();
        assert_eq!((r.framing, r.status), (f, status));
        assert_eq!(r.error.as_deref(), Some(text));
    }
    // The connection still works.
    assert_eq!(
        c.call(&client("b", f).lock("a", TTL)).status,
        Status::Locked
    );
}
