//! `dlm lock --session` and `--lock-delay` end to end against a real
//! server: a holder killed with SIGKILL loses its lock at once (long before
//! any TTL), or after its lock-delay.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dlm_core::stats::Stat;
use dlm_tests::Server;

const LONG: Duration = Duration::from_secs(20);

fn dlm(server: &Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlm"));
    c.env("DLM_SERVER", server.addr().to_string());
    c.env("DLM", env!("CARGO_BIN_EXE_dlm"));
    c.env_remove("DLM_ID");
    c
}

fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.code(), text)
}

/// Starts `dlm lock NAME --session ARGS` holding the lock (no command) and
/// waits for the token it prints once it holds it.
fn holder(server: &Server, name: &str, args: &[&str]) -> (Child, u64) {
    let mut child = dlm(server)
        .args(["lock", name, "--session"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().unwrap())
}

#[test]
fn a_session_lock_excludes_others_and_is_released_when_its_command_ends() {
    let server = Server::start();
    let script = r#""$DLM" lock job -n -- true; echo inner=$?; echo token=$DLM_LOCK_TOKEN"#;
    let (code, out) =
        run(dlm(&server).args(["lock", "job", "--session", "--", "sh", "-c", script]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("inner=1"), "{out}");
    assert!(!out.contains("token=\n"), "{out}");
    let (code, out) = run(dlm(&server).args(["lock", "job", "-n", "--", "true"]));
    assert_eq!(code, Some(0), "released when the command ended: {out}");
    server.wait_for(LONG, "the session ended", |s| s.get(Stat::ASession) == 0);
}

#[test]
fn a_killed_holder_loses_its_session_lock_at_once() {
    let server = Server::start();
    // A TTL far longer than the wait below: only the session's end can
    // let the waiter in.
    let (mut child, token) = holder(&server, "job", &["--ttl", "600"]);
    assert!(token > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, out) = run(dlm(&server).args(["lock", "job", "-w", "20", "--", "true"]));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(server.stats().get(Stat::SessionClosed), 1);
}

#[test]
fn a_lock_delay_keeps_the_name_closed_after_its_holder_dies() {
    let server = Server::start();
    let (mut child, _) = holder(&server, "slow", &["--ttl", "600", "--lock-delay", "5"]);
    child.kill().unwrap();
    child.wait().unwrap();
    server.wait_for(LONG, "the session ended", |s| {
        s.get(Stat::SessionClosed) == 1
    });
    let (code, out) = run(dlm(&server).args(["lock", "slow", "-n", "--", "true"]));
    assert_eq!(code, Some(1), "closed for its lock-delay: {out}");
    let (code, out) = run(dlm(&server).args(["lock", "slow", "-w", "20", "--", "true"]));
    assert_eq!(code, Some(0), "open once the delay has passed: {out}");
}
