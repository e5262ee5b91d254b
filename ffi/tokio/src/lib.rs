//! # dlm-tokio
//!
//! The async client of [dlm](https://example.invalid/dlm), a distributed
//! lock manager and volatile state coordinator, for tokio. Locks have a
//! time to live, a fencing token and a fair server-side wait queue; small
//! values are shared with compare-and-set. It drives the same sans-I/O
//! client as the blocking `dlm` crate (dlm-core's request builder, answer
//! rules, error kinds and lease state machine), so both behave alike.
//!
//! ```
//! use std::time::Duration;
//!
//! # #[tokio::main] async fn main() -> dlm_tokio::Result<()> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap().to_string();
//! # tokio::spawn(dlm_server::run(listener, Default::default(), std::future::pending()));
//! // `addr` is "127.0.0.1:37373" or wherever your dlm-server listens.
//! let client = dlm_tokio::Client::connect(&addr).await?;
//! let lock = client
//!     .lock("nightly-report")
//!     .ttl(Duration::from_secs(30))
//!     .wait(Duration::from_secs(10)) // fair queue in the server
//!     .auto_renew(true)              // extend every 10 s while held
//!     .acquire()
//!     .await?;
//! // Hand the fencing token to whatever the lock protects (a JackrabbitDLM
//! // server gives none).
//! if let Some(token) = lock.token() {
//!     println!("holding with token {token}");
//! }
//! client.put("report-status", b"running", Duration::from_secs(300)).await?;
//! lock.unlock().await?; // or drop it: released on a spawned task
//! # Ok(())
//! # }
//! ```
//!
//! ## How it works
//!
//! ```text
//!  tasks ─┬─ put/get/extend/try_lock ─▶ one pipelined connection (a task owns the socket;
//!         │                              requests batched per write, answers in order)
//!         └─ lock(..).wait(..) ────────▶ a connection of its own while it waits
//!  every call ── dlm-core Failover: which member (the leader), backoff, resend or give up
//!  Lock ── dlm-core Lease ◀── renewal task (tokio timer) ── extend by token / lost()
//! ```
//!
//! - A [`Client`] is cheap to clone: share it between any number of tasks.
//!   Their calls are pipelined on one connection (or
//!   [`Builder::connections`] of them), so a burst of calls costs a
//!   few system calls, not one round trip each.
//! - A lock that waits in the server's queue waits on a connection of its
//!   own, so it never holds up other calls. **Dropping the `acquire()`
//!   future cancels the wait in the server**; a grant that raced the
//!   cancellation is released.
//! - A [`Lock`] is a guard: dropping it releases the lock. With
//!   [`auto_renew`](LockBuilder::auto_renew) a task extends it every third
//!   of its TTL; [`Lock::lost`] resolves if that fails until the deadline.
//! - A [`Session`] ([`Client::session`]) binds locks to a connection of
//!   its own: they end when it does (the process dies, stalls past the
//!   session's TTL, or loses the connection), optionally keeping their
//!   names closed for a lock-delay; [`Session::lost`] says when.
//! - Values go through an [`Encoder`]: the table codec by default
//!   (readable by every binding and by JackrabbitDLM's Python client), or
//!   [`SealedEncoder`] so the server stores only ciphertext.
//! - Errors are [`Error`], the blocking `dlm` crate's own type (as are the
//!   encoders, [`Value`], [`LockState`] and [`Tls`]), whose
//!   [`kind`](Error::kind) is dlm-core's [`ErrorKind`], the same list the
//!   blocking, C, Go and Node.js clients use.
//!
//! ## Clusters and TLS
//!
//! Given a cluster's members (one is enough, the others are learned), the
//! client goes to the leader and follows it through failovers, as
//! dlm-core's failover says: calls move on by themselves until
//! [`io_timeout`](Builder::io_timeout) runs out (then
//! [`Error::Unavailable`]), writes carry a request ID the cluster applies
//! once, a held lock is renewed by its token through the new leader, and a
//! wait is queued again there with what is left of it. TLS takes the
//! blocking client's [`Tls`]:
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> dlm_tokio::Result<()> {
//! let client = dlm_tokio::Client::builder()
//!     .tls(
//!         dlm_tokio::Tls::new()
//!             .ca_file("/etc/dlm/ca.pem")
//!             .server_name("dlm.internal"),
//!     )
//!     .connect("10.0.0.1:37373,10.0.0.2:37373,10.0.0.3:37373")
//!     .await?;
//! println!("talking to {}", client.server()); // the leader
//! # Ok(())
//! # }
//! ```
//!
//! ## Owners
//!
//! Locks and values belong to the client's owner ID (random unless set
//! with [`Builder::client_id`]). A lock asked for again by its owner is
//! granted again, so tasks that must exclude each other need different
//! owner IDs: [`Client::with_id`] gives a handle with another ID over the
//! same connections.
//!
//! ```
//! # use std::time::Duration;
//! # #[tokio::main] async fn main() -> dlm_tokio::Result<()> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap().to_string();
//! # tokio::spawn(dlm_server::run(listener, Default::default(), std::future::pending()));
//! let client = dlm_tokio::Client::connect(&addr).await?;
//! let (a, b) = (client.with_id("worker-a")?, client.with_id("worker-b")?);
//! let held = a.lock("job").acquire().await?;
//! assert!(b.try_lock("job", Duration::from_secs(5)).await?.is_none());
//! held.unlock().await?;
//! assert!(b.try_lock("job", Duration::from_secs(5)).await?.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! ## Values and compare-and-set
//!
//! ```
//! # use std::time::Duration;
//! # #[tokio::main] async fn main() -> dlm_tokio::Result<()> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let addr = listener.local_addr().unwrap().to_string();
//! # tokio::spawn(dlm_server::run(listener, Default::default(), std::future::pending()));
//! use dlm_tokio::{Error, Revision};
//!
//! let client = dlm_tokio::Client::connect(&addr).await?;
//! let ttl = Duration::from_secs(60);
//! let first = client.put("config", b"v1", ttl).await?;
//! let value = client.get("config").await?.expect("just put");
//! assert_eq!((value.data.as_slice(), value.revision), (&b"v1"[..], first));
//! // Only if nobody wrote since:
//! client.put_if("config", b"v2", ttl, first).await?;
//! match client.put_if("config", b"v3", ttl, first).await {
//!     Err(Error::Conflict { current }) => assert_eq!(current, Revision(2)),
//!     other => panic!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## JackrabbitDLM
//!
//! With [`Framing::Legacy`] the client talks to the original JackrabbitDLM
//! server: one connection per call (that server closes it after each
//! answer), grants without a fencing token ([`Lock::token`] is `None`,
//! extensions are plain re-locks sent only before the lock's deadline), no
//! wait queue, no revisions.

// A std crate: the workspace's no_std discipline lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![deny(missing_docs)]

mod client;
mod conn;
mod lock;
mod pipe;
mod session;
mod stream;
mod watch;

pub use client::{Builder, Client};
// The blocking crate's own types: one error enum, one set of encoders, one
// TLS configuration for both clients, so code written for one reads the
// other's results and errors unchanged.
pub use dlm::{
    Encoder, Error, LockState, Readers, Result, SealedEncoder, TableEncoder, Tls, ToServers, Value,
    random_id,
};
pub use dlm::{Event, Subject, What};
pub use dlm_core::client::ErrorKind;
pub use dlm_core::protocol::{ClusterOp, Framing, Revision, Token};
pub use dlm_core::stats::{Stat, Stats};
pub use lock::{DEFAULT_TTL, Lock, LockAllBuilder, LockBuilder, MultiLock};
pub use session::{MAX_LOCK_DELAY, Session, SessionLock, SessionLockBuilder};
pub use watch::{Watch, WatchBuilder};

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_between_tasks<T: Send + Sync + 'static>() {}

    #[test]
    fn handles_go_anywhere() {
        shared_between_tasks::<Client>();
        shared_between_tasks::<Lock>();
        shared_between_tasks::<LockBuilder>();
        shared_between_tasks::<Session>();
        shared_between_tasks::<SessionLock>();
        shared_between_tasks::<SessionLockBuilder>();
        shared_between_tasks::<Error>();
    }
}
