//! `dlm war` against a real server (the lock holds: exit 0, counter
//! exact), with crashing fighters (TTLs recover, stale writes refused),
//! and against a broken server that grants every lock to everyone (the
//! verdict must be FAIL).

#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dlm_core::protocol::{Command as Cmd, Request, Response, Status, Token};
use dlm_core::stats::Stat;
use dlm_tests::Server;

fn war(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlm"))
        .env("DLM_SERVER", addr.to_string())
        .arg("war")
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The number after `key` on the line that starts with `line`.
fn number(text: &str, line: &str, key: &str) -> u64 {
    let l = text.lines().find(|l| l.starts_with(line)).unwrap();
    l.split(key)
        .nth(1)
        .unwrap()
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_lock_holds_under_a_fight() {
    let server = Server::start();
    let o = war(server.addr(), &["--fighters", "4", "--rounds", "200"]);
    let text = out(&o);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("counter: 200 (writes accepted 200): exact"),
        "{text}"
    );
    assert!(
        text.contains("exclusion: never two holders at once"),
        "{text}"
    );
    assert!(text.contains("VERDICT: PASS"), "{text}");
    let min = number(&text, "grants per fighter", "min");
    let max = number(&text, "grants per fighter", "max");
    assert!(min >= 1 && max <= 200, "{text}");
    assert_eq!(server.stats().get(dlm_core::stats::Stat::ALock), 0);
}

#[test]
fn crashed_fighters_locks_expire_and_their_late_writes_are_refused() {
    let server = Server::start();
    let o = war(
        server.addr(),
        &[
            "--fighters",
            "3",
            "--rounds",
            "20",
            "--ttl",
            "0.4",
            "--crash-rate",
            "0.3",
            "--seed",
            "17",
        ],
    );
    let text = out(&o);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("VERDICT: PASS"), "{text}");
    let crashes = number(&text, "crashes:", "crashes:");
    assert!(crashes >= 1, "no crash at rate 0.3 in 20 rounds: {text}");
    // Every crashed holder's lock was freed by its TTL, not by an unlock.
    assert!(
        server.stats().get(Stat::ExpiredLock) >= crashes,
        "{text}\n{:?}",
        server.stats()
    );
}

/// A broken lock server: every `Lock` is granted at once, with a fresh
/// token, whoever holds it; every `Unlock` releases.
fn start_broken_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tokens = Arc::new(AtomicU64::new(1));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tokens = tokens.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    let mut buf = line.clone();
                    let Ok(req) = Request::parse(&mut buf, &dlm_core::limits::Limits::DEFAULT)
                    else {
                        return;
                    };
                    let r = match req.command {
                        Cmd::Lock { ttl, .. } => {
                            let mut r = Response::new(Status::Locked);
                            r.token = Some(Token(tokens.fetch_add(1, Ordering::SeqCst)));
                            r.expire = Some(ttl);
                            r
                        }
                        // Released, as its owner (with `ID`): a fighter
                        // that finishes before the others start must not
                        // end the war for another reason than the overlap.
                        Cmd::Unlock { owner, .. } => {
                            let mut r = Response::new(Status::Unlocked);
                            r.id = Some(owner.0);
                            r
                        }
                        _ => Response::new(Status::Unlocked),
                    };
                    let mut out = Vec::new();
                    r.write(req.framing, &mut out).unwrap();
                    if writer.write_all(&out).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn a_server_that_does_not_exclude_fails_the_war() {
    let addr = start_broken_server();
    let o = war(
        addr,
        // A long TTL: a fighter starved for seconds on a loaded machine
        // must not see its lease run out (that would fail the war for
        // another reason than the one this test checks).
        &[
            "--fighters",
            "6",
            "--rounds",
            "300",
            "--hold-ms",
            "5",
            "--ttl",
            "60",
        ],
    );
    let text = out(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("exclusion: VIOLATED"), "{text}");
    assert!(text.contains("VERDICT: FAIL"), "{text}");
}
