//! The client for Python: [`Client`] over `dlm::Client` (a pool of
//! persistent connections, safe to share between threads), and the values
//! its calls return, [`Value`] and [`LockState`].

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyType};

use crate::encoder::{bytes_of, from_py};
use crate::errors::{blocking, invalid, to_py};
use crate::lock::{Kind, Lock};
use crate::multi::MultiLock;
use crate::time;
use crate::tls::Tls;

/// A connection pool to a dlm server or a cluster's leader, under one
/// owner ID. Safe to share
/// between threads; each call takes an idle connection (or opens one).
/// Locks belong to the owner ID: parties that must exclude each other need
/// a `Client` each.
#[pyclass(frozen, module = "dlm._native")]
pub struct Client {
    inner: Mutex<Option<dlm::Client>>,
    server: String,
}

impl Client {
    /// The Rust client, or `UnavailableError` once closed. The mutex is held
    /// only to clone an `Arc`.
    fn client(&self, py: Python<'_>) -> PyResult<dlm::Client> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                to_py(
                    py,
                    dlm::Error::Unavailable(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the client is closed",
                    )),
                )
            })
    }

    /// A [`Lock`] of `kind` on `name`, its arguments checked.
    fn new_lock(
        &self,
        py: Python<'_>,
        name: String,
        kind: Kind,
        ttl: f64,
        wait: Option<f64>,
        auto_renew: bool,
    ) -> PyResult<Lock> {
        if name.is_empty() {
            return Err(invalid(py, "empty name"));
        }
        let ttl = time::ttl(py, ttl)?;
        if ttl.is_zero() {
            return Err(invalid(py, "a TTL must be positive"));
        }
        let wait = time::wait(py, wait)?;
        if auto_renew && name.contains('\0') {
            // The Rust client names its renewal thread after the lock, and a
            // thread name cannot hold a NUL: it would panic after the grant.
            return Err(invalid(
                py,
                "a lock whose name contains a NUL byte cannot be auto-renewed",
            ));
        }
        Ok(Lock::new(
            self.client(py)?,
            name,
            kind,
            ttl,
            wait,
            auto_renew,
        ))
    }
}

#[pymethods]
impl Client {
    /// Connects to `server` (`host:port`), or to a cluster's members
    /// (`host:port,host:port,...`; one is enough, the others are learned
    /// from it): requests go to the leader and follow it when it changes.
    /// Without `server`: the `DLM_SERVER` environment variable (the same
    /// syntax, as the `dlm` command reads it), else 127.0.0.1:37373.
    /// One connection is opened now, so an unreachable server raises
    /// `UnavailableError` here (`TlsError`, one of them, if the TLS
    /// handshake failed). `tls`: a `Tls` to connect over TLS.
    #[new]
    #[pyo3(signature = (
        server = None,
        *,
        client_id = None,
        timeout = 10.0,
        connect_timeout = 5.0,
        identity = None,
        encoder = None,
        connect_attempts = 3,
        max_idle = 4,
        tls = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        server: Option<String>,
        client_id: Option<String>,
        timeout: f64,
        connect_timeout: f64,
        identity: Option<(String, String)>,
        encoder: Option<&Bound<'_, PyAny>>,
        connect_attempts: u32,
        max_idle: usize,
        tls: Option<PyRef<'_, Tls>>,
    ) -> PyResult<Self> {
        let server = server.unwrap_or_else(|| {
            std::env::var("DLM_SERVER")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "127.0.0.1:37373".to_owned())
        });
        let server = server.as_str();
        let mut options = dlm::Options {
            io_timeout: time::duration(
                py,
                timeout,
                "timeout must be a non-negative number of seconds",
            )?,
            connect_timeout: time::duration(
                py,
                connect_timeout,
                "connect_timeout must be a non-negative number of seconds",
            )?,
            client_id,
            credentials: identity,
            connect_attempts,
            max_idle,
            tls: tls.map(|t| t.for_servers(server)),
            ..dlm::Options::default()
        };
        if options.io_timeout.is_zero() || options.connect_timeout.is_zero() {
            return Err(invalid(py, "timeouts must be positive"));
        }
        if let Some(e) = encoder {
            options.encoder = from_py(e)?;
        }
        let addr = server.to_owned();
        let client = blocking(py, move || {
            Ok(dlm::Client::connect_with(addr.as_str(), options)?)
        })?;
        Ok(Self {
            inner: Mutex::new(Some(client)),
            server: server.to_owned(),
        })
    }

    /// The owner ID of this client's locks and values.
    #[getter]
    fn id(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.client(py)?.id().to_owned())
    }

    /// The server address, or the list of a cluster's members, as given.
    #[getter]
    fn server(&self) -> &str {
        &self.server
    }

    /// The server in use now (`host:port`): the cluster's leader once a
    /// member said who leads. For logs: it changes when the client moves
    /// on after a failure.
    #[getter]
    fn current_server(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.client(py)?.server())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Closes the idle connections; later calls raise `UnavailableError`.
    /// Locks still held keep their own connection until released.
    fn close(&self, py: Python<'_>) {
        let client = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        py.detach(move || drop(client));
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyType>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close(py);
        false
    }

    /// A lock on `name`, not yet taken: use it in `with`, or call
    /// `acquire()`. `ttl`: seconds the server keeps it; `wait`: seconds to
    /// queue if another owner holds it (`None`: one attempt); `auto_renew`:
    /// extend it in the background every third of its TTL while held.
    #[pyo3(signature = (name, ttl = 30.0, wait = None, auto_renew = true))]
    fn lock(
        &self,
        py: Python<'_>,
        name: String,
        ttl: f64,
        wait: Option<f64>,
        auto_renew: bool,
    ) -> PyResult<Lock> {
        self.new_lock(py, name, Kind::Exclusive, ttl, wait, auto_renew)
    }

    /// One permit of the counting semaphore `name` of `permits` permits,
    /// not yet taken; arguments and use as `lock`. Each acquisition is a
    /// hold of its own with its own fencing token; waiters are served
    /// first come, first served. The size is fixed while anyone holds or
    /// waits: another size raises `ConflictError`.
    #[pyo3(signature = (name, permits, ttl = 30.0, wait = None, auto_renew = true))]
    fn semaphore(
        &self,
        py: Python<'_>,
        name: String,
        permits: u32,
        ttl: f64,
        wait: Option<f64>,
        auto_renew: bool,
    ) -> PyResult<Lock> {
        if permits == 0 {
            return Err(invalid(py, "a semaphore needs at least one permit"));
        }
        self.new_lock(py, name, Kind::Semaphore(permits), ttl, wait, auto_renew)
    }

    /// The shared (read) side of the read/write lock `name`, not yet
    /// taken; arguments and use as `lock`. Held beside other readers, never
    /// beside a writer; a waiting writer is served before later readers.
    #[pyo3(signature = (name, ttl = 30.0, wait = None, auto_renew = true))]
    fn read_lock(
        &self,
        py: Python<'_>,
        name: String,
        ttl: f64,
        wait: Option<f64>,
        auto_renew: bool,
    ) -> PyResult<Lock> {
        self.new_lock(py, name, Kind::Read, ttl, wait, auto_renew)
    }

    /// The exclusive (write) side of the read/write lock `name`, not yet
    /// taken; arguments and use as `lock`.
    #[pyo3(signature = (name, ttl = 30.0, wait = None, auto_renew = true))]
    fn write_lock(
        &self,
        py: Python<'_>,
        name: String,
        ttl: f64,
        wait: Option<f64>,
        auto_renew: bool,
    ) -> PyResult<Lock> {
        self.new_lock(py, name, Kind::Write, ttl, wait, auto_renew)
    }

    /// Exclusive locks on every one of `names` (1 to 16, no two alike),
    /// taken together, all or none, without deadlock; not yet taken: use
    /// it in `with`, or call `acquire()`. Arguments as `lock`; `wait`
    /// queues in every name's queue at once.
    #[pyo3(signature = (names, ttl = 30.0, wait = None, auto_renew = true))]
    fn lock_all(
        &self,
        py: Python<'_>,
        names: Vec<String>,
        ttl: f64,
        wait: Option<f64>,
        auto_renew: bool,
    ) -> PyResult<MultiLock> {
        MultiLock::new(py, self.client(py)?, names, ttl, wait, auto_renew)
    }

    /// Whether `name` is locked, and by whom; never acquires.
    fn test_lock(&self, py: Python<'_>, name: String) -> PyResult<LockState> {
        let client = self.client(py)?;
        let state = blocking(py, move || Ok(client.test_lock(&name)?))?;
        Ok(match state {
            dlm::LockState::Free => LockState {
                state: "free",
                token: None,
                remaining: None,
            },
            dlm::LockState::Mine { token, remaining } => LockState {
                state: "mine",
                token: token.map(|t| t.0),
                remaining: remaining.map(time::seconds),
            },
            dlm::LockState::Taken { remaining } => LockState {
                state: "taken",
                token: None,
                remaining: remaining.map(time::seconds),
            },
        })
    }

    /// Releases `name` if this client's owner ID holds it (only the grant
    /// `token`, if given); whether a lock was released. For tools that know
    /// a name and token: a held `Lock` releases itself.
    #[pyo3(signature = (name, token = None))]
    fn unlock(&self, py: Python<'_>, name: String, token: Option<u64>) -> PyResult<bool> {
        let client = self.client(py)?;
        blocking(py, move || Ok(client.unlock(&name, token.map(dlm::Token))?))
    }

    /// Stores `value` (`bytes` or `str`, encoded by the client's encoder)
    /// under `name` for `ttl` seconds; returns its new revision. With
    /// `revision`, compare-and-set: only if the stored revision is that
    /// (0: only if there is none), else `ConflictError` with the current one.
    /// `readers`: who besides this owner may `get` it: `None` (nobody: each
    /// put says it anew, so a put without it makes the value private
    /// again), `"any"` (any client), or a list of identity names (clients
    /// authenticated as one of them, at most 32). Writing stays the owner's.
    #[pyo3(signature = (name, value, ttl = 300.0, *, revision = None, readers = None))]
    fn put(
        &self,
        py: Python<'_>,
        name: String,
        value: &Bound<'_, PyAny>,
        ttl: f64,
        revision: Option<u64>,
        readers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let data = bytes_of(value)?;
        let ttl: Duration = time::ttl(py, ttl)?;
        let readers = match readers {
            Some(r) => readers_of(py, r)?,
            None => dlm::Readers::Owner,
        };
        let client = self.client(py)?;
        blocking(py, move || {
            let mut put = client.put_with(&name, &data).ttl(ttl).readers(readers);
            if let Some(r) = revision {
                put = put.if_revision(dlm::Revision(r));
            }
            Ok(put.send()?.0)
        })
    }

    /// Reads `name`: its `Value`, or `None` if there is no such entry.
    fn get(&self, py: Python<'_>, name: String) -> PyResult<Option<Value>> {
        let client = self.client(py)?;
        let value = blocking(py, move || Ok(client.get(&name)?))?;
        Ok(value.map(|v| Value {
            data: v.data,
            revision: v.revision.0,
            ttl: time::seconds(v.ttl),
            owner: v.owner,
        }))
    }

    /// Deletes `name`; whether there was an entry.
    fn erase(&self, py: Python<'_>, name: String) -> PyResult<bool> {
        let client = self.client(py)?;
        blocking(py, move || Ok(client.erase(&name)?))
    }

    /// The server's version string (it contains "JackrabbitDLM").
    fn version(&self, py: Python<'_>) -> PyResult<String> {
        let client = self.client(py)?;
        blocking(py, move || Ok(client.version()?))
    }

    /// Watches every name (locks and values) that starts with `prefix`
    /// (`""`: every name): a `Watch`, an iterator of `Event`s over a
    /// connection of its own. `since`: resume after that revision
    /// (`ConflictError` if the server no longer keeps it).
    #[pyo3(signature = (prefix, *, since = None))]
    fn watch_prefix(
        &self,
        py: Python<'_>,
        prefix: String,
        since: Option<u64>,
    ) -> PyResult<crate::Watch> {
        let client = self.client(py)?;
        crate::watch::start(py, client, Some(prefix), None, since)
    }

    /// Watches one name: its lock (or semaphore, or read/write lock) and
    /// its value. See `watch_prefix`.
    #[pyo3(signature = (name, *, since = None))]
    fn watch_name(
        &self,
        py: Python<'_>,
        name: String,
        since: Option<u64>,
    ) -> PyResult<crate::Watch> {
        let client = self.client(py)?;
        crate::watch::start(py, client, None, Some(name), since)
    }

    /// Watches every name that starts with `prefix`, or the one `name`
    /// (give one): `watch_prefix` or `watch_name`.
    #[pyo3(signature = (prefix = None, *, name = None, since = None))]
    fn watch(
        &self,
        py: Python<'_>,
        prefix: Option<String>,
        name: Option<String>,
        since: Option<u64>,
    ) -> PyResult<crate::Watch> {
        let client = self.client(py)?;
        crate::watch::start(py, client, prefix, name, since)
    }

    /// Opens a server session with `ttl` seconds on a connection of its
    /// own: a `Session`, whose `lock()`s the server releases when it ends
    /// (closed, this process gone, or no keep-alive for `ttl`).
    /// `BadRequestError` from a server without sessions (JackrabbitDLM).
    #[pyo3(signature = (ttl = 10.0))]
    fn session(&self, py: Python<'_>, ttl: f64) -> PyResult<crate::Session> {
        let client = self.client(py)?;
        crate::Session::open(py, client, ttl)
    }

    /// The server's statistics: counters and gauges by name.
    fn stats(&self, py: Python<'_>) -> PyResult<BTreeMap<&'static str, u64>> {
        let client = self.client(py)?;
        let stats = blocking(py, move || Ok(client.stats()?))?;
        Ok(stats.iter().map(|(s, v)| (s.name(), v)).collect())
    }

    fn __repr__(&self) -> String {
        let id = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|c| c.id().to_owned());
        match id {
            Some(id) => format!("<dlm.Client {} id={id:?}>", self.server),
            None => format!("<dlm.Client {} closed>", self.server),
        }
    }
}

/// At most this many identities may read one value (the protocol's limit).
const MAX_READERS: usize = 32;

/// `readers` of `Client.put` as the Rust client takes them: `"any"` or
/// `"owner"` (any case), or an iterable of identity names, checked.
fn readers_of(py: Python<'_>, r: &Bound<'_, PyAny>) -> PyResult<dlm::Readers> {
    const WHAT: &str = "readers must be None, \"any\", or a list of identity names";
    let readers = if let Ok(s) = r.cast::<PyString>() {
        let s = s.to_cow()?;
        if s.eq_ignore_ascii_case("any") {
            dlm::Readers::Any
        } else if s.eq_ignore_ascii_case("owner") {
            dlm::Readers::Owner
        } else {
            return Err(invalid(py, WHAT));
        }
    } else {
        let items = r.try_iter().map_err(|_| invalid(py, WHAT))?;
        let mut names = Vec::new();
        for item in items {
            let item = item?;
            let name = item.cast::<PyString>().map_err(|_| invalid(py, WHAT))?;
            names.push(name.to_cow()?.into_owned());
            if names.len() > MAX_READERS {
                break; // too many: said by `check` below, without reading on
            }
        }
        dlm::Readers::identities(names)
    };
    readers.check().map_err(|e| to_py(py, e))?;
    Ok(readers)
}

/// A value read by `Client.get`.
#[pyclass(frozen, module = "dlm._native")]
pub struct Value {
    data: Vec<u8>,
    revision: u64,
    ttl: f64,
    owner: Option<String>,
}

#[pymethods]
impl Value {
    /// The decoded bytes.
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data)
    }

    /// The bytes as UTF-8 text (`UnicodeDecodeError` if they are not).
    #[getter]
    fn text<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let text = std::str::from_utf8(&self.data).map_err(|_| {
            pyo3::exceptions::PyUnicodeDecodeError::new_err("the value is not UTF-8")
        })?;
        Ok(PyString::new(py, text))
    }

    /// The entry's revision: 1 on the first put, one more on each.
    #[getter]
    fn revision(&self) -> u64 {
        self.revision
    }

    /// Seconds the entry had left when the server answered.
    #[getter]
    fn ttl(&self) -> f64 {
        self.ttl
    }

    /// The owner's ID, when the server said it: this client's own, or
    /// that of the owner who shared the value with it.
    #[getter]
    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Value(<{} bytes>, revision={}, ttl={:.3})",
            self.data.len(),
            self.revision,
            self.ttl
        )
    }
}

/// What `Client.test_lock` found.
#[pyclass(frozen, module = "dlm._native")]
pub struct LockState {
    state: &'static str,
    token: Option<u64>,
    remaining: Option<f64>,
}

#[pymethods]
impl LockState {
    /// `"free"`, `"mine"` (this owner ID holds it) or `"taken"`.
    #[getter]
    fn state(&self) -> &'static str {
        self.state
    }

    /// The grant's fencing token, when it is ours.
    #[getter]
    fn token(&self) -> Option<u64> {
        self.token
    }

    /// Seconds left on the lock, when the server said.
    #[getter]
    fn remaining(&self) -> Option<f64> {
        self.remaining
    }

    fn __repr__(&self) -> String {
        let token = self.token.map(|t| format!(", token={t}"));
        let remaining = self.remaining.map(|r| format!(", remaining={r:.3}"));
        format!(
            "LockState({:?}{}{})",
            self.state,
            token.unwrap_or_default(),
            remaining.unwrap_or_default()
        )
    }
}
