//! `dlm.Watch`: the Rust client's watch (a connection of its own that
//! reconnects and resumes after its last revision) as a Python iterator of
//! `dlm.Event`s.
//!
//! Iterating blocks with the GIL released, in slices of 50 ms between
//! which it checks for signals, so Ctrl-C interrupts a watch that waits
//! for its next event.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{blocking, invalid};

/// How long one blocking slice waits before Python looks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// One change, as a watcher is told it.
#[pyclass(frozen, module = "dlm._native")]
pub struct Event {
    /// Its revision: the same on every cluster member, greater than every
    /// revision before it.
    #[pyo3(get)]
    revision: u64,
    /// What happened: `Granted`, `Released`, `Expired`, `Put` or `Erased`.
    #[pyo3(get, name = "event")]
    what: &'static str,
    /// To what: `Lock`, `Semaphore`, `ReadWrite` or `Data`.
    #[pyo3(get)]
    kind: &'static str,
    /// The lock name or data key.
    #[pyo3(get)]
    name: String,
    /// The owner, only for the client's own entries.
    #[pyo3(get)]
    owner: Option<String>,
    /// The grant's fencing token (locks and holds).
    #[pyo3(get)]
    token: Option<u64>,
    value: Option<Vec<u8>>,
    /// The value's own revision (`Put`).
    #[pyo3(get)]
    data_revision: Option<u64>,
}

#[pymethods]
impl Event {
    /// The value, decoded (`bytes`), only for the client's own `Put`s.
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.value.as_deref().map(|v| PyBytes::new(py, v))
    }

    fn __repr__(&self) -> String {
        format!(
            "Event(revision={}, event={:?}, kind={:?}, name={:?})",
            self.revision, self.what, self.kind, self.name
        )
    }
}

impl From<dlm::Event> for Event {
    fn from(e: dlm::Event) -> Self {
        Self {
            revision: e.revision,
            what: e.what.as_str(),
            kind: e.subject.as_str(),
            name: e.name,
            owner: e.owner,
            token: e.token.map(|t| t.0),
            value: e.value,
            data_revision: e.data_revision.map(|r| r.0),
        }
    }
}

/// A subscription to the changes of a name or a prefix: iterate it for
/// `Event`s (it never ends by itself). When its connection fails, or the
/// server cuts it off for reading too slowly, it reconnects and resumes
/// after the last revision it gave; if the server no longer keeps those
/// events, the next call raises `ConflictError` (read the state again; the
/// watch then goes on from the current revision).
#[pyclass(frozen, module = "dlm._native")]
pub struct Watch {
    inner: Arc<Mutex<Option<dlm::Watch>>>,
}

impl Watch {
    pub(crate) fn new(watch: dlm::Watch) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Some(watch))),
        }
    }

    /// One slice of waiting: an event, or `None`.
    fn slice(&self, py: Python<'_>, wait: Duration) -> PyResult<Option<dlm::Event>> {
        let inner = self.inner.clone();
        blocking(py, move || {
            let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(w) = guard.as_mut() else {
                return Err(dlm::Error::InvalidArgument("the watch is closed").into());
            };
            Ok(w.next_timeout(wait)?)
        })
    }
}

#[pymethods]
impl Watch {
    /// The next event, waiting at most `timeout` seconds (`None`: as long
    /// as it takes); `None` if none came in time.
    #[pyo3(signature = (timeout = None))]
    fn next_event(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Event>> {
        let deadline = match timeout {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 => {
                Some(std::time::Instant::now() + Duration::from_secs_f64(t))
            }
            Some(_) => return Err(invalid(py, "a timeout must be a finite number >= 0")),
        };
        loop {
            let wait = deadline.map_or(SLICE, |d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .min(SLICE)
            });
            if let Some(e) = self.slice(py, wait)? {
                return Ok(Some(e.into()));
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// The last revision given (or the one it started from): pass it as
    /// `since` to resume in another watch.
    #[getter]
    fn revision(&self) -> Option<u64> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(dlm::Watch::revision)
    }

    /// Closes the watch's connection.
    fn close(&self, py: Python<'_>) {
        let w = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        py.detach(move || drop(w));
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        self.next_event(py, None)
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
    ) {
        self.close(py);
    }
}

/// Starts a watch of `scope` for `client`, after `since` if given.
pub(crate) fn start(
    py: Python<'_>,
    client: dlm::Client,
    prefix: Option<String>,
    name: Option<String>,
    since: Option<u64>,
) -> PyResult<Watch> {
    let watch = blocking(py, move || {
        let builder = match (prefix, name) {
            (Some(p), None) => client.watch_prefix(&p),
            (None, Some(n)) => client.watch_name(&n)?,
            _ => {
                return Err(
                    dlm::Error::InvalidArgument("give a prefix or a name, not both").into(),
                );
            }
        };
        let builder = match since {
            Some(r) => builder.since(r),
            None => builder,
        };
        Ok(builder.start()?)
    })?;
    Ok(Watch::new(watch))
}
