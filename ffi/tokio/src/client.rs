//! The client: a handle on a few pipelined connections to one server
//! (`pipe`), a small pool of connections for waits (`conn`), and the
//! calls, each built and read by dlm-core's sans-I/O client.
//!
//! A [`Client`] is two reference counts: clone it into every task that
//! needs it. All clones share the connections; [`Client::with_id`] makes a
//! handle with another owner ID over the same connections.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dlm_core::client::{self as core_client, answer};
use dlm_core::protocol::{Credentials, Framing, Request, Response, Revision, Token};
use dlm_core::stats::Stats;
use dlm_core::time::{Instant, Ttl};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::conn::Conn;
use crate::encoder::{Encoder, TableEncoder};
use crate::error::{Error, Result};
use crate::lock::LockBuilder;
use crate::pipe::{Pipe, Reply};

/// Sets up a [`Client`]: `Client::builder().client_id("me").connect(addr).await`.
#[derive(Clone)]
#[must_use = "a builder does nothing until connect() is called"]
pub struct Builder {
    client_id: Option<String>,
    framing: Framing,
    credentials: Option<(String, String)>,
    encoder: Arc<dyn Encoder>,
    connect_timeout: Duration,
    io_timeout: Duration,
    connect_attempts: u32,
    connections: usize,
    max_idle: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            client_id: None,
            framing: Framing::Plain,
            credentials: None,
            encoder: Arc::new(TableEncoder),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            connect_attempts: 3,
            connections: 1,
            max_idle: 4,
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("client_id", &self.client_id)
            .field("framing", &self.framing)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(n, _)| (n, "<redacted>")),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("connect_attempts", &self.connect_attempts)
            .field("connections", &self.connections)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// The owner ID: every lock and value of this client belongs to it.
    /// Random (48 URL-safe characters from the OS RNG) if not set.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The framing to send: plain JSON (the default), or legacy
    /// (table-encoded) to talk to a JackrabbitDLM server. In legacy framing
    /// every call gets a connection of its own, closed after the answer, as
    /// that server closes it.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Authenticates every request as the identity `name` with `secret`
    /// (see the server's identities).
    pub fn credentials(mut self, name: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Some((name.into(), secret.into()));
        self
    }

    /// How values are encoded: [`TableEncoder`] by default, or
    /// [`SealedEncoder`](crate::SealedEncoder), or your own.
    pub fn encoder(self, encoder: impl Encoder + 'static) -> Self {
        self.shared_encoder(Arc::new(encoder))
    }

    /// As [`encoder`](Self::encoder), for an encoder shared with others.
    pub fn shared_encoder(mut self, encoder: Arc<dyn Encoder>) -> Self {
        self.encoder = encoder;
        self
    }

    /// How long to wait for a TCP connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a connection may go without an answer while calls wait on
    /// it, beyond a lock's own wait (default 10 s); then it is closed and
    /// its calls fail with [`Error::Unavailable`].
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// How many times to try connecting before giving up (default 3, with
    /// a growing pause between tries).
    pub fn connect_attempts(mut self, attempts: u32) -> Self {
        self.connect_attempts = attempts;
        self
    }

    /// How many pipelined connections the calls share (default 1; at
    /// least 1). One is enough for most loads: requests from every task are
    /// written together and answered in order.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// How many idle connections to keep for locks that wait (default 4).
    pub fn max_idle(mut self, n: usize) -> Self {
        self.max_idle = n;
        self
    }

    /// Connects to `addr` (`"host:port"`, a [`SocketAddr`], ...). One
    /// connection is opened now, so an unreachable server is reported
    /// here. Must run inside a tokio runtime with I/O and time enabled.
    pub async fn connect(self, addr: impl ToSocketAddrs) -> Result<Client> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| match e.kind() {
                // Not `host:port`, or a bad port: the caller's mistake. A
                // failed name lookup stays `Unavailable`.
                io::ErrorKind::InvalidInput => {
                    Error::InvalidArgument("the server address is not host:port")
                }
                _ => Error::Unavailable(e),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Error::InvalidArgument(
                "the server address resolves to nothing",
            ));
        }
        let id = match self.client_id {
            Some(id) if id.is_empty() => return Err(Error::InvalidArgument("empty client ID")),
            Some(id) => id,
            None => random_id()?,
        };
        let slots = (0..self.connections.max(1))
            .map(|_| Slot {
                pipe: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        let shared = Arc::new(Shared {
            addrs,
            framing: self.framing,
            credentials: self.credentials,
            encoder: self.encoder,
            clock: Clock::new(),
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            connect_attempts: self.connect_attempts.max(1),
            slots,
            next: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            max_idle: self.max_idle,
        });
        let stream = shared.open().await?;
        if shared.framing == Framing::Plain {
            *lock(&shared.slots[0].pipe) = Some(Pipe::start(stream, shared.io_timeout));
        }
        Ok(Client {
            shared,
            id: Arc::from(id),
        })
    }
}

/// A random owner ID: 48 URL-safe characters from the OS RNG.
pub fn random_id() -> Result<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = [0u8; 48];
    getrandom::fill(&mut raw).map_err(|e| Error::system("no random bytes for a client ID", e))?;
    Ok(raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect())
}

/// The lease's clock: whole milliseconds since the client was made, on
/// tokio's clock (so a test that pauses tokio's time pauses it too).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current instant.
    pub(crate) fn now(self) -> Instant {
        Instant::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// One pipelined connection's place: the connection, if open, and a gate
/// so that only one call reconnects it.
struct Slot {
    pipe: Mutex<Option<Arc<Pipe>>>,
    connecting: tokio::sync::Mutex<()>,
}

/// What every handle of one client shares.
pub(crate) struct Shared {
    addrs: Vec<SocketAddr>,
    pub(crate) framing: Framing,
    credentials: Option<(String, String)>,
    pub(crate) encoder: Arc<dyn Encoder>,
    /// The clock every lease of this client reads.
    pub(crate) clock: Clock,
    connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    connect_attempts: u32,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// Connections kept for waits.
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(pipe) = lock(&slot.pipe).take() {
                pipe.abandon();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether an error on a reused connection means it had gone stale (the
/// server closed it while it sat idle), so a fresh one may be tried.
pub(crate) fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

impl Shared {
    /// A new TCP connection, tried `connect_attempts` times.
    async fn open(&self) -> Result<TcpStream> {
        let mut last = None;
        for attempt in 0..self.connect_attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50) * (1 << (attempt - 1).min(5))).await;
            }
            for addr in &self.addrs {
                match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Ok(Err(e)) => last = Some(e),
                    Err(_) => {
                        last = Some(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no connection within the connect timeout",
                        ));
                    }
                }
            }
        }
        Err(Error::Unavailable(last.unwrap_or_else(|| {
            io::Error::other("no address to connect to")
        })))
    }

    /// Queues `req` on a pipelined connection, opening one if needed.
    pub(crate) async fn submit(&self, req: &Request<'_>) -> Result<Reply> {
        let slot = match self.slots.len() {
            1 => &self.slots[0],
            n => &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % n],
        };
        if let Some(Ok(reply)) = lock(&slot.pipe).as_ref().map(|p| p.send(req)) {
            return Ok(reply);
        }
        // Closed, or never opened: one call reconnects, the others wait
        // for it.
        let _gate = slot.connecting.lock().await;
        if let Some(pipe) = lock(&slot.pipe).as_ref()
            && !pipe.is_closed()
            && let Ok(reply) = pipe.send(req)
        {
            return Ok(reply);
        }
        let pipe = Pipe::start(self.open().await?, self.io_timeout);
        let reply = pipe.send(req).map_err(|f| Error::Unavailable(f.to_io()))?;
        *lock(&slot.pipe) = Some(pipe);
        Ok(reply)
    }

    /// Sends `req` and returns its answer line: on a pipelined connection,
    /// or, to a JackrabbitDLM server, on one of its own.
    ///
    /// This is where a failed request may be sent again: only if it never
    /// left the process. (With request IDs, applied once by the server,
    /// the same place can resend any request that carries one.)
    pub(crate) async fn round_trip(&self, req: &Request<'_>) -> Result<Vec<u8>> {
        if self.framing == Framing::Legacy {
            return self.one_shot(req).await;
        }
        self.round_trip_in(req, &mut None).await
    }

    /// As [`round_trip`](Self::round_trip) on a pipelined connection,
    /// keeping the call's place in `flight` while it waits, so that a
    /// caller that is dropped can leave it to another task.
    pub(crate) async fn round_trip_in(
        &self,
        req: &Request<'_>,
        flight: &mut Option<Reply>,
    ) -> Result<Vec<u8>> {
        let mut retried = false;
        loop {
            let reply = flight.insert(self.submit(req).await?);
            let answer = reply.await;
            *flight = None;
            match answer {
                Ok(Ok(line)) => return Ok(line),
                Ok(Err(f)) if f.unsent && !retried => retried = true,
                Ok(Err(f)) => return Err(Error::Unavailable(f.to_io())),
                Err(_) => {
                    return Err(Error::Unavailable(io::Error::other(
                        "the connection task stopped",
                    )));
                }
            }
        }
    }

    /// Sends `req` and hands the parsed answer to `f`.
    pub(crate) async fn call<T>(
        &self,
        req: &Request<'_>,
        f: impl FnOnce(&Response<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut line = self.round_trip(req).await?;
        let (_, r) = Response::parse(&mut line).map_err(core_client::Error::from)?;
        f(&r)
    }

    /// One request on a connection of its own, closed after the answer.
    async fn one_shot(&self, req: &Request<'_>) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = req.write(&mut line);
        let mut conn = Conn::new(self.open().await?);
        conn.round_trip(&line, self.io_timeout)
            .await
            .map_err(Error::Unavailable)?;
        Ok(std::mem::take(conn.line()))
    }

    /// A connection for a wait: an idle one (and `true`), or a new one.
    pub(crate) async fn dedicated(&self) -> Result<(Conn, bool)> {
        if self.framing == Framing::Plain {
            loop {
                let Some(conn) = lock(&self.idle).pop() else {
                    break;
                };
                if !conn.is_stale() {
                    return Ok((conn, true));
                }
            }
        }
        Ok((Conn::new(self.open().await?), false))
    }

    /// Keeps a connection whose wait is over for the next one.
    pub(crate) fn checkin(&self, conn: Conn) {
        if self.framing == Framing::Legacy {
            // One request per connection: the server closes it.
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

/// A connection to a dlm server, with one owner ID. Cheap to clone (two
/// reference counts); all clones share the connections. Calls from any
/// number of tasks run side by side: their requests are pipelined on a
/// shared connection, and a lock that waits in the server's queue waits on
/// a connection of its own.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    id: Arc<str>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.shared.addrs)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `addr` with default settings; see [`Builder`].
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self> {
        Self::builder().connect(addr).await
    }

    /// A [`Builder`] for a client with other settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The owner ID this handle uses.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A handle with another owner ID over the same connections: parties
    /// that must exclude each other need different owner IDs (a lock is
    /// re-granted to its own owner), and need not each open connections.
    pub fn with_id(&self, id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::InvalidArgument("empty client ID"));
        }
        Ok(Self {
            shared: self.shared.clone(),
            id: Arc::from(id),
        })
    }

    /// dlm-core's request builder for this handle.
    pub(crate) fn core(&self) -> core_client::Client<'_> {
        let c = core_client::Client::new(&self.id).with_framing(self.shared.framing);
        match &self.shared.credentials {
            Some((name, secret)) => c.with_credentials(Credentials { name, secret }),
            None => c,
        }
    }

    /// The current instant on the clock of this client's leases.
    pub(crate) fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// Starts a lock request for `name`; see [`LockBuilder`].
    pub fn lock(&self, name: impl Into<String>) -> LockBuilder {
        LockBuilder::new(self.clone(), name.into())
    }

    /// One attempt at `name` for `ttl`: the lock, or `None` if another
    /// owner holds it.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<crate::Lock>> {
        match self.lock(name).ttl(ttl).acquire().await {
            Ok(lock) => Ok(Some(lock)),
            Err(Error::NotOwner) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `name` is locked, and by whom (never acquires).
    pub async fn test_lock(&self, name: &str) -> Result<LockState> {
        check_name(name)?;
        let req = self.core().test_lock(name);
        self.shared
            .call(&req, |r| {
                Ok(match answer::lock_state(r)? {
                    core_client::LockState::Free => LockState::Free,
                    core_client::LockState::Mine(g) => LockState::Mine {
                        token: g.token,
                        remaining: g.ttl.map(Into::into),
                    },
                    core_client::LockState::Taken(left) => LockState::Taken {
                        remaining: left.map(Into::into),
                    },
                })
            })
            .await
    }

    /// Releases `name` if this owner holds it (optionally only the grant
    /// `token`). Returns whether a lock was released. Prefer
    /// [`Lock::unlock`](crate::Lock::unlock); this is for tools that know a
    /// name and token.
    pub async fn unlock(&self, name: &str, token: Option<Token>) -> Result<bool> {
        check_name(name)?;
        let req = self.core().unlock(name, token);
        self.shared.call(&req, |r| Ok(answer::unlocked(r)?)).await
    }

    /// Stores `value` under `name` for `ttl`, returning its new revision
    /// (`Revision(0)` from a server that keeps none: JackrabbitDLM).
    pub async fn put(&self, name: &str, value: &[u8], ttl: Duration) -> Result<Revision> {
        self.put_inner(name, value, ttl, None).await
    }

    /// Compare-and-set: stores `value` only if the stored revision is
    /// `expected` (`Revision(0)`: only if there is none). On a mismatch,
    /// [`Error::Conflict`] carries the current revision. A server without
    /// compare-and-set (JackrabbitDLM) writes the value anyway and the call
    /// fails with [`Error::Protocol`], saying so.
    pub async fn put_if(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        expected: Revision,
    ) -> Result<Revision> {
        self.put_inner(name, value, ttl, Some(expected)).await
    }

    async fn put_inner(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        revision: Option<Revision>,
    ) -> Result<Revision> {
        check_name(name)?;
        let ttl = check_ttl(ttl)?;
        let encoded = self.shared.encoder.encode(name, value)?;
        let req = self.core().put(name, ttl, &encoded, revision);
        self.shared
            .call(&req, |r| {
                let stored = answer::stored(r, revision.is_some())?;
                Ok(stored.revision.unwrap_or(Revision(0)))
            })
            .await
    }

    /// Reads `name`: its value (decoded), revision and remaining TTL, or
    /// `None` if there is no such entry.
    pub async fn get(&self, name: &str) -> Result<Option<Value>> {
        check_name(name)?;
        let req = self.core().get(name);
        self.shared
            .call(&req, |r| {
                let Some(f) = answer::fetched(r)? else {
                    return Ok(None);
                };
                Ok(Some(Value {
                    data: self.shared.encoder.decode(name, f.data)?,
                    revision: f.revision.unwrap_or(Revision(0)),
                    ttl: f.ttl.unwrap_or(Ttl::ZERO).into(),
                }))
            })
            .await
    }

    /// Deletes `name`; whether there was an entry.
    pub async fn erase(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let req = self.core().erase(name);
        self.shared.call(&req, |r| Ok(answer::erased(r)?)).await
    }

    /// The server's version string (it contains "JackrabbitDLM").
    pub async fn version(&self) -> Result<String> {
        let req = self.core().version();
        self.shared
            .call(&req, |r| Ok(answer::version(r)?.to_owned()))
            .await
    }

    /// The server's statistics.
    pub async fn stats(&self) -> Result<Stats> {
        let req = self.core().stats();
        let mut line = self.shared.round_trip(&req).await?;
        Ok(answer::stats(&mut line)?)
    }
}

/// What [`Client::test_lock`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// This owner holds it.
    Mine {
        /// The grant's fencing token (`None` from a server that gives none).
        token: Option<Token>,
        /// Time left when the server answered, if it said.
        remaining: Option<Duration>,
    },
    /// Another owner holds it.
    Taken {
        /// Roughly how long it has left, if the server said.
        remaining: Option<Duration>,
    },
}

/// A value read by [`Client::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The decoded bytes.
    pub data: Vec<u8>,
    /// The entry's revision (`Revision(0)` from a server that keeps none:
    /// JackrabbitDLM).
    pub revision: Revision,
    /// Its remaining time to live when the server answered (zero if the
    /// server did not say: JackrabbitDLM).
    pub ttl: Duration,
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        Err(Error::InvalidArgument("empty name"))
    } else {
        Ok(())
    }
}

pub(crate) fn check_ttl(ttl: Duration) -> Result<Ttl> {
    let ttl = Ttl::from(ttl);
    if ttl.is_zero() {
        Err(Error::InvalidArgument("a TTL must be positive"))
    } else {
        Ok(ttl)
    }
}
