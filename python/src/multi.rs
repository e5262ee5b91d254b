//! Multi-locks for Python: `client.lock_all(names, ttl=, wait=,
//! auto_renew=)` makes a [`MultiLock`], which `acquire()` (or `with`) takes
//! all or none (PROTOCOL.md section 8, "Multi-locks") and `release()` gives
//! back together. It mirrors [`crate::Lock`]: one `dlm::MultiLock` guard per
//! Python object, never a Python-visible lock held while blocking, waits
//! interruptible by Ctrl-C or a `CancelToken`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::errors::{Outcome, blocking, invalid, panic_failure, to_py};
use crate::lock::{Acquiring, CancelToken, interruptible};
use crate::time;

/// At most this many names in one multi-lock (the protocol's limit).
pub(crate) const MAX_NAMES: usize = 16;

/// Several exclusive locks of one client taken together, all or none,
/// without deadlock: `acquire()` takes every name (queueing up to `wait`
/// seconds in every name's queue at once), `release()` gives them all
/// back. Each name gets its own fencing token (`tokens`, in name order).
/// Renewed in the background while held if `auto_renew` is set. Also a
/// context manager.
#[pyclass(frozen, module = "dlm._native")]
pub struct MultiLock {
    client: dlm::Client,
    names: Vec<String>,
    ttl: Duration,
    wait: Option<Duration>,
    auto_renew: bool,
    /// The current grant, if any. Locked only with the GIL released.
    held: Mutex<Option<dlm::MultiLock>>,
    /// The tokens of the latest grant (kept after release, for logs).
    tokens: Mutex<Option<Vec<Option<u64>>>>,
    /// Whether the latest grant was found lost.
    lost: AtomicBool,
    /// Set while an acquire runs, so that two cannot race on one object.
    acquiring: AtomicBool,
}

impl MultiLock {
    /// A multi-lock of `names`, its arguments checked (the Rust client
    /// checks them again when acquiring).
    pub(crate) fn new(
        py: Python<'_>,
        client: dlm::Client,
        names: Vec<String>,
        ttl: f64,
        wait: Option<f64>,
        auto_renew: bool,
    ) -> PyResult<Self> {
        if names.is_empty() {
            return Err(invalid(py, "lock_all needs at least one name"));
        }
        if names.len() > MAX_NAMES {
            return Err(invalid(py, "lock_all takes at most 16 names"));
        }
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(py, "empty name"));
            }
            if names[..i].contains(name) {
                return Err(invalid(py, "lock_all names a lock twice"));
            }
        }
        let ttl = time::ttl(py, ttl)?;
        if ttl.is_zero() {
            return Err(invalid(py, "a TTL must be positive"));
        }
        let wait = time::wait(py, wait)?;
        Ok(Self {
            client,
            names,
            ttl,
            wait,
            auto_renew,
            held: Mutex::new(None),
            tokens: Mutex::new(None),
            lost: AtomicBool::new(false),
            acquiring: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the held grant; call only with the GIL released.
    fn with_held<T>(&self, f: impl FnOnce(&mut Option<dlm::MultiLock>) -> T) -> T {
        f(&mut self.held.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn latest_tokens(&self) -> Option<Vec<Option<u64>>> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The acquire itself, on whichever thread runs it.
    fn take(&self, cancel: &dlm::CancelToken) -> Outcome<dlm::MultiLock> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let mut builder = self
            .client
            .lock_all(&names)
            .ttl(self.ttl)
            .auto_renew(self.auto_renew)
            .cancel(cancel);
        if let Some(w) = self.wait {
            builder = builder.wait(w);
        }
        Ok(builder.acquire()?)
    }
}

#[pymethods]
impl MultiLock {
    /// Takes every lock, or none, and returns this object. Raises
    /// `NotOwnerError` if one of the names is held or awaited (nothing is
    /// taken) and no wait was asked for, `TimeoutError` if the wait ran
    /// out, `CancelledError` if `cancel` was cancelled, `ConflictError` if
    /// a name is a semaphore or read/write lock, `BadRequestError` from a
    /// server without multi-locks (JackrabbitDLM); Ctrl-C interrupts a
    /// wait. Raises `InvalidArgumentError` if this object already holds
    /// them.
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
            this.with_held(|h| match &*h {
                Some(g) if !g.is_lost() => Err(()),
                _ => Ok(h.take()),
            })
        });
        let stale = stale.map_err(|()| invalid(py, "these locks are already held"))?;
        // A grant found lost: dropping it releases what is left of it
        // (token-fenced, so it never touches a newer grant).
        py.detach(move || drop(stale));

        let token = cancel.map_or_else(dlm::CancelToken::new, |c| c.get().inner.clone());
        let guard = if this.wait.is_some() {
            interruptible(py, &token, |t| this.take(t))?
        } else {
            blocking(py, || this.take(&token))?
        };
        let tokens = guard.tokens().into_iter().map(|t| t.map(|t| t.0)).collect();
        *this.tokens.lock().unwrap_or_else(PoisonError::into_inner) = Some(tokens);
        this.lost.store(false, Ordering::SeqCst);
        py.detach(|| this.with_held(|h| *h = Some(guard)));
        Ok(slf.clone())
    }

    /// Releases every lock. Raises `LockLostError` if one had expired or
    /// been lost meanwhile (the others are released all the same).
    /// Releasing locks that are not held does nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let result = blocking(py, || {
            Ok(self.with_held(|h| {
                let Some(guard) = h.as_mut() else {
                    return Ok(());
                };
                match guard.release() {
                    Ok(()) => {
                        *h = None;
                        Ok(())
                    }
                    Err(dlm::Error::LockLost) => {
                        *h = None;
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

    /// Extends every lock to `ttl` seconds from now (the TTL if `None`).
    /// Never re-acquires: raises `LockLostError` if one expired or was
    /// released (the others are extended all the same).
    #[pyo3(signature = (ttl = None))]
    fn extend(&self, py: Python<'_>, ttl: Option<f64>) -> PyResult<()> {
        let ttl = match ttl {
            Some(s) => time::ttl(py, s)?,
            None => self.ttl,
        };
        let result = blocking(py, || {
            Ok(self.with_held(|h| match h {
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

    /// The names, in the order given.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The fencing token of each name of the latest grant, in the order of
    /// `names` (`None` before the first grant): pass each to what its name
    /// protects.
    #[getter]
    fn tokens(&self) -> Option<Vec<Option<u64>>> {
        self.latest_tokens()
    }

    /// The fencing token of `name` in the latest grant, if it is one of
    /// the names and was granted.
    fn token(&self, name: &str) -> Option<u64> {
        let i = self.names.iter().position(|n| n == name)?;
        self.latest_tokens()?.get(i).copied().flatten()
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

    /// Whether the locks are renewed in the background while held.
    #[getter]
    fn auto_renew(&self) -> bool {
        self.auto_renew
    }

    /// Whether any lock of the latest grant is known to be lost (renewal,
    /// extension or release found it expired or taken).
    #[getter]
    fn lost(&self, py: Python<'_>) -> bool {
        self.lost.load(Ordering::SeqCst)
            || py.detach(|| self.with_held(|h| h.as_ref().is_some_and(dlm::MultiLock::is_lost)))
    }

    /// Whether this object holds a grant none of whose locks is known to
    /// be lost.
    #[getter]
    fn held(&self, py: Python<'_>) -> bool {
        py.detach(|| self.with_held(|h| h.as_ref().is_some_and(|g| !g.is_lost())))
    }

    /// Seconds left before the first lock expires unless renewed, by this
    /// process's clock; 0 if not held.
    #[getter]
    fn remaining(&self, py: Python<'_>) -> f64 {
        py.detach(|| self.with_held(|h| h.as_ref().map_or(0.0, |g| time::seconds(g.remaining()))))
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
        match self.latest_tokens() {
            Some(t) => format!("<dlm.MultiLock {:?} {state}, tokens {t:?}>", self.names),
            None => format!("<dlm.MultiLock {:?} {state}>", self.names),
        }
    }
}

impl Drop for MultiLock {
    fn drop(&mut self) {
        // Dropping a held guard releases its locks over the network:
        // without the GIL where possible, never letting a panic out.
        let mut guard = self
            .held
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
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
