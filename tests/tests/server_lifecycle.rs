//! The server's life: identities, the statistics log, what never reaches a
//! log, and shutting down on SIGINT/SIGTERM.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::thread;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::{Credentials, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Server, binary, scratch_dir};

const TTL: Ttl = Ttl::from_secs(30);

/// Creates an identity with the real `identity new` command; returns its secret.
fn new_identity(dir: &std::path::Path, name: &str, max_size: &str) -> String {
    let out = std::process::Command::new(binary("dlm-server", "dlm-server"))
        .args([
            "identity",
            "new",
            name,
            "--max-size",
            max_size,
            "--identity-dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(dir.join(format!("{name}.cfg"))).unwrap();
    let start = text.find("\"Identity\":\"").unwrap() + 12;
    let end = start + text[start..].find('"').unwrap();
    text[start..end].to_owned()
}

#[test]
fn identities_authenticate_and_own_their_entries() {
    let dir = scratch_dir("identities");
    let secret = new_identity(&dir, "svc", "64KiB");
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let mut c = server.connect();
    let creds = Credentials {
        name: "svc",
        secret: &secret,
    };
    let svc = Client::new("worker").with_credentials(creds);
    let anon = Client::new("worker");

    // Identities may go past the anonymous limits.
    assert_eq!(
        c.call(&svc.lock("l", Ttl::from_secs(7200))).status,
        Status::Locked
    );
    let big = "v".repeat(40 * 1024);
    assert_eq!(c.call(&svc.put("d", TTL, &big, None)).status, Status::Done);
    assert_eq!(
        c.call(&anon.lock("l2", Ttl::from_secs(7200))).status,
        Status::BadPayload
    );
    assert_eq!(
        c.call(&anon.put("d2", TTL, &big, None)).status,
        Status::BadPayload
    );
    // The identity's MaxSize still applies.
    let huge = "v".repeat(65 * 1024);
    assert_eq!(
        c.call(&svc.put("d", TTL, &huge, None)).status,
        Status::BadPayload
    );

    // The same ID without the identity does not own the identity's entries.
    assert_eq!(c.call(&anon.unlock("l", None)).status, Status::NotOwner);
    assert_eq!(c.call(&anon.get("d")).status, Status::NotOwner);
    assert_eq!(c.call(&svc.get("d")).data.as_deref(), Some(big.as_str()));

    // A wrong secret and an unknown name fail alike.
    let wrong = Client::new("worker").with_credentials(Credentials {
        name: "svc",
        secret: "x",
    });
    let unknown = Client::new("worker").with_credentials(Credentials {
        name: "ghost",
        secret: &secret,
    });
    let a = c.call(&wrong.lock("l3", TTL));
    let b = c.call(&unknown.lock("l3", TTL));
    assert_eq!(
        (a.status, b.status),
        (Status::BadPayload, Status::BadPayload)
    );
    assert_eq!(a.error, b.error, "no hint whether the name exists");
    assert_eq!(a.error.as_deref(), Some("authentication failed"));
    let stats = c.stats();
    assert_eq!(stats.get(Stat::AuthFailed), 2);

    // Secrets and values never reach the log.
    let log = server.log();
    assert!(!log.contains(&secret[..64]));
    assert!(!log.contains(&big[..64]));
}

#[test]
fn sighup_reloads_identities() {
    let dir = scratch_dir("reload");
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let secret = new_identity(&dir, "late", "16KiB");
    let late = Client::new("w").with_credentials(Credentials {
        name: "late",
        secret: &secret,
    });
    let mut c = server.connect();
    assert_eq!(c.call(&late.lock("l", TTL)).status, Status::BadPayload);
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.call(&late.lock("l", TTL)).status != Status::Locked {
        assert!(Instant::now() < deadline, "identity not reloaded");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn statistics_lines_follow_jackrabbit_format_and_reset() {
    let dir = scratch_dir("statslog");
    let log = dir.join("dlm.log");
    let server = Server::with_args(&[
        "--stats-interval",
        "300ms",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    let mut c = server.connect();
    let me = Client::new("me");
    c.call(&me.lock("a", TTL));
    c.call(&me.put("a", TTL, "secret-value-xyz", None));
    let deadline = Instant::now() + Duration::from_secs(5);
    let first = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no statistics line");
        thread::sleep(Duration::from_millis(50));
    };
    // "YYYY-MM-DD HH:MM:SS.ffffff Key: value, ..." sorted, non-zero only.
    let (stamp, body) = first.split_at(26);
    assert_eq!(stamp.len(), 26);
    assert_eq!(&stamp[4..5], "-");
    assert_eq!(&stamp[10..11], " ");
    assert_eq!(&stamp[19..20], ".");
    let pairs: Vec<(&str, u64)> = body
        .trim()
        .split(", ")
        .map(|p| {
            let (k, v) = p.split_once(": ").unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0), "sorted: {body}");
    assert!(pairs.iter().all(|&(_, v)| v > 0), "non-zero only: {body}");
    assert!(pairs.contains(&("Lock", 1)));
    assert!(pairs.contains(&("PutNew", 1)));
    assert!(!first.contains("secret-value-xyz"));
    // Counters reset after each line; gauges stay. Wait for two more lines
    // (the one after the counters moved may still carry them).
    let lines_now = std::fs::read_to_string(&log).unwrap().lines().count();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.lines().count() >= lines_now + 2 {
            break text;
        }
        assert!(Instant::now() < deadline, "no new statistics lines");
        thread::sleep(Duration::from_millis(20));
    };
    let later = text.lines().last().unwrap();
    let keys: Vec<&str> = later[27..]
        .split(", ")
        .map(|p| p.split(": ").next().unwrap())
        .collect();
    assert!(
        !keys.contains(&"Lock") && !keys.contains(&"PutNew"),
        "{later}"
    );
    assert!(later.contains("ALock: 1"), "{later}");
}

fn shutdown_on(signal: libc::c_int) {
    let mut server = Server::start();
    let mut holder = server.connect();
    let me = Client::new("me");
    holder.call(&me.lock("busy", TTL));
    // One client waits for the lock, another pipelines a few requests.
    let mut waiter = server.connect();
    waiter.send(&Client::new("w").lock_wait("busy", TTL, Ttl::from_secs(30)));
    let mut piper = server.connect();
    let mut batch = Vec::new();
    for i in 0..50 {
        me.lock(&format!("p{i}"), TTL).write(&mut batch).unwrap();
    }
    piper.send_raw(&batch);
    for _ in 0..50 {
        assert_eq!(piper.recv().status, Status::Locked);
    }
    while server.stats().get(Stat::AWait) < 1 {
        thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    server.signal(signal);
    // The waiter is told its wait is over, then the connection closes.
    assert_eq!(waiter.recv().status, Status::NotOwner);
    assert!(waiter.closed_within(Duration::from_secs(2)));
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("server exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn sigterm_stops_within_a_second_after_answering() {
    shutdown_on(libc::SIGTERM);
}

#[test]
fn sigint_stops_within_a_second_after_answering() {
    shutdown_on(libc::SIGINT);
}
