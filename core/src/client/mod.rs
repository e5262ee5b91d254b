//! A sans-I/O client: the one brain every binding (libdlm and its C, Go and
//! CLI users, the WebAssembly module under Node.js) drives. It builds
//! request lines, reads answers into typed results, says what each failure
//! is, and keeps a held lock's lease. It never touches a socket, a clock or
//! a thread; the bindings move the bytes and drive the timers.
//!
//! ```text
//!   Client::lock(..) ─▶ Request ─write─▶ bytes ──▶ (your socket) ──▶ server
//!   answer::acquired() ◀─ Response::parse ◀─ line ◀── (your socket)
//!   Acquire ─▶ Lease: poll_timeout / handle_timeout(now) / poll_request / handle_response
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`request`] | [`Client`]: requests for one owner ID, framing and credentials |
//! | [`answer`] | what each answer means, and the error of each refusal per call |
//! | [`errors`] | [`ErrorKind`] (stable numbers, names, messages) and [`Error`] |
//! | [`lease`] | [`Acquire`] and [`Lease`]: grant time, deadline, renewal, retry, loss |
//! | [`failover`] | [`Failover`] and [`Call`]: server lists, the leader, reconnects, backoff, deadlines, what may be resent |
//! | [`value`] | which encoder wrote a stored value, for clear decoding errors |
//!
//! A whole round trip, with the engine standing in for the server:
//!
//! ```
//! use dlm_core::client::{answer, Client};
//! use dlm_core::engine::{Config, Engine, Outcome, Principal};
//! use dlm_core::limits::Limits;
//! use dlm_core::protocol::{Request, Response};
//! use dlm_core::time::{Instant, Ttl};
//!
//! let client = Client::new("worker-7");
//! let mut line = Vec::new();
//! client.lock("jobs", Ttl::from_secs(30)).write(&mut line).unwrap();
//!
//! // ... the server side ...
//! let mut engine = Engine::new(Config::default());
//! let req = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
//! let mut answer = Vec::new();
//! if let Outcome::Reply(r) = engine.handle(Instant::ZERO, &req.command, Principal::Anonymous, 0, &mut |_| {}) {
//!     r.write(req.framing, &mut answer).unwrap();
//! }
//!
//! // ... and back on the client.
//! let (_, response) = Response::parse(&mut answer).unwrap();
//! let grant = answer::acquired(&response, false).unwrap();
//! assert_eq!(grant.ttl, Some(Ttl::from_secs(30)));
//! assert!(grant.token.is_some());
//! ```

pub mod answer;
pub mod errors;
#[cfg(feature = "alloc")]
pub mod failover;
pub mod lease;
pub mod request;
pub mod value;

pub use answer::{Admin, Fetched, Grant, GrantAll, LockState, Stored};
pub use errors::{Detail, Error, ErrorKind};
#[cfg(feature = "alloc")]
pub use failover::{
    Call, ClusterView, Failover, Outcome, Refusal, Resend, ServerList, Step, Verdict,
};
pub use lease::{Acquire, AcquireAll, Action, Done, Event, GrantedAll, Lease, Pending};
pub use request::Client;
