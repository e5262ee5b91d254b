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
fn shared_values() {
    let server = Server::start();
    let owner = ["--id", "owner"];
    let other = ["--id", "other"];
    let o = run(dlm(&server)
        .args(owner)
        .args(["put", "--readers", "any", "status", "green"]));
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "1"));
    // Another owner reads it, and cannot change or erase it.
    let o = run(dlm(&server).args(other).args(["get", "status"]));
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "green"));
    let o = run(dlm(&server).args(other).args(["put", "status", "red"]));
    assert_eq!(o.status.code(), Some(1));
    let o = run(dlm(&server).args(other).args(["erase", "status"]));
    assert_eq!(o.status.code(), Some(1));
    // Shared with identities only: an anonymous client is refused.
    let o =
        run(dlm(&server)
            .args(owner)
            .args(["put", "--readers", "alice,bob", "status", "amber"]));
    assert!(o.status.success());
    let o = run(dlm(&server).args(other).args(["get", "status"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    // A put without --readers is the owner's alone again.
    run(dlm(&server)
        .args(owner)
        .args(["put", "--readers", "any", "status", "x"]));
    run(dlm(&server).args(owner).args(["put", "status", "y"]));
    assert_eq!(
        run(dlm(&server).args(other).args(["get", "status"]))
            .status
            .code(),
        Some(1)
    );
    // Bad readers are a usage error, said before anything is sent.
    for bad in ["a b", "../x", ""] {
        let o = run(dlm(&server)
            .args(owner)
            .args(["put", "--readers", bad, "status", "z"]));
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(err.contains("--readers"), "{err}");
    }
    let many = vec!["a"; 33].join(",");
    let o = run(dlm(&server)
        .args(owner)
        .args(["put", "--readers", &many, "status", "z"]));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stdout(&run(dlm(&server).args(owner).args(["get", "status"]))),
        "y"
    );
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

#[test]
fn help_lists_exit_codes_environment_and_examples() {
    let o = run(Command::new(env!("CARGO_BIN_EXE_dlm")).arg("--help"));
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Exit status:",
        "  69 ",
        "  75 ",
        "128+N",
        "Environment:",
        "DLM_SERVER",
        "DLM_ID",
        "DLM_LOCK_TOKEN",
        "DLM_LOCK_NAME",
        "Examples:",
        "dlm lock backup --ttl 30 -w 60 -- ./backup.sh",
        "dlm lock maintenance",
    ] {
        assert!(help.contains(needle), "no {needle:?} in:\n{help}");
    }
    let o = run(Command::new(env!("CARGO_BIN_EXE_dlm")).args(["lock", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Without CMD, dlm holds the lock",
        "progress line",
        "DLM_LOCK_TOKEN",
        "Examples:",
    ] {
        assert!(help.contains(needle), "no {needle:?} in:\n{help}");
    }
}

/// Sends `sig` to the child.
fn kill(child: &std::process::Child, sig: libc::c_int) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig);
    }
}

#[test]
fn lock_without_a_command_holds_until_sigterm_and_prints_the_token() {
    let server = Server::start();
    let mut holder = dlm(&server)
        .args(["lock", "--ttl", "0.3", "held"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The token, once it holds the lock.
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let token: u64 = line.trim().parse().unwrap();
    assert!(token > 0, "{line:?}");
    let test = stdout(&run(dlm(&server).args(["test", "held"])));
    assert!(test.starts_with("taken"), "{test}");
    // Renewed: three TTLs later it still holds it.
    thread::sleep(Duration::from_millis(900));
    assert!(stdout(&run(dlm(&server).args(["test", "held"]))).starts_with("taken"));
    // Another holder cannot have it meanwhile.
    let o = run(dlm(&server).args(["lock", "-n", "held", "--", "true"]));
    assert_eq!(o.status.code(), Some(1));

    kill(&holder, libc::SIGTERM);
    let o = holder.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Not a terminal: nothing on stderr.
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout(&run(dlm(&server).args(["test", "held"]))), "free");
}

#[test]
fn a_lock_lost_while_held_without_a_command_exits_75() {
    let mut server = Server::start();
    let port = server.addr().port();
    let mut holder = dlm(&server)
        .args(["lock", "--ttl", "0.5", "fragile-hold"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.trim().parse::<u64>().is_ok(), "{line:?}");
    // The server restarts empty: the next renewal finds the lock gone.
    server.terminate();
    let _new = Server::on_port(port, &[]);
    let o = holder.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lost the lock fragile-hold"));
}

#[test]
fn no_progress_line_when_stderr_is_not_a_terminal() {
    let server = Server::start();
    let mut holder = dlm(&server)
        .args(["lock", "quiet", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    until_taken(&server, "quiet");
    let o = run(dlm(&server)
        .args(["lock", "-w", "1", "quiet", "--", "true"])
        .stderr(Stdio::piped()));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "dlm: quiet: lock is held by another owner\n"
    );
    kill(&holder, libc::SIGTERM);
    let _ = holder.wait();
}

#[test]
fn a_progress_line_on_a_terminal_while_waiting() {
    let server = Server::start();
    let mut holder = dlm(&server)
        .args(["lock", "busy", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    until_taken(&server, "busy");
    // stderr on a pseudo-terminal.
    let (mut master, slave) = {
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty writes two descriptors; no name, termios or size.
        #[allow(unsafe_code)]
        let r = unsafe {
            libc::openpty(
                &raw mut m,
                &raw mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptors we now own.
        #[allow(unsafe_code)]
        unsafe {
            use std::os::fd::FromRawFd as _;
            (
                std::fs::File::from_raw_fd(m),
                std::os::fd::OwnedFd::from_raw_fd(s),
            )
        }
    };
    let mut waiter = dlm(&server)
        .args(["lock", "-w", "1", "busy", "--", "true"])
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let status = waiter.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    // Everything it wrote; the read ends (EIO) once no one has the slave.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut master, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.contains("dlm: waiting for the lock busy: 0s of 1s"),
        "{seen:?}"
    );
    assert!(seen.contains("lock is held by another owner"), "{seen:?}");
    kill(&holder, libc::SIGTERM);
    let _ = holder.wait();
}

/// `dlm cluster`: status through any member, a membership change refused
/// with the server's reason, a leadership transfer.
#[test]
fn cluster_status_and_changes() {
    let c = dlm_tests::cluster::Cluster::start(3, &[]);
    let leader = c.leader();
    let via = c.followers(leader)[0];
    let addr = c.member(via).addr().to_string();
    let cli = |args: &[&str]| {
        run(Command::new(env!("CARGO_BIN_EXE_dlm"))
            .args(["--server", &addr])
            .args(args))
    };
    let out = cli(&["cluster", "status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("leader {leader},")), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("127.0.0.1:")).count(),
        3,
        "{text}"
    );
    let out = cli(&["cluster", "remove", "9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"));
    let out = cli(&["cluster", "transfer", &via.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c.leader() != via {
        assert!(
            std::time::Instant::now() < deadline,
            "the leadership never moved"
        );
    }
    let out = cli(&["cluster", "status", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("\"Leader\":{via}")));
}

/// `dlm lock NAME -- CMD` given a cluster's members: CMD keeps running
/// while the leader is killed, the lock is extended through the new
/// leader by its token, and CMD's own exit status comes back (not 75).
#[test]
fn a_command_keeps_its_lock_through_a_leader_failover() {
    let long = Duration::from_secs(60);
    let mut c = dlm_tests::cluster::Cluster::start(3, &[]);
    let leader = c.leader();
    let list = c
        .members
        .values()
        .map(|s| s.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cli = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlm"));
        cmd.env("DLM_SERVER", &list).env_remove("DLM_ID");
        cmd
    };
    let stop = dlm_tests::scratch_dir("cli-failover").join("stop");
    let script = format!(
        "echo \"$DLM_LOCK_TOKEN\"; while [ ! -e '{}' ]; do sleep 0.05; done; exit 4",
        stop.display()
    );
    let ttl = Duration::from_secs(12);
    let mut holder = cli()
        .args(["lock", "--ttl", "12", "job", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut token = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut token,
    )
    .unwrap();
    let token: u64 = token.trim().parse().unwrap();
    // How long the cluster keeps it, as `dlm test` says: "taken MS".
    let expires = || {
        let out = stdout(&run(cli().args(["test", "job"])));
        let ms: u64 = out
            .strip_prefix("taken ")
            .unwrap_or_else(|| panic!("not held: {out}"))
            .parse()
            .unwrap();
        Instant::now() + Duration::from_millis(ms)
    };
    let killed = Instant::now();
    c.kill(leader);
    assert_ne!(c.leader(), leader);
    // Extended through the new leader: it now expires later than it could
    // have without an extension since the kill.
    let deadline = Instant::now() + long;
    while expires() < killed + ttl + Duration::from_secs(1) {
        assert!(Instant::now() < deadline, "never extended after the kill");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(holder.try_wait().unwrap().is_none(), "CMD was stopped");
    // Still held by it.
    let mut other = run(cli().args(["lock", "-n", "job", "--", "true"]));
    assert_eq!(other.status.code(), Some(1), "{other:?}");
    std::fs::write(&stop, b"").unwrap();
    let status = holder.wait().unwrap();
    assert_eq!(status.code(), Some(4), "CMD's own status, not 75");
    other = run(cli().args(["lock", "job", "--", "sh", "-c", "echo \"$DLM_LOCK_TOKEN\""]));
    assert!(other.status.success(), "{other:?}");
    assert!(stdout(&other).parse::<u64>().unwrap() > token);
}
