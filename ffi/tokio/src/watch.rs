//! Watches as a [`Stream`] of events (PROTOCOL.md section 8, "Watches").
//!
//! A [`Watch`] is fed by a task that owns a connection of its own (a
//! watching connection takes no other request) and hands events over a
//! bounded channel: when the stream is not polled, the task stops reading,
//! the server's budget for the watcher fills, and the server cuts it off;
//! the task then reconnects (to any server of the client) and resumes
//! after the last revision it handed over, so no event is missed or
//! repeated. If the server no longer keeps the events since then, the
//! stream yields [`Error::Conflict`] with the current revision (read the
//! state again) and goes on from there. Dropping the `Watch` ends the
//! task and closes its connection.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> dlm_tokio::Result<()> {
//! use futures_core::Stream;
//! use std::future::poll_fn;
//! use std::pin::Pin;
//!
//! let client = dlm_tokio::Client::connect("127.0.0.1:37373").await?;
//! let mut watch = client.watch_prefix("jobs/").start().await?;
//! while let Some(event) = poll_fn(|cx| Pin::new(&mut watch).poll_next(cx)).await {
//!     let event = event?;
//!     println!("{} {} {}", event.revision, event.what.as_str(), event.name);
//! }
//! # Ok(())
//! # }
//! ```

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use dlm::Event;
use dlm_core::protocol::{Resource, Response, Revision, Status, WatchEvent, WatchScope};
use dlm_core::time::Ttl;
use futures_core::Stream;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::stream;
use crate::{Error, Result};

/// The longest event line read.
const MAX_LINE: u64 = 64 << 20;
/// Events handed over but not yet taken by the stream's reader.
const CHANNEL: usize = 64;
/// Between rounds of reconnecting: at first, and at most.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// Rounds over every server before the stream ends with the failure.
const ROUNDS: u32 = 8;
/// "No revision yet" in the shared revision cell.
const NONE: u64 = u64::MAX;

#[derive(Clone, Debug)]
enum Scope {
    Name(String),
    Prefix(String),
}

/// Sets up a [`Watch`]; from [`Client::watch_prefix`] or
/// [`Client::watch_name`].
#[derive(Debug)]
#[must_use = "a watch starts with start()"]
pub struct WatchBuilder {
    client: Client,
    scope: Scope,
    since: Option<u64>,
}

impl WatchBuilder {
    /// Resume: every event after `revision` first (if the server still
    /// keeps them; else `start` fails with [`Error::Conflict`]).
    pub fn since(mut self, revision: u64) -> Self {
        self.since = Some(revision);
        self
    }

    /// Subscribes (on a connection of its own) and starts the task that
    /// reads it. Needs a tokio runtime.
    pub async fn start(self) -> Result<Watch> {
        let mut feed = Feed {
            client: self.client,
            scope: self.scope,
            revision: self.since,
            conn: None,
        };
        feed.subscribe().await?;
        let revision = Arc::new(AtomicU64::new(feed.revision.unwrap_or(NONE)));
        let (tx, rx) = mpsc::channel(CHANNEL);
        let task = tokio::spawn(feed.run(tx, revision.clone()));
        Ok(Watch { rx, revision, task })
    }
}

impl Client {
    /// Watches every name (locks and values) that starts with `prefix`
    /// (empty: every name).
    pub fn watch_prefix(&self, prefix: &str) -> WatchBuilder {
        WatchBuilder {
            client: self.clone(),
            scope: Scope::Prefix(prefix.to_owned()),
            since: None,
        }
    }

    /// Watches one name: its lock (or semaphore, or read/write lock) and
    /// its value.
    pub fn watch_name(&self, name: &str) -> Result<WatchBuilder> {
        if name.is_empty() {
            return Err(Error::InvalidArgument("an empty name"));
        }
        Ok(WatchBuilder {
            client: self.clone(),
            scope: Scope::Name(name.to_owned()),
            since: None,
        })
    }
}

/// A subscription to changes: a [`Stream`] of [`Event`]s that never ends
/// by itself (only after a failure it reports, when no server takes it
/// back). It reads on a connection of its own through a bounded channel;
/// when it is not polled the server cuts it off, and it reconnects and
/// resumes after the last revision it handed over, without a gap.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<Result<Event>>,
    revision: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// The last revision the stream handed over (or, before any, the one
    /// it started from): what to resume from with [`WatchBuilder::since`].
    pub fn revision(&self) -> Option<u64> {
        match self.revision.load(Ordering::Acquire) {
            NONE => None,
            r => Some(r),
        }
    }

    /// The next event (`None` once the stream has ended).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }
}

impl Stream for Watch {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task's side: the connection and where it is.
struct Feed {
    client: Client,
    scope: Scope,
    revision: Option<u64>,
    conn: Option<BufReader<stream::Stream>>,
}

/// How one server's attempt failed.
enum Attempt {
    Failed(io::Error),
    Fatal(Error),
}

impl Feed {
    async fn run(mut self, tx: mpsc::Sender<Result<Event>>, shown: Arc<AtomicU64>) {
        let mut line = Vec::new();
        loop {
            if self.conn.is_none() {
                match self.subscribe().await {
                    Ok(()) => {}
                    Err(e @ Error::Conflict { .. }) => {
                        // Told, then on from the current revision.
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            line.clear();
            let n = (&mut *conn)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await;
            if !matches!(n, Ok(n) if n > 0)
                || line.last() != Some(&b'\n')
                || !WatchEvent::is_event(&line)
            {
                // Closed, failed, over long, or the server's last word
                // (cut off): resume elsewhere or anew.
                self.conn = None;
                continue;
            }
            let event = match self.event(&mut line) {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let revision = event.revision;
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
            self.revision = Some(revision);
            shown.store(revision, Ordering::Release);
        }
    }

    fn event(&self, line: &mut [u8]) -> Result<Event> {
        let e = WatchEvent::parse(line)
            .map_err(|e| Error::Protocol(format!("a bad event line: {e}")))?;
        let value = match e.value {
            Some(v) => Some(self.client.shared.encoder.decode(e.name, v)?),
            None => None,
        };
        Ok(Event {
            revision: e.revision,
            what: e.what,
            subject: e.subject,
            name: e.name.to_owned(),
            owner: e.owner.map(str::to_owned),
            token: e.token,
            value,
            data_revision: e.data_revision,
        })
    }

    /// Connects to a server of the client and subscribes after the last
    /// revision handed over. [`Error::Conflict`] if that is no longer kept
    /// (the next attempt starts from the current revision).
    async fn subscribe(&mut self) -> Result<()> {
        let servers = self.client.servers();
        let mut backoff = BACKOFF.0;
        let mut last = None;
        for _ in 0..ROUNDS {
            for addr in &servers {
                match self.try_subscribe(addr).await {
                    Ok(Some(conn)) => {
                        self.conn = Some(conn);
                        return Ok(());
                    }
                    Ok(None) => {}
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Failed(e)) => last = Some(e),
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
        Err(Error::Unavailable(last.unwrap_or_else(|| {
            io::Error::other("no server took the watch")
        })))
    }

    async fn try_subscribe(
        &mut self,
        addr: &str,
    ) -> std::result::Result<Option<BufReader<stream::Stream>>, Attempt> {
        let shared = &self.client.shared;
        let timeout = shared.io_timeout.max(Duration::from_millis(1));
        let stream = shared
            .open(addr, Ttl::from(timeout))
            .await
            .map_err(Attempt::Failed)?;
        let mut conn = BufReader::new(stream);
        let scope = match &self.scope {
            Scope::Name(n) => WatchScope::Name(Resource(n)),
            Scope::Prefix(p) => WatchScope::Prefix(p),
        };
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self
            .client
            .core()
            .watch(scope, self.revision.map(Revision))
            .write(&mut out);
        let mut line = Vec::new();
        let exchange = async {
            conn.get_mut().write_all(&out).await?;
            conn.get_mut().flush().await?;
            (&mut conn)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => {
                return Err(Attempt::Failed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering the watch",
                )));
            }
            Ok(Err(e)) => return Err(Attempt::Failed(e)),
            Err(_) => {
                return Err(Attempt::Failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer to the watch in time",
                )));
            }
        }
        let (_, r) = Response::parse(&mut line)
            .map_err(|e| Attempt::Fatal(Error::Protocol(format!("a bad answer to Watch: {e}"))))?;
        match r.status {
            Status::Done => {
                let current = r.revision.ok_or_else(|| {
                    Attempt::Fatal(Error::Protocol("Watch answered without Revision".into()))
                })?;
                self.revision.get_or_insert(current.0);
                Ok(Some(conn))
            }
            Status::Conflict => {
                self.revision = None;
                Err(Attempt::Fatal(Error::Conflict {
                    current: r.revision.unwrap_or(Revision(0)),
                }))
            }
            Status::No => Ok(None),
            Status::BadAction => Err(Attempt::Fatal(Error::Protocol(
                "the server does not know Watch (JackrabbitDLM, or an older dlm)".into(),
            ))),
            _ => Err(Attempt::Fatal(Error::BadRequest(
                r.error.map(|e| e.to_string()).unwrap_or_default(),
            ))),
        }
    }
}
