//! `dlm watch` end to end against a real server: it prints each change as
//! it happens, and resumes from a revision a previous run printed.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use dlm::Stat;
use dlm_tests::Server;

fn dlm(server: &Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlm"));
    c.env("DLM_SERVER", server.addr().to_string());
    c.env_remove("DLM_ID");
    c
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn watch_prints_changes_and_resumes_from_a_revision() {
    let server = Server::start();
    let watcher = dlm(&server)
        .args(["--id", "me", "watch", "jobs/", "-c", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Subscribed once the server counts it.
    server.wait_for(Duration::from_secs(20), "the watch subscribed", |s| {
        s.get(Stat::AWatch) == 1
    });
    ok(dlm(&server).args(["--id", "me", "put", "jobs/state", "running"]));
    ok(dlm(&server).args(["--id", "you", "put", "jobs/other", "hidden"]));
    ok(dlm(&server).args(["--id", "me", "put", "elsewhere", "x"]));
    ok(dlm(&server).args(["--id", "me", "erase", "jobs/state"]));
    let out = watcher.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let rev = |l: &str| l.split(' ').next().unwrap().parse::<u64>().unwrap();
    let first = rev(lines[0]);
    assert_eq!(
        lines[0],
        format!("{first} Put Data jobs/state owner=me value=running")
    );
    assert_eq!(lines[1], format!("{} Put Data jobs/other", first + 1));
    assert_eq!(
        lines[2],
        format!("{} Erased Data jobs/state owner=me", first + 3)
    );

    // A new run from the first line's revision prints the rest again.
    let again = ok(dlm(&server).args([
        "--id",
        "me",
        "watch",
        "jobs/",
        "--since",
        &first.to_string(),
        "-c",
        "2",
    ]));
    assert_eq!(again.lines().collect::<Vec<_>>(), lines[1..]);
    // One name only, from the first revision: only its erase.
    let one = ok(dlm(&server).args([
        "--id",
        "me",
        "watch",
        "--name",
        "jobs/state",
        "--since",
        &first.to_string(),
        "-c",
        "1",
    ]));
    assert_eq!(one.trim_end(), lines[2]);
}
