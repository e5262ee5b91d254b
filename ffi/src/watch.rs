//! Watches: being told when a lock, permit or value changes, instead of
//! polling (PROTOCOL.md section 8, "Watches").
//!
//! A [`Watch`] owns a connection of its own (a watching connection takes
//! no other request) and reads event lines from it. It is an
//! [`Iterator`] of events, blocking for each; [`Watch::next_timeout`]
//! waits at most so long, and [`Watch::for_each_event`] calls a closure
//! until it says stop. When the connection fails or the server cuts the
//! watcher off (it read too slowly), the watch reconnects, to any server
//! of the client, and resumes after the last revision it saw: no event is
//! missed and none is seen twice. If the server no longer keeps the
//! events since then, the next call returns [`Error::Conflict`] with the
//! current revision; read the state again, then go on iterating (the
//! watch continues from the current revision).
//!
//! ```no_run
//! # fn main() -> dlm::Result<()> {
//! let client = dlm::Client::connect("127.0.0.1:37373")?;
//! for event in client.watch_prefix("jobs/").start()? {
//!     let event = event?;
//!     println!("{} {} {} at {}", event.what.as_str(), event.subject.as_str(), event.name, event.revision);
//! }
//! # Ok(())
//! # }
//! ```

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use dlm_core::engine::{Subject, What};
use dlm_core::protocol::{Response, Revision, Status, Token, WatchEvent, WatchScope};

use crate::client::{Client, Shared, check_name};
use crate::error::{Error, Result};

/// The longest event line read (a value is at most the server's limit).
const MAX_LINE: u64 = 64 << 20;
/// How long to wait between rounds of reconnecting, at first and at most.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// Rounds over every server before a reconnect gives up.
const ROUNDS: u32 = 8;

/// One change, as a watcher is told it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its revision: the same on every member of a cluster, and greater
    /// than every revision before it.
    pub revision: u64,
    /// What happened.
    pub what: What,
    /// To what kind of name (a lock, a semaphore permit, a read/write
    /// hold, a value).
    pub subject: Subject,
    /// The lock name or data key.
    pub name: String,
    /// The owner, only if this client may read it (its own entries, and
    /// values shared with it).
    pub owner: Option<String>,
    /// The grant's fencing token (locks and holds).
    pub token: Option<Token>,
    /// The value, decoded, only if this client may read it (`Put`).
    pub value: Option<Vec<u8>>,
    /// The value's own revision (`Put`).
    pub data_revision: Option<Revision>,
}

#[derive(Clone, Debug)]
enum Scope {
    Name(String),
    Prefix(String),
}

/// Sets up a [`Watch`]; from [`Client::watch_prefix`] or
/// [`Client::watch_name`].
#[derive(Debug)]
#[must_use = "a watch starts with start()"]
pub struct WatchBuilder<'c> {
    client: &'c Client,
    scope: Scope,
    since: Option<u64>,
}

impl WatchBuilder<'_> {
    /// Resume: every event after `revision` first (if the server still
    /// keeps them; else `start` fails with [`Error::Conflict`]).
    pub fn since(mut self, revision: u64) -> Self {
        self.since = Some(revision);
        self
    }

    /// Opens the watch's connection and subscribes.
    pub fn start(self) -> Result<Watch> {
        let mut w = Watch {
            shared: self.client.shared.clone(),
            scope: self.scope,
            conn: None,
            line: Vec::new(),
            revision: self.since,
            deadline: None,
        };
        w.subscribe()?;
        Ok(w)
    }
}

impl Client {
    /// Watches every name (locks and values) that starts with `prefix`
    /// (empty: every name).
    pub fn watch_prefix(&self, prefix: &str) -> WatchBuilder<'_> {
        WatchBuilder {
            client: self,
            scope: Scope::Prefix(prefix.to_owned()),
            since: None,
        }
    }

    /// Watches one name: its lock (or semaphore, or read/write lock) and
    /// its value.
    pub fn watch_name(&self, name: &str) -> Result<WatchBuilder<'_>> {
        check_name(name)?;
        Ok(WatchBuilder {
            client: self,
            scope: Scope::Name(name.to_owned()),
            since: None,
        })
    }
}

/// A subscription to changes, over a connection of its own: an
/// [`Iterator`] of events that never ends by itself. It reconnects (to
/// any server of the client) when its connection fails or the server cuts
/// it off, and resumes after the last revision it gave, without a gap; if
/// the server no longer keeps those events, the next call returns
/// [`Error::Conflict`] (read the state again; it then goes on from the
/// current revision).
pub struct Watch {
    shared: Arc<Shared>,
    scope: Scope,
    conn: Option<BufReader<crate::tls::Stream>>,
    /// Bytes of a line not yet complete (a read timed out in its middle).
    line: Vec<u8>,
    /// The last revision seen (or started from); `None` before the first
    /// subscription or after the history was lost.
    revision: Option<u64>,
    /// When the current call gives up waiting.
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("scope", &self.scope)
            .field("revision", &self.revision)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

/// What one read gave.
enum Got {
    Event(Event),
    /// Nothing within the deadline.
    Idle,
    /// The connection is no longer good (closed, failed, cut off).
    Lost,
}

impl Watch {
    /// The last revision seen (or, before any event, the one the watch
    /// started from): what to resume from with
    /// [`WatchBuilder::since`].
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// The next event, waiting as long as it takes (reconnecting as
    /// needed).
    pub fn next_event(&mut self) -> Result<Event> {
        self.deadline = None;
        loop {
            if let Some(e) = self.step()? {
                return Ok(e);
            }
        }
    }

    /// The next event, or `None` if none came within `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event>> {
        self.deadline = Some(Instant::now() + timeout);
        let r = self.step();
        self.deadline = None;
        r
    }

    /// Calls `f` with every event until it returns `Break` (or a call
    /// fails).
    pub fn for_each_event(&mut self, mut f: impl FnMut(Event) -> ControlFlow<()>) -> Result<()> {
        loop {
            if f(self.next_event()?).is_break() {
                return Ok(());
            }
        }
    }

    /// One read (reconnecting first if needed): an event, or `None` at the
    /// deadline.
    fn step(&mut self) -> Result<Option<Event>> {
        loop {
            if self.conn.is_none() {
                self.subscribe()?;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            match self.read()? {
                Got::Event(e) => return Ok(Some(e)),
                Got::Idle => return Ok(None),
                Got::Lost => {
                    self.conn = None;
                    self.line.clear();
                }
            }
        }
    }

    /// Reads one line: an event, or the end of this connection.
    fn read(&mut self) -> Result<Got> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Got::Lost);
        };
        let wait = self.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        if conn.get_ref().tcp().set_read_timeout(wait).is_err() {
            return Ok(Got::Lost);
        }
        let n = match (&mut *conn)
            .take(MAX_LINE)
            .read_until(b'\n', &mut self.line)
        {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Got::Idle);
            }
            Err(_) => return Ok(Got::Lost),
        };
        if n == 0 || self.line.last() != Some(&b'\n') {
            // The end of the stream (or a line over the limit).
            return Ok(Got::Lost);
        }
        let mut line = std::mem::take(&mut self.line);
        if !WatchEvent::is_event(&line) {
            // The server's last word: cut off (too slow) or stopping.
            return Ok(Got::Lost);
        }
        let e = WatchEvent::parse(&mut line)
            .map_err(|e| Error::Protocol(format!("a bad event line: {e}")))?;
        let value = match e.value {
            Some(v) => Some(self.shared.encoder.decode(e.name, v)?),
            None => None,
        };
        self.revision = Some(e.revision);
        Ok(Got::Event(Event {
            revision: e.revision,
            what: e.what,
            subject: e.subject,
            name: e.name.to_owned(),
            owner: e.owner.map(str::to_owned),
            token: e.token,
            value,
            data_revision: e.data_revision,
        }))
    }

    /// Connects to a server of the client and subscribes, resuming after
    /// the last revision seen. [`Error::Conflict`] if the server no
    /// longer keeps the events since then (the next call starts from the
    /// current revision).
    fn subscribe(&mut self) -> Result<()> {
        let servers: Vec<String> = self
            .shared
            .failover()
            .servers()
            .map(str::to_owned)
            .collect();
        let mut backoff = BACKOFF.0;
        let mut last: Option<io::Error> = None;
        for _ in 0..ROUNDS {
            for addr in &servers {
                match self.try_subscribe(addr) {
                    Ok(Some(conn)) => {
                        self.conn = Some(conn);
                        return Ok(());
                    }
                    Ok(None) => {}
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Failed(e)) => last = Some(e),
                }
            }
            if self.deadline.is_some_and(|d| Instant::now() + backoff >= d) {
                break;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF.1);
        }
        Err(Error::Unavailable(last.unwrap_or_else(|| {
            io::Error::other("no server took the watch")
        })))
    }

    /// One server: the connection, `None` if it cannot serve now (`NO`).
    fn try_subscribe(
        &mut self,
        addr: &str,
    ) -> std::result::Result<Option<BufReader<crate::tls::Stream>>, Attempt> {
        let mut conn = self.shared.open_dedicated(addr).map_err(Attempt::Failed)?;
        let since = self.revision.map(Revision);
        let scope = match &self.scope {
            Scope::Name(n) => WatchScope::Name(dlm_core::protocol::Resource(n)),
            Scope::Prefix(p) => WatchScope::Prefix(p),
        };
        let req = self.shared.core().watch(scope, since);
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = req.write(&mut out);
        let timeout = Some(self.shared.io_timeout().max(Duration::from_millis(1)));
        let tcp = conn.get_ref().tcp();
        tcp.set_read_timeout(timeout)
            .and_then(|()| tcp.set_write_timeout(timeout))
            .map_err(Attempt::Failed)?;
        conn.get_mut().write_all(&out).map_err(Attempt::Failed)?;
        conn.get_mut().flush().map_err(Attempt::Failed)?;
        let mut line = Vec::new();
        let n = (&mut conn)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(Attempt::Failed)?;
        if n == 0 {
            return Err(Attempt::Failed(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering the watch",
            )));
        }
        let (_, r) = Response::parse(&mut line)
            .map_err(|e| Attempt::Fatal(Error::Protocol(format!("a bad answer to Watch: {e}"))))?;
        answer(&r, &mut self.revision).map(|ok| ok.then_some(conn))
    }
}

/// How one server's attempt failed.
enum Attempt {
    /// Try another (the connection failed).
    Failed(io::Error),
    /// Give up and tell the caller.
    Fatal(Error),
}

/// Reads the answer to a `Watch`: `true` if watching, `false` if the
/// server cannot serve now.
fn answer(r: &Response<'_>, revision: &mut Option<u64>) -> std::result::Result<bool, Attempt> {
    match r.status {
        Status::Done => {
            let current = r.revision.ok_or_else(|| {
                Attempt::Fatal(Error::Protocol("Watch answered without Revision".into()))
            })?;
            revision.get_or_insert(current.0);
            Ok(true)
        }
        Status::Conflict => {
            // The events since our revision are gone: start over from now.
            *revision = None;
            Err(Attempt::Fatal(Error::Conflict {
                current: r.revision.unwrap_or(Revision(0)),
            }))
        }
        Status::No => Ok(false),
        Status::BadAction => Err(Attempt::Fatal(Error::Protocol(
            "the server does not know Watch (JackrabbitDLM, or an older dlm)".into(),
        ))),
        _ => Err(Attempt::Fatal(Error::BadRequest(
            r.error.map(|e| e.to_string()).unwrap_or_default(),
        ))),
    }
}

impl Iterator for Watch {
    type Item = Result<Event>;

    /// The next event (blocking); never ends by itself.
    fn next(&mut self) -> Option<Result<Event>> {
        Some(self.next_event())
    }
}
