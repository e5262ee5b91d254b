//! `dlm lock NAME NAME...` (a multi-lock) end to end against a real
//! server: the names are taken together, CMD sees every name and token,
//! and the inner commands run while the outer one holds, with no timing
//! involved.

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
fn several_names_are_held_together_and_released_together() {
    let server = Server::start();
    let script = r#"
        echo "names=[$DLM_LOCK_NAMES] first=$DLM_LOCK_NAME token=$DLM_LOCK_TOKEN tokens=[$DLM_LOCK_TOKENS]"
        "$DLM" lock b -n -- true; echo single=$?
        "$DLM" lock c b -n -- true; echo multi=$?
        "$DLM" lock c -n -- true; echo other=$?
        "$DLM" test c
    "#;
    let (code, out) = run(dlm(&server).args(["lock", "a", "b", "--", "sh", "-c", script]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("names=[a\nb]"), "{out}");
    let line = out.lines().find(|l| l.contains("tokens=[")).unwrap_or("");
    let tokens: Vec<u64> = line
        .split("tokens=[")
        .nth(1)
        .unwrap()
        .trim_end_matches(']')
        .split(' ')
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(tokens.len(), 2, "{out}");
    assert!(tokens[0] < tokens[1]);
    assert!(
        out.contains(&format!("first=a token={} ", tokens[0])),
        "{out}"
    );
    assert!(out.contains("single=1"), "{out}");
    assert!(out.contains("multi=1"), "{out}");
    // The refused multi-lock took nothing: c was free for the next one.
    assert!(out.contains("other=0"), "{out}");
    assert!(out.contains("free"), "{out}");
    // Both released when CMD ended.
    let (code, out) = run(dlm(&server).args(["lock", "b", "a", "-n", "--", "true"]));
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn several_names_are_exclusive_locks_only() {
    let server = Server::start();
    let (code, out) = run(dlm(&server).args(["lock", "a", "b", "--shared", "--", "true"]));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("exclusive locks"), "{out}");
    let many: Vec<String> = (0..17).map(|i| format!("n{i}")).collect();
    let (code, out) = run(dlm(&server).arg("lock").args(&many).args(["--", "true"]));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("16"), "{out}");
}
