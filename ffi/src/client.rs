//! The blocking client: a small pool of persistent connections to a dlm
//! server or to the members of a dlm cluster, over dlm-core's sans-I/O
//! client.
//!
//! A [`Client`] is cheap to clone and safe to share between threads: each
//! call takes an idle connection from the pool (or opens one), so calls
//! from several threads run side by side, and a lock that waits in the
//! server's queue occupies only its own connection.
//!
//! Which member to talk to, when to move to another, what may be sent
//! again and when to give up are dlm-core's [`Failover`]: this module only
//! connects where it says, reports what happened, and sleeps when told to.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dlm_core::client::failover::{
    self, Call, ClusterView, Failover, Outcome, Refusal, Resend, ServerList, Step, Verdict,
};
use dlm_core::client::{self as core_client, answer};
use dlm_core::protocol::{ClusterOp, Credentials, Framing, Request, Response, Revision};
use dlm_core::stats::Stats;
use dlm_core::time::{Instant, MonotonicClock, Ttl};

use crate::cancel::CancelToken;
use crate::encoder::{Encoder, TableEncoder};
use crate::error::{Error, Result};
use crate::failure::LastFailure;
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
    /// How many failed connections per server (a list's every member in
    /// turn) one call makes before it gives up, even with time left.
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

    /// How many failed connections per server one call makes before it
    /// gives up (at least 1).
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
pub(crate) struct Conn {
    reader: BufReader<crate::tls::Stream>,
    line: Vec<u8>,
    out: Vec<u8>,
    /// The read and write timeouts the socket has now. They change only
    /// when a call needs a limit more than 10 ms away from it (a lock's
    /// wait, a call short of time), so an ordinary request costs two
    /// system calls, its write and its read.
    timeout: Option<Duration>,
    /// The failover epoch it was made at: a connection of another epoch is
    /// to a server no longer in use.
    epoch: u64,
    /// Taken from the pool (it may have been closed meanwhile).
    reused: bool,
}

/// How a round trip failed.
enum Broken {
    /// Before any byte of the request was written: it never left.
    NotSent(io::Error),
    /// No whole answer within the limit.
    TimedOut(io::Error),
    /// After the request was (maybe partly) written.
    Failed(io::Error),
}

impl Broken {
    fn outcome(&self) -> Outcome {
        match self {
            Self::NotSent(_) => Outcome::NotSent,
            Self::TimedOut(_) => Outcome::TimedOut,
            Self::Failed(_) => Outcome::Closed,
        }
    }

    fn into_io(self) -> io::Error {
        match self {
            Self::NotSent(e) | Self::TimedOut(e) | Self::Failed(e) => e,
        }
    }
}

/// How far a socket's timeouts may be from a call's limit before they are
/// set again.
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// How long a backoff sleeps at a time, between looks at a cancellation.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Where a call's time limit and cancellation come from.
#[derive(Clone, Copy, Default)]
pub(crate) struct CallOptions<'c> {
    /// Aborts the call (a waiting lock) from another thread.
    pub(crate) cancel: Option<&'c CancelToken>,
    /// Ends the call by then at the latest (a renewal: the lease's
    /// deadline).
    pub(crate) not_after: Option<Instant>,
    /// The release of a held lock's grant: sent with that grant's request
    /// ID ([`Failover::start_release`]).
    pub(crate) release: bool,
    /// Keep the connection for the caller instead of pooling it (a
    /// session's: see [`Shared::call_keep`]).
    pub(crate) keep: bool,
}

/// What a call's reader made of an answer line.
enum Read<T> {
    /// A member's refusal to serve now (never applied).
    Refused(Refusal),
    /// The call's result.
    Done(Result<T>),
}

pub(crate) struct Shared {
    id: String,
    framing: Framing,
    credentials: Option<(String, String)>,
    pub(crate) encoder: Arc<dyn Encoder>,
    /// The clock every lease and call of this client reads.
    pub(crate) clock: MonotonicClock,
    connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    max_idle: usize,
    /// Which server, when to move on, what to resend (held only around
    /// its own calls, never across I/O).
    failover: Mutex<Failover>,
    pool: Mutex<Vec<Conn>>,
    /// TLS for every connection (`None`: plaintext).
    tls: Option<crate::tls::TlsConfig>,
    /// Why calls gave up, for a call that gives up without an attempt of
    /// its own.
    last_failure: LastFailure,
}

/// A client of a dlm server, or of a dlm cluster's members. Cheap to clone;
/// all clones share one pool.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server())
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// Where the servers are: what [`Client::connect`] takes. One address or a
/// list, as text (`"host:port"`, `"host:port,host:port,..."`, the syntax of
/// `DLM_SERVER`), or socket addresses.
pub trait ToServers {
    /// The list, or why it is not one ([`Error::InvalidArgument`]).
    fn to_servers(&self) -> Result<ServerList>;
}

impl ToServers for str {
    fn to_servers(&self) -> Result<ServerList> {
        Ok(ServerList::parse(self)?)
    }
}

impl ToServers for String {
    fn to_servers(&self) -> Result<ServerList> {
        self.as_str().to_servers()
    }
}

impl ToServers for SocketAddr {
    fn to_servers(&self) -> Result<ServerList> {
        Ok(ServerList::from_addresses([self.to_string()])?)
    }
}

impl ToServers for [SocketAddr] {
    fn to_servers(&self) -> Result<ServerList> {
        Ok(ServerList::from_addresses(
            self.iter().map(ToString::to_string),
        )?)
    }
}

impl<const N: usize> ToServers for [SocketAddr; N] {
    fn to_servers(&self) -> Result<ServerList> {
        self.as_slice().to_servers()
    }
}

impl ToServers for Vec<SocketAddr> {
    fn to_servers(&self) -> Result<ServerList> {
        self.as_slice().to_servers()
    }
}

impl ToServers for (&str, u16) {
    fn to_servers(&self) -> Result<ServerList> {
        let host = if self.0.contains(':') && !self.0.starts_with('[') {
            format!("[{}]", self.0)
        } else {
            self.0.to_owned()
        };
        Ok(ServerList::from_addresses([format!("{host}:{}", self.1)])?)
    }
}

impl<T: ToServers + ?Sized> ToServers for &T {
    fn to_servers(&self) -> Result<ServerList> {
        (**self).to_servers()
    }
}

/// Whether the peer has closed an idle connection (checked before writing
/// a request that could not be sent again on another).
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut probe = [0u8; 1];
    let closed = match stream.peek(&mut probe) {
        // End of stream, or bytes nobody asked for: not usable either way.
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_err() || closed
}

impl Client {
    /// Connects to `servers` with default options: one address
    /// (`"127.0.0.1:37373"`, a `SocketAddr`) or a cluster's members
    /// (`"10.0.0.1:37373,10.0.0.2:37373,10.0.0.3:37373"`; one is enough,
    /// the others are learned from it).
    pub fn connect(servers: impl ToServers) -> Result<Self> {
        Self::connect_with(servers, Options::default())
    }

    /// Connects to `servers` (see [`connect`](Self::connect)). One
    /// connection is opened now, to the cluster's leader if the member
    /// reached says who leads, so that an unreachable server is reported
    /// here.
    pub fn connect_with(servers: impl ToServers, options: Options) -> Result<Self> {
        let servers = servers.to_servers()?;
        let id = match options.client_id {
            Some(id) if id.is_empty() => return Err(Error::InvalidArgument("empty client ID")),
            Some(id) => id,
            None => random_id()?,
        };
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).map_err(|e| Error::system("no random bytes", e))?;
        let config = failover::Config {
            connect_rounds: options.connect_attempts.max(1),
            // JackrabbitDLM has no Cluster action.
            discover: options.framing == Framing::Plain,
            ..failover::Config::DEFAULT
        };
        let client = Self {
            shared: Arc::new(Shared {
                id,
                framing: options.framing,
                credentials: options.credentials,
                encoder: options.encoder,
                clock: MonotonicClock::new(),
                connect_timeout: options.connect_timeout,
                io_timeout: options.io_timeout,
                max_idle: options.max_idle,
                failover: Mutex::new(Failover::new(servers, config, seed)),
                pool: Mutex::new(Vec::new()),
                tls: options.tls.as_ref().map(crate::Tls::config).transpose()?,
                last_failure: LastFailure::new(),
            }),
        };
        let shared = &client.shared;
        let mut call = shared
            .failover()
            .start_connect(shared.clock.now(), shared.io_timeout.into());
        let mut last = None;
        let (conn, _) = shared.connection(&mut call, None, &mut last)?;
        shared.checkin(conn);
        Ok(client)
    }

    /// The server in use (`host:port`): the cluster's leader once a member
    /// said who it is. For logs: it changes when the client moves on.
    pub fn server(&self) -> String {
        self.shared.failover().server().to_owned()
    }

    /// Every server this client knows: those it was given, then the
    /// members learned from the cluster.
    pub fn servers(&self) -> Vec<String> {
        self.shared
            .failover()
            .servers()
            .map(str::to_owned)
            .collect()
    }

    /// The owner ID this client uses.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Starts a lock request for `name`; see [`LockBuilder`].
    pub fn lock(&self, name: &str) -> LockBuilder<'_> {
        LockBuilder::new(self, name)
    }

    /// Starts a request for every one of `names` at once, all or none,
    /// without deadlock (at most 16 distinct names); see
    /// [`crate::LockAllBuilder`].
    pub fn lock_all(&self, names: &[&str]) -> crate::LockAllBuilder<'_> {
        crate::LockAllBuilder::new(self, names)
    }

    /// Starts a request for one permit of the counting semaphore `name` of
    /// `permits` permits. Every acquisition is a hold of its own with its
    /// own fencing token (the same owner may hold several), extended and
    /// released through its [`crate::Lock`] guard; waiters are served first
    /// come, first served. The size is fixed by the first use while anyone
    /// holds or waits: asking another size fails with [`Error::Mismatch`].
    pub fn semaphore(&self, name: &str, permits: u32) -> LockBuilder<'_> {
        LockBuilder::shaped(self, name, dlm_core::protocol::Shape::Semaphore { permits })
    }

    /// Starts a request for the shared (read) side of the read/write lock
    /// `name`: held beside other readers, never beside a writer. A writer
    /// that waits is served before readers that come after it.
    pub fn read_lock(&self, name: &str) -> LockBuilder<'_> {
        LockBuilder::shaped(self, name, dlm_core::protocol::Shape::Read)
    }

    /// Starts a request for the exclusive (write) side of the read/write
    /// lock `name`: held alone.
    pub fn write_lock(&self, name: &str) -> LockBuilder<'_> {
        LockBuilder::shaped(self, name, dlm_core::protocol::Shape::Write)
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
        self.shared.call(&req, CallOptions::default(), |r| {
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
            .call(&req, CallOptions::default(), |r| Ok(answer::unlocked(r)?))
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
        self.put_full(name, value, ttl, revision, &crate::Readers::Owner)
    }

    /// Starts a `Put` with options: who else may read the value
    /// ([`PutBuilder::readers`](crate::PutBuilder::readers)), its TTL,
    /// compare-and-set. `client.put_with("cfg", b"v").readers(Readers::Any).send()`.
    pub fn put_with<'c, 'v>(&'c self, name: &str, value: &'v [u8]) -> crate::PutBuilder<'c, 'v> {
        crate::PutBuilder::new(self, name, value)
    }

    pub(crate) fn put_full(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        revision: Option<Revision>,
        readers: &crate::Readers,
    ) -> Result<Revision> {
        check_name(name)?;
        let ttl = check_ttl(ttl)?;
        let joined = readers.joined()?;
        let readers = readers.wire(joined.as_deref())?;
        let encoded = self.shared.encoder.encode(name, value)?;
        let req = self
            .shared
            .core()
            .put_shared(name, ttl, &encoded, revision, readers);
        self.shared.call(&req, CallOptions::default(), |r| {
            let stored = answer::stored(r, revision.is_some())?;
            Ok(stored.revision.unwrap_or(Revision(0)))
        })
    }

    /// Reads `name`: its value (decoded), revision and remaining TTL, or
    /// `None` if there is no such entry. The value is this client's own,
    /// or another owner's that was shared with it
    /// ([`Readers`](crate::Readers)); [`Value::owner`] says whose.
    /// Another owner's value that is not shared with it is
    /// [`Error::NotOwner`].
    pub fn get(&self, name: &str) -> Result<Option<Value>> {
        check_name(name)?;
        let req = self.shared.core().get(name);
        let fetched = self.shared.call(&req, CallOptions::default(), |r| {
            Ok(answer::fetched(r)?.map(|f| {
                (
                    f.data.to_owned(),
                    f.revision.unwrap_or(Revision(0)),
                    f.ttl.unwrap_or(Ttl::ZERO),
                    f.owner.map(str::to_owned),
                )
            }))
        })?;
        let Some((stored, revision, ttl, owner)) = fetched else {
            return Ok(None);
        };
        Ok(Some(Value {
            data: self.shared.encoder.decode(name, &stored)?,
            revision,
            ttl: ttl.into(),
            owner,
        }))
    }

    /// Deletes `name`; whether there was an entry.
    pub fn erase(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let req = self.shared.core().erase(name);
        self.shared
            .call(&req, CallOptions::default(), |r| Ok(answer::erased(r)?))
    }

    /// The server's version string (it contains "JackrabbitDLM").
    pub fn version(&self) -> Result<String> {
        let req = self.shared.core().version();
        self.shared.call(&req, CallOptions::default(), |r| {
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
        self.shared.call(&req, CallOptions::default(), |r| {
            Ok(answer::cluster(r)?.to_owned())
        })
    }

    /// The server's statistics.
    pub fn stats(&self) -> Result<Stats> {
        let req = self.shared.core().stats();
        self.shared.call_raw(&req, CallOptions::default(), |line| {
            Ok(answer::stats(line)?)
        })
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
    /// Its owner's ID, if the server said: this client's own, or that of
    /// the owner who shared it.
    pub owner: Option<String>,
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

    /// The failover state, for a moment.
    pub(crate) fn failover(&self) -> MutexGuard<'_, Failover> {
        self.failover.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a connection to `addr` within `within` (and the connect
    /// timeout).
    fn open(&self, addr: &str, within: Ttl, epoch: u64) -> io::Result<Conn> {
        let limit = self
            .connect_timeout
            .min(Duration::from(within))
            .max(Duration::from_millis(1));
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, limit) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let stream = crate::tls::Stream::open(s, self.tls.as_ref(), a, limit)?;
                    return Ok(Conn {
                        reader: BufReader::new(stream),
                        line: Vec::new(),
                        out: Vec::new(),
                        timeout: None,
                        epoch,
                        reused: false,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other(format!("{addr} resolves to nothing"))))
    }

    /// A connection of its own to `addr` (a watch's), outside the pool.
    pub(crate) fn open_dedicated(&self, addr: &str) -> io::Result<BufReader<crate::tls::Stream>> {
        self.open(addr, Ttl::from(self.connect_timeout), 0)
            .map(|c| c.reader)
    }

    /// How long a call may wait for its answer.
    pub(crate) fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    /// A pooled connection of `epoch`; those of other epochs are closed.
    fn checkout(&self, epoch: u64) -> Option<Conn> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut c) = pool.pop() {
            if c.epoch == epoch {
                c.reused = true;
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        if self.framing == Framing::Legacy {
            // One request per connection, as JackrabbitDLM's server closes
            // it after each answer.
            return;
        }
        if conn.epoch != self.failover().epoch() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < self.max_idle {
            pool.push(conn);
        }
    }

    /// The error a call gives up with: the failover's, with the last
    /// failure of the operating system and the server it concerned.
    fn give_up(&self, e: &core_client::Error<'static>, last: Option<io::Error>) -> Error {
        let server = self.failover().server().to_owned();
        self.last_failure
            .give_up(&e.detail.to_string(), &server, last)
    }

    /// Sleeps until `at`, in slices, as long as `cancel` is not set.
    fn sleep_until(&self, at: Instant, cancel: Option<&CancelToken>) -> Result<()> {
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(Error::Cancelled);
            }
            let left: Duration = at.saturating_since(self.clock.now()).into();
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(SLEEP_SLICE));
        }
    }

    /// A connection for `call`: a pooled one of the current epoch, or a new
    /// one where the failover says (asking it for the cluster first if the
    /// failover wants to know who leads).
    fn connection(
        &self,
        call: &mut Call,
        cancel: Option<&CancelToken>,
        last: &mut Option<io::Error>,
    ) -> Result<(Conn, u64)> {
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(Error::Cancelled);
            }
            let epoch = self.failover().epoch();
            if let Some(c) = self.checkout(epoch) {
                return Ok((c, epoch));
            }
            let now = self.clock.now();
            // Out of the failover's lock before acting on it (the step
            // borrows from it, and giving up reads it again).
            let step = match self.failover().poll_connect(call, now) {
                Step::Connect {
                    addr,
                    epoch,
                    within,
                } => Ok((addr.to_owned(), epoch, within)),
                Step::Wait(at) => Err(Ok(at)),
                Step::GiveUp(e) => Err(Err(e)),
            };
            let (addr, epoch, within) = match step {
                Ok(connect) => connect,
                Err(Ok(at)) => {
                    self.sleep_until(at, cancel)?;
                    continue;
                }
                Err(Err(e)) => return Err(self.give_up(&e, last.take())),
            };
            let mut conn = match self.open(&addr, within, epoch) {
                Ok(c) => c,
                // A refused certificate stays refused: say why at once.
                Err(e) if crate::tls::is_tls_failure(&e) => return Err(Error::Unavailable(e)),
                Err(e) => {
                    *last = Some(e);
                    self.report(call, epoch, Outcome::ConnectFailed, last)?;
                    continue;
                }
            };
            if !self.failover().connected(epoch) {
                return Ok((conn, epoch));
            }
            match self.discover(&mut conn, call) {
                Ok(view) => {
                    let stay = self.failover().discovered(epoch, view.as_ref());
                    // A server without the action (JackrabbitDLM, or an
                    // older dlm) may close the connection after refusing
                    // it: a fresh one, now that it will not be asked again.
                    if stay && view.is_some() {
                        return Ok((conn, epoch));
                    }
                    // Or the leader is another member: go there.
                }
                Err(Ok(refusal)) => {
                    self.report(call, epoch, Outcome::Refused(refusal), last)?;
                }
                Err(Err(e)) => {
                    let e = e.into_io();
                    // A refused certificate stays refused (with TLS 1.3 a
                    // server refuses a client's certificate only after the
                    // handshake, on the first answer).
                    if crate::tls::is_tls_failure(&e) {
                        return Err(Error::Unavailable(e));
                    }
                    *last = Some(e);
                    self.report(call, epoch, Outcome::NotSent, last)?;
                }
            }
        }
    }

    /// Reports a failed attempt: `Ok` to try again, the error to give up
    /// with otherwise.
    fn report(
        &self,
        call: &mut Call,
        epoch: u64,
        outcome: Outcome,
        last: &mut Option<io::Error>,
    ) -> Result<()> {
        let verdict = self
            .failover()
            .handle(call, epoch, outcome, self.clock.now());
        match verdict {
            Verdict::Retry | Verdict::Accept => Ok(()),
            Verdict::GiveUp(e) => Err(self.give_up(&e, last.take())),
        }
    }

    /// Asks a new connection who leads the cluster: the view, `None` if
    /// the server cannot say (a single server answers a view that says
    /// so), or why it failed (a refusal, or I/O).
    fn discover(
        &self,
        conn: &mut Conn,
        call: &Call,
    ) -> std::result::Result<Option<ClusterView>, std::result::Result<Refusal, Broken>> {
        let req = self.core().cluster(ClusterOp::Status);
        conn.round_trip(&req, call.remaining(self.clock.now()).into())
            .map_err(Err)?;
        let Ok((_, r)) = Response::parse(&mut conn.line) else {
            return Ok(None);
        };
        if let Some(refusal) = Refusal::of(&r) {
            return Err(Ok(refusal));
        }
        Ok(match (r.status, r.cluster) {
            (dlm_core::protocol::Status::Done, Some(text)) => ClusterView::parse(text).ok(),
            _ => None,
        })
    }

    /// Sends `req` and hands the parsed answer to `f`.
    pub(crate) fn call<T>(
        &self,
        req: &Request<'_>,
        options: CallOptions<'_>,
        f: impl FnOnce(&Response<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut f = Some(f);
        self.exchange(req, options, |line| match Response::parse(line) {
            Err(e) => Read::Done(Err(core_client::Error::from(e).into())),
            Ok((_, r)) => match Refusal::of(&r) {
                Some(refusal) => Read::Refused(refusal),
                None => Read::Done(match f.take() {
                    Some(f) => f(&r),
                    None => Err(Error::Protocol("an answer read twice".into())),
                }),
            },
        })
    }

    /// Sends `req` through the failover like [`call`](Self::call), and
    /// hands back the connection it was answered on, for the caller alone
    /// (a session lives and dies with its connection).
    pub(crate) fn call_keep<T>(
        &self,
        req: &Request<'_>,
        f: impl FnOnce(&Response<'_>) -> Result<T>,
    ) -> Result<(T, Conn)> {
        let kept = Mutex::new(None);
        let options = CallOptions {
            keep: true,
            ..CallOptions::default()
        };
        let mut f = Some(f);
        let r = self.exchange_with(req, options, Some(&kept), |line| {
            match Response::parse(line) {
                Err(e) => Read::Done(Err(core_client::Error::from(e).into())),
                Ok((_, r)) => match Refusal::of(&r) {
                    Some(refusal) => Read::Refused(refusal),
                    None => Read::Done(match f.take() {
                        Some(f) => f(&r),
                        None => Err(Error::Protocol("an answer read twice".into())),
                    }),
                },
            }
        })?;
        let conn = kept
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| Error::Protocol("no connection kept".into()))?;
        Ok((r, conn))
    }

    /// Sends `req` and hands the raw answer line to `f`.
    pub(crate) fn call_raw<T>(
        &self,
        req: &Request<'_>,
        options: CallOptions<'_>,
        f: impl FnOnce(&mut [u8]) -> Result<T>,
    ) -> Result<T> {
        let mut f = Some(f);
        self.exchange(req, options, |line| match Refusal::of_line(line) {
            Some(refusal) => Read::Refused(refusal),
            None => Read::Done(match f.take() {
                Some(f) => f(line),
                None => Err(Error::Protocol("an answer read twice".into())),
            }),
        })
    }

    /// Sends `req` through the failover until `read` has an answer for it,
    /// the call gives up, or it is cancelled.
    fn exchange<T>(
        &self,
        req: &Request<'_>,
        options: CallOptions<'_>,
        read: impl FnMut(&mut [u8]) -> Read<T>,
    ) -> Result<T> {
        self.exchange_with(req, options, None, read)
    }

    /// [`exchange`](Self::exchange), putting the connection answered on
    /// into `kept` if asked to keep it.
    fn exchange_with<T>(
        &self,
        req: &Request<'_>,
        options: CallOptions<'_>,
        kept: Option<&Mutex<Option<Conn>>>,
        mut read: impl FnMut(&mut [u8]) -> Read<T>,
    ) -> Result<T> {
        let cancel = options.cancel;
        let now = self.clock.now();
        let timeout = self.io_timeout.into();
        let mut call = if options.release {
            self.failover().start_release(req, now, timeout)
        } else {
            self.failover().start(req, now, timeout)
        };
        if let Some(at) = options.not_after {
            call.limit(at);
        }
        let mut last: Option<io::Error> = None;
        loop {
            let (mut conn, epoch) = self.connection(&mut call, cancel, &mut last)?;
            // A request that cannot be sent again must not go out on a
            // connection the server closed while it sat in the pool.
            if conn.reused
                && call.resend() == Resend::IfUnsent
                && peer_closed(conn.reader.get_ref().tcp())
            {
                continue;
            }
            let registration = match cancel {
                Some(c) => Some(c.register(conn.reader.get_ref().tcp())?),
                None => None,
            };
            let now = self.clock.now();
            let attempt = call.request(*req, now);
            match conn.round_trip(&attempt, call.remaining(now).into()) {
                Ok(()) => match read(&mut conn.line) {
                    Read::Refused(refusal) => {
                        // The member may be about to close it: not pooled.
                        drop(registration);
                        self.report(&mut call, epoch, Outcome::Refused(refusal), &mut last)?;
                    }
                    Read::Done(result) => {
                        self.failover()
                            .handle(&mut call, epoch, Outcome::Answered, now);
                        self.last_failure.answered();
                        // Reuse the connection unless a cancel may have
                        // shut it down: once the registration is gone, a
                        // later cancel no longer reaches it.
                        drop(registration);
                        if let (true, Some(kept)) = (options.keep, kept) {
                            *kept.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
                        } else if !cancel.is_some_and(CancelToken::is_cancelled) {
                            self.checkin(conn);
                        }
                        return result;
                    }
                },
                Err(broken) => {
                    if cancel.is_some_and(CancelToken::is_cancelled) {
                        return Err(Error::Cancelled);
                    }
                    let outcome = broken.outcome();
                    let e = broken.into_io();
                    if crate::tls::is_tls_failure(&e) {
                        return Err(Error::Unavailable(e));
                    }
                    last = Some(e);
                    self.report(&mut call, epoch, outcome, &mut last)?;
                }
            }
        }
    }
}

impl Conn {
    /// One request and its answer on this connection alone (no failover):
    /// the answer line, parsed by `f`.
    pub(crate) fn call<T>(
        &mut self,
        req: &Request<'_>,
        limit: Duration,
        f: impl FnOnce(&Response<'_>) -> Result<T>,
    ) -> Result<T> {
        self.round_trip(req, limit)
            .map_err(|b| Error::Unavailable(b.into_io()))?;
        match Response::parse(&mut self.line) {
            Err(e) => Err(core_client::Error::from(e).into()),
            Ok((_, r)) => f(&r),
        }
    }

    fn round_trip(&mut self, req: &Request<'_>, limit: Duration) -> Result<(), Broken> {
        self.out.clear();
        // Writing to a Vec cannot fail.
        let _ = req.write(&mut self.out);
        let limit = limit.max(Duration::from_millis(1));
        let off = self
            .timeout
            .is_none_or(|t| t.abs_diff(limit) > TIMEOUT_SLACK);
        if off {
            let stream = self.reader.get_ref().tcp();
            // Cleared first: if setting one fails, the next call tries again.
            self.timeout = None;
            stream
                .set_write_timeout(Some(limit))
                .and_then(|()| stream.set_read_timeout(Some(limit)))
                .map_err(Broken::NotSent)?;
            self.timeout = Some(limit);
        }
        // Over TLS, a write takes the bytes into the session and the
        // flush sends them: nothing reached the socket until a write
        // succeeded, so `written == 0` still means "not sent".
        let stream = self.reader.get_mut();
        let mut written = 0;
        while written < self.out.len() {
            match stream.write(&self.out[written..]) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(if written == 0 {
                        Broken::NotSent(e)
                    } else {
                        Broken::Failed(e)
                    });
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if written == 0 => return Err(Broken::NotSent(e)),
                Err(e) if timed_out(&e) => return Err(Broken::TimedOut(e)),
                Err(e) => return Err(Broken::Failed(e)),
            }
        }
        stream.flush().map_err(|e| {
            if timed_out(&e) {
                Broken::TimedOut(e)
            } else {
                Broken::Failed(e)
            }
        })?;
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| {
                if timed_out(&e) {
                    Broken::TimedOut(e)
                } else {
                    Broken::Failed(e)
                }
            })?;
        if n == 0 || self.line.last() != Some(&b'\n') {
            return Err(Broken::Failed(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete answer",
            )));
        }
        Ok(())
    }
}

/// Whether an I/O error is a socket timeout running out.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
