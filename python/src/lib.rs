//! # dlm-python
//!
//! The native half of the Python package `dlm`: the extension module
//! `dlm._native`, built by maturin (see `pyproject.toml`). It is a thin
//! shell over the blocking Rust client (the `dlm` crate): every rule of the
//! protocol, of leases and of encoders lives there; this crate only moves
//! values between Python and Rust.
//!
//! ```text
//!   dlm/__init__.py  ─▶ dlm._native.Client ─▶ dlm::Client ─▶ socket ─▶ dlm-server
//!   dlm/aio.py       ─▶ (the same, in worker threads)
//!   dlm/locker.py    ─▶ (the same, JackrabbitDLM's Locker API)
//!   Client.session() ─▶ dlm::Session (a connection of its own, kept alive by a thread)
//! ```
//!
//! Three rules hold for every function here:
//!
//! - **The GIL is released around every blocking call** (`Python::detach`),
//!   so other Python threads run while one waits for the server.
//! - **A wait can be interrupted**: a lock that queues in the server waits on
//!   a helper thread while the caller checks for signals every 50 ms; Ctrl-C
//!   cancels the wait through the client's `CancelToken` (the server drops
//!   the waiter when the connection closes) and raises `KeyboardInterrupt`.
//! - **No panic reaches Python**: blocking calls run under `catch_unwind`
//!   and a panic becomes `dlm.InternalError`; every other failure becomes
//!   the `dlm.DlmError` subclass of its `dlm::ErrorKind` (`dlm/_errors.py`).

// A std crate: the workspace's no_std discipline lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
// PyO3's signatures: arguments by value, `PyResult` returns, and `&self` on
// methods of stateless classes (the encoders).
#![allow(
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps,
    clippy::unused_self,
    clippy::trivially_copy_pass_by_ref
)]
#![deny(missing_docs)]

use pyo3::prelude::*;

mod client;
mod encoder;
mod errors;
mod lock;
mod multi;
mod session;
mod time;
mod tls;
mod watch;

pub use client::{Client, LockState, Value};
pub use encoder::{RawEncoder, SealedEncoder, TableEncoder};
pub use lock::{CancelToken, Lock};
pub use multi::MultiLock;
pub use session::{Session, SessionLock};
pub use tls::Tls;
pub use watch::{Event, Watch};

/// The module `dlm._native`.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Client>()?;
    m.add_class::<Lock>()?;
    m.add_class::<MultiLock>()?;
    m.add_class::<LockState>()?;
    m.add_class::<Value>()?;
    m.add_class::<CancelToken>()?;
    m.add_class::<TableEncoder>()?;
    m.add_class::<SealedEncoder>()?;
    m.add_class::<RawEncoder>()?;
    m.add_class::<Tls>()?;
    m.add_class::<Watch>()?;
    m.add_class::<Event>()?;
    m.add_class::<Session>()?;
    m.add_class::<SessionLock>()?;
    m.add_function(wrap_pyfunction!(errors::error_classes, m)?)?;
    Ok(())
}
