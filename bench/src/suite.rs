//! The whole comparison in one run: start a private Redis, dlm-server and
//! the floor server on loopback, run every workload at 1, 16 and 64
//! clients against each (alternating), print one table with the dlm/Redis
//! ratio per row, and stop everything.

use std::io::{self, BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proto::Target;
use crate::workload::{self, Report, Run, Workload};

/// Settings of a suite run.
#[derive(Clone, Debug)]
pub struct Suite {
    /// Measured seconds per row.
    pub duration: Duration,
    /// Client counts.
    pub clients: Vec<usize>,
    /// Live locks for the memory row.
    pub fill: usize,
    /// The dlm-server binary.
    pub dlm_server: PathBuf,
    /// The redis-server binary.
    pub redis_server: PathBuf,
    /// This binary (to start the floor server).
    pub self_exe: PathBuf,
    /// An earlier dlm-server build to measure beside this one.
    pub baseline: Option<PathBuf>,
}

/// A server process, killed on drop.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a server that prints "... listening on ADDR" first.
    fn announced(mut cmd: Command) -> io::Result<Self> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no address in {line:?}")))?;
        Ok(Self { child, addr })
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_redis(bin: &PathBuf) -> io::Result<Proc> {
    let port = free_port()?;
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--daemonize", "no", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(io::Error::other("redis-server did not start"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Proc { child, addr })
}

fn start_dlm(bin: &PathBuf) -> io::Result<Proc> {
    start_dlm_with(bin, &[])
}

fn start_dlm_with(bin: &PathBuf, args: &[&str]) -> io::Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "127.0.0.1",
        "0",
        "--memory-budget",
        "8GiB",
        "--max-connections",
        "10000",
    ]);
    cmd.args(args);
    if let Ok(extra) = std::env::var("DLM_BENCH_SERVER_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    Proc::announced(cmd)
}

fn start_floor(me: &PathBuf, epoll: bool) -> io::Result<Proc> {
    let mut cmd = Command::new(me);
    cmd.arg("floor");
    if epoll {
        cmd.arg("--epoll");
    }
    Proc::announced(cmd)
}

/// One printed row.
struct Row {
    workload: String,
    clients: usize,
    pipeline: usize,
    target: &'static str,
    report: Report,
    /// Headline figure per second (cycles or acquisitions).
    headline: f64,
    /// dlm/Redis ratio of the headline, on dlm rows.
    ratio: Option<f64>,
}

fn headline(w: Workload, r: &Report) -> f64 {
    match w {
        Workload::ContendedPoll | Workload::ContendedWait => r.acquisitions_per_s(),
        _ => r.cycles_per_s(),
    }
}

impl Suite {
    /// Runs everything and prints the table.
    pub fn run(&self) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let started = Instant::now();
        let redis = start_redis(&self.redis_server)?;
        let dlm = start_dlm(&self.dlm_server)?;
        let spinning = start_dlm_with(&self.dlm_server, &["--busy-poll", "100us"])?;
        let floor = start_floor(&self.self_exe, false)?;
        let floor_epoll = start_floor(&self.self_exe, true)?;
        let baseline = self.baseline.as_ref().map(start_dlm).transpose()?;
        let server = |t: Target| -> &Proc {
            match t {
                Target::Redis => &redis,
                Target::Floor => &floor,
                Target::FloorEpoll => &floor_epoll,
                Target::Dlm | Target::DlmLegacy => &dlm,
                Target::DlmBusyPoll => &spinning,
                Target::DlmBaseline => baseline.as_ref().unwrap_or(&dlm),
            }
        };
        let with_baseline = |ts: &[Target]| -> Vec<Target> {
            let mut v = ts.to_vec();
            if baseline.is_some() {
                // Right after this build's row, so both see the same machine.
                let at = v
                    .iter()
                    .position(|t| *t == Target::Dlm)
                    .map_or(v.len(), |i| i + 1);
                v.insert(at, Target::DlmBaseline);
            }
            v
        };
        let measure = |target: Target, workload: Workload, clients: usize, pipeline: usize| {
            let p = server(target);
            rt.block_on(workload::run(Run {
                target,
                addr: p.addr,
                pid: p.pid(),
                workload,
                clients,
                pipeline,
                duration: self.duration,
            }))
        };
        let mut rows = Vec::new();
        let mut push =
            |w: Workload, clients: usize, pipeline: usize, target: Target, report: Report| {
                rows.push(Row {
                    workload: w.name().to_owned(),
                    clients,
                    pipeline,
                    target: target.name(),
                    headline: headline(w, &report),
                    report,
                    ratio: None,
                });
            };
        for (n, &clients) in self.clients.iter().enumerate() {
            // Alternate which goes first, so neither always warms the cache.
            let order = if n % 2 == 0 {
                [Target::Dlm, Target::Redis]
            } else {
                [Target::Redis, Target::Dlm]
            };
            for (w, pipeline) in [
                (Workload::Uncontended, 1),
                (Workload::Uncontended, 16),
                (Workload::Kv, 1),
                (Workload::ContendedPoll, 1),
            ] {
                for t in with_baseline(&order) {
                    push(w, clients, pipeline, t, measure(t, w, clients, pipeline)?);
                }
                if w == Workload::Uncontended && pipeline == 1 {
                    for t in [Target::Floor, Target::FloorEpoll] {
                        push(w, clients, pipeline, t, measure(t, w, clients, pipeline)?);
                    }
                    let t = Target::DlmLegacy;
                    push(w, clients, pipeline, t, measure(t, w, clients, pipeline)?);
                }
            }
            let w = Workload::ContendedWait;
            for t in with_baseline(&[Target::Dlm]) {
                push(w, clients, 1, t, measure(t, w, clients, 1)?);
            }
            // Latency-bound rows again, with the server polling briefly
            // before it sleeps (an option, off by default).
            let t = Target::DlmBusyPoll;
            push(w, clients, 1, t, measure(t, w, clients, 1)?);
            if clients == 1 {
                let w = Workload::Uncontended;
                push(w, clients, 1, t, measure(t, w, clients, 1)?);
            }
        }
        drop((redis, dlm, spinning, floor, floor_epoll, baseline));

        // Ratios: each dlm row against the Redis row of the same workload
        // (contended waits against Redis polling).
        let base: Vec<(String, usize, usize, f64)> = rows
            .iter()
            .filter(|r| r.target == "redis")
            .map(|r| (r.workload.clone(), r.clients, r.pipeline, r.headline))
            .collect();
        for r in rows.iter_mut().filter(|r| r.target != "redis") {
            let wanted = if r.workload == Workload::ContendedWait.name() {
                Workload::ContendedPoll.name()
            } else {
                r.workload.as_str()
            };
            r.ratio = base
                .iter()
                .find(|b| b.0 == wanted && b.1 == r.clients && b.2 == r.pipeline)
                .map(|b| r.headline / b.3.max(1e-9));
        }

        // Memory: fresh servers, N live locks each.
        let fresh_dlm = start_dlm(&self.dlm_server)?;
        let dlm_bytes = rt.block_on(workload::fill(
            Target::Dlm,
            fresh_dlm.addr,
            fresh_dlm.pid(),
            self.fill,
        ))?;
        drop(fresh_dlm);
        let fresh_redis = start_redis(&self.redis_server)?;
        let redis_bytes = rt.block_on(workload::fill(
            Target::Redis,
            fresh_redis.addr,
            fresh_redis.pid(),
            self.fill,
        ))?;
        drop(fresh_redis);

        print_table(&rows);
        println!();
        println!(
            "memory, {} live locks (12-char names, 40-char IDs): dlm {dlm_bytes:.1} B/lock, redis {redis_bytes:.1} B/lock, ratio {:.2}",
            self.fill,
            dlm_bytes / redis_bytes.max(1e-9)
        );
        print_targets(&rows, dlm_bytes / redis_bytes.max(1e-9));
        println!("suite took {:.0} s", started.elapsed().as_secs_f64());
        Ok(())
    }
}

fn find<'r>(
    rows: &'r [Row],
    workload: &str,
    clients: usize,
    pipeline: usize,
    target: &str,
) -> Option<&'r Row> {
    rows.iter().find(|r| {
        r.workload == workload
            && r.clients == clients
            && r.pipeline == pipeline
            && r.target == target
    })
}

/// The targets, each with what this run measured.
fn print_targets(rows: &[Row], memory_ratio: f64) {
    println!();
    println!("| target | measured | met |");
    println!("|---|---|---|");
    let mark = |ok: bool| if ok { "yes" } else { "no" };
    for clients in [16, 64] {
        let (Some(d), Some(f)) = (
            find(rows, "uncontended", clients, 1, "dlm"),
            find(rows, "uncontended", clients, 1, "floor"),
        ) else {
            continue;
        };
        let ratio = d.report.server_cpu_us / f.report.server_cpu_us.max(1e-9);
        println!(
            "| server CPU/request <= 1.15x floor, uncontended, {clients} clients | {:.2} vs {:.2} us ({ratio:.2}x) | {} |",
            d.report.server_cpu_us,
            f.report.server_cpu_us,
            mark(ratio <= 1.15)
        );
    }
    let ratio_row = |w: &str, c: usize, p: usize, t: &str, want: f64, what: &str| {
        if let Some(r) = find(rows, w, c, p, t)
            && let Some(x) = r.ratio
        {
            println!("| {what} | {x:.2}x | {} |", mark(x >= want));
        }
    };
    for c in [16, 64] {
        ratio_row(
            "uncontended",
            c,
            1,
            "dlm",
            1.1,
            &format!("uncontended cycles/s >= 1.1x Redis, {c} clients"),
        );
    }
    for c in [16, 64] {
        ratio_row(
            "uncontended",
            c,
            16,
            "dlm",
            1.5,
            &format!("16 pipelined >= 1.5x Redis pipelined, {c} clients"),
        );
    }
    ratio_row(
        "kv",
        64,
        1,
        "dlm",
        1.2,
        "kv put+get cycles/s >= 1.2x Redis, 64 clients",
    );
    for t in ["dlm", "dlm busy-poll"] {
        if let Some(r) = find(rows, "contended/wait", 64, 1, t)
            && let Some(x) = r.ratio
        {
            println!(
                "| contended, 64 clients: {t} Wait acquisitions/s >= 20x Redis polling | {x:.2}x, per client {}-{} | {} |",
                r.report.spread.0,
                r.report.spread.1,
                mark(x >= 20.0)
            );
        }
    }
    if let (Some(d), Some(r)) = (
        find(rows, "uncontended", 16, 1, "dlm"),
        find(rows, "uncontended", 16, 1, "redis"),
    ) {
        println!(
            "| p99 at 16 clients, uncontended, no worse than Redis | {:.0} vs {:.0} us | {} |",
            d.report.p99_us,
            r.report.p99_us,
            mark(d.report.p99_us <= r.report.p99_us)
        );
    }
    println!(
        "| memory per live lock <= 0.8x Redis | {memory_ratio:.2}x | {} |",
        mark(memory_ratio <= 0.8)
    );
}

fn print_table(rows: &[Row]) {
    println!(
        "| workload | clients | in flight | target | ops/s | cycles/s | acq/s | p50 us | p99 us | max us | errors | server CPU us/op | loadgen CPU us/op | server RSS MiB | acq/client min-max | dlm/Redis |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in rows {
        let rep = &r.report;
        let contended = r.workload.starts_with("contended");
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {} | {} |",
            r.workload,
            r.clients,
            r.pipeline,
            r.target,
            rep.ops_per_s(),
            rep.cycles_per_s(),
            if contended {
                format!("{:.0}", rep.acquisitions_per_s())
            } else {
                "-".into()
            },
            rep.p50_us,
            rep.p99_us,
            rep.max_us,
            rep.errors,
            rep.server_cpu_us,
            rep.loadgen_cpu_us,
            rep.server_rss as f64 / f64::from(1 << 20),
            if contended {
                format!("{}-{}", rep.spread.0, rep.spread.1)
            } else {
                "-".into()
            },
            r.ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}x")),
        );
    }
}
