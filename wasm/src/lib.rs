//! # dlm-wasm
//!
//! WebAssembly bindings of dlm-core's sans-I/O client, the engine room of
//! the Node.js package in `wasm/js/`. WebAssembly cannot open sockets, so
//! this module only turns calls into request bytes and answer bytes into
//! results; the package's JavaScript moves the bytes with `node:net`.
//!
//! ```text
//!  index.js: client.lock(..) ──▶ Link.lock() ──▶ link's output ──(a few writes a turn)──▶ net.Socket ──▶ dlm-server
//!  index.js: Lock { handle } ◀── Link.readGrant() ◀── Link.feed(chunk) ◀── net.Socket ◀── dlm-server
//! ```
//!
//! A [`Link`](bindings::Link) per connection keeps both directions'
//! bytes in WebAssembly memory ([`link`]): the package takes the output
//! a few times a turn of the event loop and feeds every chunk received, and an
//! answer crosses back as the number, bigint or bytes its caller wants,
//! never as an object built field by field. Held locks' leases live in one
//! table per client, [`Leases`](bindings::Leases), under number handles
//! ([`leases`]).
//!
//! Sessions and watches have connections of their own, with a `Link`
//! each but no failover ([`session`], [`watch`]): a session lives and dies
//! with its connection, and a watch's events cross as one packed byte
//! string per chunk received.
//!
//! Every request is a call of the client's [`Failover`](bindings::Failover)
//! (dlm-core's failover machine, [`failover`]), under a number handle
//! ([`table`]): which server, the backoff, what may be sent again and when
//! to give up are decided here, and the package only connects, reports
//! and sleeps as told.
//!
//! Values go through the table codec ([`encode_table`](bindings::encode_table))
//! or a [`Sealer`](bindings::Sealer) (XChaCha20-Poly1305 from dlm-core's
//! `seal`), so every byte written from Node reads back identically from
//! Rust, C, Go and Python, and the reverse.
//!
//! Randomness comes from JavaScript: the package draws sealing nonces, keys
//! and client IDs with `crypto.getRandomValues` and passes nonces in, so
//! this module imports nothing but the error constructor and stays a pure
//! function of its inputs (see `wasm/README.md` for why).
//!
//! Errors: every export returns `Result<_, `[`Error`]`>`, thrown in
//! JavaScript as a `DlmError` subclass with a `code`. No export unwraps or
//! indexes unchecked input, so no panic reaches JavaScript.
//!
//! The pure half ([`wire`], [`link`], [`leases`], [`failover`]) is ordinary Rust and
//! tested on the host, through dlm-core's engine standing in for a server; the
//! Node tests in `wasm/js/test/` drive the built package against a real
//! `dlm-server`.

// A std crate: the workspace's no_std discipline lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod bindings;
mod error;
pub mod failover;
pub mod leases;
pub mod link;
pub mod session;
pub mod table;
pub mod watch;
pub mod wire;

pub use error::Error;
