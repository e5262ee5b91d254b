//! The operator's HTTP listener (`--http`) against real servers: metrics
//! that move with the traffic and only grow, health and readiness, the
//! lock table for administrators only, bad HTTP refused, and a slow HTTP
//! client that cannot hold up the lock protocol.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
// Metric values here are small whole numbers: exact comparison is meant.
#![allow(clippy::float_cmp, clippy::cast_precision_loss)]

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use dlm_core::client::Client;
use dlm_core::protocol::{Shape, Status};
use dlm_core::time::Ttl;
use dlm_tests::{Server, http_get, http_raw, metric, new_identity, scratch_dir};

const TTL: Ttl = Ttl::from_secs(30);
const LONG: Duration = Duration::from_secs(20);

fn scrape(addr: SocketAddr) -> String {
    let r = http_get(addr, "/metrics", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.head.contains("Content-Type: text/plain; version=0.0.4"),
        "{}",
        r.head
    );
    r.body
}

/// Scrapes until `ok` holds of the metric `name` (the loop publishes
/// about once a second).
#[track_caller]
fn wait_metric(addr: SocketAddr, name: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + LONG;
    loop {
        let text = scrape(addr);
        if metric(&text, name).is_some_and(&ok) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never as expected:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_scrape_sees_locks_taken_and_counters_only_grow() {
    // The statistics line resets its counters every 200 ms.
    let server = Server::with_args(&["--http", "127.0.0.1:0", "--stats-interval", "200ms"]);
    let http = server.http_addr();
    let text = scrape(http);
    for family in [
        "# TYPE dlm_lock_total counter",
        "# TYPE dlm_locks gauge",
        "# TYPE dlm_waiters gauge",
        "# TYPE dlm_connections gauge",
        "# TYPE dlm_memory_used_bytes gauge",
        "# TYPE dlm_memory_budget_bytes gauge",
        "# TYPE dlm_request_latency_seconds histogram",
        "# TYPE dlm_queue_wait_seconds histogram",
        "# TYPE dlm_lock_hold_seconds histogram",
    ] {
        assert!(text.contains(family), "missing {family}:\n{text}");
    }
    assert!(
        !text.contains("dlm_cluster_term"),
        "no cluster, no cluster metrics"
    );
    assert_eq!(
        metric(&text, "dlm_memory_budget_bytes"),
        Some(1_073_741_824.0)
    );
    let granted = metric(&text, "dlm_lock_total").unwrap();

    let w1 = Client::new("w1");
    let w2 = Client::new("w2");
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(a.call(&w1.lock("res", TTL)).status, Status::Locked);
    b.send(&w2.lock_wait("res", TTL, Ttl::from_secs(10)));
    wait_metric(http, "dlm_waiters", |v| v == 1.0);
    let text = wait_metric(http, "dlm_locks", |v| v == 1.0);
    assert!(metric(&text, "dlm_lock_total").unwrap() > granted);
    assert_eq!(metric(&text, "dlm_holds{kind=\"lock\"}"), Some(1.0));

    // Holds by kind: two permits, a reader, a writer.
    let sem = Shape::Semaphore { permits: 3 };
    for (owner, name, shape) in [
        (&w1, "pool", sem),
        (&w2, "pool", sem),
        (&w1, "table", Shape::Read),
        (&w1, "ledger", Shape::Write),
    ] {
        assert_eq!(
            a.call(&owner.acquire(name, shape, TTL, None)).status,
            Status::Locked
        );
    }
    // The last taken seen, all are.
    let text = wait_metric(http, "dlm_holds{kind=\"write\"}", |v| v == 1.0);
    assert_eq!(metric(&text, "dlm_holds{kind=\"semaphore\"}"), Some(2.0));
    assert_eq!(metric(&text, "dlm_holds{kind=\"read\"}"), Some(1.0));
    assert_eq!(metric(&text, "dlm_holds{kind=\"lock\"}"), Some(1.0));
    assert!(metric(&text, "dlm_connections").unwrap() >= 2.0);
    // The lock was answered; the queued wait is not a request latency.
    assert!(metric(&text, "dlm_request_latency_seconds_count").unwrap() >= 1.0);
    // The hand-over: one hold ends, one queue wait is counted.
    assert_eq!(a.call(&w1.unlock("res", None)).status, Status::Unlocked);
    assert_eq!(b.recv().status, Status::Locked);
    wait_metric(http, "dlm_lock_hold_seconds_count", |v| v >= 1.0);
    let text = wait_metric(http, "dlm_queue_wait_seconds_count", |v| v == 1.0);
    let locks_total = metric(&text, "dlm_lock_total").unwrap();
    assert!(locks_total >= granted + 2.0, "{text}");

    // The statistics line resets its counters (the Stats action shows
    // it); /metrics keeps counting from the start.
    server.wait_for(LONG, "the counters were reset", |s| {
        s.get(dlm_core::stats::Stat::Lock) == 0
    });
    assert_eq!(b.call(&w2.unlock("res", None)).status, Status::Unlocked);
    let text = wait_metric(http, "dlm_unlock_total", |v| v >= 2.0);
    assert!(metric(&text, "dlm_lock_total").unwrap() >= locks_total);
    wait_metric(http, "dlm_locks", |v| v == 0.0);

    assert_eq!(http_get(http, "/healthz", "").status, 200);
    assert_eq!(http_get(http, "/readyz", "").status, 200);
    let head = http_raw(http, b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!((head.status, head.body.as_str()), (200, ""));
}

#[test]
fn bad_http_is_refused_and_slow_clients_hold_up_nothing() {
    let server = Server::with_args(&["--http", "127.0.0.1:0"]);
    let http = server.http_addr();
    let r = http_raw(
        http,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(
        http_raw(http, b"\x00\x01garbage\r\n\r\n").unwrap().status,
        400
    );
    assert_eq!(http_get(http, "/nothing", "").status, 404);
    assert_eq!(http_get(http, "/api/history?since=soon", "").status, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    // Refused before the whole head was read: the answer, or a reset.
    if let Some(r) = http_raw(http, huge.as_bytes()) {
        assert_eq!(r.status, 431);
    }

    // Clients that connect and send nothing take every HTTP slot...
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(http).expect("connect"))
        .collect();
    // (a client past them is closed unanswered)...
    assert!(
        http_raw(http, b"GET /healthz HTTP/1.1\r\n\r\n").is_none(),
        "served past the connection limit"
    );
    // ...yet the lock server answers at once.
    let c = Client::new("busy");
    let mut conn = server.connect();
    assert_eq!(conn.call(&c.lock("x", TTL)).status, Status::Locked);
    assert_eq!(conn.call(&c.unlock("x", None)).status, Status::Unlocked);
    // A half-sent request head is dropped after the read timeout, and
    // the listener serves again.
    let mut partial = TcpStream::connect(http).unwrap();
    let _ = partial.write_all(b"GET /metr");
    drop(idle);
    let deadline = Instant::now() + LONG;
    loop {
        if http_raw(http, b"GET /healthz HTTP/1.1\r\n\r\n").is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the listener never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(partial);
}

#[test]
fn the_lock_table_over_http_is_for_administrators_only() {
    let dir = scratch_dir("http-admin");
    let root = new_identity(&dir, "root", true);
    let alice = new_identity(&dir, "alice", false);
    let server = Server::with_args(&[
        "--http",
        "127.0.0.1:0",
        "--identity-dir",
        dir.to_str().unwrap(),
    ]);
    let http = server.http_addr();
    let mut conn = server.connect();
    let w = Client::new("holder-7");
    assert_eq!(
        conn.call(&w.lock("jobs/secret-job", TTL)).status,
        Status::Locked
    );
    let basic = |name: &str, secret: &str| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"))
        )
    };

    let none = http_get(http, "/api/locks", "");
    assert_eq!(none.status, 401);
    let not_admin = http_get(http, "/api/locks", &basic("alice", &alice));
    assert_eq!(not_admin.status, 403);
    let wrong = http_get(http, "/api/locks", &basic("root", &alice));
    assert_eq!(wrong.status, 403);
    for r in [&none, &not_admin, &wrong] {
        assert!(!r.body.contains("secret-job"), "{}", r.body);
    }
    // The public pages say nothing of lock names either.
    for path in ["/metrics", "/api/sample", "/api/history", "/"] {
        assert!(
            !http_get(http, path, "").body.contains("secret-job"),
            "{path}"
        );
    }

    let ok = http_get(http, "/api/locks?prefix=jobs%2F", &basic("root", &root));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(v["Table"]["Locks"][0]["FileName"], "jobs/secret-job");
    assert_eq!(v["Table"]["Locks"][0]["ID"], "holder-7");
    let other = http_get(http, "/api/locks?prefix=none", &basic("root", &root));
    let v: serde_json::Value = serde_json::from_str(&other.body).unwrap();
    assert_eq!(v["Table"]["Count"], 0);
    let one = http_get(
        http,
        "/api/lock?name=jobs%2Fsecret-job",
        &basic("root", &root),
    );
    assert_eq!(one.status, 200);
    assert_eq!(
        http_get(http, "/api/lock?name=gone", &basic("root", &root)).status,
        404
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cluster_member_shows_its_term_leader_and_lag() {
    let cluster = dlm_tests::cluster::Cluster::start(3, &["--http", "127.0.0.1:0"]);
    let leader = cluster.leader();
    let http = cluster.member(leader).http_addr();
    let text = wait_metric(http, "dlm_cluster_is_leader", |v| v == 1.0);
    assert!(metric(&text, "dlm_cluster_term").unwrap() >= 1.0);
    assert_eq!(metric(&text, "dlm_cluster_leader"), Some(leader as f64));
    assert_eq!(metric(&text, "dlm_cluster_members"), Some(3.0));
    assert!(text.contains("# TYPE dlm_cluster_commit_lag gauge"));
    assert_eq!(http_get(http, "/readyz", "").status, 200);
    // A lock through the leader shows on a follower once applied.
    let follower = cluster.followers(leader)[0];
    let fhttp = cluster.member(follower).http_addr();
    let mut c = cluster.member(leader).connect();
    assert_eq!(
        c.call(&Client::new("m").lock("replicated", TTL)).status,
        Status::Locked
    );
    let text = wait_metric(fhttp, "dlm_locks", |v| v == 1.0);
    assert_eq!(metric(&text, "dlm_cluster_is_leader"), Some(0.0));
    assert_eq!(metric(&text, "dlm_cluster_leader"), Some(leader as f64));
    assert_eq!(http_get(fhttp, "/readyz", "").status, 200);
}

/// Latency counts every answered request once, when its answer goes out
/// (a cluster leader's when its entry applies), and never a request still
/// waiting in a queue (its time is `dlm_queue_wait`'s): once nothing is in
/// flight, the histogram's count is the requests read less the waits.
fn latency_counts_answers_not_waits(http: SocketAddr, c: &mut dlm_tests::Conn) {
    let owner = Client::new("latency");
    for i in 0..10 {
        let name = format!("l{i}");
        assert_eq!(c.call(&owner.lock(&name, TTL)).status, Status::Locked);
        assert_eq!(c.call(&owner.unlock(&name, None)).status, Status::Unlocked);
    }
    assert_eq!(c.call(&owner.lock("held", TTL)).status, Status::Locked);
    let mut waiter = dlm_tests::Conn::open(c.stream().peer_addr().expect("a connected stream"));
    waiter.send(&Client::new("waiter").lock_wait("held", TTL, TTL));
    let deadline = Instant::now() + LONG;
    loop {
        let text = scrape(http);
        let get = |name: &str| metric(&text, name).unwrap_or(0.0);
        let (read, waits) = (get("dlm_in_total"), get("dlm_wait_total"));
        let timed = get("dlm_request_latency_seconds_count");
        if get("dlm_waiters") == 1.0 && read >= 22.0 && timed == read - waits {
            assert_eq!(waits, 1.0);
            assert!(get("dlm_request_latency_seconds_sum") > 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "latency never counted the {read} requests read less the {waits} waits \
             (it counted {timed}):\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn request_latency_counts_answers_not_waits() {
    let server = Server::with_args(&["--http", "127.0.0.1:0"]);
    latency_counts_answers_not_waits(server.http_addr(), &mut server.connect());
}

#[test]
fn a_cluster_leader_times_requests_until_they_apply() {
    let cluster = dlm_tests::cluster::Cluster::start(3, &["--http", "127.0.0.1:0"]);
    let leader = cluster.leader();
    let http = cluster.member(leader).http_addr();
    wait_metric(http, "dlm_cluster_is_leader", |v| v == 1.0);
    latency_counts_answers_not_waits(http, &mut cluster.member(leader).connect());
}
