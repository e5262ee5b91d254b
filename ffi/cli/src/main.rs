//! `dlm`: run a command while holding a lock, and talk to a dlm server from
//! the shell.
//!
//! ```text
//! dlm lock NAME [--ttl S] [--wait S | -n] [-E CODE] -- CMD ARGS...
//! dlm lock NAME --permits N | --shared | --write ...   a semaphore permit, a read/write lock
//! dlm lock NAME --session [--lock-delay S] ...   released as soon as this process dies
//! dlm lock NAME NAME... [-- CMD]   several locks at once, all or none (a multi-lock)
//! dlm lock NAME                  hold it until SIGINT/SIGTERM; prints the token
//! dlm get|put|erase|test|unlock|stats|version ...
//! dlm watch PREFIX [--since REVISION] [-c N]       print changes as they happen
//! dlm admin locks|lock|revoke ... -i ADMIN.cfg   the lock table (administrators)
//! dlm war [-f N] [-r ROUNDS] [--crash-rate P]      a lock fight, and its verdict
//! dlm chart LOG -o stats.png|stats.svg|stats.html  the statistics log, drawn
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
//! when it ends. Without CMD, `dlm lock` holds the lock (renewing it) until
//! it gets SIGINT, SIGTERM or SIGHUP, printing the token on stdout once it
//! has it, like `etcdctl lock`. While it waits, a progress line shows on
//! stderr if stderr is a terminal.

// A std binary: the workspace's no_std lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod admin;
#[cfg(feature = "chart")]
mod chart;
mod war;
mod watch;

use clap::{Args, Parser, Subcommand};
use dlm::{Client, Error, LockState, Options, Revision, Tls, Token};

/// Exit status when the server cannot be reached (sysexits `EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;
/// Exit status for any other failure (sysexits `EX_SOFTWARE`).
const EXIT_FAILURE: u8 = 70;
/// Exit status when the lock was lost while the command ran (`EX_TEMPFAIL`).
const EXIT_LOST: u8 = 75;

/// The end of `dlm --help`: exit codes, environment, examples.
const AFTER_HELP: &str = "\
Exit status:
  0        success (dlm lock CMD: CMD's own status)
  1        the lock is held by another owner or the wait ran out (dlm lock
           -E CODE chooses another), no such entry, a stale revision or token
  2        bad usage
  69       the server cannot be reached
  70       any other failure
  75       the lock was lost while CMD ran (CMD was stopped) or while held
  77       dlm admin: the server refused (not an administrator identity)
  126/127  CMD cannot be run / was not found
  128+N    CMD was killed by signal N

Environment:
  DLM_SERVER      the server, host:port (default 127.0.0.1:37373), or a cluster's
                  members, host:port,host:port,... (one is enough: the others
                  are learned from it); --server wins
  DLM_ID          the owner ID; --id wins
  DLM_LOCK_TOKEN  set for CMD by dlm lock: the grant's fencing token (unset if
                  the server gives none, as JackrabbitDLM does)
  DLM_LOCK_NAME   set for CMD by dlm lock: the lock's name
  DLM_IDENTITY_FILE  dlm admin: the administrator's identity file
  USER            part of the default owner ID of the data commands
  DLM_TLS_CA, DLM_TLS_CERT, DLM_TLS_KEY, DLM_TLS_SERVER_NAME, DLM_TLS=true
                  the --tls-* options

Examples:
  dlm lock backup --ttl 30 -w 60 -- ./backup.sh
      run ./backup.sh under the lock backup (waiting up to 60 s), like flock(1)
  dlm lock -n -E 0 nightly -- ./report.sh
      run it only if nobody holds nightly; exit 0 either way
  dlm lock maintenance
      hold maintenance until Ctrl-C, printing its fencing token
  dlm --id me put config \"$(cat config.json)\"
      store a value for 300 s (prints its revision); dlm --id me get config
  dlm --id me put --readers any status ok
      store a value every client may read (dlm get status); only me may change it
  dlm test backup
      free | mine TOKEN MS | taken MS
  dlm watch jobs/
      print every change under jobs/ as it happens (resumes by itself)
  dlm --server localhost:37373 --tls-ca ca.pem version
      over TLS, trusting ca.pem, checking the certificate is for localhost
";

/// The end of `dlm lock --help`.
const LOCK_AFTER_HELP: &str = "\
With CMD, dlm waits for the lock, runs CMD while holding it (renewing it
every third of --ttl), passes SIGINT/SIGTERM/SIGHUP on to CMD, releases the
lock when CMD ends and exits with CMD's status. CMD gets DLM_LOCK_TOKEN (the
fencing token: hand it to what the lock protects) and DLM_LOCK_NAME. If the
lock is lost meanwhile, CMD's process group gets SIGTERM, then SIGKILL after
--kill-grace, and dlm exits 75.

Without CMD, dlm holds the lock until it gets SIGINT, SIGTERM or SIGHUP,
renewing it, and prints the token on stdout once it has it ('-' if the
server gives none); it releases the lock and exits 0 on the signal, 75 if
the lock is lost.

While waiting, a progress line shows on stderr when stderr is a terminal.
Exit status: 1 (or -E CODE) if the lock cannot be had; see dlm --help.

Examples:
  dlm lock backup -w 60 -- ./backup.sh
  dlm lock maintenance                 hold until Ctrl-C; prints the token
  dlm lock gpu --permits 4 -- ./train.sh   one of 4 permits (a semaphore)
  dlm lock acct/1 acct/7 -- ./transfer.sh  both at once, all or none; CMD
      gets DLM_LOCK_NAMES (one a line) and DLM_LOCK_TOKENS (in that order)
  dlm lock config --shared -- ./read.sh    readers together, never beside
  dlm lock config --write -- ./write.sh    a writer (--write), writers alone
  dlm lock deploy > token & pid=$!     hold in the background; kill $pid releases
";

#[derive(Parser)]
#[command(
    name = "dlm",
    version,
    about = "Run commands under a dlm lock; hold a lock; read and write dlm values",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The dlm server (`host:port`), or a cluster's members
    /// (`host:port,host:port,...`): requests go to the leader and follow it
    /// when it changes.
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
    /// Connect with TLS, trusting the system's root certificates (unless
    /// --tls-ca says otherwise). The server's certificate must be valid
    /// for the host of --server (or --tls-server-name).
    #[arg(long, env = "DLM_TLS", global = true)]
    tls: bool,
    /// Connect with TLS, trusting the CA certificates of this PEM file.
    #[arg(long, env = "DLM_TLS_CA", global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Present this client certificate (PEM; with --tls-key). Its CN can
    /// stand for an identity on a server with --tls-client-ca.
    #[arg(
        long,
        env = "DLM_TLS_CERT",
        global = true,
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(
        long,
        env = "DLM_TLS_KEY",
        global = true,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// The name the server's certificate must be valid for, if not the
    /// host of --server.
    #[arg(long, env = "DLM_TLS_SERVER_NAME", global = true, value_name = "NAME")]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

impl Cli {
    /// The TLS settings the flags ask for, if any.
    fn tls(&self) -> Option<Tls> {
        if !self.tls && self.tls_ca.is_none() && self.tls_cert.is_none() {
            return None;
        }
        let mut tls = Tls::new();
        if let Some(name) = &self.tls_server_name {
            tls = tls.server_name(name);
        }
        let mut tls = tls.default_server_name(&self.server);
        if let Some(ca) = &self.tls_ca {
            tls = tls.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.client_cert(cert, key);
        }
        Some(tls)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run CMD while holding the lock NAME, or hold it until interrupted.
    #[command(after_help = LOCK_AFTER_HELP)]
    Lock(LockArgs),
    /// Print the value of NAME (raw bytes to stdout): yours, or another
    /// owner's that was shared with you (`dlm put --readers`).
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
        /// Who else may read it: `owner` (the default: you alone), `any`
        /// (every client), or identity names separated by commas
        /// (`alice,bob`: clients authenticated as them, by a TLS client
        /// certificate). They read it with `dlm get NAME`; only you may
        /// change or erase it.
        #[arg(long, default_value = "owner", value_parser = readers, value_name = "WHO")]
        readers: dlm::Readers,
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
    /// Show the cluster (members, leader, term, commit index, lag), or
    /// change its membership.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The lock table and revocation, for an administrator identity
    /// (`--identity-file`).
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// Fighters fight for one lock, each incrementing a counter through a
    /// fenced resource; prints the verdict (counter exact, exclusion and
    /// fencing held, grants per fighter, throughput). Exit 0 if it held.
    War(war::WarArgs),
    /// Draw a statistics log (dlm-server --log-file, or JackrabbitDLM's)
    /// as a chart: one line per counter over time (.png, .svg or .html).
    #[cfg(feature = "chart")]
    Chart(chart::ChartArgs),
    /// Print every change of the names under PREFIX as it happens (locks
    /// granted, released, expired; values put, erased, expired), one line
    /// each; reconnects and resumes by itself.
    Watch(watch::WatchArgs),
    /// Print the server's version.
    Version,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Members, leader, term, commit and applied index, each member's lag
    /// (`--json` for the server's answer as it is).
    Status {
        /// Print the JSON the server answered.
        #[arg(long)]
        json: bool,
    },
    /// Add member MEMBER, listening for its peers at PEER (HOST:PORT); then
    /// start it with `dlm-server --node MEMBER --peers ... --join`.
    Add {
        /// The new member's ID (1 to 255).
        member: u64,
        /// Its peer address.
        peer: String,
    },
    /// Remove member MEMBER (it stops by itself).
    Remove {
        /// The member's ID.
        member: u64,
    },
    /// Replace member OLD by NEW at PEER: add NEW, then remove OLD (start
    /// NEW with --join between the two, when told).
    Replace {
        /// The member leaving.
        old: u64,
        /// The member arriving.
        new: u64,
        /// The new member's peer address.
        peer: String,
    },
    /// Hand the leadership to member MEMBER.
    Transfer {
        /// The member to lead.
        member: u64,
    },
}

// Command-line switches are bools by nature.
#[allow(clippy::struct_excessive_bools)]
#[derive(Args)]
struct LockArgs {
    /// The lock; several (at most 16) are taken together, all or none,
    /// without deadlock (a multi-lock: exclusive locks only).
    #[arg(required = true, num_args = 1.., value_name = "NAME")]
    names: Vec<String>,
    /// Seconds the server keeps the lock between renewals.
    #[arg(long, default_value = "30", value_parser = seconds)]
    ttl: Duration,
    /// Wait at most this many seconds for the lock (default: forever).
    #[arg(long, short = 'w', value_parser = seconds, conflicts_with = "nonblock")]
    wait: Option<Duration>,
    /// Do not wait: fail at once if the lock is held.
    #[arg(long, short = 'n')]
    nonblock: bool,
    /// Take one permit of NAME as a counting semaphore of N permits (N is
    /// fixed by its first user while anyone holds or waits).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with_all = ["shared", "write"])]
    permits: Option<u32>,
    /// Take NAME as a read/write lock, on its shared (read) side: beside
    /// other readers, never beside a writer.
    #[arg(long, conflicts_with = "write")]
    shared: bool,
    /// Take NAME as a read/write lock, on its exclusive (write) side.
    #[arg(long)]
    write: bool,
    /// Bind the lock to a server session of this process's own: the
    /// server releases it as soon as this process dies or stops answering
    /// for TTL seconds (the session's TTL; it is kept alive every third of
    /// it), instead of when a lock TTL runs out. The lock itself lasts at
    /// most 3543 s.
    #[arg(long)]
    session: bool,
    /// With --session: after the session ends, nobody may take NAME for
    /// this many seconds (at most 60), in case this process was only slow.
    #[arg(long, value_parser = seconds, requires = "session")]
    lock_delay: Option<Duration>,
    /// Exit status when the lock cannot be had.
    #[arg(long, short = 'E', default_value = "1")]
    conflict_exit_code: u8,
    /// Seconds between SIGTERM and SIGKILL when the lock is lost.
    #[arg(long, default_value = "10", value_parser = seconds)]
    kill_grace: Duration,
    /// The command and its arguments; without one, hold the lock until
    /// SIGINT/SIGTERM/SIGHUP.
    #[arg(last = true, value_name = "CMD")]
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
    match cli.command {
        Cmd::Admin(cmd) => return admin::run(&cli.server, cli.timeout, &cmd),
        Cmd::War(args) => return war::run(&cli.server, cli.timeout, args),
        #[cfg(feature = "chart")]
        Cmd::Chart(args) => return chart::run(&args),
        _ => {}
    }
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
            tls: cli.tls(),
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

/// `--readers`: `owner`, `any` or identity names.
fn readers(text: &str) -> Result<dlm::Readers, String> {
    dlm::Readers::parse(text).map_err(|e| e.to_string())
}

fn run(client: &Client, command: Cmd) -> Result<ExitCode, Error> {
    let mut out = std::io::stdout().lock();
    match command {
        Cmd::Lock(args) => return lock(client, &args),
        Cmd::Watch(args) => return watch::run(client, &args),
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
            readers,
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
            let mut put = client.put_with(&name, &bytes).ttl(ttl).readers(readers);
            if let Some(r) = revision {
                put = put.if_revision(Revision(r));
            }
            let Revision(r) = put.send()?;
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
        Cmd::Cluster(c) => return cluster(client, c, &mut out),
        // Handled before connecting, in main.
        Cmd::Admin(_) | Cmd::War(_) => {}
        #[cfg(feature = "chart")]
        Cmd::Chart(_) => {}
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
    /// SIGINT, SIGTERM or SIGHUP, while holding without a command.
    Signal(libc::c_int),
}

/// A lock this command holds: renewed by its lease, or bound to a session.
enum Held {
    Lease(dlm::Lock),
    Session(dlm::SessionLock, dlm::Session),
    /// Several names, taken together (`dlm lock A B ...`).
    Multi(dlm::MultiLock),
}

/// The tokens of a multi-lock, space-separated in the order of its names
/// (`-` for a name without one).
fn tokens_text(set: &dlm::MultiLock) -> String {
    set.tokens()
        .iter()
        .map(|t| t.map_or_else(|| "-".to_owned(), |t| t.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Held {
    fn token(&self) -> Option<dlm::Token> {
        match self {
            Self::Lease(l) => l.token(),
            Self::Session(l, _) => Some(l.token()),
            Self::Multi(set) => set.tokens().first().copied().flatten(),
        }
    }

    fn unlock(self) -> Result<(), Error> {
        match self {
            Self::Lease(l) => l.unlock(),
            Self::Multi(set) => set.unlock(),
            Self::Session(l, s) => {
                let r = l.unlock();
                s.close();
                r
            }
        }
    }
}

/// The longest TTL of a session-bound lock (the anonymous limit).
const SESSION_LOCK_TTL: Duration = Duration::from_secs(3543);

/// Takes `args.name` bound to a new session (`--session`).
fn acquire_in_session(
    client: &Client,
    args: &LockArgs,
    wait: Duration,
    lost: mpsc::Sender<Event>,
) -> Result<Held, Error> {
    let session = client.session(args.ttl)?;
    session.on_lost(move || {
        let _ = lost.send(Event::Lost);
    });
    let mut builder = session
        .lock(&args.names[0])
        .ttl(SESSION_LOCK_TTL)
        .wait(wait)
        .lock_delay(args.lock_delay.unwrap_or_default());
    builder = match (args.permits, args.shared, args.write) {
        (Some(n), _, _) => builder.permits(n),
        (None, true, _) => builder.read_write(false),
        (None, false, true) => builder.read_write(true),
        (None, false, false) => builder,
    };
    let lock = builder.acquire()?;
    Ok(Held::Session(lock, session))
}

impl LockArgs {
    /// The names, for messages.
    fn label(&self) -> String {
        self.names.join(" ")
    }
}

fn lock(client: &Client, args: &LockArgs) -> Result<ExitCode, Error> {
    // The server bounds a wait (3543 s for anonymous clients): to wait
    // "forever", wait in rounds.
    const ROUND: Duration = Duration::from_secs(3000);
    if args.names.len() > 1 && (args.permits.is_some() || args.shared || args.write || args.session)
    {
        eprintln!(
            "dlm: several names are taken as exclusive locks, without --permits, --shared, --write or --session"
        );
        return Ok(ExitCode::from(2));
    }
    let (tx, rx) = mpsc::channel();
    let lost_tx = tx.clone();
    let hold = args.command.is_empty();
    // Holding without a command: a signal aborts the wait, or releases the
    // lock once held.
    let cancel = dlm::CancelToken::new();
    // (A session's wait cannot be cancelled: a signal then ends the
    // process, and its connection's close takes it out of the queue.)
    if hold && !args.session {
        catch_signals(tx.clone(), cancel.clone())?;
    }
    let progress = (!args.nonblock && std::io::stderr().is_terminal())
        .then(|| Progress::start(&args.label(), args.wait));
    let held = loop {
        let wait = match (args.nonblock, args.wait) {
            (true, _) => Duration::ZERO,
            (false, Some(w)) => w,
            (false, None) => ROUND,
        };
        let lost_tx = lost_tx.clone();
        if args.session {
            match acquire_in_session(client, args, wait, lost_tx) {
                Ok(held) => break held,
                Err(Error::Timeout) if !args.nonblock && args.wait.is_none() => continue,
                Err(Error::NotOwner | Error::Timeout) => {
                    drop(progress);
                    eprintln!("dlm: {}: lock is held by another owner", args.label());
                    return Ok(ExitCode::from(args.conflict_exit_code));
                }
                Err(Error::Mismatch(why)) => {
                    drop(progress);
                    eprintln!(
                        "dlm: {}: {}",
                        args.label(),
                        why.replace("FileName", "the name")
                    );
                    return Ok(ExitCode::from(args.conflict_exit_code));
                }
                Err(e) => {
                    drop(progress);
                    return Err(e);
                }
            }
        }
        if args.names.len() > 1 {
            let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
            let lost_tx = lost_tx.clone();
            let attempt = client
                .lock_all(&names)
                .ttl(args.ttl)
                .wait(wait)
                .auto_renew(true)
                .on_lost(move || {
                    let _ = lost_tx.send(Event::Lost);
                })
                .cancel(&cancel)
                .acquire()
                .map(Held::Multi);
            match attempt {
                Ok(held) => break held,
                Err(Error::Cancelled) => {
                    drop(progress);
                    let sig = match rx.try_recv() {
                        Ok(Event::Signal(sig)) => sig,
                        _ => libc::SIGINT,
                    };
                    eprintln!("dlm: {}: gave up waiting", args.label());
                    return Ok(ExitCode::from(exit_code_for_signal(sig)));
                }
                Err(Error::Timeout) if !args.nonblock && args.wait.is_none() => continue,
                Err(Error::NotOwner | Error::Timeout) => {
                    drop(progress);
                    eprintln!(
                        "dlm: {}: a lock is held by another owner (or by this ID)",
                        args.label()
                    );
                    return Ok(ExitCode::from(args.conflict_exit_code));
                }
                Err(Error::Mismatch(why)) => {
                    drop(progress);
                    eprintln!("dlm: {}: {why}", args.label());
                    return Ok(ExitCode::from(args.conflict_exit_code));
                }
                Err(e) => {
                    drop(progress);
                    return Err(e);
                }
            }
        }
        let builder = match (args.permits, args.shared, args.write) {
            (Some(n), _, _) => client.semaphore(&args.names[0], n),
            (None, true, _) => client.read_lock(&args.names[0]),
            (None, false, true) => client.write_lock(&args.names[0]),
            (None, false, false) => client.lock(&args.names[0]),
        };
        let attempt = builder
            .ttl(args.ttl)
            .wait(wait)
            .auto_renew(true)
            .on_lost(move || {
                let _ = lost_tx.send(Event::Lost);
            })
            .cancel(&cancel)
            .acquire();
        match attempt {
            Ok(lock) => break Held::Lease(lock),
            Err(Error::Cancelled) => {
                drop(progress);
                let sig = match rx.try_recv() {
                    Ok(Event::Signal(sig)) => sig,
                    _ => libc::SIGINT,
                };
                eprintln!("dlm: {}: gave up waiting", args.label());
                return Ok(ExitCode::from(exit_code_for_signal(sig)));
            }
            Err(Error::Timeout) if !args.nonblock && args.wait.is_none() => {}
            Err(Error::NotOwner | Error::Timeout) => {
                drop(progress);
                eprintln!("dlm: {}: lock is held by another owner", args.label());
                return Ok(ExitCode::from(args.conflict_exit_code));
            }
            Err(Error::Mismatch(why)) => {
                drop(progress);
                eprintln!(
                    "dlm: {}: {}",
                    args.label(),
                    why.replace("FileName", "the name")
                );
                return Ok(ExitCode::from(args.conflict_exit_code));
            }
            Err(e) => {
                drop(progress);
                return Err(e);
            }
        }
    };
    drop(progress);
    if hold {
        if args.session {
            catch_signals(tx.clone(), cancel.clone())?;
        }
        return hold_until_signalled(held, &args.label(), &rx);
    }

    let (program, rest) = args
        .command
        .split_first()
        .ok_or(Error::InvalidArgument("no command"))?;
    forward_signals();
    // CMD leads its own process group, so a lost lock stops everything it
    // started, not just its first process.
    let mut cmd = Command::new(program);
    cmd.args(rest).env("DLM_LOCK_NAME", &args.names[0]);
    // A server without fencing tokens (JackrabbitDLM): no token to pass on.
    match held.token() {
        Some(token) => cmd.env("DLM_LOCK_TOKEN", token.to_string()),
        None => cmd.env_remove("DLM_LOCK_TOKEN"),
    };
    if let Held::Multi(set) = &held {
        // Every name, one a line, and its token, in the same order.
        cmd.env("DLM_LOCK_NAMES", args.names.join("\n"))
            .env("DLM_LOCK_TOKENS", tokens_text(set));
    } else {
        cmd.env_remove("DLM_LOCK_NAMES")
            .env_remove("DLM_LOCK_TOKENS");
    }
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

    // (No signal events here: with CMD, signals are forwarded to it.)
    let status = match rx.recv() {
        Ok(Event::Exited(status)) => status,
        Ok(Event::Lost | Event::Signal(_)) | Err(_) => {
            eprintln!("dlm: lost the lock {}; stopping the command", args.label());
            signal(pid, libc::SIGTERM);
            let exited = loop {
                match rx.recv_timeout(args.kill_grace) {
                    Ok(Event::Exited(_)) => break true,
                    Ok(Event::Lost | Event::Signal(_)) => {}
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
        eprintln!("dlm: releasing {}: {e}", args.label());
    }
    Ok(ExitCode::from(exit_code(status)))
}

/// Holds `held` (renewed by its own thread) until a signal or its loss.
fn hold_until_signalled(
    held: Held,
    name: &str,
    events: &mpsc::Receiver<Event>,
) -> Result<ExitCode, Error> {
    // A multi-lock prints every token, in the order of its names.
    let token = match &held {
        Held::Multi(set) => tokens_text(set),
        _ => held
            .token()
            .map_or_else(|| "-".to_owned(), |t| t.to_string()),
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout is no reason to give the lock up.
    let _ = writeln!(out, "{token}").and_then(|()| out.flush());
    drop(out);
    if std::io::stderr().is_terminal() {
        eprintln!("dlm: holding {name} (token {token}); Ctrl-C releases it");
    }
    match events.recv() {
        Ok(Event::Signal(_)) => match held.unlock() {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(Error::LockLost) => {
                eprintln!("dlm: lost the lock {name} before releasing it");
                Ok(ExitCode::from(EXIT_LOST))
            }
            Err(e) => Err(e),
        },
        Ok(Event::Lost | Event::Exited(_)) | Err(_) => {
            eprintln!("dlm: lost the lock {name}");
            Ok(ExitCode::from(EXIT_LOST))
        }
    }
}

/// The write end of the pipe the signal handler reports signals through.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn report_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = u8::try_from(sig).unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; one byte from the stack.
        #[allow(unsafe_code)]
        unsafe {
            libc::write(fd, (&raw const byte).cast(), 1);
        }
    }
}

/// Turns SIGINT/SIGTERM/SIGHUP into [`Event::Signal`]s on `events` (and a
/// cancelled wait), through a pipe and a thread that reads it.
fn catch_signals(events: mpsc::Sender<Event>, cancel: dlm::CancelToken) -> Result<(), Error> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    #[allow(unsafe_code)]
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r != 0 {
        return Err(Error::System(std::io::Error::last_os_error()));
    }
    let [read_end, write_end] = fds;
    SIGNAL_PIPE.store(write_end, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("dlm-signals".into())
        .spawn(move || {
            loop {
                let mut byte = 0u8;
                // SAFETY: reading one byte into a local from our own pipe.
                #[allow(unsafe_code)]
                let n = unsafe { libc::read(read_end, (&raw mut byte).cast(), 1) };
                if n == 1 {
                    cancel.cancel();
                    if events.send(Event::Signal(libc::c_int::from(byte))).is_err() {
                        return;
                    }
                } else if n == 0
                    || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    return;
                }
            }
        })
        .map_err(Error::System)?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing an async-signal-safe handler.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(sig, report_signal as *const () as libc::sighandler_t);
        }
    }
    Ok(())
}

/// The line on a terminal that says `dlm lock` is waiting, and for how
/// long; cleared when dropped. It first shows after a moment, so a lock
/// granted at once shows nothing.
struct Progress {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(name: &str, limit: Option<Duration>) -> Self {
        const FIRST: Duration = Duration::from_millis(300);
        const EVERY: Duration = Duration::from_millis(500);
        let (stop, stopped) = mpsc::channel::<()>();
        let name = name.to_owned();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("dlm-progress".into())
            .spawn(move || {
                let mut shown = false;
                let mut pause = FIRST;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(pause) {
                    let waited = started.elapsed().as_secs();
                    let of = limit
                        .map_or_else(String::new, |l| format!(" of {}s", l.as_secs_f64().ceil()));
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2Kdlm: waiting for the lock {name}: {waited}s{of} (Ctrl-C gives up)"
                    );
                    let _ = err.flush();
                    shown = true;
                    pause = EVERY;
                }
                if shown {
                    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// 128 + `sig`, as shells report a process killed by a signal.
fn exit_code_for_signal(sig: libc::c_int) -> u8 {
    u8::try_from((128 + sig) & 0xff).unwrap_or(EXIT_FAILURE)
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
        (None, Some(sig)) => exit_code_for_signal(sig),
        (None, None) => EXIT_FAILURE,
    }
}

/// `dlm cluster ...`.
fn cluster(
    client: &Client,
    cmd: ClusterCmd,
    out: &mut impl std::io::Write,
) -> Result<ExitCode, Error> {
    use dlm_core::protocol::ClusterOp;
    match cmd {
        ClusterCmd::Status { json } => {
            let text = client.cluster(ClusterOp::Status)?;
            if json {
                let _ = writeln!(out, "{text}");
            } else {
                print_status(&text, out);
            }
        }
        ClusterCmd::Add { member, peer } => {
            client.cluster(ClusterOp::Add {
                node: member,
                peer: &peer,
            })?;
            let _ = writeln!(
                out,
                "member {member} added at {peer}: start it with --node {member} --join"
            );
        }
        ClusterCmd::Remove { member } => {
            client.cluster(ClusterOp::Remove { node: member })?;
            let _ = writeln!(out, "member {member} removed");
        }
        ClusterCmd::Replace { old, new, peer } => {
            client.cluster(ClusterOp::Add {
                node: new,
                peer: &peer,
            })?;
            let _ = writeln!(
                out,
                "member {new} added at {peer}: start it with --node {new} --join"
            );
            client.cluster(ClusterOp::Remove { node: old })?;
            let _ = writeln!(out, "member {old} removed");
        }
        ClusterCmd::Transfer { member } => {
            client.cluster(ClusterOp::Transfer { node: member })?;
            let _ = writeln!(out, "leadership handed to member {member}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The cluster's state as a table.
fn print_status(text: &str, out: &mut impl std::io::Write) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        let _ = writeln!(out, "{text}");
        return;
    };
    if v.get("Mode").and_then(|m| m.as_str()) == Some("single") {
        let _ = writeln!(out, "a single server (not a cluster)");
        return;
    }
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let leader = num("Leader");
    let _ = writeln!(
        out,
        "leader {}, term {}, commit {}, applied {} (as member {} sees it)",
        if leader == 0 {
            "none".into()
        } else {
            leader.to_string()
        },
        num("Term"),
        num("Commit"),
        num("Applied"),
        num("Node")
    );
    let _ = writeln!(
        out,
        "{:>4}  {:<22} {:>8} {:>6}",
        "ID", "PEER", "MATCHED", "LAG"
    );
    for m in v
        .get("Members")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        let id = m.get("ID").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let peer = m.get("Peer").and_then(|p| p.as_str()).unwrap_or("?");
        let matched = m.get("Matched").and_then(serde_json::Value::as_u64);
        let lag = m.get("Lag").and_then(serde_json::Value::as_u64);
        let show = |x: Option<u64>| x.map_or_else(|| "-".into(), |x| x.to_string());
        let _ = writeln!(
            out,
            "{:>4}{} {:<22} {:>8} {:>6}",
            id,
            if id == leader { "*" } else { " " },
            peer,
            show(matched),
            show(lag)
        );
    }
}
