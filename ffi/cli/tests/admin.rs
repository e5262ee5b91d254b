//! `dlm admin` against a real server: an administrator lists locks, looks
//! at one lock's queue and revokes; anyone else is refused (exit 77) and
//! changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::process::{Command, Output};

use dlm_core::client::Client;
use dlm_core::protocol::Status;
use dlm_core::time::Ttl;
use dlm_tests::{Server, new_identity, scratch_dir};

const TTL: Ttl = Ttl::from_secs(30);

fn admin(server: &Server, identity: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlm"))
        .env("DLM_SERVER", server.addr().to_string())
        .env_remove("DLM_IDENTITY_FILE")
        .arg("admin")
        .args(args)
        .arg("--identity-file")
        .arg(identity)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn an_administrator_lists_inspects_and_revokes_and_no_one_else_can() {
    let dir = scratch_dir("cli-admin");
    new_identity(&dir, "root", true);
    new_identity(&dir, "alice", false);
    let root = dir.join("root.cfg");
    let alice = dir.join("alice.cfg");
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let holder = Client::new("holder-1");
    let waiter = Client::new("waiter-2");
    let mut h = server.connect();
    let token = h.call(&holder.lock("deploy/web", TTL)).token.unwrap();
    assert_eq!(h.call(&holder.lock("other", TTL)).status, Status::Locked);
    let mut w = server.connect();
    w.send(&waiter.lock_wait("deploy/web", TTL, Ttl::from_secs(20)));
    server.wait_for(
        std::time::Duration::from_secs(10),
        "the waiter queued",
        |s| s.get(dlm_core::stats::Stat::AWait) == 1,
    );

    let o = admin(&server, &root, &["locks", "deploy/"]);
    assert!(o.status.success(), "{o:?}");
    let table = out(&o);
    assert!(table.starts_with("NAME"), "{table}");
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("deploy/web"), "{table}");
    assert!(
        row.contains("holder-1") && row.contains(&token.to_string()),
        "{row}"
    );
    assert!(row.trim_end().ends_with('1'), "one waiter: {row}");
    assert!(!table.contains("other"), "only the prefix: {table}");
    let o = admin(&server, &root, &["locks", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["Count"], 2);

    let o = admin(&server, &root, &["lock", "deploy/web"]);
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).contains("1. waiter-2"), "{}", out(&o));
    assert_eq!(
        admin(&server, &root, &["lock", "free"]).status.code(),
        Some(1)
    );

    // Refused: not an administrator, and no identity at all.
    for args in [
        &["locks"][..],
        &["lock", "deploy/web"],
        &["revoke", "deploy/web"],
    ] {
        let o = admin(&server, &alice, args);
        assert_eq!(o.status.code(), Some(77), "{args:?}: {o:?}");
        assert!(out(&o).is_empty(), "{args:?} printed {}", out(&o));
    }
    let missing = admin(&server, &dir.join("nobody.cfg"), &["locks"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        h.call(&holder.test_lock("deploy/web")).status,
        Status::Locked
    );

    // A stale token is refused; the right one revokes and the waiter gets it.
    let stale = (token + 1).to_string();
    let o = admin(&server, &root, &["revoke", "deploy/web", "--token", &stale]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let o = admin(&server, &root, &["revoke", "deploy/web"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out(&o).trim(), token.to_string());
    let granted = w.recv();
    assert_eq!(granted.status, Status::Locked);
    assert!(granted.token.unwrap() > token);
    assert_eq!(
        admin(&server, &root, &["revoke", "nothing"]).status.code(),
        Some(1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
