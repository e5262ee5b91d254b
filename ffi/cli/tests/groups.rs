//! `dlm lock --permits N`, `--shared` and `--write` end to end against a
//! real server: each test nests `dlm` commands, so the inner one runs
//! while the outer one holds, with no timing involved.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::process::{Command, Output};

use dlm_tests::Server;

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

#[test]
fn permits_admit_that_many_holders_and_a_size_is_fixed() {
    let server = Server::start();
    let script = r#"
        "$DLM" lock pool --permits 2 -n -- sh -c '
            "$DLM" lock pool --permits 2 -n -- true; echo third=$?
            "$DLM" lock pool --permits 3 -n -- true 2>&1; echo other-size=$?
            "$DLM" lock pool -n -- true 2>&1; echo exclusive=$?
        '
        echo second=$?
    "#;
    let (code, out) =
        run(dlm(&server).args(["lock", "pool", "--permits", "2", "--", "sh", "-c", script]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("third=1"), "{out}");
    assert!(out.contains("other-size=1"), "{out}");
    assert!(
        out.contains("the name is a semaphore of 2 permits"),
        "{out}"
    );
    assert!(out.contains("exclusive=1"), "{out}");
    assert!(out.contains("second=0"), "{out}");
    // All released: a new first user may choose another size.
    let (code, out) =
        run(dlm(&server).args(["lock", "pool", "--permits", "5", "-n", "--", "true"]));
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn readers_share_and_a_writer_is_alone() {
    let server = Server::start();
    let script = r#"
        "$DLM" lock cfg --shared -n -- true; echo reader=$?
        "$DLM" lock cfg --write -n -- true; echo writer=$?
    "#;
    let (code, out) = run(dlm(&server).args(["lock", "cfg", "--shared", "--", "sh", "-c", script]));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("reader=0") && out.contains("writer=1"),
        "{out}"
    );
    let script = r#""$DLM" lock cfg --shared -n -- true; echo reader=$?"#;
    let (code, out) = run(dlm(&server).args(["lock", "cfg", "--write", "--", "sh", "-c", script]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("reader=1"), "{out}");
    let (code, _) = run(dlm(&server).args(["lock", "cfg", "--shared", "--write", "--", "true"]));
    assert_eq!(code, Some(2), "the two sides exclude each other");
}
