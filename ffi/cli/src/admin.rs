//! `dlm admin`: an administrator's look at the lock table, and revocation.
//!
//! The requests carry an administrator identity's credentials, read from
//! its identity file (`dlm-server identity new NAME --admin` makes one;
//! the name is the file's stem), so the secret never shows on a command
//! line. They go over one plain connection built with dlm-core's
//! sans-I/O client: one request, one answer line, bounded in size and
//! time.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use dlm_core::client::{Admin, Client};
use dlm_core::protocol::{AdminOp, Credentials, Resource, Response, Token};

/// Exit status when the server refuses: not an administrator (sysexits
/// `EX_NOPERM`).
const EXIT_NOPERM: u8 = 77;
/// The longest answer read (a listing is capped at 1000 locks).
const MAX_ANSWER: u64 = 64 << 20;

#[derive(Subcommand)]
pub(crate) enum AdminCmd {
    /// List live locks whose names start with PREFIX (all without it), in
    /// name order: name, holder ID, token, held for, time left, waiters.
    Locks {
        /// The start of the names.
        prefix: Option<String>,
        /// Print the JSON the server answered.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        who: Identity,
    },
    /// One lock: its holder, its grant and the waiters queued for it.
    Lock {
        /// The lock.
        name: String,
        /// Print the JSON the server answered.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        who: Identity,
    },
    /// Take lock NAME away from its holder (as if it had unlocked it); the
    /// first waiter gets it with a new token. Prints the revoked token.
    Revoke {
        /// The lock.
        name: String,
        /// Only if its current grant has this token.
        #[arg(long)]
        token: Option<u64>,
        #[command(flatten)]
        who: Identity,
    },
}

#[derive(Args)]
pub(crate) struct Identity {
    /// The administrator's identity file (its name is the file's stem).
    #[arg(long, short = 'i', env = "DLM_IDENTITY_FILE")]
    identity_file: PathBuf,
}

fn fail(code: u8, what: impl std::fmt::Display) -> ExitCode {
    eprintln!("dlm: {what}");
    ExitCode::from(code)
}

/// The identity's name and secret, from its file.
fn read_identity(path: &Path) -> Result<(String, String), String> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("{}: no identity name in the file name", path.display()))?
        .to_owned();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let secret = v["Identity"]
        .as_str()
        .ok_or_else(|| format!("{}: no \"Identity\"", path.display()))?
        .to_owned();
    Ok((name, secret))
}

/// Sends `op` and returns the answer line.
fn exchange(
    server: &str,
    timeout: Duration,
    name: &str,
    secret: &str,
    op: AdminOp<'_>,
) -> std::io::Result<Vec<u8>> {
    let addr = server.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the server")
    })?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let client = Client::new("dlm-admin").with_credentials(Credentials { name, secret });
    let mut line = Vec::new();
    client
        .admin(op)
        .write(&mut line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    (&stream).write_all(&line)?;
    let mut answer = Vec::new();
    BufReader::new((&stream).take(MAX_ANSWER)).read_until(b'\n', &mut answer)?;
    if !answer.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed without an answer",
        ));
    }
    Ok(answer)
}

fn secs(v: &serde_json::Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |s| format!("{s:.1}s"))
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Runs an admin command against `server`.
pub(crate) fn run(server: &str, timeout: Duration, cmd: &AdminCmd) -> ExitCode {
    let (op, json, who, name_arg) = match cmd {
        AdminCmd::Locks { prefix, json, who } => (
            AdminOp::Locks {
                prefix: prefix.as_deref().unwrap_or(""),
            },
            *json,
            who,
            "",
        ),
        AdminCmd::Lock { name, json, who } => (
            AdminOp::Lock {
                name: Resource(name),
            },
            *json,
            who,
            name.as_str(),
        ),
        AdminCmd::Revoke { name, token, who } => (
            AdminOp::Revoke {
                name: Resource(name),
                token: token.map(Token),
            },
            false,
            who,
            name.as_str(),
        ),
    };
    let (name, secret) = match read_identity(&who.identity_file) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    let mut line = match exchange(server, timeout, &name, &secret, op) {
        Ok(l) => l,
        Err(e) => return fail(69, format!("{server}: {e}")),
    };
    let response = match Response::parse(&mut line) {
        Ok((_, r)) => r,
        Err(e) => return fail(70, format!("a bad answer: {e}")),
    };
    let answer = match dlm_core::client::answer::admin(&response) {
        Ok(a) => a,
        Err(e) if e.kind == dlm_core::client::ErrorKind::NotOwner => {
            return fail(1, format!("{name_arg}: its grant has another token"));
        }
        Err(e) => return fail(EXIT_NOPERM, format!("refused: {e}")),
    };
    let mut out = std::io::stdout().lock();
    match answer {
        Admin::NoSuchLock | Admin::Revoked(None) => {
            return fail(1, format!("{name_arg}: not locked"));
        }
        Admin::Revoked(Some(t)) => {
            let _ = writeln!(out, "{}", t.0);
        }
        Admin::Table(table) if json => {
            let _ = writeln!(out, "{table}");
        }
        Admin::Table(table) => {
            let v: serde_json::Value = match serde_json::from_str(table) {
                Ok(v) => v,
                Err(e) => return fail(70, format!("a bad table: {e}")),
            };
            print_table(&v, &mut out);
        }
    }
    ExitCode::SUCCESS
}

/// What kind of entry `l` is, for a table: `lock`, `semaphore 2/3`
/// (holds of permits), or `rwlock` with the mode of `hold` if one is given.
fn kind(l: &serde_json::Value, hold: Option<&serde_json::Value>) -> String {
    match l["Kind"].as_str() {
        Some("semaphore") => format!(
            "semaphore {}/{}",
            l["Holds"].as_u64().unwrap_or(0),
            l["Permits"].as_u64().unwrap_or(0)
        ),
        Some("rwlock") => match hold.and_then(|h| h["Mode"].as_str()) {
            Some(m) => format!("rwlock {}", m.to_ascii_lowercase()),
            None => "rwlock".into(),
        },
        // An older server sends no kind: its entries are all locks.
        _ => "lock".into(),
    }
}

/// How hold `h` is tied to a session, if it is: `session` (with its
/// lock-delay), or `closed` while a lock-delay keeps its name shut after
/// the session's end.
fn tie(h: &serde_json::Value) -> Option<String> {
    if h["Closed"].as_bool() == Some(true) {
        return Some("closed".into());
    }
    if h["Session"].as_bool() != Some(true) {
        return None;
    }
    Some(match h["LockDelay"].as_f64() {
        Some(d) => format!("session, delay {d}s"),
        None => "session".into(),
    })
}

/// The holds of entry `l`: a semaphore's or read/write lock's `Holders`,
/// or the entry itself for an exclusive lock (its holder is in it).
fn holds(l: &serde_json::Value) -> Vec<&serde_json::Value> {
    match l["Holders"].as_array() {
        Some(h) => h.iter().collect(),
        None => vec![l],
    }
}

fn print_table(v: &serde_json::Value, out: &mut impl std::io::Write) {
    if let Some(locks) = v["Locks"].as_array() {
        let _ = writeln!(
            out,
            "{:<32} {:<16} {:<24} {:>20} {:>10} {:>10} {:>7}  SESSION",
            "NAME", "KIND", "HOLDER", "TOKEN", "HELD", "LEFT", "WAITERS"
        );
        for l in locks {
            let hs = holds(l);
            if hs.is_empty() {
                // Only waiters keep it.
                let _ = writeln!(
                    out,
                    "{:<32} {:<16} {:<24} {:>20} {:>10} {:>10} {:>7}",
                    text(&l["FileName"]),
                    kind(l, None),
                    "-",
                    "-",
                    "-",
                    "-",
                    l["Waiters"].as_u64().unwrap_or(0)
                );
            }
            // One row per hold: a semaphore's holders each have a token.
            for h in hs {
                let _ = writeln!(
                    out,
                    "{:<32} {:<16} {:<24} {:>20} {:>10} {:>10} {:>7}  {}",
                    text(&l["FileName"]),
                    kind(l, Some(h)),
                    text(&h["ID"]),
                    h["Token"].as_u64().unwrap_or(0),
                    secs(&h["Held"]),
                    secs(&h["Expire"]),
                    l["Waiters"].as_u64().unwrap_or(0),
                    tie(h).unwrap_or_else(|| "-".into())
                );
            }
            let shown = l["Holders"].as_array().map_or(0, Vec::len) as u64;
            if let Some(all) = l["Holds"].as_u64()
                && all > shown
            {
                let _ = writeln!(
                    out,
                    "{:<32} ({} more holds: dlm admin lock {} lists them)",
                    "",
                    all - shown,
                    text(&l["FileName"])
                );
            }
        }
        if v["More"].as_bool() == Some(true) {
            let _ = writeln!(
                out,
                "({} locks match; the first {} shown: narrow the prefix)",
                v["Count"],
                locks.len()
            );
        }
    } else {
        let l = &v["Lock"];
        let _ = writeln!(out, "name     {}", text(&l["FileName"]));
        let _ = writeln!(out, "kind     {}", kind(l, None));
        if l["Holders"].is_array() {
            for h in holds(l) {
                let _ = writeln!(
                    out,
                    "hold     {} token {}{} held {} left {}{}",
                    text(&h["ID"]),
                    h["Token"].as_u64().unwrap_or(0),
                    h["Mode"]
                        .as_str()
                        .map_or_else(String::new, |m| format!(" ({})", m.to_ascii_lowercase())),
                    secs(&h["Held"]),
                    secs(&h["Expire"]),
                    tie(h).map_or_else(String::new, |t| format!(" [{t}]"))
                );
            }
        } else {
            let _ = writeln!(out, "holder   {}", text(&l["ID"]));
            let _ = writeln!(out, "token    {}", l["Token"].as_u64().unwrap_or(0));
            let _ = writeln!(out, "held     {}", secs(&l["Held"]));
            let _ = writeln!(out, "left     {}", secs(&l["Expire"]));
            if let Some(t) = tie(l) {
                let _ = writeln!(out, "session  {t}");
            }
        }
        let _ = writeln!(out, "waiters  {}", l["Waiters"].as_u64().unwrap_or(0));
        for (i, w) in l["Queue"].as_array().into_iter().flatten().enumerate() {
            let _ = writeln!(
                out,
                "  {:>3}. {:<24} waited {:>8}, gives up in {:>8}, asks {}{}",
                i + 1,
                text(&w["ID"]),
                secs(&w["Waited"]),
                secs(&w["WaitLeft"]),
                secs(&w["Expire"]),
                w["Mode"]
                    .as_str()
                    .map_or_else(String::new, |m| format!(", {}", m.to_ascii_lowercase()))
            );
        }
    }
}
