//! `dlm-bench`: measures dlm-server side by side with Redis (and a trivial
//! constant-answer server, the floor) on this machine, in one run.
//!
//! ```text
//! dlm-bench suite [--duration S] [--fill N] [--quick]   everything, one table
//! dlm-bench cluster [--duration S] [--kills N] [--quick] 3-node dlm beside etcd
//! dlm-bench floor                                       run the floor server
//! ```
//!
//! `make bench` installs redis-server if needed, builds in release mode and
//! runs the suite; `make bench-cluster` installs etcd and Go's etcd client,
//! builds, and runs `cluster`.

// A std binary: the workspace's no_std lints are for dlm-core.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_precision_loss
)]
// A binary: `pub` marks each module's interface to the others.
#![allow(unreachable_pub)]

mod cluster;
mod epoll_floor;
mod etcd;
mod failover;
mod floor;
mod procs;
mod procstat;
mod proto;
mod suite;
mod tls;
mod workload;

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dlm-bench", about = "dlm-server against Redis, in one run")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every workload against dlm, Redis and the floor; print the table.
    Suite {
        /// Measured seconds per row.
        #[arg(long, default_value = "2")]
        duration: f64,
        /// Live locks for the memory comparison.
        #[arg(long, default_value = "1000000")]
        fill: usize,
        /// A short smoke run (0.3 s rows, 1 and 4 clients, 10,000 locks,
        /// one TLS row pair).
        #[arg(long)]
        quick: bool,
        /// Only the TLS rows (uncontended and kv at 16 and 64 clients) and
        /// the plaintext rows of the same workloads beside them.
        #[arg(long)]
        tls_only: bool,
        /// The dlm-server binary (default: next to this one).
        #[arg(long)]
        dlm_server: Option<PathBuf>,
        /// The redis-server binary.
        #[arg(long, default_value = "redis-server")]
        redis_server: PathBuf,
        /// Another dlm-server binary (an earlier build) measured beside
        /// this one in every dlm row: before/after in one run.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// 3-node dlm clusters (durable and in memory) and a single dlm-server
    /// beside a 3-member etcd cluster: throughput, failover, the issue's
    /// targets.
    Cluster {
        /// Measured seconds per row [default: 2; --quick: 0.3].
        #[arg(long)]
        duration: Option<f64>,
        /// Client counts, comma-separated [default: 16,64; --quick: 16].
        #[arg(long, value_delimiter = ',')]
        clients: Option<Vec<usize>>,
        /// Leader kills per system, 0 for none [default: 20; --quick: 1].
        #[arg(long)]
        kills: Option<usize>,
        /// A short smoke run: 0.3 s rows, 16 clients, 1 kill per system
        /// (each of these unless given).
        #[arg(long)]
        quick: bool,
        /// What to run, comma-separated: etcd, durable, memory, single.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "etcd,durable,memory,single"
        )]
        targets: Vec<String>,
        /// The dlm-server binary (default: next to this one).
        #[arg(long)]
        dlm_server: Option<PathBuf>,
        /// The etcd server binary.
        #[arg(long, default_value = "etcd")]
        etcd: PathBuf,
        /// The Go load generator built from bench/etcd (default: etcd-bench
        /// next to this binary).
        #[arg(long)]
        etcd_bench: Option<PathBuf>,
        /// Where the scratch directory with the data dirs goes (default:
        /// the system's temp dir); durable figures depend on its disk.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Put every client on the first member instead of spreading them.
        #[arg(long)]
        one_member: bool,
        /// Fail if dlm-server has no cluster flags, instead of standing in
        /// for each cluster with three independent servers.
        #[arg(long)]
        require_cluster: bool,
        /// dlm failover without a leader lookup: a kill after which the
        /// next Lock took at least this long made the cluster elect (a raft
        /// election takes at least its election timeout, 200 ms in the
        /// design; a follower's kill costs a reconnect).
        #[arg(long, default_value = "150")]
        election_gap_ms: u64,
        /// Failover clients (dlm and etcd alike) give up on a request not
        /// answered within this many ms and send the next.
        #[arg(long, default_value = "500")]
        op_timeout_ms: u64,
        /// The dlm cluster whose leaders are killed: durable (the issue's
        /// figure) or memory.
        #[arg(long, default_value = "durable")]
        failover_on: String,
        /// Find the dlm leader by killing members in turn and timing the
        /// recovery, without asking (`{"Action":"Cluster"}`).
        #[arg(long)]
        no_leader_lookup: bool,
        /// Leave the scratch directory (data dirs, every member's log) in
        /// place at the end, and say where.
        #[arg(long)]
        keep_work_dir: bool,
    },
    /// Serve the floor (answer every line with a constant) on 127.0.0.1.
    Floor {
        /// Use a single-threaded epoll loop instead of tokio.
        #[arg(long)]
        epoll: bool,
    },
    /// One workload against one running server (for profiling).
    Run {
        /// dlm, dlm-legacy, redis or floor; dlm-tls or redis-tls with
        /// --tls-ca.
        #[arg(long)]
        target: String,
        /// The CA certificate (PEM) a TLS target's certificate chains to.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// The server's address.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// The server's PID (for its CPU time).
        #[arg(long, default_value = "0")]
        pid: u32,
        /// uncontended, kv, contended-poll, contended-wait, semaphore or
        /// rwlock.
        #[arg(long, default_value = "uncontended")]
        workload: String,
        /// The semaphore's permits (semaphore).
        #[arg(long, default_value_t = workload::Run::PERMITS)]
        permits: u32,
        /// Reads among the acquisitions, percent (rwlock).
        #[arg(long, default_value_t = workload::Run::READ_PERCENT)]
        read_percent: u32,
        /// Connections.
        #[arg(long, default_value = "1")]
        clients: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value = "1")]
        pipeline: usize,
        /// Measured seconds.
        #[arg(long, default_value = "2")]
        duration: f64,
    },
}

fn main() -> ExitCode {
    let r = match Cli::parse().command {
        Cmd::Floor { epoll } => floor(epoll),
        Cmd::Run {
            target,
            addr,
            pid,
            workload,
            clients,
            pipeline,
            duration,
            tls_ca,
            permits,
            read_percent,
        } => {
            let target = match target.as_str() {
                "dlm" => proto::Target::Dlm,
                "dlm-legacy" => proto::Target::DlmLegacy,
                "redis" => proto::Target::Redis,
                "floor" => proto::Target::Floor,
                "dlm-tls" => proto::Target::DlmTls,
                "redis-tls" => proto::Target::RedisTls,
                other => return usage(&format!("unknown target {other}")),
            };
            let workload = match workload.as_str() {
                "uncontended" => workload::Workload::Uncontended,
                "kv" => workload::Workload::Kv,
                "contended-poll" => workload::Workload::ContendedPoll,
                "contended-wait" => workload::Workload::ContendedWait,
                "semaphore" => workload::Workload::Semaphore,
                "rwlock" => workload::Workload::RwLock,
                other => return usage(&format!("unknown workload {other}")),
            };
            if permits == 0 {
                return usage("--permits must be at least 1");
            }
            if read_percent > 100 {
                return usage("--read-percent is at most 100");
            }
            let tls = match (target.is_tls(), tls_ca) {
                (true, Some(ca)) => match tls::Tls::from_ca_file(&ca) {
                    Ok(t) => Some(t),
                    Err(e) => return usage(&e.to_string()),
                },
                (true, None) => return usage("a TLS target needs --tls-ca"),
                (false, Some(_)) => return usage("--tls-ca is for dlm-tls and redis-tls"),
                (false, None) => None,
            };
            run_one(&workload::Run {
                target,
                addr,
                pid,
                workload,
                clients,
                pipeline,
                duration: Duration::from_secs_f64(duration),
                tls,
                permits,
                read_percent,
            })
        }
        Cmd::Cluster {
            duration,
            clients,
            kills,
            quick,
            targets,
            dlm_server,
            etcd,
            etcd_bench,
            work_dir,
            one_member,
            require_cluster,
            election_gap_ms,
            op_timeout_ms,
            failover_on,
            no_leader_lookup,
            keep_work_dir,
        } => {
            let failover_on = match failover_on.as_str() {
                "durable" => cluster::System::DlmDurable,
                "memory" => cluster::System::DlmMemory,
                other => {
                    return usage(&format!(
                        "--failover-on takes durable or memory, not {other}"
                    ));
                }
            };
            let mut systems = Vec::new();
            for t in &targets {
                match cluster::System::ALL.iter().find(|s| s.key() == t.as_str()) {
                    Some(s) if !systems.contains(s) => systems.push(*s),
                    Some(_) => {}
                    None => return usage(&format!("unknown target {t}")),
                }
            }
            let me = std::env::current_exe().unwrap_or_else(|_| "dlm-bench".into());
            cluster::ClusterBench {
                duration: Duration::from_secs_f64(
                    duration.unwrap_or(if quick { 0.3 } else { 2.0 }).max(0.01),
                ),
                clients: clients.unwrap_or_else(|| if quick { vec![16] } else { vec![16, 64] }),
                kills: kills.unwrap_or(if quick { 1 } else { 20 }),
                systems,
                dlm_server: dlm_server.unwrap_or_else(|| me.with_file_name("dlm-server")),
                etcd,
                etcd_bench: etcd_bench.unwrap_or_else(|| me.with_file_name("etcd-bench")),
                work_dir: work_dir.unwrap_or_else(std::env::temp_dir),
                spread: !one_member,
                require_cluster,
                election_gap: Duration::from_millis(election_gap_ms),
                op_timeout: Duration::from_millis(op_timeout_ms.max(1)),
                failover_on,
                leader_lookup: !no_leader_lookup,
                keep_work_dir,
            }
            .run()
        }
        Cmd::Suite {
            duration,
            fill,
            quick,
            tls_only,
            dlm_server,
            redis_server,
            baseline,
        } => {
            let me = std::env::current_exe().unwrap_or_else(|_| "dlm-bench".into());
            let dlm_server = dlm_server.unwrap_or_else(|| me.with_file_name("dlm-server"));
            suite::Suite {
                duration: Duration::from_secs_f64(if quick { 0.3 } else { duration }),
                clients: if quick { vec![1, 4] } else { vec![1, 16, 64] },
                fill: if quick { 10_000 } else { fill },
                dlm_server,
                redis_server,
                baseline,
                self_exe: me,
                tls_clients: if quick { vec![4] } else { vec![16, 64] },
                tls_workloads: if quick {
                    vec![workload::Workload::Uncontended]
                } else {
                    vec![workload::Workload::Uncontended, workload::Workload::Kv]
                },
                only_tls: tls_only,
                shape_clients: if quick { vec![8] } else { vec![16, 64] },
            }
            .run()
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command line that names something unknown.
fn usage(message: &str) -> ExitCode {
    eprintln!("dlm-bench: {message}");
    ExitCode::from(2)
}

/// Serves the floor on an ephemeral loopback port until killed, after
/// printing the address for the suite to read.
fn floor(epoll: bool) -> io::Result<()> {
    fn announce(addr: std::net::SocketAddr) -> io::Result<()> {
        println!("floor listening on {addr}");
        std::io::stdout().flush()
    }
    if epoll {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        announce(l.local_addr()?)?;
        return epoll_floor::serve(l);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            announce(l.local_addr()?)?;
            floor::serve(l).await
        })
}

/// Runs one workload against one target and prints its figures.
fn run_one(run: &workload::Run) -> io::Result<()> {
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(workload::run(run.clone()))?;
    println!(
        "{:.0} ops/s, {:.0} cycles/s, p50 {:.0} us, p99 {:.0} us, server {:.2} us/op, loadgen {:.2} us/op, errors {}",
        r.ops_per_s(),
        r.cycles_per_s(),
        r.p50_us,
        r.p99_us,
        r.server_cpu_us,
        r.loadgen_cpu_us,
        r.errors
    );
    if run.workload.is_contended() {
        println!(
            "{:.0} acquisitions/s ({:.0} writes/s), per client {}-{}, most holders at once {}, violations {}",
            r.acquisitions_per_s(),
            r.writes_per_s(),
            r.spread.0,
            r.spread.1,
            r.max_holders,
            r.violations
        );
        if r.violations > 0 {
            return Err(io::Error::other(format!(
                "{} grants beside too many holders",
                r.violations
            )));
        }
    }
    Ok(())
}
