//! Locks: acquiring (once, or waiting in the server's fair queue), the
//! guard that holds one, extending it by its fencing token, auto-renewal,
//! and release on drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dlm_core::client::Refusal;
use dlm_core::protocol::Token;

use crate::cancel::CancelToken;
use crate::client::{Client, Wait, check_name, check_ttl};
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
        /// The grant's fencing token.
        token: Token,
        /// Time left when the server answered.
        remaining: Duration,
    },
    /// Another owner holds it.
    Taken {
        /// Roughly how long it has left, if the server said.
        remaining: Option<Duration>,
    },
}

/// A callback run (once, on the renewal thread) when an auto-renewed lock
/// is lost.
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
    /// is released; if an extension fails for good, the lock is marked
    /// lost ([`Lock::is_lost`]) and the [`on_lost`](Self::on_lost) callback
    /// runs.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Runs `f` if an auto-renewed lock is lost.
    pub fn on_lost(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_lost = Some(Arc::new(f));
        self
    }

    /// Lets another thread abort a waiting acquire with `token.cancel()`.
    pub fn cancel(mut self, token: &CancelToken) -> Self {
        self.cancel = Some(token.clone());
        self
    }

    /// Acquires the lock. Fails with [`Error::NotOwner`] if another owner
    /// holds it and no wait was asked for, [`Error::Timeout`] if the wait
    /// ran out, [`Error::Cancelled`] if cancelled.
    pub fn acquire(self) -> Result<Lock> {
        check_name(&self.name)?;
        let ttl = check_ttl(self.ttl)?;
        let shared = &self.client.shared;
        let core = shared.core();
        let (req, wait) = match self.wait {
            Some(w) => (core.lock_wait(&self.name, ttl, w.into()), Wait::Queue(w)),
            None => (core.lock(&self.name, ttl), Wait::None),
        };
        let sent = Instant::now();
        let grant = shared.call(&req, wait, self.cancel.as_ref(), |r| {
            r.grant().map_err(|refusal| match (refusal, self.wait) {
                (Refusal::NotOwner, Some(_)) => Error::Timeout,
                (Refusal::NotOwner, None) => Error::NotOwner,
                (Refusal::Conflict(current), _) => Error::Conflict { current },
                (Refusal::BadRequest(m), _) => {
                    Error::BadRequest(m.map_or_else(String::new, |m| m.to_string()))
                }
                (Refusal::NoMemory, _) => Error::NoMemory,
                (Refusal::Unexpected(s), _) => Error::Protocol(format!("unexpected status {s}")),
            })
        })?;
        // The server granted somewhere between our request and its answer.
        // Counting the TTL from the request keeps our estimate of the expiry
        // no later than the server's. After a wait, the grant came just
        // before the answer (the server sends it at once), so count from
        // the answer less a generous allowance for its trip.
        let received = Instant::now();
        let granted = match wait {
            Wait::None => sent,
            Wait::Queue(_) => received
                .checked_sub(Duration::from_millis(50))
                .map_or(sent, |t| t.max(sent)),
        };
        let inner = Arc::new(Inner {
            client: self.client.clone(),
            name: self.name,
            token: grant.token,
            deadline: Mutex::new(granted + Duration::from(grant.ttl)),
            ttl: Mutex::new(self.ttl),
            lost: AtomicBool::new(false),
            released: AtomicBool::new(false),
            on_lost: self.on_lost,
        });
        let renewer = self.auto_renew.then(|| Renewer::start(inner.clone()));
        Ok(Lock { inner, renewer })
    }
}

struct Inner {
    client: Client,
    name: String,
    token: Token,
    /// When the lock expires at the latest, by our clock.
    deadline: Mutex<Instant>,
    ttl: Mutex<Duration>,
    lost: AtomicBool,
    released: AtomicBool,
    on_lost: Option<LostCallback>,
}

impl Inner {
    fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::SeqCst)
            && let Some(f) = &self.on_lost
        {
            f();
        }
    }

    fn extend(&self, ttl: Duration) -> Result<()> {
        if self.released.load(Ordering::SeqCst) {
            return Err(Error::LockLost);
        }
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::LockLost);
        }
        let ttl_wire = check_ttl(ttl)?;
        let shared = &self.client.shared;
        let req = shared.core().extend(&self.name, ttl_wire, self.token);
        let sent = Instant::now();
        let r = shared.call(&req, Wait::None, None, |r| match r.grant() {
            Ok(_) => Ok(()),
            Err(Refusal::NotOwner) => Err(Error::LockLost),
            Err(Refusal::BadRequest(m)) => Err(Error::BadRequest(
                m.map_or_else(String::new, |m| m.to_string()),
            )),
            Err(Refusal::NoMemory) => Err(Error::NoMemory),
            Err(other) => Err(Error::Protocol(other.to_string())),
        });
        match r {
            Ok(()) => {
                *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = sent + ttl;
                *self.ttl.lock().unwrap_or_else(PoisonError::into_inner) = ttl;
                Ok(())
            }
            Err(Error::LockLost) => {
                self.mark_lost();
                Err(Error::LockLost)
            }
            Err(e) => Err(e),
        }
    }

    /// Releases the grant. Callers take turns (`&mut Lock`, or the C
    /// handle's mutex). Only a definite answer marks it released: after a
    /// connection failure it may be tried again (and `Drop` will).
    fn release(&self) -> Result<()> {
        if self.released.load(Ordering::SeqCst) {
            return Ok(());
        }
        let shared = &self.client.shared;
        let req = shared.core().unlock(&self.name, Some(self.token));
        let released = shared.call(&req, Wait::None, None, |r| {
            r.released().map_err(|refusal| match refusal {
                Refusal::NotOwner => Error::LockLost,
                other => Error::Protocol(other.to_string()),
            })
        });
        match released {
            Ok(true) => {
                self.released.store(true, Ordering::SeqCst);
                Ok(())
            }
            // Nothing was live: it had expired before we released it.
            Ok(false) | Err(Error::LockLost) => {
                self.released.store(true, Ordering::SeqCst);
                self.lost.store(true, Ordering::SeqCst);
                Err(Error::LockLost)
            }
            Err(e) => Err(e),
        }
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
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The fencing token of this grant: pass it to whatever the lock
    /// protects, so a holder whose lock expired can be refused.
    pub fn token(&self) -> Token {
        self.inner.token
    }

    /// Time left before the lock expires unless extended, by this process's
    /// clock (never more than the server's); zero once lost or released.
    pub fn remaining(&self) -> Duration {
        if self.is_lost() || self.inner.released.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        let deadline = *self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        deadline.saturating_duration_since(Instant::now())
    }

    /// Whether the lock is known to be lost (an extension or release found
    /// it gone, or auto-renewal failed past the deadline).
    pub fn is_lost(&self) -> bool {
        self.inner.lost.load(Ordering::SeqCst)
    }

    /// Extends this grant to `ttl` from now. Never re-acquires: if the lock
    /// expired or was released, fails with [`Error::LockLost`].
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        self.inner.extend(ttl)
    }

    /// Releases the lock. Fails with [`Error::LockLost`] if it had already
    /// expired (someone else may have held it meanwhile).
    pub fn unlock(mut self) -> Result<()> {
        self.stop_renewing();
        self.inner.release()
    }

    /// Releases the lock without consuming the guard; a second call does
    /// nothing and succeeds.
    pub fn release(&mut self) -> Result<()> {
        self.stop_renewing();
        self.inner.release()
    }

    fn stop_renewing(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.stop();
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop_renewing();
        let _ = self.inner.release();
    }
}

/// The background thread of an auto-renewed lock.
struct Renewer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    fn start(inner: Arc<Inner>) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dlm-renew-{}", inner.name))
            .spawn(move || renew(&inner, &flag))
            .ok();
        Self { stop, thread }
    }

    fn stop(mut self) {
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn renew(inner: &Inner, stop: &(Mutex<bool>, Condvar)) {
    let (lock, cv) = stop;
    let mut pause = *inner.ttl.lock().unwrap_or_else(PoisonError::into_inner) / 3;
    loop {
        let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = cv
            .wait_timeout_while(stopped, pause, |s| !*s)
            .unwrap_or_else(PoisonError::into_inner);
        if *stopped {
            return;
        }
        drop(stopped);
        let ttl = *inner.ttl.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.extend(ttl) {
            Ok(()) => pause = ttl / 3,
            Err(Error::LockLost) => return,
            Err(_) => {
                // The server may be briefly unreachable: keep trying until
                // the lock must have expired.
                let deadline = *inner
                    .deadline
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if Instant::now() >= deadline {
                    inner.mark_lost();
                    return;
                }
                pause = (ttl / 10)
                    .clamp(Duration::from_millis(10), Duration::from_secs(1))
                    .min(deadline.saturating_duration_since(Instant::now()));
            }
        }
    }
}
