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
    assert!(
        row.split_whitespace().rev().nth(1) == Some("1"),
        "one waiter: {row}"
    );
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

/// Semaphores and read/write locks in `dlm admin locks` and `lock`: one
/// row per hold with its kind and token, and a waiter's mode.
#[test]
fn semaphores_and_rwlocks_show_each_hold() {
    use dlm_core::protocol::Shape;
    let dir = scratch_dir("cli-admin-groups");
    new_identity(&dir, "root", true);
    let root = dir.join("root.cfg");
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let (a, b, r, w) = (
        Client::new("sem-a"),
        Client::new("sem-b"),
        Client::new("reader-1"),
        Client::new("writer-2"),
    );
    let mut c = server.connect();
    let pool = Shape::Semaphore { permits: 3 };
    let ta = c.call(&a.acquire("pool", pool, TTL, None)).token.unwrap();
    let tb = c.call(&b.acquire("pool", pool, TTL, None)).token.unwrap();
    let tr = c
        .call(&r.acquire("rw", Shape::Read, TTL, None))
        .token
        .unwrap();
    let mut q = server.connect();
    q.send(&w.acquire("rw", Shape::Write, TTL, Some(Ttl::from_secs(20))));
    server.wait_for(
        std::time::Duration::from_secs(10),
        "the writer queued",
        |s| s.get(dlm_core::stats::Stat::AWait) == 1,
    );

    let o = admin(&server, &root, &["locks"]);
    assert!(o.status.success(), "{o:?}");
    let table = out(&o);
    assert!(table.lines().next().unwrap().contains("KIND"), "{table}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    let row = |who: &str| {
        *rows
            .iter()
            .find(|l| l.contains(who))
            .unwrap_or_else(|| panic!("no row of {who}: {table}"))
    };
    for (who, token) in [("sem-a", ta), ("sem-b", tb)] {
        let l = row(who);
        assert!(l.starts_with("pool"), "{l}");
        assert!(l.contains("semaphore 2/3"), "{l}");
        assert!(l.contains(&token.to_string()), "{l}");
    }
    let l = row("reader-1");
    assert!(l.starts_with("rw") && l.contains("rwlock read"), "{l}");
    assert!(l.contains(&tr.to_string()), "{l}");
    assert!(
        l.split_whitespace().rev().nth(1) == Some("1"),
        "one waiter, then no session: {l}"
    );
    assert!(l.trim_end().ends_with('-'), "{l}");

    let o = admin(&server, &root, &["lock", "rw"]);
    assert!(o.status.success(), "{o:?}");
    let view = out(&o);
    assert!(view.contains("kind     rwlock"), "{view}");
    assert!(
        view.contains(&format!("hold     reader-1 token {tr} (read)")),
        "{view}"
    );
    assert!(
        view.contains("1. writer-2") && view.contains(", write"),
        "{view}"
    );
}

#[test]
fn session_bound_holds_show_their_session_then_their_lock_delay() {
    use dlm_core::protocol::SessionBind;
    let dir = scratch_dir("cli-admin-sessions");
    new_identity(&dir, "root", true);
    let root = dir.join("root.cfg");
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let me = Client::new("bound-1");
    let mut c = server.connect();
    assert_eq!(c.call(&me.session(Ttl::from_secs(60))).status, Status::Done);
    let bind = SessionBind {
        lock_delay: Ttl::from_secs(30),
    };
    let r = c.call(&me.lock("job", TTL).with_session(bind));
    assert_eq!(r.status, Status::Locked);
    let token = r.token.unwrap();

    let o = admin(&server, &root, &["locks"]);
    assert!(o.status.success(), "{o:?}");
    let table = out(&o);
    assert!(
        table.lines().next().unwrap().ends_with("SESSION"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with("job")).unwrap();
    assert!(row.ends_with("session, delay 30s"), "{row}");
    let view = out(&admin(&server, &root, &["lock", "job"]));
    assert!(view.contains("session  session, delay 30s"), "{view}");

    // Its connection closes: the name stays shut for the delay.
    drop(c);
    server.wait_for(
        std::time::Duration::from_secs(10),
        "the session ended",
        |s| s.get(dlm_core::stats::Stat::ASession) == 0,
    );
    let table = out(&admin(&server, &root, &["locks"]));
    let row = table.lines().find(|l| l.starts_with("job")).unwrap();
    assert!(
        row.contains(&token.to_string()) && row.ends_with("closed"),
        "{row}"
    );
    let view = out(&admin(&server, &root, &["lock", "job"]));
    assert!(view.contains("session  closed"), "{view}");
}
