//! Sessions: locks that end with this client's connection (PROTOCOL.md
//! section 8, "Sessions and lock-delay"), the async counterpart of the
//! blocking crate's `dlm::Session`.
//!
//! A [`Session`] owns a connection of its own, opened to the cluster's
//! leader through the client's failover, on which it opened a server
//! session. That connection is pipelined (the shape of the client's shared
//! connections: a task owns the socket, calls append their requests and
//! await their answers in order), and a keep-alive task sends `Session`
//! on it every third of the TTL. Locks taken through it
//! ([`Session::lock`], [`Session::semaphore`], [`Session::read_lock`],
//! [`Session::write_lock`]) are bound to it: if this process dies, stalls
//! past the TTL or loses the connection, the server releases them (or,
//! with a lock-delay, keeps their names closed to everyone for that long
//! first). There is no failover: a session lives and dies with its
//! connection, and once it is lost ([`Session::lost`]) its locks are to be
//! taken as gone.
//!
//! **Waits share the connection.** A lock that waits in the server's queue
//! holds back the answers behind it on the session's connection (the
//! server answers in order), but not the requests: the server applies a
//! keep-alive sent behind a waiting lock at once, and that keeps the
//! session alive. The keep-alive task therefore gives each answer until
//! the latest deadline of the answers ahead of it (a wait's own length
//! plus the I/O timeout) before it calls the connection dead.
//!
//! **Proof of life.** The server ends a session nothing reached for its
//! TTL, and a `Session` after that opens a new one without saying so. So,
//! as in the blocking client, an answer nothing held back that arrives more
//! than a TTL after the previous answered request was sent loses the
//! session (it cannot prove the session lived until then), as does a
//! keep-alive that could not be sent within a TTL of the last (the process
//! was paused), and a session-bound wait answered `NotOwner` before its
//! wait ran out (the server answers its session's waiters so when it ends).
//!
//! The grant's rules (its deadline, what a release sends, what each answer
//! means) are dlm-core's [`Acquire`] and [`Lease`], as for
//! [`Lock`](crate::Lock); a session-bound lock is not renewed (ask a TTL
//! as long as it is needed: it ends with the session anyway).
//!
//! **Cancellation.** Dropping a session lock's future mid-wait cannot take
//! the request out of the server's queue: only closing the connection
//! does, and that would end the session. The wait goes on in the server,
//! and a spawned task releases the grant, by token, as soon as it comes;
//! nothing stays held. Dropping the [`Session`] closes its connection,
//! which ends every wait and every grant of it at once.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dlm_core::client::{Acquire, Lease};
use dlm_core::protocol::{Request, Response, SessionBind, Shape, Status, Token};
use dlm_core::time::Ttl;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{CallOptions, Client, Via, check_name, check_ttl};
use crate::lock::DEFAULT_TTL;
use crate::pipe::{Pipe, Reply};
use crate::{Error, Result};

/// The longest lock-delay a server accepts.
pub const MAX_LOCK_DELAY: Duration = dlm::MAX_LOCK_DELAY;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a session's handle, its keep-alive task and its locks share.
struct Inner {
    client: Client,
    ttl: Duration,
    /// The session's own connection.
    pipe: Arc<Pipe>,
    /// Order of sending, and the time by which the last request sent must
    /// be answered: an answer waits behind every answer ahead of it.
    sending: Mutex<Instant>,
    /// Session-bound locks that wait, sent and not answered: an answer
    /// behind one of them may have been held back, so the grant it
    /// reports is counted from its request, not from its arrival.
    waits: AtomicUsize,
    /// True once the session is lost (or closed).
    lost: watch::Sender<bool>,
    /// When the last answered request was sent: the server keeps the
    /// session at least a TTL from then.
    alive_from: Mutex<Instant>,
}

impl Inner {
    /// The session is over for this client: its connection closes, which
    /// ends it in the server too if it was not already.
    fn lose(&self) {
        self.lost.send_replace(true);
        self.pipe.shutdown();
    }

    fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Sends `req`, to be answered within `limit` once every answer ahead
    /// of it is in. Returns where the answer arrives, when it is due, and
    /// whether a lock's wait was in flight ahead of it (`counts`: this
    /// request is such a wait, counted until its [`WaitCount`] drops).
    fn send(&self, req: &Request<'_>, limit: Duration, wait: bool) -> Result<Sent> {
        if self.is_lost() {
            return Err(Error::LockLost);
        }
        let mut due = lock(&self.sending);
        let at = Instant::now();
        let mine = (*due).max(at + limit);
        let ahead = self.waits.load(Ordering::Acquire) > 0;
        let Ok(reply) = self.pipe.send(req) else {
            drop(due);
            self.lose();
            return Err(Error::LockLost);
        };
        *due = mine;
        if wait {
            self.waits.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Sent {
            reply,
            due: mine,
            stamp: Stamp { at, ahead, wait },
        })
    }

    /// The answer line of a request sent; a connection that failed loses
    /// the session, and so does an answer that cannot vouch for it.
    async fn answer(&self, reply: &mut Reply, stamp: Stamp) -> Result<Vec<u8>> {
        match reply.await {
            Ok(Ok(line)) if self.vouch(stamp) => Ok(line),
            _ => {
                self.lose();
                Err(Error::LockLost)
            }
        }
    }

    /// An answer came to the request `stamp` describes. The server ends a
    /// session nothing reached for its TTL, and a request after that opens
    /// a new one without saying so: an answer more than a TTL after the
    /// previous answered request was sent (this process was paused, the
    /// network stalled) cannot prove that the session lived until this
    /// request arrived, and the session is lost (the blocking client's
    /// rule). Only for an answer nothing held back: one behind a lock's
    /// wait, or a wait's own, comes late by design (a wait's grant proves
    /// its session alive; a wait answered early says it ended, see
    /// `acquire`).
    fn vouch(&self, stamp: Stamp) -> bool {
        let mut from = lock(&self.alive_from);
        if !stamp.ahead && !stamp.wait && from.elapsed() > self.ttl {
            drop(from);
            self.lose();
            return false;
        }
        if stamp.at > *from {
            *from = stamp.at;
        }
        true
    }

    /// Resolves once the session is lost.
    async fn wait_lost(&self) {
        let mut rx = self.lost.subscribe();
        // The sender lives in `self`: this cannot fail while we wait.
        let _ = rx.wait_for(|lost| *lost).await;
    }
}

/// A request in flight on the session's connection.
struct Sent {
    reply: Reply,
    due: Instant,
    stamp: Stamp,
}

/// What is known of a request sent, to judge its answer.
#[derive(Clone, Copy)]
struct Stamp {
    /// When it was sent.
    at: Instant,
    /// A lock's wait was in flight ahead of it: its answer may be held.
    ahead: bool,
    /// It is a lock that waits.
    wait: bool,
}

/// One waiting lock of the session, counted in [`Inner::waits`] until
/// its answer is in (or the session is over).
struct WaitCount(Option<Arc<Inner>>);

impl Drop for WaitCount {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.waits.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Client {
    /// Opens a server session with `ttl` on a connection of its own (see
    /// [`Session`]), to the cluster's leader. The server ends it,
    /// releasing (or closing, for their lock-delay) every lock bound to
    /// it, when that connection closes or nothing reaches it for `ttl`; a
    /// task sends a keep-alive every third of it. Fails with
    /// [`Error::BadRequest`] against a server without sessions
    /// (JackrabbitDLM). Needs a tokio runtime.
    pub async fn session(&self, ttl: Duration) -> Result<Session> {
        let t = check_ttl(ttl)?;
        if self.shared.framing == dlm_core::protocol::Framing::Legacy {
            return Err(Error::BadRequest(
                "a JackrabbitDLM server has no sessions".into(),
            ));
        }
        let runtime = Handle::try_current()
            .map_err(|e| Error::system("no tokio runtime", io::Error::other(e)))?;
        let req = self.core().session(t);
        let opened = Instant::now();
        let mut kept = None;
        let mut line = self
            .shared
            .exchange(&req, CallOptions::default(), Via::Keep(&mut kept))
            .await?;
        let (_, r) = Response::parse(&mut line).map_err(dlm_core::client::Error::from)?;
        match r.status {
            Status::Done => {}
            Status::BadAction => {
                return Err(Error::BadRequest(
                    "the server has no sessions (a JackrabbitDLM server?)".into(),
                ));
            }
            _ => return Err(answer_error(&r)),
        }
        let conn = kept.ok_or_else(|| Error::Protocol("no connection kept".into()))?;
        let epoch = conn.epoch;
        let stream = conn
            .into_stream()
            .ok_or_else(|| Error::Protocol("the server sent an answer to no request".into()))?;
        let (lost, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            client: self.clone(),
            ttl,
            pipe: Pipe::start(stream, None, epoch),
            sending: Mutex::new(Instant::now()),
            waits: AtomicUsize::new(0),
            lost,
            alive_from: Mutex::new(opened),
        });
        let keeper = runtime.spawn(keep_alive(Arc::clone(&inner)));
        Ok(Session { inner, keeper })
    }
}

/// The error an unexpected answer stands for.
fn answer_error(r: &Response<'_>) -> Error {
    let why = r.error.map(|e| e.to_string()).unwrap_or_default();
    match r.status {
        Status::NotOwner => Error::NotOwner,
        Status::Conflict => Error::Mismatch(why),
        Status::No => Error::NoMemory,
        Status::BadPayload | Status::BadAction => Error::BadRequest(why),
        s => Error::Protocol(format!("unexpected answer {s:?} {why}")),
    }
}

/// The keep-alive task: a `Session` every third of the TTL, each answer
/// awaited until it is due; the session is lost when one is not answered
/// `Done` by then, when the connection closes, or when this task itself
/// could not send within a TTL of its last keep-alive (the process was
/// paused: the server may have ended the session meanwhile, and a
/// keep-alive now would quietly open a new one).
async fn keep_alive(inner: Arc<Inner>) {
    let period = (inner.ttl / 3).max(Duration::from_millis(1));
    let limit = inner
        .client
        .shared
        .io_timeout
        .min(inner.ttl.max(Duration::from_secs(1)));
    let Ok(ttl) = check_ttl(inner.ttl) else {
        return;
    };
    let mut last = Instant::now();
    let mut next = last + period;
    let mut outstanding: std::collections::VecDeque<(Reply, Instant, Stamp)> =
        std::collections::VecDeque::new();
    loop {
        let due = outstanding.front().map(|(_, due, _)| *due);
        tokio::select! {
            biased;
            () = inner.pipe.closed() => break,
            got = async {
                match outstanding.front_mut() {
                    Some((reply, _, _)) => reply.await,
                    None => std::future::pending().await,
                }
            }, if due.is_some() => {
                let Some((_, _, stamp)) = outstanding.pop_front() else {
                    break;
                };
                let ok = got.ok().and_then(Result::ok).is_some_and(|mut line| {
                    Response::parse(&mut line).is_ok_and(|(_, r)| r.status == Status::Done)
                }) && inner.vouch(stamp);
                if !ok {
                    break;
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or(next)), if due.is_some() => break,
            () = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                if now >= last + inner.ttl {
                    break;
                }
                // A keep-alive: refused (not reopened) if the server
                // ended the session.
                let req = inner.client.core().keep_alive(ttl);
                match inner.send(&req, limit, false) {
                    Ok(sent) => outstanding.push_back((sent.reply, sent.due, sent.stamp)),
                    Err(_) => break,
                }
                last = now;
                next = now + period;
            }
        }
    }
    inner.lose();
}

/// A server session on a connection of its own, kept alive by a task
/// until it is dropped (or [`close`](Self::close)d), which ends it and so
/// releases every lock bound to it (or closes it for its lock-delay).
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() -> dlm_tokio::Result<()> {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// # let addr = listener.local_addr().unwrap().to_string();
/// # tokio::spawn(dlm_server::run(listener, Default::default(), std::future::pending()));
/// let client = dlm_tokio::Client::connect(&addr).await?;
/// let session = client.session(Duration::from_secs(10)).await?;
/// let lock = session
///     .lock("leader")
///     .lock_delay(Duration::from_secs(5)) // others stay out 5 s after a crash
///     .wait(Duration::from_secs(30))
///     .await?;
/// tokio::select! {
///     () = session.lost() => eprintln!("session lost: step down"),
///     () = async { /* lead */ } => {}
/// }
/// lock.unlock().await?;
/// # Ok(())
/// # }
/// ```
pub struct Session {
    inner: Arc<Inner>,
    keeper: JoinHandle<()>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("ttl", &self.inner.ttl)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session's TTL.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// A lock of `name` bound to this session; set it up, then `.await`
    /// it (or call [`acquire`](SessionLockBuilder::acquire)).
    pub fn lock(&self, name: impl Into<String>) -> SessionLockBuilder {
        SessionLockBuilder {
            session: Arc::clone(&self.inner),
            name: name.into(),
            ttl: DEFAULT_TTL,
            wait: None,
            delay: Duration::ZERO,
            shape: None,
        }
    }

    /// One permit of the counting semaphore `name` of `permits` permits,
    /// bound to this session (see [`Client::semaphore`]).
    pub fn semaphore(&self, name: impl Into<String>, permits: u32) -> SessionLockBuilder {
        SessionLockBuilder {
            shape: Some(Shape::Semaphore { permits }),
            ..self.lock(name)
        }
    }

    /// The shared (read) side of the read/write lock `name`, bound to this
    /// session (see [`Client::read_lock`]).
    pub fn read_lock(&self, name: impl Into<String>) -> SessionLockBuilder {
        SessionLockBuilder {
            shape: Some(Shape::Read),
            ..self.lock(name)
        }
    }

    /// The exclusive (write) side of the read/write lock `name`, bound to
    /// this session (see [`Client::write_lock`]).
    pub fn write_lock(&self, name: impl Into<String>) -> SessionLockBuilder {
        SessionLockBuilder {
            shape: Some(Shape::Write),
            ..self.lock(name)
        }
    }

    /// Whether the session is lost: its connection failed or closed, a
    /// keep-alive went unanswered in time, or the keep-alive could not be
    /// sent within a TTL of the last. Its locks are then to be taken as
    /// gone (the server ends the session, if it has not yet).
    pub fn is_lost(&self) -> bool {
        self.inner.is_lost()
    }

    /// Resolves when the session is lost (see [`is_lost`](Self::is_lost)).
    /// Select on it to stop the work its locks protect.
    pub async fn lost(&self) {
        self.inner.wait_lost().await;
    }

    /// Ends the session now: its connection closes, and the server
    /// releases (or closes for their lock-delay) every lock bound to it.
    /// Resolves once the connection is closed.
    pub async fn close(self) {
        let pipe = Arc::clone(&self.inner.pipe);
        drop(self);
        pipe.closed().await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
        // Closing the socket is what ends the session on the server.
        self.inner.lose();
    }
}

/// A session-bound lock request being set up:
/// `session.lock("name").ttl(..).wait(..).lock_delay(..).await`. It owns a
/// handle on the session, so its future is `'static` and can be spawned.
#[must_use = "a lock request does nothing until awaited"]
#[derive(Clone)]
pub struct SessionLockBuilder {
    session: Arc<Inner>,
    name: String,
    ttl: Duration,
    wait: Option<Duration>,
    delay: Duration,
    shape: Option<Shape>,
}

impl fmt::Debug for SessionLockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLockBuilder")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("wait", &self.wait)
            .field("lock_delay", &self.delay)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl SessionLockBuilder {
    /// Its TTL (default 30 s): it ends at the first of its TTL and its
    /// session's end. It is not renewed: ask a TTL as long as needed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Queue in the server for up to `wait` if it cannot be granted at
    /// once (first come, first served). Without it, one attempt.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = (!wait.is_zero()).then_some(wait);
        self
    }

    /// After the session ends, nobody may take the name for `delay` (at
    /// most [`MAX_LOCK_DELAY`]), its owner included.
    pub fn lock_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Takes it: [`Error::NotOwner`] if it cannot be granted and no wait
    /// was asked, [`Error::Timeout`] if the wait ran out,
    /// [`Error::Mismatch`] if the name is another kind of lock,
    /// [`Error::LockLost`] if the session is lost. Dropping the future
    /// mid-wait leaves nothing held (see the module's cancellation notes).
    pub async fn acquire(self) -> Result<SessionLock> {
        let Self {
            session,
            name,
            ttl,
            wait,
            delay,
            shape,
        } = self;
        check_name(&name)?;
        let ttl = check_ttl(ttl)?;
        if delay > MAX_LOCK_DELAY {
            return Err(Error::InvalidArgument("a lock-delay is at most 60 s"));
        }
        if shape == Some(Shape::Semaphore { permits: 0 }) {
            return Err(Error::InvalidArgument(
                "a semaphore needs at least 1 permit",
            ));
        }
        let runtime = Handle::try_current()
            .map_err(|e| Error::system("no tokio runtime", io::Error::other(e)))?;
        let client = session.client.clone();
        let sent_at = client.now();
        let mut acquire = Acquire::new(ttl, wait.map(Ttl::from), false, sent_at);
        if let Some(shape) = shape {
            acquire = acquire.with_shape(shape);
        }
        let req = acquire
            .request(&client.core(), &name)
            .with_session(SessionBind {
                lock_delay: Ttl::from(delay),
            });
        let limit = wait.unwrap_or_default() + client.shared.io_timeout;
        let sent = session.send(&req, limit, wait.is_some())?;
        let stamp = sent.stamp;
        let mut attempt = Attempt {
            session: Arc::clone(&session),
            name,
            acquire,
            stamp,
            reply: Some(sent.reply),
            count: WaitCount(wait.is_some().then(|| Arc::clone(&session))),
            runtime,
        };
        let line = match attempt.reply.as_mut() {
            Some(reply) => session.answer(reply, stamp).await,
            None => Err(Error::LockLost),
        };
        attempt.reply = None;
        let mut line = line?;
        let (_, r) = Response::parse(&mut line).map_err(dlm_core::client::Error::from)?;
        let now = client.now();
        let mut lease = match acquire.handle_response(now, &r) {
            Ok(lease) => lease,
            // A session's waiters are answered `NotOwner` when it ends; a
            // wait that ran its course is a timeout. Answered early: the
            // session is over (and a keep-alive may have opened another
            // behind it).
            Err(e) if wait.is_some() && e.kind == dlm_core::client::ErrorKind::NotOwner => {
                session.lose();
                return Err(Error::LockLost);
            }
            Err(e) => return Err(e.into()),
        };
        if stamp.ahead && wait.is_some() {
            // Its answer may have waited behind another wait's: the grant
            // is only known to come after the request.
            let mut once = Acquire::new(ttl, None, false, sent_at);
            if let Some(shape) = shape {
                once = once.with_shape(shape);
            }
            lease = once.handle_response(now, &r)?;
        }
        let Some(token) = lease.token() else {
            return Err(Error::BadRequest(
                "the server ignored Session (a JackrabbitDLM server?)".into(),
            ));
        };
        let name = std::mem::take(&mut attempt.name);
        Ok(SessionLock {
            inner: Arc::new(LockInner {
                session,
                name,
                token,
                lease: Mutex::new(lease),
            }),
        })
    }
}

impl IntoFuture for SessionLockBuilder {
    type Output = Result<SessionLock>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<SessionLock>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.acquire())
    }
}

/// One session-bound acquisition in progress: if it is dropped before its
/// answer, a task reads the answer and gives back a grant nobody holds.
struct Attempt {
    session: Arc<Inner>,
    name: String,
    acquire: Acquire,
    stamp: Stamp,
    reply: Option<Reply>,
    count: WaitCount,
    runtime: Handle,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(mut reply) = self.reply.take() else {
            return;
        };
        let session = Arc::clone(&self.session);
        let name = std::mem::take(&mut self.name);
        let (acquire, stamp) = (self.acquire, self.stamp);
        // The server still counts this wait: so do we, until its answer.
        let count = WaitCount(self.count.0.take());
        self.runtime.spawn(async move {
            let Ok(mut line) = session.answer(&mut reply, stamp).await else {
                return;
            };
            drop(count);
            let Ok((_, r)) = Response::parse(&mut line) else {
                return;
            };
            let now = session.client.now();
            if let Ok(lease) = acquire.handle_response(now, &r) {
                let _ = release(&session, &name, &Mutex::new(lease)).await;
            }
        });
    }
}

/// Sends the release the lease asks for on the session's connection and
/// hands it the answer. Once sent, the request goes out even if this
/// future is dropped (the connection takes every request queued on it),
/// so the lease counts as released from then on.
async fn release(session: &Inner, name: &str, lease: &Mutex<Lease>) -> Result<()> {
    let pending = {
        let mut lease = lock(lease);
        let now = session.client.now();
        lease.handle_timeout(now);
        if !lease.release(now) {
            return if lease.is_lost() {
                Err(Error::LockLost)
            } else {
                Ok(())
            };
        }
        lease.poll_request(now)
    };
    let Some(pending) = pending else {
        return Ok(());
    };
    let req = pending.request(&session.client.core(), name);
    let mut sent = session.send(&req, session.client.shared.io_timeout, false)?;
    let mut line = session.answer(&mut sent.reply, sent.stamp).await?;
    let (_, r) = Response::parse(&mut line).map_err(dlm_core::client::Error::from)?;
    lock(lease).handle_response(session.client.now(), &r)?;
    Ok(())
}

/// What a session-bound lock's guard and its release share.
struct LockInner {
    session: Arc<Inner>,
    name: String,
    token: Token,
    lease: Mutex<Lease>,
}

/// A lock (or semaphore permit, or read/write hold) bound to a
/// [`Session`]. It ends at the first of its TTL and its session's end.
/// Dropping it releases it (by token, on a spawned task, on the session's
/// connection); [`unlock`](Self::unlock) releases it and reports the
/// outcome.
#[must_use = "dropping a SessionLock releases it at once"]
pub struct SessionLock {
    inner: Arc<LockInner>,
}

impl fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLock")
            .field("name", &self.inner.name)
            .field("token", &self.inner.token)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl SessionLock {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its fencing token.
    pub fn token(&self) -> Token {
        self.inner.token
    }

    /// Time left before its TTL runs out, by this process's clock (never
    /// more than the server's); zero once lost (its session too) or
    /// released.
    pub fn remaining(&self) -> Duration {
        if self.inner.session.is_lost() {
            return Duration::ZERO;
        }
        let now = self.inner.session.client.now();
        let mut lease = lock(&self.inner.lease);
        lease.handle_timeout(now);
        lease.remaining(now).into()
    }

    /// Whether it is known to be gone: its session is lost, or its TTL
    /// ran out.
    pub fn is_lost(&self) -> bool {
        let now = self.inner.session.client.now();
        let mut lease = lock(&self.inner.lease);
        lease.handle_timeout(now);
        !lease.is_released() && (lease.is_lost() || self.inner.session.is_lost())
    }

    /// Resolves when it is lost: its session is lost, or its TTL runs out.
    /// Never resolves once it is released.
    pub async fn lost(&self) {
        let deadline = {
            let lease = lock(&self.inner.lease);
            if lease.is_released() {
                None
            } else {
                Some(lease.deadline())
            }
        };
        let Some(at) = deadline else {
            return std::future::pending().await;
        };
        let left = Duration::from(at.saturating_since(self.inner.session.client.now()));
        tokio::select! {
            () = self.inner.session.wait_lost() => {}
            () = tokio::time::sleep(left) => {}
        }
    }

    /// Releases it (by its token) on the session's connection. Fails with
    /// [`Error::LockLost`] if it was already gone (its TTL ran out, or its
    /// session is lost).
    pub async fn unlock(self) -> Result<()> {
        let inner = &self.inner;
        release(&inner.session, &inner.name, &inner.lease).await
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if lock(&self.inner.lease).is_released() || self.inner.session.is_lost() {
            return;
        }
        // Outside a runtime nothing can be sent: it ends with its TTL or
        // its session.
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            let _ = release(&inner.session, &inner.name, &inner.lease).await;
        });
    }
}
