//! Pipelining and contention against the real server: answers in order,
//! mutual exclusion checked through fencing tokens and hold intervals,
//! fair queues, and waiters that disconnect.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::{Framing, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::Server;

const TTL: Ttl = Ttl::from_secs(30);

#[test]
fn a_thousand_pipelined_requests_answer_in_order() {
    let server = Server::start();
    let mut c = server.connect();
    let me = Client::new("pipeliner");
    let legacy = Client::new("pipeliner").with_framing(Framing::Legacy);
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..250 {
        let name = format!("k{i}");
        let value = format!("value-{i}");
        // Alternate framings within the one connection.
        let who = if i % 2 == 0 { &me } else { &legacy };
        who.put(&name, TTL, &value, None).write(&mut batch).unwrap();
        expected.push((Status::Done, None));
        who.get(&name).write(&mut batch).unwrap();
        expected.push((Status::Done, Some(value)));
        who.lock(&name, TTL).write(&mut batch).unwrap();
        expected.push((Status::Locked, None));
        who.unlock(&name, None).write(&mut batch).unwrap();
        expected.push((Status::Unlocked, None));
    }
    assert_eq!(expected.len(), 1000);
    c.send_raw(&batch);
    for (i, (status, data)) in expected.into_iter().enumerate() {
        let r = c.recv();
        assert_eq!(r.status, status, "answer {i}");
        let framing = if (i / 4) % 2 == 0 {
            Framing::Plain
        } else {
            Framing::Legacy
        };
        assert_eq!(r.framing, framing, "answer {i}");
        if data.is_some() {
            assert_eq!(r.data, data, "answer {i}");
        }
    }
    assert_eq!(server.stats().get(Stat::In), 1001);
}

/// One holder's record: token and when it held the lock, on one clock.
#[derive(Clone, Copy, Debug)]
struct Hold {
    token: u64,
    from: Instant,
    to: Instant,
}

/// Checks that holds ordered by token never overlap and that tokens only
/// ever increase with time.
fn assert_mutual_exclusion(mut holds: Vec<Hold>) {
    holds.sort_by_key(|h| h.token);
    for pair in holds.windows(2) {
        assert!(pair[0].token < pair[1].token, "token reused: {pair:?}");
        assert!(
            pair[0].to <= pair[1].from,
            "two holders at once: {:?} still held when {:?} got it",
            pair[0],
            pair[1]
        );
    }
}

fn contend(waiting: bool) -> (Vec<Hold>, Vec<usize>) {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 4;
    let server = Server::start();
    let holds = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut conn = server.connect();
            let (holds, barrier) = (holds.clone(), barrier.clone());
            thread::spawn(move || {
                let id = format!("client-{i}");
                let me = Client::new(&id);
                barrier.wait();
                let mut got = 0;
                while got < ROUNDS {
                    let r = if waiting {
                        conn.call(&me.lock_wait("the-lock", TTL, Ttl::from_secs(60)))
                    } else {
                        conn.call(&me.lock("the-lock", TTL))
                    };
                    if r.status != Status::Locked {
                        assert_eq!(r.status, Status::NotOwner);
                        assert!(!waiting, "a waiter must get the lock, not time out");
                        thread::sleep(Duration::from_micros(500));
                        continue;
                    }
                    let from = Instant::now();
                    thread::sleep(Duration::from_micros(200));
                    let to = Instant::now();
                    holds.lock().unwrap().push(Hold {
                        token: r.token.unwrap(),
                        from,
                        to,
                    });
                    assert_eq!(
                        conn.call(&me.unlock("the-lock", None)).status,
                        Status::Unlocked
                    );
                    got += 1;
                }
                got
            })
        })
        .collect();
    let per_client = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let holds = holds.lock().unwrap().clone();
    (holds, per_client)
}

#[test]
fn sixty_four_clients_waiting_never_overlap() {
    let (holds, per_client) = contend(true);
    assert_eq!(holds.len(), 64 * 4);
    assert!(per_client.iter().all(|&n| n == 4), "every client served");
    assert_mutual_exclusion(holds);
}

#[test]
fn sixty_four_clients_polling_never_overlap() {
    let (holds, _) = contend(false);
    assert_eq!(holds.len(), 64 * 4);
    assert_mutual_exclusion(holds);
}

#[test]
fn waiters_that_disconnect_are_skipped() {
    let server = Server::start();
    let mut stats = server.connect();
    let mut holder = server.connect();
    holder.call(&Client::new("holder").lock("q", TTL));
    let mut waiters: Vec<_> = (0..5)
        .map(|i| {
            let mut c = server.connect();
            c.send(&Client::new(&format!("w{i}")).lock_wait("q", TTL, Ttl::from_secs(30)));
            while stats.stats().get(Stat::AWait) < i + 1 {
                thread::sleep(Duration::from_millis(2));
            }
            Some(c)
        })
        .collect();
    // w1 and w3 go away.
    waiters[1] = None;
    waiters[3] = None;
    while stats.stats().get(Stat::WaitCancel) < 2 {
        thread::sleep(Duration::from_millis(2));
    }
    let mut order = Vec::new();
    holder.call(&Client::new("holder").unlock("q", None));
    for i in [0, 2, 4] {
        let c = waiters[i].as_mut().unwrap();
        let r = c.recv();
        assert_eq!(r.status, Status::Locked);
        order.push(r.id.unwrap());
        c.call(&Client::new(&format!("w{i}")).unlock("q", None));
    }
    assert_eq!(order, ["w0", "w2", "w4"]);
    let stats = server.stats();
    assert_eq!(stats.get(Stat::WaitCancel), 2);
    assert_eq!(stats.get(Stat::AWait), 0);
    assert_eq!(stats.get(Stat::ALock), 0);
}

#[test]
fn waiters_vanishing_at_the_moment_of_grant_never_strand_the_lock() {
    // Many waiters queue; half of them drop their connection just as the
    // holder releases. Whatever the timing, every surviving waiter gets the
    // lock well before the 30 s TTL a stranded grant would hold it for.
    let server = Server::start();
    let mut stats = server.connect();
    let mut holder = server.connect();
    holder.call(&Client::new("holder").lock("q", TTL));
    let mut conns: Vec<_> = (0..20)
        .map(|i| {
            let mut c = server.connect();
            c.send(&Client::new(&format!("w{i}")).lock_wait("q", TTL, Ttl::from_secs(30)));
            // Queue in index order: connections are served independently,
            // so sending in order alone does not fix the arrival order.
            while stats.stats().get(Stat::AWait) < i + 1 {
                thread::sleep(Duration::from_millis(1));
            }
            c
        })
        .collect();
    let survivors: Vec<_> = conns
        .drain(..)
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .collect();
    holder.call(&Client::new("holder").unlock("q", None));
    let start = Instant::now();
    for (i, mut c) in survivors {
        let r = c.recv();
        assert_eq!(r.status, Status::Locked, "w{i}");
        c.call(&Client::new(&format!("w{i}")).unlock("q", None));
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}
