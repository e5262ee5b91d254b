//! Closed-loop clients over persistent connections, and what they measure.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::procstat;
use crate::proto::{Op, Outcome, Target, UNLOCK_SCRIPT, redis_command};

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Each client locks and unlocks its own name.
    Uncontended,
    /// All clients on one name, retrying at once when refused.
    ContendedPoll,
    /// All clients on one name, queueing in the server (dlm only).
    ContendedWait,
    /// Put then Get of a 100-byte value under the client's own key.
    Kv,
}

impl Workload {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uncontended => "uncontended",
            Self::ContendedPoll => "contended/poll",
            Self::ContendedWait => "contended/wait",
            Self::Kv => "kv",
        }
    }
}

/// One run's settings.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Where.
    pub target: Target,
    /// The server's address.
    pub addr: SocketAddr,
    /// The server's PID, for its CPU time and RSS.
    pub pid: u32,
    /// What.
    pub workload: Workload,
    /// How many connections, each one closed loop.
    pub clients: usize,
    /// Requests in flight per client (1, or a pipelined batch).
    pub pipeline: usize,
    /// Measured time (after a warm-up).
    pub duration: Duration,
}

/// One run's figures.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Requests answered in the window.
    pub ops: u64,
    /// Complete cycles (lock+unlock, put+get).
    pub cycles: u64,
    /// Successful acquisitions (contended).
    pub acquisitions: u64,
    /// Errors (unexpected answers; refusals do not count).
    pub errors: u64,
    /// Window length.
    pub seconds: f64,
    /// Per-request latency percentiles and maximum, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Server CPU time per request, microseconds.
    pub server_cpu_us: f64,
    /// Load generator CPU time per request, microseconds.
    pub loadgen_cpu_us: f64,
    /// Server RSS at the end, bytes.
    pub server_rss: u64,
    /// Acquisitions per client: fewest and most.
    pub spread: (u64, u64),
}

impl Report {
    /// Requests per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    /// Cycles per second.
    pub fn cycles_per_s(&self) -> f64 {
        self.cycles as f64 / self.seconds
    }
    /// Acquisitions per second.
    pub fn acquisitions_per_s(&self) -> f64 {
        self.acquisitions as f64 / self.seconds
    }
}

#[derive(Default)]
struct ClientTally {
    ops: u64,
    cycles: u64,
    acquisitions: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// A connection to a target.
pub struct Conn {
    target: Target,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    out: Vec<u8>,
    line: Vec<u8>,
    script: String,
}

impl Conn {
    /// Connects, and for Redis loads the unlock script.
    pub async fn open(target: Target, addr: SocketAddr) -> io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Self {
            target,
            reader: BufReader::with_capacity(64 * 1024, r),
            writer: w,
            out: Vec::with_capacity(4096),
            line: Vec::with_capacity(256),
            script: String::new(),
        };
        if target == Target::Redis {
            c.out.clear();
            redis_command(&mut c.out, &[b"SCRIPT", b"LOAD", UNLOCK_SCRIPT.as_bytes()]);
            c.writer.write_all(&c.out).await?;
            c.out.clear();
            c.line.clear();
            c.reader.read_until(b'\n', &mut c.line).await?; // $40
            c.line.clear();
            c.reader.read_until(b'\n', &mut c.line).await?;
            c.script = String::from_utf8_lossy(&c.line).trim().to_owned();
        }
        Ok(c)
    }

    /// Queues a request (sent by [`flush`](Self::flush)).
    pub fn push(&mut self, op: Op<'_>) {
        self.target.encode(op, &self.script, &mut self.out);
    }

    /// Sends what was queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.writer.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Reads the next answer.
    pub async fn reply(&mut self) -> io::Result<Outcome> {
        self.target
            .read_reply(&mut self.reader, &mut self.line)
            .await
    }
}

/// A 40-character owner ID for client `i`.
pub fn owner(i: usize) -> String {
    format!("owner-{i:0>34}")
}

/// A 12-character lock name for client `i`.
pub fn name(i: usize) -> String {
    format!("lock-{i:07}")
}

async fn client(
    run: Run,
    addr: SocketAddr,
    i: usize,
    go: Instant,
    stop: Arc<AtomicBool>,
    window: (Instant, Instant),
) -> io::Result<ClientTally> {
    let mut conn = Conn::open(run.target, addr).await?;
    let owner = owner(i);
    let (mine, shared) = (name(i), "contended-1".to_owned());
    let value = "v".repeat(100);
    let mut t = ClientTally {
        latencies_us: Vec::with_capacity(1 << 16),
        ..ClientTally::default()
    };
    tokio::time::sleep_until(go.into()).await;
    let in_window = |at: Instant| at >= window.0 && at < window.1;
    while !stop.load(Ordering::Relaxed) {
        match run.workload {
            Workload::Uncontended | Workload::Kv => {
                // One batch: pipeline/2 cycles (at least one).
                let cycles = (run.pipeline / 2).max(1);
                for _ in 0..cycles {
                    if run.workload == Workload::Kv {
                        conn.push(Op::Put {
                            name: &mine,
                            owner: &owner,
                            value: &value,
                        });
                        if run.pipeline == 1 {
                            let sent = Instant::now();
                            conn.flush().await?;
                            let o = conn.reply().await?;
                            tally(&mut t, o, sent, in_window);
                        }
                        conn.push(Op::Get {
                            name: &mine,
                            owner: &owner,
                        });
                    } else {
                        conn.push(Op::Lock {
                            name: &mine,
                            owner: &owner,
                            ttl_ms: 30_000,
                            wait_ms: None,
                        });
                        if run.pipeline == 1 {
                            let sent = Instant::now();
                            conn.flush().await?;
                            let o = conn.reply().await?;
                            tally(&mut t, o, sent, in_window);
                        }
                        conn.push(Op::Unlock {
                            name: &mine,
                            owner: &owner,
                        });
                    }
                    if run.pipeline == 1 {
                        let sent = Instant::now();
                        conn.flush().await?;
                        let o = conn.reply().await?;
                        tally(&mut t, o, sent, in_window);
                        if o == Outcome::Ok && in_window(Instant::now()) {
                            t.cycles += 1;
                        }
                    }
                }
                if run.pipeline > 1 {
                    let sent = Instant::now();
                    conn.flush().await?;
                    let mut ok = 0;
                    for _ in 0..cycles * 2 {
                        let o = conn.reply().await?;
                        ok += u64::from(o == Outcome::Ok);
                        tally(&mut t, o, sent, in_window);
                    }
                    if in_window(Instant::now()) {
                        t.cycles += ok / 2;
                    }
                }
            }
            Workload::ContendedPoll | Workload::ContendedWait => {
                let wait = (run.workload == Workload::ContendedWait).then_some(60_000);
                conn.push(Op::Lock {
                    name: &shared,
                    owner: &owner,
                    ttl_ms: 30_000,
                    wait_ms: wait,
                });
                let sent = Instant::now();
                conn.flush().await?;
                let o = conn.reply().await?;
                tally(&mut t, o, sent, in_window);
                if o != Outcome::Ok {
                    continue;
                }
                conn.push(Op::Unlock {
                    name: &shared,
                    owner: &owner,
                });
                let sent = Instant::now();
                conn.flush().await?;
                let o = conn.reply().await?;
                tally(&mut t, o, sent, in_window);
                if o == Outcome::Ok && in_window(Instant::now()) {
                    t.acquisitions += 1;
                    t.cycles += 1;
                }
            }
        }
    }
    Ok(t)
}

fn tally(t: &mut ClientTally, o: Outcome, sent: Instant, in_window: impl Fn(Instant) -> bool) {
    let now = Instant::now();
    if !in_window(now) {
        return;
    }
    t.ops += 1;
    t.errors += u64::from(o == Outcome::Error);
    t.latencies_us
        .push(u32::try_from(now.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i])
}

/// Runs one workload and measures it. Runs on the caller's (single
/// threaded) runtime, so the load generator uses at most one core.
pub async fn run(run: Run) -> io::Result<Report> {
    run_on(run, &[(run.addr, run.pid)]).await
}

/// [`run`] against several servers (the members of a cluster): client `i`
/// connects to `servers[i % servers.len()]` (`run.addr` and `run.pid` are
/// not used), and the server CPU time and RSS are the sums over all of
/// them.
pub async fn run_on(run: Run, servers: &[(SocketAddr, u32)]) -> io::Result<Report> {
    const WARMUP: Duration = Duration::from_millis(300);
    if servers.is_empty() {
        return Err(io::Error::other("no server to run against"));
    }
    let cpu = || -> Duration { servers.iter().map(|s| procstat::cpu_time(s.1)).sum() };
    let stop = Arc::new(AtomicBool::new(false));
    let go = Instant::now() + Duration::from_millis(100);
    let window = (go + WARMUP, go + WARMUP + run.duration);
    let tasks: Vec<_> = (0..run.clients)
        .map(|i| {
            let addr = servers[i % servers.len()].0;
            tokio::spawn(client(run, addr, i, go, stop.clone(), window))
        })
        .collect();
    tokio::time::sleep_until(window.0.into()).await;
    let (cpu0, me0) = (cpu(), procstat::self_cpu_time());
    tokio::time::sleep_until(window.1.into()).await;
    let (cpu1, me1) = (cpu(), procstat::self_cpu_time());
    let rss = servers.iter().map(|s| procstat::rss(s.1)).sum();
    stop.store(true, Ordering::Relaxed);
    let mut report = Report {
        seconds: run.duration.as_secs_f64(),
        server_rss: rss,
        ..Report::default()
    };
    let mut all = Vec::new();
    let mut per_client = Vec::new();
    for t in tasks {
        let t = match tokio::time::timeout(Duration::from_secs(70), t).await {
            Ok(Ok(Ok(t))) => t,
            Ok(Ok(Err(e))) => return Err(e),
            _ => return Err(io::Error::other("a client did not finish")),
        };
        report.ops += t.ops;
        report.cycles += t.cycles;
        report.acquisitions += t.acquisitions;
        report.errors += t.errors;
        per_client.push(t.acquisitions);
        all.extend_from_slice(&t.latencies_us);
    }
    all.sort_unstable();
    report.p50_us = percentile(&all, 0.50);
    report.p99_us = percentile(&all, 0.99);
    report.max_us = all.last().copied().map_or(0.0, f64::from);
    let ops = report.ops.max(1) as f64;
    report.server_cpu_us = cpu1.saturating_sub(cpu0).as_secs_f64() * 1e6 / ops;
    report.loadgen_cpu_us = me1.saturating_sub(me0).as_secs_f64() * 1e6 / ops;
    report.spread = (
        per_client.iter().copied().min().unwrap_or(0),
        per_client.iter().copied().max().unwrap_or(0),
    );
    Ok(report)
}

/// Fills the server with `n` live locks (12-character names, 40-character
/// IDs) over a few pipelined connections; returns the server's RSS growth
/// per lock in bytes.
pub async fn fill(target: Target, addr: SocketAddr, pid: u32, n: usize) -> io::Result<f64> {
    const CONNS: usize = 4;
    const BATCH: usize = 512;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = procstat::rss(pid);
    let mut tasks = Vec::new();
    for c in 0..CONNS {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(target, addr).await?;
            let mut i = c;
            while i < n {
                let mut sent = 0;
                while sent < BATCH && i < n {
                    let (name, owner) = (format!("{i:0>12}"), format!("{i:0>40}"));
                    conn.push(Op::Lock {
                        name: &name,
                        owner: &owner,
                        ttl_ms: 3_000_000,
                        wait_ms: None,
                    });
                    sent += 1;
                    i += CONNS;
                }
                conn.flush().await?;
                for _ in 0..sent {
                    if conn.reply().await? != Outcome::Ok {
                        return Err(io::Error::other("a fill lock was refused"));
                    }
                }
            }
            Ok::<(), io::Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(io::Error::other)??;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = procstat::rss(pid);
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}
