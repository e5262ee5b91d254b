//! The etcd side of the cluster benchmark: a private 3-member etcd cluster
//! on loopback (Debian's `etcd-server`, default settings), and the Go load
//! generator `etcd-bench` (bench/etcd/) that speaks to it through etcd's
//! own client: it prints JSON lines, read here.

use std::ffi::OsString;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::failover::Recovery;
use crate::procs::{self, Member, Ready, check_interrupted, die_with_parent};
use crate::procstat;
use crate::workload::{Report, Workload};

/// A running 3-member etcd cluster.
pub struct EtcdCluster {
    /// Its members, in endpoint order.
    pub members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `n` members with data directories under `dir`, and waits
    /// until they have a leader and take a Put (`etcd_bench wait`).
    pub fn start(etcd: &Path, etcd_bench: &Path, dir: &Path, n: usize) -> io::Result<Self> {
        let ports = procs::free_ports(2 * n)?;
        let (client_ports, peer_ports) = ports.split_at(n);
        let initial: Vec<String> = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{}=http://127.0.0.1:{p}", i + 1))
            .collect();
        let initial = initial.join(",");
        let token = format!("dlm-bench-{}-{}", std::process::id(), procs::monotonic_ns());
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let data = dir.join(format!("etcd-m{}", i + 1));
            let client = format!("http://127.0.0.1:{}", client_ports[i]);
            let peer = format!("http://127.0.0.1:{}", peer_ports[i]);
            let args: Vec<OsString> = [
                "--name".into(),
                format!("m{}", i + 1).into(),
                "--data-dir".into(),
                data.into_os_string(),
                "--listen-client-urls".into(),
                client.clone().into(),
                "--advertise-client-urls".into(),
                client.into(),
                "--listen-peer-urls".into(),
                peer.clone().into(),
                "--initial-advertise-peer-urls".into(),
                peer.into(),
                "--initial-cluster".into(),
                initial.clone().into(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                token.clone().into(),
                "--logger".into(),
                "zap".into(),
            ]
            .into();
            members.push(Member::new(
                format!("etcd m{}", i + 1),
                ([127, 0, 0, 1], client_ports[i]).into(),
                etcd,
                args,
                Ready::Accepts,
                dir.join(format!("etcd-m{}.log", i + 1)),
            ));
        }
        for m in &mut members {
            m.spawn()?;
        }
        for m in &mut members {
            m.wait_ready(Duration::from_secs(30))?;
        }
        let c = Self { members };
        let mut cmd = Command::new(etcd_bench);
        cmd.args(["wait", "-timeout", "30s", "-endpoints", &c.endpoints()]);
        cmd.stdout(Stdio::null());
        die_with_parent(&mut cmd);
        let status = cmd.status()?;
        if !status.success() {
            return Err(c.members[0].failed("cluster did not elect a leader"));
        }
        Ok(c)
    }

    /// The client URLs, comma-separated.
    pub fn endpoints(&self) -> String {
        endpoints(self.members.iter().map(|m| m.client))
    }

    fn pids(&self) -> Vec<u32> {
        self.members.iter().map(Member::pid).collect()
    }
}

fn endpoints(addrs: impl Iterator<Item = SocketAddr>) -> String {
    addrs
        .map(|a| format!("http://{a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Go program, killed on drop, with its stdout read line by line on a
/// thread (so every wait here has a timeout).
struct GoProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl GoProc {
    fn spawn(bin: &Path, args: &[String], stdin: bool) -> io::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::other(format!("{}: {e}", bin.display())))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    /// The next JSON line whose "event" is `event` (others are skipped).
    fn expect(&self, event: &str, timeout: Duration) -> io::Result<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            check_interrupted()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::other(format!(
                    "etcd-bench: no {event:?} within {timeout:?}"
                )));
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line).map_err(|e| {
                        io::Error::other(format!("etcd-bench printed {line:?}: {e}"))
                    })?;
                    if v["event"] == event {
                        return Ok(v);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(format!(
                        "etcd-bench exited before {event:?}"
                    )));
                }
            }
        }
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("etcd-bench has no stdin"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }
}

impl Drop for GoProc {
    fn drop(&mut self) {
        // Closing stdin asks the failover loop to stop; then make sure.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn num(v: &Value, key: &str) -> io::Result<f64> {
    v[key]
        .as_f64()
        .ok_or_else(|| io::Error::other(format!("etcd-bench: no number {key:?} in {v}")))
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn count(v: &Value, key: &str) -> io::Result<u64> {
    num(v, key).map(|x| x as u64)
}

/// Runs one closed-loop workload through `etcd-bench load`: client `i` on
/// endpoint `i mod 3` (`spread`) or all on the first. The servers' CPU time
/// is sampled at the window's edges, which the Go program announces.
pub fn run_load(
    bin: &Path,
    cluster: &EtcdCluster,
    workload: Workload,
    clients: usize,
    duration: Duration,
    spread: bool,
) -> io::Result<Report> {
    let w = match workload {
        Workload::Uncontended => "lock",
        Workload::Kv => "kv",
        _ => return Err(io::Error::other("etcd-bench runs lock and kv only")),
    };
    let args = [
        "load".to_owned(),
        "-endpoints".into(),
        cluster.endpoints(),
        "-workload".into(),
        w.into(),
        "-clients".into(),
        clients.to_string(),
        "-warmup".into(),
        "300ms".into(),
        "-duration".into(),
        format!("{}ms", duration.as_millis()),
        "-placement".into(),
        if spread { "spread" } else { "first" }.into(),
    ];
    let go = GoProc::spawn(bin, &args, false)?;
    let pids = cluster.pids();
    let cpu = || -> Duration { pids.iter().map(|&p| procstat::cpu_time(p)).sum() };
    // Connecting 64 clients and opening their sessions takes a moment.
    go.expect("start", Duration::from_secs(60))?;
    let cpu0 = cpu();
    go.expect("end", duration + Duration::from_secs(10))?;
    let cpu1 = cpu();
    let rss = pids.iter().map(|&p| procstat::rss(p)).sum();
    let r = go.expect("result", Duration::from_secs(60))?;
    let ops = count(&r, "ops")?;
    let per_op = |d: f64| d / ops.max(1) as f64;
    Ok(Report {
        ops,
        cycles: count(&r, "cycles")?,
        acquisitions: 0,
        errors: count(&r, "errors")?,
        seconds: num(&r, "seconds")?,
        p50_us: num(&r, "p50_us")?,
        p99_us: num(&r, "p99_us")?,
        max_us: num(&r, "max_us")?,
        server_cpu_us: per_op(cpu1.saturating_sub(cpu0).as_secs_f64() * 1e6),
        loadgen_cpu_us: per_op(num(&r, "cpu_us")?),
        server_rss: rss,
        spread: (0, 0),
        ..Report::default()
    })
}

/// `etcd-bench failover`: one client Putting in a loop, asked on stdin.
pub struct EtcdFailover {
    go: GoProc,
}

impl EtcdFailover {
    /// Starts the Put loop against every member; a Put not answered
    /// within `op_timeout` is abandoned and the next one sent.
    pub fn start(bin: &Path, cluster: &EtcdCluster, op_timeout: Duration) -> io::Result<Self> {
        let args = [
            "failover".to_owned(),
            "-endpoints".into(),
            cluster.endpoints(),
            "-timeout".into(),
            "30s".into(),
            "-op-timeout".into(),
            format!("{}ms", op_timeout.as_millis().max(1)),
        ];
        let go = GoProc::spawn(bin, &args, true)?;
        go.expect("ready", Duration::from_secs(40))?;
        Ok(Self { go })
    }

    /// The leader's index among the members, asked of the members
    /// themselves (maintenance Status).
    pub fn leader(&mut self) -> io::Result<Option<usize>> {
        self.go.send("leader")?;
        let v = self.go.expect("leader", Duration::from_secs(40))?;
        Ok(v["index"].as_u64().and_then(|i| usize::try_from(i).ok()))
    }

    /// What followed a kill at `killed_ns` (`CLOCK_MONOTONIC`).
    pub fn recovered(&mut self, killed_ns: u64) -> io::Result<Recovery> {
        self.go.send(&format!("killed {killed_ns}"))?;
        let v = self.go.expect("recovered", Duration::from_secs(40))?;
        Ok(Recovery {
            gap: if v["ok"] == true {
                Some(Duration::from_secs_f64(num(&v, "ms")?.max(0.0) / 1e3))
            } else {
                None
            },
            failed: count(&v, "failed").unwrap_or(0),
            last_error: v["last_error"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Waits until member `i` answers, knows the leader and has caught up
    /// with the leader's log as it was when asked.
    pub fn rejoined(&mut self, i: usize) -> io::Result<bool> {
        self.go.send(&format!("rejoined {i}"))?;
        let v = self.go.expect("rejoined", Duration::from_secs(40))?;
        Ok(v["ok"] == true)
    }
}

impl Drop for EtcdFailover {
    fn drop(&mut self) {
        let _ = self.go.send("quit");
    }
}
