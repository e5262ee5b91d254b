//! dlm-tokio against the `redis` crate's async (tokio) client, in closed
//! loops: each of N workers (tasks on one runtime, sharing one client of
//! each kind, as an application would) runs cycles back to
//! back, and every request's latency is recorded.
//!
//! - `lock`: lock then unlock the worker's own name. dlm-tokio:
//!   `client.lock(name).ttl(30 s).acquire()` and `Lock::unlock`; Redis:
//!   `SET key owner NX PX 30000` and a compare-and-delete Lua script by
//!   `EVALSHA` (redis-rs `Script`).
//! - `kv`: put then get a 100-byte value under the worker's own key, TTL
//!   300 s. dlm-tokio: `put`/`get` (table-encoded); Redis: `SET key value
//!   PX 300000` and `GET`.
//!
//! One JSON line per run on stdout:
//! `{"binding":"rust-async","client":"dlm-tokio","workload":"lock","workers":16,"ops_per_s":..,"p50_us":..,"p99_us":..}`,
//! where an op is one request (a cycle is two) and the percentiles are
//! per request. Anything else goes to stderr.
//!
//! Usage: `bench-rust-async --dlm HOST:PORT --redis HOST:PORT --seconds S
//! [--workers 16,64] [--workloads lock,kv] [--clients dlm-tokio,redis-rs]
//! [--warmup S] [--threads N]`. By default the runtime is
//! current-thread: on a small machine that leaves the other cores to the
//! servers (`--threads N` runs a multi-threaded one).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const UNLOCK_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dlm,
    Redis,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Dlm => "dlm-tokio",
            Self::Redis => "redis-rs",
        }
    }
}

struct Args {
    dlm: Option<String>,
    redis: Option<String>,
    seconds: f64,
    warmup: f64,
    workers: Vec<usize>,
    workloads: Vec<Workload>,
    clients: Vec<Kind>,
    threads: usize,
    connections: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dlm: None,
        redis: None,
        seconds: 5.0,
        warmup: 1.0,
        workers: vec![16, 64],
        workloads: vec![Workload::Lock, Workload::Kv],
        clients: vec![Kind::Dlm, Kind::Redis],
        threads: 1,
        connections: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dlm" => args.dlm = Some(value()?),
            "--redis" => args.redis = Some(value()?),
            "--seconds" => args.seconds = number(&value()?)?,
            "--warmup" => args.warmup = number(&value()?)?,
            "--workers" => {
                args.workers = list(&value()?, |w| w.parse().ok().filter(|&n| n > 0))?;
            }
            "--workloads" => {
                args.workloads = list(&value()?, |w| match w {
                    "lock" => Some(Workload::Lock),
                    "kv" => Some(Workload::Kv),
                    _ => None,
                })?;
            }
            "--clients" => {
                args.clients = list(&value()?, |c| match c {
                    "dlm-tokio" => Some(Kind::Dlm),
                    "redis-rs" => Some(Kind::Redis),
                    _ => None,
                })?;
            }
            "--threads" => {
                args.threads = value()?
                    .parse()
                    .map_err(|_| "--threads takes a number".to_owned())?;
            }
            "--dlm-connections" => {
                args.connections = value()?
                    .parse()
                    .map_err(|_| "--dlm-connections takes a number".to_owned())?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    args.clients.retain(|k| match k {
        Kind::Dlm => args.dlm.is_some(),
        Kind::Redis => args.redis.is_some(),
    });
    if args.clients.is_empty() {
        return Err("give --dlm HOST:PORT, --redis HOST:PORT, or both".into());
    }
    Ok(args)
}

fn number(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("not a number of seconds: {s}"))
}

fn list<T>(s: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|item| f(item.trim()).ok_or_else(|| format!("unknown value {item}")))
        .collect()
}

/// One client of either kind, shared by every worker.
#[derive(Clone)]
enum Target {
    Dlm(dlm_tokio::Client),
    Redis {
        conn: redis::aio::MultiplexedConnection,
        unlock: Arc<redis::Script>,
    },
}

/// What one worker does per cycle, with the two requests timed.
struct Worker {
    target: Target,
    name: String,
    owner: String,
    value: Vec<u8>,
}

impl Worker {
    async fn cycle(&mut self, workload: Workload, lat: &mut Vec<u32>) -> Result<(), String> {
        let t0 = Instant::now();
        let t1;
        match (&mut self.target, workload) {
            (Target::Dlm(c), Workload::Lock) => {
                let lock = c
                    .lock(self.name.as_str())
                    .ttl(Duration::from_secs(30))
                    .acquire()
                    .await
                    .map_err(|e| e.to_string())?;
                t1 = Instant::now();
                lock.unlock().await.map_err(|e| e.to_string())?;
            }
            (Target::Dlm(c), Workload::Kv) => {
                c.put(&self.name, &self.value, Duration::from_mins(5))
                    .await
                    .map_err(|e| e.to_string())?;
                t1 = Instant::now();
                let v = c.get(&self.name).await.map_err(|e| e.to_string())?;
                if v.is_none_or(|v| v.data.len() != self.value.len()) {
                    return Err("get returned another value".into());
                }
            }
            (Target::Redis { conn, unlock }, Workload::Lock) => {
                let ok: Option<String> = redis::cmd("SET")
                    .arg(&self.name)
                    .arg(&self.owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if ok.is_none() {
                    return Err("SET NX refused an uncontended lock".into());
                }
                t1 = Instant::now();
                let n: i64 = unlock
                    .key(&self.name)
                    .arg(&self.owner)
                    .invoke_async(conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if n != 1 {
                    return Err("the unlock script deleted nothing".into());
                }
            }
            (Target::Redis { conn, .. }, Workload::Kv) => {
                let () = redis::cmd("SET")
                    .arg(&self.name)
                    .arg(&self.value)
                    .arg("PX")
                    .arg(300_000)
                    .query_async(conn)
                    .await
                    .map_err(|e| e.to_string())?;
                t1 = Instant::now();
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&self.name)
                    .query_async(conn)
                    .await
                    .map_err(|e| e.to_string())?;
                if v.is_none_or(|v| v.len() != self.value.len()) {
                    return Err("GET returned another value".into());
                }
            }
        }
        let t2 = Instant::now();
        lat.push(micros(t1 - t0));
        lat.push(micros(t2 - t1));
        Ok(())
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

struct Figures {
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs `workers` closed loops for the warm-up, then measures for
/// `seconds`.
async fn run(
    target: &Target,
    kind: Kind,
    workload: Workload,
    workers: usize,
    args: &Args,
) -> Result<Figures, String> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let run_id = format!("{}-{}-{}", std::process::id(), kind.name(), workload.name());
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let mut worker = Worker {
                target: target.clone(),
                name: format!("bench-{run_id}-{i}"),
                owner: format!("owner-{run_id}-{i}"),
                value: vec![b'v'; 100],
            };
            let (measuring, stop, failures) = (measuring.clone(), stop.clone(), failures.clone());
            tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut scratch = Vec::with_capacity(2);
                let mut first_error = None;
                while !stop.load(Ordering::Relaxed) {
                    scratch.clear();
                    match worker.cycle(workload, &mut scratch).await {
                        Ok(()) if measuring.load(Ordering::Relaxed) => lat.extend(&scratch),
                        Ok(()) => {}
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (lat, first_error)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut error = None;
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        error = error.or(e);
    }
    if let Some(e) = error {
        return Err(format!(
            "{} failed cycles, the first: {e}",
            failures.load(Ordering::Relaxed)
        ));
    }
    if all.is_empty() {
        return Err("no request completed in the window".into());
    }
    all.sort_unstable();
    // The nearest-rank percentile, in whole per cent.
    let pct = |p: usize| f64::from(all[(all.len() * p).div_ceil(100).clamp(1, all.len()) - 1]);
    #[allow(clippy::cast_precision_loss)] // a count of requests, far below 2^52
    let ops = all.len() as f64;
    Ok(Figures {
        ops_per_s: ops / elapsed,
        p50_us: pct(50),
        p99_us: pct(99),
    })
}

async fn connect(kind: Kind, args: &Args) -> Result<Target, String> {
    match kind {
        Kind::Dlm => {
            let addr = args.dlm.as_deref().unwrap_or_default();
            dlm_tokio::Client::builder()
                .connections(args.connections)
                .connect(addr)
                .await
                .map(Target::Dlm)
                .map_err(|e| format!("dlm at {addr}: {e}"))
        }
        Kind::Redis => {
            let addr = args.redis.as_deref().unwrap_or_default();
            let client = redis::Client::open(format!("redis://{addr}/"))
                .map_err(|e| format!("redis at {addr}: {e}"))?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("redis at {addr}: {e}"))?;
            let unlock = redis::Script::new(UNLOCK_SCRIPT);
            // Loaded once, so every unlock is an EVALSHA.
            unlock
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(|e| format!("redis at {addr}: SCRIPT LOAD: {e}"))?;
            Ok(Target::Redis {
                conn,
                unlock: Arc::new(unlock),
            })
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("bench-rust-async: {e}");
            }
            eprintln!(
                "usage: bench-rust-async --dlm HOST:PORT --redis HOST:PORT --seconds S \
                 [--workers 16,64] [--workloads lock,kv] [--clients dlm-tokio,redis-rs] [--warmup S] [--threads N]"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    match runtime {
        Ok(rt) => rt.block_on(bench(&args)),
        Err(e) => {
            eprintln!("bench-rust-async: no runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: &Args) -> ExitCode {
    let mut targets = Vec::new();
    for &kind in &args.clients {
        match connect(kind, args).await {
            Ok(t) => targets.push((kind, t)),
            Err(e) => {
                eprintln!("bench-rust-async: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut failed = false;
    for &workers in &args.workers {
        for &workload in &args.workloads {
            // The clients take turns, so that drift on the machine is
            // shared between them.
            for (kind, target) in &targets {
                match run(target, *kind, workload, workers, args).await {
                    Ok(f) => println!(
                        "{{\"binding\":\"rust-async\",\"client\":\"{}\",\"workload\":\"{}\",\"workers\":{workers},\"ops_per_s\":{:.0},\"p50_us\":{},\"p99_us\":{}}}",
                        kind.name(),
                        workload.name(),
                        f.ops_per_s,
                        f.p50_us,
                        f.p99_us
                    ),
                    Err(e) => {
                        eprintln!(
                            "bench-rust-async: {} {} x{workers}: {e}",
                            kind.name(),
                            workload.name()
                        );
                        failed = true;
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
