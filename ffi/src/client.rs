//! The blocking client: a small pool of persistent connections to one
//! server, over dlm-core's sans-I/O client.
//!
//! A [`Client`] is cheap to clone and safe to share between threads: each
//! call takes an idle connection from the pool (or opens one), so calls
//! from several threads run side by side, and a lock that waits in the
//! server's queue occupies only its own connection. A pooled connection the
//! server has closed meanwhile is replaced transparently; connecting is
//! retried a bounded number of times with backoff.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dlm_core::client::{self as core_client, answer};
use dlm_core::protocol::{Credentials, Framing, Request, Response, Revision};
use dlm_core::stats::Stats;
use dlm_core::time::{MonotonicClock, Ttl};

use crate::cancel::CancelToken;
use crate::encoder::{Encoder, TableEncoder};
use crate::error::{Error, Result};
use crate::lock::{LockBuilder, LockState};

/// Longest response line accepted from a server.
const MAX_RESPONSE: u64 = 64 << 20;

/// How to connect and behave.
#[derive(Clone)]
pub struct Options {
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How long to wait for an answer (beyond a lock's own wait).
    pub io_timeout: Duration,
    /// The owner ID; random (48 URL-safe characters from the OS RNG) if
    /// `None`.
    pub client_id: Option<String>,
    /// The framing to send: plain JSON, or legacy (table-encoded) to talk
    /// to a JackrabbitDLM server. In legacy framing every request gets a
    /// connection of its own, closed after the answer, as JackrabbitDLM's
    /// server closes it (and its own client does).
    pub framing: Framing,
    /// `Name` and `Identity` for every request.
    pub credentials: Option<(String, String)>,
    /// How values are encoded (the table codec by default).
    pub encoder: Arc<dyn Encoder>,
    /// How many times to try connecting before giving up.
    pub connect_attempts: u32,
    /// How many idle connections to keep.
    pub max_idle: usize,
    /// Connect with TLS (`None`: plaintext).
    pub tls: Option<crate::Tls>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            client_id: None,
            framing: Framing::Plain,
            credentials: None,
            encoder: Arc::new(TableEncoder),
            connect_attempts: 3,
            max_idle: 4,
            tls: None,
        }
    }
}

/// A builder, so that options read as one expression:
///
/// ```no_run
/// use std::time::Duration;
///
/// # fn main() -> dlm::Result<()> {
/// let options = dlm::Options::new()
///     .client_id("backup-host-1")
///     .io_timeout(Duration::from_secs(2))
///     .max_idle(16);
/// let client = dlm::Client::connect_with("127.0.0.1:37373", options)?;
/// # Ok(())
/// # }
/// ```
///
/// Each method sets the field of the same name and returns the options.
impl Options {
    /// The defaults: 5 s to connect (3 attempts), 10 s for an answer, a
    /// random owner ID, plain JSON, the table codec, 4 idle connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait for a TCP connection.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for an answer (beyond a lock's own wait).
    #[must_use]
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The owner ID to use instead of a random one. Locks belong to it:
    /// clients that must exclude each other need different IDs.
    #[must_use]
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The framing to send ([`Framing::Legacy`] to talk to JackrabbitDLM).
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Authenticate every request as the identity `name` with `secret`.
    #[must_use]
    pub fn credentials(mut self, name: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Some((name.into(), secret.into()));
        self
    }

    /// How values are encoded (e.g. a [`SealedEncoder`](crate::SealedEncoder)).
    #[must_use]
    pub fn encoder(mut self, encoder: impl Encoder + 'static) -> Self {
        self.encoder = Arc::new(encoder);
        self
    }

    /// How many times to try connecting before giving up (at least 1).
    #[must_use]
    pub fn connect_attempts(mut self, attempts: u32) -> Self {
        self.connect_attempts = attempts;
        self
    }

    /// Connect with TLS, as `tls` says (see [`Tls`](crate::Tls)).
    #[must_use]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How many idle connections to keep for reuse: as many as the threads
    /// that call the client at once, or some calls open a new connection.
    #[must_use]
    pub fn max_idle(mut self, connections: usize) -> Self {
        self.max_idle = connections;
        self
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("client_id", &self.client_id)
            .field("framing", &self.framing)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(n, _)| (n, "<redacted>")),
            )
            .field("connect_attempts", &self.connect_attempts)
            .field("max_idle", &self.max_idle)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
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

/// One connection: a socket and its read buffer.
struct Conn {
    reader: BufReader<crate::tls::Stream>,
    line: Vec<u8>,
    out: Vec<u8>,
    /// The read and write timeouts the socket has now. They change only
    /// when a call needs another limit (a lock's wait), so an ordinary
    /// request costs two system calls, its write and its read.
    timeout: Option<Duration>,
}

/// Where the time limit of a call comes from.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// An ordinary request.
    None,
    /// A lock request that may queue this long in the server.
    Queue(Duration),
}

pub(crate) struct Shared {
    addrs: Vec<SocketAddr>,
    id: String,
    framing: Framing,
    credentials: Option<(String, String)>,
    pub(crate) encoder: Arc<dyn Encoder>,
    /// The clock every lease of this client reads.
    pub(crate) clock: MonotonicClock,
    connect_timeout: Duration,
    io_timeout: Duration,
    connect_attempts: u32,
    max_idle: usize,
    pool: Mutex<Vec<Conn>>,
    /// TLS for every connection (`None`: plaintext).
    tls: Option<crate::tls::Connector>,
}

/// A connection to a dlm server. Cheap to clone; all clones share one pool.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.shared.addrs)
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// Whether an error on a reused connection means it had gone stale (the
/// server closed it while it sat idle), so a fresh one may be tried.
fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

impl Client {
    /// Connects to `addr` with default options.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self> {
        Self::connect_with(addr, Options::default())
    }

    /// Connects to `addr`. One connection is opened now, so an unreachable
    /// server is reported here.
    pub fn connect_with(addr: impl ToSocketAddrs, options: Options) -> Result<Self> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
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
        let id = match options.client_id {
            Some(id) if id.is_empty() => return Err(Error::InvalidArgument("empty client ID")),
            Some(id) => id,
            None => random_id()?,
        };
        let client = Self {
            shared: Arc::new(Shared {
                addrs,
                id,
                framing: options.framing,
                credentials: options.credentials,
                encoder: options.encoder,
                clock: MonotonicClock::new(),
                connect_timeout: options.connect_timeout,
                io_timeout: options.io_timeout,
                connect_attempts: options.connect_attempts.max(1),
                max_idle: options.max_idle,
                pool: Mutex::new(Vec::new()),
                tls: options
                    .tls
                    .as_ref()
                    .map(crate::Tls::connector)
                    .transpose()?,
            }),
        };
        let conn = client.shared.open()?;
        client.shared.checkin(conn);
        Ok(client)
    }

    /// The owner ID this client uses.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Starts a lock request for `name`; see [`LockBuilder`].
    pub fn lock(&self, name: &str) -> LockBuilder<'_> {
        LockBuilder::new(self, name)
    }

    /// One attempt at `name` for `ttl`: the lock, or `None` if another
    /// owner holds it.
    pub fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<crate::Lock>> {
        match self.lock(name).ttl(ttl).acquire() {
            Ok(lock) => Ok(Some(lock)),
            Err(Error::NotOwner) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `name` is locked, and by whom (never acquires).
    pub fn test_lock(&self, name: &str) -> Result<LockState> {
        check_name(name)?;
        let req = self.shared.core().test_lock(name);
        self.shared.call(&req, Wait::None, None, |r| {
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
    }

    /// Releases `name` if this client holds it (optionally only the grant
    /// `token`). Returns whether a lock was released. Prefer [`crate::Lock`]'s
    /// own release; this is for tools that know a name and token.
    pub fn unlock(&self, name: &str, token: Option<dlm_core::protocol::Token>) -> Result<bool> {
        check_name(name)?;
        let req = self.shared.core().unlock(name, token);
        self.shared
            .call(&req, Wait::None, None, |r| Ok(answer::unlocked(r)?))
    }

    /// Stores `value` under `name` for `ttl`, returning its new revision
    /// (`Revision(0)` from a server that keeps none: JackrabbitDLM).
    pub fn put(&self, name: &str, value: &[u8], ttl: Duration) -> Result<Revision> {
        self.put_inner(name, value, ttl, None)
    }

    /// Compare-and-set: stores `value` only if the stored revision is
    /// `expected` (`Revision(0)`: only if there is none). On a mismatch,
    /// [`Error::Conflict`] carries the current revision. A server without
    /// compare-and-set (JackrabbitDLM) writes the value anyway and the call
    /// fails with [`Error::Protocol`], saying so.
    pub fn put_if(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        expected: Revision,
    ) -> Result<Revision> {
        self.put_inner(name, value, ttl, Some(expected))
    }

    fn put_inner(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        revision: Option<Revision>,
    ) -> Result<Revision> {
        check_name(name)?;
        let ttl = check_ttl(ttl)?;
        let encoded = self.shared.encoder.encode(name, value)?;
        let req = self.shared.core().put(name, ttl, &encoded, revision);
        self.shared.call(&req, Wait::None, None, |r| {
            let stored = answer::stored(r, revision.is_some())?;
            Ok(stored.revision.unwrap_or(Revision(0)))
        })
    }

    /// Reads `name`: its value (decoded), revision and remaining TTL, or
    /// `None` if there is no such entry.
    pub fn get(&self, name: &str) -> Result<Option<Value>> {
        check_name(name)?;
        let req = self.shared.core().get(name);
        let fetched = self.shared.call(&req, Wait::None, None, |r| {
            Ok(answer::fetched(r)?.map(|f| {
                (
                    f.data.to_owned(),
                    f.revision.unwrap_or(Revision(0)),
                    f.ttl.unwrap_or(Ttl::ZERO),
                )
            }))
        })?;
        let Some((stored, revision, ttl)) = fetched else {
            return Ok(None);
        };
        Ok(Some(Value {
            data: self.shared.encoder.decode(name, &stored)?,
            revision,
            ttl: ttl.into(),
        }))
    }

    /// Deletes `name`; whether there was an entry.
    pub fn erase(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let req = self.shared.core().erase(name);
        self.shared
            .call(&req, Wait::None, None, |r| Ok(answer::erased(r)?))
    }

    /// The server's version string (it contains "JackrabbitDLM").
    pub fn version(&self) -> Result<String> {
        let req = self.shared.core().version();
        self.shared.call(&req, Wait::None, None, |r| {
            Ok(answer::version(r)?.to_owned())
        })
    }

    /// Asks about or changes the cluster (see PROTOCOL.md, `Cluster`):
    /// the cluster's state as JSON text for [`ClusterOp::Status`] (a
    /// single server answers `{"Mode":"single"}`), empty once a membership
    /// change is done.
    ///
    /// [`ClusterOp::Status`]: dlm_core::protocol::ClusterOp::Status
    pub fn cluster(&self, op: dlm_core::protocol::ClusterOp<'_>) -> Result<String> {
        let req = self.shared.core().cluster(op);
        self.shared.call(&req, Wait::None, None, |r| {
            Ok(answer::cluster(r)?.to_owned())
        })
    }

    /// The server's statistics.
    pub fn stats(&self) -> Result<Stats> {
        let req = self.shared.core().stats();
        self.shared
            .call_raw(&req, Wait::None, None, |line| Ok(answer::stats(line)?))
    }
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

impl Shared {
    /// dlm-core's request builder for this client.
    pub(crate) fn core(&self) -> core_client::Client<'_> {
        let c = core_client::Client::new(&self.id).with_framing(self.framing);
        match &self.credentials {
            Some((name, secret)) => c.with_credentials(Credentials { name, secret }),
            None => c,
        }
    }

    fn open(&self) -> Result<Conn> {
        let mut last = None;
        for attempt in 0..self.connect_attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50) * (1 << (attempt - 1).min(5)));
            }
            for addr in &self.addrs {
                match TcpStream::connect_timeout(addr, self.connect_timeout) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        match crate::tls::Stream::open(
                            s,
                            self.tls.as_ref(),
                            *addr,
                            self.connect_timeout,
                        ) {
                            Ok(stream) => {
                                return Ok(Conn {
                                    reader: BufReader::new(stream),
                                    line: Vec::new(),
                                    out: Vec::new(),
                                    timeout: None,
                                });
                            }
                            // A refused certificate stays refused.
                            Err(e) if crate::tls::is_tls_failure(&e) => {
                                return Err(Error::Unavailable(e));
                            }
                            Err(e) => last = Some(e),
                        }
                    }
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(Error::Unavailable(last.unwrap_or_else(|| {
            io::Error::other("no address to connect to")
        })))
    }

    fn checkout(&self) -> Result<(Conn, bool)> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(c) => Ok((c, true)),
            None => Ok((self.open()?, false)),
        }
    }

    fn checkin(&self, conn: Conn) {
        if self.framing == Framing::Legacy {
            // One request per connection, as JackrabbitDLM's server closes
            // it after each answer.
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < self.max_idle {
            pool.push(conn);
        }
    }

    /// Sends `req` and hands the parsed answer to `f`.
    pub(crate) fn call<T>(
        &self,
        req: &Request<'_>,
        wait: Wait,
        cancel: Option<&CancelToken>,
        f: impl FnOnce(&Response<'_>) -> Result<T>,
    ) -> Result<T> {
        self.call_raw(req, wait, cancel, |line| {
            let (_, r) = Response::parse(line).map_err(core_client::Error::from)?;
            f(&r)
        })
    }

    /// Sends `req` and hands the raw answer line to `f`. A reused connection
    /// that turns out to be closed is replaced once.
    pub(crate) fn call_raw<T>(
        &self,
        req: &Request<'_>,
        wait: Wait,
        cancel: Option<&CancelToken>,
        f: impl FnOnce(&mut [u8]) -> Result<T>,
    ) -> Result<T> {
        let limit = match wait {
            Wait::None => self.io_timeout,
            Wait::Queue(w) => self.io_timeout.saturating_add(w),
        };
        let mut retried = false;
        loop {
            let (mut conn, reused) = self.checkout()?;
            let registration = match cancel {
                Some(c) => Some(c.register(conn.reader.get_ref().tcp())?),
                None => None,
            };
            match conn.round_trip(req, limit) {
                Ok(()) => {
                    let r = f(&mut conn.line);
                    // Reuse the connection unless a cancel may have shut it
                    // down: once the registration is gone, a later cancel
                    // no longer reaches it.
                    drop(registration);
                    if !cancel.is_some_and(CancelToken::is_cancelled) {
                        self.checkin(conn);
                    }
                    return r;
                }
                Err(e) => {
                    if let Some(c) = cancel
                        && c.is_cancelled()
                    {
                        return Err(Error::Cancelled);
                    }
                    if reused && !retried && stale(&e) {
                        retried = true;
                        continue;
                    }
                    return Err(Error::Unavailable(e));
                }
            }
        }
    }
}

impl Conn {
    fn round_trip(&mut self, req: &Request<'_>, limit: Duration) -> io::Result<()> {
        self.out.clear();
        // Writing to a Vec cannot fail.
        let _ = req.write(&mut self.out);
        if self.timeout != Some(limit) {
            let stream = self.reader.get_ref().tcp();
            // Cleared first: if setting one fails, the next call tries again.
            self.timeout = None;
            stream.set_write_timeout(Some(limit))?;
            stream.set_read_timeout(Some(limit))?;
            self.timeout = Some(limit);
        }
        let stream = self.reader.get_mut();
        stream.write_all(&self.out)?;
        stream.flush()?;
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE)
            .read_until(b'\n', &mut self.line)?;
        if n == 0 || self.line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete answer",
            ));
        }
        Ok(())
    }
}
