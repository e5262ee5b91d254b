//! A member's monotonic clock jumping forward or stalling (through the
//! chaos shim, `LD_PRELOAD`, as `dlm-chaos` does it): a lease must never
//! end early for its holder because the leader's clock jumped.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlm_tests::chaos::client::{Conn, Outcome};
use dlm_tests::chaos::members::{Members, Setup};
use dlm_tests::chaos::proxy::Net;
use dlm_tests::chaos::shim;
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

/// The shim moves a process's monotonic clock forward, holds it still,
/// and lets it go on from where it stopped; never backwards.
#[test]
fn the_shim_jumps_and_stalls_the_monotonic_clock() {
    let dir = dlm_tests::scratch_dir("shim-mono");
    let so = shim::build(&dir.join("shim.so")).unwrap();
    let data = dir.join("member");
    std::fs::create_dir_all(&data).unwrap();
    shim::init_clock(&data).unwrap();
    // A process under the shim prints its CLOCK_MONOTONIC (ns) for each
    // line it reads, so the test can move the clock between readings.
    let mut child = std::process::Command::new("python3")
        .args([
            "-u",
            "-c",
            "import sys,time\nfor _ in sys.stdin: print(time.monotonic_ns(), flush=True)",
        ])
        .env("LD_PRELOAD", &so)
        .env("DLM_CHAOS_CLOCK", shim::clock_file(&data))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut read = || -> (i64, i64) {
        use std::io::{BufRead as _, Write as _};
        stdin.write_all(b"\n").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        (line.trim().parse().unwrap(), shim::real_monotonic_ns())
    };
    let (a, real_a) = read();
    assert!((real_a - a).abs() < 1_000_000_000, "{a} vs {real_a}");
    shim::jump_monotonic(&data, 5_000_000_000).unwrap();
    let (b, real_b) = read();
    let ahead = (b - a) - (real_b - real_a);
    assert!((4_900_000_000..5_100_000_000).contains(&ahead), "{ahead}");
    let since = shim::stall_monotonic(&data).unwrap();
    let (c, _) = read();
    std::thread::sleep(Duration::from_millis(300));
    let (d, _) = read();
    assert!(c >= b && d == c, "a stalled clock reads {c} then {d}");
    shim::end_stall(&data, since).unwrap();
    let (e, _) = read();
    std::thread::sleep(Duration::from_millis(100));
    let (f, _) = read();
    // On from where it stopped: the 300 ms stall never counts.
    assert!(e >= d && e - d < 200_000_000, "{d} then {e}");
    assert!(f > e, "{e} then {f}");
    drop(stdin);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn lock(name: &str, owner: &str, ttl: f64, wait: Option<f64>) -> serde_json::Value {
    let mut r = json!({"Action":"Lock","FileName":name,"ID":owner,"Expire":ttl});
    if let Some(w) = wait {
        r["Wait"] = json!(w);
    }
    r
}

/// Sends `req` to the members at `addrs` until one answers `Locked`.
fn locked(addrs: &[SocketAddr], req: &serde_json::Value, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let mut conn = Conn::new(addrs.to_vec(), 0);
    loop {
        if let Outcome::Answer(v) = conn.call(req, within)
            && v["Status"] == "Locked"
        {
            return v["Token"].as_u64().unwrap_or(0);
        }
        assert!(Instant::now() < deadline, "never Locked: {req}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A holder takes a 2 s lock at `addr` and a waiter queues behind it;
/// meanwhile the monotonic clock of the server behind `data` jumps by each
/// of `jumps` (nanoseconds), 150 ms apart. The waiter must not be granted
/// before the holder's TTL has run out on the machine's real clock,
/// measured from when the holder sent its `Lock`.
fn jumps_never_end_a_lease_early(addr: SocketAddr, data: &std::path::Path, jumps: &[i64]) {
    let ttl = Duration::from_secs(2);
    let sent = Instant::now();
    let holder = locked(&[addr], &lock("x", "holder", 2.0, None), LONG);
    assert!(sent.elapsed() < ttl / 2, "the grant took too long to test");
    let waiter = std::thread::spawn(move || {
        let t = locked(&[addr], &lock("x", "waiter", 2.0, Some(10.0)), LONG);
        (t, Instant::now())
    });
    for jump in jumps {
        std::thread::sleep(Duration::from_millis(150));
        shim::jump_monotonic(data, *jump).expect("jump the clock");
    }
    let (token, granted) = waiter.join().expect("the waiter");
    assert!(token > holder);
    let after = granted.duration_since(sent);
    assert!(
        after >= ttl,
        "the waiter was granted {after:?} after the holder sent its Lock (TTL {ttl:?})"
    );
}

/// The leader's monotonic clock jumps forward (three times, each by less
/// than an election timeout's worth of ticks: it keeps leading) while a
/// lock is held and
/// another owner waits for it: the waiter must not be granted before the
/// holder's TTL has run out on the machine's real clock, measured from
/// when the holder sent its `Lock`.
#[test]
fn a_leader_clock_jump_does_not_end_a_lease_early() {
    let dir = dlm_tests::scratch_dir("mono-jump");
    let so = shim::build(&dir.join("shim.so")).unwrap();
    let net = Arc::new(Net::default());
    let setup = Setup {
        server: dlm_tests::binary("dlm-server", "dlm-server"),
        dir: dir.clone(),
        durable: false,
        preload: Some(so),
        single: false,
    };
    let mut members = Members::start(3, setup, &net).unwrap();
    let addrs = members.client_addrs();
    // The first leader, and a first lock through it (the cluster serves).
    let deadline = Instant::now() + LONG;
    let mut leader = 0;
    while leader == 0 {
        assert!(Instant::now() < deadline, "no leader");
        leader = members.leader();
    }
    locked(&addrs, &lock("warm", "w", 1.0, None), LONG);
    let leader = members.leader();
    let leader_addr = addrs[usize::try_from(leader - 1).unwrap()];
    // Three jumps of 300 ms: each is 15 ticks of 20 ms, fewer than the 20
    // a turn catches up, so check_quorum still finds the followers it
    // heard from and the member keeps leading.
    let data = members.data_dir(leader).unwrap().to_path_buf();
    jumps_never_end_a_lease_early(leader_addr, &data, &[300_000_000; 3]);
    members.stop_all();
    net.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The plain in-memory server (no `--node`) under the same fault: its
/// monotonic clock jumps forward, once by far more than the holder's TTL,
/// while a lock is held and another owner waits. Its engine runs on the
/// host clock, which adds at most one bounded step per reading while
/// anything is due: the waiter is never granted before the holder's TTL
/// has run out on the real clock.
#[test]
fn a_single_server_clock_jump_does_not_end_a_lease_early() {
    let dir = dlm_tests::scratch_dir("mono-jump-single");
    let so = shim::build(&dir.join("shim.so")).unwrap();
    let net = Arc::new(Net::default());
    let setup = Setup {
        server: dlm_tests::binary("dlm-server", "dlm-server"),
        dir: dir.clone(),
        durable: false,
        preload: Some(so),
        single: true,
    };
    let mut members = Members::start(1, setup, &net).unwrap();
    let addr = members.client_addrs()[0];
    // One jump of a minute, then two of 300 ms.
    let data = members.data_dir(1).unwrap().to_path_buf();
    jumps_never_end_a_lease_early(addr, &data, &[60_000_000_000, 300_000_000, 300_000_000]);
    members.stop_all();
    net.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
