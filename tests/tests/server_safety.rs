//! Regression tests of issue 10 against the real binary: each one failed
//! on the server as it was before the fix (the note beside each says how).
//! The deterministic simulation (`server/tests/sim.rs`) covers the same
//! rules under random interleavings; these show them over real sockets.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::Status;
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Server};

const TTL: Ttl = Ttl::from_secs(30);
const LONG: Duration = Duration::from_secs(20);

/// Item 1, deterministic: a waiter whose connection was closed for an
/// overlong line stayed queued (its held answers were dropped before its
/// waiters); granted, its grant was taken back while a waiter of the same
/// owner behind it had been told `Locked`, and a third owner got the lock
/// too. Before the fix Z was answered `Locked` here.
#[test]
fn an_overrun_waiter_never_makes_two_owners() {
    let server = Server::start();
    let mut h = server.connect();
    let holder = Client::new("H");
    assert_eq!(h.call(&holder.lock("g", TTL)).status, Status::Locked);
    let mut x = server.connect();
    x.send(&Client::new("W").lock_wait("g", TTL, TTL));
    server.wait_for(LONG, "X waits", |s| s.get(Stat::AWait) == 1);
    let _ = x.try_send_raw(&vec![b'x'; (1 << 20) + 10]);
    let _ = x.try_send_raw(b"\n");
    assert_eq!(x.recv().status, Status::BadPayload);
    server.wait_for(LONG, "X's wait is cancelled", |s| {
        s.get(Stat::AWait) == 0 && s.get(Stat::WaitCancel) == 1
    });
    let mut y = server.connect();
    y.send(&Client::new("W").lock_wait("g", TTL, TTL));
    let mut z = server.connect();
    z.send(&Client::new("Z").lock_wait("g", TTL, TTL));
    server.wait_for(LONG, "Y and Z wait", |s| s.get(Stat::AWait) == 2);
    h.call(&holder.unlock("g", None));
    let granted = y.recv();
    assert_eq!(
        (granted.status, granted.id.as_deref()),
        (Status::Locked, Some("W"))
    );
    // Z still waits: the lock is W's.
    let r = server.connect().call(&Client::new("Z").test_lock("g"));
    assert_eq!(r.status, Status::NotOwner, "Z must not hold g while Y does");
    assert_eq!(server.stats().get(Stat::AWait), 1);
}

/// Item 1, the race: the waiter closes right after the holder's unlock.
/// Before the fix two owners held the lock in most trials under load.
#[test]
fn a_waiter_closing_as_it_is_granted_never_makes_two_owners() {
    let server = Server::start();
    let mut h = server.connect();
    let holder = Client::new("H");
    let mut probe = server.connect();
    for trial in 0..60 {
        let name = format!("race-{trial}");
        assert_eq!(h.call(&holder.lock(&name, TTL)).status, Status::Locked);
        let mut x = server.connect();
        x.send(&Client::new("W").lock_wait(&name, TTL, TTL));
        let mut y = server.connect();
        y.send(&Client::new("W").lock_wait(&name, TTL, TTL));
        let mut z = server.connect();
        z.send(&Client::new("Z").lock_wait(&name, TTL, TTL));
        server.wait_for(LONG, "three waiters", |s| s.get(Stat::AWait) == 3);
        // Unlock and close X at once, in either order of arrival.
        h.send(&holder.unlock(&name, None));
        if trial % 2 == 0 {
            let _ = x.stream().shutdown(Shutdown::Both);
        } else {
            drop(x);
        }
        assert_eq!(h.recv().status, Status::Unlocked);
        let got = y.recv();
        assert_eq!(got.status, Status::Locked, "trial {trial}");
        let r = probe.call(&Client::new("Z").test_lock(&name));
        assert_eq!(
            r.status,
            Status::NotOwner,
            "trial {trial}: Z holds the lock beside W"
        );
        // Y lets go; Z is next.
        y.call(&Client::new("W").unlock(&name, None));
        assert_eq!(z.recv().status, Status::Locked, "trial {trial}");
        z.call(&Client::new("Z").unlock(&name, None));
    }
}

/// Item 2: a waiter granted after its client closed was marked to close
/// after a flush that never came; such connections stayed in CLOSE-WAIT
/// forever and counted against `--max-connections`.
#[test]
fn waiters_that_leave_as_they_are_granted_are_closed() {
    let server = Server::start();
    let mut h = server.connect();
    let holder = Client::new("H");
    let base = server.stats().get(Stat::AConn);
    for round in 0..10 {
        let name = format!("leak-{round}");
        assert_eq!(h.call(&holder.lock(&name, TTL)).status, Status::Locked);
        let mut waiters: Vec<Conn> = (0..20)
            .map(|i| {
                let mut c = server.connect();
                c.send(&Client::new(&format!("w{i}")).lock_wait(&name, TTL, TTL));
                c
            })
            .collect();
        server.wait_for(LONG, "20 waiters", |s| s.get(Stat::AWait) == 20);
        h.send(&holder.unlock(&name, None));
        for w in waiters.drain(..) {
            let _ = w.stream().shutdown(Shutdown::Both);
        }
        assert_eq!(h.recv().status, Status::Unlocked);
        server.wait_for(LONG, "the waiters' connections are gone", |s| {
            s.get(Stat::AConn) <= base + 1 && s.get(Stat::AWait) == 0
        });
        // A waiter seen closed when granted had its grant taken back; one
        // whose close was still in flight may hold the lock (as after any
        // client crash) until its TTL. Either way, nobody waits.
        let r = server.connect().call(&Client::new("n").test_lock(&name));
        assert!(
            matches!(r.status, Status::Unlocked | Status::NotOwner),
            "round {round}: {r:?}"
        );
    }
}

/// Writes `bytes` without blocking until the kernel takes no more: then
/// the server has stopped reading this connection.
fn write_until_blocked(s: &mut TcpStream, bytes: &[u8], deadline: Instant) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut idle_rounds = 0;
    while sent < bytes.len() {
        match s.write(&bytes[sent..]) {
            Ok(n) => {
                sent += n;
                idle_rounds = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Blocked for a while (the server is not reading): done.
                idle_rounds += 1;
                if idle_rounds > 50 {
                    break;
                }
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("write failed: {e}"),
        }
        assert!(Instant::now() < deadline, "the server kept reading");
    }
    s.set_nonblocking(false).unwrap();
    sent
}

/// The server's peak resident memory so far, in KiB.
fn peak_rss_kib(server: &Server) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Item 3: 20 connections each queue for a held lock and pipeline 1,000
/// `Get`s of a value whose answer is 98 KB, reading nothing. Before the fix
/// the server held every answer (1,958 MiB of RSS under an 8 MiB budget).
/// Now each connection stops being read once its backlog passes its cap,
/// and all of them together stay within the connection budget.
#[test]
fn answers_held_behind_a_wait_stay_within_the_budget() {
    const CONNECTION_MEMORY_MIB: i64 = 16;
    let server = Server::with_args(&[
        "--memory-budget",
        "8MiB",
        "--connection-memory",
        "16MiB",
        "--idle-timeout",
        "60s",
    ]);
    let mut setup = server.connect();
    let me = Client::new("attacker");
    let escapes = "\u{1}".repeat(16 * 1024);
    assert_eq!(
        setup.call(&me.put("v", TTL, &escapes, None)).status,
        Status::Done
    );
    assert_eq!(
        setup.call(&Client::new("H").lock("L", TTL)).status,
        Status::Locked
    );
    let mut get = Vec::new();
    me.get("v").write(&mut get).unwrap();
    let mut wait = Vec::new();
    me.lock_wait("L", TTL, Ttl::from_secs(60))
        .write(&mut wait)
        .unwrap();
    let batch = [wait, get.repeat(1000)].concat();
    let before = peak_rss_kib(&server);
    let deadline = Instant::now() + LONG;
    let mut attackers: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    for a in &mut attackers {
        write_until_blocked(a, &batch, deadline);
    }
    let stats = server.wait_for(LONG, "20 attackers queued", |s| s.get(Stat::AWait) == 20);
    let grown_mib = (peak_rss_kib(&server) - before) / 1024;
    // Budget, plus per connection its base and one answer past its cap,
    // plus allocator slack.
    let bound = CONNECTION_MEMORY_MIB + 20 * (32 + 100) / 1024 + 8;
    assert!(
        grown_mib <= bound,
        "server grew {grown_mib} MiB (bound {bound}); ConnMemory {}",
        stats.get(Stat::ConnMemory)
    );
    assert!(stats.get(Stat::ConnMemory) <= (CONNECTION_MEMORY_MIB as u64 + 4) << 20);
    // Everyone else is served meanwhile.
    let mut other = server.connect();
    assert_eq!(
        other.call(&Client::new("o").lock("free", TTL)).status,
        Status::Locked
    );
    drop(attackers);
    server.wait_for(LONG, "attackers gone", |s| s.get(Stat::AWait) == 0);
}

/// Item 4: tokens started at the wall clock in microseconds; after 1.13 M
/// grants a second a restart gave lower tokens. Now they start at the wall
/// clock in nanoseconds: a restart is above anything the last run granted.
#[test]
fn tokens_never_go_back_across_a_restart() {
    let server = Server::start();
    let port = server.addr().port();
    let mut c = server.connect();
    let me = Client::new("t");
    let mut batch = Vec::new();
    for _ in 0..5000 {
        me.lock("tok", TTL).write(&mut batch).unwrap();
        me.unlock("tok", None).write(&mut batch).unwrap();
    }
    c.send_raw(&batch);
    let mut last = 0;
    for _ in 0..5000 {
        last = last.max(c.recv().token.unwrap());
        c.recv();
    }
    drop(c);
    server.signal(libc::SIGKILL);
    drop(server);
    let again = Server::on_port(port, &[]);
    let first = again.connect().call(&me.lock("tok", TTL)).token.unwrap();
    assert!(first > last, "token {first} after a restart, {last} before");
}

/// Item 5: connections that never send a byte are closed after the idle
/// timeout, a full server makes room by closing the connection idle
/// longest, and a refused client is told why before the close.
#[test]
fn silent_connections_cannot_lock_everyone_out() {
    let server = Server::with_args(&["--max-connections", "20", "--idle-timeout", "300ms"]);
    let mut watcher = server.connect();
    watcher.stats();
    let silent: Vec<TcpStream> = (0..19)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    let deadline = Instant::now() + LONG;
    while watcher.stats().get(Stat::IdleTimeout) < 19 {
        assert!(Instant::now() < deadline, "silent connections stay open");
        thread::sleep(Duration::from_millis(10));
    }
    drop(silent);
    drop(watcher);
    // Pooled clients that spoke once and went quiet fill the server...
    let mut pooled: Vec<Conn> = (0..20)
        .map(|i| {
            let mut c = server.connect();
            assert_eq!(
                c.call(&Client::new(&format!("p{i}")).version()).status,
                Status::Version
            );
            c
        })
        .collect();
    // ...make room for a newcomer once they have been idle long enough.
    let deadline = Instant::now() + LONG;
    loop {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(b"{\"Action\":\"Version\"}\n").unwrap();
        let mut got = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        if got.starts_with(b"{\"Status\":\"Version\"") {
            break;
        }
        assert_eq!(got, dlm_server::host::FULL, "a refusal says why");
        assert!(Instant::now() < deadline, "no idle connection was evicted");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stats().get(Stat::ConnEvicted) >= 1);
    // The evicted client reconnects like any pooled client would.
    let mut evicted = 0;
    for c in &mut pooled {
        if c.closed_within(Duration::from_millis(1)) {
            evicted += 1;
        }
    }
    assert!(evicted >= 1);
}

/// Item 5: the server raises its soft open-files limit to the hard one at
/// start, and warns when `--max-connections` needs more than that.
#[test]
fn the_open_files_limit_is_raised_and_a_short_one_is_reported() {
    let server = with_open_files_limit(64, 200, &["--max-connections", "1000"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .expect("the server's limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let nums: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums, ["200", "200"], "{open_files}");
    let log = server.log();
    assert!(
        log.contains("the open-files limit is below what --max-connections needs")
            && log.contains("limit=200"),
        "{log}"
    );
}

/// Item 5: with descriptors exhausted, connections queued in the kernel
/// were never accepted until yet another connection arrived. Now accept is
/// retried when descriptors return.
#[test]
fn accepting_resumes_when_descriptors_return() {
    let server = with_open_files_limit(
        64,
        64,
        &["--max-connections", "1000", "--idle-timeout", "60s"],
    );
    // More connections than descriptors: the rest wait in the kernel.
    let mut conns: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    for c in &mut conns {
        c.write_all(b"{\"Action\":\"Version\"}\n").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let mut answered = vec![false; conns.len()];
    let read_some = |conns: &mut Vec<TcpStream>, answered: &mut Vec<bool>| {
        for (i, c) in conns.iter_mut().enumerate() {
            if answered[i] {
                continue;
            }
            let mut buf = [0u8; 128];
            if let Ok(n) = c.read(&mut buf)
                && n > 0
            {
                answered[i] = true;
            }
        }
    };
    read_some(&mut conns, &mut answered);
    let first = answered.iter().filter(|a| **a).count();
    assert!(
        first < conns.len(),
        "the descriptor limit did not bite ({first} served)"
    );
    // Free descriptors: close the served connections; no new one arrives.
    for (i, c) in conns.iter().enumerate() {
        if answered[i] {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
    let deadline = Instant::now() + LONG;
    while answered.iter().any(|a| !*a) {
        assert!(
            Instant::now() < deadline,
            "{} queued connections never served",
            answered.iter().filter(|a| !**a).count()
        );
        read_some(&mut conns, &mut answered);
        for (i, c) in conns.iter().enumerate() {
            if answered[i] {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Item 5: SIGHUP with a broken identity file dropped that identity (its
/// owner got "authentication failed"); now the entry loaded before stays.
#[test]
fn a_broken_identity_file_keeps_the_identity_across_sighup() {
    let dir = dlm_tests::scratch_dir("ident-hup");
    let out = std::process::Command::new(dlm_tests::binary("dlm-server", "dlm-server"))
        .args(["identity", "new", "alice", "--identity-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = dir.join("alice.cfg");
    let text = std::fs::read_to_string(&file).unwrap();
    let secret: String = text
        .split("\"Identity\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_owned();
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let alice = Client::new("a").with_credentials(dlm_core::protocol::Credentials {
        name: "alice",
        secret: &secret,
    });
    let mut c = server.connect();
    assert_eq!(c.call(&alice.lock("mine", TTL)).status, Status::Locked);
    std::fs::write(&file, "{ broken").unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + LONG;
    while !server.log().contains("keeping the identity loaded before") {
        assert!(
            Instant::now() < deadline,
            "no reload logged:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(c.call(&alice.test_lock("mine")).status, Status::Locked);
    assert!(!server.log().contains(&secret), "a secret reached the log");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Item 5: a lock lasted up to 1 ms less than asked (the deadline was
/// rounded down). Against the real server: from the moment the holder's
/// request leaves until another owner's grant arrives, at least the TTL has
/// passed, every time.
#[test]
fn a_lock_never_lasts_less_than_asked() {
    let server = Server::start();
    let (a, b) = (Client::new("A"), Client::new("B"));
    let ttl = Ttl::from_millis(5);
    let mut ca = server.connect();
    let mut cb = server.connect();
    for i in 0..200 {
        let name = format!("short{i}");
        let sent = Instant::now();
        assert_eq!(ca.call(&a.lock(&name, ttl)).status, Status::Locked);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = cb.call(&b.lock(&name, ttl));
            if r.status == Status::Locked {
                break;
            }
            assert!(Instant::now() < deadline, "never expired: {r:?}");
        }
        let held = sent.elapsed();
        assert!(held >= Duration::from_millis(5), "trial {i}: {held:?}");
    }
}

/// A server started with the open-files limit `soft`/`hard`.
fn with_open_files_limit(soft: u64, hard: u64, args: &[&str]) -> Server {
    use std::os::unix::process::CommandExt as _;
    Server::with_command(
        |cmd| {
            // SAFETY: setrlimit in the child before exec touches only it.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        },
        args,
    )
}
