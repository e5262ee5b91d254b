//! Locks for Python: `client.lock(name, ttl=, wait=, auto_renew=)` makes a
//! [`Lock`], which `acquire()` (or `with`) takes and `release()` (or the end
//! of the `with` block) gives back; and [`CancelToken`], which aborts a
//! waiting acquire from another thread (the asyncio layer uses it when its
//! task is cancelled).
//!
//! The Rust guard (`dlm::Lock`) does the work: renewal, the fencing token,
//! extension by token, release on drop. This module only keeps one guard
//! per Python object and never holds a Python-visible lock while blocking.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::errors::{Failure, Outcome, blocking, catch, invalid, panic_failure, to_py};
use crate::time;

/// How often a waiting acquire looks for Ctrl-C (and other signals).
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// Aborts a waiting `Lock.acquire(cancel=token)` from any thread: the wait
/// ends with `CancelledError` and the server drops the waiter. Once
/// cancelled it stays cancelled: use a new token for each wait.
#[pyclass(frozen, module = "dlm._native")]
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    pub(crate) inner: dlm::CancelToken,
}

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Cancels every wait using this token, now and later.
    fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!("CancelToken(cancelled={})", self.cancelled())
    }
}

/// What a [`Lock`] takes of its name.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// The name's exclusive lock (`client.lock`).
    Exclusive,
    /// One permit of a counting semaphore of this many permits.
    Semaphore(u32),
    /// The shared side of a read/write lock.
    Read,
    /// The exclusive side of a read/write lock.
    Write,
}

/// What a [`Lock`] holds between calls.
#[derive(Default)]
struct Held {
    /// The current grant, if any. Locked only with the GIL released, so a
    /// thread waiting for it never blocks the interpreter.
    guard: Option<dlm::Lock>,
}

/// One named lock of one client: `acquire()` takes it (queueing up to
/// `wait` seconds if another owner holds it), `release()` gives it back,
/// `extend()` lengthens this grant. While held it is renewed in the
/// background if `auto_renew` is set. Also a context manager.
#[pyclass(frozen, module = "dlm._native")]
pub struct Lock {
    client: dlm::Client,
    name: String,
    kind: Kind,
    ttl: Duration,
    wait: Option<Duration>,
    auto_renew: bool,
    held: Mutex<Held>,
    /// The token of the latest grant (kept after release, for logs).
    token: Mutex<Option<u64>>,
    /// Whether the latest grant was found lost.
    lost: AtomicBool,
    /// Set while an acquire runs, so that two cannot race on one object.
    acquiring: AtomicBool,
}

impl Lock {
    pub(crate) fn new(
        client: dlm::Client,
        name: String,
        kind: Kind,
        ttl: Duration,
        wait: Option<Duration>,
        auto_renew: bool,
    ) -> Self {
        Self {
            client,
            name,
            kind,
            ttl,
            wait,
            auto_renew,
            held: Mutex::new(Held::default()),
            token: Mutex::new(None),
            lost: AtomicBool::new(false),
            acquiring: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the held state; call only with the GIL released.
    fn with_held<T>(&self, f: impl FnOnce(&mut Held) -> T) -> T {
        f(&mut self.held.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn set_token(&self, token: Option<u64>) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// The acquire itself, on whichever thread runs it.
    fn take(&self, cancel: &dlm::CancelToken) -> Outcome<dlm::Lock> {
        let builder = match self.kind {
            Kind::Exclusive => self.client.lock(&self.name),
            Kind::Semaphore(permits) => self.client.semaphore(&self.name, permits),
            Kind::Read => self.client.read_lock(&self.name),
            Kind::Write => self.client.write_lock(&self.name),
        };
        let mut builder = builder
            .ttl(self.ttl)
            .auto_renew(self.auto_renew)
            .cancel(cancel);
        if let Some(w) = self.wait {
            builder = builder.wait(w);
        }
        Ok(builder.acquire()?)
    }
}

/// Clears `Lock::acquiring` (or `MultiLock::acquiring`) however the
/// acquire ends.
pub(crate) struct Acquiring<'a>(pub(crate) &'a AtomicBool);

impl Drop for Acquiring<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Runs `f` on a helper thread while this one checks for signals every
/// [`SIGNAL_SLICE`]: a `KeyboardInterrupt` (or any exception a signal
/// handler raises) cancels `token`, waits for `f` to give up, drops what it
/// returned (releasing a lock granted at the last moment) and is raised.
pub(crate) fn interruptible<T: Send>(
    py: Python<'_>,
    token: &dlm::CancelToken,
    f: impl FnOnce(&dlm::CancelToken) -> Outcome<T> + Send,
) -> PyResult<T> {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let worker_token = token.clone();
        let spawned = std::thread::Builder::new()
            .name("dlm-wait".to_owned())
            .spawn_scoped(scope, move || {
                let _ = tx.send(catch(|| f(&worker_token)));
            });
        if let Err(e) = spawned {
            return Err(to_py(py, dlm::Error::Unavailable(e)));
        }
        let mut rx = rx;
        loop {
            let (back, got) = py.detach(move || {
                let got = rx.recv_timeout(SIGNAL_SLICE);
                (rx, got)
            });
            rx = back;
            match got {
                Ok(outcome) => return outcome.map_err(|e| e.into_py(py)),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(signalled) = py.check_signals() {
                        token.cancel();
                        py.detach(move || drop(rx.recv()));
                        return Err(signalled);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(
                        Failure::Panic("the waiting thread vanished".to_owned()).into_py(py)
                    );
                }
            }
        }
    })
}

#[pymethods]
impl Lock {
    /// Takes the lock and returns this object. Raises `NotOwnerError` if
    /// another owner holds it and no wait was asked for, `TimeoutError` if
    /// the wait ran out, `CancelledError` if `cancel` was cancelled;
    /// Ctrl-C interrupts a wait. Raises `InvalidArgumentError` if this
    /// object already holds the lock.
    #[pyo3(signature = (cancel = None))]
    fn acquire<'py>(
        slf: &Bound<'py, Self>,
        cancel: Option<&Bound<'py, CancelToken>>,
    ) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        let this = slf.get();
        if this.acquiring.swap(true, Ordering::SeqCst) {
            return Err(invalid(py, "an acquire of this lock is already running"));
        }
        let _acquiring = Acquiring(&this.acquiring);
        let stale = py.detach(|| {
            this.with_held(|h| match &h.guard {
                Some(g) if !g.is_lost() => Err(()),
                _ => Ok(h.guard.take()),
            })
        });
        let stale = stale.map_err(|()| invalid(py, "this lock is already held"))?;
        // A grant found lost: dropping it tries a release (token-fenced, so
        // it never touches a newer grant).
        py.detach(move || drop(stale));

        let token = cancel.map_or_else(dlm::CancelToken::new, |c| c.get().inner.clone());
        let guard = if this.wait.is_some() {
            interruptible(py, &token, |t| this.take(t))?
        } else {
            blocking(py, || this.take(&token))?
        };
        // A JackrabbitDLM server grants without a token: `None`.
        this.set_token(guard.token().map(|t| t.0));
        this.lost.store(false, Ordering::SeqCst);
        py.detach(|| this.with_held(|h| h.guard = Some(guard)));
        Ok(slf.clone())
    }

    /// Releases the lock. Raises `LockLostError` if it had expired or been
    /// lost meanwhile (the work it protected may not have been exclusive).
    /// Releasing a lock that is not held does nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let result = blocking(py, || {
            Ok(self.with_held(|h| {
                let Some(guard) = h.guard.as_mut() else {
                    return Ok(());
                };
                match guard.release() {
                    Ok(()) => {
                        h.guard = None;
                        Ok(())
                    }
                    Err(dlm::Error::LockLost) => {
                        h.guard = None;
                        Err(dlm::Error::LockLost)
                    }
                    // The server could not be reached: keep the guard, so
                    // release() may be tried again (dropping it retries too).
                    Err(e) => Err(e),
                }
            }))
        })?;
        if let Err(e) = result {
            if matches!(e, dlm::Error::LockLost) {
                self.lost.store(true, Ordering::SeqCst);
            }
            return Err(to_py(py, e));
        }
        Ok(())
    }

    /// Extends this grant to `ttl` seconds from now (the lock's TTL if
    /// `None`). Never re-acquires: raises `LockLostError` if the lock
    /// expired or was released.
    #[pyo3(signature = (ttl = None))]
    fn extend(&self, py: Python<'_>, ttl: Option<f64>) -> PyResult<()> {
        let ttl = match ttl {
            Some(s) => time::ttl(py, s)?,
            None => self.ttl,
        };
        let result = blocking(py, || {
            Ok(self.with_held(|h| match &h.guard {
                Some(g) => g.extend(ttl),
                None => Err(dlm::Error::LockLost),
            }))
        })?;
        result.map_err(|e| {
            if matches!(e, dlm::Error::LockLost) {
                self.lost.store(true, Ordering::SeqCst);
            }
            to_py(py, e)
        })
    }

    /// The lock's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The TTL in seconds each grant (and renewal) asks for.
    #[getter]
    fn ttl(&self) -> f64 {
        time::seconds(self.ttl)
    }

    /// How long `acquire()` queues, in seconds (`None`: one attempt).
    #[getter]
    fn wait(&self) -> Option<f64> {
        self.wait.map(time::seconds)
    }

    /// Whether the lock is renewed in the background while held.
    #[getter]
    fn auto_renew(&self) -> bool {
        self.auto_renew
    }

    /// The fencing token of the latest grant (`None` before the first):
    /// pass it to whatever the lock protects so it can refuse a holder
    /// whose lock has expired.
    #[getter]
    fn token(&self) -> Option<u64> {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the latest grant is known to be lost (renewal, extension or
    /// release found it expired or taken).
    #[getter]
    fn lost(&self, py: Python<'_>) -> bool {
        self.lost.load(Ordering::SeqCst)
            || py.detach(|| self.with_held(|h| h.guard.as_ref().is_some_and(dlm::Lock::is_lost)))
    }

    /// Whether this object holds a grant not known to be lost.
    #[getter]
    fn held(&self, py: Python<'_>) -> bool {
        py.detach(|| self.with_held(|h| h.guard.as_ref().is_some_and(|g| !g.is_lost())))
    }

    /// Seconds left before the grant expires unless renewed, by this
    /// process's clock (never more than the server's); 0 if not held.
    #[getter]
    fn remaining(&self, py: Python<'_>) -> f64 {
        py.detach(|| {
            self.with_held(|h| {
                h.guard
                    .as_ref()
                    .map_or(0.0, |g| time::seconds(g.remaining()))
            })
        })
    }

    /// Gives up this object's grant without releasing it: the server keeps
    /// the lock until its TTL runs out. Costs a little memory that is never
    /// freed (and stops renewal); for the Locker at interpreter exit.
    fn _abandon(&self, py: Python<'_>) {
        py.detach(|| {
            self.with_held(|h| {
                if let Some(g) = h.guard.take() {
                    std::mem::forget(g);
                }
            });
        });
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        Self::acquire(slf, None)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyType>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.held(py) {
            "held"
        } else if self.lost(py) {
            "lost"
        } else {
            "not held"
        };
        match self.token() {
            Some(t) => format!("<dlm.Lock {:?} {state}, token {t}>", self.name),
            None => format!("<dlm.Lock {:?} {state}>", self.name),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Dropping a held guard releases it over the network: without the
        // GIL where possible, and never letting a panic out of a dealloc.
        let mut guard = self
            .held
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .guard
            .take();
        if guard.is_none() {
            return;
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let released = Python::try_attach(|py| py.detach(|| drop(guard.take())));
            if released.is_none() {
                drop(guard.take());
            }
        }))
        .map_err(|p| panic_failure(&*p));
    }
}
