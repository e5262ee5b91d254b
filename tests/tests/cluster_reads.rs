//! Reads in a cluster (`Get`, `TestLock`) are answered by read index, not
//! through the log: they must stay linearizable. A leader that has been
//! deposed without knowing it yet must never answer a read with a value
//! older than a write the new leader acknowledged; and a connection's
//! requests still take effect in the order it sent them.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use dlm_tests::chaos::client::{Conn, Outcome};
use dlm_tests::chaos::members::{Members, Setup};
use dlm_tests::chaos::proxy::{Link, Net};
use dlm_tests::eventually;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

fn put(key: &str, value: &str) -> Value {
    json!({"Action":"Put","FileName":key,"ID":"o","Expire":60,"DataStore":value})
}

fn get(key: &str) -> Value {
    json!({"Action":"Get","FileName":key,"ID":"o"})
}

/// Sends `req` to the members at `addrs` until one answers `Done`.
fn done(addrs: &[SocketAddr], req: &Value) -> Value {
    let mut conn = Conn::new(addrs.to_vec(), 0);
    let mut answer = None;
    eventually(LONG, &format!("never Done: {req}"), || {
        answer = match conn.call(req, Duration::from_secs(5)) {
            Outcome::Answer(v) if v["Status"] == "Done" => Some(v),
            _ => None,
        };
        answer.is_some()
    });
    answer.unwrap_or_default()
}

fn start(what: &str) -> (Members, Arc<Net>, std::path::PathBuf) {
    let dir = dlm_tests::scratch_dir(what);
    let net = Arc::new(Net::default());
    let setup = Setup {
        server: dlm_tests::binary("dlm-server", "dlm-server"),
        dir: dir.clone(),
        durable: false,
        preload: None,
        single: false,
    };
    let members = Members::start(3, setup, &net).expect("3 members start");
    (members, net, dir)
}

fn wait_leader(members: &Members, not: u64) -> u64 {
    let mut l = 0;
    eventually(LONG, &format!("no leader other than {not}"), || {
        l = members.leader();
        l != 0 && l != not
    });
    l
}

/// The leader is stopped (SIGSTOP) with a client connected; the others
/// elect a new leader, which acknowledges a new value. The old leader is
/// then cut off from them and resumed, believing it still leads, and the
/// client asks it for the value: it must not answer with the old value
/// (it cannot confirm its leadership with a quorum, so it answers nothing
/// until it learns it lost, then closes the connection or refuses).
#[test]
fn a_deposed_leader_never_answers_a_read_with_a_value_older_than_an_acknowledged_write() {
    let (mut members, net, dir) = start("deposed-read");
    let addrs = members.client_addrs();
    let old = wait_leader(&members, 0);
    let at = |id: u64| addrs[usize::try_from(id - 1).unwrap()];
    done(&[at(old)], &put("k", "old"));
    // A read through the leader answers the value.
    assert_eq!(done(&[at(old)], &get("k"))["DataStore"], "old");

    // A connection to the old leader, accepted and served before it stops.
    let stream = TcpStream::connect(at(old)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer.write_all(b"{\"Action\":\"Version\"}\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("Version"), "{line}");

    members.signal(old, libc::SIGSTOP);
    let new = wait_leader(&members, old);
    let others: Vec<SocketAddr> = (1..=3).filter(|id| *id != old).map(at).collect();
    done(&others, &put("k", "new"));
    // The old leader, cut off, resumes with the read already waiting.
    for id in 1..=3 {
        if id != old {
            net.set_both(old, id, Link::Stall);
        }
    }
    writer
        .write_all(format!("{}\n", get("k")).as_bytes())
        .unwrap();
    members.signal(old, libc::SIGCONT);
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    line.clear();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => {} // closed (it learned it lost) or never answered
        Ok(_) => {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert!(
                v["Status"] == "NO" || v["DataStore"] == "new",
                "a deposed leader answered {line} after member {new} acknowledged \"new\""
            );
        }
    }
    net.heal();
    // Healed: every member serves the new value.
    for id in 1..=3 {
        assert_eq!(
            done(&[at(id)], &get("k"))["DataStore"],
            "new",
            "member {id}"
        );
    }
    members.stop_all();
    net.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pipelined on one connection, a read never sees a request sent after it
/// and always sees one sent before it, whether it goes to the leader or
/// through a follower.
#[test]
fn pipelined_reads_and_writes_of_a_connection_take_effect_in_order() {
    let (mut members, net, dir) = start("pipelined-reads");
    let addrs = members.client_addrs();
    let leader = wait_leader(&members, 0);
    done(&addrs, &put("p", "0"));
    let mut last = 0;
    for id in [leader, if leader == 1 { 2 } else { 1 }] {
        let addr = addrs[usize::try_from(id - 1).unwrap()];
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(LONG)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        for _ in 0..50 {
            // Get, Put, Get, TestLock, Put, Get in one write: each Get
            // sees the value of the Put sent just before it, never the
            // one sent after it.
            let (a, b) = (last + 1, last + 2);
            let batch: Vec<Value> = vec![
                get("p"),
                put("p", &a.to_string()),
                get("p"),
                json!({"Action":"TestLock","FileName":"p","ID":"o"}),
                put("p", &b.to_string()),
                get("p"),
            ];
            let mut wire = String::new();
            for r in &batch {
                wire.push_str(&r.to_string());
                wire.push('\n');
            }
            writer.write_all(wire.as_bytes()).unwrap();
            let mut answers = Vec::new();
            for _ in 0..batch.len() {
                line.clear();
                assert!(reader.read_line(&mut line).unwrap() > 0, "closed");
                answers.push(serde_json::from_str::<Value>(&line).unwrap());
            }
            let want = [Some(last), None, Some(a), None, None, Some(b)];
            for (i, w) in want.iter().enumerate() {
                match w {
                    Some(v) => {
                        assert_eq!(answers[i]["DataStore"], v.to_string(), "{i}: {answers:?}");
                    }
                    None if i == 3 => assert_eq!(answers[i]["Status"], "Unlocked", "{answers:?}"),
                    None => assert_eq!(answers[i]["Status"], "Done", "{answers:?}"),
                }
            }
            last = b;
        }
    }
    members.stop_all();
    net.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
