//! Server processes the cluster benchmark owns: started from a fixed
//! command line (so a killed member restarts exactly as it started),
//! killed (SIGKILL) on drop, and killed by the kernel if this process dies
//! first.
//! Also the scratch directory they keep their data in, and the clock the
//! Go load generator shares with us.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM once [`catch_interrupts`] ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag that [`check_interrupted`] reports,
/// so a long run stops at its next check and its drop guards kill what it
/// started and remove its scratch directory.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `signal` has no other preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// An error once SIGINT or SIGTERM arrived.
pub fn check_interrupted() -> io::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    Ok(())
}

/// Sleeps, in short steps so an interrupt is noticed.
pub fn sleep(d: Duration) -> io::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: what `Instant` reads on Linux, and
/// what the Go load generator reads, so both can compare times.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass; CLOCK_MONOTONIC
    // always exists on Linux.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    debug_assert_eq!(rc, 0);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Free loopback ports, distinct from each other (all are held until every
/// one is picked). Another process may still take one before it is used.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// A scratch directory, removed (with everything in it) on drop unless
/// kept.
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates a fresh directory under `base`; `keep` leaves it (data
    /// dirs, member logs) in place at the end.
    pub fn new(base: &Path, keep: bool) -> io::Result<Self> {
        let nanos = monotonic_ns();
        let path = base.join(format!("dlm-bench-cluster-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(Self { path, keep })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// How a member says it is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// It prints a line containing "listening on" on stdout (dlm-server).
    Announces,
    /// Its client port accepts connections (etcd).
    Accepts,
}

/// When a member was killed, on both clocks.
#[derive(Clone, Copy, Debug)]
pub struct Killed {
    /// Right after `kill(2)` returned.
    pub at: Instant,
    /// The same moment as `CLOCK_MONOTONIC` nanoseconds.
    pub monotonic_ns: u64,
}

/// A server process (a cluster member or a single server).
pub struct Member {
    /// For messages: "etcd m1", "dlm durable n2".
    pub name: String,
    /// Where its clients connect.
    pub client: SocketAddr,
    program: PathBuf,
    args: Vec<OsString>,
    ready: Ready,
    /// Its stderr (and stdout) go here, appended over restarts.
    log: PathBuf,
    child: Option<Child>,
    /// The first "listening on" line, from the thread draining stdout.
    announced: Option<mpsc::Receiver<String>>,
}

impl Member {
    /// A member that is not started yet.
    pub fn new(
        name: String,
        client: SocketAddr,
        program: &Path,
        args: Vec<OsString>,
        ready: Ready,
        log: PathBuf,
    ) -> Self {
        Self {
            name,
            client,
            program: program.to_owned(),
            args,
            ready,
            log,
            child: None,
            announced: None,
        }
    }

    /// Its PID, 0 when it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Starts the process (without waiting for it to be up: see
    /// [`wait_ready`](Self::wait_ready)). Call it from the main thread:
    /// the child is killed when the thread that started it exits.
    pub fn spawn(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Err(io::Error::other(format!(
                "{} is already running",
                self.name
            )));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stderr(Stdio::from(log.try_clone()?));
        match self.ready {
            Ready::Announces => cmd.stdout(Stdio::piped()),
            Ready::Accepts => cmd.stdout(Stdio::from(log.try_clone()?)),
        };
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::other(format!("{}: {}: {e}", self.name, self.program.display()))
        })?;
        self.announced = child.stdout.take().map(|out| {
            let (tx, rx) = mpsc::channel();
            let mut log = log;
            std::thread::spawn(move || drain(out, &tx, &mut log));
            rx
        });
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the member is up, or fails (with its log's tail) if it
    /// exits or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(self.failed(&format!("exited ({status})")));
            }
            let up = match (self.ready, &self.announced) {
                (Ready::Announces, Some(rx)) => match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(_) => true,
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                    // stdout closed without the line: try_wait will see the exit.
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(Duration::from_millis(20));
                        false
                    }
                },
                _ => TcpStream::connect_timeout(&self.client, Duration::from_millis(200)).is_ok(),
            };
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.failed(&format!("not up after {timeout:?}")));
            }
            if self.ready == Ready::Accepts {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// An error (with its log's tail) if the process has exited.
    pub fn check_running(&mut self) -> io::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.failed("is not running"));
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            return Err(self.failed(&format!("exited ({status})")));
        }
        Ok(())
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) -> io::Result<Killed> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other(format!("{} is not running", self.name)))?;
        // `Child::kill` sends SIGKILL on Unix.
        child.kill()?;
        let killed = Killed {
            at: Instant::now(),
            monotonic_ns: monotonic_ns(),
        };
        child.wait()?;
        Ok(killed)
    }

    /// Starts it again (same command line, same data) and waits until it
    /// is up; a few tries, for a port the kernel has not freed yet.
    pub fn restart(&mut self, timeout: Duration) -> io::Result<()> {
        let mut last = None;
        for _ in 0..5 {
            self.spawn()?;
            match self.wait_ready(timeout) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if let Some(mut c) = self.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    last = Some(e);
                    sleep(Duration::from_millis(200))?;
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("restart failed")))
    }

    /// An error naming the member, with the end of its log.
    pub fn failed(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{} {what}; last lines of {}:\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, 2048)
        ))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Copies a child's stdout to its log, handing the first "listening on"
/// line to `tx`. Ends when the child closes stdout (it exits).
fn drain(out: std::process::ChildStdout, tx: &mpsc::Sender<String>, log: &mut File) {
    use std::io::Write as _;
    let mut r = BufReader::new(out);
    let mut line = String::new();
    let mut told = false;
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        if !told && line.contains("listening on") {
            told = true;
            let _ = tx.send(line.trim().to_owned());
        }
        let _ = log.write_all(line.as_bytes());
        line.clear();
    }
}

/// The last `n` bytes of a file, as text.
fn tail(path: &Path, n: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(n)));
    let mut s = Vec::new();
    let _ = f.read_to_end(&mut s);
    String::from_utf8_lossy(&s).into_owned()
}

/// Has the kernel SIGKILL the child when the thread that started it exits
/// (so a crashed or killed benchmark leaves no servers behind).
pub fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and
    // only calls prctl and getppid, both async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before prctl: nobody would kill us later.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}
