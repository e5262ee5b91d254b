//! Support for dlm's end-to-end tests: start the real `dlm-server` binary
//! on an ephemeral port, talk to it over real sockets with requests built by
//! `dlm-core`'s sans-I/O client, and stop it.
//!
//! Every test starts its own server, so tests run in parallel and never
//! share state. [`jackrabbit`] is a stand-in for the original JackrabbitDLM
//! server, to test the clients against what it answers.

// A std test crate: the workspace's no_std lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![allow(clippy::missing_panics_doc)]

pub mod jackrabbit;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod chaos;
pub mod cluster;

use dlm_core::protocol::{Framing, Request, Response, Status};
use dlm_core::stats::{Stat, Stats};

/// Where cargo puts binaries for the running test executable
/// (`target/<profile>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf()
}

/// The path of a workspace binary, building it if it is missing (when a
/// test crate runs alone; `make test` builds everything first).
pub fn binary(package: &str, name: &str) -> PathBuf {
    let path = target_dir().join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p {package} failed");
    }
    path
}

/// A fresh, empty scratch directory.
pub fn scratch_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dlm-test-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Polls `f` every 10 ms until it is true, failing the test (naming
/// `what`) if it is not within `within`: how tests wait for something to
/// happen elsewhere rather than sleeping and hoping.
#[track_caller]
pub fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A development PKI written by `dlm-server tls new` into a fresh scratch
/// directory named after `what`: `ca.pem`, `server.pem`/`server.key` (for
/// localhost and 127.0.0.1) and a certificate and key per client name.
pub fn dev_pki(what: &str, clients: &[&str]) -> PathBuf {
    let dir = scratch_dir(what).join("pki");
    let mut cmd = Command::new(binary("dlm-server", "dlm-server"));
    cmd.args(["tls", "new"]).arg(&dir);
    for c in clients {
        cmd.args(["--client", c]);
    }
    let out = cmd.output().expect("run dlm-server tls new");
    assert!(
        out.status.success(),
        "dlm-server tls new failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// A `dlm-server` serving TLS with `cert` and `key`, plus `extra`
/// arguments.
pub fn tls_server(cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        cert.to_str().expect("a UTF-8 path"),
        "--tls-key",
        key.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    Server::with_args(&args)
}

/// A running `dlm-server`, stopped when dropped.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    /// The server's stderr (operational logs).
    pub stderr: PathBuf,
    /// A scratch directory for this server's files.
    pub dir: PathBuf,
}

impl Server {
    /// Starts a server with default settings on a free port.
    pub fn start() -> Self {
        Self::with_args(&[])
    }

    /// Starts a server with extra command-line arguments.
    pub fn with_args(args: &[&str]) -> Self {
        Self::with_command(|_| {}, args)
    }

    /// Starts a server on a given port (to restart one where it was).
    pub fn on_port(port: u16, args: &[&str]) -> Self {
        Self::spawn(port, |_| {}, args)
    }

    /// Starts a server, letting `setup` adjust the command (environment).
    pub fn with_command(setup: impl FnOnce(&mut Command), args: &[&str]) -> Self {
        Self::spawn(0, setup, args)
    }

    fn spawn(port: u16, setup: impl FnOnce(&mut Command), args: &[&str]) -> Self {
        let dir = scratch_dir("server");
        let stderr = dir.join("stderr.log");
        let mut cmd = Command::new(binary("dlm-server", "dlm-server"));
        cmd.args(["127.0.0.1", &port.to_string()])
            .args(args)
            .env("DLM_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        setup(&mut cmd);
        let mut child = cmd.spawn().expect("start dlm-server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("server did not report its address: {line:?}\n{log}")
            });
        Self {
            child,
            addr,
            stderr,
            dir,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// Current statistics, through the `Stats` action.
    pub fn stats(&self) -> Stats {
        self.connect().stats()
    }

    /// Polls the server's statistics until `ok` holds, failing with `what`
    /// (and the last statistics) after `within`.
    #[track_caller]
    pub fn wait_for(&self, within: Duration, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + within;
        let mut conn = self.connect();
        loop {
            let stats = conn.stats();
            if ok(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM and waits for the exit, returning its status and how
    /// long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for server") {
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "server ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for server") {
                return Some(status);
            }
            if start.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends a signal to the server process. For `SIGSTOP`, returns once
    /// the kernel reports the process stopped (kill(2) returns before
    /// that, and until then the server may still answer).
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
        if sig == libc::SIGSTOP {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !process_stopped(self.child.id()) {
                assert!(Instant::now() < deadline, "the server never stopped");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// The server's log output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A parsed response with owned fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Framing of the response line.
    pub framing: Framing,
    /// `Status`.
    pub status: Status,
    /// `ID`.
    pub id: Option<String>,
    /// `DataStore`.
    pub data: Option<String>,
    /// `Token`.
    pub token: Option<u64>,
    /// `Expire` in milliseconds.
    pub expire_ms: Option<u64>,
    /// `Revision`.
    pub revision: Option<u64>,
    /// `Error`.
    pub error: Option<String>,
    /// `Tokens` (a `LockAll`'s).
    pub tokens: Option<Vec<u64>>,
}

impl Reply {
    /// Parses one response line.
    pub fn parse(line: &[u8]) -> Self {
        let mut buf = line.to_vec();
        let (framing, r) = Response::parse(&mut buf)
            .unwrap_or_else(|e| panic!("bad response {:?}: {e}", String::from_utf8_lossy(line)));
        Self {
            framing,
            status: r.status,
            id: r.id.map(str::to_owned),
            data: r.data.map(str::to_owned),
            token: r.token.map(|t| t.0),
            expire_ms: r.expire.map(dlm_core::time::Ttl::as_millis),
            revision: r.revision.map(|r| r.0),
            error: r.error.map(|e| e.to_string()),
            tokens: r.tokens.map(|l| l.iter().map(|t| t.0).collect()),
        }
    }
}

/// A blocking client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connects to `addr`.
    pub fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to dlm-server");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        Self {
            writer: stream.try_clone().expect("clone stream"),
            reader: BufReader::new(stream),
        }
    }

    /// The socket, for options and shutdown.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Sends a request line.
    pub fn send(&mut self, req: &Request<'_>) {
        let mut line = Vec::new();
        req.write(&mut line).expect("write request");
        self.send_raw(&line);
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to dlm-server");
    }

    /// Sends raw bytes, reporting failure instead of panicking.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// The next response line, or `None` at end of stream (or reset).
    pub fn recv_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    /// The next response.
    pub fn recv(&mut self) -> Reply {
        let line = self.recv_line().expect("server closed the connection");
        Reply::parse(&line)
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, req: &Request<'_>) -> Reply {
        self.send(req);
        self.recv()
    }

    /// Whether the server closed the connection (reads EOF or a reset
    /// within `within`).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let _ = self.reader.get_ref().set_read_timeout(Some(within));
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    /// The server's statistics.
    pub fn stats(&mut self) -> Stats {
        let client = dlm_core::client::Client::new("stats");
        self.send(&client.stats());
        let mut line = self.recv_line().expect("stats reply");
        Response::parse_stats(&mut line).expect("parse stats")
    }
}

/// Reads one statistic.
pub fn stat(stats: &Stats, s: Stat) -> u64 {
    stats.get(s)
}

/// Creates identity `name` in `dir` with `dlm-server identity new` (an
/// administrator with `admin`) and returns its secret.
pub fn new_identity(dir: &Path, name: &str, admin: bool) -> String {
    let mut cmd = Command::new(binary("dlm-server", "dlm-server"));
    cmd.args(["identity", "new", name, "--identity-dir"])
        .arg(dir);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("run dlm-server identity new");
    assert!(
        out.status.success(),
        "identity new {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join(format!("{name}.cfg"))).expect("identity file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("identity file is JSON");
    v["Identity"]
        .as_str()
        .expect("an Identity field")
        .to_owned()
}

impl Server {
    /// The address of the server's HTTP listener (`--http`), from its log.
    pub fn http_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if let Some(addr) = log
                .split("http listening on ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|a| a.parse().ok())
            {
                return addr;
            }
            assert!(Instant::now() < deadline, "no http address logged:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The head (status line and headers) as text.
    pub head: String,
    /// The body as text.
    pub body: String,
}

/// Sends raw bytes as an HTTP request to `addr` and reads the answer to
/// the end (the server closes after one answer); `None` if it closed
/// without one.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Option<HttpReply> {
    let mut s = TcpStream::connect(addr).expect("connect to the http listener");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    if s.write_all(request).is_err() {
        return None;
    }
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(HttpReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// `GET path` with extra header lines (each ending in `\r\n`).
pub fn http_get(addr: SocketAddr, path: &str, headers: &str) -> HttpReply {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").as_bytes(),
    )
    .unwrap_or_else(|| panic!("no answer to GET {path}"))
}

/// The value of an unlabelled sample in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether /proc says process `pid` is stopped (state `T` or `t`).
fn process_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state == "T" || state == "t")
    })
}
