//! Failover: SIGKILL a cluster's leader while one client loops, and time
//! how long until the client's next request succeeds.
//!
//! The measured time runs from the moment `kill(2)` returned to the answer
//! of the first successful request *sent after* it: a request in flight at
//! the kill may have been answered by the dying leader, and would say
//! nothing about the next one. dlm's client loops Lock+Unlock (the figure
//! is the next successful Lock); etcd's, in `etcd-bench failover`, loops
//! Put. Both clients give up on a request after the same timeout (500 ms by
//! default) and send the next, so a request lost with the leader costs at
//! most that. After each kill the member restarts on the same data
//! directory and the next kill waits until it has rejoined.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::time::timeout;

use crate::cluster::DlmCluster;
use crate::etcd::{EtcdCluster, EtcdFailover};
use crate::procs::{self, check_interrupted};
use crate::proto::{Op, Outcome, Target};
use crate::workload::{Conn, owner};

/// How long a member may take to come back up, or the cluster to recover.
const PATIENCE: Duration = Duration::from_secs(30);
/// A probe's wait for its answers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What followed one kill.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Kill to the answer of the first successful request sent after it;
    /// `None` if none succeeded within 30 s.
    pub gap: Option<Duration>,
    /// Requests that failed in between (broken connection, error answer,
    /// no answer within the client's timeout).
    pub failed: u64,
    /// The last of those failures.
    pub last_error: String,
}

impl Recovery {
    fn describe(&self, what: &str) -> String {
        let gap = self.gap.map_or_else(
            || "nothing within 30 s".to_owned(),
            |d| format!("next {what} after {:.0} ms", d.as_secs_f64() * 1e3),
        );
        if self.failed == 0 {
            gap
        } else {
            format!("{gap} ({} failed, last: {})", self.failed, self.last_error)
        }
    }
}

/// What one system's failover run measured.
#[derive(Clone, Debug, Default)]
pub struct Failover {
    /// Kill to next success, for each kill that made the cluster elect.
    pub elections: Vec<Duration>,
    /// The same for kills that did not (a follower killed while the leader
    /// was not known).
    pub others: Vec<Duration>,
    /// Kills after which no request succeeded within 30 s.
    pub timeouts: usize,
    /// How the leader was found, for the report.
    pub method: String,
    /// Wall time of the whole run.
    pub seconds: f64,
}

impl Failover {
    /// p50, p99 and max of the election kills, in ms.
    pub fn percentiles_ms(&self) -> Option<(f64, f64, f64)> {
        let mut v: Vec<f64> = self
            .elections
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = ((v.len() - 1) as f64 * p).round() as usize;
            v[i]
        };
        Some((at(0.5), at(0.99), v[v.len() - 1]))
    }
}

/// etcd: `kills` times, find the leader (the members' own Status), SIGKILL
/// it, time the next successful Put, restart it and wait until it rejoins.
/// The client abandons a Put after `op_timeout` and sends the next.
pub fn etcd(
    bin: &Path,
    cluster: &mut EtcdCluster,
    kills: usize,
    op_timeout: Duration,
    progress: &dyn Fn(&str),
) -> io::Result<Failover> {
    let started = Instant::now();
    let mut fo = EtcdFailover::start(bin, cluster, op_timeout)?;
    let mut out = Failover {
        method: "leader from the members' Status (etcd maintenance API)".into(),
        ..Failover::default()
    };
    for k in 1..=kills {
        check_interrupted()?;
        let Some(i) = fo.leader()? else {
            return Err(io::Error::other("etcd: no leader within 30 s"));
        };
        let member = cluster
            .members
            .get_mut(i)
            .ok_or_else(|| io::Error::other(format!("etcd: leader index {i} out of range")))?;
        let killed = member.kill()?;
        let r = fo.recovered(killed.monotonic_ns)?;
        match r.gap {
            Some(d) => out.elections.push(d),
            None => out.timeouts += 1,
        }
        progress(&format!(
            "etcd kill {k}/{kills}: {} (leader), {}",
            member.name,
            r.describe("Put")
        ));
        member.restart(PATIENCE)?;
        if !fo.rejoined(i)? {
            return Err(member.failed("did not rejoin within 30 s"));
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

// ---------------------------------------------------------------------------
// LEADER LOOKUP: the dlm `{"Action":"Cluster"}` answer (PROTOCOL.md) plugs in
// here. Anything unexpected makes it `None`, and the failover falls back on
// killing members in turn.
// ---------------------------------------------------------------------------

/// `{"Action":"Cluster"}` through `addr`: the `Cluster` object of a `Done`
/// answer, `None` for anything else (a single server, no answer, another
/// format).
async fn cluster_status(addr: SocketAddr) -> Option<Value> {
    let ask = async {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, mut w) = s.into_split();
        w.write_all(b"{\"Action\":\"Cluster\"}\n").await?;
        let mut line = String::new();
        BufReader::new(r).read_line(&mut line).await?;
        Ok::<String, io::Error>(line)
    };
    let line = timeout(PROBE_TIMEOUT, ask).await.ok()?.ok()?;
    let mut v: Value = serde_json::from_str(&line).ok()?;
    if v["Status"] != "Done" || !v["Cluster"]["Leader"].is_u64() {
        return None;
    }
    Some(v["Cluster"].take())
}

/// The index (into `cluster.members`) of the dlm cluster's leader, or
/// `None` when it cannot be told: the `Leader` (a node ID; member `i` is
/// node `i + 1`) that the first running member asked names, retried for a
/// moment while it is 0 (an election in progress).
fn dlm_leader(rt: &Runtime, cluster: &DlmCluster) -> Option<usize> {
    let n = cluster.members.len();
    for _ in 0..20 {
        let mut answered = false;
        for m in cluster.members.iter().filter(|m| m.pid() != 0) {
            let Some(c) = rt.block_on(cluster_status(m.client)) else {
                continue;
            };
            answered = true;
            match c["Leader"].as_u64().and_then(|l| usize::try_from(l).ok()) {
                Some(l) if (1..=n).contains(&l) => return Some(l - 1),
                _ => {}
            }
        }
        if !answered || check_interrupted().is_err() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// How far behind the leader's commit index a restarted member may still
/// be when the next kill comes (a few entries are always in flight while
/// the client writes).
const CAUGHT_UP: u64 = 8;

/// Waits until member `i`, restarted, serves again: a Lock+Unlock through
/// it succeeds (a follower relays it to the leader, so it has found one),
/// and, where the `Cluster` action answers, the leader sees it within
/// [`CAUGHT_UP`] entries of the commit index.
fn dlm_rejoined(rt: &Runtime, cluster: &DlmCluster, i: usize) -> io::Result<()> {
    let addr = cluster.members[i].client;
    let deadline = Instant::now() + PATIENCE;
    let wait = || -> io::Result<()> {
        if Instant::now() > deadline {
            return Err(cluster.members[i].failed("did not rejoin within 30 s of its restart"));
        }
        procs::sleep(Duration::from_millis(20))
    };
    while !rt.block_on(probe(addr, i)) {
        wait()?;
    }
    let node = u64::try_from(i + 1).unwrap_or(u64::MAX);
    loop {
        let Some(c) = rt.block_on(cluster_status(addr)) else {
            return Ok(());
        };
        let lag = c["Members"].as_array().and_then(|ms| {
            ms.iter()
                .find(|m| m["ID"].as_u64() == Some(node))
                .and_then(|m| m["Lag"].as_u64())
        });
        if lag.is_some_and(|l| l <= CAUGHT_UP) {
            return Ok(());
        }
        wait()?;
    }
}

/// One Lock+Unlock through `addr`.
pub async fn probe(addr: SocketAddr, i: usize) -> bool {
    let attempt = async {
        let mut c = Conn::open(Target::Dlm, addr).await?;
        let (name, who) = (format!("probe-{i}"), owner(900_000 + i));
        c.push(Op::Lock {
            name: &name,
            owner: &who,
            ttl_ms: 10_000,
            wait_ms: None,
        });
        c.push(Op::Unlock {
            name: &name,
            owner: &who,
        });
        c.flush().await?;
        let (a, b) = (c.reply().await?, c.reply().await?);
        Ok::<bool, io::Error>(a == Outcome::Ok && b == Outcome::Ok)
    };
    matches!(timeout(PROBE_TIMEOUT, attempt).await, Ok(Ok(true)))
}

/// dlm: kill members until `kills` kills have made the cluster elect (or
/// `max_kills` kills in all), timing the next successful Lock each time.
///
/// Without a leader lookup ([`dlm_leader`] says `None`) it kills the
/// members in turn and tells the kills apart by the time to recover: at
/// least `election_gap` means the cluster had to elect (the victim was the
/// leader), less means it went on serving (a follower: only the client
/// connections to it broke). A follower's kill also narrows down who the
/// leader is, so the next kill is aimed at the members still suspected.
/// The client abandons a request after `op_timeout` and moves to the next
/// member. `lookup: false` never asks for the leader (kills in turn only).
#[allow(clippy::too_many_arguments)]
pub fn dlm(
    rt: &Runtime,
    cluster: &mut DlmCluster,
    kills: usize,
    max_kills: usize,
    election_gap: Duration,
    op_timeout: Duration,
    lookup: bool,
    progress: &dyn Fn(&str),
) -> io::Result<Failover> {
    let started = Instant::now();
    let n = cluster.members.len();
    let client = LockLoop::start(
        cluster.members.iter().map(|m| m.client).collect(),
        op_timeout,
    );
    if client.first_after(Instant::now(), PATIENCE).is_none() {
        return Err(io::Error::other(format!(
            "{}: the failover client got no Lock within 30 s",
            cluster.label
        )));
    }
    let mut out = Failover::default();
    let mut suspects = Suspects::new(n);
    let mut looked_up = 0;
    for k in 1..=max_kills {
        if out.elections.len() >= kills {
            break;
        }
        check_interrupted()?;
        let leader = if lookup {
            dlm_leader(rt, cluster)
        } else {
            None
        };
        let (victim, known) = match leader {
            Some(i) if i < n => {
                looked_up += 1;
                (i, true)
            }
            _ => (suspects.next(), false),
        };
        client.forget();
        let killed = cluster.members[victim].kill()?;
        let r = client.recovery(killed.at, PATIENCE);
        let elected = r.gap.is_some_and(|d| known || d >= election_gap);
        progress(&format!(
            "{} kill {k} ({} of {kills} elections so far): {}{}, {}",
            cluster.label,
            out.elections.len() + usize::from(elected),
            cluster.members[victim].name,
            if known {
                " (leader)"
            } else if elected {
                " (elected: it was the leader)"
            } else {
                " (no election)"
            },
            r.describe("Lock")
        ));
        match r.gap {
            None => out.timeouts += 1,
            Some(d) if elected => out.elections.push(d),
            Some(d) => out.others.push(d),
        }
        if r.gap.is_some() {
            suspects.killed(victim, elected);
        }
        let restarted = Instant::now();
        cluster.members[victim].restart(PATIENCE)?;
        dlm_rejoined(rt, cluster, victim)?;
        if client.first_after(restarted, PATIENCE).is_none() {
            return Err(io::Error::other(format!(
                "{}: no Lock succeeded within 30 s of restarting {}",
                cluster.label, cluster.members[victim].name
            )));
        }
        // Let the restarted member catch up before the next kill.
        procs::sleep(Duration::from_millis(250))?;
    }
    let in_turn = out.elections.len() + out.others.len() + out.timeouts - looked_up;
    let by_timing = format!(
        "members killed in turn; a kill counts as a leader's when the next Lock took >= {} ms",
        election_gap.as_millis()
    );
    out.method = match (looked_up, in_turn) {
        (0, _) => by_timing,
        (_, 0) => "leader from the Cluster action".to_owned(),
        (l, t) => format!("leader from the Cluster action ({l} kills); {by_timing} ({t} kills)"),
    };
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Who may be the leader, narrowed down by kills (while there is no
/// leader lookup): a kill that made the cluster elect says the others hold
/// the new leader; one that did not clears the victim.
#[derive(Debug)]
struct Suspects {
    n: usize,
    left: Vec<usize>,
    turn: usize,
}

impl Suspects {
    fn new(n: usize) -> Self {
        Self {
            n,
            left: (0..n).collect(),
            turn: 0,
        }
    }

    /// The member to kill next: the suspects in turn.
    fn next(&mut self) -> usize {
        self.turn += 1;
        self.left[self.turn % self.left.len()]
    }

    /// What killing `victim` showed.
    fn killed(&mut self, victim: usize, elected: bool) {
        if elected {
            self.left = (0..self.n).filter(|&i| i != victim).collect();
        } else {
            self.left.retain(|&i| i != victim);
        }
        if self.left.is_empty() {
            // A contradiction (or no cluster at all): start over.
            self.left = (0..self.n).collect();
        }
    }
}

/// What the failover client did, oldest first.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    attempts: Mutex<VecDeque<Attempt>>,
    changed: Condvar,
}

/// One Lock (or a failed connect or Unlock): when it was sent and
/// answered, and what went wrong (empty when it was granted).
struct Attempt {
    sent: Instant,
    done: Instant,
    error: String,
}

/// One dlm client on its own thread (and runtime), looping Lock+Unlock of
/// one name over one connection; when the connection breaks, an answer is
/// not a success, or none comes within its timeout, it moves to the next
/// member.
struct LockLoop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LockLoop {
    fn start(members: Vec<SocketAddr>, op_timeout: Duration) -> Self {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(lock_loop(&members, op_timeout, &s));
        });
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// Drops what was recorded so far.
    fn forget(&self) {
        self.shared
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Time from `t` to the answer of the first Lock sent at or after `t`,
    /// waiting up to `patience` for one.
    fn first_after(&self, t: Instant, patience: Duration) -> Option<Duration> {
        self.recovery(t, patience).gap
    }

    /// What followed `t`: the first Lock sent at or after it that was
    /// granted, and the failures in between; waits up to `patience`.
    fn recovery(&self, t: Instant, patience: Duration) -> Recovery {
        let deadline = Instant::now() + patience;
        let mut attempts = self
            .shared
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(i) = attempts
                .iter()
                .position(|a| a.sent >= t && a.error.is_empty())
            {
                let mut r = Recovery {
                    gap: Some(attempts[i].done.saturating_duration_since(t)),
                    ..Recovery::default()
                };
                for f in attempts.range(..i) {
                    if !f.error.is_empty() && f.done >= t {
                        r.failed += 1;
                        r.last_error.clone_from(&f.error);
                    }
                }
                return r;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || check_interrupted().is_err() {
                return Recovery::default();
            }
            attempts = self
                .shared
                .changed
                .wait_timeout(attempts, left.min(Duration::from_millis(100)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for LockLoop {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // Bounded: every wait in the loop has a timeout.
            let _ = t.join();
        }
    }
}

async fn lock_loop(members: &[SocketAddr], op_timeout: Duration, shared: &Shared) {
    let record = |sent: Instant, error: String| {
        let done = Instant::now();
        shared
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Attempt { sent, done, error });
        shared.changed.notify_all();
    };
    let who = owner(999_999);
    let name = "failover-1";
    let mut at = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let addr = members[at % members.len()];
        at += 1;
        let sent = Instant::now();
        let mut conn = match timeout(op_timeout, Conn::open(Target::Dlm, addr)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                record(sent, format!("connect {addr}: {e}"));
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            Err(_) => {
                record(sent, format!("connect {addr}: timed out"));
                continue;
            }
        };
        'conn: while !shared.stop.load(Ordering::SeqCst) {
            for op in [
                Op::Lock {
                    name,
                    owner: &who,
                    ttl_ms: 10_000,
                    wait_ms: None,
                },
                Op::Unlock { name, owner: &who },
            ] {
                conn.push(op);
                let sent = Instant::now();
                let r = timeout(op_timeout, async {
                    conn.flush().await?;
                    conn.reply().await
                })
                .await;
                let error = match r {
                    Ok(Ok(Outcome::Ok)) => String::new(),
                    Ok(Ok(o)) => format!("{addr}: answered {o:?}"),
                    Ok(Err(e)) => format!("{addr}: {e}"),
                    Err(_) => format!("{addr}: no answer within {op_timeout:?}"),
                };
                let failed = !error.is_empty();
                if matches!(op, Op::Lock { .. }) || failed {
                    record(sent, error);
                }
                if failed {
                    // Broken, refused or unavailable: try the next member.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    break 'conn;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_killed_narrow_the_suspects_to_the_leader() {
        let mut s = Suspects::new(3);
        let a = s.next();
        s.killed(a, false);
        let b = s.next();
        assert_ne!(a, b);
        s.killed(b, false);
        let c = s.next();
        assert!(c != a && c != b);
        // Only the leader is left: it is the next victim every time.
        assert_eq!(s.next(), c);
    }

    #[test]
    fn an_election_suspects_everyone_but_the_old_leader() {
        let mut s = Suspects::new(3);
        let a = s.next();
        s.killed(a, true);
        for _ in 0..6 {
            assert_ne!(s.next(), a);
        }
    }

    #[test]
    fn a_contradiction_starts_over() {
        let mut s = Suspects::new(3);
        for _ in 0..3 {
            let v = s.next();
            s.killed(v, false);
        }
        // Nobody led (independent servers): every member is suspected again.
        let mut seen: Vec<usize> = (0..3).map(|_| s.next()).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
    }

    #[test]
    fn percentiles_of_the_election_kills() {
        let f = Failover {
            elections: (1..=20).map(|ms| Duration::from_millis(ms * 10)).collect(),
            ..Failover::default()
        };
        let (p50, p99, max) = f.percentiles_ms().unwrap_or_default();
        assert!((p50 - 110.0).abs() < 1e-6, "{p50}");
        assert!((p99 - 200.0).abs() < 1e-6, "{p99}");
        assert!((max - 200.0).abs() < 1e-6, "{max}");
        assert_eq!(Failover::default().percentiles_ms(), None);
    }

    #[test]
    fn a_recovery_names_its_failures() {
        let r = Recovery {
            gap: Some(Duration::from_millis(312)),
            failed: 2,
            last_error: "server closed".into(),
        };
        assert_eq!(
            r.describe("Lock"),
            "next Lock after 312 ms (2 failed, last: server closed)"
        );
        assert_eq!(Recovery::default().describe("Put"), "nothing within 30 s");
    }
}
