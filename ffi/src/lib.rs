//! # dlm
//!
//! The blocking Rust client of dlm, a distributed lock manager and volatile
//! state coordinator (wire-compatible with JackrabbitDLM). It drives
//! dlm-core's sans-I/O client (the rules of every answer and of a held
//! lock's lease) with blocking sockets, a monotonic clock and, for an
//! auto-renewed lock, one thread. The C ABI over it is libdlm (`ffi/libdlm`),
//! the `dlm` command the crate `dlm-cli`.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # fn main() -> dlm::Result<()> {
//! let client = dlm::Client::connect("127.0.0.1:37373")?;
//! // Wait up to 10 s in the server's fair queue; renew in the background.
//! let lock = client
//!     .lock("nightly-report")
//!     .ttl(Duration::from_secs(30))
//!     .wait(Duration::from_secs(10))
//!     .auto_renew(true)
//!     .acquire()?;
//! // Hand the fencing token to whatever the lock protects (a JackrabbitDLM
//! // server gives none).
//! if let Some(token) = lock.token() {
//!     println!("holding with token {token}");
//! }
//! client.put("report-status", b"running", Duration::from_secs(300))?;
//! lock.unlock()?;
//! # Ok(())
//! # }
//! ```
//!
//! Values go through an [`Encoder`]: the table codec by default (readable
//! by every binding and by JackrabbitDLM's Python client), or
//! [`SealedEncoder`] so the server only ever stores ciphertext.

// A std crate: the workspace's no_std discipline lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![deny(missing_docs)]

mod cancel;
mod client;
mod encoder;
mod error;
pub mod failure;
mod lock;
mod put;
mod session;
pub mod tls;
mod watch;

pub use cancel::CancelToken;
pub use client::{Client, Options, ToServers, Value, random_id};
pub use dlm_core::client::ErrorKind;
pub use dlm_core::protocol::{Framing, Revision, Token};
pub use dlm_core::stats::{Stat, Stats};
pub use encoder::{Encoder, SealedEncoder, TableEncoder};
pub use error::{Error, Result};
pub use lock::{
    DEFAULT_TTL, Lock, LockAllBuilder, LockBuilder, LockState, LostCallback, MultiLock,
};
pub use put::{DEFAULT_VALUE_TTL, PutBuilder, Readers};
pub use session::{MAX_LOCK_DELAY, Session, SessionLock, SessionLockBuilder};
pub use tls::{Tls, TlsFailure};
pub use watch::{Event, Subject, Watch, WatchBuilder, What};
