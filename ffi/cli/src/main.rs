//! `dlm`: run a command while holding a lock, and talk to a dlm server from
//! the shell.
//!
//! ```text
//! dlm lock NAME [--ttl S] [--wait S | -n] [-E CODE] -- CMD ARGS...
//! dlm get|put|erase|test|unlock|stats|version ...
//! ```
//!
//! `dlm lock` behaves like `flock(1)`: it waits for the lock (forever by
//! default, `-w S` at most S seconds, `-n` not at all), runs CMD while
//! holding it, renews it every third of its TTL, exports `DLM_LOCK_TOKEN`
//! (unset if the server gives no fencing tokens, as JackrabbitDLM does)
//! and `DLM_LOCK_NAME` to CMD, releases it when CMD ends, and exits with
//! CMD's status. If the lock cannot be had it exits 1 (or `-E CODE`); if
//! the lock is lost while CMD runs, CMD's process group gets SIGTERM, then
//! SIGKILL after the grace period, and `dlm` exits 75. SIGINT, SIGTERM and
//! SIGHUP sent to `dlm` are passed on to CMD, and the lock is released
//! when it ends.

// A std binary: the workspace's no_std lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::{Read as _, Write as _};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dlm::{Client, Error, LockState, Options, Revision, Token};

/// Exit status when the server cannot be reached (sysexits `EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;
/// Exit status for any other failure (sysexits `EX_SOFTWARE`).
const EXIT_FAILURE: u8 = 70;
/// Exit status when the lock was lost while the command ran (`EX_TEMPFAIL`).
const EXIT_LOST: u8 = 75;

#[derive(Parser)]
#[command(
    name = "dlm",
    version,
    about = "Run commands under a dlm lock; read and write dlm values"
)]
struct Cli {
    /// The dlm server.
    #[arg(
        long,
        short,
        env = "DLM_SERVER",
        default_value = "127.0.0.1:37373",
        global = true
    )]
    server: String,
    /// Owner ID. `lock` uses a fresh random one unless given; the other
    /// commands default to `dlm-cli:USER@HOST`, so values you put you can
    /// read back.
    #[arg(long, env = "DLM_ID", global = true)]
    id: Option<String>,
    /// Seconds to wait for the server to answer (beyond a lock's wait).
    #[arg(long, default_value = "10", value_parser = seconds, global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run CMD while holding the lock NAME.
    Lock(LockArgs),
    /// Print the value of NAME (raw bytes to stdout).
    Get {
        /// The data key.
        name: String,
    },
    /// Store VALUE (or stdin, if VALUE is -) under NAME; prints the revision.
    Put {
        /// The data key.
        name: String,
        /// The value; `-` reads stdin.
        value: String,
        /// Seconds to keep it.
        #[arg(long, default_value = "300", value_parser = seconds)]
        ttl: Duration,
        /// Only if the stored revision is this (0: only if absent).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Delete NAME.
    Erase {
        /// The data key.
        name: String,
    },
    /// Whether NAME is locked: prints `free`, `mine TOKEN MS` or `taken MS`
    /// (`-` for no token, `?` for a time the server did not say).
    Test {
        /// The lock.
        name: String,
    },
    /// Release NAME (held under `--id`), optionally only the grant TOKEN.
    Unlock {
        /// The lock.
        name: String,
        /// Only the grant with this fencing token.
        #[arg(long)]
        token: Option<u64>,
    },
    /// Print the server's statistics, one `Key: value` per line.
    Stats,
    /// Print the server's version.
    Version,
}

#[derive(Args)]
struct LockArgs {
    /// The lock.
    name: String,
    /// Seconds the server keeps the lock between renewals.
    #[arg(long, default_value = "30", value_parser = seconds)]
    ttl: Duration,
    /// Wait at most this many seconds for the lock (default: forever).
    #[arg(long, short = 'w', value_parser = seconds, conflicts_with = "nonblock")]
    wait: Option<Duration>,
    /// Do not wait: fail at once if the lock is held.
    #[arg(long, short = 'n')]
    nonblock: bool,
    /// Exit status when the lock cannot be had.
    #[arg(long, short = 'E', default_value = "1")]
    conflict_exit_code: u8,
    /// Seconds between SIGTERM and SIGKILL when the lock is lost.
    #[arg(long, default_value = "10", value_parser = seconds)]
    kill_grace: Duration,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn seconds(text: &str) -> Result<Duration, String> {
    let s: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(s).map_err(|e| format!("{text:?}: {e}"))
}

fn default_id() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map_or_else(|_| "localhost".into(), |h| h.trim().to_owned());
    format!("dlm-cli:{user}@{host}")
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("dlm: {e}");
    ExitCode::from(match e {
        Error::Unavailable(_) => EXIT_UNAVAILABLE,
        Error::NotOwner | Error::NotFound | Error::Timeout | Error::Conflict { .. } => 1,
        _ => EXIT_FAILURE,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_lock = matches!(cli.command, Cmd::Lock(_));
    let id = match (&cli.id, is_lock) {
        (Some(id), _) => Some(id.clone()),
        (None, true) => None,
        (None, false) => Some(default_id()),
    };
    let client = match Client::connect_with(
        cli.server.as_str(),
        Options {
            client_id: id,
            io_timeout: cli.timeout,
            ..Options::default()
        },
    ) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match run(&client, cli.command) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn run(client: &Client, command: Cmd) -> Result<ExitCode, Error> {
    let mut out = std::io::stdout().lock();
    match command {
        Cmd::Lock(args) => return lock(client, &args),
        Cmd::Get { name } => match client.get(&name)? {
            Some(v) => {
                let _ = out.write_all(&v.data);
            }
            None => {
                eprintln!("dlm: {name}: no such entry");
                return Ok(ExitCode::from(1));
            }
        },
        Cmd::Put {
            name,
            value,
            ttl,
            revision,
        } => {
            let bytes = if value == "-" {
                let mut b = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut b)
                    .map_err(Error::Unavailable)?;
                b
            } else {
                value.into_bytes()
            };
            let Revision(r) = match revision {
                Some(r) => client.put_if(&name, &bytes, ttl, Revision(r))?,
                None => client.put(&name, &bytes, ttl)?,
            };
            let _ = writeln!(out, "{r}");
        }
        Cmd::Erase { name } => {
            if !client.erase(&name)? {
                eprintln!("dlm: {name}: no such entry");
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Test { name } => {
            let _ = match client.test_lock(&name)? {
                LockState::Free => writeln!(out, "free"),
                LockState::Mine { token, remaining } => writeln!(
                    out,
                    "mine {} {}",
                    token.map_or_else(|| "-".into(), |t| t.to_string()),
                    remaining.map_or_else(|| "?".into(), |r| r.as_millis().to_string())
                ),
                LockState::Taken { remaining } => writeln!(
                    out,
                    "taken {}",
                    remaining.map_or_else(|| "?".into(), |r| r.as_millis().to_string())
                ),
            };
        }
        Cmd::Unlock { name, token } => {
            if !client.unlock(&name, token.map(Token))? {
                eprintln!("dlm: {name}: not locked");
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Stats => {
            for (stat, value) in client.stats()?.iter() {
                let _ = writeln!(out, "{}: {value}", stat.name());
            }
        }
        Cmd::Version => {
            let _ = writeln!(out, "{}", client.version()?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The running command's PID, for the signal handler to forward to.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before the command was started.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; -pid is CMD's process group.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pid, sig);
        }
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

/// Forwards SIGINT/SIGTERM/SIGHUP to the command, so `dlm` itself keeps
/// running until the command ends and can release the lock.
fn forward_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing an async-signal-safe handler.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(sig, forward as *const () as libc::sighandler_t);
        }
    }
}

enum Event {
    Exited(std::process::ExitStatus),
    Lost,
}

fn lock(client: &Client, args: &LockArgs) -> Result<ExitCode, Error> {
    // The server bounds a wait (3543 s for anonymous clients): to wait
    // "forever", wait in rounds.
    const ROUND: Duration = Duration::from_secs(3000);
    let (tx, rx) = mpsc::channel();
    let lost_tx = tx.clone();
    let held = loop {
        let wait = match (args.nonblock, args.wait) {
            (true, _) => Duration::ZERO,
            (false, Some(w)) => w,
            (false, None) => ROUND,
        };
        let lost_tx = lost_tx.clone();
        let attempt = client
            .lock(&args.name)
            .ttl(args.ttl)
            .wait(wait)
            .auto_renew(true)
            .on_lost(move || {
                let _ = lost_tx.send(Event::Lost);
            })
            .acquire();
        match attempt {
            Ok(lock) => break lock,
            Err(Error::Timeout) if !args.nonblock && args.wait.is_none() => {}
            Err(Error::NotOwner | Error::Timeout) => {
                eprintln!("dlm: {}: lock is held by another owner", args.name);
                return Ok(ExitCode::from(args.conflict_exit_code));
            }
            Err(e) => return Err(e),
        }
    };

    let (program, rest) = args
        .command
        .split_first()
        .ok_or(Error::InvalidArgument("no command"))?;
    forward_signals();
    // CMD leads its own process group, so a lost lock stops everything it
    // started, not just its first process.
    let mut cmd = Command::new(program);
    cmd.args(rest).env("DLM_LOCK_NAME", &args.name);
    // A server without fencing tokens (JackrabbitDLM): no token to pass on.
    match held.token() {
        Some(token) => cmd.env("DLM_LOCK_TOKEN", token.to_string()),
        None => cmd.env_remove("DLM_LOCK_TOKEN"),
    };
    let mut child = match std::os::unix::process::CommandExt::process_group(&mut cmd, 0).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dlm: cannot run {program}: {e}");
            let _ = held.unlock();
            return Ok(ExitCode::from(
                if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
            ));
        }
    };
    let pid = i32::try_from(child.id()).unwrap_or(0);
    CHILD.store(pid, Ordering::SeqCst);
    // A signal that came while CMD was starting is passed on now.
    let early = PENDING.swap(0, Ordering::SeqCst);
    if early != 0 {
        signal(pid, early);
    }
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send(Event::Exited(status));
        }
    });

    let status = match rx.recv() {
        Ok(Event::Exited(status)) => status,
        Ok(Event::Lost) | Err(_) => {
            eprintln!("dlm: lost the lock {}; stopping the command", args.name);
            signal(pid, libc::SIGTERM);
            let exited = loop {
                match rx.recv_timeout(args.kill_grace) {
                    Ok(Event::Exited(_)) => break true,
                    Ok(Event::Lost) => {}
                    Err(_) => break false,
                }
            };
            if !exited {
                signal(pid, libc::SIGKILL);
                while let Ok(ev) = rx.recv() {
                    if matches!(ev, Event::Exited(_)) {
                        break;
                    }
                }
            }
            return Ok(ExitCode::from(EXIT_LOST));
        }
    };
    CHILD.store(0, Ordering::SeqCst);
    if let Err(e) = held.unlock() {
        eprintln!("dlm: releasing {}: {e}", args.name);
    }
    Ok(ExitCode::from(exit_code(status)))
}

/// Signals CMD's whole process group.
fn signal(pid: i32, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill(2) on our own child's process group.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// The command's exit status, or 128 + the signal that killed it (as
/// shells report it).
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(EXIT_FAILURE),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(EXIT_FAILURE),
        (None, None) => EXIT_FAILURE,
    }
}
