//! A cluster of `dlm-server` processes for tests: started on free loopback
//! ports, one cluster at a time per test binary (elections must not be
//! starved by other tests' load on a small machine).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use crate::Server;

const LONG: Duration = Duration::from_secs(20);

/// A free loopback port (bound and released), below the kernel's
/// ephemeral range: a member restarted on its port must find it free,
/// and a port from the ephemeral range may meanwhile have been given to
/// any outgoing connection on the machine (the restart then fails with
/// "address in use").
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Ports from 10000 up to the range, tried in an order of this process
    // and instant (tests in parallel, in several processes, draw apart).
    let span = u64::from(low.saturating_sub(10_000)).max(1);
    let seed = u64::from(std::process::id()) << 32
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut x = seed | 1;
    for _ in 0..1000 {
        // xorshift
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 10_000 + u16::try_from(x % span).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Clusters run one at a time: three members each, on two cores, and
/// elections that must not be starved by the other tests' load.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This test's turn to run cluster members: a test that starts members
/// without a [`Cluster`] holds it while they run.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A cluster of `dlm-server` processes.
pub struct Cluster {
    /// Member ID to peer port.
    pub peers: BTreeMap<u64, u16>,
    /// The running members.
    pub members: BTreeMap<u64, Server>,
    /// Extra arguments for every member started from now on (`{id}` in
    /// one stands for the member's ID).
    pub extra: Vec<String>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts `n` members with `extra` arguments each.
    pub fn start(n: u64, extra: &[&str]) -> Self {
        let mut c = Self::prepare(n, extra);
        for id in 1..=n {
            c.boot(id, false);
        }
        c
    }

    /// A cluster of `n` members with `extra` arguments each, none started
    /// yet: the test boots them ([`boot`](Self::boot)) when it wants.
    pub fn prepare(n: u64, extra: &[&str]) -> Self {
        // The turn first, then the ports: ports picked while waiting for
        // the turn could be taken by the cluster that has it before this
        // one binds them.
        let turn = one_at_a_time();
        let peers: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        Self {
            peers,
            members: BTreeMap::new(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            _turn: turn,
        }
    }

    /// The `--peers` argument.
    pub fn peers_arg(&self) -> String {
        self.peers
            .iter()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `id` (joining a running cluster with `join`).
    pub fn boot(&mut self, id: u64, join: bool) {
        let peers = self.peers_arg();
        let node = id.to_string();
        let mut args: Vec<&str> = vec!["--node", &node, "--peers", &peers];
        if join {
            args.push("--join");
        }
        // `{id}` in an argument stands for the member's ID (its own
        // certificate, say).
        let extra: Vec<String> = self
            .extra
            .iter()
            .map(|e| e.replace("{id}", &node))
            .collect();
        for e in &extra {
            args.push(e);
        }
        let server = Server::with_args(&args);
        self.members.insert(id, server);
    }

    /// A running member.
    pub fn member(&self, id: u64) -> &Server {
        &self.members[&id]
    }

    /// The `Cluster` answer through member `id` (a follower relays it to
    /// the leader; retried while a leader change closes relayed
    /// connections).
    pub fn status(&self, id: u64) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let mut c = self.member(id).connect();
            c.send_raw(b"{\"Action\":\"Cluster\"}\n");
            if let Some(line) = c.recv_line() {
                return String::from_utf8(line).expect("a UTF-8 answer");
            }
            assert!(Instant::now() < deadline, "member {id} never answered");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running member agrees on one leader; returns it.
    pub fn leader(&self) -> u64 {
        let deadline = Instant::now() + LONG;
        loop {
            let seen: Vec<u64> = self
                .members
                .keys()
                .map(|id| field(&self.status(*id), "\"Leader\":"))
                .collect();
            if let Some(&l) = seen.first()
                && l != 0
                && seen.iter().all(|s| *s == l)
                && self.members.contains_key(&l)
            {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader agreed on: {seen:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The members other than `leader`.
    pub fn followers(&self, leader: u64) -> Vec<u64> {
        self.members
            .keys()
            .copied()
            .filter(|id| *id != leader)
            .collect()
    }

    /// Asks the leader for a membership change; `Done` expected.
    pub fn admin(&self, op: &str) {
        let deadline = Instant::now() + LONG;
        loop {
            let mut c = self.member(self.leader()).connect();
            c.send_raw(format!("{op}\n").as_bytes());
            match c.recv_line() {
                Some(line) if line.starts_with(b"{\"Status\":\"Done\"") => return,
                other => assert!(
                    Instant::now() < deadline,
                    "{op}: {:?}",
                    other.map(|l| String::from_utf8_lossy(&l).into_owned())
                ),
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A member that lost its state comes back the safe way: removed,
    /// added again, started with --join.
    pub fn rejoin(&mut self, id: u64) {
        self.admin(&format!(
            "{{\"Action\":\"Cluster\",\"Op\":\"remove\",\"Node\":{id}}}"
        ));
        self.admin(&format!(
            "{{\"Action\":\"Cluster\",\"Op\":\"add\",\"Node\":{id},\"Peer\":\"127.0.0.1:{}\"}}",
            self.peers[&id]
        ));
        self.boot(id, true);
    }

    /// Kills member `id` with SIGKILL.
    pub fn kill(&mut self, id: u64) {
        let mut s = self.members.remove(&id).expect("a running member");
        s.signal(libc::SIGKILL);
        let _ = s.wait_exit(Duration::from_secs(5));
    }
}

/// The number after `key` in a JSON text.
pub fn field(json: &str, key: &str) -> u64 {
    json.split(key)
        .nth(1)
        .map(|t| {
            t.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}
