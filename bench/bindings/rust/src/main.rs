//! The Rust program of the bindings benchmark: the `dlm` crate against
//! redis-rs (the `redis` crate, blocking), same closed-loop workloads over
//! loopback, one client (one connection) per worker thread, alternating dlm
//! and Redis. The contract (environment in, JSON lines out) is
//! `bench/bindings/README.md`.
//!
//! - `lock`: uncontended lock+unlock, each worker on its own name. dlm:
//!   `client.lock(name).ttl(30 s).acquire()`, `unlock()`. Redis:
//!   `SET key token NX PX 30000`, then `EVALSHA` of a Lua compare-and-delete.
//! - `kv`: put+get of a 32-byte value, each worker on its own key. dlm:
//!   `put` (TTL 300 s), `get`. Redis: `SET key value PX 300000`, `GET key`.
//!
//! One operation is one cycle; the latencies are a cycle's.
//!
//! With `DLM_BENCH_DLM_TLS` (the address of a dlm-server's TLS port) and
//! `DLM_BENCH_DLM_TLS_CA` (its CA file; the certificate must be valid for
//! localhost), every row is also measured over TLS (`"client":"dlm-tls"`),
//! between the plaintext dlm row and the Redis one.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::process::ExitCode;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const VALUE: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const UNLOCK_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) else return 0 end";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Lock,
    Kv,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Kv => "kv",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dlm,
    DlmTls,
    Redis,
}

/// What every measurement needs.
struct Setup {
    dlm: String,
    redis: String,
    run: String,
    seconds: Duration,
    unlock_sha: String,
    /// A TLS port of dlm-server and its CA file.
    dlm_tls: Option<(String, String)>,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// One worker's connection.
enum Conn {
    Dlm(dlm::Client),
    Redis(redis::Connection),
}

impl Conn {
    fn open(kind: Kind, setup: &Setup) -> Result<Self, Failure> {
        Ok(match kind {
            Kind::Dlm => Self::Dlm(dlm::Client::connect_with(
                setup.dlm.as_str(),
                dlm::Options::new().max_idle(1),
            )?),
            Kind::DlmTls => {
                let (addr, ca) = setup.dlm_tls.as_ref().ok_or("no TLS server")?;
                Self::Dlm(dlm::Client::connect_with(
                    addr.as_str(),
                    dlm::Options::new()
                        .max_idle(1)
                        .tls(dlm::Tls::new().ca_file(ca).server_name("localhost")),
                )?)
            }
            Kind::Redis => {
                let con = redis::Client::open(format!("redis://{}/", setup.redis))?
                    .get_connection_with_timeout(Duration::from_secs(5))?;
                con.set_read_timeout(Some(Duration::from_secs(10)))?;
                con.set_write_timeout(Some(Duration::from_secs(10)))?;
                Self::Redis(con)
            }
        })
    }

    fn cycle(
        &mut self,
        workload: Workload,
        key: &str,
        i: u64,
        setup: &Setup,
    ) -> Result<(), Failure> {
        match (self, workload) {
            (Self::Dlm(c), Workload::Lock) => {
                c.lock(key)
                    .ttl(Duration::from_secs(30))
                    .acquire()?
                    .unlock()?;
            }
            (Self::Dlm(c), Workload::Kv) => {
                c.put(key, VALUE, Duration::from_secs(300))?;
                let v = c.get(key)?.ok_or("the value is gone")?;
                if v.data.len() != VALUE.len() {
                    return Err("wrong value".into());
                }
            }
            (Self::Redis(con), Workload::Lock) => {
                let token = format!("{}-{i}", setup.run);
                let set: Option<String> = redis::cmd("SET")
                    .arg(key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query(con)?;
                if set.is_none() {
                    return Err("SET NX refused an uncontended lock".into());
                }
                let deleted: i64 = redis::cmd("EVALSHA")
                    .arg(&setup.unlock_sha)
                    .arg(1)
                    .arg(key)
                    .arg(&token)
                    .query(con)?;
                if deleted != 1 {
                    return Err("the lock was not ours".into());
                }
            }
            (Self::Redis(con), Workload::Kv) => {
                let () = redis::cmd("SET")
                    .arg(key)
                    .arg(&VALUE[..])
                    .arg("PX")
                    .arg(300_000)
                    .query(con)?;
                let v: Vec<u8> = redis::cmd("GET").arg(key).query(con)?;
                if v.len() != VALUE.len() {
                    return Err("wrong value".into());
                }
            }
        }
        Ok(())
    }
}

/// Runs `workers` threads for the setup's seconds and prints one JSON line.
fn measure(setup: &Setup, kind: Kind, workload: Workload, workers: usize) -> Result<(), Failure> {
    let conns = (0..workers)
        .map(|_| Conn::open(kind, setup))
        .collect::<Result<Vec<_>, _>>()?;
    let ready = Barrier::new(workers + 1);
    let stop = AtomicBool::new(false);
    let (samples, elapsed) = std::thread::scope(|s| -> Result<_, Failure> {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(w, mut conn)| {
                let (ready, stop) = (&ready, &stop);
                s.spawn(move || -> Result<Vec<u32>, Failure> {
                    // Its own key per measurement: a dlm entry belongs to
                    // the client (owner ID) that wrote it, and the next
                    // measurement's clients are new ones.
                    let client = match kind {
                        Kind::Dlm => "dlm",
                        Kind::DlmTls => "dlm-tls",
                        Kind::Redis => "redis",
                    };
                    let key = format!(
                        "bench:{}:rust:{}:{client}:{workers}:{w}",
                        setup.run,
                        workload.name()
                    );
                    // Warm: the first request of a connection.
                    let warm = conn.cycle(workload, &key, 0, setup);
                    ready.wait();
                    warm?;
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut i = 1;
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        conn.cycle(workload, &key, i, setup)?;
                        let us = t0.elapsed().as_micros();
                        lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                        i += 1;
                    }
                    Ok(lat)
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        std::thread::sleep(setup.seconds);
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "a worker panicked")??);
        }
        Ok((all, start.elapsed()))
    })?;
    let mut samples = samples;
    samples.sort_unstable();
    let pct = |p: usize| samples.get(samples.len() * p / 100).copied().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let rate = samples.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{{\"binding\":\"rust\",\"client\":\"{}\",\"workload\":\"{}\",\"workers\":{workers},\
         \"ops_per_s\":{rate:.0},\"p50_us\":{},\"p99_us\":{},\"ops\":{},\"seconds\":{:.3}}}",
        match kind {
            Kind::Dlm => "dlm",
            Kind::DlmTls => "dlm-tls",
            Kind::Redis => "redis-rs",
        },
        workload.name(),
        pct(50),
        pct(99),
        samples.len(),
        elapsed.as_secs_f64(),
    );
    Ok(())
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn run() -> Result<(), Failure> {
    let seconds: f64 = env("DLM_BENCH_SECONDS", "3")
        .parse()
        .map_err(|_| "DLM_BENCH_SECONDS is not a number")?;
    let mut setup = Setup {
        dlm: env("DLM_BENCH_DLM", "127.0.0.1:37373"),
        redis: env("DLM_BENCH_REDIS", "127.0.0.1:6379"),
        run: env("DLM_BENCH_RUN", "run"),
        seconds: Duration::try_from_secs_f64(seconds)?,
        unlock_sha: String::new(),
        dlm_tls: match (
            std::env::var("DLM_BENCH_DLM_TLS"),
            std::env::var("DLM_BENCH_DLM_TLS_CA"),
        ) {
            (Ok(addr), Ok(ca)) if !addr.is_empty() && !ca.is_empty() => Some((addr, ca)),
            _ => None,
        },
    };
    let mut con = redis::Client::open(format!("redis://{}/", setup.redis))?.get_connection()?;
    setup.unlock_sha = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(UNLOCK_SCRIPT)
        .query(&mut con)?;
    drop(con);
    let workers: Vec<usize> = env("DLM_BENCH_WORKERS", "16 64")
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().map_err(|_| format!("bad worker count {w:?}")))
        .collect::<Result<_, _>>()?;
    for workload in env("DLM_BENCH_WORKLOADS", "lock kv").split([' ', ',']) {
        let workload = match workload {
            "lock" => Workload::Lock,
            "kv" => Workload::Kv,
            "" => continue,
            other => return Err(format!("unknown workload {other:?}").into()),
        };
        for &n in &workers {
            measure(&setup, Kind::Dlm, workload, n)?;
            if setup.dlm_tls.is_some() {
                measure(&setup, Kind::DlmTls, workload, n)?;
            }
            measure(&setup, Kind::Redis, workload, n)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-rust: {e}");
            ExitCode::FAILURE
        }
    }
}
