//! `dlm-chaos`: the fault-injection suite of issue 15. It starts a dlm
//! cluster (3 or 5 `dlm-server` members with data directories, each
//! reaching the others through proxies it controls), runs lock and
//! key/value clients against it (its own, and through the `dlm` Rust crate
//! and the Python package) while a nemesis kills, pauses, partitions and
//! delays members, jumps their wall and monotonic clocks, stalls the
//! latter, and removes and adds members back (`dlm cluster remove/add`),
//! on a schedule drawn from a printed seed (every kind at least once per
//! run), then checks
//! the history: mutual exclusion at a fenced resource, linearizability of
//! the key/value operations (porcupine), calls within their timeouts, and
//! that the cluster serves again once the faults stop.
//!
//! ```text
//! dlm-chaos [--seed N] [--duration SECS] [--nodes 3|5] [--lock-clients N]
//!           [--kv-clients N] [--ttl-ms MS] [--faults LIST] [--memory]
//!           [--out DIR] [--keep] [--server PATH] [--porcupine PATH]
//!           [--cli PATH] [--binding-clients N] [--python PATH]
//! ```
//!
//! Besides its own protocol clients (`--lock-clients`, `--kv-clients`),
//! `--binding-clients N` lock and N key/value clients run through the `dlm`
//! Rust crate, and as many through the Python package if `--python` names
//! an interpreter that has it (scripts/chaos.sh passes the virtualenv
//! scripts/test-python.sh builds).
//!
//! ```text
//! ```
//!
//! Exit status 0: every checker passed; 1: a checker failed (the seed, the
//! replay command and the kept history are printed); 2: the run could not
//! be made (bad arguments, a member that would not start).

// A std test binary: the workspace's no_std lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use dlm_tests::chaos::client::{self, Conn, KEYS, LOCK_NAMES, Resource, Shared};
use dlm_tests::chaos::history::{Clock, Fault, History, KvInput, LeaderSample, copy, push};
use dlm_tests::chaos::members::{Members, Setup};
use dlm_tests::chaos::proxy::{Link, Net};
use dlm_tests::chaos::rng::Rng;
use dlm_tests::chaos::{bindings, kv, locks, shim, timeline};

/// Every kind of fault the nemesis knows.
const ALL_FAULTS: [&str; 10] = [
    "kill-leader",
    "kill-follower",
    "pause-leader",
    "isolate-leader",
    "split",
    "one-way",
    "delay",
    "clock",
    "monotonic",
    "member-change",
];

#[derive(Clone, Debug)]
struct Args {
    seed: u64,
    duration: Duration,
    nodes: u64,
    lock_clients: u64,
    kv_clients: u64,
    ttl: Duration,
    faults: Vec<String>,
    durable: bool,
    single: bool,
    out: Option<PathBuf>,
    keep: bool,
    server: Option<PathBuf>,
    porcupine: Option<PathBuf>,
    cli: Option<PathBuf>,
    binding_clients: u64,
    python: Option<PathBuf>,
}

fn usage() -> String {
    format!(
        "usage: dlm-chaos [--seed N] [--duration SECS] [--nodes 3|5] [--lock-clients N] \
         [--kv-clients N] [--ttl-ms MS] [--faults {}] [--memory] [--single] [--out DIR] [--keep] \
         [--server PATH] [--porcupine PATH] [--cli PATH] [--binding-clients N] \
         [--python PATH]",
        ALL_FAULTS.join(",")
    )
}

fn parse_args() -> Result<Args, String> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| {
            u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
        });
    let mut a = Args {
        seed,
        duration: Duration::from_secs(60),
        nodes: 3,
        lock_clients: 6,
        kv_clients: 4,
        ttl: Duration::from_secs(1),
        faults: ALL_FAULTS.iter().map(|s| (*s).to_owned()).collect(),
        durable: true,
        single: false,
        out: None,
        keep: false,
        server: None,
        porcupine: None,
        cli: None,
        binding_clients: 1,
        python: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
        match flag.as_str() {
            "--seed" => a.seed = num(value("--seed")?)?,
            "--duration" => a.duration = Duration::from_secs(num(value("--duration")?)?),
            "--nodes" => a.nodes = num(value("--nodes")?)?,
            "--lock-clients" => a.lock_clients = num(value("--lock-clients")?)?,
            "--kv-clients" => a.kv_clients = num(value("--kv-clients")?)?,
            "--ttl-ms" => a.ttl = Duration::from_millis(num(value("--ttl-ms")?)?),
            "--faults" => {
                a.faults = value("--faults")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                for f in &a.faults {
                    if !ALL_FAULTS.contains(&f.as_str()) {
                        return Err(format!(
                            "unknown fault {f}; known: {}",
                            ALL_FAULTS.join(",")
                        ));
                    }
                }
            }
            "--memory" => a.durable = false,
            "--single" => a.single = true,
            "--out" => a.out = Some(PathBuf::from(value("--out")?)),
            "--keep" => a.keep = true,
            "--server" => a.server = Some(PathBuf::from(value("--server")?)),
            "--porcupine" => a.porcupine = Some(PathBuf::from(value("--porcupine")?)),
            "--cli" => a.cli = Some(PathBuf::from(value("--cli")?)),
            "--binding-clients" => a.binding_clients = num(value("--binding-clients")?)?,
            "--python" => a.python = Some(PathBuf::from(value("--python")?)),
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    if !(1..=9).contains(&a.nodes) {
        return Err("--nodes must be 1 to 9".into());
    }
    if a.single {
        // One plain server: nothing to partition, no membership.
        a.nodes = 1;
    }
    if a.nodes < 3 {
        // Removing one of two members leaves no quorum to add it back.
        a.faults.retain(|f| f != "member-change");
    }
    if !a.durable {
        // A member killed in memory comes back empty and must rejoin;
        // the nemesis keeps to faults a member survives in memory.
        a.faults.retain(|f| !f.starts_with("kill"));
    }
    Ok(a)
}

/// The command that replays this run.
fn replay(a: &Args) -> String {
    let mut s = format!(
        "cargo run --release -p dlm-tests --bin dlm-chaos -- --seed {} --duration {} --nodes {} \
         --lock-clients {} --kv-clients {} --binding-clients {} --ttl-ms {} --faults {}",
        a.seed,
        a.duration.as_secs(),
        a.nodes,
        a.lock_clients,
        a.kv_clients,
        a.binding_clients,
        a.ttl.as_millis(),
        a.faults.join(",")
    );
    if !a.durable {
        s.push_str(" --memory");
    }
    if a.single {
        s.push_str(" --single");
    }
    if let Some(p) = &a.python {
        let _ = write!(s, " --python {}", p.display());
    }
    s
}

/// What ran: "3 members, durable", "one plain server, in memory".
fn shape(a: &Args) -> String {
    let kind = if a.durable { "durable" } else { "in memory" };
    if a.single {
        format!("one plain server, {kind}")
    } else {
        format!("{} members, {kind}", a.nodes)
    }
}

/// The directory of this binary (`target/<profile>`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("dlm-chaos: {e}");
            eprintln!("replay: {}", replay(&args));
            ExitCode::from(2)
        }
    }
}

/// What the nemesis counted.
#[derive(Debug, Default)]
struct Counts {
    kills: u64,
    tails_cut: u64,
    pauses: u64,
    partitions: u64,
    clock_jumps: u64,
    member_changes: u64,
    monotonic_jumps: u64,
    monotonic_stalls: u64,
}

fn run(args: &Args) -> Result<bool, String> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("dlm-chaos-{}", args.seed)));
    // Absolute: the shim records the files members sync by absolute path,
    // and the tail cut matches them against the data directories.
    let out = std::path::absolute(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "dlm-chaos: seed {} ({} s, {}), output in {}",
        args.seed,
        args.duration.as_secs(),
        shape(args),
        out.display()
    );
    println!("replay: {}", replay(args));

    let bin_dir = target_dir();
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| bin_dir.join("dlm-server"));
    if !server.exists() {
        return Err(format!(
            "{} is missing: cargo build -p dlm-server first (or --server PATH)",
            server.display()
        ));
    }
    let porcupine = match &args.porcupine {
        Some(p) => p.clone(),
        None => {
            let p = bin_dir.join("porcupine-check");
            kv::build(&p)?;
            p
        }
    };
    let cli = args
        .cli
        .clone()
        .or_else(|| Some(bin_dir.join("dlm")))
        .filter(|p| p.exists());
    if cli.is_none() && args.faults.iter().any(|f| f == "member-change") {
        eprintln!(
            "dlm-chaos: no dlm command (cargo build -p dlm-cli, or --cli PATH): no membership changes"
        );
    }
    let preload = match shim::build(&bin_dir.join("libdlm-chaos-shim.so")) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("dlm-chaos: no fault shim ({e}): no tail cuts, no clock jumps");
            None
        }
    };

    let net = Arc::new(Net::default());
    let setup = Setup {
        server,
        dir: out.clone(),
        durable: args.durable,
        preload: preload.clone(),
        single: args.single,
    };
    let members = Members::start(args.nodes, setup, &net).map_err(|e| e.to_string())?;
    let addrs = members.client_addrs();
    let members = Arc::new(Mutex::new(members));
    let clock = Clock::start();
    let history = Arc::new(History::default());

    // The cluster must serve before the clients start (its first leader).
    let probe_stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        clock,
        history: Arc::clone(&history),
        stop: Arc::clone(&probe_stop),
        addrs: addrs.clone(),
        resource: Arc::new(Resource::default()),
        ttl: args.ttl,
        seed: args.seed,
    });
    if wait_serving(&shared, Duration::from_secs(30)).is_none() {
        lock(&members).stop_all();
        return Err(format!(
            "the cluster never served (logs in {})",
            out.display()
        ));
    }

    // The leader monitor.
    let monitor_stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let members = Arc::clone(&members);
        let history = Arc::clone(&history);
        let stop = Arc::clone(&monitor_stop);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let snapshot: Vec<(u64, std::net::SocketAddr, bool)> = {
                    let m = lock(&members);
                    m.members
                        .values()
                        .map(|x| {
                            (
                                x.id,
                                std::net::SocketAddr::from(([127, 0, 0, 1], x.client_port)),
                                m.running(x.id) && !x.paused,
                            )
                        })
                        .collect()
                };
                let mut votes = std::collections::BTreeMap::<u64, usize>::new();
                for (_, addr, up) in snapshot {
                    if up
                        && let Some((l, _)) =
                            dlm_tests::chaos::members::status_at(addr, Duration::from_millis(200))
                        && l != 0
                    {
                        *votes.entry(l).or_default() += 1;
                    }
                }
                let leader = votes
                    .into_iter()
                    .max_by_key(|(_, n)| *n)
                    .map_or(0, |(l, _)| l);
                push(
                    &history.leaders,
                    LeaderSample {
                        at: clock.now(),
                        leader,
                    },
                );
                thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // The clients.
    let mut threads = Vec::new();
    for c in 0..args.lock_clients {
        let s = Arc::clone(&shared);
        threads.push(thread::spawn(move || client::lock_client(&s, c)));
    }
    for c in 0..args.kv_clients {
        let s = Arc::clone(&shared);
        let id = args.lock_clients + c;
        threads.push(thread::spawn(move || client::kv_client(&s, id)));
    }
    {
        let s = Arc::clone(&shared);
        threads.push(thread::spawn(move || client::monitor_client(&s)));
    }
    // Through the bindings: client numbers from 100 (Rust crate) and 200
    // (Python) up, so histories name them apart.
    for c in 0..args.binding_clients {
        let s = Arc::clone(&shared);
        threads.push(thread::spawn(move || {
            bindings::rust_lock_client(&s, 100 + c);
        }));
        let s = Arc::clone(&shared);
        threads.push(thread::spawn(move || bindings::rust_kv_client(&s, 150 + c)));
        if let Some(py) = &args.python {
            for (role, id) in [("lock", 200 + c), ("kv", 250 + c)] {
                let s = Arc::clone(&shared);
                let py = py.clone();
                threads.push(thread::spawn(move || {
                    if let Err(e) = bindings::python_client(&s, &py, role, id) {
                        eprintln!("dlm-chaos: Python {role} client {id}: {e}");
                        *s.history
                            .binding_failures
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) += 1;
                    }
                }));
            }
        }
    }

    // The nemesis, on this thread.
    let mut counts = Counts::default();
    let started = Instant::now();
    let tools = Tools {
        shim: preload.is_some(),
        cli,
    };
    nemesis(args, &members, &net, &history, clock, &mut counts, &tools);
    let nemesis_end = clock.now();

    // Heal everything, bring every member back, and time the recovery.
    net.heal();
    {
        let mut m = lock(&members);
        let ids: Vec<u64> = m.members.keys().copied().collect();
        for id in ids {
            if !m.running(id) {
                m.boot(id).map_err(|e| e.to_string())?;
            }
            m.signal(id, libc::SIGCONT);
        }
    }
    shim::reset_clocks(&lock(&members));
    let recovered = wait_serving(&shared, Duration::from_secs(30));
    // Let the clients run a little on the healed cluster, then stop them.
    thread::sleep(Duration::from_secs(2));
    probe_stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    // Final reads: what every key holds now (acknowledged writes lost
    // would show here as a read no linearization explains).
    {
        let mut conn = Conn::new(addrs.clone(), 0);
        for key in KEYS {
            for _ in 0..10 {
                if client::kv_call(&mut conn, &shared, 999, key, &KvInput::Get).is_some_and(|o| {
                    matches!(o, dlm_tests::chaos::history::KvOutput::Answer { .. })
                }) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let end = clock.now();
    monitor_stop.store(true, Ordering::SeqCst);
    let _ = monitor.join();
    lock(&members).stop_all();
    net.shutdown();
    let wall = started.elapsed();

    // The checkers.
    let kv_ops = copy(&history.kv);
    let grants = copy(&history.grants);
    let writes = copy(&history.writes);
    let faults = copy(&history.faults);
    let leaders = copy(&history.leaders);
    let kv_json = kv::history_json(&kv_ops, &faults, &grants);
    let hist_path = out.join("kv-history.json");
    std::fs::write(&hist_path, kv_json.to_string()).map_err(|e| e.to_string())?;
    let locks_json = serde_json::json!({
        "grants": grants.iter().map(dlm_tests::chaos::history::Grant::to_json).collect::<Vec<_>>(),
        "writes": writes.iter().map(dlm_tests::chaos::history::Write::to_json).collect::<Vec<_>>(),
        "faults": faults.iter().map(Fault::to_json).collect::<Vec<_>>(),
    });
    std::fs::write(out.join("lock-history.json"), locks_json.to_string())
        .map_err(|e| e.to_string())?;
    let lock_verdict = locks::check(&grants, &writes);
    let kv_verdict = kv::check(&porcupine, &hist_path, &out.join("kv-timeline.html"));
    let gaps = timeline::unavailability(&kv_ops, 0, nemesis_end);
    std::fs::write(
        out.join("timeline.svg"),
        timeline::svg(end, &faults, &leaders, &gaps, &grants, &LOCK_NAMES),
    )
    .map_err(|e| e.to_string())?;

    let unknown_kv = kv_ops
        .iter()
        .filter(|o| o.output == dlm_tests::chaos::history::KvOutput::Unknown)
        .count();
    let overrun = history
        .overrun
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let longest_gap = gaps.iter().map(|(a, b)| b - a).max().unwrap_or(0);
    let leaders_seen = {
        let mut l: Vec<u64> = leaders
            .iter()
            .map(|s| s.leader)
            .filter(|l| *l != 0)
            .collect();
        l.dedup();
        l.len().saturating_sub(1)
    };
    let unknown_locks = *history
        .unknown_locks
        .lock()
        .unwrap_or_else(PoisonError::into_inner);

    let kv_ok = matches!(kv_verdict, kv::Verdict::Ok { .. });
    let recovered_ok = recovered.is_some();
    let timeouts_ok = overrun.is_none();
    let binding_failures = *history
        .binding_failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let ok = kv_ok && lock_verdict.ok() && recovered_ok && timeouts_ok && binding_failures == 0;

    let mut summary = String::new();
    {
        let s = &mut summary;
        let _ = writeln!(
            s,
            "seed {}  duration {:.1}s  {}",
            args.seed,
            wall.as_secs_f64(),
            shape(args)
        );
        let _ = writeln!(
            s,
            "operations: {} key/value ({} indeterminate), {} lock grants ({} lock calls unanswered), {} resource writes accepted",
            kv_ops.len(),
            unknown_kv,
            grants.len(),
            unknown_locks,
            lock_verdict.writes
        );
        let family = |c: u64| match c {
            100..=199 => 1,
            200..=299 => 2,
            _ => 0,
        };
        let mut by = [[0usize; 2]; 3];
        for o in &kv_ops {
            by[family(o.client)][0] += 1;
        }
        for g in &grants {
            by[family(g.client)][1] += 1;
        }
        let _ = writeln!(
            s,
            "by client: protocol {} key/value, {} grants; Rust crate {} key/value, {} grants; Python package {} key/value, {} grants{}",
            by[0][0],
            by[0][1],
            by[1][0],
            by[1][1],
            by[2][0],
            by[2][1],
            if args.python.is_none() {
                " (no --python: none)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "faults: {} total: {} kills ({} data-dir tails cut), {} pauses, {} partitions/delays, {} wall-clock jumps, {} monotonic-clock jumps, {} monotonic-clock stalls, {} membership changes (remove, add back empty)",
            faults.len(),
            counts.kills,
            counts.tails_cut,
            counts.pauses,
            counts.partitions,
            counts.clock_jumps,
            counts.monotonic_jumps,
            counts.monotonic_stalls,
            counts.member_changes
        );
        let _ = writeln!(
            s,
            "leader changes seen: {leaders_seen}; longest time without a successful key/value operation: {:.2}s",
            longest_gap as f64 / 1e9
        );
        let _ = writeln!(
            s,
            "checker mutual-exclusion (fenced resource, {} grants): {}",
            lock_verdict.grants,
            if lock_verdict.ok() {
                "ok".to_owned()
            } else {
                format!("FAILED\n  {}", lock_verdict.violations.join("\n  "))
            }
        );
        let _ = writeln!(
            s,
            "checker linearizability (porcupine): {}",
            match &kv_verdict {
                kv::Verdict::Ok { ops } => format!("ok ({ops} operations)"),
                kv::Verdict::Illegal {
                    key,
                    counterexample,
                } => format!("FAILED on key {key}\n  {}", counterexample.join("\n  ")),
                kv::Verdict::Unknown(why) => format!("UNDECIDED: {why}"),
            }
        );
        let _ = writeln!(
            s,
            "checker calls within their timeouts: {}",
            match &overrun {
                None => "ok".to_owned(),
                Some((d, what)) =>
                    format!("FAILED: a {what} call overran by {:.2}s", *d as f64 / 1e9),
            }
        );
        let _ = writeln!(
            s,
            "checker recovered after the faults: {}",
            match recovered {
                Some(d) => format!("ok (served {:.2}s after healing)", d.as_secs_f64()),
                None => "FAILED: no successful operation within 30 s of healing".to_owned(),
            }
        );
        if binding_failures > 0 {
            let _ = writeln!(
                s,
                "checker binding clients ran: FAILED: {binding_failures} Python worker(s) could not run"
            );
        }
        let _ = writeln!(s, "verdict: {}", if ok { "PASS" } else { "FAIL" });
    }
    print!("{summary}");
    let _ = std::fs::write(out.join("summary.txt"), &summary);
    if ok {
        if args.keep || args.out.is_some() {
            println!("history, logs and timeline kept in {}", out.display());
        } else {
            let _ = std::fs::remove_dir_all(&out);
        }
    } else {
        println!(
            "FAILED: seed {}; history, member logs, timeline.svg and kv-timeline.html in {}",
            args.seed,
            out.display()
        );
        println!("replay: {}", replay(args));
    }
    Ok(ok)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits until a Put succeeds through any member; how long it took.
fn wait_serving(shared: &Shared, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut conn = Conn::new(shared.addrs.clone(), 0);
    while start.elapsed() < within {
        let req = serde_json::json!({"Action":"Put","FileName":"probe","ID":"probe",
                                     "Expire":60,"DataStore":"x"});
        if let client::Outcome::Answer(v) = conn.call(&req, Duration::from_secs(1))
            && v["Status"] == "Done"
        {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// What the nemesis has to inject faults with.
struct Tools {
    /// The fault shim is under every member (tail cuts, clock faults).
    shim: bool,
    /// The `dlm` command (membership changes).
    cli: Option<PathBuf>,
}

/// The nemesis: one fault at a time, drawn from the seed, until the
/// duration is spent.
fn nemesis(
    args: &Args,
    members: &Arc<Mutex<Members>>,
    net: &Arc<Net>,
    history: &History,
    clock: Clock,
    counts: &mut Counts,
    tools: &Tools,
) {
    let shim = tools.shim;
    let mut rng = Rng::fork(args.seed, 1);
    let deadline = Instant::now() + args.duration;
    let ids: Vec<u64> = (1..=args.nodes).collect();
    let faults: Vec<&str> = args
        .faults
        .iter()
        .map(String::as_str)
        .filter(|f| shim || (*f != "clock" && *f != "monotonic"))
        .filter(|f| tools.cli.is_some() || *f != "member-change")
        .collect();
    if faults.is_empty() {
        thread::sleep(args.duration);
        return;
    }
    let ttl_ms = u64::try_from(args.ttl.as_millis()).unwrap_or(1000);
    // Every kind once first (in an order drawn from the seed), so that a
    // short run meets each; then kinds at random.
    let mut first_round = faults.clone();
    for i in (1..first_round.len()).rev() {
        let j = usize::try_from(rng.range(0, i as u64 + 1)).unwrap_or(0);
        first_round.swap(i, j);
    }
    first_round.reverse();
    // The first round always completes (a run longer than asked, if
    // need be), so that every kind was injected at least once.
    while Instant::now() < deadline || !first_round.is_empty() {
        thread::sleep(Duration::from_millis(rng.range(300, 1500)));
        if Instant::now() >= deadline && first_round.is_empty() {
            break;
        }
        let kind = match first_round.pop() {
            Some(k) => k,
            None => *rng.pick(&faults),
        };
        let leader = {
            let l = lock(members).leader();
            if l == 0 { *rng.pick(&ids) } else { l }
        };
        let others: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
        let start = clock.now();
        let hold = Duration::from_millis(rng.range(500, 4000));
        let (family, detail) = match kind {
            "kill-leader" | "kill-follower" => {
                let victim = if kind == "kill-leader" || others.is_empty() {
                    leader
                } else {
                    *rng.pick(&others)
                };
                lock(members).kill(victim);
                counts.kills += 1;
                let mut detail = format!(
                    "SIGKILL member {victim} ({})",
                    if victim == leader {
                        "leader"
                    } else {
                        "follower"
                    }
                );
                if shim && args.durable && rng.chance(50) {
                    let dir = lock(members).data_dir(victim).map(Path::to_path_buf);
                    if let Some(dir) = dir {
                        match shim::cut_unsynced_tail(&dir, &mut rng) {
                            Ok(cut) => {
                                if cut > 0 {
                                    counts.tails_cut += 1;
                                }
                                let _ = write!(detail, ", tail cut {cut} bytes past its last sync");
                            }
                            Err(e) => {
                                let _ = write!(detail, ", tail cut failed: {e}");
                            }
                        }
                    }
                }
                thread::sleep(hold);
                if let Err(e) = lock(members).boot(victim) {
                    let _ = write!(detail, ", restart failed: {e}");
                }
                let _ = write!(detail, ", restarted after {} ms", hold.as_millis());
                ("kill", detail)
            }
            "pause-leader" => {
                // Longer than a lock's TTL: the paused leader wakes up to
                // a cluster that moved on.
                let pause = Duration::from_millis(rng.range(ttl_ms * 3 / 2, ttl_ms * 3));
                lock(members).signal(leader, libc::SIGSTOP);
                counts.pauses += 1;
                thread::sleep(pause);
                lock(members).signal(leader, libc::SIGCONT);
                (
                    "pause",
                    format!("SIGSTOP leader {leader} for {} ms", pause.as_millis()),
                )
            }
            "isolate-leader" | "split" | "one-way" | "delay" => {
                counts.partitions += 1;
                let how = if rng.chance(50) {
                    Link::Stall
                } else {
                    Link::Reset
                };
                let detail = match kind {
                    "isolate-leader" => {
                        for o in &others {
                            net.set_both(leader, *o, how);
                        }
                        format!("leader {leader} isolated ({how:?})")
                    }
                    "split" => {
                        let mut shuffled = ids.clone();
                        for i in (1..shuffled.len()).rev() {
                            let j = usize::try_from(rng.range(0, i as u64 + 1)).unwrap_or(0);
                            shuffled.swap(i, j);
                        }
                        let minority = shuffled.len() / 2;
                        let (a, b) = shuffled.split_at(minority.max(1));
                        for x in a {
                            for y in b {
                                net.set_both(*x, *y, how);
                            }
                        }
                        format!("split {a:?} | {b:?} ({how:?})")
                    }
                    "one-way" => {
                        let outgoing = rng.chance(50);
                        for o in &others {
                            if outgoing {
                                net.set(leader, *o, Link::Stall);
                            } else {
                                net.set(*o, leader, Link::Stall);
                            }
                        }
                        if outgoing {
                            format!("leader {leader} cannot send (receives)")
                        } else {
                            format!("leader {leader} cannot receive (sends)")
                        }
                    }
                    _ => {
                        let d = Duration::from_millis(rng.range(20, 300));
                        for a in &ids {
                            for b in &ids {
                                if a != b {
                                    net.set(*a, *b, Link::Delay(d));
                                }
                            }
                        }
                        format!("every link delayed {} ms", d.as_millis())
                    }
                };
                thread::sleep(hold);
                net.heal();
                ("partition", format!("{detail} for {} ms", hold.as_millis()))
            }
            "clock" => {
                let victim = *rng.pick(&ids);
                let secs = i64::try_from(rng.range(60, 86_400)).unwrap_or(60);
                let jump = if rng.chance(70) { secs } else { -secs };
                let dir = lock(members).data_dir(victim).map(Path::to_path_buf);
                counts.clock_jumps += 1;
                let res = dir.map(|d| shim::jump_clock(&d, jump));
                (
                    "clock",
                    format!(
                        "member {victim}'s wall clock jumps {jump:+} s{}",
                        match res {
                            Some(Err(e)) => format!(" (failed: {e})"),
                            _ => String::new(),
                        }
                    ),
                )
            }
            "monotonic" => {
                // The leader's clock most often: it stamps the cluster's
                // time, by which every lock expires.
                let victim = if rng.chance(70) {
                    leader
                } else {
                    *rng.pick(&ids)
                };
                let dir = lock(members).data_dir(victim).map(Path::to_path_buf);
                let role = if victim == leader {
                    "leader"
                } else {
                    "follower"
                };
                if rng.chance(60) {
                    // Half the time by less than the 20 ticks (400 ms) a
                    // turn catches up (a leader that believed its clock
                    // would end leases early by that much and keep
                    // leading), half the time by many TTLs (its ticks also
                    // jump: it steps down).
                    let ms = if rng.chance(50) {
                        rng.range(50, 350)
                    } else {
                        rng.range(ttl_ms * 2, ttl_ms * 30)
                    };
                    counts.monotonic_jumps += 1;
                    let res = dir.map(|d| {
                        shim::jump_monotonic(&d, i64::try_from(ms).unwrap_or(0) * 1_000_000)
                    });
                    (
                        "monotonic",
                        format!(
                            "member {victim}'s ({role}) monotonic clock jumps {ms} ms forward{}",
                            match res {
                                Some(Err(e)) => format!(" (failed: {e})"),
                                _ => String::new(),
                            }
                        ),
                    )
                } else {
                    let stall = Duration::from_millis(rng.range(ttl_ms / 2, ttl_ms * 3));
                    counts.monotonic_stalls += 1;
                    let detail = match dir {
                        Some(d) => match shim::stall_monotonic(&d) {
                            Ok(since) => {
                                thread::sleep(stall);
                                match shim::end_stall(&d, since) {
                                    Ok(()) => String::new(),
                                    Err(e) => format!(" (resume failed: {e})"),
                                }
                            }
                            Err(e) => format!(" (failed: {e})"),
                        },
                        None => String::new(),
                    };
                    (
                        "monotonic",
                        format!(
                            "member {victim}'s ({role}) monotonic clock stalls for {} ms{detail}",
                            stall.as_millis()
                        ),
                    )
                }
            }
            "member-change" => {
                // A follower most often; the leader now and then (it
                // hands over once its removal commits).
                let victim = if rng.chance(25) || others.is_empty() {
                    leader
                } else {
                    *rng.pick(&others)
                };
                counts.member_changes += 1;
                let Some(cli) = tools.cli.as_deref() else {
                    continue;
                };
                let role = if victim == leader {
                    "leader"
                } else {
                    "follower"
                };
                let res = lock(members).remove_and_add(victim, cli);
                (
                    "membership",
                    match res {
                        Ok(done) => format!("member {victim} ({role}): {done}"),
                        Err(e) => format!("member {victim} ({role}): FAILED: {e}"),
                    },
                )
            }
            _ => continue,
        };
        push(
            &history.faults,
            Fault {
                kind: family.to_owned(),
                detail: detail.clone(),
                start,
                end: clock.now(),
            },
        );
        println!("nemesis {:7.2}s {family}: {detail}", start as f64 / 1e9);
    }
}
