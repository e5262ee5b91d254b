//! `dlm watch PREFIX`: print every change of the names under PREFIX (or of
//! one name, with --name) as it happens, one line each:
//!
//! ```text
//! REVISION EVENT KIND NAME [token=T] [owner=ID] [value=VALUE]
//! 1796146341618444977 Granted Lock jobs/1 token=1796146341618444901
//! ```
//!
//! `owner` and `value` show only for the caller's own entries (`--id`).
//! The watch reconnects by itself and resumes after the last revision it
//! printed; if the server no longer keeps the events since then, it says so
//! on stderr (read the state again) and goes on from the current revision.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use dlm::{Client, Error, Event};

/// `dlm watch` arguments.
#[derive(Args)]
pub(crate) struct WatchArgs {
    /// The prefix of the names to watch (`""`: every name), or with
    /// --name, the one name.
    prefix: String,
    /// Watch the one name PREFIX, not every name that starts with it.
    #[arg(long)]
    name: bool,
    /// Resume: print every event after this revision first (as a previous
    /// run printed it).
    #[arg(long, value_name = "REVISION")]
    since: Option<u64>,
    /// Exit after this many events.
    #[arg(long, short = 'c', value_name = "N")]
    count: Option<u64>,
}

/// One event as a line.
fn line(e: &Event) -> String {
    let mut s = format!(
        "{} {} {} {}",
        e.revision,
        e.what.as_str(),
        e.subject.as_str(),
        e.name
    );
    if let Some(t) = e.token {
        let _ = write!(s, " token={t}");
    }
    if let Some(o) = &e.owner {
        let _ = write!(s, " owner={o}");
    }
    if let Some(v) = &e.value {
        let _ = write!(s, " value={}", String::from_utf8_lossy(v).escape_debug());
    }
    s
}

pub(crate) fn run(client: &Client, args: &WatchArgs) -> Result<ExitCode, Error> {
    let builder = if args.name {
        client.watch_name(&args.prefix)?
    } else {
        client.watch_prefix(&args.prefix)
    };
    let builder = match args.since {
        Some(r) => builder.since(r),
        None => builder,
    };
    let mut watch = builder.start()?;
    if let Some(r) = watch.revision() {
        eprintln!("dlm: watching from revision {r}");
    }
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    while args.count.is_none_or(|n| printed < n) {
        match watch.next_event() {
            Ok(e) => {
                if writeln!(out, "{}", line(&e))
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    // stdout closed (a pipe's reader left): done.
                    return Ok(ExitCode::SUCCESS);
                }
                printed += 1;
            }
            Err(Error::Conflict { current }) => {
                eprintln!(
                    "dlm: the server no longer keeps the events since revision {}: read the state again; watching from revision {current}",
                    watch
                        .revision()
                        .map_or_else(|| "?".into(), |r| r.to_string())
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(ExitCode::SUCCESS)
}
