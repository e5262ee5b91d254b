//! The client: a handle on a few pipelined connections to the server in
//! use (`pipe`), a small pool of connections for waits (`conn`), and the
//! calls, each built and read by dlm-core's sans-I/O client.
//!
//! Which server is in use, when to move to another, what may be sent
//! again, how long to back off and when to give up are dlm-core's
//! [`Failover`]: this module only connects where it says (with tokio's
//! sockets, and TLS if asked), reports what happened, and sleeps on a
//! tokio timer when told to. `Shared::exchange` is the driver: the steps
//! of the failover's "Driving it", one task per call.
//!
//! A [`Client`] is two reference counts: clone it into every task that
//! needs it. All clones share the connections; [`Client::with_id`] makes a
//! handle with another owner ID over the same connections.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dlm::ToServers;
use dlm::failure::LastFailure;
use dlm_core::client::failover::{
    self, Call, ClusterView, Failover, Outcome, Refusal, Step, Verdict,
};
use dlm_core::client::{self as core_client, answer};
use dlm_core::protocol::{ClusterOp, Credentials, Framing, Request, Response, Revision, Token};
use dlm_core::stats::Stats;
use dlm_core::time::{Instant, Ttl};
use tokio::net::TcpStream;

use crate::conn::{Broken, Conn};
use crate::lock::LockBuilder;
use crate::pipe::{Pipe, Reply};
use crate::stream::{self, Stream};
use crate::{Encoder, Error, LockState, Readers, Result, TableEncoder, Tls, Value, random_id};

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
    tls: Option<Tls>,
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
            tls: None,
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
            .field("tls", &self.tls)
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

    /// How long to wait for a TCP connection and, with TLS, its handshake
    /// (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call may take, beyond a lock's own wait (default 10 s):
    /// within it the call moves from member to member as the failover
    /// says; once it runs out with no member answering, the call fails
    /// with [`Error::Unavailable`].
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// How many failed connections per server (a list's every member in
    /// turn) one call makes before it gives up, even with time left
    /// (default 3, at least 1).
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

    /// Connects with TLS, as `tls` says: the blocking client's
    /// [`Tls`](crate::Tls), with the same options and the same errors (a CA
    /// file or the system's roots, the server's name checked, an optional
    /// client certificate). A refused handshake fails the call at once
    /// with [`Error::Unavailable`] saying why; it is not tried again.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects to `servers`: one address (`"127.0.0.1:37373"`, a
    /// [`SocketAddr`](std::net::SocketAddr)) or a cluster's members
    /// (`"10.0.0.1:37373,10.0.0.2:37373,10.0.0.3:37373"`, the syntax of
    /// `DLM_SERVER`; one is enough, the others are learned from it). One
    /// connection is opened now, to the cluster's leader if the member
    /// reached says who leads, so an unreachable server is reported here.
    /// Must run inside a tokio runtime with I/O and time enabled.
    pub async fn connect(self, servers: impl ToServers) -> Result<Client> {
        let servers = servers.to_servers()?;
        let id = match self.client_id {
            Some(id) if id.is_empty() => return Err(Error::InvalidArgument("empty client ID")),
            Some(id) => id,
            None => random_id()?,
        };
        let tls = self.tls.as_ref().map(stream::Tls::new).transpose()?;
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).map_err(|e| Error::system("no random bytes", e))?;
        let config = failover::Config {
            connect_rounds: self.connect_attempts.max(1),
            // JackrabbitDLM has no Cluster action.
            discover: self.framing == Framing::Plain,
            ..failover::Config::DEFAULT
        };
        let slots = (0..self.connections.max(1))
            .map(|_| Slot {
                pipe: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        let id: Arc<str> = Arc::from(id);
        let shared = Arc::new(Shared {
            id: id.clone(),
            framing: self.framing,
            credentials: self.credentials,
            encoder: self.encoder,
            clock: Clock::new(),
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            failover: Mutex::new(Failover::new(servers, config, seed)),
            tls,
            last_failure: LastFailure::new(),
            slots,
            next: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            max_idle: self.max_idle,
        });
        let mut call = shared
            .failover()
            .start_connect(shared.clock.now(), shared.io_timeout.into());
        let (conn, epoch) = shared.connect(&mut call, &mut None).await?;
        if shared.framing == Framing::Plain
            && let Some(stream) = conn.into_stream()
        {
            *lock(&shared.slots[0].pipe) =
                Some(Pipe::start(stream, Some(shared.io_timeout), epoch));
        }
        Ok(Client { shared, id })
    }
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

    /// Sleeps until `at`.
    async fn sleep_until(self, at: Instant) {
        tokio::time::sleep(Duration::from(at.saturating_since(self.now()))).await;
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
    /// The first handle's owner ID: what asks a member about its cluster.
    id: Arc<str>,
    pub(crate) framing: Framing,
    credentials: Option<(String, String)>,
    pub(crate) encoder: Arc<dyn Encoder>,
    /// The clock every lease and call of this client reads.
    pub(crate) clock: Clock,
    connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    /// Which server, when to move on, what to resend (held only around
    /// its own calls, never across an `.await`).
    failover: Mutex<Failover>,
    /// TLS for every connection (`None`: plaintext).
    tls: Option<stream::Tls>,
    /// Why calls gave up, for a call that gives up without an attempt of
    /// its own (the blocking client's rule).
    last_failure: LastFailure,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a call reaches the server.
pub(crate) enum Via<'a> {
    /// On a pipelined connection; the answer awaited is kept here while
    /// the call waits, so that a caller that is dropped can leave it to
    /// another task. (In legacy framing: a connection of its own.)
    Pipe(&'a mut Option<Reply>),
    /// On a connection of its own (a lock that waits), kept here while in
    /// use, for the same reason.
    Own(&'a mut Option<Conn>),
    /// As `Own`, and the connection stays here once answered instead of
    /// going back to the idle pool: a session's, which lives on it.
    Keep(&'a mut Option<Conn>),
}

/// What a call needs beyond its request.
#[derive(Clone, Copy, Default)]
pub(crate) struct CallOptions {
    /// Ends the call by then at the latest (a renewal: the lease's
    /// deadline).
    pub(crate) not_after: Option<Instant>,
    /// The release of a held lock's grant: sent with that grant's request
    /// ID ([`Failover::start_release`]).
    pub(crate) release: bool,
}

impl Shared {
    /// The failover state, for a moment.
    fn failover(&self) -> MutexGuard<'_, Failover> {
        lock(&self.failover)
    }

    /// The server in use.
    fn server(&self) -> String {
        self.failover().server().to_owned()
    }

    /// Opens a connection to `addr` within `within` (and the connect
    /// timeout), with TLS if configured.
    pub(crate) async fn open(&self, addr: &str, within: Ttl) -> io::Result<Stream> {
        let limit = self
            .connect_timeout
            .min(Duration::from(within))
            .max(Duration::from_millis(1));
        let connect = async {
            let mut last = None;
            for a in tokio::net::lookup_host(addr).await? {
                match TcpStream::connect(a).await {
                    Ok(tcp) => return Stream::open(tcp, self.tls.as_ref(), a).await,
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::other(format!("{addr} resolves to nothing"))))
        };
        tokio::time::timeout(limit, connect).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection to {addr} within {limit:?}"),
            )
        })?
    }

    /// The error a call gives up with: the failover's, with the last
    /// failure of the operating system and the server it concerned.
    fn give_up(&self, e: &core_client::Error<'static>, last: Option<io::Error>) -> Error {
        self.last_failure
            .give_up(&e.detail.to_string(), &self.server(), last)
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

    /// A new connection for `call`, where the failover says: it waits out
    /// the backoff, connects, and asks the member who leads if the
    /// failover wants to know (moving on if another member leads).
    async fn connect(&self, call: &mut Call, last: &mut Option<io::Error>) -> Result<(Conn, u64)> {
        loop {
            let now = self.clock.now();
            // Out of the failover's lock before acting on it.
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
                    self.clock.sleep_until(at).await;
                    continue;
                }
                Err(Err(e)) => return Err(self.give_up(&e, last.take())),
            };
            let mut conn = match self.open(&addr, within).await {
                Ok(s) => Conn::new(s, epoch),
                // A refused certificate stays refused: say why at once.
                Err(e) if dlm::tls::is_tls_failure(&e) => return Err(Error::Unavailable(e)),
                Err(e) => {
                    *last = Some(e);
                    self.report(call, epoch, Outcome::ConnectFailed, last)?;
                    continue;
                }
            };
            if !self.failover().connected(epoch) {
                return Ok((conn, epoch));
            }
            match self.discover(&mut conn, call).await {
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
                    // With TLS 1.3 a server refuses a client's certificate
                    // only after the handshake, on the first answer.
                    if dlm::tls::is_tls_failure(&e) {
                        return Err(Error::Unavailable(e));
                    }
                    *last = Some(e);
                    self.report(call, epoch, Outcome::NotSent, last)?;
                }
            }
        }
    }

    /// Asks a new connection who leads the cluster: the view, `None` if
    /// the server cannot say, or why it failed (a refusal, or I/O).
    async fn discover(
        &self,
        conn: &mut Conn,
        call: &Call,
    ) -> std::result::Result<Option<ClusterView>, std::result::Result<Refusal, Broken>> {
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self
            .core(&self.id)
            .cluster(ClusterOp::Status)
            .write(&mut bytes);
        let limit = call.remaining(self.clock.now()).into();
        conn.round_trip(&bytes, limit).await.map_err(Err)?;
        let Ok((_, r)) = Response::parse(conn.line()) else {
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

    /// The pipelined connection of this call's slot, at the failover's
    /// current epoch: the open one, or a new one (one call of the slot
    /// connects, the others wait for it).
    async fn pipe(&self, call: &mut Call, last: &mut Option<io::Error>) -> Result<Arc<Pipe>> {
        let slot = match self.slots.len() {
            1 => &self.slots[0],
            n => &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % n],
        };
        let usable = |slot: &Slot| {
            let epoch = self.failover().epoch();
            lock(&slot.pipe)
                .as_ref()
                .filter(|p| p.epoch == epoch && !p.is_closed())
                .cloned()
        };
        if let Some(pipe) = usable(slot) {
            return Ok(pipe);
        }
        // Another call of the slot may be connecting (and backing off, for
        // as long as its own deadline allows): wait for it only as long as
        // this call's deadline allows.
        let remaining = call.remaining(self.clock.now()).into();
        let Ok(_gate) = tokio::time::timeout(remaining, slot.connecting.lock()).await else {
            let e = core_client::Error::text(
                core_client::ErrorKind::Unavailable,
                "no connection to the server within the time limit",
            );
            return Err(self.give_up(&e, last.take()));
        };
        loop {
            if let Some(pipe) = usable(slot) {
                return Ok(pipe);
            }
            let (conn, epoch) = self.connect(call, last).await?;
            let Some(stream) = conn.into_stream() else {
                // More than the one answer asked for: not a dlm server.
                *last = Some(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server sent an answer to no request",
                ));
                self.report(call, epoch, Outcome::NotSent, last)?;
                continue;
            };
            let pipe = Pipe::start(stream, Some(self.io_timeout), epoch);
            if let Some(old) = lock(&slot.pipe).replace(pipe.clone()) {
                // Calls still waiting on it get their answers.
                old.abandon();
            }
            return Ok(pipe);
        }
    }

    /// A connection of its own for `call`: an idle one of the current
    /// epoch that is still open, or a new one.
    async fn own(&self, call: &mut Call, last: &mut Option<io::Error>) -> Result<Conn> {
        if self.framing == Framing::Plain {
            let epoch = self.failover().epoch();
            loop {
                let Some(mut conn) = lock(&self.idle).pop() else {
                    break;
                };
                if conn.epoch == epoch && !conn.is_stale() {
                    return Ok(conn);
                }
            }
        }
        Ok(self.connect(call, last).await?.0)
    }

    /// Keeps a connection whose call is over for the next wait.
    fn checkin(&self, conn: Conn) {
        if self.framing == Framing::Legacy {
            // One request per connection: the server closes it.
            return;
        }
        if conn.epoch != self.failover().epoch() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// One attempt of `call` on a pipelined connection: the epoch it was
    /// made at and the answer line, or how it failed.
    async fn attempt_pipe(
        &self,
        call: &mut Call,
        req: &Request<'_>,
        flight: &mut Option<Reply>,
        last: &mut Option<io::Error>,
    ) -> Result<(u64, std::result::Result<Vec<u8>, Broken>)> {
        let pipe = self.pipe(call, last).await?;
        let now = self.clock.now();
        let reply = match pipe.send(&call.request(*req, now)) {
            Ok(reply) => flight.insert(reply),
            Err(f) => return Ok((pipe.epoch, Err(Broken::NotSent(f.to_io())))),
        };
        let limit = Duration::from(call.remaining(now)).max(Duration::from_millis(1));
        let answer = tokio::time::timeout(limit, reply).await;
        *flight = None;
        let got = match answer {
            Ok(Ok(Ok(line))) => Ok(line),
            Ok(Ok(Err(f))) if f.unsent => Err(Broken::NotSent(f.to_io())),
            Ok(Ok(Err(f))) if f.timed_out() => Err(Broken::TimedOut(f.to_io())),
            Ok(Ok(Err(f))) => Err(Broken::Failed(f.to_io())),
            Ok(Err(_)) => Err(Broken::Failed(io::Error::other(
                "the connection task stopped",
            ))),
            Err(_) => Err(Broken::TimedOut(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer within the time limit",
            ))),
        };
        Ok((pipe.epoch, got))
    }

    /// One attempt of `call` on a connection of its own, left in `slot`
    /// until the answer is read (for a dropped caller, or a wait that ran
    /// out, whose answer the server still owes).
    async fn attempt_own(
        &self,
        call: &mut Call,
        req: &Request<'_>,
        slot: &mut Option<Conn>,
        last: &mut Option<io::Error>,
    ) -> Result<(u64, std::result::Result<Vec<u8>, Broken>)> {
        *slot = None;
        let conn = slot.insert(self.own(call, last).await?);
        let now = self.clock.now();
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = call.request(*req, now).write(&mut bytes);
        let got = conn
            .round_trip(&bytes, call.remaining(now).into())
            .await
            .map(|()| std::mem::take(conn.line()));
        Ok((conn.epoch, got))
    }

    /// Sends `req` through the failover until a member answers it, or the
    /// call gives up; returns the answer line. Dropping the future drops
    /// the call (what is in flight stays in `via`).
    pub(crate) async fn exchange(
        &self,
        req: &Request<'_>,
        options: CallOptions,
        via: Via<'_>,
    ) -> Result<Vec<u8>> {
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
        let mut local = None;
        let mut via = match via {
            Via::Pipe(_) if self.framing == Framing::Legacy => Via::Own(&mut local),
            via => via,
        };
        let mut last: Option<io::Error> = None;
        loop {
            let (epoch, got) = match &mut via {
                Via::Pipe(flight) => self.attempt_pipe(&mut call, req, flight, &mut last).await?,
                Via::Own(slot) | Via::Keep(slot) => {
                    self.attempt_own(&mut call, req, slot, &mut last).await?
                }
            };
            match got {
                Ok(line) => {
                    if let Some(refusal) = Refusal::of_line(&line) {
                        if let Via::Own(slot) | Via::Keep(slot) = &mut via {
                            // The member may be about to close it.
                            **slot = None;
                        }
                        self.report(&mut call, epoch, Outcome::Refused(refusal), &mut last)?;
                        continue;
                    }
                    self.failover()
                        .handle(&mut call, epoch, Outcome::Answered, self.clock.now());
                    self.last_failure.answered();
                    if let Via::Own(slot) = &mut via
                        && let Some(conn) = slot.take()
                    {
                        self.checkin(conn);
                    }
                    return Ok(line);
                }
                Err(broken) => {
                    let outcome = broken.outcome();
                    let e = broken.into_io();
                    if dlm::tls::is_tls_failure(&e) {
                        return Err(Error::Unavailable(e));
                    }
                    last = Some(e);
                    self.report(&mut call, epoch, outcome, &mut last)?;
                }
            }
        }
    }

    /// Sends `req` and hands the parsed answer to `f`.
    pub(crate) async fn call<T>(
        &self,
        req: &Request<'_>,
        options: CallOptions,
        via: Via<'_>,
        f: impl FnOnce(&Response<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut line = self.exchange(req, options, via).await?;
        let (_, r) = Response::parse(&mut line).map_err(core_client::Error::from)?;
        f(&r)
    }

    /// dlm-core's request builder for the owner `id`.
    pub(crate) fn core<'a>(&'a self, id: &'a str) -> core_client::Client<'a> {
        let c = core_client::Client::new(id).with_framing(self.framing);
        match &self.credentials {
            Some((name, secret)) => c.with_credentials(Credentials { name, secret }),
            None => c,
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
            .field("server", &self.server())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `servers` with default settings: one address
    /// (`"127.0.0.1:37373"`, a [`SocketAddr`](std::net::SocketAddr)) or a
    /// cluster's members (`"10.0.0.1:37373,10.0.0.2:37373"`); see
    /// [`Builder::connect`].
    pub async fn connect(servers: impl ToServers) -> Result<Self> {
        Self::builder().connect(servers).await
    }

    /// A [`Builder`] for a client with other settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The owner ID this handle uses.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server in use (`host:port`): the cluster's leader once a member
    /// said who it is. For logs: it changes when the client moves on.
    pub fn server(&self) -> String {
        self.shared.server()
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
        self.shared.core(&self.id)
    }

    /// The current instant on the clock of this client's leases.
    pub(crate) fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// Starts a lock request for `name`; see [`LockBuilder`].
    pub fn lock(&self, name: impl Into<String>) -> LockBuilder {
        LockBuilder::new(self.clone(), name.into())
    }

    /// Starts a request for every one of `names` at once, all or none,
    /// without deadlock (at most 16 distinct names); see
    /// [`crate::LockAllBuilder`].
    pub fn lock_all<I, S>(&self, names: I) -> crate::LockAllBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        crate::LockAllBuilder::new(self.clone(), names.into_iter().map(Into::into).collect())
    }

    /// Starts a request for one permit of the counting semaphore `name` of
    /// `permits` permits. Every acquisition is a hold of its own with its
    /// own fencing token (the same owner may hold several), extended and
    /// released through its [`crate::Lock`]; waiters are served first come,
    /// first served. The size is fixed while anyone holds or waits: asking
    /// another fails with [`Error::Mismatch`].
    pub fn semaphore(&self, name: impl Into<String>, permits: u32) -> LockBuilder {
        LockBuilder::shaped(
            self.clone(),
            name.into(),
            dlm_core::protocol::Shape::Semaphore { permits },
        )
    }

    /// Starts a request for the shared (read) side of the read/write lock
    /// `name`: held beside other readers, never beside a writer; a writer
    /// that waits is served before readers that come after it.
    pub fn read_lock(&self, name: impl Into<String>) -> LockBuilder {
        LockBuilder::shaped(self.clone(), name.into(), dlm_core::protocol::Shape::Read)
    }

    /// Starts a request for the exclusive (write) side of the read/write
    /// lock `name`: held alone.
    pub fn write_lock(&self, name: impl Into<String>) -> LockBuilder {
        LockBuilder::shaped(self.clone(), name.into(), dlm_core::protocol::Shape::Write)
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
            .call(&req, CallOptions::default(), Via::Pipe(&mut None), |r| {
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
        self.shared
            .call(&req, CallOptions::default(), Via::Pipe(&mut None), |r| {
                Ok(answer::unlocked(r)?)
            })
            .await
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
        self.put_full(name, value, ttl, revision, &Readers::Owner)
            .await
    }

    /// Stores `value` under `name` for `ttl` so that `readers` may read it
    /// too (PROTOCOL.md section 8, "Shared values"), optionally
    /// compare-and-set (`expected`), returning its new revision. Writing
    /// stays this client's: a reader gets `value` with [`get`](Self::get)
    /// of the same name, and [`Value::owner`] says whose it is. A
    /// JackrabbitDLM server ignores `readers` (the value stays its
    /// owner's).
    pub async fn put_shared(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        readers: &Readers,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        self.put_full(name, value, ttl, expected, readers).await
    }

    async fn put_full(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        revision: Option<Revision>,
        readers: &Readers,
    ) -> Result<Revision> {
        check_name(name)?;
        let ttl = check_ttl(ttl)?;
        let joined = readers.joined()?;
        let wire = readers.wire(joined.as_deref())?;
        let encoded = self.shared.encoder.encode(name, value)?;
        let req = self.core().put_shared(name, ttl, &encoded, revision, wire);
        self.shared
            .call(&req, CallOptions::default(), Via::Pipe(&mut None), |r| {
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
            .call(&req, CallOptions::default(), Via::Pipe(&mut None), |r| {
                let Some(f) = answer::fetched(r)? else {
                    return Ok(None);
                };
                Ok(Some(Value {
                    data: self.shared.encoder.decode(name, f.data)?,
                    revision: f.revision.unwrap_or(Revision(0)),
                    ttl: f.ttl.unwrap_or(Ttl::ZERO).into(),
                    owner: f.owner.map(str::to_owned),
                }))
            })
            .await
    }

    /// Deletes `name`; whether there was an entry.
    pub async fn erase(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let req = self.core().erase(name);
        self.shared
            .call(&req, CallOptions::default(), Via::Pipe(&mut None), |r| {
                Ok(answer::erased(r)?)
            })
            .await
    }

    /// The server's version string (it contains "JackrabbitDLM").
    pub async fn version(&self) -> Result<String> {
        let req = self.core().version();
        self.shared
            .call(&req, CallOptions::default(), Via::Pipe(&mut None), |r| {
                Ok(answer::version(r)?.to_owned())
            })
            .await
    }

    /// The server's statistics.
    pub async fn stats(&self) -> Result<Stats> {
        let req = self.core().stats();
        let mut line = self
            .shared
            .exchange(&req, CallOptions::default(), Via::Pipe(&mut None))
            .await?;
        Ok(answer::stats(&mut line)?)
    }

    /// Asks about or changes the cluster (see PROTOCOL.md, `Cluster`):
    /// the cluster's state as JSON text for [`ClusterOp::Status`] (a
    /// single server answers `{"Mode":"single"}`), empty once a membership
    /// change is done.
    pub async fn cluster(&self, op: ClusterOp<'_>) -> Result<String> {
        let req = self.core().cluster(op);
        self.shared
            .call(&req, CallOptions::default(), Via::Pipe(&mut None), |r| {
                Ok(answer::cluster(r)?.to_owned())
            })
            .await
    }
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
