//! The whole comparison in one run: start a private Redis, dlm-server and
//! the floor server on loopback, run every workload at 1, 16 and 64
//! clients against each (alternating), print one table with the dlm/Redis
//! ratio per row, and stop everything.
//!
//! TLS rows: a second dlm-server with `--tls-cert`/`--tls-key` and a second
//! Redis on its `--tls-port`, both presenting the same certificate from a
//! development PKI that `dlm-server tls new` writes into a scratch
//! directory, measured with the same rustls client, right after the
//! plaintext rows of the same workload.

use std::io::{self, BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proto::Target;
use crate::tls::Tls;
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
    /// Client counts that also get TLS rows.
    pub tls_clients: Vec<usize>,
    /// Workloads (at one request in flight) that get TLS rows.
    pub tls_workloads: Vec<Workload>,
    /// Only the TLS rows and the plaintext rows they are compared with
    /// (no floor, pipelined, contended or memory rows).
    pub only_tls: bool,
    /// Client counts of the semaphore and read/write lock rows (more
    /// clients than [`Run::PERMITS`]).
    pub shape_clients: Vec<usize>,
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a development PKI (CA, a certificate for 127.0.0.1) with
/// `dlm-server tls new` into a fresh scratch directory.
fn dev_pki(dlm_server: &PathBuf) -> io::Result<Scratch> {
    let dir = std::env::temp_dir().join(format!("dlm-bench-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let scratch = Scratch(dir);
    let out = Command::new(dlm_server)
        .args(["tls", "new"])
        .arg(&scratch.0)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} tls new failed: {}",
            dlm_server.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(scratch)
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
    start_redis_with(bin, None)
}

/// Starts Redis, on a TLS port only (with the certificate in `pki`) if
/// `pki` is given.
fn start_redis_with(bin: &PathBuf, pki: Option<&Path>) -> io::Result<Proc> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    if let Some(dir) = pki {
        let file = |n: &str| dir.join(n).into_os_string();
        cmd.args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(file("server.pem"))
            .arg("--tls-key-file")
            .arg(file("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(file("ca.pem"))
            .args(["--tls-auth-clients", "no"]);
    } else {
        cmd.args(["--port", &port.to_string()]);
    }
    let child = cmd
        .args(["--bind", "127.0.0.1"])
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
    if w.is_contended() {
        r.acquisitions_per_s()
    } else {
        r.cycles_per_s()
    }
}

impl Suite {
    /// Runs everything and prints the table.
    pub fn run(&self) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let started = Instant::now();
        let pki = dev_pki(&self.dlm_server)?;
        let tls = Tls::from_ca_file(&pki.0.join("ca.pem"))?;
        let redis = start_redis(&self.redis_server)?;
        let dlm = start_dlm(&self.dlm_server)?;
        let redis_tls = start_redis_with(&self.redis_server, Some(&pki.0))?;
        let cert = pki.0.join("server.pem");
        let key = pki.0.join("server.key");
        let dlm_tls = start_dlm_with(
            &self.dlm_server,
            &[
                "--tls-cert",
                &cert.to_string_lossy(),
                "--tls-key",
                &key.to_string_lossy(),
            ],
        )?;
        println!(
            "TLS: dlm {}, redis {}",
            rt.block_on(tls.negotiated(dlm_tls.addr))?,
            rt.block_on(tls.negotiated(redis_tls.addr))?
        );
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
                Target::DlmTls => &dlm_tls,
                Target::RedisTls => &redis_tls,
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
                tls: target.is_tls().then(|| tls.clone()),
                permits: Run::PERMITS,
                read_percent: Run::READ_PERCENT,
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
            let tls_order = if n % 2 == 0 {
                [Target::DlmTls, Target::RedisTls]
            } else {
                [Target::RedisTls, Target::DlmTls]
            };
            let all: &[(Workload, usize)] = &[
                (Workload::Uncontended, 1),
                (Workload::Uncontended, 16),
                (Workload::Kv, 1),
                (Workload::ContendedPoll, 1),
            ];
            let tls_here = self.tls_clients.contains(&clients);
            for &(w, pipeline) in all {
                let tls_row = tls_here && pipeline == 1 && self.tls_workloads.contains(&w);
                if self.only_tls && !tls_row {
                    continue;
                }
                for t in with_baseline(&order) {
                    push(w, clients, pipeline, t, measure(t, w, clients, pipeline)?);
                }
                // The same workload over TLS, right after its plaintext
                // rows (which target (b) compares it with).
                if tls_row {
                    for t in tls_order {
                        push(w, clients, pipeline, t, measure(t, w, clients, pipeline)?);
                    }
                }
                if self.only_tls {
                    continue;
                }
                if w == Workload::Uncontended && pipeline == 1 {
                    for t in [Target::Floor, Target::FloorEpoll] {
                        push(w, clients, pipeline, t, measure(t, w, clients, pipeline)?);
                    }
                    let t = Target::DlmLegacy;
                    push(w, clients, pipeline, t, measure(t, w, clients, pipeline)?);
                }
            }
            if self.only_tls {
                continue;
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
        // Semaphores and read/write locks: dlm's queue against Redis's
        // usual recipes, polled.
        if !self.only_tls {
            for (n, &clients) in self.shape_clients.iter().enumerate() {
                let order = if n % 2 == 0 {
                    [Target::Dlm, Target::Redis]
                } else {
                    [Target::Redis, Target::Dlm]
                };
                for w in [Workload::Semaphore, Workload::RwLock] {
                    for t in with_baseline(&order) {
                        push(w, clients, 1, t, measure(t, w, clients, 1)?);
                    }
                }
            }
        }
        drop((redis, dlm, spinning, floor, floor_epoll, baseline));
        drop((redis_tls, dlm_tls, pki));

        // Ratios: each dlm row against the Redis row of the same workload
        // (contended waits against Redis polling), TLS rows against Redis
        // over TLS.
        let redis = [Target::Redis.name(), Target::RedisTls.name()];
        let base: Vec<(String, usize, usize, &str, f64)> = rows
            .iter()
            .filter(|r| redis.contains(&r.target))
            .map(|r| {
                (
                    r.workload.clone(),
                    r.clients,
                    r.pipeline,
                    r.target,
                    r.headline,
                )
            })
            .collect();
        for r in rows.iter_mut().filter(|r| !redis.contains(&r.target)) {
            let wanted = if r.workload == Workload::ContendedWait.name() {
                Workload::ContendedPoll.name()
            } else {
                r.workload.as_str()
            };
            let against = if r.target == Target::DlmTls.name() {
                Target::RedisTls.name()
            } else {
                Target::Redis.name()
            };
            r.ratio = base
                .iter()
                .find(|b| b.0 == wanted && b.1 == r.clients && b.2 == r.pipeline && b.3 == against)
                .map(|b| r.headline / b.4.max(1e-9));
        }

        if self.only_tls {
            print_table(&rows);
            print_targets(&rows, None);
            println!("suite took {:.0} s", started.elapsed().as_secs_f64());
            return Ok(());
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
        print_shape_table(&rows);
        println!();
        println!(
            "memory, {} live locks (12-char names, 40-char IDs): dlm {dlm_bytes:.1} B/lock, redis {redis_bytes:.1} B/lock, ratio {:.2}",
            self.fill,
            dlm_bytes / redis_bytes.max(1e-9)
        );
        print_targets(&rows, Some(dlm_bytes / redis_bytes.max(1e-9)));
        println!("suite took {:.0} s", started.elapsed().as_secs_f64());
        broken_promises(&rows)
    }
}

/// Fails the run if a semaphore or read/write lock row saw a grant beside
/// more holders than it allows (so that the smoke run in `make test`
/// catches it, not only the table).
fn broken_promises(rows: &[Row]) -> io::Result<()> {
    let broken: Vec<String> = rows
        .iter()
        .filter(|r| r.report.violations > 0)
        .map(|r| {
            format!(
                "{} at {} clients on {}: {} grants beside too many holders",
                r.workload, r.clients, r.target, r.report.violations
            )
        })
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(broken.join("; ")))
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
fn print_targets(rows: &[Row], memory_ratio: Option<f64>) {
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
    if let Some(m) = memory_ratio {
        println!(
            "| memory per live lock <= 0.8x Redis | {m:.2}x | {} |",
            mark(m <= 0.8)
        );
    }
    for w in [Workload::Uncontended, Workload::Kv] {
        for c in [16, 64] {
            ratio_row(
                w.name(),
                c,
                1,
                Target::DlmTls.name(),
                1.2,
                &format!(
                    "TLS: {} cycles/s >= 1.2x Redis over TLS, {c} clients",
                    w.name()
                ),
            );
        }
    }
    for w in [Workload::Uncontended, Workload::Kv] {
        for c in [16, 64] {
            let (Some(t), Some(p)) = (
                find(rows, w.name(), c, 1, Target::DlmTls.name()),
                find(rows, w.name(), c, 1, Target::Dlm.name()),
            ) else {
                continue;
            };
            let ratio = t.report.server_cpu_us / p.report.server_cpu_us.max(1e-9);
            println!(
                "| TLS: dlm server CPU/request <= 1.5x plaintext, {}, {c} clients | {:.2} vs {:.2} us ({ratio:.2}x) | {} |",
                w.name(),
                t.report.server_cpu_us,
                p.report.server_cpu_us,
                mark(ratio <= 1.5)
            );
        }
    }
}

/// The semaphore and read/write lock rows, with what they checked.
fn print_shape_table(rows: &[Row]) {
    println!(
        "semaphore: {} permits; rwlock: {}% reads. dlm clients queue in the server, Redis clients poll its recipe (Lua).",
        Run::PERMITS,
        Run::READ_PERCENT
    );
    println!(
        "| workload | clients | target | acq/s | writes/s | ops/s | p50 us | p99 us | errors | most holders at once | violations | acq/client min-max | dlm/Redis |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    let shapes = [Workload::Semaphore.name(), Workload::RwLock.name()];
    for r in rows
        .iter()
        .filter(|r| shapes.contains(&r.workload.as_str()))
    {
        let rep = &r.report;
        println!(
            "| {} | {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {}-{} | {} |",
            r.workload,
            r.clients,
            r.target,
            rep.acquisitions_per_s(),
            if r.workload == Workload::RwLock.name() {
                format!("{:.0}", rep.writes_per_s())
            } else {
                "-".into()
            },
            rep.ops_per_s(),
            rep.p50_us,
            rep.p99_us,
            rep.errors,
            rep.max_holders,
            rep.violations,
            rep.spread.0,
            rep.spread.1,
            r.ratio.map_or_else(|| "-".into(), |x| format!("{x:.2}x")),
        );
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| workload | clients | in flight | target | ops/s | cycles/s | acq/s | p50 us | p99 us | max us | errors | server CPU us/op | loadgen CPU us/op | server RSS MiB | acq/client min-max | dlm/Redis |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in rows {
        let rep = &r.report;
        let contended = r.workload.starts_with("contended")
            || r.workload == Workload::Semaphore.name()
            || r.workload == Workload::RwLock.name();
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
