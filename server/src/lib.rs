//! # dlm-server
//!
//! The dlm lock server: hosts the [`dlm_core`] engine over TCP, speaks both
//! framings of the protocol (plain JSON and JackrabbitDLM's table-encoded
//! lines) on persistent, pipelined connections, and holds its own against
//! misbehaving clients: every limit is enforced while reading, a stalled
//! line is dropped, the connection count is capped, and bad input costs
//! only the connection that sent it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let settings = dlm_server::config::Settings::default();
//! dlm_server::run(listener, settings, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

// A std crate: the no_std discipline lints of the workspace are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

pub mod admin;
pub mod cluster;
pub mod config;
mod conn;
mod deadlines;
mod dispatch;
mod eventloop;
pub mod host;
pub mod http;
pub mod identity;
pub mod metrics;
mod server;
pub mod statslog;
pub mod tls;
pub mod watch;

pub use conn::{LineBuffer, MIN_READ, Next, READ_CHUNK};
pub use dispatch::Told;

pub use server::{Server, run};
