//! The `Admin` action against a real server: only an administrator
//! identity sees the lock table or revokes, and a revocation hands the
//! lock to the first waiter.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use dlm_core::client::Client;
use dlm_core::protocol::{AdminOp, Credentials, Request, Resource, Response, Shape, Status, Token};
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Server, new_identity, scratch_dir};

const TTL: Ttl = Ttl::from_secs(30);

/// Sends `req` and returns the answer's status, its `Admin` JSON (parsed)
/// and its token.
fn admin_call(
    c: &mut Conn,
    req: &Request<'_>,
) -> (
    Status,
    Option<serde_json::Value>,
    Option<u64>,
    Option<String>,
) {
    c.send(req);
    let mut line = c.recv_line().expect("an answer");
    let (_, r) = Response::parse(&mut line).expect("a response");
    let json = r
        .admin
        .map(|a| serde_json::from_str(a).expect("Admin is JSON"));
    (
        r.status,
        json,
        r.token.map(|t| t.0),
        r.error.map(|e| e.to_string()),
    )
}

#[test]
fn only_an_administrator_lists_and_revokes() {
    let dir = scratch_dir("admin-ids");
    let root = new_identity(&dir, "root", true);
    let alice_secret = new_identity(&dir, "alice", false);
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);

    // A holder and a waiter behind it; a lock elsewhere.
    let w1 = Client::new("worker-1");
    let w2 = Client::new("worker-2");
    let mut holder = server.connect();
    let held = holder.call(&w1.lock("jobs/a", TTL));
    assert_eq!(held.status, Status::Locked);
    assert_eq!(holder.call(&w1.lock("other", TTL)).status, Status::Locked);
    let mut waiter = server.connect();
    waiter.send(&w2.lock_wait("jobs/a", TTL, Ttl::from_secs(20)));
    // The waiter is queued once the table says so.
    let admin = Client::new("ops").with_credentials(Credentials {
        name: "root",
        secret: &root,
    });
    let mut c = server.connect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let table = loop {
        let (status, json, _, _) =
            admin_call(&mut c, &admin.admin(AdminOp::Locks { prefix: "jobs/" }));
        assert_eq!(status, Status::Done);
        let json = json.expect("a table");
        if json["Locks"][0]["Waiters"] == 1 {
            break json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiter never queued: {json}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(table["Count"], 1, "only the prefix: {table}");
    let lock = &table["Locks"][0];
    assert_eq!(lock["FileName"], "jobs/a");
    assert_eq!(lock["ID"], "worker-1");
    assert_eq!(lock["Token"].as_u64(), held.token);
    assert!(lock["Expire"].as_f64().unwrap() > 0.0);

    let (status, json, _, _) = admin_call(
        &mut c,
        &admin.admin(AdminOp::Lock {
            name: Resource("jobs/a"),
        }),
    );
    assert_eq!(status, Status::Done);
    let json = json.unwrap();
    assert_eq!(json["Lock"]["Queue"][0]["ID"], "worker-2");
    let (status, _, _, _) = admin_call(
        &mut c,
        &admin.admin(AdminOp::Lock {
            name: Resource("nobody"),
        }),
    );
    assert_eq!(status, Status::NotFound);

    // Refused: anonymous, a non-administrator, a wrong secret.
    let alice = Client::new("a").with_credentials(Credentials {
        name: "alice",
        secret: &alice_secret,
    });
    let forged = Client::new("f").with_credentials(Credentials {
        name: "root",
        secret: &alice_secret,
    });
    let anonymous = Client::new("anon");
    for (who, client) in [
        ("anonymous", &anonymous),
        ("alice", &alice),
        ("forged", &forged),
    ] {
        for op in [
            AdminOp::Locks { prefix: "" },
            AdminOp::Lock {
                name: Resource("jobs/a"),
            },
            AdminOp::Revoke {
                name: Resource("jobs/a"),
                token: None,
            },
        ] {
            let mut c = server.connect();
            let (status, json, _, error) = admin_call(&mut c, &client.admin(op));
            assert_eq!(status, Status::BadPayload, "{who} {op:?}");
            assert!(json.is_none(), "{who} saw the table");
            assert!(error.is_some(), "{who}: a reason");
        }
    }
    assert_eq!(
        holder.call(&w1.test_lock("jobs/a")).status,
        Status::Locked,
        "refused revocations changed nothing"
    );

    // A revocation naming another grant's token is refused.
    let token = held.token.unwrap();
    let (status, _, _, _) = admin_call(
        &mut c,
        &admin.admin(AdminOp::Revoke {
            name: Resource("jobs/a"),
            token: Some(Token(token + 1)),
        }),
    );
    assert_eq!(status, Status::NotOwner);
    // The right one takes it away; the waiter gets it with a greater token.
    let (status, _, revoked, _) = admin_call(
        &mut c,
        &admin.admin(AdminOp::Revoke {
            name: Resource("jobs/a"),
            token: Some(Token(token)),
        }),
    );
    assert_eq!((status, revoked), (Status::Unlocked, Some(token)));
    let granted = waiter.recv();
    assert_eq!(granted.status, Status::Locked);
    assert!(granted.token.unwrap() > token);
    // The old holder learns it on its next extension.
    assert_eq!(
        holder.call(&w1.lock("jobs/a", TTL)).status,
        Status::NotOwner
    );
    assert_eq!(server.stats().get(dlm_core::stats::Stat::Revoked), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn in_a_cluster_a_revocation_goes_through_the_log() {
    let dir = scratch_dir("admin-cluster-ids");
    let root = new_identity(&dir, "root", true);
    let cluster = dlm_tests::cluster::Cluster::start(
        3,
        &[
            "--identity-dir",
            dir.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
        ],
    );
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let w1 = Client::new("c-holder");
    let w2 = Client::new("c-waiter");
    let mut holder = cluster.member(leader).connect();
    let held = holder.call(&w1.lock("jobs/replicated", TTL));
    assert_eq!(held.status, Status::Locked);
    let mut waiter = cluster.member(leader).connect();
    waiter.send(&w2.lock_wait("jobs/replicated", TTL, Ttl::from_secs(20)));
    let admin = Client::new("ops").with_credentials(Credentials {
        name: "root",
        secret: &root,
    });
    // Through a follower (which relays to the leader).
    let mut c = cluster.member(follower).connect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, json, _, _) = admin_call(
            &mut c,
            &admin.admin(AdminOp::Lock {
                name: Resource("jobs/replicated"),
            }),
        );
        if status == Status::Done && json.as_ref().is_some_and(|j| j["Lock"]["Waiters"] == 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw the waiter: {status:?} {json:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, _, revoked, error) = admin_call(
        &mut c,
        &admin.admin(AdminOp::Revoke {
            name: Resource("jobs/replicated"),
            token: held.token.map(Token),
        }),
    );
    assert_eq!(
        (status, revoked),
        (Status::Unlocked, held.token),
        "{error:?}"
    );
    let granted = waiter.recv();
    assert_eq!(granted.status, Status::Locked);
    assert!(granted.token > held.token);
    // Every member applied it: its own engine counted it (each member's
    // metrics are its own; a client connection would be relayed).
    for id in cluster.members.keys() {
        let http = cluster.member(*id).http_addr();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = dlm_tests::http_get(http, "/metrics", "").body;
            if dlm_tests::metric(&text, "dlm_revoked_total").is_some_and(|v| v >= 1.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "member {id} never applied the revocation:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn semaphores_and_read_write_locks_are_listed_with_holders_and_waiters() {
    let dir = scratch_dir("admin-shared-ids");
    let root = new_identity(&dir, "root", true);
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    let sem = Shape::Semaphore { permits: 2 };
    let mut c = server.connect();
    let mut tokens = Vec::new();
    for who in ["s1", "s2"] {
        let r = c.call(&Client::new(who).acquire("pool", sem, TTL, None));
        assert_eq!(r.status, Status::Locked);
        tokens.push(r.token.unwrap());
    }
    let read = c.call(&Client::new("r1").acquire("table", Shape::Read, TTL, None));
    assert_eq!(read.status, Status::Locked);
    // Queued: a third permit, and a writer behind the reader.
    let mut w1 = server.connect();
    w1.send(&Client::new("s3").acquire("pool", sem, TTL, Some(Ttl::from_secs(20))));
    let mut w2 = server.connect();
    w2.send(&Client::new("w1").acquire("table", Shape::Write, TTL, Some(Ttl::from_secs(20))));

    let admin = Client::new("ops").with_credentials(Credentials {
        name: "root",
        secret: &root,
    });
    let mut a = server.connect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let table = loop {
        let (status, json, _, _) = admin_call(&mut a, &admin.admin(AdminOp::Locks { prefix: "" }));
        assert_eq!(status, Status::Done);
        let json = json.expect("a table");
        if json["Locks"][0]["Waiters"] == 1 && json["Locks"][1]["Waiters"] == 1 {
            break json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waiters never queued: {json}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(table["Count"], 2, "{table}");
    let pool = &table["Locks"][0];
    assert_eq!(
        (pool["FileName"].as_str(), pool["Kind"].as_str()),
        (Some("pool"), Some("semaphore"))
    );
    assert_eq!(
        (pool["Permits"].as_u64(), pool["Holds"].as_u64()),
        (Some(2), Some(2))
    );
    let holders: Vec<(&str, u64)> = pool["Holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["ID"].as_str().unwrap(), h["Token"].as_u64().unwrap()))
        .collect();
    assert_eq!(holders, [("s1", tokens[0]), ("s2", tokens[1])]);
    assert!(pool["Holders"][0]["Expire"].as_f64().unwrap() > 0.0);
    let rw = &table["Locks"][1];
    assert_eq!(rw["Kind"], "rwlock");
    assert_eq!(rw["Holders"][0]["Mode"], "Read");
    assert_eq!(rw["Holders"][0]["Token"].as_u64(), read.token);

    let (status, json, _, _) = admin_call(
        &mut a,
        &admin.admin(AdminOp::Lock {
            name: Resource("table"),
        }),
    );
    assert_eq!(status, Status::Done);
    let q = &json.unwrap()["Lock"]["Queue"][0];
    assert_eq!(
        (q["ID"].as_str(), q["Mode"].as_str()),
        (Some("w1"), Some("Write"))
    );
    assert!(q["WaitLeft"].as_f64().unwrap() > 0.0);
    drop((w1, w2));
    let _ = std::fs::remove_dir_all(&dir);
}
