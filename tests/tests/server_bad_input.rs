//! Bad input never costs another client anything: every malformed or
//! hostile input is answered or its connection closed, it is counted, and
//! the server keeps serving other clients with their locks and data intact.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::{Framing, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Server};

const TTL: Ttl = Ttl::from_secs(60);

/// A client whose lock and data must survive everything.
struct Victim {
    conn: Conn,
    token: u64,
}

impl Victim {
    fn new(server: &Server) -> Self {
        let mut conn = server.connect();
        let me = Client::new("victim");
        let token = conn.call(&me.lock("precious", TTL)).token.unwrap();
        assert_eq!(
            conn.call(&me.put("precious", TTL, "treasure", None)).status,
            Status::Done
        );
        Self { conn, token }
    }

    /// Its lock is still its own and its data intact.
    fn check_own(&mut self) {
        let me = Client::new("victim");
        let r = self.conn.call(&me.test_lock("precious"));
        assert_eq!((r.status, r.token), (Status::Locked, Some(self.token)));
        assert_eq!(
            self.conn.call(&me.get("precious")).data.as_deref(),
            Some("treasure")
        );
    }

    /// Its lock is still its own, its data intact, and a new client is served.
    fn check(&mut self, server: &Server) {
        self.check_own();
        let mut fresh = server.connect();
        assert_eq!(
            fresh.call(&Client::new("x").lock("other", TTL)).status,
            Status::Locked
        );
        fresh.call(&Client::new("x").unlock("other", None));
    }
}

/// The server's peak resident memory so far.
fn peak_rss_kib(server: &Server) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends one line and expects a refusal with `status` on the same connection,
/// which keeps working.
fn refused(server: &Server, line: &[u8], status: Status) -> String {
    let mut c = server.connect();
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    c.send_raw(&bytes);
    let r = c.recv();
    assert_eq!(r.status, status, "for {:?}", String::from_utf8_lossy(line));
    assert_eq!(c.call(&Client::new("ok").version()).status, Status::Version);
    r.error.unwrap_or_default()
}

#[test]
fn malformed_requests_are_answered_and_counted() {
    let server = Server::start();
    let mut victim = Victim::new(&server);
    let deep = format!(
        r#"{{"Action":"Get","FileName":"a","ID":"b","x":{}1{}}}"#,
        "[".repeat(2000),
        "]".repeat(2000)
    );
    let cases: Vec<(Vec<u8>, Status, &str)> = vec![
        (
            br#"{"Action":"Lock","FileName":"#.to_vec(),
            Status::BadPayload,
            "malformed JSON",
        ),
        (
            b"{not json at all}".to_vec(),
            Status::BadPayload,
            "malformed JSON",
        ),
        (b"zz!!~~".to_vec(), Status::BadPayload, "bad table encoding"),
        (b"a^1".to_vec(), Status::BadPayload, "odd length"),
        (
            b"{\"Action\":\"Lock\",\"FileName\":\"\xff\xfe\",\"ID\":\"b\",\"Expire\":1}".to_vec(),
            Status::BadPayload,
            "not valid UTF-8",
        ),
        (deep.into_bytes(), Status::BadPayload, "nested deeper"),
        (
            br#"{"Action":"Lock","ID":"b","Expire":1}"#.to_vec(),
            Status::BadPayload,
            "missing field FileName",
        ),
        (
            br#"{"Action":"Put","FileName":"a","ID":"b","Expire":1}"#.to_vec(),
            Status::BadPayload,
            "missing field DataStore",
        ),
        (
            br#"{"Action":"Lock","FileName":["a"],"ID":"b","Expire":1}"#.to_vec(),
            Status::BadPayload,
            "must not be an array",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":7,"Expire":1}"#.to_vec(),
            Status::BadPayload,
            "must not be a number",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":true}"#.to_vec(),
            Status::BadPayload,
            "must not be a boolean",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":1e999}"#.to_vec(),
            Status::BadPayload,
            "over the limit",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":"99999999"}"#.to_vec(),
            Status::BadPayload,
            "over the limit",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":-5}"#.to_vec(),
            Status::BadPayload,
            "negative",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":"NaN"}"#.to_vec(),
            Status::BadPayload,
            "not finite",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":"-inf"}"#.to_vec(),
            Status::BadPayload,
            "not finite",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":"soon"}"#.to_vec(),
            Status::BadPayload,
            "not a number",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":1,"Token":-1}"#.to_vec(),
            Status::BadPayload,
            "negative",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","ID":"c","Expire":1}"#.to_vec(),
            Status::BadPayload,
            "duplicate field ID",
        ),
        (
            br#"{"Action":"Explode","FileName":"a","ID":"b"}"#.to_vec(),
            Status::BadAction,
            "unknown Action",
        ),
        (
            br#"{"Action":"","FileName":"a","ID":"b"}"#.to_vec(),
            Status::BadAction,
            "unknown Action",
        ),
        (
            br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":1,"Name":"nobody"}"#.to_vec(),
            Status::BadPayload,
            "missing field Identity",
        ),
        (
            format!(
                r#"{{"Action":"Lock","FileName":"{}","ID":"b","Expire":1}}"#,
                "n".repeat(2000)
            )
            .into_bytes(),
            Status::BadPayload,
            "longer than 1024",
        ),
        (
            format!(
                r#"{{"Action":"Put","FileName":"a","ID":"b","Expire":1,"DataStore":"{}"}}"#,
                "v".repeat(17 * 1024)
            )
            .into_bytes(),
            Status::BadPayload,
            "DataStore larger",
        ),
    ];
    let n = cases.len() as u64;
    let mut bad_action = 0;
    for (line, status, text) in cases {
        let error = refused(&server, &line, status);
        assert!(error.contains(text), "{error:?} lacks {text:?}");
        if status == Status::BadAction {
            bad_action += 1;
        }
        victim.check(&server);
    }
    let stats = server.stats();
    assert_eq!(stats.get(Stat::BadPayload), n - bad_action);
    assert_eq!(stats.get(Stat::BadAction), bad_action);
}

#[test]
fn a_ten_mebibyte_line_is_refused_while_reading_and_the_connection_closed() {
    let server = Server::start();
    let mut victim = Victim::new(&server);
    let peak_before = peak_rss_kib(&server);
    let mut c = server.connect();
    let writer = {
        let mut s = c.stream().try_clone().unwrap();
        thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..10 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = s.write_all(b"\n");
        })
    };
    let line = c.recv_line().expect("an answer before the close");
    let r = dlm_tests::Reply::parse(&line);
    assert_eq!(r.status, Status::BadPayload);
    assert!(r.error.unwrap().contains("longer than 1048576"));
    assert!(c.closed_within(Duration::from_secs(5)));
    writer.join().unwrap();
    // The limit is enforced while reading: the server never held anything
    // near the 10 MiB line in memory.
    let grown = peak_rss_kib(&server) - peak_before;
    assert!(grown < 6 * 1024, "peak RSS grew by {grown} KiB");
    let stats = server.stats();
    assert_eq!(stats.get(Stat::DataOverrun), 1);
    victim.check(&server);
}

#[test]
fn a_legacy_line_over_the_limit_is_answered_in_legacy_framing() {
    let server = Server::with_args(&["--max-line", "4KiB"]);
    let mut c = server.connect();
    let mut line = dlm_core::codec::encode(&[b'{'; 3000]).into_bytes();
    line.push(b'\n');
    c.send_raw(&line);
    let r = c.recv();
    assert_eq!((r.framing, r.status), (Framing::Legacy, Status::BadPayload));
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn stalled_lines_are_closed_at_the_idle_timeout() {
    let server = Server::with_args(&["--idle-timeout", "500ms"]);
    let mut victim = Victim::new(&server);
    // A half line that never ends (slowloris)...
    let mut half = server.connect();
    half.send_raw(br#"{"Action":"Lock","FileName":"#);
    // ...and a line of exactly the limit with no newline.
    let mut big = server.connect();
    big.send_raw(&vec![b'{'; 1 << 20]);
    let start = Instant::now();
    assert!(half.closed_within(Duration::from_secs(5)));
    assert!(big.closed_within(Duration::from_secs(5)));
    assert!(start.elapsed() >= Duration::from_millis(300));
    let stats = server.stats();
    assert_eq!(stats.get(Stat::IdleTimeout), 2);
    // A connection that is idle between whole lines is left alone.
    let me = Client::new("victim");
    thread::sleep(Duration::from_millis(800));
    assert_eq!(
        victim.conn.call(&me.test_lock("precious")).status,
        Status::Locked
    );
    victim.check(&server);
}

#[test]
fn a_client_that_never_reads_is_dropped() {
    let server = Server::with_args(&["--idle-timeout", "500ms"]);
    let mut victim = Victim::new(&server);
    let mut c = server.connect();
    // Pipeline gets without reading a single answer until both socket
    // buffers are full.
    let mut batch = Vec::new();
    let me = Client::new("victim");
    for _ in 0..2000 {
        me.get("precious").write(&mut batch).unwrap();
    }
    c.stream()
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if c.try_send_raw(&batch).is_err() {
            break;
        }
    }
    victim.check(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().get(Stat::IdleTimeout) == 0 {
        assert!(Instant::now() < deadline, "slow reader never dropped");
        thread::sleep(Duration::from_millis(50));
    }
    victim.check(&server);
}

#[test]
fn a_client_that_pipelines_without_reading_costs_bounded_memory() {
    // 10,000 requests (~0.5 MB) whose answers are ~80 MB, sent without
    // reading a single one.
    const N: usize = 10_000;
    let server = Server::start();
    let mut victim = Victim::new(&server);
    let me = Client::new("reader");
    let mut c = server.connect();
    let big = "b".repeat(8 * 1024);
    assert_eq!(c.call(&me.put("big", TTL, &big, None)).status, Status::Done);
    let mut one = Vec::new();
    me.get("big").write(&mut one).unwrap();
    let peak_before = peak_rss_kib(&server);
    let writer = {
        let mut s = c.stream().try_clone().unwrap();
        let batch = one.repeat(100);
        thread::spawn(move || {
            for _ in 0..N / 100 {
                s.write_all(&batch).unwrap();
            }
        })
    };
    // The server backs up to its per-connection cap (it shows in the
    // connection-memory gauge), and stops reading there.
    server.wait_for(Duration::from_secs(20), "the answers back up", |s| {
        s.get(Stat::ConnMemory) >= 200 * 1024
    });
    victim.check(&server);
    // Once the client reads, every answer arrives, in order.
    for i in 0..N {
        let r = c.recv();
        assert_eq!(r.data.as_deref(), Some(big.as_str()), "answer {i}");
    }
    writer.join().unwrap();
    // The high-water mark covers the whole exchange.
    let grown = peak_rss_kib(&server) - peak_before;
    assert!(
        grown < 16 * 1024,
        "server buffered {grown} KiB for a client that does not read"
    );
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let server = Server::with_args(&["--max-connections", "100"]);
    let mut victim = Victim::new(&server);
    let mut held = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect(server.addr()) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connect failed: {e}"),
        }
    }
    // The server closes the extra ones; reading them gives EOF (or reset).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stats_conn = victim.conn.stats();
    while stats_conn.get(Stat::ConnRefused) < 1900 {
        assert!(
            Instant::now() < deadline,
            "refused only {}",
            stats_conn.get(Stat::ConnRefused)
        );
        thread::sleep(Duration::from_millis(20));
        stats_conn = victim.conn.stats();
    }
    let mut closed = 0;
    for s in held.iter_mut().skip(200) {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // The reason, then EOF (or a reset); a read timeout means the
        // server left it open.
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {
                assert_eq!(got, dlm_server::host::FULL, "refusal line");
                closed += 1;
            }
            Err(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                closed += 1;
            }
            _ => {}
        }
    }
    assert_eq!(closed, 1800, "extra connections left open");
    // No room for newcomers, but the victim's own connection is served.
    victim.check_own();
    drop(held);
    // Slots free again once the clients leave.
    let deadline = Instant::now() + Duration::from_secs(10);
    while victim.conn.stats().get(Stat::AConn) > 2 {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(20));
    }
    victim.check(&server);
}
