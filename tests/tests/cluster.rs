//! The cluster end to end: three (or four) `dlm-server` processes on
//! loopback, replicating the engine on Raft.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::Status;
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Server};

const TTL: Ttl = Ttl::from_secs(60);
const LONG: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster of `dlm-server` processes.
struct Cluster {
    peers: BTreeMap<u64, u16>,
    members: BTreeMap<u64, Server>,
    extra: Vec<String>,
}

impl Cluster {
    fn start(n: u64, extra: &[&str]) -> Self {
        let peers: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        let mut c = Self {
            peers,
            members: BTreeMap::new(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        for id in 1..=n {
            c.boot(id, false);
        }
        c
    }

    fn peers_arg(&self) -> String {
        self.peers
            .iter()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn boot(&mut self, id: u64, join: bool) {
        let peers = self.peers_arg();
        let node = id.to_string();
        let mut args: Vec<&str> = vec!["--node", &node, "--peers", &peers];
        if join {
            args.push("--join");
        }
        for e in &self.extra {
            args.push(e);
        }
        let server = Server::with_args(&args);
        self.members.insert(id, server);
    }

    fn member(&self, id: u64) -> &Server {
        &self.members[&id]
    }

    /// The `Cluster` answer through member `id` (a follower relays it to
    /// the leader; retried while a leader change closes relayed
    /// connections).
    fn status(&self, id: u64) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let mut c = self.member(id).connect();
            c.send_raw(b"{\"Action\":\"Cluster\"}\n");
            if let Some(line) = c.recv_line() {
                return String::from_utf8(line).unwrap();
            }
            assert!(Instant::now() < deadline, "member {id} never answered");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running member agrees on one leader; returns it.
    fn leader(&self) -> u64 {
        let deadline = Instant::now() + LONG;
        loop {
            let seen: Vec<u64> = self
                .members
                .keys()
                .map(|id| field(&self.status(*id), "\"Leader\":"))
                .collect();
            if let Some(&l) = seen.first()
                && l != 0
                && seen.iter().all(|s| *s == l)
                && self.members.contains_key(&l)
            {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader agreed on: {seen:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn followers(&self, leader: u64) -> Vec<u64> {
        self.members
            .keys()
            .copied()
            .filter(|id| *id != leader)
            .collect()
    }

    fn kill(&mut self, id: u64) {
        let mut s = self.members.remove(&id).unwrap();
        s.signal(libc::SIGKILL);
        let _ = s.wait_exit(Duration::from_secs(5));
    }
}

/// The number after `key` in a JSON text.
fn field(json: &str, key: &str) -> u64 {
    json.split(key)
        .nth(1)
        .map(|t| {
            t.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

#[test]
fn any_member_serves_any_client() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let [f1, f2] = c.followers(leader)[..] else {
        panic!("two followers")
    };
    let me = Client::new("me");
    let mut on_leader = c.member(leader).connect();
    let token = on_leader.call(&me.lock("a", TTL)).token.unwrap();
    // Through a follower, the same lock: the leader's answer, relayed.
    let mut via = c.member(f1).connect();
    assert_eq!(
        via.call(&Client::new("you").lock("a", TTL)).status,
        Status::NotOwner
    );
    let r = via.call(&me.test_lock("a"));
    assert_eq!((r.status, r.token), (Status::Locked, Some(token)));
    // Values written through one follower read through the other.
    let mut other = c.member(f2).connect();
    assert_eq!(via.call(&me.put("k", TTL, "v1", None)).status, Status::Done);
    assert_eq!(other.call(&me.get("k")).data.as_deref(), Some("v1"));
    // A JackrabbitDLM-style client (a connection per request, legacy
    // framing) works against a follower.
    let legacy = Client::new("old").with_framing(dlm_core::protocol::Framing::Legacy);
    let r = c.member(f2).connect().call(&legacy.lock("old-lock", TTL));
    assert_eq!(r.status, Status::Locked);
    // Status from any member names the same leader and three members.
    let s = c.status(f2);
    assert_eq!(field(&s, "\"Leader\":"), leader, "{s}");
    assert_eq!(s.matches("\"ID\":").count(), 3, "{s}");
}

#[test]
fn a_wait_through_a_follower_is_granted_in_order() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let f = c.followers(leader)[0];
    let mut holder = c.member(leader).connect();
    let h = Client::new("holder");
    let first = holder.call(&h.lock("q", TTL)).token.unwrap();
    let mut waiters: Vec<Conn> = (0..3)
        .map(|i| {
            let mut w = c.member(f).connect();
            w.send(&Client::new(&format!("w{i}")).lock_wait("q", TTL, TTL));
            w
        })
        .collect();
    c.member(leader)
        .wait_for(LONG, "three waiters", |s| s.get(Stat::AWait) == 3);
    holder.call(&h.unlock("q", None));
    let mut last = first;
    for (i, w) in waiters.iter_mut().enumerate() {
        let r = w.recv();
        assert_eq!(
            (r.status, r.id.as_deref()),
            (Status::Locked, Some(format!("w{i}").as_str()))
        );
        let t = r.token.unwrap();
        assert!(t > last, "tokens increase: {t} after {last}");
        last = t;
        w.call(&Client::new(&format!("w{i}")).unlock("q", None));
    }
}

#[test]
fn the_cluster_survives_its_leaders_death() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let me = Client::new("holder");
    let mut conn = c.member(leader).connect();
    let token = conn.call(&me.lock("held", TTL)).token.unwrap();
    let writer = Client::new("writer");
    let mut acked = Vec::new();
    for i in 0..50 {
        let r = conn.call(&writer.put(&format!("k{i}"), TTL, &format!("v{i}"), None));
        assert_eq!(r.status, Status::Done);
        acked.push(i);
    }
    drop(conn);
    let killed_at = Instant::now();
    c.kill(leader);
    let next = c.leader();
    assert_ne!(next, leader);
    let elected_in = killed_at.elapsed();
    let mut conn = c.member(next).connect();
    // The lock is still held, by its owner, with its token.
    let r = conn.call(&me.test_lock("held"));
    assert_eq!((r.status, r.token), (Status::Locked, Some(token)));
    assert_eq!(
        conn.call(&Client::new("other").lock("held", TTL)).status,
        Status::NotOwner
    );
    // Every acknowledged value is there.
    for i in acked {
        assert_eq!(
            conn.call(&writer.get(&format!("k{i}"))).data.as_deref(),
            Some(format!("v{i}").as_str())
        );
    }
    // New grants get greater tokens than before the failover.
    let t2 = conn
        .call(&Client::new("new").lock("fresh", TTL))
        .token
        .unwrap();
    assert!(t2 > token);
    assert!(
        elected_in < Duration::from_secs(5),
        "election took {elected_in:?}"
    );
    // The killed member comes back (empty, in memory) and catches up.
    c.boot(leader, false);
    let deadline = Instant::now() + LONG;
    loop {
        let r = c.member(leader).connect().call(&writer.get("k49"));
        if r.data.as_deref() == Some("v49") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted member never caught up: {r:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn members_can_be_added_and_removed() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let me = Client::new("m");
    assert_eq!(
        c.member(leader)
            .connect()
            .call(&me.put("before", TTL, "x", None))
            .status,
        Status::Done
    );
    c.peers.insert(4, free_port());
    let add = format!(
        "{{\"Action\":\"Cluster\",\"Op\":\"add\",\"Node\":4,\"Peer\":\"127.0.0.1:{}\"}}\n",
        c.peers[&4]
    );
    let mut admin = c.member(leader).connect();
    admin.send_raw(add.as_bytes());
    assert_eq!(admin.recv().status, Status::Done);
    c.boot(4, true);
    let deadline = Instant::now() + LONG;
    loop {
        let r = c.member(4).connect().call(&me.get("before"));
        if r.data.as_deref() == Some("x") {
            break;
        }
        assert!(Instant::now() < deadline, "member 4 never caught up: {r:?}");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.status(4).matches("\"ID\":").count(), 4);
    let remove = "{\"Action\":\"Cluster\",\"Op\":\"remove\",\"Node\":4}\n";
    let mut admin = c.member(c.leader()).connect();
    admin.send_raw(remove.as_bytes());
    assert_eq!(admin.recv().status, Status::Done);
    // The removed member stops by itself.
    let mut gone = c.members.remove(&4).unwrap();
    let status = gone.wait_exit(LONG).expect("a removed member stops");
    assert!(status.success(), "{status:?}");
    let leader = c.leader();
    assert_eq!(c.status(leader).matches("\"ID\":").count(), 3);
}

#[test]
fn garbage_on_the_peer_port_changes_nothing() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    for id in c.peers.keys() {
        let mut s = TcpStream::connect(("127.0.0.1", c.peers[id])).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut s2 = TcpStream::connect(("127.0.0.1", c.peers[id])).unwrap();
        // A hello from another cluster.
        let mut frame = vec![17, 0, 0, 0, 1];
        frame.extend_from_slice(&0xdead_beef_u64.to_le_bytes());
        frame.extend_from_slice(&2u64.to_le_bytes());
        let _ = s2.write_all(&frame);
        // The member closes both.
        for mut s in [s, s2] {
            s.set_read_timeout(Some(LONG)).unwrap();
            let mut buf = [0u8; 16];
            assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
        }
    }
    assert_eq!(c.leader(), leader);
    let r = c
        .member(leader)
        .connect()
        .call(&Client::new("x").lock("after", TTL));
    assert_eq!(r.status, Status::Locked);
}

#[test]
fn a_stopping_leader_hands_over_first() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let term = field(&c.status(leader), "\"Term\":");
    let mut old = c.members.remove(&leader).unwrap();
    let (status, _) = old.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        old.log().contains("handing the leadership over"),
        "{}",
        old.log()
    );
    let next = c.leader();
    assert_ne!(next, leader);
    // A transfer is one election, not a timeout and a campaign.
    let now = field(&c.status(next), "\"Term\":");
    assert_eq!(now, term + 1, "term went from {term} to {now}");
}
