//! `dlm-bench cluster`: 3-node dlm clusters (durable with `--data-dir`, and
//! in memory) and a single dlm-server side by side with a 3-member etcd
//! cluster on this machine, in one run (issue 13, "How to prove it").
//!
//! Throughput: closed-loop Lock+Unlock and Put+Get over persistent
//! connections at each client count, the targets alternating. dlm runs the
//! suite's workload code; etcd runs `etcd-bench load` (bench/etcd/), locks
//! through etcd's concurrency session and mutex, one session per client.
//! Client `i` talks to member `i mod 3` on both systems (`--one-member`:
//! all to the first): clients that do not know the leader, spread evenly,
//! so two in three pay a follower's relay to the leader, in dlm as in etcd.
//!
//! Failover: see [`crate::failover`]. The fsync latency of the disk the
//! data directories are on is probed before, between and after, since
//! every durable figure depends on it.
//!
//! A dlm-server without `--node`/`--peers` (`--data-dir`) gets each dlm
//! cluster stood in for by three independent single servers, marked
//! "(stand-in)" everywhere, and no target is judged on them; nor on a
//! `--data-dir` cluster whose data dirs are still empty at the end. A
//! system that fails to start, or a row or failover that fails, is
//! reported as such and the rest of the run goes on.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::etcd::{self, EtcdCluster};
use crate::failover::{self, Failover};
use crate::procs::{self, Member, Ready, check_interrupted};
use crate::proto::Target;
use crate::workload::{self, Report, Run, Workload};

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// etcd, 3 members, its defaults (WAL fsync per commit).
    Etcd,
    /// dlm, 3 nodes, `--data-dir`.
    DlmDurable,
    /// dlm, 3 nodes, replicated in memory.
    DlmMemory,
    /// One dlm-server, no cluster flags.
    DlmSingle,
}

impl System {
    /// Every system, in the order of the first group of rows.
    pub const ALL: [Self; 4] = [
        Self::Etcd,
        Self::DlmDurable,
        Self::DlmMemory,
        Self::DlmSingle,
    ];

    /// The name `--targets` takes.
    pub fn key(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::DlmDurable => "durable",
            Self::DlmMemory => "memory",
            Self::DlmSingle => "single",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Etcd => "etcd 3-node",
            Self::DlmDurable => "dlm 3-node --data-dir",
            Self::DlmMemory => "dlm 3-node memory",
            Self::DlmSingle => "dlm single",
        }
    }
}

/// Settings of a cluster run.
// The bools are the command line's independent switches.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Debug)]
pub struct ClusterBench {
    /// Measured time per row.
    pub duration: Duration,
    /// Client counts.
    pub clients: Vec<usize>,
    /// Leader kills per system (0: no failover part).
    pub kills: usize,
    /// Which systems.
    pub systems: Vec<System>,
    /// The dlm-server binary.
    pub dlm_server: PathBuf,
    /// The etcd server binary.
    pub etcd: PathBuf,
    /// The Go load generator (bench/etcd/).
    pub etcd_bench: PathBuf,
    /// Where the scratch directory (data dirs, logs) goes.
    pub work_dir: PathBuf,
    /// Client `i` on member `i mod 3` (else all on the first).
    pub spread: bool,
    /// Fail instead of standing in for a dlm cluster.
    pub require_cluster: bool,
    /// dlm failover without a leader lookup: a kill whose recovery took at
    /// least this long made the cluster elect.
    pub election_gap: Duration,
    /// The failover clients' wait for an answer before they give up on a
    /// request and send the next (dlm: to the next member).
    pub op_timeout: Duration,
    /// The dlm cluster whose leader is killed (the figure is
    /// [`System::DlmDurable`]'s).
    pub failover_on: System,
    /// Ask dlm for its leader (the `Cluster` action) rather than find it by
    /// killing members in turn.
    pub leader_lookup: bool,
    /// Leave the scratch directory (data dirs, member logs) in place.
    pub keep_work_dir: bool,
}

/// A running dlm cluster (or a single server: one member).
pub struct DlmCluster {
    /// For tables and messages.
    pub label: String,
    /// Its members; member `i` is node `i + 1`.
    pub members: Vec<Member>,
    /// Independent single servers standing in for a cluster.
    pub stand_in: bool,
    /// The members' `--data-dir`s (none in memory).
    pub data_dirs: Vec<PathBuf>,
}

/// Which cluster flags this dlm-server build knows.
#[derive(Clone, Copy, Debug)]
struct Caps {
    peers: bool,
    data_dir: bool,
}

fn capabilities(dlm_server: &Path) -> io::Result<Caps> {
    let out = Command::new(dlm_server)
        .arg("--help")
        .stderr(Stdio::null())
        .output()
        .map_err(|e| io::Error::other(format!("{}: {e}", dlm_server.display())))?;
    let help = String::from_utf8_lossy(&out.stdout);
    Ok(Caps {
        peers: help.contains("--peers") && help.contains("--node"),
        data_dir: help.contains("--data-dir"),
    })
}

/// The suite's server settings (plus `DLM_BENCH_SERVER_ARGS`).
fn common_args() -> Vec<OsString> {
    let mut v: Vec<OsString> = ["--memory-budget", "8GiB", "--max-connections", "10000"]
        .iter()
        .map(OsString::from)
        .collect();
    if let Ok(extra) = std::env::var("DLM_BENCH_SERVER_ARGS") {
        v.extend(extra.split_whitespace().map(OsString::from));
    }
    v
}

impl DlmCluster {
    /// Starts `system`'s servers (data under `dir`) and waits until a
    /// Lock+Unlock succeeds through every member.
    fn start(bin: &Path, dir: &Path, system: System, caps: Caps) -> io::Result<Self> {
        let (n, durable) = match system {
            System::DlmSingle => (1, false),
            System::DlmMemory => (3, false),
            System::DlmDurable => (3, true),
            System::Etcd => return Err(io::Error::other("not a dlm system")),
        };
        let real = n > 1 && caps.peers && (!durable || caps.data_dir);
        let ports = procs::free_ports(2 * n)?;
        let (client_ports, peer_ports) = ports.split_at(n);
        let peers = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let tag = system.key();
        let mut members = Vec::with_capacity(n);
        let mut data_dirs = Vec::new();
        for (i, port) in client_ports.iter().enumerate() {
            let node = i + 1;
            let mut args: Vec<OsString> = Vec::new();
            if real {
                // The command line: --node N --peers ... --data-dir D HOST PORT.
                args.extend(["--node".into(), node.to_string().into()]);
                args.extend(["--peers".into(), peers.clone().into()]);
                if durable {
                    let d = dir.join(format!("dlm-{tag}-n{node}"));
                    args.push("--data-dir".into());
                    args.push(d.clone().into_os_string());
                    data_dirs.push(d);
                }
            }
            args.extend(["127.0.0.1".into(), port.to_string().into()]);
            args.extend(common_args());
            members.push(Member::new(
                format!("dlm {tag} n{node}"),
                ([127, 0, 0, 1], *port).into(),
                bin,
                args,
                Ready::Announces,
                dir.join(format!("dlm-{tag}-n{node}.log")),
            ));
        }
        for m in &mut members {
            m.spawn()?;
        }
        // Members may wait for each other before they accept clients.
        for m in &mut members {
            m.wait_ready(Duration::from_secs(60))?;
        }
        let stand_in = n > 1 && !real;
        let label = if stand_in {
            format!("{} (stand-in)", system.label())
        } else {
            system.label().to_owned()
        };
        let c = Self {
            label,
            members,
            stand_in,
            data_dirs,
        };
        c.wait_serving()?;
        Ok(c)
    }

    fn wait_serving(&self) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for (i, m) in self.members.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !rt.block_on(failover::probe(m.client, i)) {
                check_interrupted()?;
                if Instant::now() > deadline {
                    return Err(m.failed("took no Lock within 60 s"));
                }
                procs::sleep(Duration::from_millis(50))?;
            }
        }
        Ok(())
    }
}

/// fdatasync latency of the disk the data directories are on.
#[derive(Clone, Copy, Debug)]
struct FsyncProbe {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    n: usize,
}

/// Appends 100 bytes and fdatasyncs, 200 times or for 3 s at most.
fn fsync_probe(dir: &Path) -> io::Result<FsyncProbe> {
    let path = dir.join("fsync-probe");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let mut v = Vec::with_capacity(200);
    let end = Instant::now() + Duration::from_secs(3);
    while v.len() < 200 && Instant::now() < end {
        let t = Instant::now();
        f.write_all(&[b'x'; 100])?;
        f.sync_data()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((v.len().saturating_sub(1)) as f64 * p).round() as usize;
        v.get(i).copied().unwrap_or(0.0)
    };
    Ok(FsyncProbe {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: v.last().copied().unwrap_or(0.0),
        n: v.len(),
    })
}

/// One printed row.
struct Row {
    workload: Workload,
    clients: usize,
    system: System,
    label: String,
    /// Why no target is judged on this row (a stand-in, a data dir that
    /// stayed empty).
    unjudged: Option<String>,
    report: Report,
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::Kv => "put+get",
        _ => "lock+unlock",
    }
}

/// A failover run, or why it failed.
type FailoverResult = Result<Failover, String>;

/// Everything that ran, for the tables.
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    /// Systems that failed to start or to finish a row, and why (later
    /// rows skip them).
    failed: Vec<(System, String)>,
    etcd_failover: Option<FailoverResult>,
    /// The dlm cluster's label, why it is not judged, and its failover.
    dlm_failover: Option<(String, Option<String>, FailoverResult)>,
    fsync: Vec<(&'static str, FsyncProbe)>,
    /// Bytes in each `--data-dir` at the end.
    data_dir_bytes: Vec<u64>,
}

impl Results {
    fn broken(&self, s: System) -> bool {
        self.failed.iter().any(|f| f.0 == s)
    }
}

/// An interrupt ends the run; any other failure is kept for the report.
fn keep(e: io::Error) -> io::Result<String> {
    if e.kind() == io::ErrorKind::Interrupted {
        return Err(e);
    }
    Ok(e.to_string())
}

/// Bytes in the files under `path` (0 if it does not exist).
fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

const STAND_IN: &str = "n/a (stand-in, not a cluster)";
const NOT_DURABLE: &str = "n/a (--data-dir stayed empty: not durable)";

impl ClusterBench {
    /// Runs everything, stops everything, prints the tables.
    pub fn run(&self) -> io::Result<()> {
        procs::catch_interrupts();
        let started = Instant::now();
        let progress = |what: &str| {
            eprintln!("[{:>4.0} s] {what}", started.elapsed().as_secs_f64());
        };
        let caps = capabilities(&self.dlm_server)?;
        let wants_cluster = self
            .systems
            .iter()
            .any(|s| matches!(s, System::DlmDurable | System::DlmMemory));
        if wants_cluster && !(caps.peers && caps.data_dir) {
            let msg = format!(
                "{} has no {}: the dlm clusters are stood in for by independent single servers",
                self.dlm_server.display(),
                if caps.peers {
                    "--data-dir"
                } else {
                    "--node/--peers"
                }
            );
            if self.require_cluster {
                return Err(io::Error::other(msg));
            }
            progress(&format!("NOTE: {msg}"));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Declared first, dropped last: every process is gone before it.
        let work = procs::WorkDir::new(&self.work_dir, self.keep_work_dir)?;
        let mut results = Results::default();
        results.fsync.push(("before", fsync_probe(work.path())?));

        let mut etcd = None;
        let mut dlm: Vec<(System, DlmCluster)> = Vec::new();
        for &s in &self.systems {
            progress(&format!("starting {}", s.label()));
            let started = if s == System::Etcd {
                EtcdCluster::start(&self.etcd, &self.etcd_bench, work.path(), 3)
                    .map(|e| etcd = Some(e))
            } else {
                DlmCluster::start(&self.dlm_server, work.path(), s, caps).map(|c| dlm.push((s, c)))
            };
            if let Err(e) = started {
                let e = keep(e)?;
                progress(&format!("FAILED to start {}: {e}", s.label()));
                results.failed.push((s, format!("did not start: {e}")));
            }
        }

        let mut group = 0;
        for &clients in &self.clients {
            for w in [Workload::Uncontended, Workload::Kv] {
                // Alternate which goes first, so none always has the
                // machine fresh (or the disk in the same mood).
                let mut order = self.systems.clone();
                let len = order.len().max(1);
                order.rotate_left(group % len);
                group += 1;
                for s in order {
                    check_interrupted()?;
                    if results.broken(s) {
                        continue;
                    }
                    let measured = if s == System::Etcd {
                        etcd.as_mut().map(|e| {
                            let r = etcd::run_load(
                                &self.etcd_bench,
                                e,
                                w,
                                clients,
                                self.duration,
                                self.spread,
                            );
                            (blame(r, &mut e.members), s.label().to_owned(), None)
                        })
                    } else {
                        dlm.iter_mut().find(|d| d.0 == s).map(|(_, c)| {
                            let r = self.run_dlm(&rt, c, w, clients);
                            let why = c.stand_in.then(|| STAND_IN.to_owned());
                            (blame(r, &mut c.members), c.label.clone(), why)
                        })
                    };
                    let Some((report, label, unjudged)) = measured else {
                        continue;
                    };
                    let report = match report {
                        Ok(r) => r,
                        Err(e) => {
                            let e = keep(e)?;
                            progress(&format!(
                                "FAILED {label}, {}, {clients} clients: {e}",
                                workload_name(w)
                            ));
                            results
                                .failed
                                .push((s, format!("{}, {clients} clients: {e}", workload_name(w))));
                            continue;
                        }
                    };
                    progress(&format!(
                        "{label}, {}, {clients} clients: {:.0} cycles/s, p99 {:.0} us, {} errors",
                        workload_name(w),
                        report.cycles_per_s(),
                        report.p99_us,
                        report.errors
                    ));
                    results.rows.push(Row {
                        workload: w,
                        clients,
                        system: s,
                        label,
                        unjudged,
                        report,
                    });
                }
            }
        }
        results.fsync.push(("between", fsync_probe(work.path())?));

        if self.kills > 0 {
            if let Some(e) = etcd.as_mut().filter(|_| !results.broken(System::Etcd)) {
                progress(&format!("etcd failover, {} kills", self.kills));
                let f = match failover::etcd(
                    &self.etcd_bench,
                    e,
                    self.kills,
                    self.op_timeout,
                    &progress,
                ) {
                    Ok(f) => Ok(f),
                    Err(e) => Err(keep(e)?),
                };
                progress(&failover_line("etcd", &f));
                results.etcd_failover = Some(f);
            }
            let on = self.failover_on;
            if let Some((_, c)) = dlm
                .iter_mut()
                .find(|d| d.0 == on)
                .filter(|_| !results.broken(on))
            {
                // Independent servers never elect: one round shows the
                // mechanics without pretending.
                let max = if c.stand_in {
                    c.members.len()
                } else {
                    self.kills * 3 + 3
                };
                progress(&format!("{} failover, {} kills", c.label, self.kills));
                let f = match failover::dlm(
                    &rt,
                    c,
                    self.kills,
                    max,
                    self.election_gap,
                    self.op_timeout,
                    self.leader_lookup,
                    &progress,
                ) {
                    Ok(f) => Ok(f),
                    Err(e) => Err(keep(e)?),
                };
                progress(&failover_line(&c.label, &f));
                let why = c.stand_in.then(|| STAND_IN.to_owned());
                results.dlm_failover = Some((c.label.clone(), why, f));
            }
            results.fsync.push(("after", fsync_probe(work.path())?));
        }
        // A durable cluster that wrote nothing to its data dirs is not
        // judged as one.
        if let Some((_, c)) = dlm.iter().find(|d| d.0 == System::DlmDurable)
            && !c.stand_in
        {
            results.data_dir_bytes = c.data_dirs.iter().map(|d| dir_bytes(d)).collect();
            if results.data_dir_bytes.contains(&0) {
                progress(&format!("NOTE: {}: {NOT_DURABLE}", c.label));
                for r in &mut results.rows {
                    if r.system == System::DlmDurable {
                        r.unjudged.get_or_insert_with(|| NOT_DURABLE.to_owned());
                    }
                }
                if let Some((label, why, _)) = &mut results.dlm_failover
                    && *label == c.label
                {
                    why.get_or_insert_with(|| NOT_DURABLE.to_owned());
                }
            }
        }
        drop(dlm);
        drop(etcd);
        drop(work);

        print_rows(&results.rows);
        print_failures(&results);
        print_failover(&results);
        print_fsync(&results.fsync);
        print_targets(&results);
        print_reference(&results);
        println!();
        println!(
            "cluster benchmark took {:.0} s; clients {}; failover clients give up on a request after {} ms; dlm-server {}",
            started.elapsed().as_secs_f64(),
            if self.spread {
                "spread over the members (client i on member i mod 3)"
            } else {
                "all on the first member"
            },
            self.op_timeout.as_millis(),
            self.dlm_server.display()
        );
        Ok(())
    }

    fn run_dlm(
        &self,
        rt: &Runtime,
        c: &DlmCluster,
        workload: Workload,
        clients: usize,
    ) -> io::Result<Report> {
        let servers: Vec<_> = c
            .members
            .iter()
            .take(if self.spread { c.members.len() } else { 1 })
            .map(|m| (m.client, m.pid()))
            .collect();
        rt.block_on(workload::run_on(
            Run {
                target: Target::Dlm,
                addr: servers[0].0,
                pid: servers[0].1,
                workload,
                clients,
                pipeline: 1,
                duration: self.duration,
                tls: None,
                permits: Run::PERMITS,
                read_percent: Run::READ_PERCENT,
            },
            &servers,
        ))
    }
}

/// A failed measurement is reported as the member that died, if one did
/// (with the end of its log), rather than as the client's broken pipe.
fn blame<T>(r: io::Result<T>, members: &mut [Member]) -> io::Result<T> {
    let e = match r {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    for m in members {
        if let Err(dead) = m.check_running() {
            return Err(io::Error::other(format!("{e}: {dead}")));
        }
    }
    Err(e)
}

fn failover_line(label: &str, f: &FailoverResult) -> String {
    let f = match f {
        Ok(f) => f,
        Err(e) => return format!("FAILED {label} failover: {e}"),
    };
    match f.percentiles_ms() {
        Some((p50, p99, max)) => format!(
            "{label} failover: {} election kills, p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; {} other kills, {} without recovery",
            f.elections.len(),
            f.others.len(),
            f.timeouts
        ),
        None => format!(
            "{label} failover: no kill made it elect ({} other kills, {} without recovery)",
            f.others.len(),
            f.timeouts
        ),
    }
}

fn find(rows: &[Row], w: Workload, clients: usize, s: System) -> Option<&Row> {
    rows.iter()
        .find(|r| r.workload == w && r.clients == clients && r.system == s)
}

fn print_rows(rows: &[Row]) {
    println!(
        "| workload | clients | target | ops/s | cycles/s | p50 us | p99 us | max us | errors | server CPU us/op | loadgen CPU us/op | server RSS MiB | dlm/etcd |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let rep = &r.report;
        let ratio = match (r.system, find(rows, r.workload, r.clients, System::Etcd)) {
            (System::Etcd, _) | (_, None) => "-".to_owned(),
            (_, Some(e)) => format!(
                "{:.1}x",
                rep.cycles_per_s() / e.report.cycles_per_s().max(1e-9)
            ),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {ratio} |",
            workload_name(r.workload),
            r.clients,
            r.label,
            rep.ops_per_s(),
            rep.cycles_per_s(),
            rep.p50_us,
            rep.p99_us,
            rep.max_us,
            rep.errors,
            rep.server_cpu_us,
            rep.loadgen_cpu_us,
            rep.server_rss as f64 / f64::from(1 << 20),
        );
    }
}

fn print_failover(r: &Results) {
    let mut lines = Vec::new();
    if let Some(f) = &r.etcd_failover {
        lines.push(("etcd 3-node (next Put)".to_owned(), f));
    }
    if let Some((label, _, f)) = &r.dlm_failover {
        lines.push((format!("{label} (next Lock)"), f));
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!(
        "| failover | leader kills | p50 ms | p99 ms | max ms | other kills (max ms) | no recovery in 30 s | leader found by | took s |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---|---:|");
    for (label, f) in lines {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                println!(
                    "| {label} | failed: {} | | | | | | | |",
                    // The first line: the member's log tail went to stderr.
                    e.lines().next().unwrap_or_default()
                );
                continue;
            }
        };
        let (p50, p99, max) = f
            .percentiles_ms()
            .map_or(("-".into(), "-".into(), "-".into()), |(a, b, c)| {
                (format!("{a:.0}"), format!("{b:.0}"), format!("{c:.0}"))
            });
        let others = if f.others.is_empty() {
            "0".to_owned()
        } else {
            let m = f.others.iter().max().copied().unwrap_or_default();
            format!("{} ({:.1})", f.others.len(), m.as_secs_f64() * 1e3)
        };
        println!(
            "| {label} | {} | {p50} | {p99} | {max} | {others} | {} | {} | {:.0} |",
            f.elections.len(),
            f.timeouts,
            f.method,
            f.seconds
        );
    }
}

fn print_failures(r: &Results) {
    if r.failed.is_empty() && r.data_dir_bytes.is_empty() {
        return;
    }
    println!();
    for (s, e) in &r.failed {
        // The first line only: the member's log tail went to stderr.
        println!(
            "FAILED {}: {}",
            s.label(),
            e.lines().next().unwrap_or_default()
        );
    }
    if !r.data_dir_bytes.is_empty() {
        let sizes: Vec<String> = r
            .data_dir_bytes
            .iter()
            .enumerate()
            .map(|(i, b)| format!("n{} {:.1} MiB", i + 1, *b as f64 / f64::from(1 << 20)))
            .collect();
        println!("dlm --data-dir contents at the end: {}", sizes.join(", "));
    }
}

fn print_fsync(probes: &[(&str, FsyncProbe)]) {
    println!();
    let parts: Vec<String> = probes
        .iter()
        .map(|(when, p)| {
            format!(
                "{when}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} syncs)",
                p.p50_ms, p.p99_ms, p.max_ms, p.n
            )
        })
        .collect();
    println!(
        "fsync (100-byte append + fdatasync, scratch dir's disk) {}",
        parts.join("; ")
    );
}

/// The targets, each with what this run measured. Targets on a
/// stand-in are shown but not judged.
fn print_targets(r: &Results) {
    // Rows are collected first: no table when nothing can be judged.
    let mut out = String::new();
    let verdict = |ok: bool, unjudged: &Option<String>| match unjudged {
        Some(why) => why.clone(),
        None if ok => "yes".to_owned(),
        None => "no".to_owned(),
    };
    for s in [System::DlmDurable, System::DlmMemory] {
        if let Some((_, e)) = r.failed.iter().find(|f| f.0 == s) {
            let _ = writeln!(
                out,
                "| every {} target | failed: {} | no |",
                s.label(),
                e.lines().next().unwrap_or_default()
            );
        }
    }
    let lock = Workload::Uncontended;
    for clients in [16, 64] {
        let (Some(d), Some(e)) = (
            find(&r.rows, lock, clients, System::DlmDurable),
            find(&r.rows, lock, clients, System::Etcd),
        ) else {
            continue;
        };
        let x = d.report.cycles_per_s() / e.report.cycles_per_s().max(1e-9);
        let _ = writeln!(
            out,
            "| 3-node dlm --data-dir lock+unlock cycles/s >= 10x etcd, {clients} clients | {x:.1}x ({:.0} vs {:.0}) | {} |",
            d.report.cycles_per_s(),
            e.report.cycles_per_s(),
            verdict(x >= 10.0, &d.unjudged)
        );
        let y = d.report.p99_us / e.report.p99_us.max(1e-9);
        let _ = writeln!(
            out,
            "| 3-node dlm --data-dir lock p99 < etcd's / 10, {clients} clients | {:.2} vs {:.2} ms ({y:.3}x) | {} |",
            d.report.p99_us / 1e3,
            e.report.p99_us / 1e3,
            verdict(y < 0.1, &d.unjudged)
        );
    }
    for w in [Workload::Uncontended, Workload::Kv] {
        for clients in [16, 64] {
            let (Some(m), Some(s)) = (
                find(&r.rows, w, clients, System::DlmMemory),
                find(&r.rows, w, clients, System::DlmSingle),
            ) else {
                continue;
            };
            let x = m.report.cycles_per_s() / s.report.cycles_per_s().max(1e-9);
            let _ = writeln!(
                out,
                "| 3-node dlm in memory >= 0.5x single-node dlm, {}, {clients} clients | {x:.2}x ({:.0} vs {:.0}) | {} |",
                workload_name(w),
                m.report.cycles_per_s(),
                s.report.cycles_per_s(),
                verdict(x >= 0.5, &m.unjudged)
            );
        }
    }
    if let Some((label, unjudged, f)) = &r.dlm_failover
        && label.starts_with(System::DlmDurable.label())
    {
        let what = "failover p99 < 500 ms (leader SIGKILL to next Lock, >= 20 kills)";
        let _ = match f {
            Err(e) => writeln!(
                out,
                "| {what} | failed: {} | no |",
                e.lines().next().unwrap_or_default()
            ),
            Ok(f) => match f.percentiles_ms() {
                Some((_, p99, _)) => {
                    let n = f.elections.len();
                    let met = if unjudged.is_none() && n < 20 {
                        "no (fewer than 20 kills)".to_owned()
                    } else {
                        verdict(p99 < 500.0, unjudged)
                    };
                    writeln!(out, "| {what} | {p99:.0} ms over {n} kills | {met} |")
                }
                None => writeln!(
                    out,
                    "| {what} | no kill made it elect | {} |",
                    verdict(false, unjudged)
                ),
            },
        };
    }
    if !out.is_empty() {
        println!();
        println!("| target | measured | met |");
        println!("|---|---|---|");
        print!("{out}");
    }
}

/// etcd as measured here beside the figures the issue quotes for this kind
/// of machine: a check that the comparison stands on a sane etcd.
fn print_reference(r: &Results) {
    let mut lines = Vec::new();
    for clients in [16, 64] {
        if let Some(e) = find(&r.rows, Workload::Uncontended, clients, System::Etcd) {
            lines.push(format!(
                "| lock+unlock cycles/s, {clients} clients | {:.0} | 1.2-1.7k (16-64 clients) |",
                e.report.cycles_per_s()
            ));
            lines.push(format!(
                "| lock p99, {clients} clients | {:.1} ms | 25-75 ms |",
                e.report.p99_us / 1e3
            ));
        }
    }
    if let Some((p50, p99, _)) = r
        .etcd_failover
        .as_ref()
        .and_then(|f| f.as_ref().ok())
        .and_then(Failover::percentiles_ms)
    {
        lines.push(format!(
            "| leader SIGKILL to next Put, p50 / p99 | {:.2} / {:.2} s | 1.7-2.0 s |",
            p50 / 1e3,
            p99 / 1e3
        ));
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!("| etcd (reference) | this run | the issue's figures |");
    println!("|---|---:|---:|");
    for l in lines {
        println!("{l}");
    }
}
