//! `dlm-bench`: measures dlm-server side by side with Redis (and a trivial
//! constant-answer server, the floor) on this machine, in one run.
//!
//! ```text
//! dlm-bench suite [--duration S] [--fill N] [--quick]   everything, one table
//! dlm-bench floor                                       run the floor server
//! ```
//!
//! `make bench` installs redis-server if needed, builds in release mode and
//! runs the suite.

// A std binary: the workspace's no_std lints are for dlm-core.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_precision_loss
)]
// A binary: `pub` marks each module's interface to the others.
#![allow(unreachable_pub)]

mod epoll_floor;
mod floor;
mod procstat;
mod proto;
mod suite;
mod workload;

use std::io::Write as _;
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
        /// A short smoke run (0.3 s rows, 1 and 4 clients, 10,000 locks).
        #[arg(long)]
        quick: bool,
        /// The dlm-server binary (default: next to this one).
        #[arg(long)]
        dlm_server: Option<PathBuf>,
        /// The redis-server binary.
        #[arg(long, default_value = "redis-server")]
        redis_server: PathBuf,
    },
    /// Serve the floor (answer every line with a constant) on 127.0.0.1.
    Floor {
        /// Use a single-threaded epoll loop instead of tokio.
        #[arg(long)]
        epoll: bool,
    },
    /// One workload against one running server (for profiling).
    Run {
        /// dlm, dlm-legacy, redis or floor.
        #[arg(long)]
        target: String,
        /// The server's address.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// The server's PID (for its CPU time).
        #[arg(long, default_value = "0")]
        pid: u32,
        /// uncontended, kv, contended-poll or contended-wait.
        #[arg(long, default_value = "uncontended")]
        workload: String,
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
    match Cli::parse().command {
        Cmd::Floor { epoll: true } => {
            let r = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| {
                println!("floor listening on {}", l.local_addr()?);
                std::io::stdout().flush()?;
                epoll_floor::serve(l)
            });
            if let Err(e) = r {
                eprintln!("dlm-bench floor: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Cmd::Floor { epoll: false } => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("dlm-bench: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let r = rt.block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                println!("floor listening on {}", l.local_addr()?);
                std::io::stdout().flush()?;
                floor::serve(l).await
            });
            if let Err(e) = r {
                eprintln!("dlm-bench floor: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Cmd::Run {
            target,
            addr,
            pid,
            workload,
            clients,
            pipeline,
            duration,
        } => {
            let target = match target.as_str() {
                "dlm" => proto::Target::Dlm,
                "dlm-legacy" => proto::Target::DlmLegacy,
                "redis" => proto::Target::Redis,
                "floor" => proto::Target::Floor,
                other => {
                    eprintln!("dlm-bench: unknown target {other}");
                    return ExitCode::from(2);
                }
            };
            let workload = match workload.as_str() {
                "uncontended" => workload::Workload::Uncontended,
                "kv" => workload::Workload::Kv,
                "contended-poll" => workload::Workload::ContendedPoll,
                "contended-wait" => workload::Workload::ContendedWait,
                other => {
                    eprintln!("dlm-bench: unknown workload {other}");
                    return ExitCode::from(2);
                }
            };
            let run = workload::Run {
                target,
                addr,
                pid,
                workload,
                clients,
                pipeline,
                duration: Duration::from_secs_f64(duration),
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("dlm-bench: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(workload::run(run)) {
                Ok(r) => {
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
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dlm-bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Suite {
            duration,
            fill,
            quick,
            dlm_server,
            redis_server,
        } => {
            let me = std::env::current_exe().unwrap_or_else(|_| "dlm-bench".into());
            let dlm_server = dlm_server.unwrap_or_else(|| me.with_file_name("dlm-server"));
            let suite = suite::Suite {
                duration: Duration::from_secs_f64(if quick { 0.3 } else { duration }),
                clients: if quick { vec![1, 4] } else { vec![1, 16, 64] },
                fill: if quick { 10_000 } else { fill },
                dlm_server,
                redis_server,
                self_exe: me,
            };
            match suite.run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dlm-bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
