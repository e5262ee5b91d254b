//! Failures on their way to Python: a `dlm::Error` or a caught panic becomes
//! an instance of the matching class of `dlm/_errors.py` (`NotOwnerError`,
//! `ConflictError` with its `revision`, ...), each with its `code`.
//!
//! This module owns the panic boundary: [`catch`] wraps every call into the
//! Rust client. It never decides what an error means; the client does.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Why a call into the Rust client failed.
pub(crate) enum Failure {
    /// The client's own error.
    Dlm(dlm::Error),
    /// A panic, caught before it could reach Python; its message.
    Panic(String),
}

impl From<dlm::Error> for Failure {
    fn from(e: dlm::Error) -> Self {
        Self::Dlm(e)
    }
}

/// The result of a guarded call.
pub(crate) type Outcome<T> = Result<T, Failure>;

thread_local! {
    /// The exception a Python encoder raised on this thread, kept so that
    /// the `EncodingError` it causes can carry it as `__cause__`.
    static CALLBACK_ERROR: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Keeps `e` (raised by a Python callback) for the error it is about to
/// cause on this thread.
pub(crate) fn stash_callback_error(e: PyErr) {
    CALLBACK_ERROR.with(|slot| *slot.borrow_mut() = Some(e));
}

fn take_callback_error() -> Option<PyErr> {
    CALLBACK_ERROR.with(|slot| slot.borrow_mut().take())
}

/// Runs `f`, turning a panic into [`Failure::Panic`].
pub(crate) fn catch<T>(f: impl FnOnce() -> Outcome<T>) -> Outcome<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_failure(&*payload)))
}

pub(crate) fn panic_failure(payload: &(dyn Any + Send)) -> Failure {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    Failure::Panic(message)
}

/// Runs the blocking `f` with the GIL released and converts its failure.
pub(crate) fn blocking<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Outcome<T> + Send,
) -> PyResult<T> {
    py.detach(|| catch(f)).map_err(|e| e.into_py(py))
}

/// Converts a client error to its Python exception.
pub(crate) fn to_py(py: Python<'_>, e: dlm::Error) -> PyErr {
    Failure::Dlm(e).into_py(py)
}

/// An `InvalidArgumentError` (a `ValueError`) with this message.
pub(crate) fn invalid(py: Python<'_>, why: &'static str) -> PyErr {
    to_py(py, dlm::Error::InvalidArgument(why))
}

/// The name of the class in `dlm/_errors.py` for each kind. Every kind a
/// Python caller can meet has its own class; `tests/test_errors.py` holds
/// this table to dlm-core's list of kinds (through [`error_classes`]), so a
/// kind added to the client without a class here fails the tests.
fn class_name(kind: dlm::ErrorKind) -> &'static str {
    use dlm::ErrorKind as K;
    match kind {
        K::NotOwner => "NotOwnerError",
        K::NotFound => "NotFoundError",
        K::Conflict => "ConflictError",
        K::Timeout => "TimeoutError",
        K::LockLost => "LockLostError",
        K::Cancelled => "CancelledError",
        K::BadRequest => "BadRequestError",
        K::NoMemory => "NoMemoryError",
        K::Unavailable => "UnavailableError",
        K::Protocol => "ProtocolError",
        K::Encoding => "EncodingError",
        K::InvalidArgument => "InvalidArgumentError",
        K::Panic => "InternalError",
        K::System => "SystemResourceError",
        // C only (a NULL pointer, a caller's buffer too small): Python
        // cannot pass either. And kinds added to dlm-core after this
        // binding: the base class, and the drift test fails.
        _ => "DlmError",
    }
}

/// Every kind of dlm-core a Python caller can meet (not the C-only ones,
/// but a panic, which this binding catches too), as `(kind name, class
/// name)`: what `tests/test_errors.py` checks
/// `dlm/_errors.py` against.
#[pyfunction]
pub(crate) fn error_classes() -> Vec<(&'static str, &'static str)> {
    dlm::ErrorKind::ALL
        .into_iter()
        .filter(|k| !k.c_only() || *k == dlm::ErrorKind::Panic)
        .map(|k| (k.name(), class_name(k)))
        .collect()
}

/// The exception classes, imported once from `dlm._errors`.
fn class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module =
        MODULE.get_or_try_init(py, || py.import("dlm._errors").map(pyo3::Bound::unbind))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// What an exception carries beyond its message.
enum Extra {
    None,
    /// `ConflictError.revision`.
    Revision(u64),
    /// `TlsError.reason`.
    Reason(&'static str),
}

impl Failure {
    /// The Python exception for this failure.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyErr {
        let (name, message, extra, cause) = match self {
            Self::Panic(why) => (
                "InternalError",
                format!("internal error (a bug in dlm): {why}"),
                Extra::None,
                None,
            ),
            Self::Dlm(e) => {
                let cause = matches!(e, dlm::Error::Encoding(_))
                    .then(take_callback_error)
                    .flatten();
                let (name, extra) = match (&e, e.tls_failure()) {
                    (dlm::Error::Conflict { current }, _) => {
                        (class_name(e.kind()), Extra::Revision(current.0))
                    }
                    // A refused handshake: the kind's class refined, with
                    // the reason.
                    (_, Some(reason)) => ("TlsError", Extra::Reason(reason.name())),
                    _ => (class_name(e.kind()), Extra::None),
                };
                (name, e.to_string(), extra, cause)
            }
        };
        let made = class(py, name).and_then(|cls| match extra {
            Extra::Revision(r) => cls.call1((message.clone(), r)),
            Extra::Reason(r) => cls.call1((message.clone(), r)),
            Extra::None => cls.call1((message.clone(),)),
        });
        let err = match made {
            Ok(instance) => PyErr::from_value(instance),
            // Only if dlm._errors cannot be imported (a broken install).
            Err(_) => PyRuntimeError::new_err(message),
        };
        if cause.is_some() {
            err.set_cause(py, cause);
        }
        err
    }
}
