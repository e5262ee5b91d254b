//! The cluster end to end: three (or four) `dlm-server` processes on
//! loopback, replicating the engine on Raft.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::Status;
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::cluster::{Cluster, field, free_port};
use dlm_tests::{Conn, Reply, Server};

const TTL: Ttl = Ttl::from_secs(60);
const LONG: Duration = Duration::from_secs(20);

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
    // The killed member comes back (in memory: empty). No member counted
    // on what it held (the new leader started afresh with it), so it is
    // simply brought up to date.
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

/// A durable leader asked to remove itself (its writes go to disk on a
/// thread of their own, and clients keep it writing): the removal applies,
/// and the old leader stops cleanly (raft-rs would panic on a leader that
/// is no longer a member when one of its writes completes), having
/// answered or closed the asking connection; the others go on without it.
#[test]
fn a_durable_leader_that_removes_itself_stops_cleanly() {
    let dir = dlm_tests::scratch_dir("self-removal");
    let data = format!("{}/{{id}}", dir.display());
    let mut c = Cluster::start(3, &["--data-dir", &data]);
    let leader = c.leader();
    // Writes in flight when the removal applies, and after.
    let addr = c.member(leader).addr();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&written);
    let writer = thread::spawn(move || {
        let w = Client::new("w");
        let mut conn = Conn::open(addr);
        let mut done = 0u64;
        while done < 100_000 {
            let mut line = Vec::new();
            let key = format!("k{}", done % 50);
            let put = w.put(&key, TTL, "v", None);
            if put.write(&mut line).is_err() || conn.try_send_raw(&line).is_err() {
                break;
            }
            match conn.recv_line() {
                Some(l) if Reply::parse(&l).status == Status::Done => {
                    done += 1;
                    count.store(done, std::sync::atomic::Ordering::Relaxed);
                }
                _ => break,
            }
        }
        done
    });
    dlm_tests::eventually(LONG, "writes through the leader", || {
        written.load(std::sync::atomic::Ordering::Relaxed) >= 100
    });
    let remove = format!("{{\"Action\":\"Cluster\",\"Op\":\"remove\",\"Node\":{leader}}}\n");
    let mut admin = c.member(leader).connect();
    admin.send_raw(remove.as_bytes());
    // Done, or the connection closed (the member stopped on a follower's
    // goodbye before it applied the removal itself).
    if let Some(line) = admin.recv_line() {
        assert!(
            line.starts_with(b"{\"Status\":\"Done\""),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }
    let mut old = c.members.remove(&leader).unwrap();
    let status = old.wait_exit(LONG).expect("a removed leader stops");
    let _ = writer.join();
    assert!(
        status.success() && !old.log().contains("panicked"),
        "{status:?}\n{}",
        old.log()
    );
    let next = c.leader();
    assert_ne!(next, leader);
    assert_eq!(c.status(next).matches("\"ID\":").count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_on_the_peer_port_changes_nothing() {
    let c = Cluster::start(3, &[]);
    // Every member knows the cluster's ID (from its first entry) before
    // another cluster's hello is tried on it (until then a member cannot
    // tell another cluster's hello from its own).
    c.leader();
    let deadline = Instant::now() + LONG;
    for id in c.peers.keys() {
        while !c.member(*id).log().contains("cluster ID known") {
            assert!(
                Instant::now() < deadline,
                "member {id} never applied the bootstrap entry"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
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
    // Each member refused both and said why. (Whether the leader stays the
    // same is not asserted: on a loaded 2-core machine a starved member
    // may call an election for reasons of its own.)
    for id in c.peers.keys() {
        let deadline = Instant::now() + LONG;
        while c
            .member(*id)
            .log()
            .matches("peer connection refused")
            .count()
            < 2
        {
            assert!(
                Instant::now() < deadline,
                "member {id}: {}",
                c.member(*id).log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    let r = c
        .member(c.leader())
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

/// A cluster of one with a data directory: `kill -9` and a restart keep
/// locks, values, revisions and the order of tokens.
#[test]
fn a_durable_server_survives_kill_9() {
    let dir = dlm_tests::scratch_dir("durable");
    let d = dir.to_str().unwrap().to_owned();
    let server = Server::with_args(&["--data-dir", &d]);
    let port = server.addr().port();
    let me = Client::new("me");
    let mut c = server.connect();
    let held = c.call(&me.lock("held", TTL)).token.unwrap();
    let mut last = held;
    for i in 0..200 {
        let t = c.call(&me.lock(&format!("l{i}"), TTL)).token.unwrap();
        assert!(t > last);
        last = t;
        c.call(&me.unlock(&format!("l{i}"), None));
    }
    assert_eq!(c.call(&me.put("k", TTL, "v1", None)).revision, Some(1));
    assert_eq!(c.call(&me.put("k", TTL, "v2", None)).revision, Some(2));
    drop(c);
    server.signal(libc::SIGKILL);
    drop(server);
    let again = Server::on_port(port, &["--data-dir", &d]);
    let mut c = again.connect();
    let r = c.call(&me.test_lock("held"));
    assert_eq!((r.status, r.token), (Status::Locked, Some(held)));
    let r = c.call(&me.get("k"));
    assert_eq!((r.data.as_deref(), r.revision), (Some("v2"), Some(2)));
    let t = c.call(&me.lock("after", TTL)).token.unwrap();
    assert!(t > last, "token {t} after a restart, {last} before");
    // The same directory as another node: refused, clearly.
    drop(c);
    again.signal(libc::SIGKILL);
    drop(again);
    let out = std::process::Command::new(dlm_tests::binary("dlm-server", "dlm-server"))
        .args([
            "--node",
            "2",
            "--peers",
            "2=127.0.0.1:1",
            "--data-dir",
            &d,
            "127.0.0.1",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to node 1"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every member stops and starts again from its data directory: nothing
/// acknowledged is lost; a member far behind is brought up to date by a
/// snapshot; the log is compacted behind snapshots.
#[test]
fn a_durable_cluster_restarts_and_catches_members_up_by_snapshot() {
    let dirs: Vec<std::path::PathBuf> = (1..=3)
        .map(|i| dlm_tests::scratch_dir(&format!("node{i}")))
        .collect();
    let mut c = Cluster::start(0, &[]);
    c.peers = (1..=3).map(|id| (id, free_port())).collect();
    let boot = |c: &mut Cluster, id: u64| {
        c.extra = vec![
            "--data-dir".into(),
            dirs[id as usize - 1].to_str().unwrap().to_owned(),
            "--snapshot-every".into(),
            "50".into(),
        ];
        c.boot(id, false);
    };
    for id in 1..=3 {
        boot(&mut c, id);
    }
    let leader = c.leader();
    let w = Client::new("w");
    let mut conn = c.member(leader).connect();
    for i in 0..300 {
        assert_eq!(
            conn.call(&w.put(&format!("k{}", i % 40), TTL, &format!("v{i}"), None))
                .status,
            Status::Done
        );
    }
    drop(conn);
    // All down, all up.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        boot(&mut c, id);
    }
    // Every value is back. Right after all members restart, a loaded
    // machine may hold a second election, which closes the connections the
    // first leader served: a client then asks the new leader again (a
    // `Get` may be repeated).
    let mut leader = c.leader();
    let mut conn = c.member(leader).connect();
    let deadline = Instant::now() + LONG;
    for i in 260..300 {
        let key = format!("k{}", i % 40);
        let get = w.get(&key);
        let got = loop {
            conn.send(&get);
            if let Some(line) = conn.recv_line() {
                break dlm_tests::Reply::parse(&line);
            }
            assert!(Instant::now() < deadline, "no leader answered {i}");
            leader = c.leader();
            conn = c.member(leader).connect();
        };
        assert_eq!(got.data.as_deref(), Some(format!("v{i}").as_str()));
    }
    // A member loses its directory: it comes back empty and is caught up
    // by a snapshot (its log was compacted away on the others).
    let lost = c.followers(leader)[0];
    c.kill(lost);
    let _ = std::fs::remove_dir_all(&dirs[lost as usize - 1]);
    for i in 300..400 {
        assert_eq!(
            conn.call(&w.put(&format!("k{}", i % 40), TTL, &format!("v{i}"), None))
                .status,
            Status::Done
        );
    }
    c.extra = vec![
        "--data-dir".into(),
        dirs[lost as usize - 1].to_str().unwrap().to_owned(),
        "--snapshot-every".into(),
        "50".into(),
    ];
    c.rejoin(lost);
    let deadline = Instant::now() + LONG;
    loop {
        let s = c.status(leader);
        let lag = s
            .split(&format!("\"ID\":{lost},"))
            .nth(1)
            .map_or(u64::MAX, |t| field(t, "\"Lag\":"));
        if lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member {lost} never caught up: {s}\n{}",
            c.member(lost).log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let installed = c.member(lost).log();
    assert!(
        installed.contains("installed the leader's snapshot"),
        "{installed}"
    );
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A follower without a data directory restarts empty while the leader
/// counts on what it held: it must not take part as if nothing happened
/// (Raft's promises rest on members keeping what they acknowledged). It
/// stops with a message saying what to do; removed, added back and started
/// with --join, it catches up.
#[test]
fn a_member_that_lost_its_data_stops_then_rejoins() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let w = Client::new("w");
    let mut conn = c.member(leader).connect();
    for i in 0..100 {
        assert_eq!(
            conn.call(&w.put(&format!("k{i}"), TTL, "v", None)).status,
            Status::Done
        );
    }
    let lost = c.followers(leader)[0];
    c.kill(lost);
    c.boot(lost, false);
    let mut stale = c.members.remove(&lost).unwrap();
    let status = stale
        .wait_exit(LONG)
        .expect("a member that lost its data stops");
    assert!(!status.success());
    let log = stale.log();
    assert!(log.contains("this member lost its data"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    drop(stale);
    assert_eq!(conn.call(&w.get("k99")).data.as_deref(), Some("v"));
    c.rejoin(lost);
    let deadline = Instant::now() + LONG;
    loop {
        // While the member learns who leads, it may close a relayed
        // connection (a client reconnects); only the answer counts.
        let Ok(stream) = TcpStream::connect(c.member(lost).addr()) else {
            panic!("member {lost} is gone:\n{}", c.member(lost).log());
        };
        drop(stream);
        let mut m = c.member(lost).connect();
        m.send(&w.get("k99"));
        let r = m.recv_line().map(|l| Reply::parse(&l));
        if r.as_ref().and_then(|r| r.data.as_deref()) == Some("v") {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up: {r:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A data directory whose log lost its tail (a crash mid-write, a damaged
/// disk): the member starts, says what was cut, and never loads it.
#[test]
fn a_torn_log_tail_is_cut_and_reported() {
    let dir = dlm_tests::scratch_dir("torn");
    let d = dir.to_str().unwrap().to_owned();
    let server = Server::with_args(&["--data-dir", &d]);
    let port = server.addr().port();
    let w = Client::new("w");
    let mut c = server.connect();
    for i in 0..100 {
        assert_eq!(
            c.call(&w.put(&format!("k{i}"), TTL, "value", None)).status,
            Status::Done
        );
    }
    drop(c);
    server.signal(libc::SIGKILL);
    drop(server);
    // The newest log file loses the end of its last record.
    let mut files: Vec<_> = std::fs::read_dir(dir.join("raft"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "raftlog"))
        .collect();
    files.sort();
    let newest = files.pop().unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    std::fs::write(&newest, &bytes[..end - 7]).unwrap();
    let again = Server::on_port(port, &["--data-dir", &d]);
    let deadline = Instant::now() + LONG;
    while !again.log().contains("torn or corrupt tail") {
        assert!(
            Instant::now() < deadline,
            "no report of the cut:\n{}",
            again.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let mut c = again.connect();
    // It serves, with everything before the cut.
    assert_eq!(c.call(&w.get("k0")).data.as_deref(), Some("value"));
    assert_eq!(c.call(&w.put("new", TTL, "x", None)).status, Status::Done);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member started before its peers says which ones it waits for, then
/// that the cluster has a leader once a majority is up.
#[test]
fn a_member_waits_for_its_peers_and_says_so() {
    let _turn = dlm_tests::cluster::one_at_a_time();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let first = Server::with_args(&["--node", "1", "--peers", &peers]);
    let wait_log = |s: &Server, what: &str| {
        let deadline = Instant::now() + LONG;
        loop {
            let log = s.log();
            if log.contains(what) {
                return log;
            }
            assert!(Instant::now() < deadline, "never logged {what:?}:\n{log}");
            thread::sleep(Duration::from_millis(50));
        }
    };
    let log = wait_log(&first, "waiting for peers that are not up");
    assert!(
        log.contains(&format!("2 (127.0.0.1:{})", ports[1])),
        "{log}"
    );
    assert!(
        log.contains(&format!("3 (127.0.0.1:{})", ports[2])),
        "{log}"
    );
    // Nothing is served meanwhile: a client is told, not left hanging.
    let _second = Server::with_args(&["--node", "2", "--peers", &peers]);
    wait_log(&first, "the cluster has a leader");
    let r = first.connect().call(&Client::new("x").lock("formed", TTL));
    assert_eq!(r.status, Status::Locked);
}

/// Found by the chaos suite (`dlm-chaos`, issue 15): the leader advanced
/// its engine by its own uptime on every client line, outside the log, so
/// its engine expired locks earlier than every other member's (whose time
/// comes only from the log's stamps). The leader then granted a lock that
/// was still held on the cluster's clock, and the members' engines parted:
/// after a failover the next leader handed out the same fencing tokens
/// again. A member whose uptime runs ahead of the cluster's clock (it
/// started long before its peers could elect) shows it at once.
#[test]
fn a_leader_counts_lock_time_on_the_cluster_clock_not_its_own_uptime() {
    let mut c = Cluster::prepare(3, &[]);
    c.boot(1, false);
    // The fault itself, not a wait for state: member 1 runs alone (no
    // quorum, no cluster clock yet) for longer than the lock's TTL below.
    thread::sleep(Duration::from_secs(4));
    c.boot(2, false);
    c.boot(3, false);
    if c.leader() != 1 {
        c.admin("{\"Action\":\"Cluster\",\"Op\":\"transfer\",\"Node\":1}");
        let deadline = Instant::now() + LONG;
        while c.leader() != 1 {
            assert!(Instant::now() < deadline, "member 1 never took the lead");
            thread::sleep(Duration::from_millis(20));
        }
    }
    let mut conn = c.member(1).connect();
    let a = conn.call(&Client::new("a").lock("x", Ttl::from_millis(2_500)));
    assert_eq!(a.status, Status::Locked);
    let b = conn.call(&Client::new("b").lock("x", TTL));
    assert_eq!(
        b.status,
        Status::NotOwner,
        "b was granted a's lock at once (token {:?} after a's {:?})",
        b.token,
        a.token
    );
    // Every member's engine agrees: the next leader still sees a's grant.
    c.kill(1);
    let next = c.leader();
    let r = c
        .member(next)
        .connect()
        .call(&Client::new("a").test_lock("x"));
    assert_eq!((r.status, r.token), (Status::Locked, a.token));
}

/// Found by the chaos suite (`dlm-chaos`, issue 15): a new leader applying
/// the last entries of its predecessor took a grant to one of the
/// predecessor's waiters for undeliverable and took it back, though the
/// predecessor had told its client already; the lock then went to a
/// second holder at once. (The race needs the old leader to stop before
/// its followers hear that the grant's entry committed; each round
/// stops it right after the grant arrives.)
#[test]
fn a_new_leader_never_takes_back_a_grant_its_predecessor_delivered() {
    let c = Cluster::start(3, &[]);
    for round in 0..3 {
        let leader = c.leader();
        let name = format!("x{round}");
        let a = Client::new("a");
        let mut holder = c.member(leader).connect();
        assert_eq!(holder.call(&a.lock(&name, TTL)).status, Status::Locked);
        let mut waiter = c.member(leader).connect();
        waiter.send(&Client::new("b").lock_wait(&name, TTL, TTL));
        c.member(leader)
            .wait_for(LONG, "b waits", |s| s.get(Stat::AWait) == 1);
        holder.send(&a.unlock(&name, None));
        let granted = waiter.recv();
        c.member(leader).signal(libc::SIGSTOP);
        assert_eq!(granted.status, Status::Locked);
        // A new leader, through the followers.
        let followers = c.followers(leader);
        let deadline = Instant::now() + LONG;
        let next = loop {
            let l = field(&c.status(followers[0]), "\"Leader\":");
            if l != 0 && l != leader {
                break l;
            }
            assert!(Instant::now() < deadline, "no new leader");
            thread::sleep(Duration::from_millis(20));
        };
        let r = c
            .member(next)
            .connect()
            .call(&Client::new("c").lock(&name, TTL));
        c.member(leader).signal(libc::SIGCONT);
        assert_eq!(
            r.status,
            Status::NotOwner,
            "round {round}: c got the lock b was granted (token {:?}) from the new leader",
            granted.token
        );
    }
}

/// A client that pipelines more requests before any leader exists than a
/// connection may have answers waiting (1,024) gets every answer, in order:
/// the member holding its bytes loses none, whether it relays them to the
/// leader (what usually happens here: a peer that boots later wins) or
/// becomes the leader itself and serves them (that path fed them to its
/// host until the host paused reading, and dropped the rest; it now reads
/// them like the socket's own bytes).
#[test]
fn requests_sent_before_any_leader_are_all_answered() {
    const N: usize = 3_000;
    let mut c = Cluster::prepare(3, &[]);
    c.boot(1, false);
    let mut conn = c.member(1).connect();
    let owner = Client::new("early");
    let names: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    for name in &names {
        conn.send(&owner.put(name, TTL, "v", None));
    }
    c.boot(2, false);
    c.boot(3, false);
    for (i, name) in names.iter().enumerate() {
        let r = conn.recv();
        assert_eq!(r.status, Status::Done, "answer {i} ({name}): {r:?}");
    }
    let leader = c.leader();
    eprintln!("member {leader} leads (1: it served them itself, else relayed)");
    let mut check = c.member(leader).connect();
    for name in [&names[0], &names[N / 2], &names[N - 1]] {
        assert_eq!(check.call(&owner.get(name)).status, Status::Done, "{name}");
    }
}

/// `Stats` and `Version` are answered by a member outside the log: they
/// must not move its engine to the member's own clock. A member's clock
/// runs ahead of the cluster's (which starts at the first election and
/// stands still through every later one), and an engine moved to it would
/// expire a lock before the log does: here the leader would hand a
/// waiter the lock while the holder's TTL still runs. Two elections (the
/// leader paused) put the clocks apart; then, while a 2 s lock is held and
/// a waiter queues, every member is asked for its `Stats` without pause.
#[test]
fn stats_never_move_a_members_engine_ahead_of_the_log() {
    let c = Cluster::start(3, &[]);
    for _ in 0..2 {
        let leader = c.leader();
        c.member(leader).signal(libc::SIGSTOP);
        let deadline = Instant::now() + LONG;
        loop {
            let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
            let next = others.iter().find_map(|id| {
                let s = c.status(*id);
                let l = field(&s, "\"Leader\":");
                (l != 0 && l != leader).then_some(l)
            });
            if next.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "no new leader");
            thread::sleep(Duration::from_millis(20));
        }
        c.member(leader).signal(libc::SIGCONT);
    }
    let leader = c.leader();
    let addr = c.member(leader).addr();
    let ttl = Duration::from_secs(2);
    let sent = Instant::now();
    let holder = c
        .member(leader)
        .connect()
        .call(&Client::new("holder").lock("x", Ttl::from_secs(2)))
        .token
        .unwrap();
    let waiter = thread::spawn(move || {
        let mut conn = Conn::open(addr);
        let r = conn.call(&Client::new("waiter").lock_wait("x", TTL, Ttl::from_secs(15)));
        (r.status, r.token, Instant::now())
    });
    let mut stats: Vec<Conn> = (1..=3).map(|id| c.member(id).connect()).collect();
    while !waiter.is_finished() {
        for s in &mut stats {
            let _ = s.stats();
        }
        assert!(sent.elapsed() < LONG, "the waiter was never answered");
    }
    let (status, token, granted) = waiter.join().unwrap();
    assert_eq!(status, Status::Locked);
    assert!(token.unwrap() > holder);
    let after = granted.duration_since(sent);
    assert!(
        after >= ttl,
        "the waiter was granted {after:?} after the holder sent its Lock (TTL {ttl:?})"
    );
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A client on a follower that pipelines megabytes of requests behind a
/// wait (the leader holds them all back) is cut off with a reason once
/// 4 MiB wait at the leader, instead of growing the leader's memory
/// without end; the lock it waited for is not granted to it, and the
/// cluster serves everyone else meanwhile.
#[test]
fn a_flood_behind_a_wait_through_a_follower_is_cut_off_with_a_reason() {
    let c = Cluster::start(3, &[]);
    // A leadership change closes relayed connections (an election on a
    // loaded machine): the check is then made again under the new leader.
    for attempt in 1..=3 {
        if flood_behind_a_wait(&c, &format!("busy{attempt}")) {
            return;
        }
        eprintln!("attempt {attempt}: the leadership moved meanwhile; again");
    }
    panic!("the leadership moved during every attempt");
}

/// One attempt of the test above on lock `name`: false if the flooded
/// connection closed without a reason because the leadership moved.
fn flood_behind_a_wait(c: &Cluster, name: &str) -> bool {
    let leader = c.leader();
    let term = field(&c.status(leader), "\"Term\":");
    let f = c.followers(leader)[0];
    let holder = Client::new("holder");
    let mut h = c.member(leader).connect();
    assert_eq!(h.call(&holder.lock(name, TTL)).status, Status::Locked);
    let before = rss_kib(c.member(leader).pid());

    let flooder = Client::new("flooder");
    let mut conn = c.member(f).connect();
    conn.send(&flooder.lock_wait(name, TTL, TTL));
    c.member(leader)
        .wait_for(LONG, "the flooder waits", |s| s.get(Stat::AWait) == 1);
    let mut writer = conn.stream().try_clone().unwrap();
    let test_lock = {
        let mut line = Vec::new();
        flooder.test_lock(name).write(&mut line).unwrap();
        line
    };
    let flood = thread::spawn(move || {
        let chunk = test_lock.repeat((256 << 10) / test_lock.len());
        // 64 MiB at most; the connection is cut before (or what comes
        // after the cut is read and dropped).
        let mut sent = 0usize;
        while sent < 64 << 20 && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    });
    // Everyone else is served meanwhile, through the same follower.
    let me = Client::new("other");
    assert_eq!(served(c, f, &me.put("k", TTL, "v", None)), Status::Done);

    let line = conn.recv_line();
    flood.join().unwrap();
    let Some(line) = line else {
        let now = field(&c.status(c.leader()), "\"Term\":");
        assert_ne!(now, term, "closed without a reason, and no election");
        return false;
    };
    let r = Reply::parse(&line);
    let text = String::from_utf8_lossy(&line).into_owned();
    assert_eq!(r.status, Status::No, "{text}");
    assert!(text.contains("too many requests unread"), "{text}");
    assert!(conn.closed_within(LONG), "closed after the reason");
    // The leader never held the flood: at most its 4 MiB bound (what the
    // follower read before it learnt of the cut was dropped).
    let grown = rss_kib(c.member(leader).pid()).saturating_sub(before);
    assert!(grown < 40 << 10, "the leader grew by {grown} KiB");
    // The waiter left the queue; the lock is still the holder's.
    c.member(leader)
        .wait_for(LONG, "the waiter gone", |s| s.get(Stat::AWait) == 0);
    assert_eq!(h.call(&holder.test_lock(name)).status, Status::Locked);
    assert_eq!(h.call(&holder.unlock(name, None)).status, Status::Unlocked);
    true
}

/// `req`'s answer through member `m`, on a new connection each try: a
/// relayed connection closes when the leadership moves (an election on a
/// loaded machine), which is no failure of what a test checks here.
fn served(c: &Cluster, m: u64, req: &dlm_core::protocol::Request<'_>) -> Status {
    for _ in 0..3 {
        let mut conn = c.member(m).connect();
        conn.send(req);
        if let Some(line) = conn.recv_line() {
            return Reply::parse(&line).status;
        }
    }
    panic!("member {m} closed three connections in a row");
}

/// A client on a follower that sends requests as fast as it can and reads
/// none of the answers is not read past a bound (its answers back up, so
/// the follower stops reading it, as a server stops reading its own
/// clients): the follower's memory stays small, the client is closed once
/// it has read nothing for the idle timeout, and the cluster serves
/// everyone else meanwhile.
#[test]
fn a_client_that_reads_nothing_through_a_follower_is_bounded_then_closed() {
    let c = Cluster::start(3, &["--idle-timeout", "2s"]);
    let leader = c.leader();
    let f = c.followers(leader)[0];
    let before = rss_kib(c.member(f).pid());
    let conn = c.member(f).connect();
    let mut writer = conn.stream().try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let flood = thread::spawn(move || {
        let mut line = Vec::new();
        Client::new("flooder")
            .test_lock("x")
            .write(&mut line)
            .unwrap();
        let chunk = line.repeat((256 << 10) / line.len());
        let mut sent = 0usize;
        while sent < 256 << 20 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let me = Client::new("other");
    assert_eq!(served(&c, f, &me.put("k", TTL, "v", None)), Status::Done);
    // The flood ends when the follower closes the client that reads
    // nothing (its sends fail), long before 256 MiB.
    let sent = flood.join().unwrap();
    assert!(sent < 256 << 20, "never closed ({sent} bytes sent)");
    let grown = rss_kib(c.member(f).pid()).saturating_sub(before);
    assert!(grown < 40 << 10, "the follower grew by {grown} KiB");
    assert_eq!(served(&c, f, &me.test_lock("x")), Status::Unlocked);
    drop(conn);
}

/// Relayed clients count against `--max-connections` on the follower
/// that holds them: past it, a newcomer gets the "server full" line at
/// once (before it sends anything, so from the follower itself), the
/// relayed clients already in keep being served, and a place freed lets
/// the next one in.
#[test]
fn a_full_follower_refuses_relayed_connections() {
    let c = Cluster::start(3, &["--max-connections", "3"]);
    let leader = c.leader();
    let follower = c.followers(leader)[0];
    let w = Client::new("w");
    let mut held = Vec::new();
    for i in 0..3 {
        let mut conn = c.member(follower).connect();
        // Answered: relayed to the leader and back.
        let r = conn.call(&w.put(&format!("full{i}"), TTL, "v", None));
        assert_eq!(r.status, Status::Done, "{r:?}");
        held.push(conn);
    }
    let mut extra = c.member(follower).connect();
    let line = extra.recv_line().expect("a line saying why");
    let text = String::from_utf8_lossy(&line).into_owned();
    assert!(text.contains("server full"), "{text}");
    drop(extra);
    for (i, conn) in held.iter_mut().enumerate() {
        let r = conn.call(&w.get(&format!("full{i}")));
        assert_eq!(r.data.as_deref(), Some("v"), "{r:?}");
    }
    drop(held.pop());
    dlm_tests::eventually(LONG, "a freed place lets a newcomer in", || {
        let mut n = c.member(follower).connect();
        n.send(&w.get("full0"));
        n.recv_line()
            .is_some_and(|l| Reply::parse(&l).data.as_deref() == Some("v"))
    });
}

/// Puts value "v" of owner "attacker" (16 Ki control characters: its
/// answer, escaped, is 98 KB) through `leader`; returns it and `n`
/// pipelined `Get`s of it.
fn large_answer_gets(c: &Cluster, leader: u64, n: usize) -> (String, Vec<u8>) {
    let me = Client::new("attacker");
    let value = "\u{1}".repeat(16 * 1024);
    let mut setup = c.member(leader).connect();
    assert_eq!(
        setup.call(&me.put("v", TTL, &value, None)).status,
        Status::Done
    );
    let mut get = Vec::new();
    me.get("v").write(&mut get).expect("encode");
    (value, get.repeat(n))
}

/// Writes `bytes` to `s` until they are all written, or the peer takes
/// nothing for half a second (it stopped reading), or the connection
/// fails; how many were written.
fn write_until_stalled(s: &TcpStream, bytes: &[u8]) -> usize {
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    let mut w = s;
    let mut sent = 0;
    while sent < bytes.len() {
        match w.write(&bytes[sent..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    s.set_write_timeout(None).expect("write timeout");
    sent
}

/// Peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Ten clients of a follower each pipeline 1,000 `Get`s of a value whose
/// answer is 98 KB (53 KB of requests, 98 MB of answers) and read nothing.
/// The leader answered each batch of reads whole once its read index was
/// applied, past every backlog, and sent the answers to the follower as
/// fast as it made them: it grew to 1 GB, the Raft messages to that
/// follower queued behind the answers, and the follower took the
/// leadership. Now reads are answered as their connection reads (its
/// backlog, as on a single server) and a leader stops answering a
/// follower's clients while its link to that follower is backed up: the
/// leader stays small, keeps its term, and serves a client that reads.
/// The follower charges its relayed clients to its `--connection-memory`
/// (they were outside it: 8 MiB of unread answers each, 110 MB here) and
/// past it cuts off those with a full backlog.
#[test]
fn clients_of_a_follower_that_read_nothing_cannot_swamp_the_cluster() {
    const ATTACKERS: usize = 10;
    const BUDGET_MIB: i64 = 4;
    let c = Cluster::start(
        3,
        &[
            "--idle-timeout",
            "60s",
            "--connection-memory",
            "4MiB",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let leader = c.leader();
    let term = field(&c.status(leader), "\"Term\":");
    let follower = c.followers(leader)[0];
    // Relayed clients are charged on the follower (its own metric: a
    // `Stats` request would be relayed to the leader).
    let charged = || {
        let text = dlm_tests::http_get(c.member(follower).http_addr(), "/metrics", "").body;
        dlm_tests::metric(&text, "dlm_connection_memory_bytes").unwrap_or(0.0)
    };
    let idle: Vec<_> = (0..ATTACKERS)
        .map(|i| {
            let mut conn = c.member(follower).connect();
            let r = conn.call(&Client::new("idle").put(&format!("idle{i}"), TTL, "v", None));
            assert_eq!(r.status, Status::Done, "{r:?}");
            conn
        })
        .collect();
    // The metrics are published every second.
    let mut idle_charge = 0.0;
    dlm_tests::eventually(LONG, "10 relayed clients charged on the follower", || {
        idle_charge = charged();
        idle_charge >= 10.0 * 200.0
    });
    drop(idle);
    let (_, batch) = large_answer_gets(&c, leader, 1000);
    let pid = c.member(leader).pid();
    let before = peak_rss_kib(pid);
    let follower_pid = c.member(follower).pid();
    let follower_before = peak_rss_kib(follower_pid);
    let attackers: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| TcpStream::connect(c.member(follower).addr()).expect("connect"))
        .collect();
    for a in &attackers {
        write_until_stalled(a, &batch);
    }
    // While they hold their answers unread, a client that reads is served
    // through the same follower, and by the same leader.
    let mut reader = c.member(follower).connect();
    for _ in 0..20 {
        let r = reader.call(&Client::new("reader").lock("free", TTL));
        assert!(matches!(r.status, Status::Locked | Status::Done), "{r:?}");
    }
    let grown_mib = (peak_rss_kib(pid) - before) / 1024;
    assert!(
        grown_mib <= 64,
        "the leader grew {grown_mib} MiB for 10 x 98 MB of unread answers"
    );
    assert_eq!(c.leader(), leader, "the leadership moved");
    assert_eq!(field(&c.status(leader), "\"Term\":"), term, "a new term");
    // The follower: its budget, each client's base and backlog and one
    // answer past it, the link's buffers, allocator slack.
    let follower_grown = (peak_rss_kib(follower_pid) - follower_before) / 1024;
    let bound = BUDGET_MIB + 10 * (32 + 256 + 100) / 1024 + 12;
    assert!(
        follower_grown <= bound,
        "the follower grew {follower_grown} MiB (bound {bound})"
    );
    drop(attackers);
    dlm_tests::eventually(LONG, "the follower's charge is given back", || {
        charged() < idle_charge * 2.0
    });
}

/// A connection with a session reads through the log (its requests keep
/// the session alive), and a logged `Get` is answered when it applies,
/// whether the client reads or not: ten such connections pipelining 1,000
/// `Get`s of a value whose answer is 98 KB, reading nothing, made a leader
/// hold 650 MB (here: four with 300 each). Now a connection stops being
/// read while 16 of its `Get`s are in the log: the leader stays small, and
/// each connection, once it reads, gets every answer in order.
#[test]
fn session_connections_that_read_nothing_cannot_swamp_the_leader() {
    const ATTACKERS: usize = 4;
    const GETS: usize = 300;
    let c = Cluster::start(3, &["--idle-timeout", "60s"]);
    let leader = c.leader();
    let me = Client::new("attacker");
    let (escapes, batch) = large_answer_gets(&c, leader, GETS);
    let pid = c.member(leader).pid();
    let before = peak_rss_kib(pid);
    let mut attackers: Vec<Conn> = (0..ATTACKERS)
        .map(|_| {
            let mut conn = c.member(leader).connect();
            let r = conn.call(&me.session(TTL));
            assert_eq!(r.status, Status::Done, "{r:?}");
            conn
        })
        .collect();
    for a in &attackers {
        let sent = write_until_stalled(a.stream(), &batch);
        assert_eq!(sent, batch.len(), "the leader stopped reading for good");
    }
    let mut other = c.member(leader).connect();
    let r = other.call(&Client::new("other").lock("free", TTL));
    assert_eq!(r.status, Status::Locked, "{r:?}");
    let grown_mib = (peak_rss_kib(pid) - before) / 1024;
    assert!(
        grown_mib <= 48,
        "the leader grew {grown_mib} MiB for 4 x 29 MB of unread answers"
    );
    // Each reads now: every answer, in order.
    for a in &mut attackers {
        for i in 0..GETS {
            let line = a
                .recv_line()
                .unwrap_or_else(|| panic!("answer {i} missing"));
            let r = Reply::parse(&line);
            assert_eq!(r.data.as_deref(), Some(escapes.as_str()), "answer {i}");
        }
    }
}
