//! `dlm.Session` and `dlm.SessionLock`: the Rust client's sessions (a
//! connection of its own, kept alive by a thread; PROTOCOL.md section 8,
//! "Sessions and lock-delay") as context managers.
//!
//! ```text
//!   with client.session(ttl=10) as s:          # Session: opened here
//!       with s.lock("job", lock_delay=5) as l: # SessionLock: Lock with "Session": true
//!           ...                                # released at the end, or by the
//!                                              # server when the session ends
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::{blocking, invalid, to_py};
use crate::time;

/// The session, shared by its Python object and the locks being taken
/// through it; `None` once closed.
type Shared = Arc<Mutex<Option<Arc<dlm::Session>>>>;

/// A server session on a connection of its own: locks taken through it
/// (`lock`) are released by the server when it ends, because this process
/// closed it (`close`, the end of a `with`), died, or was paused past the
/// TTL. A thread sends a keep-alive every third of the TTL; once one fails
/// the session is `lost` and its locks are to be taken as gone.
#[pyclass(frozen, module = "dlm._native")]
pub struct Session {
    inner: Shared,
    ttl: f64,
}

impl Session {
    /// Opens a session of `ttl` for `client`.
    pub(crate) fn open(py: Python<'_>, client: dlm::Client, ttl: f64) -> PyResult<Self> {
        let d = time::ttl(py, ttl)?;
        let session = blocking(py, move || Ok(client.session(d)?))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Some(Arc::new(session)))),
            ttl,
        })
    }

    fn session(inner: &Shared) -> Option<Arc<dlm::Session>> {
        inner.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn closed_error(py: Python<'_>) -> PyErr {
    to_py(py, dlm::Error::LockLost)
}

#[pymethods]
impl Session {
    /// A lock of `name` bound to this session, not yet taken: `with` it,
    /// or `acquire()`. `ttl`: it also ends after this long (a bound lock is
    /// not renewed). `wait`: queue in the server up to that long.
    /// `lock_delay`: after the session ends, nobody may take the name for
    /// that long (at most 60 s). A `wait` is at most two thirds of the
    /// session's TTL: while the lock queues, no keep-alive passes it on the
    /// session's connection. `permits`: one permit of a semaphore of
    /// that many; `mode` `"read"` or `"write"`: a side of a read/write
    /// lock.
    #[pyo3(signature = (name, *, ttl = 30.0, wait = None, lock_delay = 0.0, permits = None, mode = None))]
    #[allow(clippy::too_many_arguments)]
    fn lock(
        &self,
        py: Python<'_>,
        name: String,
        ttl: f64,
        wait: Option<f64>,
        lock_delay: f64,
        permits: Option<u32>,
        mode: Option<String>,
    ) -> PyResult<SessionLock> {
        if name.is_empty() {
            return Err(invalid(py, "empty name"));
        }
        let ttl_d = time::ttl(py, ttl)?;
        let wait = time::wait(py, wait)?;
        // A queued lock holds its connection: no keep-alive passes it, and
        // the server ends a session nothing reached for its TTL.
        if wait.is_some_and(|w| w.as_secs_f64() > self.ttl * 2.0 / 3.0) {
            return Err(invalid(
                py,
                "a wait on a session is at most two thirds of its TTL (no keep-alive passes a queued lock)",
            ));
        }
        let delay = time::duration(
            py,
            lock_delay,
            "lock_delay must be a finite, non-negative number of seconds",
        )?;
        let write = match mode.as_deref() {
            None => None,
            Some("read") => Some(false),
            Some("write") => Some(true),
            Some(_) => return Err(invalid(py, "mode must be \"read\" or \"write\"")),
        };
        if permits.is_some() && write.is_some() {
            return Err(invalid(py, "give permits or mode, not both"));
        }
        Ok(SessionLock {
            session: self.inner.clone(),
            name,
            ttl_d,
            wait,
            delay,
            permits,
            write,
            held: Mutex::new(None),
            token: Mutex::new(None),
        })
    }

    /// Whether the session is lost (a keep-alive failed, or its connection
    /// broke): the server ends it, and its locks with it.
    #[getter]
    fn lost(&self) -> bool {
        Self::session(&self.inner).is_some_and(|s| s.is_lost())
    }

    /// Whether it was closed.
    #[getter]
    fn closed(&self) -> bool {
        Self::session(&self.inner).is_none()
    }

    /// Its TTL in seconds.
    #[getter]
    fn ttl(&self) -> f64 {
        self.ttl
    }

    /// Calls `callback()` once, on the keep-alive thread, if a keep-alive
    /// finds the session lost. An exception it raises is printed, not
    /// raised.
    fn on_lost(&self, py: Python<'_>, callback: Py<PyAny>) -> PyResult<()> {
        let Some(s) = Self::session(&self.inner) else {
            return Err(closed_error(py));
        };
        s.on_lost(move || {
            Python::attach(|py| {
                if let Err(e) = callback.call0(py) {
                    e.print(py);
                }
            });
        });
        Ok(())
    }

    /// Ends the session: its connection closes, and the server releases
    /// (or closes for their lock-delay) every lock bound to it. Idempotent.
    fn close(&self, py: Python<'_>) {
        let s = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The last reference stops the keep-alive thread and closes the
        // connection (a lock being taken holds one until it is answered).
        py.detach(move || drop(s));
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = match Self::session(&self.inner) {
            None => "closed",
            Some(s) if s.is_lost() => "lost",
            Some(_) => "open",
        };
        format!("<dlm.Session ttl={} {state}>", self.ttl)
    }
}

/// A lock bound to a `Session`; a context manager (`with` takes it and
/// releases it). Not renewed: it ends at the first of its TTL, its
/// release and its session's end.
#[pyclass(frozen, module = "dlm._native")]
pub struct SessionLock {
    session: Shared,
    name: String,
    ttl_d: Duration,
    wait: Option<Duration>,
    delay: Duration,
    permits: Option<u32>,
    write: Option<bool>,
    held: Mutex<Option<dlm::SessionLock>>,
    token: Mutex<Option<u64>>,
}

#[pymethods]
impl SessionLock {
    /// Takes it: `NotOwnerError` if held and no wait was asked,
    /// `TimeoutError` if the wait ran out, `ConflictError` if the name is
    /// another kind of lock, `LockLostError` if the session is closed or
    /// lost, `BadRequestError` for what the server refuses (a lock-delay
    /// over 60 s, a server without sessions).
    fn acquire(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let py = slf.py();
        let this = slf.get();
        if this
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return Err(invalid(py, "this lock is already held"));
        }
        let Some(session) = Session::session(&this.session) else {
            return Err(closed_error(py));
        };
        let (name, ttl, wait, delay, permits, write) = (
            this.name.clone(),
            this.ttl_d,
            this.wait,
            this.delay,
            this.permits,
            this.write,
        );
        let lock = blocking(py, move || {
            let mut b = session.lock(&name).ttl(ttl).lock_delay(delay);
            if let Some(w) = wait {
                b = b.wait(w);
            }
            if let Some(p) = permits {
                b = b.permits(p);
            }
            if let Some(w) = write {
                b = b.read_write(w);
            }
            Ok(b.acquire()?)
        })?;
        *this.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(lock.token().0);
        *this.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(lock);
        Ok(slf)
    }

    /// Releases it (on the session's connection, by its token);
    /// `LockLostError` if it was no longer held (its TTL ran out, or the
    /// session ended). Does nothing if not held.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let lock = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match lock {
            Some(l) => blocking(py, move || Ok(l.unlock()?)),
            None => Ok(()),
        }
    }

    /// Its name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token of its grant (`None` before it was taken).
    #[getter]
    fn token(&self) -> Option<u64> {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Its lock-delay in seconds.
    #[getter]
    fn lock_delay(&self) -> f64 {
        time::seconds(self.delay)
    }

    /// Whether it is taken and not yet released (by this object: the
    /// server may have ended it with its session).
    #[getter]
    fn held(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        Self::acquire(slf)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release(py).map(|()| false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<dlm.SessionLock {:?} token={:?}{}>",
            self.name,
            self.token(),
            if self.held() { " held" } else { "" }
        )
    }
}
