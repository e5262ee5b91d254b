//! Locks: acquiring (once, or waiting in the server's fair queue), the
//! guard that holds one, extending it, auto-renewal, loss, and release on
//! drop.
//!
//! The rules (when the lock was granted, its deadline, when to renew, how
//! to retry, when it is lost, what a release sends) are dlm-core's
//! [`Acquire`] and [`Lease`], the same state machine the blocking client
//! and the Node.js client drive. This module only drives it: it reads
//! tokio's clock, sends the requests the lease hands out, and, for an
//! auto-renewed lock, runs one task that sleeps until the lease's next
//! timeout.
//!
//! **Cancellation.** Every future here may be dropped at any `.await`:
//!
//! - an `acquire()` dropped before its answer leaves what is in flight to
//!   a spawned task: a wait's own connection is half-closed (the server
//!   takes the request out of its queue at once) and the answer it still
//!   owes is read; if the grant raced the close, or a one-attempt lock
//!   was granted, it is released by token;
//! - an `extend()` or `unlock()` dropped mid-flight counts, for the lease,
//!   as a request that got no answer (a renewal is retried, a release may
//!   be asked for again, and dropping the [`Lock`] does).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dlm_core::client::{Acquire, AcquireAll, Action, Done, Event, Lease};
use dlm_core::protocol::{MAX_LOCK_ALL, Names, Response, Shape, Token};
use dlm_core::time::{Instant, Ttl};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::client::{CallOptions, Client, Via, check_name, check_ttl};
use crate::conn::Conn;
use crate::pipe::Reply;
use crate::{Error, Result};

/// The default time to live of a lock.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A lock request being set up:
/// `client.lock("name").ttl(..).wait(..).auto_renew(true).acquire().await`.
///
/// It owns a handle on the client, so `acquire()`'s future is `'static`
/// and can be spawned.
#[must_use = "a lock request does nothing until acquire() is awaited"]
#[derive(Clone, Debug)]
pub struct LockBuilder {
    client: Client,
    name: String,
    /// A semaphore permit or a side of a read/write lock; `None`: the
    /// name's exclusive lock.
    shape: Option<Shape>,
    ttl: Duration,
    wait: Option<Duration>,
    auto_renew: bool,
}

impl LockBuilder {
    pub(crate) fn new(client: Client, name: String) -> Self {
        Self {
            client,
            name,
            shape: None,
            ttl: DEFAULT_TTL,
            wait: None,
            auto_renew: false,
        }
    }

    /// A request for `shape` of `name` (a permit, a read or write side).
    pub(crate) fn shaped(client: Client, name: String, shape: Shape) -> Self {
        Self {
            shape: Some(shape),
            ..Self::new(client, name)
        }
    }

    /// How long the server keeps the lock unless it is extended (default
    /// 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Queue in the server for up to `wait` if another owner holds it
    /// (first come, first served). Without it, one attempt.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = (!wait.is_zero()).then_some(wait);
        self
    }

    /// Extend the lock in the background every third of its TTL until it
    /// is released; if that fails until the deadline (or the server says
    /// the lock is gone), the lock is lost: [`Lock::lost`] resolves and
    /// [`Lock::is_lost`] is true.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Acquires the lock (or the semaphore permit, or the read/write lock
    /// side). Fails with [`Error::NotOwner`] if another owner holds it (no
    /// permit is free, a writer holds it or waits, ...) and no wait was
    /// asked for, [`Error::Mismatch`] if the name is another kind of lock
    /// (or a semaphore of another size), [`Error::Timeout`] if the wait
    /// ran out. To give up earlier, drop the future (e.g. with
    /// `tokio::time::timeout` or `select!`): the server then forgets the
    /// wait, and a grant that raced it is released.
    pub async fn acquire(self) -> Result<Lock> {
        let Self {
            client,
            name,
            shape,
            ttl,
            wait,
            auto_renew,
        } = self;
        check_name(&name)?;
        let ttl = check_ttl(ttl)?;
        let runtime = Handle::try_current()
            .map_err(|e| Error::system("no tokio runtime", io::Error::other(e)))?;
        let mut acquire = Acquire::new(ttl, wait.map(Ttl::from), auto_renew, client.now());
        if let Some(shape) = shape {
            if shape == (Shape::Semaphore { permits: 0 }) {
                return Err(Error::InvalidArgument(
                    "a semaphore needs at least 1 permit",
                ));
            }
            acquire = acquire.with_shape(shape);
        }
        let mut attempt = Attempt {
            client,
            name,
            acquire,
            queued: None,
            waiting: None,
        };
        let lease = attempt.run().await?;
        let name = std::mem::take(&mut attempt.name);
        Ok(Lock::from_lease(
            &attempt.client,
            name,
            lease,
            auto_renew.then_some(&runtime),
        ))
    }
}

/// A request for several locks at once, all or none:
/// `client.lock_all(["a", "b"]).ttl(..).wait(..).acquire().await`
/// (PROTOCOL.md section 8, "Multi-locks").
#[must_use = "a lock request does nothing until acquire() is awaited"]
#[derive(Clone, Debug)]
pub struct LockAllBuilder {
    client: Client,
    names: Vec<String>,
    ttl: Duration,
    wait: Option<Duration>,
    auto_renew: bool,
}

impl LockAllBuilder {
    pub(crate) fn new(client: Client, names: Vec<String>) -> Self {
        Self {
            client,
            names,
            ttl: DEFAULT_TTL,
            wait: None,
            auto_renew: false,
        }
    }

    /// How long the server keeps every lock unless extended (default 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Queue in the server for up to `wait` if any name is held or
    /// awaited: in every name's queue at once, granted all together when
    /// first in line on each. Without it, one attempt.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = (!wait.is_zero()).then_some(wait);
        self
    }

    /// Extend every lock in the background (one task per name), as
    /// [`LockBuilder::auto_renew`] does for one.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Takes every lock, or none. Fails with [`Error::InvalidArgument`]
    /// for no names, more than 16, or a name twice; [`Error::NotOwner`] if
    /// one of them is held or awaited (or held by this client already) and
    /// no wait was asked for; [`Error::Mismatch`] if one is a semaphore or
    /// read/write lock; [`Error::Timeout`] if the wait ran out;
    /// [`Error::BadRequest`] from a server without multi-locks. Dropped
    /// before its answer, a grant that arrives anyway is released.
    pub async fn acquire(self) -> Result<MultiLock> {
        let Self {
            client,
            names,
            ttl,
            wait,
            auto_renew,
        } = self;
        if names.is_empty() {
            return Err(Error::InvalidArgument("lock_all needs at least one name"));
        }
        if names.len() > MAX_LOCK_ALL {
            return Err(Error::InvalidArgument("lock_all takes at most 16 names"));
        }
        for (i, name) in names.iter().enumerate() {
            check_name(name)?;
            if names[..i].contains(name) {
                return Err(Error::InvalidArgument("lock_all names a lock twice"));
            }
        }
        let ttl = check_ttl(ttl)?;
        let runtime = Handle::try_current()
            .map_err(|e| Error::system("no tokio runtime", io::Error::other(e)))?;
        let acquire = AcquireAll::new(ttl, wait.map(Ttl::from), auto_renew, client.now());
        let mut attempt = AttemptAll {
            client,
            names,
            acquire,
            queued: None,
            waiting: None,
        };
        let leases = attempt.run().await?;
        let names = std::mem::take(&mut attempt.names);
        let locks = names
            .into_iter()
            .zip(leases)
            .map(|(name, lease)| {
                Lock::from_lease(&attempt.client, name, lease, auto_renew.then_some(&runtime))
            })
            .collect();
        Ok(MultiLock { locks })
    }
}

/// One `LockAll` in progress; dropped with something in flight, a task
/// finds out whether it was granted and, if so, gives every name back.
struct AttemptAll {
    client: Client,
    names: Vec<String>,
    acquire: AcquireAll,
    queued: Option<Reply>,
    waiting: Option<Conn>,
}

impl AttemptAll {
    async fn run(&mut self) -> Result<Vec<Lease>> {
        let refs: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let list = Names::new(&refs).ok_or(Error::InvalidArgument("too many names"))?;
        let req = self.acquire.request(&self.client.core(), list);
        let via = if self.acquire.wait().is_some() {
            Via::Own(&mut self.waiting)
        } else {
            Via::Pipe(&mut self.queued)
        };
        let (acquire, clock, n) = (self.acquire, self.client.shared.clock, refs.len());
        self.client
            .shared
            .call(&req, CallOptions::default(), via, |r| {
                Ok(acquire
                    .handle_response(clock.now(), r, n)
                    .map(|g| g.leases().collect())?)
            })
            .await
    }
}

impl Drop for AttemptAll {
    fn drop(&mut self) {
        let (queued, waiting) = (self.queued.take(), self.waiting.take());
        if queued.is_none() && waiting.is_none() {
            return;
        }
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let (client, names, acquire) = (
            self.client.clone(),
            std::mem::take(&mut self.names),
            self.acquire,
        );
        runtime.spawn(async move {
            let line = match (queued, waiting) {
                (Some(reply), _) => reply.await.ok().and_then(Result::ok),
                (None, Some(conn)) => conn.abandon(client.shared.io_timeout).await,
                (None, None) => None,
            };
            let Some(mut line) = line else {
                return;
            };
            let Ok((_, r)) = Response::parse(&mut line) else {
                return;
            };
            let now = client.now();
            let Ok(granted) = acquire.handle_response(now, &r, names.len()) else {
                return;
            };
            let leases: Vec<Lease> = granted.leases().collect();
            for (name, mut lease) in names.iter().zip(leases) {
                if lease.release(now)
                    && let Some(pending) = lease.poll_request(now)
                {
                    let req = pending.request(&client.core(), name);
                    let options = CallOptions {
                        release: true,
                        ..CallOptions::default()
                    };
                    let _ = client
                        .shared
                        .exchange(&req, options, Via::Pipe(&mut None))
                        .await;
                }
            }
        });
    }
}

/// Several locks held together (from [`Client::lock_all`]): each an
/// ordinary [`Lock`] with its own fencing token. Dropping it releases every
/// one (best effort, on spawned tasks); [`MultiLock::unlock`] releases them
/// together, pipelined, and reports the outcome.
#[must_use = "dropping a MultiLock releases its locks at once"]
#[derive(Debug)]
pub struct MultiLock {
    locks: Vec<Lock>,
}

impl MultiLock {
    /// The locks, in the order their names were given.
    pub fn locks(&self) -> &[Lock] {
        &self.locks
    }

    /// The names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.locks.iter().map(Lock::name)
    }

    /// The fencing token of each name, in the order given.
    pub fn tokens(&self) -> Vec<Option<Token>> {
        self.locks.iter().map(Lock::token).collect()
    }

    /// The fencing token of `name`, if it is one of the set.
    pub fn token(&self, name: &str) -> Option<Token> {
        self.locks
            .iter()
            .find(|l| l.name() == name)
            .and_then(Lock::token)
    }

    /// Time left before the first of them expires unless extended.
    pub fn remaining(&self) -> Duration {
        self.locks
            .iter()
            .map(Lock::remaining)
            .min()
            .unwrap_or_default()
    }

    /// Whether any of them is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.locks.iter().any(Lock::is_lost)
    }

    /// Extends every lock to `ttl` from now, pipelined (each by its token;
    /// never re-acquires). The first failure is returned.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let runtime = Handle::current();
        let tasks: Vec<_> = self
            .locks
            .iter()
            .map(|l| {
                let inner = l.inner.clone();
                runtime.spawn(async move { Lock::extend_inner(&inner, ttl).await })
            })
            .collect();
        join_first_error(tasks).await
    }

    /// Releases every lock, pipelined. Fails (once all were tried) with
    /// the first failure, such as [`Error::LockLost`] for one that had
    /// expired.
    pub async fn unlock(self) -> Result<()> {
        let runtime = Handle::current();
        let tasks: Vec<_> = self
            .locks
            .iter()
            .map(|l| {
                let inner = l.inner.clone();
                runtime.spawn(async move { inner.release().await })
            })
            .collect();
        join_first_error(tasks).await
    }
}

/// Awaits every task; the first failure, if any.
async fn join_first_error(tasks: Vec<tokio::task::JoinHandle<Result<()>>>) -> Result<()> {
    let mut first = Ok(());
    for t in tasks {
        let r = t
            .await
            .unwrap_or_else(|e| Err(Error::system("a lock task failed", io::Error::other(e))));
        if let Err(e) = r
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}

/// One acquisition in progress. What it has in flight when it is dropped
/// goes to a task that finds out whether the lock was granted and, if so,
/// gives it back.
struct Attempt {
    client: Client,
    name: String,
    acquire: Acquire,
    /// A one-attempt `Lock` queued on a pipelined connection.
    queued: Option<Reply>,
    /// A connection on which a `Lock` waits.
    waiting: Option<Conn>,
}

impl Attempt {
    /// Sends the `Lock` through the failover: a wait on a connection of
    /// its own (queued again on the next member, with what is left of it,
    /// if the one it waits on fails), one attempt pipelined.
    async fn run(&mut self) -> Result<Lease> {
        let req = self.acquire.request(&self.client.core(), &self.name);
        let via = if self.acquire.wait().is_some() {
            Via::Own(&mut self.waiting)
        } else {
            Via::Pipe(&mut self.queued)
        };
        let (acquire, clock) = (self.acquire, self.client.shared.clock);
        self.client
            .shared
            .call(&req, CallOptions::default(), via, |r| {
                Ok(acquire.handle_response(clock.now(), r)?)
            })
            .await
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let (queued, waiting) = (self.queued.take(), self.waiting.take());
        if queued.is_none() && waiting.is_none() {
            return;
        }
        // Without a runtime nothing can run: the socket closes, and the
        // server takes back a waiter's grant where it still can.
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let (client, name, acquire) = (
            self.client.clone(),
            std::mem::take(&mut self.name),
            self.acquire,
        );
        runtime.spawn(async move {
            let line = match (queued, waiting) {
                (Some(reply), _) => reply.await.ok().and_then(Result::ok),
                (None, Some(conn)) => conn.abandon(client.shared.io_timeout).await,
                (None, None) => None,
            };
            if let Some(mut line) = line {
                give_back(&client, &name, acquire, &mut line).await;
            }
        });
    }
}

/// Releases a grant nobody holds: the answer to an acquisition whose
/// caller has gone. The lease says what that release is.
async fn give_back(client: &Client, name: &str, acquire: Acquire, line: &mut [u8]) {
    let Ok((_, r)) = Response::parse(line) else {
        return;
    };
    let now = client.now();
    let Ok(mut lease) = acquire.handle_response(now, &r) else {
        // Not granted: nothing to give back.
        return;
    };
    if lease.release(now)
        && let Some(pending) = lease.poll_request(now)
    {
        let req = pending.request(&client.core(), name);
        let options = CallOptions {
            release: true,
            ..CallOptions::default()
        };
        let _ = client
            .shared
            .exchange(&req, options, Via::Pipe(&mut None))
            .await;
    }
}

/// What a held lock's guard, its renewal task and its release share.
struct Inner {
    client: Client,
    name: String,
    token: Option<Token>,
    lease: Mutex<Lease>,
    /// Held while a request for this lock is in flight: one at a time, as
    /// the lease wants.
    io: tokio::sync::Mutex<()>,
    /// Woken when the lease changed (an answer, a loss): for
    /// [`Lock::lost`].
    changed: Notify,
    /// Wakes the renewal task: a new schedule, or stop.
    wake: Notify,
    stopping: AtomicBool,
}

impl Inner {
    fn lease(&self) -> MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the lease at the current time, and tells the `lost()`
    /// futures if the lease lost the lock.
    fn with_lease<T>(&self, f: impl FnOnce(&mut Lease, Instant) -> T) -> T {
        let (out, lost) = {
            let mut lease = self.lease();
            let now = self.client.now();
            lease.handle_timeout(now);
            let out = f(&mut lease, now);
            (out, lease.poll_event() == Some(Event::Lost))
        };
        if lost {
            self.changed.notify_waiters();
        }
        out
    }

    /// Sends the request the lease wants sent, if any, and hands it the
    /// answer, or the failure to get one. The caller holds `io`.
    async fn exchange(&self) -> Option<Result<Done>> {
        let pending = self.with_lease(Lease::poll_request)?;
        let req = pending.request(&self.client.core(), &self.name);
        // An extension is worth nothing past the lease's deadline: the
        // call ends by then, so that a loss is reported on time. Through a
        // failover it goes to whichever member the failover moved to.
        let options = CallOptions {
            not_after: pending.deadline(),
            release: pending.action() == Action::Release,
        };
        let mut flight = Unanswered(Some(self));
        let answered =
            self.client
                .shared
                .call(&req, options, Via::Pipe(&mut None), |r| {
                    Ok(self.with_lease(|lease, now| {
                        lease.handle_response(now, r).map_err(Error::from)
                    }))
                })
                .await;
        let result = match answered {
            Ok(done) => {
                flight.0 = None;
                done
            }
            Err(e) => Err(e),
        };
        drop(flight);
        // The schedule may have changed.
        self.changed.notify_waiters();
        self.wake.notify_one();
        Some(result)
    }

    /// Releases the grant. Only a definite answer marks it released: after
    /// a connection failure it may be tried again (and dropping the lock
    /// does).
    async fn release(&self) -> Result<()> {
        let _io = self.io.lock().await;
        self.stop_renewal();
        if !self.with_lease(Lease::release) {
            return Ok(());
        }
        self.exchange().await.map_or(Ok(()), |r| r.map(drop))
    }

    fn stop_renewal(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Tells the lease that the request in flight got no answer, unless it
/// did: also when the call is dropped mid-flight.
struct Unanswered<'a>(Option<&'a Inner>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.0 {
            inner.with_lease(Lease::handle_failure);
        }
    }
}

/// The task of an auto-renewed lock: it sleeps until the lease's next
/// timeout and sends what the lease asks for.
async fn renew(inner: Arc<Inner>) {
    loop {
        {
            let _io = inner.io.lock().await;
            if inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            if inner.exchange().await.is_some() {
                continue;
            }
        }
        let pause = {
            let lease = inner.lease();
            if inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            if lease.has_request() {
                continue;
            }
            let Some(at) = lease.poll_timeout() else {
                // Released or lost, and nothing left to send.
                return;
            };
            // In the lease's own milliseconds: a far deadline cannot
            // overflow (tokio caps a long sleep).
            Duration::from(at.saturating_since(inner.client.now()))
        };
        if !pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = inner.wake.notified() => {}
            }
        }
    }
}

/// A held lock. Dropping it releases it (best effort, by token, on a
/// spawned task; dropped outside a tokio runtime nothing can be sent, and
/// the lock expires at its TTL); [`Lock::unlock`] releases it and reports
/// the outcome. It is `Send` and `Sync`: share it by reference, or move it
/// into the task that does the work.
#[must_use = "dropping a Lock releases it at once"]
pub struct Lock {
    inner: Arc<Inner>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.inner.name)
            .field("token", &self.inner.token)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

/// What [`Lock::lost`] waits for next.
enum Watch {
    Lost,
    Released,
    Deadline(Instant),
}

impl Lock {
    /// A guard for a grant the server made (`lease`), renewed by a task
    /// on `renew_on` if given.
    fn from_lease(client: &Client, name: String, lease: Lease, renew_on: Option<&Handle>) -> Self {
        let inner = Arc::new(Inner {
            client: client.clone(),
            name,
            token: lease.token(),
            lease: Mutex::new(lease),
            io: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        if let Some(runtime) = renew_on {
            runtime.spawn(renew(inner.clone()));
        }
        Self { inner }
    }

    async fn extend_inner(inner: &Inner, ttl: Duration) -> Result<()> {
        let ttl = check_ttl(ttl)?;
        let _io = inner.io.lock().await;
        inner.with_lease(|lease, now| lease.extend(now, ttl))?;
        match inner.exchange().await {
            Some(result) => result.map(drop),
            // Lost before it could be sent.
            None => Err(Error::LockLost),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The fencing token of this grant: pass it to whatever the lock
    /// protects, so a holder whose lock expired can be refused. `None` if
    /// the server gives no tokens (JackrabbitDLM): then nothing can fence,
    /// and extensions are plain re-locks, sent only before the deadline.
    pub fn token(&self) -> Option<Token> {
        self.inner.token
    }

    /// Time left before the lock expires unless extended, by this process's
    /// clock (never more than the server's); zero once lost or released.
    pub fn remaining(&self) -> Duration {
        self.inner
            .with_lease(|lease, now| lease.remaining(now))
            .into()
    }

    /// Whether the lock is known to be lost: its deadline passed without a
    /// confirmed extension, or an extension or release found it gone.
    pub fn is_lost(&self) -> bool {
        self.inner.with_lease(|lease, _| lease.is_lost())
    }

    /// Resolves when the lock is lost: at its deadline if nothing extended
    /// it (an auto-renewed lock is extended until the server cannot be
    /// reached until then, or says it is gone), or when an extension finds
    /// it gone. Never resolves for a lock that is held until released.
    /// Select on it to stop work the lock protects:
    ///
    /// ```no_run
    /// # async fn work() {}
    /// # async fn f(lock: dlm_tokio::Lock) {
    /// tokio::select! {
    ///     () = lock.lost() => eprintln!("lost the lock: stopping"),
    ///     () = work() => {}
    /// }
    /// # }
    /// ```
    pub async fn lost(&self) {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Listen before looking, so no change falls in between.
            changed.as_mut().enable();
            let next = self.inner.with_lease(|lease, _| {
                if lease.is_lost() {
                    Watch::Lost
                } else if lease.is_released() {
                    Watch::Released
                } else {
                    Watch::Deadline(lease.deadline())
                }
            });
            match next {
                Watch::Lost => return,
                Watch::Released => std::future::pending::<()>().await,
                Watch::Deadline(at) => {
                    let pause = Duration::from(at.saturating_since(self.inner.client.now()));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }

    /// Extends this grant to `ttl` from now. Never re-acquires: if the lock
    /// is lost or was released, fails with [`Error::LockLost`].
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        Self::extend_inner(&self.inner, ttl).await
    }

    /// Releases the lock. Fails with [`Error::LockLost`] if it had already
    /// expired (someone else may have held it meanwhile).
    pub async fn unlock(self) -> Result<()> {
        self.inner.release().await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.inner.with_lease(|lease, _| lease.is_released()) {
            self.inner.stop_renewal();
            return;
        }
        match Handle::try_current() {
            Ok(runtime) => {
                let inner = self.inner.clone();
                runtime.spawn(async move {
                    let _ = inner.release().await;
                });
            }
            // Nothing can be sent: the lock expires at its TTL.
            Err(_) => self.inner.stop_renewal(),
        }
    }
}
