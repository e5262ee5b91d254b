//! The `dlm` command end to end against a real server: running a command
//! under a lock (flock-style flags and exit codes, the token in the
//! environment, renewal, a lock lost while the command runs) and the data
//! commands.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use dlm_tests::Server;

fn dlm(server: &Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlm"));
    c.env("DLM_SERVER", server.addr().to_string());
    c.env_remove("DLM_ID");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn lock_runs_the_command_with_its_token_and_passes_its_status_through() {
    let server = Server::start();
    let o = run(dlm(&server).args([
        "lock",
        "job",
        "--",
        "sh",
        "-c",
        "echo \"$DLM_LOCK_NAME $DLM_LOCK_TOKEN\"; exit 3",
    ]));
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = stdout(&o);
    let (name, token) = out.split_once(' ').unwrap();
    assert_eq!(name, "job");
    assert!(token.parse::<u64>().unwrap() > 0);
    // Released afterwards.
    assert_eq!(stdout(&run(dlm(&server).args(["test", "job"]))), "free");
    // A command killed by a signal reports 128 + signal, like a shell.
    let o = run(dlm(&server).args(["lock", "job", "--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(o.status.code(), Some(128 + 15));
    // A command that does not exist: 127.
    let o = run(dlm(&server).args(["lock", "job", "--", "/nonexistent/command"]));
    assert_eq!(o.status.code(), Some(127));
}

/// Waits (up to 5 s) until `dlm test NAME` says another owner holds it.
fn until_taken(server: &Server, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stdout(&run(dlm(server).args(["test", name]))).starts_with("taken") {
        assert!(Instant::now() < deadline, "{name} was never taken");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_held_lock_makes_nonblock_and_timeout_fail_with_the_conflict_code() {
    let server = Server::start();
    let mut holder = dlm(&server)
        .args(["lock", "shared", "--", "sleep", "3"])
        .spawn()
        .unwrap();
    until_taken(&server, "shared");
    let o = run(dlm(&server).args(["lock", "-n", "shared", "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    let o = run(dlm(&server).args(["lock", "-n", "-E", "42", "shared", "--", "true"]));
    assert_eq!(o.status.code(), Some(42));
    let start = Instant::now();
    let o = run(dlm(&server).args(["lock", "-w", "0.3", "shared", "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(start.elapsed() >= Duration::from_millis(280));
    // Waiting without a limit gets it once the holder is done.
    let o = run(dlm(&server).args(["lock", "shared", "--", "echo", "mine now"]));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "mine now");
    assert!(holder.wait().unwrap().success());
}

#[test]
fn the_lock_is_renewed_while_the_command_runs() {
    let server = Server::start();
    let mut holder = dlm(&server)
        .args(["lock", "--ttl", "0.3", "renewed", "--", "sleep", "2"])
        .spawn()
        .unwrap();
    until_taken(&server, "renewed");
    // Three TTLs later, still held (the command runs 2 s from the grant).
    thread::sleep(Duration::from_millis(900));
    assert!(stdout(&run(dlm(&server).args(["test", "renewed"]))).starts_with("taken"));
    assert!(holder.wait().unwrap().success());
    assert_eq!(stdout(&run(dlm(&server).args(["test", "renewed"]))), "free");
}

#[test]
fn a_lost_lock_stops_the_command() {
    let mut server = Server::start();
    let port = server.addr().port();
    let mut holder = dlm(&server)
        .args([
            "lock",
            "--ttl",
            "0.5",
            "--kill-grace",
            "0.5",
            "fragile",
            "--",
            "sh",
            "-c",
            "trap '' TERM; sleep 30",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until_taken(&server, "fragile");
    // The server restarts empty: the next renewal finds the lock gone.
    server.terminate();
    let _new = Server::on_port(port, &[]);
    let start = Instant::now();
    let status = holder.wait().unwrap();
    assert_eq!(status.code(), Some(75), "exit 75 when the lock is lost");
    // It ignored SIGTERM, so it was killed after the grace period.
    assert!(start.elapsed() < Duration::from_secs(5));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut holder.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("lost the lock fragile"), "{err}");
}

#[test]
fn signals_are_forwarded_and_the_lock_released() {
    let server = Server::start();
    let mut holder = dlm(&server)
        .args([
            "lock",
            "sig",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the command runs, dlm holds the lock and forwards signals.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "started");
    assert!(stdout(&run(dlm(&server).args(["test", "sig"]))).starts_with("taken"));
    let pid = i32::try_from(holder.id()).unwrap();
    // SAFETY: signalling our own child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = holder.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(stdout(&run(dlm(&server).args(["test", "sig"]))), "free");
}

#[test]
fn data_commands() {
    let server = Server::start();
    let id = ["--id", "tester"];
    let o = run(dlm(&server).args(id).args(["put", "k", "hello"]));
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "1"));
    let o = run(dlm(&server).args(id).args(["get", "k"]));
    assert_eq!(stdout(&o), "hello");
    // Another owner cannot read it.
    let o = run(dlm(&server).args(["--id", "other", "get", "k"]));
    assert_eq!(o.status.code(), Some(1));
    // Compare-and-set.
    let o = run(dlm(&server)
        .args(id)
        .args(["put", "--revision", "5", "k", "x"]));
    assert_eq!(o.status.code(), Some(1));
    let o = run(dlm(&server)
        .args(id)
        .args(["put", "--revision", "1", "k", "x"]));
    assert_eq!(stdout(&o), "2");
    // Stdin.
    let mut p = dlm(&server)
        .args(id)
        .args(["put", "k", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut p.stdin.take().unwrap(), b"\x00binary\xff").unwrap();
    assert!(p.wait().unwrap().success());
    let o = run(dlm(&server).args(id).args(["get", "k"]));
    assert_eq!(o.stdout, b"\x00binary\xff");
    assert!(
        run(dlm(&server).args(id).args(["erase", "k"]))
            .status
            .success()
    );
    assert_eq!(
        run(dlm(&server).args(id).args(["erase", "k"]))
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(dlm(&server).args(id).args(["get", "k"])).status.code(),
        Some(1)
    );
    // The default ID is stable between invocations.
    assert!(
        run(dlm(&server).args(["put", "mine", "v"]))
            .status
            .success()
    );
    assert_eq!(stdout(&run(dlm(&server).args(["get", "mine"]))), "v");
}

#[test]
fn test_unlock_stats_version() {
    let server = Server::start();
    let mut c = server.connect();
    let t = c
        .call(
            &dlm_core::client::Client::new("holder").lock("l", dlm_core::time::Ttl::from_secs(30)),
        )
        .token
        .unwrap();
    let o = run(dlm(&server).args(["--id", "holder", "test", "l"]));
    assert!(stdout(&o).starts_with(&format!("mine {t} ")));
    let o = run(dlm(&server).args(["--id", "someone", "test", "l"]));
    assert!(stdout(&o).starts_with("taken "));
    let o = run(dlm(&server).args([
        "--id",
        "holder",
        "unlock",
        "--token",
        &(t + 1).to_string(),
        "l",
    ]));
    assert_eq!(
        o.status.code(),
        Some(1),
        "a stale token leaves the grant alone"
    );
    let o = run(dlm(&server).args(["--id", "holder", "unlock", "--token", &t.to_string(), "l"]));
    assert!(o.status.success());
    assert_eq!(stdout(&run(dlm(&server).args(["test", "l"]))), "free");
    let o = run(dlm(&server).args(["stats"]));
    assert!(stdout(&o).lines().any(|l| l == "Lock: 1"), "{}", stdout(&o));
    let o = run(dlm(&server).args(["version"]));
    assert!(stdout(&o).contains("JackrabbitDLM"));
}

#[test]
fn an_unreachable_server_exits_69() {
    let o =
        run(Command::new(env!("CARGO_BIN_EXE_dlm")).args(["--server", "127.0.0.1:1", "version"]));
    assert_eq!(o.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unavailable"));
}
