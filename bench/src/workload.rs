//! Closed-loop clients over persistent connections, and what they measure.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;

use crate::procstat;
use dlm_core::protocol::{Shape, Token};

use crate::proto::{
    Op, Outcome, RW_ACQUIRE_SCRIPT, RW_RELEASE_SCRIPT, SEM_ACQUIRE_SCRIPT, Scripts, Target,
    UNLOCK_SCRIPT, redis_command,
};
use crate::tls::Tls;

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
    /// All clients on one counting semaphore of [`Run::permits`] permits:
    /// acquire, hold across one yield to the other clients, release. dlm
    /// clients queue in the server; Redis clients poll its usual recipe.
    Semaphore,
    /// All clients on one read/write lock, [`Run::read_percent`] of the
    /// acquisitions reads, the rest writes: acquire, hold across one
    /// yield, release. dlm queues (writers first in line are not
    /// overtaken); Redis polls.
    RwLock,
}

impl Workload {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uncontended => "uncontended",
            Self::ContendedPoll => "contended/poll",
            Self::ContendedWait => "contended/wait",
            Self::Kv => "kv",
            Self::Semaphore => "semaphore",
            Self::RwLock => "rwlock",
        }
    }

    /// Whether its headline is acquisitions of a shared name.
    pub fn is_contended(self) -> bool {
        matches!(
            self,
            Self::ContendedPoll | Self::ContendedWait | Self::Semaphore | Self::RwLock
        )
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
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
    /// The TLS client for a TLS target ([`Target::is_tls`]).
    pub tls: Option<Tls>,
    /// A semaphore's permits ([`Workload::Semaphore`]).
    pub permits: u32,
    /// The share of reads among acquisitions, percent
    /// ([`Workload::RwLock`]).
    pub read_percent: u32,
}

impl Run {
    /// The defaults of the shape workloads: 4 permits, 90% reads.
    pub const PERMITS: u32 = 4;
    /// See [`Run::PERMITS`].
    pub const READ_PERCENT: u32 = 90;
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
    /// Write acquisitions ([`Workload::RwLock`]).
    pub writes: u64,
    /// The most holders seen at once: permits of a semaphore, readers of
    /// a read/write lock (a writer counts as one).
    pub max_holders: u64,
    /// Times a grant broke the promise, seen by the clients: more holders
    /// than permits, or a writer beside anyone.
    pub violations: u64,
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
    /// Write acquisitions per second.
    pub fn writes_per_s(&self) -> f64 {
        self.writes as f64 / self.seconds
    }
}

/// Who holds the shared name now, as the clients see it: a grant is
/// counted from its answer until just before its release is sent, so the
/// count never exceeds what the server has granted. Every client runs on
/// one thread, but the counts are atomics so tasks stay `Send`.
#[derive(Default)]
struct Holders {
    /// Permits, or readers.
    shared: AtomicU64,
    writers: AtomicU64,
    max: AtomicU64,
    violations: AtomicU64,
}

impl Holders {
    /// A grant arrived: count it, and check the promise.
    fn enter(&self, write: bool, permits: Option<u32>) {
        let (shared, writers) = if write {
            (
                self.shared.load(Ordering::Relaxed),
                self.writers.fetch_add(1, Ordering::Relaxed) + 1,
            )
        } else {
            (
                self.shared.fetch_add(1, Ordering::Relaxed) + 1,
                self.writers.load(Ordering::Relaxed),
            )
        };
        let broken = match permits {
            Some(n) => shared > u64::from(n),
            None => writers > 1 || (writers == 1 && shared > 0),
        };
        if broken {
            self.violations.fetch_add(1, Ordering::Relaxed);
        }
        self.max.fetch_max(shared.max(writers), Ordering::Relaxed);
    }

    /// About to release.
    fn leave(&self, write: bool) {
        if write {
            self.writers.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.shared.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct ClientTally {
    ops: u64,
    cycles: u64,
    acquisitions: u64,
    writes: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// A connection's socket: plain TCP (split, as before TLS rows existed, so
/// the plaintext rows measure what they always did), or TLS.
enum Io {
    Plain {
        reader: BufReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
    },
    /// Boxed: a rustls connection is large, and only some rows use one.
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
}

/// A connection to a target.
pub struct Conn {
    target: Target,
    io: Io,
    out: Vec<u8>,
    line: Vec<u8>,
    scripts: Scripts,
}

impl Conn {
    /// Connects (a plaintext target), and for Redis loads the unlock
    /// script.
    pub async fn open(target: Target, addr: SocketAddr) -> io::Result<Self> {
        Self::open_with(target, addr, None).await
    }

    /// Connects, over TLS with `tls` for a TLS target (which needs it), and
    /// for Redis loads the unlock script.
    pub async fn open_with(
        target: Target,
        addr: SocketAddr,
        tls: Option<&Tls>,
    ) -> io::Result<Self> {
        const BUF: usize = 64 * 1024;
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let io = if target.is_tls() {
            let tls = tls.ok_or_else(|| {
                io::Error::other(format!("{}: no TLS client configured", target.name()))
            })?;
            Io::Tls(Box::new(BufReader::with_capacity(
                BUF,
                tls.connect(s, addr).await?,
            )))
        } else {
            let (r, w) = s.into_split();
            Io::Plain {
                reader: BufReader::with_capacity(BUF, r),
                writer: w,
            }
        };
        let mut c = Self {
            target,
            io,
            out: Vec::with_capacity(4096),
            line: Vec::with_capacity(256),
            scripts: Scripts::default(),
        };
        if target.is_redis() {
            c.scripts = Scripts {
                unlock: c.load(UNLOCK_SCRIPT).await?,
                sem_acquire: c.load(SEM_ACQUIRE_SCRIPT).await?,
                rw_acquire: c.load(RW_ACQUIRE_SCRIPT).await?,
                rw_release: c.load(RW_RELEASE_SCRIPT).await?,
            };
        }
        Ok(c)
    }

    /// `SCRIPT LOAD`s a Lua script into Redis; its SHA-1.
    async fn load(&mut self, script: &str) -> io::Result<String> {
        redis_command(&mut self.out, &[b"SCRIPT", b"LOAD", script.as_bytes()]);
        self.flush().await?;
        self.read_line().await?; // $40, or an error
        if self.line.first() != Some(&b'$') {
            return Err(io::Error::other(format!(
                "redis refused a script: {}",
                String::from_utf8_lossy(&self.line).trim()
            )));
        }
        self.read_line().await?;
        Ok(String::from_utf8_lossy(&self.line).trim().to_owned())
    }

    async fn read_line(&mut self) -> io::Result<()> {
        self.line.clear();
        match &mut self.io {
            Io::Plain { reader, .. } => reader.read_until(b'\n', &mut self.line).await?,
            Io::Tls(s) => s.read_until(b'\n', &mut self.line).await?,
        };
        Ok(())
    }

    /// Queues a request (sent by [`flush`](Self::flush)).
    pub fn push(&mut self, op: Op<'_>) {
        self.target.encode(op, &self.scripts, &mut self.out);
    }

    /// Sends what was queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        match &mut self.io {
            Io::Plain { writer, .. } => writer.write_all(&self.out).await?,
            Io::Tls(s) => {
                // Into rustls (one record for the batch), then out to the
                // socket.
                s.write_all(&self.out).await?;
                s.flush().await?;
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Reads the next answer.
    pub async fn reply(&mut self) -> io::Result<Outcome> {
        Ok(self.reply_token().await?.0)
    }

    /// Reads the next answer, and the fencing token of a dlm grant.
    pub async fn reply_token(&mut self) -> io::Result<(Outcome, Option<Token>)> {
        match &mut self.io {
            Io::Plain { reader, .. } => self.target.read_reply(reader, &mut self.line).await,
            Io::Tls(s) => self.target.read_reply(&mut **s, &mut self.line).await,
        }
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

// One closed loop per workload, as the workloads have always been written.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
async fn client(
    run: Run,
    addr: SocketAddr,
    i: usize,
    go: Instant,
    stop: Arc<AtomicBool>,
    window: (Instant, Instant),
    holders: Arc<Holders>,
) -> io::Result<ClientTally> {
    let mut conn = Conn::open_with(run.target, addr, run.tls.as_ref()).await?;
    let owner = owner(i);
    let (mine, shared) = (name(i), "contended-1".to_owned());
    let value = "v".repeat(100);
    let mut t = ClientTally {
        latencies_us: Vec::with_capacity(1 << 16),
        ..ClientTally::default()
    };
    tokio::time::sleep_until(go.into()).await;
    let in_window = |at: Instant| at >= window.0 && at < window.1;
    // The shape rows' shared name, one per row (a semaphore's size is
    // fixed while anyone holds or waits) and the reads' schedule: a
    // per-client xorshift, so writes are spread, not bunched.
    let shaped = format!("{}-{}-{}", run.workload.name(), run.clients, run.permits);
    let mut dice = 0x9E37_79B9_7F4A_7C15_u64 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut write_next = false;
    let mut fresh = true;
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
            Workload::Semaphore | Workload::RwLock => {
                let semaphore = run.workload == Workload::Semaphore;
                if fresh {
                    // A new acquisition (not a Redis client's retry): read
                    // or write, as the dice say.
                    dice ^= dice << 13;
                    dice ^= dice >> 7;
                    dice ^= dice << 17;
                    write_next = !semaphore && dice % 100 >= u64::from(run.read_percent);
                }
                let shape = if semaphore {
                    Shape::Semaphore {
                        permits: run.permits,
                    }
                } else if write_next {
                    Shape::Write
                } else {
                    Shape::Read
                };
                conn.push(Op::Acquire {
                    name: &shaped,
                    owner: &owner,
                    shape,
                    ttl_ms: 30_000,
                    wait_ms: (!run.target.is_redis()).then_some(60_000),
                });
                let sent = Instant::now();
                conn.flush().await?;
                let (o, token) = conn.reply_token().await?;
                tally(&mut t, o, sent, in_window);
                fresh = o != Outcome::Refused;
                if o != Outcome::Ok {
                    continue;
                }
                holders.enter(write_next, semaphore.then_some(run.permits));
                // Hold across one turn of the others, so that holds overlap
                // and the count above means something.
                tokio::task::yield_now().await;
                holders.leave(write_next);
                conn.push(Op::Release {
                    name: &shaped,
                    owner: &owner,
                    semaphore,
                    token: token.unwrap_or(Token(0)),
                });
                let sent = Instant::now();
                conn.flush().await?;
                let o = conn.reply().await?;
                tally(&mut t, o, sent, in_window);
                if o == Outcome::Ok && in_window(Instant::now()) {
                    t.acquisitions += 1;
                    t.cycles += 1;
                    t.writes += u64::from(write_next);
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
    let server = [(run.addr, run.pid)];
    run_on(run, &server).await
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
    let holders = Arc::new(Holders::default());
    let go = Instant::now() + Duration::from_millis(100);
    let window = (go + WARMUP, go + WARMUP + run.duration);
    let tasks: Vec<_> = (0..run.clients)
        .map(|i| {
            let addr = servers[i % servers.len()].0;
            tokio::spawn(client(
                run.clone(),
                addr,
                i,
                go,
                stop.clone(),
                window,
                holders.clone(),
            ))
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
        report.writes += t.writes;
        report.errors += t.errors;
        per_client.push(t.acquisitions);
        all.extend_from_slice(&t.latencies_us);
    }
    all.sort_unstable();
    report.max_holders = holders.max.load(Ordering::Relaxed);
    report.violations = holders.violations.load(Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::Holders;

    #[test]
    fn holders_count_more_than_permits_as_a_violation() {
        let h = Holders::default();
        for _ in 0..2 {
            h.enter(false, Some(2));
        }
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 0);
        h.enter(false, Some(2));
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 1);
        assert_eq!(h.max.load(super::Ordering::Relaxed), 3);
        h.leave(false);
        h.enter(false, Some(2));
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 2);
    }

    #[test]
    fn a_writer_beside_anyone_is_a_violation() {
        let h = Holders::default();
        h.enter(false, None);
        h.enter(false, None);
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 0);
        h.enter(true, None);
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 1);
        h.leave(false);
        h.leave(false);
        h.leave(true);
        h.enter(true, None);
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 1);
        h.enter(true, None);
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 2);
        h.leave(true);
        h.enter(false, None);
        assert_eq!(h.violations.load(super::Ordering::Relaxed), 3);
    }
}
