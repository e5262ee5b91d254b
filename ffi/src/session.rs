//! Sessions: locks that end with this client's connection (PROTOCOL.md
//! section 8, "Sessions and lock-delay").
//!
//! A [`Session`] owns one connection of its own (taken out of the pool,
//! opened to the cluster's leader) on which it opened a server session,
//! and a thread that keeps it alive every third of its TTL. Locks taken
//! through it ([`Session::lock`]) are bound to it: if this process dies,
//! is paused past the TTL or loses the connection, the server releases
//! them (or, with a lock-delay, keeps their names closed to everyone for
//! that long first). There is no failover: a session lives and dies with
//! its connection, and once it is lost ([`Session::is_lost`]) its locks
//! are to be taken as gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dlm_core::client::Client as Core;
use dlm_core::protocol::{SessionBind, Shape, Status, Token};
use dlm_core::time::Ttl;

use crate::client::{Client, Conn, check_name, check_ttl};
use crate::error::{Error, Result};
use crate::lock::DEFAULT_TTL;

/// The longest lock-delay a server accepts.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// A server session on a connection of its own, kept alive by a thread
/// until it is dropped (or [`close`](Self::close)d), which ends it and so
/// releases every lock bound to it.
pub struct Session {
    inner: Arc<Inner>,
    keeper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("ttl", &self.inner.ttl)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: Client,
    ttl: Duration,
    /// The connection; `None` once lost or closed.
    conn: Mutex<Option<Conn>>,
    stop: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
    /// When the last answered request was sent: the server keeps the
    /// session at least a TTL from then.
    alive_from: Mutex<Instant>,
    /// Run once when the keep-alive finds the session lost.
    on_lost: Mutex<Option<crate::lock::LostCallback>>,
}

impl Inner {
    /// One request on the session's connection; a broken connection loses
    /// the session.
    fn call<T>(
        &self,
        req: &dlm_core::protocol::Request<'_>,
        limit: Duration,
        f: impl FnOnce(&dlm_core::protocol::Response<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(c) = conn.as_mut() else {
            return Err(Error::LockLost);
        };
        let sent = Instant::now();
        let r = c.call(req, limit, f);
        if matches!(r, Err(Error::Unavailable(_) | Error::Protocol(_))) {
            // The server may or may not have seen it: the connection is
            // no longer trusted, and with it goes the session.
            *conn = None;
            self.lost.store(true, Ordering::Release);
            return r;
        }
        // The server ends a session nothing reached for its TTL, and a
        // request after that opens a new one without saying so: an answer
        // more than a TTL after the previous answered request was sent
        // (this process was paused, the network stalled) cannot prove the
        // session lived until this request arrived. Lost, not trusted;
        // closing the connection ends whatever session the server has.
        let mut from = self
            .alive_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if from.elapsed() > self.ttl {
            *conn = None;
            self.lost.store(true, Ordering::Release);
            return Err(Error::LockLost);
        }
        *from = sent;
        r
    }

    fn core(&self) -> Core<'_> {
        self.client.shared.core()
    }
}

impl Client {
    /// Opens a server session with `ttl` on a connection of its own (see
    /// [`Session`]). The server ends it, releasing its locks, when that
    /// connection closes or nothing reaches it for `ttl`; a thread sends a
    /// keep-alive every third of it.
    pub fn session(&self, ttl: Duration) -> Result<Session> {
        let t = check_ttl(ttl)?;
        let shared = &self.shared;
        let req = shared.core().session(t);
        let opened = Instant::now();
        let ((), conn) = shared.call_keep(&req, |r| match r.status {
            Status::Done => Ok(()),
            Status::BadAction => Err(Error::BadRequest(
                "the server has no sessions (a JackrabbitDLM server?)".into(),
            )),
            _ => Err(answer_error(r)),
        })?;
        let inner = Arc::new(Inner {
            client: self.clone(),
            ttl,
            conn: Mutex::new(Some(conn)),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
            alive_from: Mutex::new(opened),
            on_lost: Mutex::new(None),
        });
        let keeper = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("dlm-session".into())
                .spawn(move || keep_alive(&inner))
                .map_err(|e| Error::system("cannot start the session's keep-alive thread", e))?
        };
        Ok(Session {
            inner,
            keeper: Some(keeper),
        })
    }
}

/// Sends `Session` every third of the TTL until stopped or lost.
fn keep_alive(inner: &Inner) {
    let period = (inner.ttl / 3).max(Duration::from_millis(1));
    let mut stop = inner.stop.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let (s, _) = inner
            .wake
            .wait_timeout(stop, period)
            .unwrap_or_else(PoisonError::into_inner);
        stop = s;
        if *stop {
            return;
        }
        drop(stop);
        if inner.lost.load(Ordering::Acquire) {
            // Found lost by a lock's request: told all the same.
            lost(inner);
            return;
        }
        let Ok(ttl) = check_ttl(inner.ttl) else {
            return;
        };
        // A keep-alive: refused (not reopened) if the server ended it.
        let req = inner.core().keep_alive(ttl);
        let ok = inner.call(&req, period.max(Duration::from_secs(1)), |r| {
            if r.status == Status::Done {
                Ok(())
            } else {
                Err(answer_error(r))
            }
        });
        if ok.is_err() {
            lost(inner);
            return;
        }
        stop = inner.stop.lock().unwrap_or_else(PoisonError::into_inner);
    }
}

/// The session is lost: its connection goes, and `on_lost` runs (once).
fn lost(inner: &Inner) {
    inner.lost.store(true, Ordering::Release);
    *inner.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
    let f = inner
        .on_lost
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(f) = f {
        f();
    }
}

/// The error an unexpected answer stands for.
fn answer_error(r: &dlm_core::protocol::Response<'_>) -> Error {
    let why = r.error.map(|e| e.to_string()).unwrap_or_default();
    match r.status {
        Status::NotOwner => Error::NotOwner,
        Status::Conflict => Error::Mismatch(why),
        Status::No => Error::NoMemory,
        Status::BadPayload | Status::BadAction => Error::BadRequest(why),
        s => Error::Protocol(format!("unexpected answer {s:?} {why}")),
    }
}

impl Session {
    /// A lock of `name` bound to this session (`.ttl()`, `.wait()`,
    /// `.lock_delay()`, then `.acquire()`).
    pub fn lock(&self, name: &str) -> SessionLockBuilder<'_> {
        SessionLockBuilder {
            session: self,
            name: name.to_owned(),
            ttl: DEFAULT_TTL,
            wait: None,
            delay: Duration::ZERO,
            shape: None,
        }
    }

    /// Runs `f` once, on the keep-alive thread, once the session is found
    /// lost, by a keep-alive or by a lock's request (its locks are then to
    /// be taken as gone).
    pub fn on_lost(&self, f: impl Fn() + Send + Sync + 'static) {
        *self
            .inner
            .on_lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(f));
    }

    /// Whether the session is lost: its connection broke, a keep-alive
    /// failed, or an answer came more than a TTL after the previous
    /// answered request was sent (the server may have ended it meanwhile). The server ends it (if it has not yet) and its locks with
    /// it.
    pub fn is_lost(&self) -> bool {
        self.inner.lost.load(Ordering::Acquire)
    }

    /// Ends the session now: its connection closes, and the server
    /// releases (or closes for their lock-delay) every lock bound to it.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        *self
            .inner
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.inner.wake.notify_all();
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
        // Closing the socket is what ends the session on the server.
        *self
            .inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A session-bound lock request being set up.
#[must_use = "a lock request does nothing until acquire() is called"]
pub struct SessionLockBuilder<'s> {
    session: &'s Session,
    name: String,
    ttl: Duration,
    wait: Option<Duration>,
    delay: Duration,
    shape: Option<Shape>,
}

impl SessionLockBuilder<'_> {
    /// Its TTL (default 30 s): it ends at the first of its TTL and its
    /// session's end. A session-bound lock is not renewed; ask a TTL as
    /// long as it is needed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Queue in the server for up to `wait` if it is held.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = (!wait.is_zero()).then_some(wait);
        self
    }

    /// After the session ends, nobody may take the name for `delay` (at
    /// most [`MAX_LOCK_DELAY`]).
    pub fn lock_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// One permit of a semaphore of `permits` permits instead of the
    /// exclusive lock.
    pub fn permits(mut self, permits: u32) -> Self {
        self.shape = Some(Shape::Semaphore { permits });
        self
    }

    /// The shared (`write == false`) or exclusive side of a read/write
    /// lock instead of the exclusive lock.
    pub fn read_write(mut self, write: bool) -> Self {
        self.shape = Some(if write { Shape::Write } else { Shape::Read });
        self
    }

    /// Takes it: [`Error::NotOwner`] if held and no wait was asked,
    /// [`Error::Timeout`] if the wait ran out, [`Error::Mismatch`] if the
    /// name is another kind, [`Error::LockLost`] if the session is lost.
    pub fn acquire(self) -> Result<SessionLock> {
        check_name(&self.name)?;
        let ttl = check_ttl(self.ttl)?;
        if self.delay > MAX_LOCK_DELAY {
            return Err(Error::InvalidArgument("a lock-delay is at most 60 s"));
        }
        if self.shape == Some(Shape::Semaphore { permits: 0 }) {
            return Err(Error::InvalidArgument(
                "a semaphore needs at least 1 permit",
            ));
        }
        let inner = &self.session.inner;
        let wait = self.wait.map(Ttl::from);
        let core = inner.core();
        let req = match self.shape {
            None => match wait {
                Some(w) => core.lock_wait(&self.name, ttl, w),
                None => core.lock(&self.name, ttl),
            },
            Some(shape) => core.acquire(&self.name, shape, ttl, wait),
        }
        .with_session(SessionBind {
            lock_delay: Ttl::from(self.delay),
        });
        let limit = self.wait.unwrap_or_default() + inner.client.shared.io_timeout;
        let token = inner.call(&req, limit, |r| match (r.status, r.token) {
            (Status::Locked, Some(t)) => Ok(t),
            (Status::Locked, None) => Err(Error::BadRequest(
                "the server ignored Session (a JackrabbitDLM server?)".into(),
            )),
            (Status::NotOwner, _) if wait.is_some() => Err(Error::Timeout),
            _ => Err(answer_error(r)),
        })?;
        Ok(SessionLock {
            session: Arc::clone(inner),
            name: self.name,
            token,
        })
    }
}

/// A lock bound to a [`Session`]. Dropping it leaves it held until its
/// TTL or its session's end; [`unlock`](Self::unlock) releases it.
pub struct SessionLock {
    session: Arc<Inner>,
    name: String,
    token: Token,
}

impl std::fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLock")
            .field("name", &self.name)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl SessionLock {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its fencing token.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Releases it (by its token) on the session's connection.
    pub fn unlock(self) -> Result<()> {
        let core = self.session.core();
        let req = core.unlock(&self.name, Some(self.token));
        let limit = self.session.client.shared.io_timeout;
        self.session.call(&req, limit, |r| match r.status {
            Status::Unlocked => Ok(()),
            _ => Err(answer_error(r)),
        })
    }
}
