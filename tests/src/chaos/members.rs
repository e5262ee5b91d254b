//! The members of a chaos cluster: `dlm-server` processes the suite
//! starts, kills, pauses and restarts, each with its own data directory
//! and log, each reaching the others through the suite's proxies.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use super::proxy::{self, Net};

/// One member.
#[derive(Debug)]
pub struct Member {
    /// Its ID.
    pub id: u64,
    /// The port clients reach it on (kept across restarts).
    pub client_port: u16,
    /// The port it listens on for peers.
    pub peer_port: u16,
    /// Its data directory (unused in memory).
    pub data_dir: PathBuf,
    /// Its log (every start appended).
    pub log: PathBuf,
    child: Option<Child>,
    /// Whether it is stopped by SIGSTOP.
    pub paused: bool,
    /// Whether it starts with `--join` (it was removed and added back).
    pub join: bool,
}

/// How members are started.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The `dlm-server` binary.
    pub server: PathBuf,
    /// Where data directories and logs go.
    pub dir: PathBuf,
    /// Whether members keep a data directory.
    pub durable: bool,
    /// `LD_PRELOAD` for members (the fault shim), if any.
    pub preload: Option<PathBuf>,
    /// One plain server (no `--node`/`--peers`): in memory, the server
    /// without Raft; with a data directory, a durable cluster of one.
    pub single: bool,
}

/// The members and the proxies between them.
#[derive(Debug)]
pub struct Members {
    /// By ID.
    pub members: BTreeMap<u64, Member>,
    /// `(from, to)` to the port of the proxy carrying `from`'s connections
    /// to `to`.
    pub proxies: BTreeMap<(u64, u64), u16>,
    /// How they start.
    pub setup: Setup,
}

/// A free port below the ephemeral range: members restart on theirs.
#[allow(clippy::unnecessary_wraps)]
fn free_port() -> std::io::Result<u16> {
    Ok(crate::cluster::free_port())
}

impl Members {
    /// Starts `n` members with a proxy for every ordered pair.
    pub fn start(n: u64, setup: Setup, net: &Arc<Net>) -> std::io::Result<Self> {
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let data_dir = setup.dir.join(format!("member-{id}"));
            std::fs::create_dir_all(&data_dir)?;
            members.insert(
                id,
                Member {
                    id,
                    client_port: free_port()?,
                    peer_port: free_port()?,
                    log: setup.dir.join(format!("member-{id}.log")),
                    data_dir,
                    child: None,
                    paused: false,
                    join: false,
                },
            );
        }
        let mut proxies = BTreeMap::new();
        for a in 1..=n {
            for b in 1..=n {
                if a != b {
                    let target = SocketAddr::from(([127, 0, 0, 1], members[&b].peer_port));
                    proxies.insert((a, b), proxy::start(net, a, b, target)?);
                }
            }
        }
        let mut m = Self {
            members,
            proxies,
            setup,
        };
        for id in 1..=n {
            m.boot(id)?;
        }
        Ok(m)
    }

    /// The `--peers` argument of member `id`: itself at its own peer port,
    /// the others at the proxies that carry its connections to them.
    fn peers_arg(&self, id: u64) -> String {
        self.members
            .values()
            .map(|m| {
                let port = if m.id == id {
                    m.peer_port
                } else {
                    self.proxies[&(id, m.id)]
                };
                format!("{}=127.0.0.1:{port}", m.id)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client addresses of every member.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.members
            .values()
            .map(|m| SocketAddr::from(([127, 0, 0, 1], m.client_port)))
            .collect()
    }

    /// Starts (or restarts) member `id`; returns once it listens.
    pub fn boot(&mut self, id: u64) -> std::io::Result<()> {
        let peers = self.peers_arg(id);
        let setup = self.setup.clone();
        let m = self
            .members
            .get_mut(&id)
            .ok_or_else(|| std::io::Error::other("no such member"))?;
        let mut log = OpenOptions::new().create(true).append(true).open(&m.log)?;
        writeln!(log, "==== dlm-chaos: starting member {id} ====")?;
        let mut cmd = Command::new(&setup.server);
        cmd.args(["127.0.0.1", &m.client_port.to_string()]);
        if !setup.single {
            cmd.args(["--node", &id.to_string(), "--peers", &peers]);
        }
        cmd.env("DLM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if setup.durable {
            cmd.arg("--data-dir").arg(&m.data_dir);
        }
        if m.join {
            cmd.arg("--join");
        }
        if let Some(p) = &setup.preload {
            let clock = super::shim::clock_file(&m.data_dir);
            super::shim::init_clock(&m.data_dir)?;
            cmd.env("LD_PRELOAD", p)
                .env("DLM_CHAOS_SYNC_LOG", super::shim::sync_log(&m.data_dir))
                .env("DLM_CHAOS_CLOCK", clock);
        }
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading so the member never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        m.child = Some(child);
        m.paused = false;
        if line.contains("listening") {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "member {id} did not start (see {})",
                m.log.display()
            )))
        }
    }

    /// Whether member `id` runs (started, not killed).
    pub fn running(&self, id: u64) -> bool {
        self.members.get(&id).is_some_and(|m| m.child.is_some())
    }

    /// Sends `sig` to member `id`.
    pub fn signal(&mut self, id: u64, sig: libc::c_int) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let Some(child) = &m.child else { return };
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return;
        };
        // SAFETY: kill(2) on a child process we started and have not reaped.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
        if sig == libc::SIGSTOP {
            m.paused = true;
        } else if sig == libc::SIGCONT {
            m.paused = false;
        }
    }

    /// SIGKILL to member `id`, and waits for it to be gone.
    pub fn kill(&mut self, id: u64) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        m.paused = false;
    }

    /// Stops every member: SIGCONT, SIGTERM, then SIGKILL after a while.
    pub fn stop_all(&mut self) {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for id in &ids {
            self.signal(*id, libc::SIGCONT);
            self.signal(*id, libc::SIGTERM);
        }
        for id in ids {
            if let Some(m) = self.members.get_mut(&id)
                && let Some(mut child) = m.child.take()
            {
                for _ in 0..200 {
                    if child.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// What member `id` says of the cluster (`Leader`, `Term`), directly
    /// (not relayed), or `None` if it does not answer within `within`.
    pub fn status(&self, id: u64, within: Duration) -> Option<(u64, u64)> {
        let m = self.members.get(&id)?;
        if m.child.is_none() || m.paused {
            return None;
        }
        status_at(SocketAddr::from(([127, 0, 0, 1], m.client_port)), within)
    }

    /// The leader most running members agree on (0 if none).
    pub fn leader(&self) -> u64 {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for id in self.members.keys() {
            if let Some((l, _)) = self.status(*id, Duration::from_millis(300))
                && l != 0
            {
                *votes.entry(l).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map_or(0, |(l, _)| l)
    }

    /// A membership change through the `dlm` command (`cli`), as an
    /// operator would make it: `dlm cluster remove ID`, wait for the member
    /// to stop by itself, give it an empty data directory (a fresh
    /// machine), `dlm cluster add ID PEER`, and start it with `--join`.
    /// What was done, for the fault record; an error if a step failed
    /// (the member is left as that step left it; the caller brings every
    /// member back at the end).
    ///
    /// Each `dlm` command is tried up to five times. A try whose answer was
    /// lost (the connection closed after the request went out, or no
    /// answer in time) may have been applied: a later try refused as
    /// already done ("not a member" to a removal, "already a member" to an
    /// addition) says it was, and the step counts as done
    /// ([`Settled::AppliedEarlier`]). A leader asked to remove itself, for
    /// one, often stops before it answers: a follower that applied the
    /// removal first tells it goodbye.
    pub fn remove_and_add(&mut self, id: u64, cli: &Path) -> Result<String, String> {
        let servers = self
            .client_addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let peer = self
            .members
            .get(&id)
            .map(|m| format!("127.0.0.1:{}", m.peer_port))
            .ok_or("no such member")?;
        let dlm = |op: Change, args: &[&str]| -> Result<String, String> {
            let mut errors = Vec::new();
            for _ in 0..5 {
                let out = Command::new(cli)
                    .args(["--server", &servers, "--timeout", "5"])
                    .args(args)
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
                let err = if out.status.success() {
                    String::new()
                } else {
                    String::from_utf8_lossy(&out.stderr).trim().to_owned()
                };
                match settled(op, out.status.success(), &err, &errors) {
                    Settled::Done => {
                        return Ok(format!("dlm {}{}", args.join(" "), tries(&errors)));
                    }
                    Settled::AppliedEarlier => {
                        errors.push(err);
                        return Ok(format!(
                            "dlm {}{}: an earlier try applied",
                            args.join(" "),
                            tries(&errors)
                        ));
                    }
                    Settled::Failed => errors.push(err),
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(format!("dlm {}{}", args.join(" "), tries(&errors)))
        };
        let removed = dlm(Change::Remove, &["cluster", "remove", &id.to_string()])?;
        // A removed member stops by itself once it applies its removal (or
        // after a grace, if it never hears of it); then it is gone anyway.
        let m = self.members.get_mut(&id).ok_or("no such member")?;
        let mut stopped_itself = false;
        if let Some(mut child) = m.child.take() {
            for _ in 0..500 {
                if child.try_wait().ok().flatten().is_some() {
                    stopped_itself = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        m.paused = false;
        let _ = std::fs::remove_dir_all(&m.data_dir);
        std::fs::create_dir_all(&m.data_dir).map_err(|e| e.to_string())?;
        let _ = std::fs::write(super::shim::sync_log(&m.data_dir), b"");
        m.join = true;
        let added = dlm(Change::Add, &["cluster", "add", &id.to_string(), &peer])?;
        self.boot(id).map_err(|e| e.to_string())?;
        Ok(format!(
            "{removed} (it {}), data directory emptied, {added}, started with --join",
            if stopped_itself {
                "stopped by itself"
            } else {
                "was still running after 10 s: killed"
            }
        ))
    }

    /// The directory of member `id`'s data.
    pub fn data_dir(&self, id: u64) -> Option<&Path> {
        self.members.get(&id).map(|m| m.data_dir.as_path())
    }
}

/// A membership change the nemesis makes through the `dlm` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `dlm cluster remove ID`.
    Remove,
    /// `dlm cluster add ID PEER`.
    Add,
}

/// What one try of a [`Change`] settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// It was answered done.
    Done,
    /// It was refused as already done, after a try whose answer was lost:
    /// that try was applied.
    AppliedEarlier,
    /// Not done (yet): try again, or give up.
    Failed,
}

/// Whether the `dlm` command's error `err` leaves open whether the change
/// was applied: the request went out and no answer came back (the
/// member's connection closed, or the timeout ran out).
pub fn answer_lost(err: &str) -> bool {
    err.contains("may have been applied")
        || err.contains("the connection closed before the answer")
        || err.contains("no answer within the timeout")
}

/// What a try of `change` settles: whether the command succeeded, its
/// error `err` otherwise, and the errors of the tries before it. A refusal
/// as already done ("not a member" to a removal, "already a member" to an
/// addition, not the variants a leader gives while a change of its log is
/// still unapplied) counts as done only after a try whose answer was lost;
/// without one, the nemesis would be wrong about the membership, and that
/// is a failure to report.
pub fn settled(change: Change, ok: bool, err: &str, before: &[String]) -> Settled {
    if ok {
        return Settled::Done;
    }
    let already = match change {
        Change::Remove => "not a member",
        Change::Add => "already a member",
    };
    if err.trim_end().ends_with(already) && before.iter().any(|e| answer_lost(e)) {
        Settled::AppliedEarlier
    } else {
        Settled::Failed
    }
}

/// The failed tries of a command, for the fault record: empty if none.
fn tries(errors: &[String]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let list: Vec<String> = errors
        .iter()
        .enumerate()
        .map(|(i, e)| format!("try {}: {e}", i + 1))
        .collect();
    format!(" ({})", list.join("; "))
}

impl Drop for Members {
    /// No member outlives the suite (or a test that panicked).
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `{"Action":"Cluster"}` at `addr`: the member's own `Leader` and `Term`.
pub fn status_at(addr: SocketAddr, within: Duration) -> Option<(u64, u64)> {
    let mut s = TcpStream::connect_timeout(&addr, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(b"{\"Action\":\"Cluster\"}\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
    let c = v.get("Cluster")?;
    Some((c.get("Leader")?.as_u64()?, c.get("Term")?.as_u64()?))
}
