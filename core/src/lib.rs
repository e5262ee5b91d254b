//! # dlm-core
//!
//! The heart of dlm, a distributed lock manager and volatile state
//! coordinator: the wire protocol, the table codec, the lock/data engine and
//! a sans-I/O client. `#![no_std]`, with no sockets, no clock, no threads and
//! no globals; every other part of dlm (the server, libdlm, the Go and
//! Node.js clients) builds on this crate.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod client;
pub mod codec;
pub mod engine;
pub mod limits;
pub mod protocol;
#[cfg(feature = "seal")]
pub mod seal;
pub mod stats;
pub mod time;
