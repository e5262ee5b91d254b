//! Locks: acquiring (once, or waiting in the server's fair queue), the
//! guard that holds one, extending it, auto-renewal, and release on drop.
//!
//! The rules (when the lock was granted, its deadline, when to renew, how
//! to retry, when it is lost) are dlm-core's [`Lease`], the same state
//! machine the Node.js client drives. This module only drives it: it reads
//! the clock, sends the requests the lease hands out on the client's
//! blocking connections, and, for an auto-renewed lock, runs one thread that
//! sleeps until the lease's next timeout.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use dlm_core::client::{Acquire, AcquireAll, Action, Done, Event, Lease};
use dlm_core::protocol::{MAX_LOCK_ALL, Names, Shape, Token};
use dlm_core::time::{Instant, Ttl};

use crate::cancel::CancelToken;
use crate::client::{CallOptions, Client, check_name, check_ttl};
use crate::error::{Error, Result};

/// The default time to live of a lock.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// What [`Client::test_lock`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// This client holds it.
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

/// A callback run once when a lock is found lost: on the renewal thread,
/// or on the thread of the call that finds it (an extension or release the
/// server refused, or any call on the lock after its deadline passed).
pub type LostCallback = Arc<dyn Fn() + Send + Sync>;

/// A lock request being set up: `client.lock("name").ttl(..).wait(..).acquire()`.
#[must_use = "a lock request does nothing until acquire() is called"]
pub struct LockBuilder<'c> {
    client: &'c Client,
    name: String,
    ttl: Duration,
    wait: Option<Duration>,
    auto_renew: bool,
    on_lost: Option<LostCallback>,
    cancel: Option<CancelToken>,
    shape: Option<Shape>,
}

impl<'c> LockBuilder<'c> {
    pub(crate) fn new(client: &'c Client, name: &str) -> Self {
        Self {
            client,
            name: name.to_owned(),
            ttl: DEFAULT_TTL,
            wait: None,
            auto_renew: false,
            on_lost: None,
            cancel: None,
            shape: None,
        }
    }

    /// A request for one hold of a semaphore or read/write lock instead of
    /// the exclusive lock (see [`Client::semaphore`], [`Client::read_lock`],
    /// [`Client::write_lock`]).
    pub(crate) fn shaped(client: &'c Client, name: &str, shape: Shape) -> Self {
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
    /// the lock is gone), the lock is lost ([`Lock::is_lost`]) and the
    /// [`on_lost`](Self::on_lost) callback runs.
    ///
    /// Across a cluster's failover the extensions go on through the new
    /// leader, by the grant's token: a dropped connection or an election
    /// does not lose the lock, only the cluster saying it is gone or the
    /// deadline passing does. Meanwhile the TTL keeps running on this
    /// process's clock: act on the lock only while [`Lock::remaining`] is
    /// left, and pass [`Lock::token`] to what it protects.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Runs `f` once if the lock is found lost (see [`LostCallback`]).
    pub fn on_lost(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_lost = Some(Arc::new(f));
        self
    }

    /// Lets another thread abort a waiting acquire with `token.cancel()`.
    pub fn cancel(mut self, token: &CancelToken) -> Self {
        self.cancel = Some(token.clone());
        self
    }

    /// Acquires the lock (or the semaphore permit, or the read/write lock
    /// in its mode). Fails with [`Error::NotOwner`] if another owner
    /// holds it (no permit is free, a writer holds it or waits, ...) and
    /// no wait was asked for, [`Error::Mismatch`] if the name is another
    /// kind of lock (or a semaphore of another size), [`Error::Timeout`] if the wait
    /// ran out, [`Error::Cancelled`] if cancelled. With auto-renewal, fails
    /// with [`Error::System`] (having released the lock) if the renewal
    /// thread cannot be started.
    pub fn acquire(self) -> Result<Lock> {
        check_name(&self.name)?;
        let ttl = check_ttl(self.ttl)?;
        let shared = &self.client.shared;
        let wait = self.wait.map(Ttl::from);
        let mut acquire = Acquire::new(ttl, wait, self.auto_renew, shared.clock.now());
        if let Some(shape) = self.shape {
            if shape == (Shape::Semaphore { permits: 0 }) {
                return Err(Error::InvalidArgument(
                    "a semaphore needs at least 1 permit",
                ));
            }
            acquire = acquire.with_shape(shape);
        }
        let req = acquire.request(&shared.core(), &self.name);
        let options = CallOptions {
            cancel: self.cancel.as_ref(),
            ..CallOptions::default()
        };
        // Across a failover the request is sent again, its wait cut to what
        // is left of it: a re-lock by this owner keeps a grant it got.
        let lease = shared.call(&req, options, |r| {
            acquire
                .handle_response(shared.clock.now(), r)
                .map_err(Error::from)
        })?;
        let mut lock =
            Lock::from_lease(self.client, self.name, lease, self.auto_renew, self.on_lost);
        if self.auto_renew {
            lock.start_renewer()?;
        }
        Ok(lock)
    }
}

struct Inner {
    client: Client,
    name: String,
    token: Option<Token>,
    lease: Mutex<Lease>,
    /// Wakes the renewal thread: a stop, or a new schedule. Paired with
    /// `lease`.
    wake: Condvar,
    stopping: AtomicBool,
    /// Held while a request for this lock is in flight: one at a time, as
    /// the lease wants.
    io: Mutex<()>,
    on_lost: Option<LostCallback>,
    /// Whether a renewal thread may be waiting on `wake`. Without one,
    /// nothing is notified: a notification is a system call (a futex
    /// wake) even when nobody waits, one more per release.
    renewed: bool,
}

impl Inner {
    fn now(&self) -> Instant {
        self.client.shared.clock.now()
    }

    fn lease(&self) -> MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn io(&self) -> MutexGuard<'_, ()> {
        self.io.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the lease at the current time, then runs the lost
    /// callback (outside the lease's mutex) if the lease lost the lock.
    fn with_lease<T>(&self, f: impl FnOnce(&mut Lease, Instant) -> T) -> T {
        let (out, lost) = {
            let mut lease = self.lease();
            let now = self.now();
            lease.handle_timeout(now);
            let out = f(&mut lease, now);
            (out, lease.poll_event() == Some(Event::Lost))
        };
        if lost && let Some(f) = &self.on_lost {
            f();
        }
        out
    }

    /// Sends the request the lease wants sent, if any, and hands it the
    /// answer (or the failure to get one). The caller holds `io`.
    fn exchange(&self) -> Option<Result<Done>> {
        let pending = self.with_lease(Lease::poll_request)?;
        let shared = &self.client.shared;
        let req = pending.request(&shared.core(), &self.name);
        let mut answered = false;
        // An extension is worth nothing past the lease's deadline: the
        // call ends by then, so that a loss is reported on time.
        let options = CallOptions {
            cancel: None,
            not_after: pending.deadline(),
            release: pending.action() == Action::Release,
            keep: false,
        };
        let result = shared.call(&req, options, |r| {
            answered = true;
            self.with_lease(|lease, now| lease.handle_response(now, r).map_err(Error::from))
        });
        if !answered {
            self.with_lease(Lease::handle_failure);
        }
        // The schedule may have changed: let the renewal thread look again.
        if self.renewed {
            self.wake.notify_all();
        }
        Some(result)
    }

    fn extend(&self, ttl: Duration) -> Result<()> {
        let ttl = check_ttl(ttl)?;
        let _io = self.io();
        self.with_lease(|lease, now| lease.extend(now, ttl))?;
        match self.exchange() {
            Some(result) => result.map(drop),
            // Lost before it could be sent.
            None => Err(Error::LockLost),
        }
    }

    /// Releases the grant. Only a definite answer marks it released: after
    /// a connection failure it may be tried again (and `Drop` will).
    fn release(&self) -> Result<()> {
        let _io = self.io();
        if !self.with_lease(Lease::release) {
            return Ok(());
        }
        self.exchange().map_or(Ok(()), |result| result.map(drop))
    }
}

/// A held lock. Dropping it releases it (best effort); [`Lock::unlock`]
/// releases it and reports the outcome.
#[must_use = "dropping a Lock releases it at once"]
pub struct Lock {
    inner: Arc<Inner>,
    renewer: Option<Renewer>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.inner.name)
            .field("token", &self.inner.token)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl Lock {
    /// A guard for a grant the server made (`lease`), not yet renewed.
    fn from_lease(
        client: &Client,
        name: String,
        lease: Lease,
        auto_renew: bool,
        on_lost: Option<LostCallback>,
    ) -> Self {
        let inner = Arc::new(Inner {
            client: client.clone(),
            name,
            token: lease.token(),
            lease: Mutex::new(lease),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            io: Mutex::new(()),
            on_lost,
            renewed: auto_renew,
        });
        Self {
            inner,
            renewer: None,
        }
    }

    /// Starts the renewal thread; if it cannot start, releases the lock
    /// rather than let the caller believe it is renewed.
    fn start_renewer(&mut self) -> Result<()> {
        match Renewer::start(&self.inner) {
            Ok(r) => {
                self.renewer = Some(r);
                Ok(())
            }
            Err(e) => {
                let _ = self.release();
                Err(Error::system("cannot start the lock's renewal thread", e))
            }
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

    /// Extends this grant to `ttl` from now. Never re-acquires: if the lock
    /// is lost or was released, fails with [`Error::LockLost`].
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        self.inner.extend(ttl)
    }

    /// Releases the lock. Fails with [`Error::LockLost`] if it had already
    /// expired (someone else may have held it meanwhile).
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    /// Releases the lock without consuming the guard; once released, later
    /// calls do nothing and succeed. After a failure to reach the server
    /// it may be called again.
    pub fn release(&mut self) -> Result<()> {
        if let Some(r) = self.renewer.take() {
            r.stop(&self.inner);
        }
        self.inner.release()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// A request for several locks at once, all or none:
/// `client.lock_all(&["a", "b"]).ttl(..).wait(..).acquire()` (PROTOCOL.md
/// section 8, "Multi-locks").
#[must_use = "a lock request does nothing until acquire() is called"]
pub struct LockAllBuilder<'c> {
    client: &'c Client,
    names: Vec<String>,
    ttl: Duration,
    wait: Option<Duration>,
    auto_renew: bool,
    on_lost: Option<LostCallback>,
    cancel: Option<CancelToken>,
}

impl<'c> LockAllBuilder<'c> {
    pub(crate) fn new(client: &'c Client, names: &[&str]) -> Self {
        Self {
            client,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            ttl: DEFAULT_TTL,
            wait: None,
            auto_renew: false,
            on_lost: None,
            cancel: None,
        }
    }

    /// How long the server keeps every lock unless extended (default 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Queue in the server for up to `wait` if any of the names is held or
    /// awaited: in every name's queue at once, granted all together when
    /// first in line on each. Without it, one attempt.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = (!wait.is_zero()).then_some(wait);
        self
    }

    /// Extend every lock in the background, as
    /// [`LockBuilder::auto_renew`] does for one (one renewal thread per
    /// name).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Runs `f` once if any of the locks is found lost.
    pub fn on_lost(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_lost = Some(Arc::new(f));
        self
    }

    /// Lets another thread abort a waiting acquire with `token.cancel()`.
    pub fn cancel(mut self, token: &CancelToken) -> Self {
        self.cancel = Some(token.clone());
        self
    }

    /// Takes every lock, or none. Fails with [`Error::InvalidArgument`]
    /// for no names, more than [`MAX_LOCK_ALL`], or a name twice;
    /// [`Error::NotOwner`] if one of them is held or awaited (or already
    /// held by this client) and no wait was asked for; [`Error::Mismatch`]
    /// if one is a semaphore or read/write lock; [`Error::Timeout`] if the
    /// wait ran out; [`Error::Cancelled`] if cancelled;
    /// [`Error::BadRequest`] from a server without multi-locks
    /// (JackrabbitDLM).
    pub fn acquire(self) -> Result<MultiLock> {
        if self.names.is_empty() {
            return Err(Error::InvalidArgument("lock_all needs at least one name"));
        }
        if self.names.len() > MAX_LOCK_ALL {
            return Err(Error::InvalidArgument("lock_all takes at most 16 names"));
        }
        for (i, name) in self.names.iter().enumerate() {
            check_name(name)?;
            if self.names[..i].contains(name) {
                return Err(Error::InvalidArgument("lock_all names a lock twice"));
            }
        }
        let ttl = check_ttl(self.ttl)?;
        let shared = &self.client.shared;
        let refs: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let list = Names::new(&refs).ok_or(Error::InvalidArgument("too many names"))?;
        let acquire = AcquireAll::new(
            ttl,
            self.wait.map(Ttl::from),
            self.auto_renew,
            shared.clock.now(),
        );
        let req = acquire.request(&shared.core(), list);
        let options = CallOptions {
            cancel: self.cancel.as_ref(),
            ..CallOptions::default()
        };
        let leases: Vec<Lease> = shared.call(&req, options, |r| {
            acquire
                .handle_response(shared.clock.now(), r, refs.len())
                .map(|g| g.leases().collect())
                .map_err(Error::from)
        })?;
        // One callback for the set, run once.
        let on_lost = self.on_lost.map(|f| {
            let ran = Arc::new(AtomicBool::new(false));
            let once: LostCallback = Arc::new(move || {
                if !ran.swap(true, Ordering::SeqCst) {
                    f();
                }
            });
            once
        });
        let mut locks: Vec<Lock> = self
            .names
            .into_iter()
            .zip(leases)
            .map(|(name, lease)| {
                Lock::from_lease(self.client, name, lease, self.auto_renew, on_lost.clone())
            })
            .collect();
        if self.auto_renew {
            for lock in &mut locks {
                // On failure, the others are released as `locks` drops.
                lock.start_renewer()?;
            }
        }
        Ok(MultiLock { locks })
    }
}

/// Several locks held together (from [`Client::lock_all`]): each an
/// ordinary lock with its own fencing token, extended and released
/// together. Dropping it releases every one (best effort);
/// [`MultiLock::unlock`] releases them and reports the outcome.
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

    /// The fencing token of each name, in the order given: pass each to
    /// what its name protects.
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

    /// Extends every lock to `ttl` from now (each by its token; never
    /// re-acquires). Tries them all; the first failure is returned.
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        let mut first = Ok(());
        for l in &self.locks {
            if let Err(e) = l.extend(ttl)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Releases every lock. Fails (after trying them all) with the first
    /// failure, such as [`Error::LockLost`] for one that had expired.
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    /// Releases every lock without consuming the guard; once released,
    /// later calls do nothing and succeed.
    pub fn release(&mut self) -> Result<()> {
        let mut first = Ok(());
        for l in &mut self.locks {
            if let Err(e) = l.release()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// The thread of an auto-renewed lock: it sleeps until the lease's next
/// timeout and sends what the lease asks for.
struct Renewer {
    thread: JoinHandle<()>,
}

impl Renewer {
    fn start(inner: &Arc<Inner>) -> io::Result<Self> {
        let inner = inner.clone();
        // A fixed name: the lock's name is the caller's input, and a thread
        // name must not contain NUL.
        let thread = spawn("dlm-renew", move || renew(&inner))?;
        Ok(Self { thread })
    }

    fn stop(self, inner: &Inner) {
        {
            let _lease = inner.lease();
            inner.stopping.store(true, Ordering::SeqCst);
        }
        inner.wake.notify_all();
        let _ = self.thread.join();
    }
}

fn renew(inner: &Inner) {
    loop {
        {
            let _io = inner.io();
            if inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            if inner.exchange().is_some() {
                continue;
            }
        }
        let lease = inner.lease();
        if inner.stopping.load(Ordering::SeqCst) || lease.has_request() {
            continue;
        }
        let Some(at) = lease.poll_timeout() else {
            // Released or lost, and nothing left to send.
            return;
        };
        // In the lease's own milliseconds: no std::time arithmetic that
        // could overflow on a far deadline.
        let pause: Duration = at.saturating_since(inner.now()).into();
        if !pause.is_zero() {
            let _ = inner
                .wake
                .wait_timeout(lease, pause)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(not(test))]
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

/// As in the library, but a test can make the next spawn on its thread fail
/// as an exhausted system would.
#[cfg(test)]
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    if tests::FAIL_SPAWN.with(|f| f.replace(false)) {
        return Err(io::Error::from(io::ErrorKind::WouldBlock));
    }
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::cell::Cell;

    use super::*;
    use dlm_tests::Server;

    thread_local! {
        pub(super) static FAIL_SPAWN: Cell<bool> = const { Cell::new(false) };
    }

    #[test]
    fn a_renewal_thread_that_cannot_start_fails_the_acquisition_and_releases() {
        let server = Server::start();
        let (a, b) = (
            Client::connect(server.addr()).unwrap(),
            Client::connect(server.addr()).unwrap(),
        );
        FAIL_SPAWN.with(|f| f.set(true));
        let r = a.lock("renewed").auto_renew(true).acquire();
        let Err(e @ Error::System(_)) = r else {
            panic!("{r:?}")
        };
        assert!(e.to_string().contains("renewal thread"), "{e}");
        // Released, not left to expire.
        assert!(b.try_lock("renewed", DEFAULT_TTL).unwrap().is_some());
        // The next one starts.
        drop(b);
        let lock = a.lock("other").auto_renew(true).acquire().unwrap();
        assert!(lock.renewer.is_some());
    }
}
